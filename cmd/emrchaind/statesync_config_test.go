package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
)

// TestStateSyncSettings: [statesync] enable = true without what a joining
// node needs is refused when the config is read, with errStateSync and a
// hint; with rpc_servers and the trust settings it is read as written.
func TestStateSyncSettings(t *testing.T) {
	write := func(f func(c *cmtcfg.Config)) string {
		home := t.TempDir()
		conf := cmtcfg.DefaultConfig()
		conf.SetRoot(home)
		f(conf)
		if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
			t.Fatal(err)
		}
		cmtcfg.WriteConfigFile(filepath.Join(home, "config", "config.toml"), conf)
		return home
	}
	_, err := loadCometConfig(write(func(c *cmtcfg.Config) { c.StateSync.Enable = true }))
	if !errors.Is(err, errStateSync) || !strings.Contains(err.Error(), "trust_hash") {
		t.Fatalf("statesync without trust settings: %v, want errStateSync naming what is needed", err)
	}
	conf, err := loadCometConfig(write(func(c *cmtcfg.Config) {
		c.StateSync.Enable = true
		c.StateSync.RPCServers = []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}
		c.StateSync.TrustHeight, c.StateSync.TrustHash = 5, strings.Repeat("AB", 32)
		c.StateSync.TrustPeriod = time.Hour
	}))
	if err != nil || !conf.StateSync.Enable || conf.StateSync.TrustHeight != 5 || len(conf.StateSync.RPCServers) != 2 {
		t.Fatalf("complete statesync settings: %+v, %v", conf.StateSync, err)
	}
}
