package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	cmtversion "github.com/cometbft/cometbft/version"
	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/abci"
)

// Set at link time:
//
//	go build -ldflags "-X main.version=v0.1.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/emrchaind
var (
	version = "dev"
	commit  = ""
)

// buildCommit is the commit set at link time, else the VCS revision Go
// stamped into the binary, else "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the versions of emrchaind, CometBFT, ABCI and Go",
		Example: `  emrchaind version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "emrchaind:   %s\n", version)
			fmt.Fprintf(w, "commit:      %s\n", buildCommit())
			fmt.Fprintf(w, "app:         protocol %d (version.app in block headers)\n", abci.AppVersion)
			fmt.Fprintf(w, "cometbft:    %s (ABCI %s, block protocol %d, p2p protocol %d)\n",
				cmtversion.CMTSemVer, cmtversion.ABCISemVer, cmtversion.BlockProtocol, cmtversion.P2PProtocol)
			fmt.Fprintf(w, "go:          %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
