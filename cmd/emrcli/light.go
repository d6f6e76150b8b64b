package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/internal/durable"
)

func newLightCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "light",
		Short: "Manage the light client's root of trust",
		Long: `emrcli verifies every answer against headers checked by the CometBFT light
client, starting from a root of trust: a header the operator vouches for.
"light init" sets it; its store lives in HOME/light.`,
		Example: `  emrcli light init --genesis ./genesis.json --node http://10.0.0.1:26657 \
    --witness http://10.0.0.2:26657 --witness http://10.0.0.3:26657
  emrcli light init --height 1200 --hash 6F1C...E2 --chain-id emr-prod-1
  emrcli light status`,
	}
	cmd.AddCommand(newLightInitCmd(a), newLightStatusCmd(a))
	return cmd
}

func newLightInitCmd(a *cli) *cobra.Command {
	var (
		height   int64
		hashHex  string
		genesis  string
		period   time.Duration
		force    bool
		sidecars []string
	)
	cmd := &cobra.Command{
		Use:   "init (--genesis FILE | --height H --hash HEX)",
		Short: "Set the root of trust: a trusted header, or the genesis the operator handed over",
		Long: `init sets the header the light client trusts and verifies everything else from.

With --height and --hash, the operator vouches for that header (get them from
a validator operator you trust, out of band). With --genesis, emrcli fetches
a header and its commit from --node and checks that its chain id is the
genesis', that its validators are the genesis validators and that more than
two thirds of them signed it; that header becomes the root. It is the first
block while that is younger than half of --trust-period, else the oldest
block younger than that (or a restored node's earliest). This works only
while that header's validators and next validators are the genesis set:
once the consortium has changed them, init refuses and asks for --height
and --hash. Either way the root is compared with each --witness's header at
its height, so give witnesses run by other hospitals.

A trusted header is usable to verify the next one for --trust-period; a client
idle for longer needs a new root (init --force). init also records --node,
--chain-id and --witness in HOME/config.json as defaults for later commands,
and --sidecar as the blob sidecars of upload, download and share.`,
		Example: `  emrcli light init --genesis ./node0/config/genesis.json --node http://127.0.0.1:26657 --sidecar http://127.0.0.1:7070
  emrcli light init --height 1200 --hash 6F1CA3...E2 --witness http://10.0.0.2:26657
  emrcli light init --genesis genesis.json --force`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if (genesis == "") == (height == 0 && hashHex == "") {
				return usagef("give either --genesis FILE or --height and --hash")
			}
			if period <= 0 {
				return usagef("--trust-period %s: want a positive duration (the default is %s)", period, client.DefaultTrustPeriod)
			}
			trust := &client.TrustOptions{Height: height, Period: period}
			chainID := a.chainID
			if genesis != "" {
				if !cmd.Flags().Changed("chain-id") {
					chainID = "" // the genesis names it; config.json's may be the old chain's
				}
				raw, err := os.ReadFile(genesis)
				if err != nil {
					return err
				}
				id, t, err := client.TrustFromGenesis(ctx, a.node, raw, period)
				if err != nil {
					return err
				}
				if chainID != "" && chainID != id {
					return usagef("--chain-id %q differs from the genesis' %q", chainID, id)
				}
				chainID, trust = id, t
			} else {
				if height <= 0 {
					return usagef("--height must be positive")
				}
				h, ok := decodeHex(hashHex, 32)
				if !ok {
					return usagef("--hash %q: want the 64 hex characters of a block hash", hashHex)
				}
				trust.Hash = h
			}
			conf, err := a.loadConfig()
			if err != nil {
				return err
			}
			if len(sidecars) > 0 {
				if conf.Sidecars, err = a.sidecarURLs(sidecars); err != nil {
					return err
				}
			}
			// Witnesses config.json keeps for another chain are not this
			// one's: cross-checking against them would fail, or check
			// nothing of this chain.
			var dropped []string
			oldChain := conf.ChainID
			if !cmd.Flags().Changed("witness") && chainID != "" && oldChain != "" && oldChain != chainID {
				dropped, a.witnesses = a.witnesses, nil
			}
			// Said at once here, before anything is fetched, and again under
			// the store's lock before the new store goes in (another init
			// may have set a root meanwhile).
			if !force {
				if err := a.checkNoRoot(); err != nil {
					return err
				}
			}
			if err := durable.MkdirAll(a.home, 0o700); err != nil {
				return err
			}
			// The new store is built beside the old one and replaces it only
			// once the new root verified: a typo in --hash or an unreachable
			// node leaves the old root of trust (and the height it reached) as
			// it was.
			fresh, err := os.MkdirTemp(a.home, ".light-new-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(fresh)
			defer os.Remove(client.StoreLockPath(fresh)) // the client's lock of the new store (client.LockStore)
			// The light client compares the root only with the witnesses
			// that answer, and drops the others without a word: every
			// witness must answer first, and a mistyped one, or one whose
			// node refuses this client, is said now.
			if err := client.CheckWitnesses(ctx, a.node, a.witnesses, a.timeout); err != nil {
				return fmt.Errorf("%w (each --witness must be another validator's RPC address that answers this client)", err)
			}
			c, err := client.New(ctx, client.Config{
				Node: a.node, ChainID: chainID, Witnesses: a.witnesses, Home: fresh,
				Verify: true, Trust: trust, Timeout: a.timeout,
			})
			if err != nil {
				return err
			}
			if err := c.Close(); err != nil {
				return err
			}
			if err := a.installStore(ctx, fresh, force); err != nil {
				return err
			}
			if c, err = client.New(ctx, client.Config{
				Node: a.node, ChainID: chainID, Witnesses: a.witnesses, Home: a.lightHome(),
				Verify: true, Timeout: a.timeout,
			}); err != nil {
				return err
			}
			a.c = c
			conf.Node, conf.ChainID = a.node, c.ChainID()
			if len(a.witnesses) > 0 || len(dropped) > 0 {
				conf.Witnesses = a.witnesses
			}
			if err := a.saveConfig(conf); err != nil {
				return err
			}
			tr := c.TrustRoot()
			out := map[string]any{"chain_id": tr.ChainID, "height": tr.Height, "hash": tr.Hash, "trust_period": tr.Period.String(),
				"node": a.node, "witnesses": a.witnesses, "store": a.lightHome(), "sidecars": conf.Sidecars}
			if len(dropped) > 0 {
				out["dropped_witnesses"] = dropped
			}
			return a.emit(out, func(w io.Writer) {
				if len(dropped) > 0 {
					fmt.Fprintf(w, "Dropped the witnesses of %s (%s): give --witness for each other validator of %s\n", oldChain, strings.Join(dropped, ", "), tr.ChainID)
				}
				fmt.Fprintf(w, "Trusting %s at height %d, header hash %s (trust period %s)\n", tr.ChainID, tr.Height, tr.Hash, tr.Period)
				fmt.Fprintf(w, "Light client store: %s; node %s", a.lightHome(), a.node)
				if len(a.witnesses) > 0 {
					fmt.Fprintf(w, "; witnesses %s", strings.Join(a.witnesses, ", "))
				} else {
					fmt.Fprint(w, "; no other witness (the node is its own: add --witness for each other validator)")
				}
				fmt.Fprintln(w)
				if len(conf.Sidecars) > 0 {
					fmt.Fprintf(w, "Blob sidecars: %s\n", strings.Join(conf.Sidecars, ", "))
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sidecars, "sidecar", nil, "blob sidecar URL to record as the default of upload, download and share (repeatable)")
	f.StringVar(&genesis, "genesis", "", "genesis.json the operator handed over: trust a block its validators signed")
	f.Int64Var(&height, "height", 0, "height of the header to trust")
	f.StringVar(&hashHex, "hash", "", "hash of the header to trust (hex)")
	f.DurationVar(&period, "trust-period", client.DefaultTrustPeriod, "how long a trusted header may verify the next")
	f.BoolVar(&force, "force", false, "replace an existing root of trust (HOME/light), once the new one verified")
	cmd.MarkFlagsMutuallyExclusive("genesis", "height")
	cmd.MarkFlagsMutuallyExclusive("genesis", "hash")
	return cmd
}

// checkNoRoot refuses a home that has a root of trust already (light init
// without --force).
func (a *cli) checkNoRoot() error {
	tr, err := client.ReadTrustRoot(a.lightHome())
	if err != nil {
		// A root that no longer reads is not a missing one: replacing it
		// is the user's call.
		return fmt.Errorf("%w; pass --force to replace the root of trust", err)
	}
	if tr != nil {
		return fmt.Errorf("%s already trusts height %d of %s: pass --force to replace the root of trust", a.lightHome(), tr.Height, tr.ChainID)
	}
	return nil
}

// installStore puts the light store built and verified in fresh (a
// directory beside HOME/light) in HOME/light's place, under the store's
// lock (client.LockStore): no other run is in a light-client operation
// meanwhile, and one that is between two finds the new store at its next
// and, unless the new root is its own, stops there
// (client.ErrTrustRootReplaced). Without force, a root set meanwhile by
// another light init is refused here: of two inits at once, one wins.
//
// The old store is moved aside by its directory's name, never opened: a
// store goleveldb cannot open (a CURRENT naming a lost MANIFEST) is
// replaced as well as a sound one. On Linux the two directories are
// exchanged in one step (durable.Exchange), so a crash leaves the old
// store or the new one in place, with at worst a .light-new-* directory
// beside it. Elsewhere (or on a file system that cannot) it takes two
// renames, and a crash between them leaves no store in HOME/light: the
// old is beside it as .light-new-*.old, and a run then says there is no
// root of trust, until light init is run again.
func (a *cli) installStore(ctx context.Context, fresh string, force bool) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	release, err := client.LockStore(ctx, a.lightHome())
	if err != nil {
		return err
	}
	defer release()
	if !force {
		if err := a.checkNoRoot(); err != nil {
			return err
		}
	}
	// One step where the system can (fresh then names the old store,
	// which the caller removes with it); else two renames.
	old := fresh
	switch err := durable.Exchange(fresh, a.lightHome()); {
	case errors.Is(err, fs.ErrNotExist): // no store yet
		if err := os.Rename(fresh, a.lightHome()); err != nil {
			return err
		}
	case errors.Is(err, durable.ErrNoExchange):
		old = fresh + ".old"
		if err := os.Rename(a.lightHome(), old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Rename(fresh, a.lightHome()); err != nil {
			_ = os.Rename(old, a.lightHome())
			return err
		}
	case err != nil:
		return err
	}
	if err := durable.SyncDir(a.home); err != nil {
		return err
	}
	_ = os.RemoveAll(old)
	return nil
}

func newLightStatusCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show the root of trust and verify the node's latest header",
		Example: "  emrcli light status\n  emrcli light status --json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tr, err := client.ReadTrustRoot(a.lightHome())
			if err != nil {
				return err
			}
			if tr == nil {
				return errors.New("no root of trust: run emrcli light init")
			}
			if a.noVerify {
				return usagef("light status verifies; it makes no sense with --no-verify")
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			h, err := c.VerifyLatest(cmd.Context())
			if err != nil {
				return err
			}
			out := map[string]any{"chain_id": tr.ChainID, "trusted_height": tr.Height, "trusted_hash": tr.Hash,
				"trust_period": tr.Period.String(), "latest_verified_height": h.Height,
				"latest_verified_time": rfc3339(h.Time), "latest_app_hash": h.AppHash.String()}
			return a.emit(out, func(w io.Writer) {
				fields(w, "chain id", tr.ChainID, "root of trust", fmt.Sprintf("height %d, hash %s", tr.Height, tr.Hash),
					"trust period", tr.Period.String(),
					"latest verified header", fmt.Sprintf("height %d at %s, app hash %s", h.Height, rfc3339(h.Time), h.AppHash))
			})
		},
	}
}
