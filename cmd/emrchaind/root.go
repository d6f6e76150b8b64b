package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// Flag names shared by several commands.
const (
	flagHome     = "home"
	flagLogLevel = "log-level"
)

// defaultHome is ~/.emrchaind, or .emrchaind in the working directory when
// the user's home cannot be found.
func defaultHome() string {
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".emrchaind")
	}
	return ".emrchaind"
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "emrchaind",
		Short: "emrchain node: permissioned CometBFT chain for electronic medical records",
		Long: `emrchaind runs an emrchain node: CometBFT consensus and the emrchain state
machine (consents, record metadata, audit log) in one process.

A single development node is two commands away: init writes the configuration,
the validator and node keys, a genesis with a development hospital and the keys
of its registrar; start runs the node.`,
		Example: `  emrchaind init --home ./node0 --chain-id emr-dev
  emrchaind start --home ./node0
  emrchaind version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Shell completion is not part of the node's interface.
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newInitCmd(), newStartCmd(), newSidecarCmd(), newTestnetCmd(), newLoadCmd(), newShowCmd(), newVersionCmd())
	return root
}

// addHomeFlag gives cmd the --home flag (init, start and sidecar: the
// commands that work in a node's home).
func addHomeFlag(cmd *cobra.Command) {
	cmd.Flags().String(flagHome, defaultHome(), "node home directory (config/, data/, dev-keys/)")
}

// addLogLevelFlag gives cmd the --log-level flag; byDefault says what
// level it logs at without it.
func addLogLevelFlag(cmd *cobra.Command, byDefault string) {
	cmd.Flags().String(flagLogLevel, "", `log level, e.g. "info", "debug" or "consensus:info,*:error" (default: `+byDefault+`)`)
}

// homeFlag returns the absolute --home directory.
func homeFlag(cmd *cobra.Command) (string, error) {
	home, err := cmd.Flags().GetString(flagHome)
	if err != nil {
		return "", err
	}
	return filepath.Abs(home)
}
