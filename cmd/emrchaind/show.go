package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto"
	"github.com/cometbft/cometbft/crypto/ed25519"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	cmttypes "github.com/cometbft/cometbft/types"
	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
)

// newShowCmd prints what an operator hands to the rest of the consortium:
// the node id its peers allow, and the validator entry of the genesis.
// Neither prints anything secret.
func newShowCmd() *cobra.Command {
	show := &cobra.Command{
		Use:   "show",
		Short: "Print this node's id, its genesis validator entry or its key's proof of possession (nothing secret)",
		Long: `show prints what a hospital hands to the rest of the consortium when it
joins, from the keys init wrote in --home:

  node-id     the P2P node id the other nodes list in app.toml [app]
              allowed_peers (and, as ID@host:port, in persistent_peers)
  validator   the node's entry for genesis.json "validators": its address,
              public key, a voting power of 10 (as init and testnet give
              every validator) and its moniker as name; with --possession,
              the consensus key's proof of possession, which a proposal
              adding the node as a validator needs

The private keys stay where they are: only public values are printed.`,
		Args: cobra.NoArgs,
	}
	nodeID := &cobra.Command{
		Use:     "node-id",
		Short:   "Print this node's P2P node id",
		Example: `  emrchaind show node-id --home ./node0`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conf, err := showConfig(cmd)
			if err != nil {
				return err
			}
			nodeKey := new(p2p.NodeKey)
			if err := readKeyFile("node key", conf.NodeKeyFile(), nodeKey); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), nodeKey.ID())
			return nil
		},
	}
	var possession, asJSON bool
	var changes uint64
	validator := &cobra.Command{
		Use:   "validator",
		Short: "Print this node's validator entry for genesis.json, or (--possession) its proof of possession",
		Long: `validator prints the node's entry for genesis.json "validators" (JSON):
its address, consensus public key, power and name. The "value" of its
"pub_key" is what "emrcli propose validator --pub-key" takes.

With --possession it prints instead the key's proof of possession for
the chain of this node's genesis: a signature by the consensus key (in
priv_validator_key.json) of "emrchain/v1/validator-possession" 0x00 ||
chain id || 0x00 || public key || N (8 bytes, big-endian), in base64. A
proposal adding the key as a validator must carry it ("emrcli propose
validator --possession"): the chain refuses to add a key whose holder did
not sign it, which catches a mistyped or wrongly pasted key before anyone
votes on it. A joining node's operator runs it once the node has the
consortium's genesis.json (the chain id is that genesis'), and hands the
output, with the key, to the registrar who proposes the node. It proves
the key is held; it grants nothing, and reveals nothing secret. With
--json it prints the chain id, the key, the change count and the
possession as one JSON object.

N (--changes) is the key's change count on the chain: how many executed
proposals have changed its power. It is 0, the default, for a key that
was never a validator: a joining node's. A key that was a validator and
was removed has another (1 for a genesis validator removed, 2 for a key
added and removed, more if its power changed in between), and adding it
again needs a possession for that count: the chain refuses one for
another count, or none, and "emrcli propose validator", which checks the
possession against the count before it signs, names the count it wants
("change count N") and the command to run: this one, with --changes N. The count moves on with
every executed change of the key, so a possession is good until the
key's next change only: the one kept in the proposal that first added a
key cannot add it again after its removal.`,
		Example: `  emrchaind show validator --home ./node0 > st-mary.validator.json
  emrchaind show validator --possession --home ./node0
  emrchaind show validator --possession --json --home ./node0 > st-mary.possession.json
  emrchaind show validator --possession --changes 2 --home ./node0   # re-adding a key added and removed once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conf, err := showConfig(cmd)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("changes") && !possession {
				return fmt.Errorf("--changes is the change count of --possession: give both")
			}
			if conf.PrivValidatorListenAddr != "" {
				if possession {
					return fmt.Errorf("this node signs with a remote signer (priv_validator_laddr %s): the possession is the signer key's signature of app.ValidatorPossessionSignBytes (see --help), which only the signer can make", conf.PrivValidatorListenAddr)
				}
				return fmt.Errorf("this node signs with a remote signer (priv_validator_laddr %s): its public key is the signer's, so ask the signer", conf.PrivValidatorListenAddr)
			}
			key := new(privval.FilePVKey)
			if err := readKeyFile("validator key", conf.PrivValidatorKeyFile(), key); err != nil {
				return err
			}
			if possession {
				return showPossession(cmd, conf, key, changes, asJSON)
			}
			out, err := cmtjson.MarshalIndent(genesisValidator(key.PubKey, conf.Moniker), "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return nil
		},
	}
	validator.Flags().BoolVar(&possession, "possession", false, "print the consensus key's proof of possession for this node's chain (base64), which a proposal adding it as a validator needs")
	validator.Flags().BoolVar(&asJSON, "json", false, "with --possession: print the chain id, the key, the change count and the possession as JSON")
	validator.Flags().Uint64Var(&changes, "changes", 0, "with --possession: the key's change count on the chain (executed proposals that changed its power): 0 for a key never a validator; to re-add a removed key, the count \"emrcli propose validator\" names")
	for _, c := range []*cobra.Command{nodeID, validator} {
		addHomeFlag(c)
		show.AddCommand(c)
	}
	return show
}

// showPossession prints key's proof of possession for the chain of
// conf's genesis at change count changes
// (app.ValidatorPossessionSignBytes): the base64 signature alone on
// stdout, to pass on as it is, and the key, chain and count on stderr; or
// all four as JSON.
func showPossession(cmd *cobra.Command, conf *cmtcfg.Config, key *privval.FilePVKey, changes uint64, asJSON bool) error {
	if key.PubKey.Type() != ed25519.KeyType {
		return fmt.Errorf("validator key %s is %s: emrchain's validators have ed25519 keys", conf.PrivValidatorKeyFile(), key.PubKey.Type())
	}
	gen, err := cmttypes.GenesisDocFromFile(conf.GenesisFile())
	if err != nil {
		return fmt.Errorf("genesis (the possession is for its chain id; put the consortium's genesis.json in place first): %w", err)
	}
	pub := key.PubKey.Bytes()
	sig, err := key.PrivKey.Sign(app.ValidatorPossessionSignBytes(gen.ChainID, pub, changes))
	if err != nil {
		return fmt.Errorf("sign the possession: %w", err)
	}
	if !app.VerifyValidatorPossession(gen.ChainID, pub, changes, sig) {
		return fmt.Errorf("validator key %s: its private key does not match its public key", conf.PrivValidatorKeyFile())
	}
	proof := base64.StdEncoding.EncodeToString(sig)
	if asJSON {
		out, err := json.MarshalIndent(struct {
			ChainID    string `json:"chain_id"`
			PubKey     string `json:"pub_key"`
			Changes    uint64 `json:"changes"`
			Possession string `json:"possession"`
		}{gen.ChainID, app.ValidatorKeyText(pub), changes, proof}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), string(out))
		return nil
	}
	fmt.Fprintln(cmd.OutOrStdout(), proof)
	fmt.Fprintf(cmd.ErrOrStderr(), "(the proof of possession of validator key %s for chain %q at change count %d: give both to the registrar who proposes the node, for emrcli propose validator --pub-key and --possession)\n",
		app.ValidatorKeyText(pub), gen.ChainID, changes)
	return nil
}

// showConfig is the config of --home.
func showConfig(cmd *cobra.Command) (*cmtcfg.Config, error) {
	home, err := homeFlag(cmd)
	if err != nil {
		return nil, err
	}
	return loadCometConfig(home)
}

// validatorPower is every validator's voting power in the genesis init,
// testnet and show write: the hospitals weigh the same.
const validatorPower = 10

// genesisValidator is the genesis entry of the validator with key pub.
func genesisValidator(pub crypto.PubKey, name string) cmttypes.GenesisValidator {
	return cmttypes.GenesisValidator{Address: pub.Address(), PubKey: pub, Power: validatorPower, Name: name}
}
