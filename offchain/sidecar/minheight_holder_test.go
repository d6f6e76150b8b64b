package sidecar

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestLaggingHolderAmongPeersSaysNotYet: three hospitals. A's
// sidecar holds the blob (the uploader's), its node a block behind the
// access event; B's sidecar is up to date and lacks the blob (as every
// sidecar but the uploader's does until someone reads through it); C's
// sidecar, peered with A and B, is asked by the clinician with MinHeight 11.
// A answers chain_behind ("not yet"); B answers 404 (a forwarded request
// is not forwarded again), or B cannot be reached at all. The only peer
// that may hold the blob said "not yet", so C must say "not yet" (503
// chain_behind), not 404 "no peer has it", which the client takes as a
// refusal (ErrSidecarsRefused), as it did when only peers that all said
// "not yet" made a "not yet" (a reviewer's finding, session 37).
func TestLaggingHolderAmongPeersSaysNotYet(t *testing.T) {
	if testing.Short() {
		t.Skip("three sidecars")
	}
	e := newEnv(t, func(o *Options) {
		o.Chain = laggingView{o.Chain, 10}
		o.MaxHeightWait = 200 * time.Millisecond
	})
	_, sum, rec := uploadedRecord(t, e) // A holds it
	b, _ := peerOf(t, e, nil)           // B: up to date, lacks it, no peers
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // a peer that is down
	e.chain.mu.Lock()
	e.chain.head.Height = 11
	e.chain.mu.Unlock()
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)

	for _, tc := range []struct {
		name  string
		peers []string
	}{
		{"A behind, B lacks it", []string{e.ts.URL, b.URL}},
		{"B lacks it, A behind", []string{b.URL, e.ts.URL}},
		{"A behind, the other peer down", []string{e.ts.URL, gone.URL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := peerOf(t, e, func(o *Options) { o.MaxHeightWait = 200 * time.Millisecond }, tc.peers...)
			cl := NewClient(c.URL, e.reader, nil)
			cl.MinHeight = 11
			var buf bytes.Buffer
			_, err := cl.Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
			se, ok := err.(*Error)
			if !ok || se.StatusCode != http.StatusServiceUnavailable || se.Code != CodeChainBehind {
				t.Fatalf("read through C; the only peer that may hold the blob is behind: %v; want 503 chain_behind (not yet), not a refusal", err)
			}
		})
	}
}
