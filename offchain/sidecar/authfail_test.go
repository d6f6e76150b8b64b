package sidecar

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// serveFrom has e's handler answer req as if it came from remoteAddr
// ("ip:port"), in the calling goroutine (so a test may move its clock
// between calls).
func (e *env) serveFrom(req *http.Request, remoteAddr string) (*httptest.ResponseRecorder, ErrorBody) {
	e.t.Helper()
	r := req.Clone(context.Background())
	r.RemoteAddr = remoteAddr
	w := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(w, r)
	var body ErrorBody
	_ = json.NewDecoder(w.Body).Decode(&body)
	return w, body
}

// TestAuthFailureLimit: a host whose requests fail authentication gets 401
// for its first FailedAuthPerMinute of them, then 429 (code auth_failures,
// Retry-After until a token is back) without the chain being asked; a
// validly signed request from it is refused too; another host is
// unaffected; a token comes back with time, and a success takes none; the
// refusals are counted. One case per way to fail, each with the Member
// lookups it costs before the limit.
func TestAuthFailureLimit(t *testing.T) {
	const limit = 3
	const hostA, hostB = "192.0.2.1:41000", "192.0.2.2:41000"
	const perToken = time.Minute / limit
	stranger := KeySigner{Key: newKey("stranger")}
	for _, tc := range []struct {
		name    string
		lookups int // Member lookups of one failing request
		// bad returns a request of e that fails authentication at now;
		// received is a valid request e has answered once.
		bad func(e *env, now time.Time, received *http.Request) *http.Request
	}{
		{"unsigned", 0, func(e *env, now time.Time, _ *http.Request) *http.Request {
			req, err := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/blobs/"+strings.Repeat("0", 64), nil)
			if err != nil {
				e.t.Fatal(err)
			}
			return req
		}},
		{"stale timestamp", 0, func(e *env, now time.Time, _ *http.Request) *http.Request {
			return e.signedGet(e.writer, 1, now.Add(-2*DefaultMaxClockSkew))
		}},
		{"not a member", 1, func(e *env, now time.Time, _ *http.Request) *http.Request {
			return e.signedGet(stranger, 1, now)
		}},
		{"bad signature", 1, func(e *env, now time.Time, _ *http.Request) *http.Request {
			req := e.signedGet(e.writer, 1, now)
			req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(make([]byte, 64)))
			return req
		}},
		{"replay", 1, func(_ *env, _ time.Time, received *http.Request) *http.Request { return received }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			e := newEnv(t, func(o *Options) {
				o.FailedAuthPerMinute = limit
				o.Now = func() time.Time { return now }
			})
			n := 0 // records asked for, so that each valid request is new
			valid := func() *http.Request { n++; return e.signedGet(e.writer, n, now) }
			received := valid() // from a third host: 403, so no failure
			if w, body := e.serveFrom(received, "198.51.100.1:41000"); w.Code != http.StatusForbidden {
				t.Fatalf("a valid request: %d %+v", w.Code, body)
			}
			want := func(step string, req *http.Request, from string, status int, retry string, lookups int) {
				t.Helper()
				before := e.chain.memberLookups()
				w, body := e.serveFrom(req, from)
				if w.Code != status || w.Header().Get("Retry-After") != retry {
					t.Fatalf("%s: %d (Retry-After %q) %+v; want %d (Retry-After %q)", step, w.Code, w.Header().Get("Retry-After"), body, status, retry)
				}
				if status == http.StatusTooManyRequests && (body.Code != "auth_failures" || !strings.Contains(body.Error, "failed_auth_per_minute")) {
					t.Fatalf("%s: refusal %+v", step, body)
				}
				if got := e.chain.memberLookups() - before; got != lookups {
					t.Fatalf("%s: %d Member lookups, want %d", step, got, lookups)
				}
			}
			retry := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
			for range limit {
				want("a failure", tc.bad(e, now, received), hostA, http.StatusUnauthorized, "", tc.lookups)
			}
			want("past the limit", tc.bad(e, now, received), hostA, http.StatusTooManyRequests, retry(perToken), 0)
			want("a valid request from the limited host", valid(), hostA, http.StatusTooManyRequests, retry(perToken), 0)
			want("another host fails", tc.bad(e, now, received), hostB, http.StatusUnauthorized, "", tc.lookups)
			want("another host's valid request", valid(), hostB, http.StatusForbidden, "", 1)

			now = now.Add(perToken - time.Second)
			want("a second before a token is back", valid(), hostA, http.StatusTooManyRequests, retry(time.Second), 0)
			now = now.Add(time.Second)
			want("a token back: a valid request takes none", valid(), hostA, http.StatusForbidden, "", 1)
			want("a valid request again", valid(), hostA, http.StatusForbidden, "", 1)
			want("a failure takes it", tc.bad(e, now, received), hostA, http.StatusUnauthorized, "", tc.lookups)
			want("no token left", tc.bad(e, now, received), hostA, http.StatusTooManyRequests, retry(perToken), 0)

			if m := scrape(t, e); !strings.Contains(m, `emrchain_sidecar_quota_refusals_total{reason="auth_failures"} 4`) {
				t.Fatalf("/metrics does not count 4 auth_failures refusals:\n%s", m)
			}
		})
	}
}

// TestAuthFailureHosts: the addresses of one IPv6 /64 share a bucket, and
// those of two /64s or two IPv4 addresses do not; a negative
// FailedAuthPerMinute limits nothing.
func TestAuthFailureHosts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perMin   int
		from     []string // the first takes the only token, then each asks once
		refused  []bool   // of each of from[1:]
		failures int      // failing requests from from[0] before the others ask
	}{
		{"IPv6: one /64 shares a bucket", 1,
			[]string{"[2001:db8:1:2::1]:41000", "[2001:db8:1:2:ffff:ffff:ffff:fffe]:80", "[2001:db8:1:3::1]:41000", "[2001:db8:1:2::1%eth0]:1"},
			[]bool{true, false, true}, 1},
		{"IPv4: one address a bucket", 1,
			[]string{"192.0.2.1:41000", "192.0.2.1:41001", "[::ffff:192.0.2.1]:1", "192.0.2.2:41000"},
			[]bool{true, true, false}, 1},
		{"negative: no limit", -1,
			[]string{"192.0.2.1:41000", "192.0.2.1:41001"},
			[]bool{false}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.FailedAuthPerMinute = tc.perMin })
			unsigned, err := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/blobs/"+strings.Repeat("0", 64), nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.failures {
				if w, body := e.serveFrom(unsigned, tc.from[0]); w.Code != http.StatusUnauthorized {
					t.Fatalf("failure %d from %s: %d %+v", i, tc.from[0], w.Code, body)
				}
			}
			for i, from := range tc.from[1:] {
				w, body := e.serveFrom(unsigned, from)
				if refused := w.Code == http.StatusTooManyRequests; refused != tc.refused[i] || (!refused && w.Code != http.StatusUnauthorized) {
					t.Fatalf("from %s: %d %+v; want refused=%v", from, w.Code, body, tc.refused[i])
				}
			}
		})
	}
}

// TestClientHost: the bucket of a RemoteAddr.
func TestClientHost(t *testing.T) {
	for _, tc := range []struct{ remote, want, name string }{
		{"192.0.2.1:41000", "192.0.2.1", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:41000", "192.0.2.1", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:443", "fe80::", "fe80::/64"},
		{"[::1]:7070", "::", "::/64"},
		{"@", "invalid IP", "clients without an IP address"},
		{"", "invalid IP", "clients without an IP address"},
	} {
		h := clientHost(tc.remote)
		if h.String() != tc.want || hostName(h) != tc.name {
			t.Errorf("clientHost(%q) = %s (%s), want %s (%s)", tc.remote, h, hostName(h), tc.want, tc.name)
		}
	}
}

// TestAuthFailLimiterBucket: the bucket's arithmetic, with 6 tokens a
// minute (one each 10 s): the burst, the refill, authentications in flight
// at once (each holds a token until it is given back, so no more than the
// bucket can be in flight), and a clock stepped back.
func TestAuthFailLimiterBucket(t *testing.T) {
	type step struct {
		advance time.Duration
		fails   int           // authentications taken and kept (failed or in flight)
		wait    time.Duration // what a take says then (0: a token is left)
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"burst, then a token every 10 s", []step{
			{fails: 5, wait: 0},
			{fails: 1, wait: 10 * time.Second},
			{advance: 4 * time.Second, wait: 6 * time.Second},
			{advance: 6 * time.Second, wait: 0},
			{fails: 1, wait: 10 * time.Second},
			{advance: time.Minute, wait: 0}, // full again
			{fails: 5, wait: 0},
		}},
		{"no more in flight at once than the bucket holds", []step{
			{fails: 6, wait: 10 * time.Second},
			{fails: 100, wait: 10 * time.Second}, // all refused: they take nothing
			{advance: time.Minute, wait: 0},
		}},
		{"a clock stepped back owes one bucket at most", []step{
			{fails: 6, wait: 10 * time.Second},
			{advance: -time.Hour, wait: 10 * time.Second},
			{advance: 10 * time.Second, wait: 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			l := newAuthFailLimiter(6, func() time.Time { return now })
			host := netip.MustParseAddr("192.0.2.1")
			for i, s := range tc.steps {
				now = now.Add(s.advance)
				for range s.fails {
					l.take(host)
				}
				refund, wait, ok := l.take(host)
				if wait != s.wait || ok != (s.wait == 0) {
					t.Fatalf("step %d: take = %s, %v; want %s", i, wait, ok, s.wait)
				}
				if ok {
					refund() // a probe that succeeded: its token goes back
				}
			}
		})
	}
}

// TestAuthFailLimiterRefund: a token given back is there again, and a
// bucket full again is dropped from the table.
func TestAuthFailLimiterRefund(t *testing.T) {
	now := time.Now()
	l := newAuthFailLimiter(2, func() time.Time { return now })
	host := netip.MustParseAddr("192.0.2.1")
	r1, _, _ := l.take(host)
	r2, _, _ := l.take(host)
	if _, _, ok := l.take(host); ok {
		t.Fatal("a third authentication in flight got a token of two")
	}
	r1()
	if _, _, ok := l.take(host); !ok {
		t.Fatal("the token given back is not there")
	}
	r2()
	now = now.Add(time.Minute)
	if _, _, ok := l.take(host); !ok {
		t.Fatal("no token after a minute")
	}
	refund, _, _ := l.take(host)
	refund()
	if _, tracked := l.full[host]; !tracked {
		t.Fatal("a bucket that lacks a token is not tracked")
	}
	now = now.Add(time.Minute)
	refund, _, _ = l.take(host)
	refund()
	if _, tracked := l.full[host]; tracked {
		t.Fatal("a bucket full again after a refund is still tracked")
	}
}

// TestAuthFailLimiterBound: the table never tracks more than its bound of
// hosts; when full, it drops the buckets that are full again, at most once
// a second, and a host it has no room for is not tracked (nor limited).
func TestAuthFailLimiterBound(t *testing.T) {
	now := time.Now()
	l := newAuthFailLimiter(60, func() time.Time { return now }) // a token a second
	l.max = 3
	host := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i, s := range []struct {
		advance time.Duration
		host    int
		tracked bool // host is in the table after its failure
		size    int
	}{
		{host: 1, tracked: true, size: 1},
		{host: 2, tracked: true, size: 2},
		{host: 3, tracked: true, size: 3},
		{advance: 500 * time.Millisecond, host: 4, tracked: false, size: 3}, // none refilled
		// 1, 2 and 3 are full again, but the last search was 0.7 s ago.
		{advance: 700 * time.Millisecond, host: 5, tracked: false, size: 3},
		{advance: 300 * time.Millisecond, host: 5, tracked: true, size: 1},
		{host: 1, tracked: true, size: 2},
		{host: 1, tracked: true, size: 2},
		{host: 6, tracked: true, size: 3},
		{advance: 1500 * time.Millisecond, host: 7, tracked: true, size: 2}, // 5 and 6 refilled, 1 not
	} {
		now = now.Add(s.advance)
		l.take(host(s.host))
		l.mu.Lock()
		_, tracked := l.full[host(s.host)]
		size := len(l.full)
		l.mu.Unlock()
		if tracked != s.tracked || size != s.size {
			t.Fatalf("step %d: host %d tracked=%v, %d hosts; want %v, %d", i, s.host, tracked, size, s.tracked, s.size)
		}
	}
	// A host the table has no room for is not limited, however often it
	// fails.
	l.take(host(8))
	for range 100 {
		l.take(host(99))
	}
	if _, _, ok := l.take(host(99)); !ok || len(l.full) != l.max {
		t.Fatalf("a host the table has no room for: allowed=%v, %d hosts", ok, len(l.full))
	}
	// A flood of new hosts never grows the table past its bound.
	for i := range 1000 {
		now = now.Add(time.Duration(i%3) * time.Second)
		l.take(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		if len(l.full) > l.max {
			t.Fatalf("%d hosts tracked, bound %d", len(l.full), l.max)
		}
	}
}

// TestAuthFailureOnlyUnauthenticatedCharged: only an authentication that
// fails (401) is charged to the host. A suspended member's requests (403)
// and requests while the chain is unreachable (503), however many, leave
// the host its tokens: an outage of the node must not lock clients out
// once it is over.
func TestAuthFailureOnlyUnauthenticatedCharged(t *testing.T) {
	const limit = 2
	const host = "192.0.2.1:41000"
	now := time.Now()
	e := newEnv(t, func(o *Options) {
		o.FailedAuthPerMinute = limit
		o.Now = func() time.Time { return now }
	})
	n := 0
	get := func(a Signer) *http.Request { n++; return e.signedGet(a, n, now) }
	e.chain.setStatus(e.writer, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	for i := range 3 * limit {
		if w, body := e.serveFrom(get(e.writer), host); w.Code != http.StatusForbidden {
			t.Fatalf("suspended member's request %d: %d %+v, want 403", i, w.Code, body)
		}
	}
	e.chain.setStatus(e.writer, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE)
	e.chain.mu.Lock()
	e.chain.down = true
	e.chain.mu.Unlock()
	for i := range 3 * limit {
		if w, body := e.serveFrom(get(e.writer), host); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("request %d with the chain down: %d %+v, want 503", i, w.Code, body)
		}
	}
	e.chain.mu.Lock()
	e.chain.down = false
	e.chain.mu.Unlock()
	for i := range limit {
		req := get(e.writer)
		req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(make([]byte, 64)))
		if w, body := e.serveFrom(req, host); w.Code != http.StatusUnauthorized {
			t.Fatalf("bad signature %d after the 403s and 503s: %d %+v, want 401 (the host's tokens intact)", i, w.Code, body)
		}
	}
	// The limiter is on: the failures above took every token.
	req := get(e.writer)
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(make([]byte, 64)))
	if w, body := e.serveFrom(req, host); w.Code != http.StatusTooManyRequests {
		t.Fatalf("bad signature past the limit: %d %+v, want 429", w.Code, body)
	}
}
