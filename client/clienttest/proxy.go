package clienttest

import (
	"bytes"
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

// Honest removes every route and rewrite.
func (p *Proxy) Honest() {
	p.SetRoute(nil)
	p.SetRewrite(nil)
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(body, &req)
	call := Call{Method: req.Method, Params: req.Params}
	if r.Method == http.MethodGet {
		call.Method = r.URL.Path[1:]
	}
	p.mu.Lock()
	route, rewrite := p.route, p.rewrite
	p.mu.Unlock()
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
