package clienttest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/internal/freeport"
)

var (
	buildMu   sync.Mutex
	built     = map[string]string{}
	buildDir  string
	buildErrs = map[string]error{}
)

// Build compiles a main package of the module (e.g.
// "github.com/emrchain/emrchain/cmd/emrchaind") once per test process and
// returns the binary's path. Call Cleanup from TestMain to remove it.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if err, ok := buildErrs[pkg]; ok {
		t.Fatal(err)
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "emrchain-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	start := time.Now()
	if msg, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		buildErrs[pkg] = fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
		t.Fatal(buildErrs[pkg])
	}
	t.Logf("built %s in %s", filepath.Base(pkg), time.Since(start).Round(time.Millisecond))
	built[pkg] = out
	return out
}

// Cleanup removes the binaries Build made; call it at the end of TestMain.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// NodeBinary builds emrchaind.
func NodeBinary(t testing.TB) string { return Build(t, "github.com/emrchain/emrchain/cmd/emrchaind") }

// Node is a running single-validator emrchaind.
type Node struct {
	Home    string
	ChainID string
	// RPC is the CometBFT RPC endpoint, http://127.0.0.1:PORT.
	RPC string
	// Genesis is the path of the node's genesis.json.
	Genesis string
	// RegistrarKey is the path of the dev registrar key file (organization
	// "dev-hospital").
	RegistrarKey string
	// SidecarURL is the in-process blob sidecar, http://127.0.0.1:PORT.
	SidecarURL string

	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// NodeOptions configure StartNode.
type NodeOptions struct {
	ChainID string
	// TimeoutCommit; default 150ms, so tests wait little for the next header.
	TimeoutCommit time.Duration
	// InitArgs are extra flags of "emrchaind init" (e.g. --org, --registrar;
	// with --org, name a registrar "registrar" to keep RegistrarKey valid).
	InitArgs []string
	// Configure runs after init, before start, on the node's home (e.g.
	// SetConfig to point the sidecar at MinIO).
	Configure func(home string) error
	// Env is added to the environment of "emrchaind start".
	Env []string
}

// StartNode inits a home and starts emrchaind in it, waiting until it has
// committed block 2. The node is killed in t.Cleanup.
func StartNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	if opts.ChainID == "" {
		opts.ChainID = "emr-client-test"
	}
	if opts.TimeoutCommit == 0 {
		opts.TimeoutCommit = 150 * time.Millisecond
	}
	bin := NodeBinary(t)
	home := t.TempDir()
	rpcPort, p2pPort, sidecarPort := freeport.Get(t), freeport.Get(t), freeport.Get(t)
	args := []string{"init", "--home", home, "--chain-id", opts.ChainID,
		"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", rpcPort),
		"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", p2pPort),
		"--grpc.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--api.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--sidecar.listen", fmt.Sprintf("127.0.0.1:%d", sidecarPort),
		"--timeout-commit", opts.TimeoutCommit.String(), "--empty-blocks-interval", "0s"}
	out, err := exec.Command(bin, append(args, opts.InitArgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("emrchaind init: %v\n%s", err, out)
	}
	if opts.Configure != nil {
		if err := opts.Configure(home); err != nil {
			t.Fatalf("configure the node: %v", err)
		}
	}
	n := &Node{
		Home: home, ChainID: opts.ChainID, RPC: fmt.Sprintf("http://127.0.0.1:%d", rpcPort),
		Genesis:      filepath.Join(home, "config", "genesis.json"),
		RegistrarKey: filepath.Join(home, "dev-keys", "registrar.json"),
		SidecarURL:   fmt.Sprintf("http://127.0.0.1:%d", sidecarPort),
		log:          filepath.Join(home, "node.log"), done: make(chan struct{}),
	}
	logFile, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin, "start", "--home", home, "--log-level", "error")
	if len(opts.Env) > 0 {
		n.cmd.Env = append(os.Environ(), opts.Env...)
	}
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); logFile.Close(); close(n.done) }()
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(n.log)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- tail of %s ---\n%s", n.log, b)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n.WaitHeight(t, ctx, 2)
	return n
}

// Stop kills the node and waits for it to exit.
func (n *Node) Stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Kill()
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
	}
}

// Height returns the node's latest block height (0 if it does not answer).
func (n *Node) Height(ctx context.Context) int64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.RPC+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		Result struct {
			SyncInfo struct {
				Height string `json:"latest_block_height"`
			} `json:"sync_info"`
		} `json:"result"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return 0
	}
	h, _ := strconv.ParseInt(st.Result.SyncInfo.Height, 10, 64)
	return h
}

// Trust returns the node's chain id and a root of trust taken from its
// genesis, as emrcli light init --genesis takes one.
func (n *Node) Trust(t testing.TB, ctx context.Context) (string, *client.TrustOptions) {
	t.Helper()
	gen, err := os.ReadFile(n.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	chainID, trust, err := client.TrustFromGenesis(ctx, n.RPC, gen, 0)
	if err != nil {
		t.Fatalf("a root of trust from the genesis: %v", err)
	}
	return chainID, trust
}

// WaitHeight waits until the node has committed block min.
func (n *Node) WaitHeight(t testing.TB, ctx context.Context, min int64) {
	t.Helper()
	for {
		if n.Height(ctx) >= min {
			return
		}
		select {
		case <-n.done:
			b, _ := os.ReadFile(n.log)
			t.Fatalf("emrchaind exited while waiting for height %d:\n%s", min, lastLines(string(b), 30))
		case <-ctx.Done():
			t.Fatalf("emrchaind did not reach height %d in time", min)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// SetConfig sets each key = value (values are TOML) in the [table] of a
// TOML file "emrchaind init" wrote (config.toml or app.toml). Every key
// must already be there.
func SetConfig(path, table string, keys map[string]string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(raw), "\n")
	in, set := false, map[string]bool{}
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "[") {
			in = trimmed == "["+table+"]"
			continue
		}
		k, _, ok := strings.Cut(trimmed, "=")
		k = strings.TrimSpace(k)
		if v, want := keys[k]; in && ok && want {
			lines[i] = k + " = " + v
			set[k] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !set[k] {
			return fmt.Errorf("%s: no %s in [%s]", path, k, table)
		}
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600)
}
