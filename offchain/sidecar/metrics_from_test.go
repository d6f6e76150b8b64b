package sidecar

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestMetricsOnlyToItsHosts: /metrics says when break-glass keys are
// released and reads served, so it answers the hosts of MetricsFrom
// (loopback by default) and no one else (the session-47 review: it
// answered anyone who reached the sidecar).
func TestMetricsOnlyToItsHosts(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		name   string
		from   []netip.Prefix
		remote string
		want   int
	}{
		{"default, loopback", nil, "127.0.0.1:5000", http.StatusOK},
		{"default, IPv6 loopback", nil, "[::1]:5000", http.StatusOK},
		{"default, another host", nil, "192.0.2.7:5000", http.StatusForbidden},
		{"default, another host mapped to IPv6", nil, "[::ffff:192.0.2.7]:5000", http.StatusForbidden},
		{"a monitoring network", []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, "10.9.3.4:5000", http.StatusOK},
		{"a monitoring network, mapped to IPv6", []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, "[::ffff:10.9.3.4]:5000", http.StatusOK},
		{"a monitoring network, loopback", []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, "127.0.0.1:5000", http.StatusForbidden},
		{"nobody", []netip.Prefix{}, "127.0.0.1:5000", http.StatusForbidden},
		{"no IP address", nil, "@unix", http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, srv := peerOf(t, e, func(o *Options) { o.MetricsFrom = c.from })
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			r.RemoteAddr = c.remote
			w := httptest.NewRecorder()
			srv.Handler().ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("/metrics from %s: %d %s; want %d", c.remote, w.Code, w.Body.String(), c.want)
			}
		})
	}
}
