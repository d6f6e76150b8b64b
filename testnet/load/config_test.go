package load

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client/keyring"
)

// TestConfigBounds: the bounds of `emrchaind load --help` are enforced, bad
// flags are refused with an error (never a panic), and the defaults are
// derived as documented.
func TestConfigBounds(t *testing.T) {
	good := func() Config {
		return Config{Duration: 10 * time.Second, Target: Target{ChainID: "c", RPC: []string{"http://127.0.0.1:1"}, Registrars: []string{"r.json"}}}
	}
	for name, edit := range map[string]func(*Config){
		"no duration":        func(c *Config) { c.Duration = 0 },
		"long duration":      func(c *Config) { c.Duration = MaxDuration + time.Second },
		"warm-up too long":   func(c *Config) { c.Warmup = c.Duration },
		"negative warm-up":   func(c *Config) { c.Warmup = -time.Second },
		"negative rate":      func(c *Config) { c.Rate = -1 },
		"NaN rate":           func(c *Config) { c.Rate = math.NaN() },
		"infinite rate":      func(c *Config) { c.Rate = math.Inf(1) },
		"negative max txs":   func(c *Config) { c.MaxTxs = -1 },
		"too many max txs":   func(c *Config) { c.MaxTxs = MaxTxsLimit + 1 },
		"too many conns":     func(c *Config) { c.Conns = maxConns + 1 },
		"no registrar":       func(c *Config) { c.Target.Registrars = nil },
		"no chain id":        func(c *Config) { c.Target.ChainID = "" },
		"remote endpoint":    func(c *Config) { c.Target.RPC = []string{"http://10.0.0.1:26657"} },
		"no endpoint at all": func(c *Config) { c.Target.RPC = nil },
		"unknown submit":     func(c *Config) { c.Submit = "websocket" },
		"grpc unknown":       func(c *Config) { c.Submit = SubmitGRPC },
		"remote gRPC":        func(c *Config) { c.Target.GRPC = []string{"10.0.0.1:9090"} },
		"more streams than a node serves": func(c *Config) {
			c.Target.GRPC, c.Conns = []string{"127.0.0.1:9090"}, maxStreamsPerNode+1
		},
		"gRPC of fewer nodes": func(c *Config) {
			c.Target.RPC, c.Target.GRPC = append(c.Target.RPC, "http://127.0.0.1:2"), []string{"127.0.0.1:9090"}
		},
	} {
		c := good()
		edit(&c)
		if err := c.defaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, tc := range []struct {
		rate              float64
		maxTxs, wantConns int
	}{
		{0, 6000 * 10, 8},                 // saturation budget
		{100, 100*10*11/10 + 100, 2},      // rate x duration + 10% + 100
		{0.01, 100, 2},                    // tiny rate
		{450, 450*10*11/10 + 100, 5},      // 100 tx/s per sender of the one node
		{1e300, MaxTxsLimit, 8},           // capped, no overflow
		{math.MaxFloat64, MaxTxsLimit, 8}, // capped, no overflow
	} {
		c := good()
		c.Rate = tc.rate
		if err := c.defaults(); err != nil {
			t.Fatalf("rate %g: %v", tc.rate, err)
		}
		if c.MaxTxs != tc.maxTxs || c.Conns != tc.wantConns || c.Mix != DefaultMix || c.Submit != SubmitJSONRPC {
			t.Errorf("rate %g: max txs %d conns %d mix %v submit %q, want %d, %d, default, jsonrpc", tc.rate, c.MaxTxs, c.Conns, c.Mix, c.Submit, tc.maxTxs, tc.wantConns)
		}
	}
	c := good()
	c.Target.GRPC = []string{"127.0.0.1:9090"}
	if err := c.defaults(); err != nil || c.Submit != SubmitGRPC {
		t.Errorf("with the nodes' gRPC known: submit %q, %v; want grpc", c.Submit, err)
	}
}

func TestParseMixRefusesOverflow(t *testing.T) {
	if _, err := ParseMix("add-record=9223372036854775807,consent=1"); err == nil {
		t.Fatal("weights whose sum overflows accepted")
	}
	if m, err := ParseMix("add-record=1000000,consent=1000000"); err != nil || m.total() != 2_000_000 {
		t.Fatalf("largest weights: %+v, %v", m, err)
	}
}

// fakeNode answers JSON-RPC batches of broadcast_tx_sync as CometBFT does
// (a batch of one with a single object), in reverse order, and refuses a
// tx "full" as a full mempool.
func fakeNode(t *testing.T, requests *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		reqs := readBatch(t, r)
		var answers []any
		for i := len(reqs) - 1; i >= 0; i-- {
			q := reqs[i]
			if string(q.Params.Tx) == "full" {
				answers = append(answers, fullAnswer(q.ID))
				continue
			}
			answers = append(answers, map[string]any{"jsonrpc": "2.0", "id": q.ID, "result": map[string]any{"code": len(q.Params.Tx), "log": string(q.Params.Tx)}})
		}
		writeAnswers(w, answers)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// batchRequest is one broadcast_tx_sync of a JSON-RPC batch, as the fake
// nodes read it.
type batchRequest struct {
	ID     int `json:"id"`
	Params struct {
		Tx []byte `json:"tx"`
	} `json:"params"`
}

// readBatch decodes a JSON-RPC batch of broadcasts; a body that is not one
// fails the test.
func readBatch(t *testing.T, r *http.Request) []batchRequest {
	body, _ := io.ReadAll(r.Body)
	var reqs []batchRequest
	if err := json.Unmarshal(body, &reqs); err != nil {
		t.Errorf("not a batch: %s", body)
	}
	return reqs
}

// fullAnswer is a node's answer to the request id when its mempool is
// full.
func fullAnswer(id int) any {
	return map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": -32603, "message": "Internal error", "data": "mempool is full"}}
}

// writeAnswers writes JSON-RPC answers as a node does: a batch of one is
// answered with one object.
func writeAnswers(w http.ResponseWriter, answers []any) {
	var out any = answers
	if len(answers) == 1 {
		out = answers[0]
	}
	_ = json.NewEncoder(w).Encode(out)
}

// TestBroadcastBatch: answers are matched to their txs by id, whatever
// their order; a batch of one is answered with one object; a tcp:// URL
// (accepted by checkLoopback) is spoken to over HTTP.
func TestBroadcastBatch(t *testing.T) {
	var requests atomic.Int64
	srv := fakeNode(t, &requests)
	c := newRPC(strings.Replace(srv.URL, "http://", "tcp://", 1), 1)
	defer c.close()
	outs, _, err := c.broadcastBatch(context.Background(), [][]byte{[]byte("a"), []byte("full"), []byte("ccc")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0].res.Code != 1 || outs[0].res.Log != "a" || !isMempoolFull(outs[1].err) || outs[2].res.Code != 3 {
		t.Fatalf("outcomes %+v", outs)
	}
	outs, _, err = c.broadcastBatch(context.Background(), [][]byte{[]byte("bb")}, nil)
	if err != nil || len(outs) != 1 || outs[0].res.Code != 2 {
		t.Fatalf("batch of one: %+v, %v", outs, err)
	}
	if requests.Load() != 2 {
		t.Fatalf("%d requests for 2 batches", requests.Load())
	}
}

// TestSendAtTinyRate: at a rate so low that the interval between two txs
// exceeds any run, only each worker's first tx is sent (it used to overflow
// into a negative interval and send everything at once).
func TestSendAtTinyRate(t *testing.T) {
	var requests atomic.Int64
	srv := fakeNode(t, &requests)
	node := newRPC(srv.URL, 1)
	defer node.close()
	var txs []*plannedTx
	for i := range 3 {
		txs = append(txs, &plannedTx{signer: 0, seq: uint64(i), raw: []byte{}})
	}
	s := &sender{nodes: []submitter{node}, conns: 1, stats: newSendStats()}
	end := time.Now().Add(300 * time.Millisecond)
	s.send(context.Background(), txs, 1e-12, end, end)
	if s.stats.attempts.Load() != 1 || s.stats.unsent.Load() != 2 {
		t.Fatalf("attempts %d unsent %d, want 1 and 2", s.stats.attempts.Load(), s.stats.unsent.Load())
	}
}

func TestReadSeriesCSVRefusesBadValues(t *testing.T) {
	dir := t.TempDir()
	header := strings.Join(SeriesHeader, ",") + "\n"
	for name, body := range map[string]string{
		"ok":       header + "0,1,2,3,4.5,5,6\n1,0,0,0,0,0,0\n",
		"text":     header + "0,1,x,3,4,5,6\n",
		"nan":      header + "0,1,2,3,NaN,5,6\n",
		"inf":      header + "0,1,2,3,4,5,+Inf\n",
		"negative": header + "-1,1,2,3,4,5,6\n",
		"fraction": header + "0,1.5,2,3,4,5,6\n",
		"header":   "t,sent\n0,1\n",
	} {
		path := filepath.Join(dir, name+".csv")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		pts, err := ReadSeriesCSV(path)
		if name == "ok" {
			if err != nil || len(pts) != 2 || pts[0] != (Point{T: 0, Sent: 1, Committed: 2, Blocks: 3, P50: 4.5, P95: 5, P99: 6}) {
				t.Errorf("ok: %+v, %v", pts, err)
			}
		} else if err == nil {
			t.Errorf("%s: accepted: %+v", name, pts)
		}
	}
}

// TestReadTestnet: the target is every node's RPC (over http) and the
// registrar keys of hospitals alone, relative paths from DIR; a key file
// of another role or whose address is not its key's is refused.
func TestReadTestnet(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, v any) string {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	s := newSigner("reg")
	enc, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	key := func(role, addr string) keyring.DevKey {
		return keyring.DevKey{
			Name: "reg", Address: addr, SignPrivKey: s.sign, SignPubKey: s.pub,
			EncPrivKey: enc.Bytes(), EncPubKey: enc.PublicKey().Bytes(), Role: role, OrganizationID: "h1",
		}
	}
	addr := strings.ToUpper(hex.EncodeToString(s.address))
	reg := write("reg.json", key("registrar", addr))
	write("testnet.json", map[string]any{
		"chain_id": "c",
		"nodes":    []any{map[string]any{"rpc": "tcp://127.0.0.1:26657"}, map[string]any{"rpc": "tcp://127.0.0.1:26667"}},
		"organizations": []any{
			map[string]any{"id": "h1", "kind": "hospital"}, map[string]any{"id": "lab", "kind": "laboratory"},
		},
		"keys": []any{
			map[string]any{"role": "registrar", "organization_id": "h1", "file": "reg.json"},
			map[string]any{"role": "registrar", "organization_id": "lab", "file": "lab.json"},
			map[string]any{"role": "clinician", "organization_id": "h1", "file": "/abs/clin.json"},
		},
	})
	tg, err := ReadTestnet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tg.ChainID != "c" || len(tg.RPC) != 2 || tg.RPC[1] != "http://127.0.0.1:26667" || len(tg.Registrars) != 1 || tg.Registrars[0] != reg || tg.GRPC != nil {
		t.Fatalf("target %+v", tg)
	}
	write("testnet.json", map[string]any{
		"chain_id": "c",
		"nodes": []any{
			map[string]any{"rpc": "tcp://127.0.0.1:26657", "grpc": "127.0.0.1:9090"},
			map[string]any{"rpc": "tcp://127.0.0.1:26667", "grpc": "127.0.0.1:9091"},
		},
		"organizations": []any{map[string]any{"id": "h1", "kind": "hospital"}},
		"keys":          []any{map[string]any{"role": "registrar", "organization_id": "h1", "file": "reg.json"}},
	})
	if tg, err := ReadTestnet(dir); err != nil || len(tg.GRPC) != 2 || tg.GRPC[1] != "127.0.0.1:9091" {
		t.Fatalf("with gRPC servers: %+v, %v", tg, err)
	}
	r, err := readRegistrar(reg)
	if err != nil || !bytes.Equal(r.address, s.address) || r.org != "h1" {
		t.Fatalf("readRegistrar: %+v, %v", r, err)
	}
	short := key("registrar", addr)
	short.SignPrivKey = s.sign[:10]
	for name, k := range map[string]keyring.DevKey{
		"clinician":     key("clinician", addr),
		"wrong address": key("registrar", hex.EncodeToString(newSigner("other").address)),
		"short key":     short,
	} {
		if _, err := readRegistrar(write("bad.json", k)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
