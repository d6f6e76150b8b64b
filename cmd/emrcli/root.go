package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/internal/durable"
)

// Environment variables.
const (
	envHome             = "EMRCLI_HOME"
	envNode             = "EMRCLI_NODE"
	envKeyringBackend   = "EMRCLI_KEYRING_BACKEND"
	envPassphrase       = "EMRCLI_PASSPHRASE"
	envExportPassphrase = "EMRCLI_EXPORT_PASSPHRASE"
	// envNewPassphrase is a key's new passphrase (keys change-passphrase),
	// while envPassphrase gives its current one.
	envNewPassphrase = "EMRCLI_NEW_PASSPHRASE"
)

const configFileName = "config.json"

// fileConfig is HOME/config.json: defaults that emrcli light init (or the
// user) writes, below flags and environment variables.
type fileConfig struct {
	Node           string   `json:"node,omitempty"`
	ChainID        string   `json:"chain_id,omitempty"`
	Witnesses      []string `json:"witnesses,omitempty"`
	KeyringBackend string   `json:"keyring_backend,omitempty"`
	// Sidecars are the default blob sidecar URLs of upload, download and
	// share.
	Sidecars []string `json:"sidecars,omitempty"`
}

// cli is the state shared by every command of one run.
type cli struct {
	ctx            context.Context // the run's: cancelled by Ctrl-C or SIGTERM
	stdin          io.Reader
	stdout, stderr io.Writer
	stdinLines     *bufio.Reader // see readLine
	// envPassphraseStale: keys change-passphrase was given a new
	// passphrase other than EMRCLI_PASSPHRASE, which is set.
	envPassphraseStale bool

	home, node, chainID, backend string
	witnesses                    []string
	jsonOut, noVerify            bool
	timeout                      time.Duration

	kr *keyring.Keyring
	c  *client.Client
}

func defaultHome() string {
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".emrcli")
	}
	return ".emrcli"
}

// close releases what the run opened.
func (a *cli) close() {
	if a.c != nil {
		a.c.Close()
		a.c = nil
	}
}

func newRootCmd(a *cli) *cobra.Command {
	stdin, stdout, stderr := a.stdin, a.stdout, a.stderr
	root := &cobra.Command{
		Use:   "emrcli",
		Short: "emrchain client: keys, consents, records and a verified audit log",
		Long: `emrcli is the client of emrchain, the permissioned chain for electronic
medical records. It keeps keys (encrypted at rest), signs transactions (patient
enrollment, consents, record metadata, reads), waits for them to commit, and
shows what the chain holds.

Every query result emrcli shows is verified: the CometBFT light client checks
the header after the queried height against a trust root (emrcli light init),
cross-checked with the --witness nodes, and the state proofs are checked
against that header's AppHash. A node that lies gets an error, never output.
--no-verify turns this off and says so; grant, revoke and rotate-key (which
rotate the patient key), share, add-record and upload (the patient's own too)
then refuse to run, since they would seal keys to, or wrap them under, keys
taken on the node's word.

Settings come from flags, then EMRCLI_HOME, EMRCLI_NODE, EMRCLI_KEYRING_BACKEND,
EMRCLI_SIDECAR, then HOME/config.json (written by "emrcli light init").
Commands of one home may run at once: each holds the light store (HOME/light)
only while it verifies a header, and waits for another that is verifying.

Exit codes: 0 success, 1 failure (the chain refused, verification failed, I/O),
2 wrong command line. Failures print one line: "Error: <reason>".`,
		Example: `  emrcli light init --genesis ./node0/config/genesis.json --node http://127.0.0.1:26657
  emrcli keys add alice
  emrcli patient enroll --from alice --name "Ada Lovelace" --birth-date 1815-12-10
  emrcli grant --from alice --to 3F2A...9C --rights read,write --categories lab-results --until 2027-01-01
  emrcli upload --from dr-who --patient 5be1...9f --category lab-results ./cbc.json
  emrcli download --from dr-who --patient 5be1...9f --record 1 -o cbc.json
  emrcli audit --from alice`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.home, "home", defaultHome(), "emrcli home: keyrings, light client store, config.json (env "+envHome+")")
	pf.StringVar(&a.node, "node", client.DefaultNode, "CometBFT RPC endpoint of a full node (env "+envNode+")")
	pf.StringVar(&a.chainID, "chain-id", "", "chain id (default: the trust root's; with --no-verify, the node's)")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON (for scripts) instead of text")
	pf.BoolVar(&a.noVerify, "no-verify", false, "do NOT verify results with the light client (output says so)")
	pf.StringVar(&a.backend, "keyring-backend", keyring.BackendFile, `keyring: "file" (encrypted, passphrase from a prompt or `+envPassphrase+`) or "test" (UNENCRYPTED, scripts only) (env `+envKeyringBackend+`)`)
	pf.StringArrayVar(&a.witnesses, "witness", nil, "RPC endpoint of another full node the light client cross-checks headers with (repeatable; default: config.json, else the --node itself)")
	pf.DurationVar(&a.timeout, "timeout", client.DefaultTimeout, "bound on each network call and each wait for a block")

	root.AddCommand(
		newKeysCmd(a), newLightCmd(a), newPatientCmd(a), newMemberCmd(a), newStudyCmd(a),
		newGrantCmd(a), newRevokeCmd(a), newRotateKeyCmd(a), newAddRecordCmd(a), newReadCmd(a),
		newUploadCmd(a), newDownloadCmd(a), newShareCmd(a),
		newRecordsCmd(a), newPermissionsCmd(a), newGrantsCmd(a), newAuditCmd(a), newSharesCmd(a), newParamsCmd(a),
		newEmergencyReadsCmd(a), newBreakGlassLogCmd(a),
		newTxCmd(a), newProposeCmd(a), newApproveCmd(a), newWithdrawCmd(a), newProposalsCmd(a), newValidatorsCmd(a),
		newOrganizationsCmd(a),
	)
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "completion":
			c.Example = `  source <(emrcli completion bash)
  emrcli completion zsh > "${fpath[1]}/_emrcli"
  emrcli completion fish > ~/.config/fish/completions/emrcli.fish`
			for _, sh := range c.Commands() {
				sh.Example = fmt.Sprintf("  emrcli completion %s --help\n  emrcli completion %s > emrcli-completion.%s", sh.Name(), sh.Name(), sh.Name())
			}
		case "help":
			c.Example = "  emrcli help grant\n  emrcli help keys add"
		}
	}
	markUsageErrors(root)
	return root
}

// markUsageErrors makes cobra's own complaints about a command line (a
// flag it cannot parse, the wrong number of arguments) usageErrors, so
// that isUsage need not guess from their words.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if check := c.Args; check != nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// setup resolves settings: flag > environment > HOME/config.json > default.
func (a *cli) setup(cmd *cobra.Command, _ []string) error {
	flags := cmd.Flags()
	if !flags.Changed("home") {
		if v := os.Getenv(envHome); v != "" {
			a.home = v
		}
	}
	if a.home == "" {
		return usagef("--home is empty")
	}
	conf, err := a.loadConfig()
	if err != nil {
		return err
	}
	if !flags.Changed("node") {
		if v := os.Getenv(envNode); v != "" {
			a.node = v
		} else if conf.Node != "" {
			a.node = conf.Node
		}
	}
	if !flags.Changed("chain-id") && a.chainID == "" {
		a.chainID = conf.ChainID
	}
	if !flags.Changed("witness") && len(a.witnesses) == 0 {
		a.witnesses = conf.Witnesses
	}
	if !flags.Changed("keyring-backend") {
		if v := os.Getenv(envKeyringBackend); v != "" {
			a.backend = v
		} else if conf.KeyringBackend != "" {
			a.backend = conf.KeyringBackend
		}
	}
	// "127.0.0.1:26657" is read as http://, as --sidecar is.
	a.node = withScheme(a.node)
	for i, w := range a.witnesses {
		a.witnesses[i] = withScheme(w)
	}
	if a.backend != keyring.BackendFile && a.backend != keyring.BackendTest {
		return usagef("--keyring-backend %q: want %q or %q", a.backend, keyring.BackendFile, keyring.BackendTest)
	}
	if a.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	return nil
}

// withScheme is u, with "http://" in front when it names no scheme (a
// bare "host:port").
func withScheme(u string) string {
	if u != "" && !strings.Contains(u, "://") {
		return "http://" + u
	}
	return u
}

func (a *cli) loadConfig() (fileConfig, error) {
	var conf fileConfig
	raw, err := os.ReadFile(filepath.Join(a.home, configFileName))
	if errors.Is(err, os.ErrNotExist) {
		return conf, nil
	}
	if err != nil {
		return conf, err
	}
	if err := json.Unmarshal(raw, &conf); err != nil {
		return conf, fmt.Errorf("%s: %w", filepath.Join(a.home, configFileName), err)
	}
	return conf, nil
}

// saveConfig replaces config.json whole: a crash leaves the old one or
// the new one.
func (a *cli) saveConfig(conf fileConfig) error {
	if err := durable.MkdirAll(a.home, 0o700); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return durable.ReplaceFile(filepath.Join(a.home, configFileName), append(raw, '\n'), 0o600)
}

func (a *cli) lightHome() string { return filepath.Join(a.home, "light") }

// keyring opens the configured keyring.
func (a *cli) keyring() (*keyring.Keyring, error) {
	if a.kr != nil {
		return a.kr, nil
	}
	kr, err := keyring.Open(a.backend, a.home, a.passphrase)
	if err != nil {
		return nil, err
	}
	a.kr = kr
	return kr, nil
}

// key loads (and, file backend, decrypts) the key called name.
func (a *cli) key(name string) (*keyring.Key, error) {
	if name == "" {
		return nil, usagef("--from is required: the name of a key in the keyring")
	}
	kr, err := a.keyring()
	if err != nil {
		return nil, err
	}
	return kr.Get(name)
}

// client connects to the node, verified unless --no-verify.
func (a *cli) client(ctx context.Context) (*client.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	if a.noVerify {
		fmt.Fprintln(a.stderr, "WARNING: --no-verify: results are NOT verified; a lying node would go unnoticed")
	}
	c, err := client.New(ctx, client.Config{
		Node: a.node, ChainID: a.chainID, Witnesses: a.witnesses, Home: a.lightHome(),
		Verify: !a.noVerify, Timeout: a.timeout,
	})
	if err != nil {
		if !a.noVerify {
			if tr, rerr := client.ReadTrustRoot(a.lightHome()); tr == nil && rerr == nil {
				return nil, fmt.Errorf("%w (run emrcli light init first, or pass --no-verify)", err)
			}
		}
		return nil, err
	}
	a.c = c
	return c, nil
}
