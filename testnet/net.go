package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/internal/freeport"
	"github.com/emrchain/emrchain/testnet/manifest"
)

// Bounds of the harness's waits.
const (
	initTimeout    = time.Minute
	firstBlockWait = 90 * time.Second
	stopWait       = 20 * time.Second
	killWait       = 10 * time.Second
	rpcCallTimeout = 5 * time.Second
	pollInterval   = 100 * time.Millisecond
	logTailBytes   = 4000
	portStride     = 10 // as emrchaind testnet: node i uses base+10i ... base+10i+9
	spareP2POffset = 9  // an unused port of the node's block, for Isolate
)

// Options configure a testnet.
type Options struct {
	// Validators is the number of validators; 0 means 4.
	Validators int
	// ChainID; empty means "emrchain-testnet".
	ChainID string
	// TimeoutCommit is the consensus timeout_commit; 0 means 300ms.
	TimeoutCommit time.Duration
	// EmptyBlocksInterval: 0 makes blocks continuously (heights keep moving,
	// which the fault tests rely on).
	EmptyBlocksInterval time.Duration
	// LogLevel of the nodes; empty means "info".
	LogLevel string
	// Blob is the sidecars' blob store: "" or "fs" (each node its own), or
	// "minio": the harness runs one MinIO server (the binary of
	// offchain/blobstore/miniotest: $EMRCHAIN_MINIO_BIN or ./bin/minio; the
	// test is skipped without it) that every sidecar shares.
	Blob string
	// Replicate gives every fs sidecar a storage service of its own
	// (`emrchaind testnet --replicate`), which copies every committed blob
	// from its peers. Off unless set: the load of the fault tests commits
	// records whose blobs are never uploaded, and every storage service
	// would ask its peers for each.
	Replicate bool
	// TestnetArgs are extra arguments to `emrchaind testnet`.
	TestnetArgs []string
	// AllowPeers are node ids of nodes outside the testnet (a node joining
	// later, see AddNode) that every validator lets in (config.toml
	// p2p.unconditional_peer_ids).
	AllowPeers []string
	// SnapshotInterval is app.toml's store.snapshot_interval of every
	// validator (0: no snapshots), and SnapshotKeepRecent its
	// store.snapshot_keep_recent (0: app.toml's default).
	SnapshotInterval, SnapshotKeepRecent int
}

func (o *Options) defaults() {
	if o.Validators == 0 {
		o.Validators = 4
	}
	if o.ChainID == "" {
		o.ChainID = "emrchain-testnet"
	}
	if o.TimeoutCommit == 0 {
		o.TimeoutCommit = 300 * time.Millisecond
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
}

// Net is a running testnet.
type Net struct {
	t       testing.TB
	bin     string
	opts    Options
	Dir     string
	LogDir  string
	Desc    *manifest.Testnet
	ChainID string

	nodes []*node
	rr    sync.Mutex
	next  int // round-robin cursor of Pick

	storage storage // MinIO, with Options.Blob "minio"

	cleanupOnce  sync.Once
	rebroadcasts atomic.Int64
	seen         atomic.Int64 // highest height a transaction was seen committed at
}

// node is one validator and its current process, if any.
type node struct {
	name    string
	home    string
	rpcAddr string
	sidecar string // http://host:port
	p2pPort int
	client  *rpchttp.HTTP

	mu   sync.Mutex
	proc *process // nil when not started
	runs int
}

// newNode is a node of home with its RPC at rpcAddr and its sidecar at
// sidecar (http://host:port each) and P2P on p2pPort, not started.
func newNode(name, home, rpcAddr, sidecar string, p2pPort int) (*node, error) {
	client, err := rpchttp.NewWithTimeout(rpcAddr, uint(rpcCallTimeout/time.Second))
	if err != nil {
		return nil, err
	}
	return &node{name: name, home: home, rpcAddr: rpcAddr, sidecar: sidecar, p2pPort: p2pPort, client: client}, nil
}

// process is one run of a program the harness started (emrchaind start,
// minio server).
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // exit error, valid after done
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start writes a testnet into t.TempDir(), starts every validator and
// waits until every one of them has committed block 2. Everything it
// starts is killed in t.Cleanup.
func Start(t testing.TB, o Options) *Net {
	t.Helper()
	o.defaults()
	bin := Binary(t)
	dir := t.TempDir()
	n := &Net{t: t, bin: bin, opts: o, Dir: filepath.Join(dir, "net"), LogDir: filepath.Join(dir, "logs"), ChainID: o.ChainID}
	t.Cleanup(n.Cleanup)
	if err := os.MkdirAll(n.LogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// One block of ports more than the nodes use, for MinIO.
	base, err := freeBasePort(o.Validators + 1)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"testnet", "--output", n.Dir, "--validators", strconv.Itoa(o.Validators),
		"--chain-id", o.ChainID, "--base-port", strconv.Itoa(base),
		"--timeout-commit", o.TimeoutCommit.String(), "--empty-blocks-interval", o.EmptyBlocksInterval.String()}
	if o.Blob == "minio" {
		if err := n.prepareStorage(base + portStride*o.Validators); err != nil {
			t.Skip(err)
		}
		args = append(args, "--blob", "minio", "--minio-addr", n.storage.addr)
	}
	if !o.Replicate {
		args = append(args, "--replicate=false")
	}
	args = append(args, o.TestnetArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("emrchaind %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	n.Desc, err = manifest.Read(n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range n.Desc.Nodes {
		var p2pPort int
		if _, port, err := net.SplitHostPort(strings.TrimPrefix(d.P2P, "tcp://")); err == nil {
			p2pPort, _ = strconv.Atoi(port)
		}
		nd, err := newNode(d.Name, d.Home, strings.Replace(d.RPC, "tcp://", "http://", 1), d.Sidecar, p2pPort)
		if err != nil {
			t.Fatal(err)
		}
		n.nodes = append(n.nodes, nd)
	}
	if o.Blob == "minio" {
		n.StartStorage()
	}
	for _, nd := range n.nodes {
		if err := configureValidator(nd.home, o); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n.nodes {
		n.Start(i)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), firstBlockWait)
	defer wcancel()
	for i := range n.nodes {
		if err := n.WaitHeight(wctx, i, 2); err != nil {
			t.Fatalf("testnet did not start: %v", err)
		}
	}
	return n
}

// freeBasePort finds a block of portStride*validators free ports below
// the ephemeral range (freeport), starting at a multiple of portStride as
// Isolate expects.
func freeBasePort(validators int) (int, error) {
	return freeport.Aligned(portStride*validators, portStride)
}

// Len is the number of nodes: the validators (0 to len(Desc.Nodes)-1),
// then the nodes added with AddNode, which are not validators.
func (n *Net) Len() int { return len(n.nodes) }

// Home is node i's home directory.
func (n *Net) Home(i int) string { return n.nodes[i].home }

// RPCURL is node i's CometBFT RPC address as a URL (http://host:port).
func (n *Net) RPCURL(i int) string { return n.nodes[i].rpcAddr }

// RPC is node i's CometBFT RPC client.
func (n *Net) RPC(i int) *rpchttp.HTTP { return n.nodes[i].client }

// Running reports whether node i's process is alive.
func (n *Net) Running(i int) bool {
	nd := n.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.proc != nil && !nd.proc.exited()
}

// LogFile is the log of node i's latest run.
func (n *Net) LogFile(i int) string {
	nd := n.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil {
		return ""
	}
	return nd.proc.log
}

// Start starts node i with its configuration as written.
func (n *Net) Start(i int) { n.t.Helper(); n.StartWith(i) }

// StartWith starts node i with extra `emrchaind start` flags for this run.
func (n *Net) StartWith(i int, extra ...string) {
	n.t.Helper()
	if err := n.start(i, extra...); err != nil {
		n.t.Fatal(err)
	}
}

func (n *Net) start(i int, extra ...string) error {
	nd := n.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != nil && !nd.proc.exited() {
		return fmt.Errorf("%s is already running", nd.name)
	}
	nd.runs++
	logPath := filepath.Join(n.LogDir, fmt.Sprintf("%s.run%d.log", nd.name, nd.runs))
	args := append([]string{"start", "--home", nd.home, "--log-level", n.opts.LogLevel}, extra...)
	p, err := spawn(n.bin, args, n.nodeEnv(), logPath)
	if err != nil {
		return fmt.Errorf("start %s: %w", nd.name, err)
	}
	nd.proc = p
	return nil
}

// spawn starts bin with args and extra environment, output to logPath.
func spawn(bin string, args, env []string, logPath string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// kill kills p if it runs and waits (bounded) for it to exit.
func (p *process) kill() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(killWait):
	}
}

// Stop sends node i SIGTERM and waits for it to exit; a node that does not
// exit within 20s is killed and the test fails.
func (n *Net) Stop(i int) {
	n.t.Helper()
	if err := n.signal(i, syscall.SIGTERM, stopWait); err != nil {
		n.t.Fatal(err)
	}
}

// Kill sends node i SIGKILL and waits for it to exit.
func (n *Net) Kill(i int) {
	n.t.Helper()
	if err := n.signal(i, syscall.SIGKILL, killWait); err != nil {
		n.t.Fatal(err)
	}
}

func (n *Net) signal(i int, sig syscall.Signal, wait time.Duration) error {
	nd := n.nodes[i]
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	return p.signal(nd.name, sig, wait)
}

// signal sends p (called name in errors) sig and waits for it to exit. A
// process that does not exit within wait is killed and an error; so is one
// that exits uncleanly after SIGTERM.
func (p *process) signal(name string, sig syscall.Signal, wait time.Duration) error {
	if p == nil || p.exited() {
		return fmt.Errorf("%s is not running", name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", name, sig, err)
	}
	select {
	case <-p.done:
		if sig == syscall.SIGTERM && p.err != nil {
			return fmt.Errorf("%s exited uncleanly after SIGTERM: %v", name, p.err)
		}
		return nil
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v of %v; killed", name, wait, sig)
	}
}

// Isolate cuts node i off from its peers: it is restarted with no
// persistent peers, an empty address book and its P2P listener on a spare
// port nobody dials (see the package documentation).
func (n *Net) Isolate(i int) {
	n.t.Helper()
	nd := n.nodes[i]
	if n.Running(i) {
		n.Stop(i)
	}
	if err := os.Remove(filepath.Join(nd.home, "config", "addrbook.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.t.Fatal(err)
	}
	spare := nd.p2pPort - nd.p2pPort%portStride + spareP2POffset
	n.StartWith(i, "--p2p.persistent_peers", "", "--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", spare))
}

// Heal restarts an isolated node i with its configuration as written, so it
// dials its peers again and catches up.
func (n *Net) Heal(i int) {
	n.t.Helper()
	if n.Running(i) {
		n.Stop(i)
	}
	n.Start(i)
}

// Cleanup kills every node still running and, if the test failed, prints
// the tail of each node's latest log. Start registers it with t.Cleanup.
func (n *Net) Cleanup() {
	n.cleanupOnce.Do(func() {
		for _, nd := range n.nodes {
			nd.mu.Lock()
			p := nd.proc
			nd.mu.Unlock()
			p.kill()
		}
		n.storage.mu.Lock()
		n.storage.proc.kill()
		n.storage.mu.Unlock()
		if n.t.Failed() {
			if p := n.storage.proc; p != nil {
				n.t.Logf("--- tail of %s ---\n%s", p.log, tail(p.log, logTailBytes))
			}
			for _, nd := range n.nodes {
				if nd.proc != nil {
					n.t.Logf("--- tail of %s ---\n%s", nd.proc.log, tail(nd.proc.log, logTailBytes))
				}
			}
		}
	})
}

func tail(path string, max int) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return []byte(err.Error())
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return b
}

// Height is node i's latest committed height.
func (n *Net) Height(i int) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcCallTimeout)
	defer cancel()
	st, err := n.nodes[i].client.Status(ctx)
	if err != nil {
		return 0, err
	}
	return st.SyncInfo.LatestBlockHeight, nil
}

// WaitHeight waits until node i has committed height h. It fails fast if
// the node's process exits.
func (n *Net) WaitHeight(ctx context.Context, i int, h int64) error {
	var last int64
	for {
		if got, err := n.Height(i); err == nil {
			if got >= h {
				return nil
			}
			last = got
		}
		if !n.Running(i) {
			return fmt.Errorf("%s is not running (waiting for height %d, last seen %d)", n.nodes[i].name, h, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not reach height %d (last seen %d): %w", n.nodes[i].name, h, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// MaxHeight is the highest height among the running nodes.
func (n *Net) MaxHeight() int64 {
	var max int64
	for i := range n.nodes {
		if !n.Running(i) {
			continue
		}
		if h, err := n.Height(i); err == nil && h > max {
			max = h
		}
	}
	return max
}

// AppHashAt is the app hash node i committed for block h: the AppHash of
// the header at h+1 (so h+1 must exist on the node).
func (n *Net) AppHashAt(i int, h int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcCallTimeout)
	defer cancel()
	next := h + 1
	res, err := n.nodes[i].client.Header(ctx, &next)
	if err != nil {
		return nil, fmt.Errorf("%s: header %d: %w", n.nodes[i].name, next, err)
	}
	return res.Header.AppHash, nil
}

// blockSummary is what CheckAgreement compares at a height.
type blockSummary struct {
	blockHash, appHash, resultsHash []byte
}

// summaries returns node i's headers from..to (inclusive) in blocks of 20
// (the RPC's page size).
func (n *Net) summaries(ctx context.Context, i int, from, to int64) (map[int64]blockSummary, error) {
	out := make(map[int64]blockSummary, to-from+1)
	for lo := from; lo <= to; lo += 20 {
		hi := min(lo+19, to)
		cctx, cancel := context.WithTimeout(ctx, rpcCallTimeout)
		res, err := n.nodes[i].client.BlockchainInfo(cctx, lo, hi)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: blockchain %d-%d: %w", n.nodes[i].name, lo, hi, err)
		}
		for _, m := range res.BlockMetas {
			out[m.Header.Height] = blockSummary{m.BlockID.Hash, m.Header.AppHash, m.Header.LastResultsHash}
		}
	}
	for h := from; h <= to; h++ {
		if _, ok := out[h]; !ok {
			return nil, fmt.Errorf("%s: no header at height %d", n.nodes[i].name, h)
		}
	}
	return out, nil
}

// CheckAgreement compares the running nodes block by block up to the
// lowest height they all have: the same block, the same app hash and the
// same results at every height (the app hash and results hash of block h
// sit in header h+1). It returns the number of heights compared.
func (n *Net) CheckAgreement(ctx context.Context) (int64, error) {
	var running []int
	top := int64(-1)
	for i := range n.nodes {
		if !n.Running(i) {
			continue
		}
		h, err := n.Height(i)
		if err != nil {
			return 0, err
		}
		running = append(running, i)
		if top < 0 || h < top {
			top = h
		}
	}
	if len(running) < 2 || top < 1 {
		return 0, fmt.Errorf("need two running nodes with blocks, have %d at height %d", len(running), top)
	}
	ref, err := n.summaries(ctx, running[0], 1, top)
	if err != nil {
		return 0, err
	}
	for _, i := range running[1:] {
		got, err := n.summaries(ctx, i, 1, top)
		if err != nil {
			return 0, err
		}
		for h := int64(1); h <= top; h++ {
			a, b := ref[h], got[h]
			switch {
			case !bytes.Equal(a.blockHash, b.blockHash):
				return 0, fmt.Errorf("height %d: %s has block %X, %s has %X", h, n.nodes[running[0]].name, a.blockHash, n.nodes[i].name, b.blockHash)
			case !bytes.Equal(a.appHash, b.appHash):
				return 0, fmt.Errorf("header %d: %s has app hash %X, %s has %X", h, n.nodes[running[0]].name, a.appHash, n.nodes[i].name, b.appHash)
			case !bytes.Equal(a.resultsHash, b.resultsHash):
				return 0, fmt.Errorf("header %d: %s has results hash %X, %s has %X", h, n.nodes[running[0]].name, a.resultsHash, n.nodes[i].name, b.resultsHash)
			}
		}
	}
	return top, nil
}

// Pick returns the next running node in round-robin order, or -1 if none
// is running.
func (n *Net) Pick() int {
	n.rr.Lock()
	defer n.rr.Unlock()
	for range n.nodes {
		i := n.next % len(n.nodes)
		n.next++
		if n.Running(i) {
			return i
		}
	}
	return -1
}

// Query calls a method of the emrchain Query service on node i through ABCI
// query at the latest height.
func (n *Net) Query(ctx context.Context, i int, method string, req, resp proto.Message) error {
	data, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, rpcCallTimeout)
	defer cancel()
	res, err := n.nodes[i].client.ABCIQuery(cctx, app.QueryPathPrefix+method, data)
	if err != nil {
		return err
	}
	if res.Response.Code != 0 {
		return fmt.Errorf("query %s on %s: code %d: %s", method, n.nodes[i].name, res.Response.Code, res.Response.Log)
	}
	return proto.Unmarshal(res.Response.Value, resp)
}

// Registrar is the registrar of org, from its key file under DIR/keys.
func (n *Net) Registrar(org string) *apptest.Actor {
	n.t.Helper()
	for _, k := range n.Desc.Keys {
		if k.OrganizationID == org && k.Role == "registrar" {
			a, err := LoadKey(k.File)
			if err != nil {
				n.t.Fatal(err)
			}
			return a
		}
	}
	n.t.Fatalf("the testnet has no registrar of %q", org)
	return nil
}
