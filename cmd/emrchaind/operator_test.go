package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/store"
)

// What a session-54 review of emrchaind as its operator found: init --force
// wiped a running node's home, a wrong config.toml db_backend rewrote
// CometBFT's databases, an interrupted init --force lost the blob store's
// setting, and a metrics port in use was only logged.

// TestInitForceRefusesARunningNode: init --force on the home of a running
// node refuses and deletes nothing, whatever config.toml's db_dir (the
// lock is in HOME/data, which holds the validator's last-sign state and
// which init --force deletes). It used to delete the live node's
// databases, exit 0, and leave the running node to write its last-sign
// state (the old chain's height) into the new home, which could then never
// sign block 1 ("height regression"); a re-review found the first mend
// locking db_dir, which init --force did not look at.
func TestInitForceRefusesARunningNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	for _, dbDir := range []string{"data", "db"} {
		t.Run("db_dir="+dbDir, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			home, rpcPort := initLoopbackHome(t, "--timeout-commit", "100ms", "--empty-blocks-interval", "0s")
			if dbDir != "data" {
				editFile(t, filepath.Join(home, "config", "config.toml"), `db_dir = "data"`, `db_dir = "`+dbDir+`"`)
			}
			node := startNode(t, home, "run1.log")
			waitHeight(ctx, t, node, rpcPort, 3)

			args := append([]string{"init", "--home", home, "--chain-id", "emr-node-test", "--force"}, loopbackFlags(t, rpcPort)...)
			out, err := exec.Command(binary(t), args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "a node runs on this home") {
				t.Fatalf("init --force on the home of a running node: %v\n%s\nwant a refusal saying a node runs there", err, out)
			}
			for _, f := range []string{filepath.Join(dbDir, "blockstore.db"), filepath.Join("data", "priv_validator_state.json"), filepath.Join("config", "node_key.json")} {
				if _, err := os.Stat(filepath.Join(home, f)); err != nil {
					t.Errorf("the refused init --force deleted the running node's %s: %v", f, err)
				}
			}
			// A second start on the home is told the same, not that its
			// addresses are in use.
			out, err = exec.CommandContext(ctx, binary(t), "start", "--home", home).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "a node runs on this home") {
				t.Fatalf("a second start on the home of a running node: %v\n%.2000s\nwant a refusal saying a node runs there", err, out)
			}
			waitHeight(ctx, t, node, rpcPort, 5) // the node runs on
		})
	}
}

// TestTestnetForceRefusesARunningNode: testnet --force deletes the node
// homes of the testnet in DIR, and refuses while one of its nodes runs (it
// holds the lock start takes), as init --force does.
func TestTestnetForceRefusesARunningNode(t *testing.T) {
	out := filepath.Join(t.TempDir(), "net")
	if o, err := run(t, "testnet", "--output", out, "--validators", "2", "--base-port", "30400"); err != nil {
		t.Fatalf("testnet: %v\n%s", err, o)
	}
	data := filepath.Join(out, "node1", "data")
	release, err := lockNodeHome(context.Background(), data) // node1 runs
	if err != nil {
		t.Fatal(err)
	}
	o, err := run(t, "testnet", "--output", out, "--validators", "2", "--base-port", "30400", "--force")
	if err == nil || !strings.Contains(err.Error(), "a node runs on this home") {
		t.Fatalf("testnet --force over a testnet whose node1 runs: %v\n%s\nwant a refusal saying a node runs there", err, o)
	}
	if _, err := os.Stat(filepath.Join(data, "priv_validator_state.json")); err != nil {
		t.Errorf("the refused testnet --force deleted node1's state: %v", err)
	}
	release()
	if o, err := run(t, "testnet", "--output", out, "--validators", "2", "--base-port", "30400", "--force"); err != nil {
		t.Fatalf("testnet --force once node1 stopped: %v\n%s", err, o)
	}
}

// TestStartRefusesAnotherEngineForCometBFT: config.toml db_backend naming
// another engine than the one that wrote CometBFT's databases is refused,
// naming the setting, before any is opened. goleveldb "opening" a young
// pebble database rewrote it (its log dropped), so that putting the setting
// back no longer helped.
func TestStartRefusesAnotherEngineForCometBFT(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	home, _ := stoppedAtHeight3(ctx, t)
	stateDB := filepath.Join(home, "data", "state.db")
	before := dirNames(t, stateDB)
	editFile(t, filepath.Join(home, "config", "config.toml"), `db_backend = "pebbledb"`, `db_backend = "goleveldb"`)
	out, err := exec.CommandContext(ctx, binary(t), "start", "--home", home).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "db_backend") || !strings.Contains(string(out), "put db_backend back") {
		t.Fatalf("start with db_backend of another engine: %v\n%s\nwant a refusal naming db_backend", err, out)
	}
	if after := dirNames(t, stateDB); !slices.Equal(before, after) {
		t.Errorf("the refused start changed %s: %v, then %v", stateDB, before, after)
	}
	if err := store.CheckBackend(stateDB, "pebbledb"); err != nil {
		t.Errorf("state.db after the refused start: %v", err)
	}
}

// editFile replaces, in the file at path, each old of its (old, new)
// pairs, once; an old it does not hold fails the test.
func editFile(t *testing.T, path string, pairs ...string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s holds no %s", path, pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(s), info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// dirNames lists dir's entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestStartRefusesAMetricsPortInUse: CometBFT only logs a Prometheus (or
// pprof) address in use, and the node ran on without metrics; start now
// refuses it, naming the setting, as it does its own servers' addresses.
func TestStartRefusesAMetricsPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	home, _ := initLoopbackHome(t)
	editFile(t, filepath.Join(home, "config", "config.toml"), "prometheus = false", "prometheus = true",
		`prometheus_listen_addr = "127.0.0.1:26660"`, `prometheus_listen_addr = "`+busy.Addr().String()+`"`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "start", "--home", home).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "prometheus_listen_addr") {
		t.Fatalf("start with prometheus_listen_addr %s in use: %v\n%.2000s\nwant a refusal naming the setting", busy.Addr(), err, out)
	}
}

// TestInterruptedInitForceKeepsTheBlobStore: init --force keeps the blob
// store app.toml [sidecar] dir names, and deletes config/ (app.toml with
// it) last. It deleted config/ first: interrupted while it deleted the
// databases (long, on a real chain), the home had no app.toml, and the
// rerun took the default blob dir and deleted the configured store, the
// only copy of ciphertext that committed records name. A hook copies the
// home as a kill at each removal would leave it; init --force is run again
// on each copy.
func TestInterruptedInitForceKeepsTheBlobStore(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	editFile(t, filepath.Join(home, "config", "app.toml"), `dir = "data/blobs"`, `dir = "data/hospital-blobs"`)
	blob := putTestBlob(t, filepath.Join(home, "data", "hospital-blobs"))
	for _, db := range []string{"app.db", "blockstore.db", "state.db"} {
		if err := os.MkdirAll(filepath.Join(home, "data", db), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var stopped []string
	reinitRemoving = func(string) {
		c := filepath.Join(t.TempDir(), "home")
		if err := os.CopyFS(c, os.DirFS(home)); err != nil {
			t.Errorf("copy the home: %v", err)
		}
		stopped = append(stopped, c)
	}
	t.Cleanup(func() { reinitRemoving = nil })
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a", "--force"); err != nil {
		t.Fatalf("init --force: %v\n%s", err, out)
	}
	reinitRemoving = nil
	if len(stopped) < 4 {
		t.Fatalf("%d removals seen, want the databases', the dev keys' and config's", len(stopped))
	}
	for i, c := range stopped {
		out, err := run(t, "init", "--home", c, "--chain-id", "emr-a", "--force")
		if err != nil {
			t.Fatalf("rerun of an init --force stopped before removal %d: %v\n%s", i, err, out)
		}
		rel, _ := filepath.Rel(home, blob)
		if _, err := os.Stat(filepath.Join(c, rel)); err != nil {
			t.Fatalf("the rerun of an init --force stopped before removal %d deleted the configured blob store: %v\n%s", i, err, out)
		}
	}
}
