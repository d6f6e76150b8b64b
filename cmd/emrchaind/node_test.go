package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/cometbft/cometbft/p2p"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/internal/freeport"
	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
	"github.com/emrchain/emrchain/store/cometdb"
)

// The node tests run the real binary: init, start, and the CometBFT
// handshake on restart, over loopback only.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds emrchaind once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "emrchaind-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "emrchaind")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is one running emrchaind.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startNode runs emrchaind start on home, with extra flags, logging to
// home/logName.
func startNode(t *testing.T, home, logName string, extra ...string) *proc {
	t.Helper()
	logPath := filepath.Join(home, logName)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), append([]string{"start", "--home", home, "--log-level", "info"}, extra...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		if p.running() {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.dumpLog(t)
		}
	})
	return p
}

func (p *proc) running() bool { return !p.exited() }

func (p *proc) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// stop signals the node and waits for it to exit; it returns the exit error.
func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("node did not exit within 20s of %v", sig)
		return nil
	}
}

func (p *proc) dumpLog(t *testing.T) {
	b, _ := os.ReadFile(p.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	t.Logf("--- tail of %s ---\n%s", p.log, b)
}

// rpc calls a CometBFT JSON-RPC method over GET and decodes "result".
func rpc(ctx context.Context, port int, method string, params url.Values, result any) error {
	u := fmt.Sprintf("http://127.0.0.1:%d/%s?%s", port, method, params.Encode())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Message string `json:"message"`
			Data    string `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: %v: %s", method, err, body)
	}
	if env.Error != nil {
		return fmt.Errorf("%s: %s: %s", method, env.Error.Message, env.Error.Data)
	}
	return json.Unmarshal(env.Result, result)
}

type status struct {
	SyncInfo struct {
		Height  string `json:"latest_block_height"`
		AppHash string `json:"latest_app_hash"`
	} `json:"sync_info"`
}

// waitHeight polls /status until the node is at least at height min.
func waitHeight(ctx context.Context, t *testing.T, p *proc, port int, min int64) (int64, string) {
	t.Helper()
	for {
		var st status
		if err := rpc(ctx, port, "status", nil, &st); err == nil {
			h, _ := strconv.ParseInt(st.SyncInfo.Height, 10, 64)
			if h >= min {
				return h, st.SyncInfo.AppHash
			}
		}
		if p.exited() {
			t.Fatalf("node exited while waiting for height %d", min)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node did not reach height %d in time", min)
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// waitLog polls the node's log until a line holds every one of parts.
func waitLog(ctx context.Context, t *testing.T, p *proc, parts ...string) {
	t.Helper()
	for {
		b, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			found := true
			for _, part := range parts {
				found = found && bytes.Contains(line, []byte(part))
			}
			if found {
				return
			}
		}
		if p.exited() {
			t.Fatalf("node exited before logging a line with %q", parts)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no line with %q in %s in time", parts, p.log)
		case <-time.After(150 * time.Millisecond):
		}
	}
}

type abciQueryResult struct {
	Response struct {
		Code   uint32 `json:"code"`
		Log    string `json:"log"`
		Value  []byte `json:"value"`
		Height string `json:"height"`
	} `json:"response"`
}

func abciQuery(ctx context.Context, t *testing.T, port int, path string, data []byte) abciQueryResult {
	t.Helper()
	var res abciQueryResult
	params := url.Values{"path": {strconv.Quote(path)}, "data": {"0x" + hex.EncodeToString(data)}}
	if err := rpc(ctx, port, "abci_query", params, &res); err != nil {
		t.Fatalf("abci_query %s: %v", path, err)
	}
	return res
}

// TestNodeRestart runs a single-validator chain through a clean stop
// (SIGTERM) and a crash (SIGKILL); each time the chain must resume above
// the height it had, with its state intact, through CometBFT's handshake.
func TestNodeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bin := binary(t)
	home := t.TempDir()
	rpcPort, p2pPort := freeport.Get(t), freeport.Get(t)
	out, err := exec.Command(bin, "init", "--home", home, "--chain-id", "emr-node-test",
		"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", rpcPort),
		"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", p2pPort),
		"--grpc.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--api.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--sidecar.listen", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--timeout-commit", "200ms", "--empty-blocks-interval", "0s").CombinedOutput()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}

	// Run 1: blocks, a registrar's tx signed with the dev key, queries.
	node := startNode(t, home, "run1.log")
	h1, hash1 := waitHeight(ctx, t, node, rpcPort, 3)
	if hash1 == "" {
		t.Fatal("empty app hash at height", h1)
	}
	clinician := ed25519.GenPrivKey()
	registerClinician(ctx, t, home, rpcPort, clinician)
	if q := abciQuery(ctx, t, rpcPort, "/no/such/path", nil); q.Response.Code == 0 {
		t.Fatal("abci_query with a bad path returned code 0")
	}
	var bad struct {
		Code uint32 `json:"code"`
	}
	if err := rpc(ctx, rpcPort, "broadcast_tx_sync", url.Values{"tx": {"0xff0013"}}, &bad); err == nil && bad.Code == 0 {
		t.Fatal("a malformed tx was admitted to the mempool")
	}
	h1, _ = waitHeight(ctx, t, node, rpcPort, h1+1)
	if err := node.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("node did not exit cleanly on SIGTERM: %v", err)
	}
	// CometBFT's databases were opened by cometdb's provider, with the
	// memtable app.toml asks for.
	for _, db := range []string{"blockstore", "state", "tx_index"} {
		if n, err := cometdb.MemTableSizeOf(filepath.Join(home, "data", db+".db")); err != nil || n != 64<<20 {
			t.Fatalf("data/%s.db: memtable %d bytes, want 64 MiB (%v)", db, n, err)
		}
	}

	// Run 2: after a clean stop the chain goes on.
	node = startNode(t, home, "run2.log")
	h2, _ := waitHeight(ctx, t, node, rpcPort, h1+2)
	t.Logf("run 1 stopped (SIGTERM) at height >= %d; run 2 reached %d", h1, h2)
	checkClinician(ctx, t, rpcPort, clinician)
	if err := node.stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("SIGKILL did not kill the node")
	}

	// Run 3: after a crash the handshake replays what the app lacks.
	node = startNode(t, home, "run3.log")
	h3, _ := waitHeight(ctx, t, node, rpcPort, h2+2)
	t.Logf("run 2 killed (SIGKILL) at height >= %d; run 3 reached %d", h2, h3)
	checkClinician(ctx, t, rpcPort, clinician)
	var info struct {
		Response struct {
			Height  string `json:"last_block_height"`
			AppHash []byte `json:"last_block_app_hash"`
		} `json:"response"`
	}
	if err := rpc(ctx, rpcPort, "abci_info", nil, &info); err != nil {
		t.Fatal(err)
	}
	if h, _ := strconv.ParseInt(info.Response.Height, 10, 64); h <= h2 || len(info.Response.AppHash) == 0 {
		t.Fatalf("abci_info = height %s hash %X after restart at %d", info.Response.Height, info.Response.AppHash, h2)
	}
	if err := node.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("node did not exit cleanly on SIGTERM: %v", err)
	}
}

// initLoopbackHome inits a node home whose servers all listen on free
// loopback ports, with extra init flags, and returns it and its RPC port.
func initLoopbackHome(t *testing.T, extra ...string) (string, int) {
	t.Helper()
	home := t.TempDir()
	rpcPort := freeport.Get(t)
	args := append([]string{"init", "--home", home, "--chain-id", "emr-node-test"}, loopbackFlags(t, rpcPort)...)
	if out, err := exec.Command(binary(t), append(args, extra...)...).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	return home, rpcPort
}

// stoppedAtHeight3 is a loopback home whose node ran to height 3 (100 ms
// blocks) and stopped, and its RPC port.
func stoppedAtHeight3(ctx context.Context, t *testing.T) (string, int) {
	t.Helper()
	home, rpcPort := initLoopbackHome(t, "--timeout-commit", "100ms", "--empty-blocks-interval", "0s")
	node := startNode(t, home, "run1.log")
	waitHeight(ctx, t, node, rpcPort, 3)
	if err := node.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return home, rpcPort
}

// removeCometBFTData removes CometBFT's databases and WAL from home, and
// keeps the app's store: what a crash at the end of a state-sync join
// leaves.
func removeCometBFTData(t *testing.T, home string) {
	t.Helper()
	for _, db := range []string{"blockstore.db", "state.db", "evidence.db", "tx_index.db", "cs.wal"} {
		if err := os.RemoveAll(filepath.Join(home, "data", db)); err != nil {
			t.Fatal(err)
		}
	}
}

// loopbackFlags are the flags (of init and start) that put a node's RPC
// on rpcPort and its other servers on free loopback ports.
func loopbackFlags(t *testing.T, rpcPort int) []string {
	return []string{"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", rpcPort),
		"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", freeport.Get(t)),
		"--grpc.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--api.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--sidecar.listen", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t))}
}

// TestStartRefusesAStateCometBFTLacks: an app store with blocks beside
// CometBFT data that holds no state (a state-sync join that crashed at its
// end, data restored in part) is refused at start with what to do, when
// [statesync] is off; CometBFT's handshake used to panic on it.
// (testnet's TestStateSyncJoin has the node with [statesync] on record the
// state and go on.)
func TestStartRefusesAStateCometBFTLacks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	home, _ := stoppedAtHeight3(ctx, t)
	removeCometBFTData(t, home)
	out, err := exec.Command(binary(t), "start", "--home", home).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("holds the state of height")) || !bytes.Contains(out, []byte("but CometBFT holds none")) ||
		bytes.Contains(out, []byte("node started")) {
		t.Fatalf("start with an app state and no CometBFT state: %v, output %q", err, out)
	}
}

// TestStartRefusesAnotherChainsRestoredState: a home whose app state is
// not the chain's (here a copy of the node that went its own way) and
// whose CometBFT data is gone is refused at start with [statesync] on: the
// light client's app hash for the app's height is another. CometBFT's own
// bootstrap found the mismatch too, then panicked closing its databases.
func TestStartRefusesAnotherChainsRestoredState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	homeA, portA := stoppedAtHeight3(ctx, t)
	homeB := filepath.Join(t.TempDir(), "b")
	if err := os.CopyFS(homeB, os.DirFS(homeA)); err != nil {
		t.Fatal(err)
	}
	portB := freeport.Get(t)
	ports := loopbackFlags(t, portB)
	a := startNode(t, homeA, "a2.log")
	// The copy commits a transaction the chain never sees.
	b := startNode(t, homeB, "b1.log", ports...)
	waitHeight(ctx, t, b, portB, 1)
	registerClinician(ctx, t, homeB, portB, ed25519.GenPrivKey())
	hB, _ := waitHeight(ctx, t, b, portB, 1)
	if err := b.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	removeCometBFTData(t, homeB)
	var hdr struct {
		Header struct {
			Height string `json:"height"`
		} `json:"header"`
	}
	var commit struct {
		SignedHeader struct {
			Commit struct {
				BlockID struct {
					Hash string `json:"hash"`
				} `json:"block_id"`
			} `json:"commit"`
		} `json:"signed_header"`
	}
	if err := rpc(ctx, portA, "header", url.Values{"height": {"2"}}, &hdr); err != nil {
		t.Fatal(err)
	}
	if err := rpc(ctx, portA, "commit", url.Values{"height": {"2"}}, &commit); err != nil {
		t.Fatal(err)
	}
	trustHash, err := hex.DecodeString(commit.SignedHeader.Commit.BlockID.Hash)
	if err != nil {
		t.Fatal(err)
	}
	rpcA := fmt.Sprintf("http://127.0.0.1:%d", portA)
	if err := clienttest.SetConfig(filepath.Join(homeB, "config", "config.toml"), "statesync", map[string]string{
		"enable": "true", "rpc_servers": strconv.Quote(rpcA + "," + rpcA), "trust_height": "2",
		"trust_hash": strconv.Quote(fmt.Sprintf("%X", trustHash)), "trust_period": `"168h0m0s"`,
	}); err != nil {
		t.Fatal(err)
	}
	waitHeight(ctx, t, a, portA, hB+2)
	out, err := exec.CommandContext(ctx, binary(t), append([]string{"start", "--home", homeB}, ports...)...).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("it is not this chain's state")) || bytes.Contains(out, []byte("panic")) ||
		bytes.Contains(out, []byte("node started")) {
		t.Fatalf("start of a copy that went its own way, CometBFT data removed, [statesync] on: %v\n%s", err, out)
	}
}

// TestIdleChainWaitsForTransactions: with an empty-blocks interval, a
// node with nothing to do makes no block until a transaction comes (then
// one for it and one to carry its app hash) or the interval passes. It
// made two blocks a second while the state recorded every block's height.
func TestIdleChainWaitsForTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	home, rpcPort := initLoopbackHome(t, "--timeout-commit", "100ms", "--empty-blocks-interval", "1h")
	node := startNode(t, home, "idle.log")
	// Idle for 2 s, at 100 ms per block: the height must stay put.
	idle := func(what string) int64 {
		t.Helper()
		before, _ := waitHeight(ctx, t, node, rpcPort, 1)
		time.Sleep(2 * time.Second)
		if after, _ := waitHeight(ctx, t, node, rpcPort, 1); after != before {
			t.Fatalf("%s: the idle chain went from height %d to %d", what, before, after)
		}
		return before
	}
	h := idle("after start")
	registerClinician(ctx, t, home, rpcPort, ed25519.GenPrivKey())
	waitHeight(ctx, t, node, rpcPort, h+2) // the tx's block, and the one with its app hash
	idle("after a transaction")
}

// registerClinician has the dev registrar (HOME/dev-keys/registrar.json)
// register a clinician, committed through broadcast_tx_commit.
func registerClinician(ctx context.Context, t *testing.T, home string, port int, clinician ed25519.PrivKey) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(home, devKeysDir, devRegistrarKey+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var k devKey
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	registrar := ed25519.PrivKey(k.SignPrivKey)
	tx, err := app.EncodeTx(&emrchainv1.TxBody{
		ChainId:      "emr-node-test",
		SignerPubKey: registrar.PubKey().Bytes(),
		Sequence:     0,
		Msg: &emrchainv1.Msg{Sum: &emrchainv1.Msg_RegisterMember{RegisterMember: &emrchainv1.MsgRegisterMember{
			SignPubKey:     clinician.PubKey().Bytes(),
			EncPubKey:      bytes.Repeat([]byte{9}, 32),
			Role:           emrchainv1.Role_ROLE_CLINICIAN,
			OrganizationId: k.OrganizationID,
			CredentialRef:  "licence:test",
		}}},
	}, registrar.Sign)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		CheckTx struct {
			Code uint32 `json:"code"`
			Log  string `json:"log"`
		} `json:"check_tx"`
		TxResult struct {
			Code uint32 `json:"code"`
			Log  string `json:"log"`
		} `json:"tx_result"`
		Height string `json:"height"`
	}
	if err := rpc(ctx, port, "broadcast_tx_commit", url.Values{"tx": {"0x" + hex.EncodeToString(tx)}}, &res); err != nil {
		t.Fatal(err)
	}
	if res.CheckTx.Code != 0 || res.TxResult.Code != 0 {
		t.Fatalf("register clinician: check %d %q, exec %d %q", res.CheckTx.Code, res.CheckTx.Log, res.TxResult.Code, res.TxResult.Log)
	}
	checkClinician(ctx, t, port, clinician)
}

// checkClinician queries the clinician's membership through ABCI Query.
func checkClinician(ctx context.Context, t *testing.T, port int, clinician ed25519.PrivKey) {
	t.Helper()
	req, _ := proto.Marshal(&emrchainv1.QueryMemberRequest{Address: hex.EncodeToString(app.AddressOf(clinician.PubKey().Bytes()))})
	q := abciQuery(ctx, t, port, "/emrchain.v1.Query/Member", req)
	if q.Response.Code != 0 {
		t.Fatalf("query member: code %d %q", q.Response.Code, q.Response.Log)
	}
	var resp emrchainv1.QueryMemberResponse
	if err := proto.Unmarshal(q.Response.Value, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Member.GetRole() != emrchainv1.Role_ROLE_CLINICIAN {
		t.Fatalf("member = %v, want the clinician", resp.Member)
	}
}

// TestStartErrors: start fails fast, on one line, for a home it cannot run.
func TestStartErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the node binary")
	}
	bin := binary(t)
	empty := t.TempDir()
	out, err := exec.Command(bin, "start", "--home", empty).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("not initialized")) || bytes.Count(bytes.TrimSpace(out), []byte("\n")) != 0 {
		t.Fatalf("start on an empty home: %v, output %q; want one line saying it is not initialized", err, out)
	}
	home := t.TempDir()
	if out, err := exec.Command(bin, "init", "--home", home, "--chain-id", "emr-x", "--backend", "goleveldb").CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	// data/app.db written by goleveldb: refused with pebble, whether
	// --backend asks for it or app.toml says so (a home whose app.toml
	// names pebble but whose store a run with --backend goleveldb made).
	writeAppDB := func(home string) {
		t.Helper()
		st, err := store.Open(filepath.Join(home, "data", appDBDir), store.Options{Backend: store.BackendGoLevelDB})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	writeAppDB(home)
	out, err = exec.Command(bin, "start", "--home", home, "--backend", "pebble").CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("created with goleveldb")) || bytes.Contains(out, []byte("node started")) {
		t.Fatalf("start --backend pebble over a goleveldb store: %v, output %q", err, out)
	}
	pebbleHome := t.TempDir()
	if out, err := exec.Command(bin, "init", "--home", pebbleHome, "--chain-id", "emr-x", "--backend", "pebble").CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	writeAppDB(pebbleHome)
	out, err = exec.Command(bin, "start", "--home", pebbleHome).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("created with goleveldb")) || bytes.Contains(out, []byte("node started")) {
		t.Fatalf("start (app.toml: pebble) over a goleveldb store: %v, output %q", err, out)
	}
	// Missing keys are refused, not made anew (the node would come up as
	// a stranger to its peers, and no longer a validator).
	keysHome := t.TempDir()
	if out, err := exec.Command(bin, "init", "--home", keysHome, "--chain-id", "emr-keys").CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, f := range []string{"config/node_key.json", "config/priv_validator_key.json", "data/priv_validator_state.json"} {
		path := filepath.Join(keysHome, f)
		kept, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		out, err = exec.Command(bin, "start", "--home", keysHome).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte(path+" is missing")) || bytes.Contains(out, []byte("node started")) {
			t.Fatalf("start without %s: %v, output %q; want a refusal naming it", f, err, out)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("start without %s made one: %v", f, err)
		}
		// An empty file (a write cut short) is refused the same way, with
		// emrchaind's message rather than CometBFT's exit.
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err = exec.Command(bin, "start", "--home", keysHome).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte(path+" does not parse")) {
			t.Fatalf("start with an empty %s: %v, output %q; want a refusal naming it", f, err, out)
		}
		if err := os.WriteFile(path, kept, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err = exec.Command(bin, "version").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("cometbft:    1.0.1")) {
		t.Fatalf("version: %v\n%s", err, out)
	}
}

// TestPeerFilterNodes runs two real nodes of one chain. A node from init
// (app.allowed_peers empty, no persistent peers) produces blocks alone and
// refuses a node that dials it; once it is restarted with that node as a
// persistent peer (and still no allowed_peers), it accepts it, and the other
// node syncs its blocks.
func TestPeerFilterNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	bin := binary(t)
	type home struct {
		dir      string
		rpc, p2p int
		id       string
	}
	initHome := func(chainID string, extra ...string) home {
		h := home{dir: t.TempDir(), rpc: freeport.Get(t), p2p: freeport.Get(t)}
		args := append([]string{"init", "--home", h.dir, "--chain-id", chainID,
			"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", h.rpc),
			"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", h.p2p),
			"--grpc.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
			"--api.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
			"--sidecar.listen", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
			"--timeout-commit", "200ms", "--empty-blocks-interval", "0s"}, extra...)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("init: %v\n%s", err, out)
		}
		key, err := p2p.LoadNodeKey(filepath.Join(h.dir, "config", "node_key.json"))
		if err != nil {
			t.Fatal(err)
		}
		h.id = string(key.ID())
		return h
	}
	addr := func(h home) string { return fmt.Sprintf("%s@127.0.0.1:%d", h.id, h.p2p) }

	// A: a single validator as init writes it.
	a := initHome("emr-filter-test")
	nodeA := startNode(t, a.dir, "a1.log")
	waitLog(ctx, t, nodeA, "this node refuses every peer", "allowed_peers")
	waitHeight(ctx, t, nodeA, a.rpc, 2)

	// B: a full node of A's chain that dials A.
	b := initHome("emr-filter-test", "--p2p.persistent_peers", addr(a))
	gen, err := os.ReadFile(filepath.Join(a.dir, "config", "genesis.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config", "genesis.json"), gen, 0o600); err != nil {
		t.Fatal(err)
	}
	nodeB := startNode(t, b.dir, "b.log")
	waitLog(ctx, t, nodeB, "only these node ids may connect", "allowed="+a.id)
	// A is asked about B (filter_peers is on) and refuses it.
	waitLog(ctx, t, nodeA, "refused a peer", "node_id="+b.id)
	if q := abciQuery(ctx, t, a.rpc, abci.PeerFilterIDPath+b.id, nil); q.Response.Code != abci.CodePeerRefused {
		t.Fatalf("A's peer filter answers %d for B, want %d (refused)", q.Response.Code, abci.CodePeerRefused)
	}
	// A refuses B before its reactors see it: B has not a block.
	if hB, _ := waitHeight(ctx, t, nodeB, b.rpc, 0); hB != 0 {
		t.Fatalf("B, refused by A, is at height %d; want 0", hB)
	}
	if err := nodeA.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("A did not exit cleanly on SIGTERM: %v", err)
	}

	// A again, with B as a persistent peer: B is let in and syncs A's chain.
	nodeA = startNode(t, a.dir, "a2.log", "--p2p.persistent_peers", addr(b))
	waitLog(ctx, t, nodeA, "only these node ids may connect", "allowed="+b.id)
	hA, _ := waitHeight(ctx, t, nodeA, a.rpc, 3)
	if q := abciQuery(ctx, t, a.rpc, abci.PeerFilterIDPath+b.id, nil); q.Response.Code != 0 {
		t.Fatalf("A's peer filter answers %d for its persistent peer B, want 0", q.Response.Code)
	}
	waitHeight(ctx, t, nodeB, b.rpc, hA)
	if err := nodeB.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("B did not exit cleanly on SIGTERM: %v", err)
	}
	if err := nodeA.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("A did not exit cleanly on SIGTERM: %v", err)
	}
}

// TestStopBeforeGenesisTime: a node whose genesis time is an hour away
// waits for it, says so, and stops on SIGTERM meanwhile (CometBFT slept
// through signals inside its Start).
func TestStopBeforeGenesisTime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	home, _ := initLoopbackHome(t)
	genPath := filepath.Join(home, "config", "genesis.json")
	raw, err := os.ReadFile(genPath)
	if err != nil {
		t.Fatal(err)
	}
	var gen map[string]any
	if err := json.Unmarshal(raw, &gen); err != nil {
		t.Fatal(err)
	}
	gen["genesis_time"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	if raw, err = json.Marshal(gen); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(genPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	node := startNode(t, home, "node.log")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// (CometBFT's own sleep says "Genesis time is in the future" too.)
		if b, _ := os.ReadFile(node.log); bytes.Contains(bytes.ToLower(b), []byte("genesis time is in the future")) {
			break
		}
		if node.exited() || time.Now().After(deadline) {
			t.Fatal("the node did not say it waits for the genesis time")
		}
	}
	if err := node.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM before the genesis time: %v", err)
	}
}
