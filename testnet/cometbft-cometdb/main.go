// Command cometbft-cometdb is CometBFT's own cometbft command (v1.0.1, as
// `go install github.com/cometbft/cometbft/cmd/cometbft` builds it), with
// one change: `start` opens CometBFT's databases through emrchaind's
// store/cometdb provider (64 MiB pebble memtables) instead of cometbft-db's
// defaults. `KV_COMETDB=1 make bench-chain` runs the kvstore network with
// it, so emrchain and kvstore can be compared with the same storage
// settings as well as against stock CometBFT (BENCHMARKS.md).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	cmd "github.com/cometbft/cometbft/cmd/cometbft/commands"
	cfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto"
	"github.com/cometbft/cometbft/libs/cli"
	"github.com/cometbft/cometbft/libs/log"
	nm "github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/proxy"

	"github.com/emrchain/emrchain/store/cometdb"
)

// newNode is nm.DefaultNewNode with cometdb's provider.
func newNode(config *cfg.Config, logger log.Logger, cliParams nm.CliParams, keyGenF func() (crypto.PrivKey, error)) (*nm.Node, error) {
	nodeKey, err := p2p.LoadOrGenNodeKey(config.NodeKeyFile())
	if err != nil {
		return nil, fmt.Errorf("node key %s: %w", config.NodeKeyFile(), err)
	}
	pv, err := privval.LoadOrGenFilePV(config.PrivValidatorKeyFile(), config.PrivValidatorStateFile(), keyGenF)
	if err != nil {
		return nil, fmt.Errorf("validator key %s: %w", config.PrivValidatorKeyFile(), err)
	}
	return nm.NewNodeWithCliParams(context.Background(), config, pv, nodeKey,
		proxy.DefaultClientCreator(config.ProxyApp, config.ABCI, config.DBDir()),
		nm.DefaultGenesisDocProviderFunc(config),
		cometdb.Provider(cometdb.DefaultMemTableMiB),
		nm.DefaultMetricsProvider(config.Instrumentation),
		logger, cliParams)
}

func main() {
	root := cmd.RootCmd
	root.AddCommand(cmd.InitFilesCmd, cmd.ShowNodeIDCmd, cmd.VersionCmd, cmd.NewRunNodeCmd(newNode))
	if err := cli.PrepareBaseCmd(root, "CMT", os.ExpandEnv(filepath.Join("$HOME", cfg.DefaultCometDir))).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
