package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/internal/durable"
)

type keyView struct {
	Name       string `json:"name"`
	Backend    string `json:"backend"`
	Address    string `json:"address"`
	SignPubKey string `json:"sign_pub_key"`
	EncPubKey  string `json:"enc_pub_key"`
	PatientID  string `json:"patient_id,omitempty"`
	Created    string `json:"created"`
}

func viewKey(i keyring.Info) keyView {
	return keyView{Name: i.Name, Backend: i.Backend, Address: upperHex(i.Address), SignPubKey: hexStr(i.SignPubKey),
		EncPubKey: hexStr(i.EncPubKey), PatientID: hexStr(i.PatientID), Created: i.Created.Format(time.RFC3339)}
}

func (k keyView) text(w io.Writer) {
	fields(w, "name", k.Name, "address", k.Address, "signing key", k.SignPubKey, "encryption key", k.EncPubKey,
		"patient id", k.PatientID, "keyring", k.Backend, "created", k.Created)
}

// completeKeys completes key names.
func (a *cli) completeKeys(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if err := a.setup(cmd, args); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	kr, err := a.keyring()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	infos, _ := kr.List()
	var names []string
	for _, i := range infos {
		names = append(names, i.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func newKeysCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage keys: a signing and an encryption key per name, encrypted at rest",
		Long: `Each key has an ed25519 signing key (its address is the member's account), an
X25519 encryption key (patients seal their key-encryption key to it), and a
random patient secret (the pseudonymous patient id derives from it). Keys
that enroll as patients also keep the patient id and every version of the
patient's key-encryption key.

The "file" keyring (HOME/keyring-file, files 0600) encrypts each key with
AES-256-GCM under an argon2id-derived key; the passphrase comes from
a prompt (typed without echo on Linux, macOS, the BSDs and Windows
consoles), or for scripts EMRCLI_PASSPHRASE when set and not empty (kept
out of shell history by the script's own means: a variable set on a command
line is in the history). The "test" keyring (HOME/keyring-test) keeps keys
UNENCRYPTED, for scripts and tests only.`,
		Example: `  emrcli keys add alice
  emrcli keys list
  emrcli keys show alice --address
  emrcli keys change-passphrase alice
  emrcli keys import-dev ./node0/dev-keys/registrar.json --keyring-backend test`,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:               "add NAME",
			Short:             "Generate a new key",
			Example:           "  emrcli keys add alice\n  emrcli keys add ci-bot --keyring-backend test",
			Args:              exactArgs(1, "exactly one key NAME"),
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE: func(cmd *cobra.Command, args []string) error {
				kr, err := a.keyring()
				if err != nil {
					return err
				}
				k, err := kr.Add(args[0])
				if err != nil {
					return err
				}
				v := viewKey(k.Info(kr.Backend()))
				return a.emit(v, func(w io.Writer) {
					fmt.Fprintf(w, "Created key %q in %s\n", v.Name, kr.Dir())
					v.text(w)
				})
			},
		},
		&cobra.Command{
			Use:     "list",
			Short:   "List the keys (no passphrase needed)",
			Example: "  emrcli keys list\n  emrcli keys list --json",
			Args:    noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				kr, err := a.keyring()
				if err != nil {
					return err
				}
				infos, err := kr.List()
				if err != nil && infos == nil {
					return err
				}
				if err != nil {
					// The readable keys are listed all the same.
					fmt.Fprintf(a.stderr, "warning: %v\n", err)
				}
				views := []keyView{}
				var rows [][]string
				for _, i := range infos {
					v := viewKey(i)
					views = append(views, v)
					rows = append(rows, []string{v.Name, v.Address, v.PatientID})
				}
				return a.emit(views, func(w io.Writer) { table(w, []string{"NAME", "ADDRESS", "PATIENT ID"}, rows) })
			},
		},
		newKeysShowCmd(a), newKeysDeleteCmd(a), newKeysChangePassphraseCmd(a), newKeysExportCmd(a), newKeysImportCmd(a), newKeysImportDevCmd(a),
	)
	return cmd
}

func newKeysShowCmd(a *cli) *cobra.Command {
	var onlyAddr bool
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a key's address and public keys",
		Example:           "  emrcli keys show alice\n  emrcli keys show alice --address",
		Args:              exactArgs(1, "exactly one key NAME"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := a.info(args[0])
			if err != nil {
				return err
			}
			v := viewKey(info)
			if onlyAddr && !a.jsonOut {
				fmt.Fprintln(a.stdout, v.Address)
				return nil
			}
			return a.emit(v, v.text)
		},
	}
	cmd.Flags().BoolVar(&onlyAddr, "address", false, "print only the address")
	return cmd
}

func newKeysDeleteCmd(a *cli) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a key (irreversibly: export it first)",
		Example:           "  emrcli keys delete old-key --yes",
		Args:              exactArgs(1, "exactly one key NAME"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			// A key file that no longer reads can still be deleted: it is
			// useless as it is, and nothing else removes it.
			if _, err := a.info(args[0]); err != nil && !errors.Is(err, keyring.ErrCorrupt) {
				return err
			}
			if !yes {
				fmt.Fprintf(a.stderr, "Delete key %q? Its patient keys go with it. [y/N] ", args[0])
				line, _ := a.readLine()
				if s := strings.ToLower(strings.TrimSpace(line)); s != "y" && s != "yes" {
					return fmt.Errorf("not deleted")
				}
			}
			if err := a.kr.Delete(args[0]); err != nil {
				return err
			}
			return a.emit(map[string]string{"deleted": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "Deleted key %q\n", args[0]) })
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func newKeysChangePassphraseCmd(a *cli) *cobra.Command {
	kdf := keyring.DefaultKDF
	return &cobra.Command{
		Use:   "change-passphrase NAME",
		Short: "Change a key's passphrase (and move it to the current encryption cost)",
		Long: fmt.Sprintf(`change-passphrase re-encrypts a key of the "file" keyring under a new
passphrase. It asks for the current passphrase (%[1]s, else a
prompt or a line of standard input), then for the new one, at least %[3]d
characters, twice (%[2]s, else a prompt or two lines of
standard input). The key itself (address, encryption key, patient keys)
stays the same.

The key file is rewritten with a fresh salt at the current argon2id cost
(t=%[4]d, m=%[5]d MiB, p=%[6]d), or at the key's own where that is higher in
a setting (a change never lowers it): giving the same passphrase again only
moves an old key up to that cost.

Other emrcli runs that unlocked the key before the change (a revoke in
progress, say) can no longer save it: they fail, the key having been
"written anew", and must be run again with the new passphrase. For the
service key of an emrchaind sidecar (app.toml's emergency_key or
storage_key), put the new passphrase in the file emergency_passphrase_file
or storage_passphrase_file names (else EMRCHAIND_EMERGENCY_PASSPHRASE or
EMRCHAIND_STORAGE_PASSPHRASE) before the sidecar next starts: a running
sidecar keeps the key it unlocked, a restarted one unlocks it anew.

Exports made earlier (keys export) keep the passphrase they were made with,
and a copy of the old key file (a backup) still opens with the old one: if
the file may have leaked with its passphrase, make a new key instead. Keys
of the "test" keyring are unencrypted and have no passphrase.`,
			envPassphrase, envNewPassphrase, keyring.MinPassphraseLen, kdf.Time, kdf.MemoryKiB/1024, kdf.Threads),
		Example:           "  emrcli keys change-passphrase alice\n  emrcli keys change-passphrase er --home /etc/emrchain/er   # app.toml: emergency_key, emergency_keyring_home",
		Args:              exactArgs(1, "exactly one key NAME"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := a.keyring()
			if err != nil {
				return err
			}
			if err := kr.ChangePassphrase(args[0]); err != nil {
				return err
			}
			if a.envPassphraseStale {
				// It opened the key: it is the old passphrase.
				fmt.Fprintf(a.stderr, "Note: %s still holds the old passphrase; later commands need the new one.\n", envPassphrase)
			}
			file := kr.Path(args[0])
			return a.emit(map[string]string{"passphrase_changed": args[0], "file": file}, func(w io.Writer) {
				fmt.Fprintf(w, "Changed the passphrase of key %q (%s)\n", args[0], file)
			})
		},
	}
}

func newKeysExportCmd(a *cli) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export NAME",
		Short: "Export a key, encrypted under an export passphrase",
		Long: `export writes the whole key (signing and encryption keys, patient secret,
patient id, every key-encryption key version) encrypted with AES-256-GCM under
an argon2id key from an export passphrase (EMRCLI_EXPORT_PASSPHRASE or a
prompt), to --output (mode 0600) or standard output.`,
		Example:           "  emrcli keys export alice --output alice.key\n  emrcli keys import alice alice.key",
		Args:              exactArgs(1, "exactly one key NAME"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := a.keyring()
			if err != nil {
				return err
			}
			blob, err := kr.Export(args[0])
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err = a.stdout.Write(blob)
				return err
			}
			// keys delete says "export it first": the name must outlive a crash.
			if err := durable.CreateFile(output, blob, 0o600); err != nil {
				return err
			}
			return a.emit(map[string]string{"exported": args[0], "file": output}, func(w io.Writer) {
				fmt.Fprintf(w, "Exported key %q to %s\n", args[0], output)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file (created, mode 0600) instead of standard output")
	return cmd
}

func newKeysImportCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "import NAME FILE",
		Short:   "Import a key exported with emrcli keys export",
		Example: "  emrcli keys import alice alice.key",
		Args:    exactArgs(2, "NAME FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			kr, err := a.keyring()
			if err != nil {
				return err
			}
			k, err := kr.Import(args[0], raw)
			if err != nil {
				if _, derr := keyring.ParseDevKey(raw); derr == nil {
					return usagef("%s is a development key file, not an export: import it with emrcli keys import-dev %s", args[1], args[1])
				}
				if errors.Is(err, keyring.ErrWrongPassphrase) {
					// Not the keyring's passphrase: the one the export
					// was made with.
					return fmt.Errorf("%s: the export passphrase (%s, or the one asked for) does not open it: %w", args[1], envExportPassphrase, err)
				}
				return err
			}
			v := viewKey(k.Info(kr.Backend()))
			if kr.Backend() == keyring.BackendTest {
				// An export is a real key, under a passphrase: the test
				// backend (perhaps EMRCLI_KEYRING_BACKEND=test left set
				// by a script) keeps it in the clear.
				fmt.Fprintf(a.stderr, "Warning: key %q is stored UNENCRYPTED in the test keyring (%s): its private keys and the patient's key-encryption keys are in the clear on disk. "+
					"Delete it and import it again with --keyring-backend file unless this is a test.\n", v.Name, kr.Dir())
			}
			// Two copies of one account in one keyring drift apart: a
			// rotation made with one (a revoke) leaves the other without
			// the new key-encryption key.
			if infos, err := kr.List(); err == nil {
				for _, other := range infos {
					if other.Name != k.Name && bytes.Equal(other.Address, k.Address()) {
						fmt.Fprintf(a.stderr, "Warning: key %q holds the same account (%s). When one copy rotates the patient's key (emrcli revoke), "+
							"the other cannot read newer records: keep one, or export the one that rotated and import it again.\n", other.Name, v.Address)
					}
				}
			}
			return a.emit(v, func(w io.Writer) {
				fmt.Fprintf(w, "Imported key %q\n", v.Name)
				v.text(w)
			})
		},
	}
}

func newKeysImportDevCmd(a *cli) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import-dev FILE",
		Short: "Import an emrchaind development key file (init: HOME/dev-keys/NAME.json; testnet: DIR/keys/NAME.json)",
		Long: `import-dev reads a development key file written in the clear by
"emrchaind init" (HOME/dev-keys/, e.g. the dev registrar) or "emrchaind
testnet" (DIR/keys/, the registrars) and stores it in the keyring, so
scripts can sign as that member. Development keys are for development only.
A node's own keys (config/node_key.json, priv_validator_key.json) are not
members' keys.`,
		Example: "  emrcli keys import-dev ./node0/dev-keys/registrar.json --keyring-backend test",
		Args:    exactArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			kr, err := a.keyring()
			if err != nil {
				return err
			}
			k, d, err := kr.ImportDev(name, raw)
			if err != nil {
				if bytes.Contains(raw, []byte(`"priv_key"`)) {
					return usagef("%s is a CometBFT key of a node (node_key.json or priv_validator_key.json), not a member's: the members' development keys are under dev-keys/ (emrchaind init) or keys/ (emrchaind testnet)", args[0])
				}
				return err
			}
			v := viewKey(k.Info(kr.Backend()))
			return a.emit(v, func(w io.Writer) {
				fmt.Fprintf(w, "Imported dev key %q (%s of %s)\n", v.Name, d.Role, d.OrganizationID)
				v.text(w)
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "store under this name (default: the name in the file)")
	return cmd
}
