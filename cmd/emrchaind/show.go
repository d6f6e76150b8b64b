package main

import (
	"fmt"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	cmttypes "github.com/cometbft/cometbft/types"
	"github.com/spf13/cobra"
)

// newShowCmd prints what an operator hands to the rest of the consortium:
// the node id its peers allow, and the validator entry of the genesis.
// Neither prints anything secret.
func newShowCmd() *cobra.Command {
	show := &cobra.Command{
		Use:   "show",
		Short: "Print this node's id or its genesis validator entry (nothing secret)",
		Long: `show prints what a hospital hands to the rest of the consortium when it
joins, from the keys init wrote in --home:

  node-id     the P2P node id the other nodes list in app.toml [app]
              allowed_peers (and, as ID@host:port, in persistent_peers)
  validator   the node's entry for genesis.json "validators": its address,
              public key, a voting power of 10 (as init and testnet give
              every validator) and its moniker as name

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
	validator := &cobra.Command{
		Use:     "validator",
		Short:   "Print this node's validator entry for genesis.json",
		Example: `  emrchaind show validator --home ./node0 > st-mary.validator.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conf, err := showConfig(cmd)
			if err != nil {
				return err
			}
			if conf.PrivValidatorListenAddr != "" {
				return fmt.Errorf("this node signs with a remote signer (priv_validator_laddr %s): its public key is the signer's, so ask the signer", conf.PrivValidatorListenAddr)
			}
			key := new(privval.FilePVKey)
			if err := readKeyFile("validator key", conf.PrivValidatorKeyFile(), key); err != nil {
				return err
			}
			out, err := cmtjson.MarshalIndent(genesisValidator(key.PubKey, conf.Moniker), "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return nil
		},
	}
	for _, c := range []*cobra.Command{nodeID, validator} {
		addHomeFlag(c)
		show.AddCommand(c)
	}
	return show
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
