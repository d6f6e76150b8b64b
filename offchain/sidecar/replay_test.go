package sidecar

import (
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// add is admit for requests of one signer, as the cache's first tests
// use it.
func (c *replayCache) add(key [32]byte, expires time.Time) (bool, error) {
	return c.admit(signerAddr{}, key, expires, 0)
}

// TestReplayCachePerSigner: a signer holding perSigner live entries is
// refused (errReplaySignerFull, retry when its oldest expires) while other
// signers are not; a replay is still a replay; the signer is admitted
// again once its oldest entry expired; the global bound still refuses
// everyone when the cache is full, and forgets nothing.
func TestReplayCachePerSigner(t *testing.T) {
	a, b, d := signerAddr{1}, signerAddr{2}, signerAddr{3}
	type step struct {
		signer  signerAddr
		key     byte
		exp     time.Duration // after the current clock
		advance time.Duration // the clock moves first
		fresh   bool
		err     error         // nil, errReplaySignerFull, errReplayCacheFull
		retry   time.Duration // for errReplaySignerFull
	}
	for _, tc := range []struct {
		name           string
		max, perSigner int
		steps          []step
	}{
		{"one signer up to its limit, then refused until its oldest expires", 10, 3, []step{
			{signer: a, key: 1, exp: 3 * time.Minute, fresh: true},
			{signer: a, key: 2, exp: time.Minute, fresh: true}, // the oldest, out of order
			{signer: a, key: 3, exp: 2 * time.Minute, fresh: true},
			{signer: a, key: 4, exp: time.Minute, err: errReplaySignerFull, retry: time.Minute},
			{signer: b, key: 5, exp: time.Minute, fresh: true},  // others unaffected
			{signer: a, key: 2, exp: time.Minute, fresh: false}, // a replay is still a replay
			{signer: a, key: 6, exp: time.Minute, advance: 30 * time.Second, err: errReplaySignerFull, retry: 30 * time.Second},
			// Key 2 expired; key 6 keeps the expiry it was signed with.
			{signer: a, key: 6, exp: time.Minute, advance: 30 * time.Second, fresh: true},
			{signer: a, key: 7, exp: time.Minute, err: errReplaySignerFull, retry: 30 * time.Second},
		}},
		{"the global bound still refuses everyone and forgets nothing", 3, 2, []step{
			{signer: a, key: 1, exp: time.Minute, fresh: true},
			{signer: b, key: 2, exp: time.Minute, fresh: true},
			{signer: d, key: 3, exp: time.Minute, fresh: true},
			{signer: d, key: 4, exp: time.Minute, err: errReplayCacheFull},
			{signer: signerAddr{9}, key: 5, exp: time.Minute, err: errReplayCacheFull},
			{signer: a, key: 1, exp: time.Minute, fresh: false},
			{signer: a, key: 6, exp: 3 * time.Minute, advance: time.Minute, fresh: true},
		}},
		{"a signer over its limit is told so, not that the cache is full", 2, 2, []step{
			{signer: a, key: 1, exp: time.Minute, fresh: true},
			{signer: a, key: 2, exp: time.Minute, fresh: true},
			{signer: a, key: 3, exp: time.Minute, err: errReplaySignerFull, retry: time.Minute},
			{signer: b, key: 4, exp: time.Minute, err: errReplayCacheFull},
		}},
		{"no limit per signer", 4, 0, []step{
			{signer: a, key: 1, exp: time.Minute, fresh: true},
			{signer: a, key: 2, exp: time.Minute, fresh: true},
			{signer: a, key: 3, exp: time.Minute, fresh: true},
			{signer: a, key: 4, exp: time.Minute, fresh: true},
			{signer: a, key: 5, exp: time.Minute, err: errReplayCacheFull},
		}},
		{"a clock stepped back keeps every entry and every count", 10, 2, []step{
			{signer: a, key: 1, exp: time.Minute, fresh: true},
			{signer: a, key: 2, exp: time.Minute, fresh: true},
			{signer: a, key: 3, exp: time.Minute, advance: -5 * time.Minute, err: errReplaySignerFull, retry: 6 * time.Minute},
			{signer: a, key: 1, exp: 6 * time.Minute, fresh: false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			c := newReplayCache(tc.max, func() time.Time { return now })
			c.perSigner = tc.perSigner
			// A key's expiry is fixed when it is first seen (it is its
			// timestamp plus the skew): a replay comes with the same.
			exps := map[byte]time.Time{}
			for i, s := range tc.steps {
				now = now.Add(s.advance)
				exp, ok := exps[s.key]
				if !ok {
					exp = now.Add(s.exp)
					exps[s.key] = exp
				}
				fresh, err := c.admit(s.signer, [32]byte{s.key}, exp, 0)
				if fresh != s.fresh || !errors.Is(err, s.err) || (s.err == nil) != (err == nil) {
					t.Fatalf("step %d: fresh=%v err=%v, want fresh=%v err=%v", i, fresh, err, s.fresh, s.err)
				}
				var busy *signerBusyError
				if errors.As(err, &busy) && (busy.retryAfter != s.retry || busy.limit != tc.perSigner) {
					t.Fatalf("step %d: retry after %s (limit %d), want %s (limit %d)", i, busy.retryAfter, busy.limit, s.retry, tc.perSigner)
				}
			}
			// The counts per signer are the entries: nothing leaks.
			c.mu.Lock()
			defer c.mu.Unlock()
			total := 0
			for _, h := range c.bySigner {
				total += h.Len()
			}
			if total != len(c.entries) || len(c.byExp) != len(c.entries) {
				t.Fatalf("%d entries, %d in the expiry heap, %d counted per signer", len(c.entries), len(c.byExp), total)
			}
		})
	}
}

// TestSignerQuotaHTTP: through the server, a member signing more requests
// than replay_per_signer within the window is refused with 429, a
// Retry-After of the seconds until its oldest request leaves the window,
// and a body that names the limit; another member is served meanwhile, and
// the refusal is counted by reason. A request counts for a whole window
// from its arrival, whatever its timestamp: one set back to the edge of
// the window used to leave the quota within a second.
func TestSignerQuotaHTTP(t *testing.T) {
	t0 := time.Now()
	e := newEnv(t, func(o *Options) {
		o.ReplayPerSigner = 3
		o.Now = func() time.Time { return t0 }
	})
	const skew = DefaultMaxClockSkew
	// Three requests (refused as unauthorized, but received), two of
	// them signed in the past: each counts until skew after now.
	for i, at := range []time.Time{t0, t0.Add(-10 * time.Second), t0.Add(-skew + time.Second)} {
		if status, body := doJSON(t, e.signedGet(e.writer, i+1, at)); status != http.StatusForbidden {
			t.Fatalf("request %d: %d %+v", i, status, body)
		}
	}
	req := e.signedGet(e.writer, 9, t0)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantRetry := strconv.Itoa(int(skew / time.Second))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != wantRetry {
		t.Fatalf("fourth request: %d, Retry-After %q; want 429 and %s", resp.StatusCode, resp.Header.Get("Retry-After"), wantRetry)
	}
	_, err = e.get(e.writer, RecordRef(e.pid, 10), [32]byte{}, nil)
	wantStatus(t, err, http.StatusTooManyRequests, "replay_per_signer")
	var se *Error
	if errors.As(err, &se); se.Code != "signer_quota" || !strings.Contains(se.Reason, "3 are within the replay window") {
		t.Fatalf("refusal: %+v", se)
	}
	// Another member is not affected.
	if status, body := doJSON(t, e.signedGet(e.reader, 1, t0)); status != http.StatusForbidden {
		t.Fatalf("another signer: %d %+v", status, body)
	}
	// Still counted a second before the window from their arrival ends;
	// served once it has.
	t0 = t0.Add(skew - time.Second)
	if status, _ := doJSON(t, e.signedGet(e.writer, 11, t0)); status != http.StatusTooManyRequests {
		t.Fatalf("a second before the window from arrival ends: %d, want 429", status)
	}
	t0 = t0.Add(time.Second)
	if status, body := doJSON(t, e.signedGet(e.writer, 12, t0)); status != http.StatusForbidden {
		t.Fatalf("after the window from arrival: %d %+v", status, body)
	}
	metrics := scrape(t, e)
	for _, want := range []string{
		`emrchain_sidecar_quota_refusals_total{reason="signer_requests"} 3`,
		`emrchain_sidecar_requests_total{outcome="too_many_requests",route="get_blob"} 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

// signedGet is a GET under record n of e's patient, which does not exist
// (403 for a member), signed by a at at.
func (e *env) signedGet(a Signer, n int, at time.Time) *http.Request {
	return e.signedGetAt(a, RecordRef(e.pid, uint64(n)), [32]byte{}, at)
}

// signedGetAt is a's GET of blob sum of ref, signed at at.
func (e *env) signedGetAt(a Signer, ref BlobRef, sum [32]byte, at time.Time) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/blobs/"+hex.EncodeToString(sum[:])+"?"+ref.query(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := signRequestAt(req, a, "", at); err != nil {
		e.t.Fatal(err)
	}
	return req
}

// scrape reads e's /metrics.
func scrape(t *testing.T, e *env) string {
	t.Helper()
	resp, err := http.Get(e.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
