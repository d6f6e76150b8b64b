package clienttest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Call is one JSON-RPC call passing through a Proxy.
type Call struct {
	Method string
	Params json.RawMessage
}

// Proxy is a JSON-RPC man in the middle between a client and a node (a
// lying full node, in tests). Route may send a call to another upstream;
// Rewrite may change the result of a call before the client sees it.
type Proxy struct {
	URL      string
	upstream string

	mu      sync.Mutex
	route   func(c Call) string
	rewrite func(c Call, result json.RawMessage) json.RawMessage
	answer  func(c Call) string
}

// NewProxy starts a proxy to upstream on 127.0.0.1, closed in t.Cleanup.
func NewProxy(t testing.TB, upstream string) *Proxy {
	p := &Proxy{upstream: upstream}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// SetRoute sends calls for which route returns non-empty to that upstream.
func (p *Proxy) SetRoute(route func(c Call) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.route = route
}

// SetRewrite installs (or, with nil, removes) the result rewriter.
func (p *Proxy) SetRewrite(rw func(c Call, result json.RawMessage) json.RawMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rewrite = rw
}

// SetAnswer makes the proxy answer calls itself, without a node (a node
// that keeps or swallows transactions, or has not indexed one): for a call
// for which answer returns non-empty, the response is that member after
// the call's id (`"result":{...}` or `"error":{...}`). With nil, it
// removes the answerer.
func (p *Proxy) SetAnswer(answer func(c Call) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = answer
}

// BroadcastTx is the transaction a broadcast_tx_sync call carries; nil for
// any other call.
func BroadcastTx(c Call) []byte {
	if c.Method != "broadcast_tx_sync" {
		return nil
	}
	var p struct {
		Tx string `json:"tx"`
	}
	_ = json.Unmarshal(c.Params, &p)
	raw, _ := base64.StdEncoding.DecodeString(p.Tx)
	return raw
}

// TxKeeper is an answerer (its Answer, for SetAnswer) of a node that
// keeps every transaction broadcast to it, passes none on, and answers
// with a CheckTx result of its own (a refusal, say); a test may release
// what it kept (Kept) later, as such a node may.
type TxKeeper struct {
	result string
	mu     sync.Mutex
	kept   [][]byte
}

// NewTxKeeper answers with CheckTx code, codespace and log.
func NewTxKeeper(code uint32, codespace, log string) *TxKeeper {
	return &TxKeeper{result: fmt.Sprintf(`"result":{"code":%d,"codespace":%q,"log":%q,"data":"","hash":""}`, code, codespace, log)}
}

// Answer keeps a broadcast transaction and answers it; "" for other calls.
func (k *TxKeeper) Answer(c Call) string {
	tx := BroadcastTx(c)
	if tx == nil {
		return ""
	}
	k.mu.Lock()
	k.kept = append(k.kept, tx)
	k.mu.Unlock()
	return k.result
}

// Kept returns the transactions kept so far.
func (k *TxKeeper) Kept() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]byte(nil), k.kept...)
}

// SwallowTxs is an answerer (SetAnswer) that accepts every transaction
// broadcast (CheckTx code 0) and passes none on: a node that drops them.
func SwallowTxs(c Call) string {
	if c.Method != "broadcast_tx_sync" {
		return ""
	}
	return `"result":{"code":0,"codespace":"","log":"","data":"","hash":""}`
}

// Honest removes every route, rewrite and answerer.
func (p *Proxy) Honest() {
	p.SetRoute(nil)
	p.SetRewrite(nil)
	p.SetAnswer(nil)
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(body, &req)
	call := Call{Method: req.Method, Params: req.Params}
	if r.Method == http.MethodGet {
		call.Method = r.URL.Path[1:]
	}
	p.mu.Lock()
	route, rewrite, answer := p.route, p.rewrite, p.answer
	p.mu.Unlock()
	if answer != nil {
		if member := answer(call); member != "" {
			id := req.ID
			if len(id) == 0 {
				id = json.RawMessage("-1")
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,%s}`, id, member)
			return
		}
	}
	upstream := p.upstream
	if route != nil {
		if u := route(call); u != "" {
			upstream = u
		}
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if rewrite != nil {
		var env map[string]json.RawMessage
		if json.Unmarshal(respBody, &env) == nil && env["result"] != nil {
			env["result"] = rewrite(call, env["result"])
			respBody, _ = json.Marshal(env)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(respBody)
}

// ForgeAppHashExcept is a rewrite that gives every signed header but the
// one at height trusted (a client's root of trust, which it must be able
// to fetch) another app hash: a node lying about the state's root.
func ForgeAppHashExcept(trusted int64) func(Call, json.RawMessage) json.RawMessage {
	return func(call Call, result json.RawMessage) json.RawMessage {
		if call.Method != "commit" || bytes.Contains(call.Params, fmt.Appendf(nil, `"%d"`, trusted)) {
			return result
		}
		var res map[string]any
		if json.Unmarshal(result, &res) != nil {
			return result
		}
		sh, _ := res["signed_header"].(map[string]any)
		hdr, _ := sh["header"].(map[string]any)
		if hdr == nil {
			return result
		}
		hdr["app_hash"] = "00000000000000000000000000000000000000000000000000000000000000AA"
		b, _ := json.Marshal(res)
		return b
	}
}
