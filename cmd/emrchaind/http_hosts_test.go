package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	"github.com/gorilla/websocket"

	"github.com/emrchain/emrchain/app/apptest"
)

// TestHostFilter: the REST gateway answers a Host that is an IP address or
// a listed name (any case, with or without a port or a trailing dot), and
// no other name unless "*" is listed.
func TestHostFilter(t *testing.T) {
	for _, tc := range []struct {
		allowed []string
		host    string
		want    bool
	}{
		{defaultAllowedHosts, "127.0.0.1:1317", true},
		{defaultAllowedHosts, "127.0.0.1", true},
		{defaultAllowedHosts, "10.1.2.3:1317", true},
		{defaultAllowedHosts, "[::1]:1317", true},
		{defaultAllowedHosts, "[::1]", true},
		{defaultAllowedHosts, "localhost:1317", true},
		{defaultAllowedHosts, "LocalHost.", true},
		{defaultAllowedHosts, "", true}, // HTTP/1.0 without Host: no browser sends that
		{defaultAllowedHosts, "rebind.attacker.example:1317", false},
		{defaultAllowedHosts, "rebind.attacker.example", false},
		{defaultAllowedHosts, "localhost.attacker.example", false},
		{defaultAllowedHosts, "127.0.0.1.nip.io:1317", false},
		{defaultAllowedHosts, "node0.hospital.example", false},
		{[]string{"node0.hospital.example"}, "NODE0.hospital.example.:443", true},
		{[]string{"node0.hospital.example"}, "localhost:1317", false},
		{[]string{"node0.hospital.example"}, "node1.hospital.example", false},
		{nil, "localhost", false},
		{nil, "127.0.0.1:1317", true},
		{[]string{"*"}, "rebind.attacker.example:1317", true},
	} {
		if got := newHostFilter(tc.allowed).allows(tc.host); got != tc.want {
			t.Errorf("allowed_hosts %q, Host %q: allows = %t, want %t", tc.allowed, tc.host, got, tc.want)
		}
	}
}

// TestRESTRefusesUnlistedHost: a request naming a host not in [app]
// allowed_hosts is refused 403 PERMISSION_DENIED on every path, queries,
// health and the OpenAPI document alike; the same request by IP address or
// by "localhost" is answered.
func TestRESTRefusesUnlistedHost(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	srv := newTestREST(t, c)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/emrchain/v1/params", restHealthPath, openAPIPath} {
		for host, want := range map[string]int{
			"rebind.attacker.example:" + port: http.StatusForbidden,
			"127.0.0.1:" + port:               http.StatusOK,
			"localhost:" + port:               http.StatusOK,
		} {
			code, body := getAs(context.Background(), t, srv.URL+path, host)
			if code != want {
				t.Errorf("GET %s with Host %s: %d %s, want %d", path, host, code, body, want)
				continue
			}
			if want == http.StatusForbidden {
				var e restErrorBody
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Status != "PermissionDenied" {
					t.Errorf("GET %s with Host %s: body %s (%v), want PermissionDenied", path, host, body, err)
				}
			}
		}
	}
}

// getAs GETs url with the Host header host, and returns the status and body.
func getAs(ctx context.Context, t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return statusOfRequest(t, req)
}

// TestAllowedHostsConfig: [app] allowed_hosts defaults to localhost, round-
// trips through app.toml, and refuses an entry no Host header could match.
func TestAllowedHostsConfig(t *testing.T) {
	if got := defaultAppConfig().App.AllowedHosts; fmt.Sprint(got) != "[localhost]" {
		t.Fatalf("default allowed_hosts %q", got)
	}
	for _, bad := range []string{"", "node0:1317", "http://node0", "node0/x", "a b", "a,b", "*.example.org", "[::1]", "bücher.example"} {
		if err := checkAllowedHosts([]string{"localhost", bad}); err == nil {
			t.Errorf("allowed_hosts entry %q accepted", bad)
		}
	}
	if err := checkAllowedHosts([]string{"*", "localhost", "node0.hospital.example", "Node1.", "xn--bcher-kva.example"}); err != nil {
		t.Errorf("good entries refused: %v", err)
	}
}

// TestNodeChecksHostAndOrigin: a running node refuses, on CometBFT's RPC
// and on REST alike, a request naming a host outside [app] allowed_hosts
// (RPC: a JSON-RPC error that CometBFT's client shows), and refuses a
// WebSocket a browser opens from an origin outside config.toml [rpc]
// cors_allowed_origins, while programs (no Origin) and listed origins
// connect and call routes.
func TestNodeChecksHostAndOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const appOrigin = "https://records.hospital.example"
	n := startAPINodeConfigured(ctx, t, func(*appConfig) {}, func(c *cmtcfg.Config) {
		c.RPC.CORSAllowedOrigins = []string{appOrigin}
	})
	rpcAddr := fmt.Sprintf("127.0.0.1:%d", n.rpcPort)

	for _, url := range []string{"http://" + rpcAddr + "/status", "http://" + n.apiAddr + "/emrchain/v1/params"} {
		_, port, _ := net.SplitHostPort(strings.Split(url, "/")[2])
		if code, body := getAs(ctx, t, url, "rebind.attacker.example:"+port); code != http.StatusForbidden || !strings.Contains(body, "allowed_hosts") {
			t.Errorf("GET %s as rebind.attacker.example: %d %s", url, code, body)
		}
		for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port} {
			if code, body := getAs(ctx, t, url, host); code != http.StatusOK {
				t.Errorf("GET %s as %s: %d %s", url, host, code, body)
			}
		}
	}

	// CometBFT's own client reports the refusal's reason.
	cli, err := rpchttp.NewWithClient("http://localhost.attacker.example:"+strconv.Itoa(n.rpcPort), &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, rpcAddr)
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Status(ctx); err == nil || !strings.Contains(err.Error(), "allowed_hosts") {
		t.Errorf("status through a rebound name: %v, want the allowed_hosts refusal", err)
	}

	dial := func(origin string) (*websocket.Conn, int, string, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+rpcAddr+"/websocket", h)
		code, body := 0, ""
		if resp != nil {
			code = resp.StatusCode
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			resp.Body.Close()
		}
		return c, code, body, err
	}
	if c, code, body, err := dial("https://evil.example"); err == nil || code != http.StatusForbidden || !strings.Contains(body, "cors_allowed_origins") {
		if c != nil {
			c.Close()
		}
		t.Errorf("WebSocket from https://evil.example: status %d %q, %v; want 403 naming cors_allowed_origins", code, body, err)
	}
	for _, origin := range []string{"", appOrigin} {
		c, code, _, err := dial(origin)
		if err != nil {
			t.Fatalf("WebSocket with Origin %q: status %d, %v", origin, code, err)
		}
		if err := c.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "status", "params": map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var answer struct {
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := c.ReadJSON(&answer); err != nil || len(answer.Result) == 0 || answer.Error != nil {
			t.Errorf("status over a WebSocket with Origin %q: %s %s %v", origin, answer.Result, answer.Error, err)
		}
		c.Close()
	}
}

// TestConfigTomlNotesRPCChecks: the config.toml init writes says, beside
// [rpc] laddr and cors_allowed_origins, what emrchaind checks that
// CometBFT's template does not tell, and still reads back; the template's
// scratch copy is gone.
func TestConfigTomlNotesRPCChecks(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-notes"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(home, "config", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	body := string(raw)
	for _, n := range cometRPCNotes {
		if !strings.Contains(body, n.after+n.note) {
			t.Errorf("config.toml lacks, after %q, the note %q", n.after, n.note)
		}
	}
	if _, err := loadCometConfig(home); err != nil {
		t.Fatalf("config.toml with the notes: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(home, "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".config-render-") {
			t.Errorf("init left its scratch directory %s in config/", e.Name())
		}
	}
}
