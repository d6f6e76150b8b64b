package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestBusyPeerIsNotAMissingBlob: the only peer says 503 (busy, Retry-After
// 1 s) once, at the first key of a pass, and is held for a second, so the
// pass's other keys are not asked for. None of them is recorded as a
// missing blob (the backoff is for records whose blob was never uploaded):
// the next pass copies them all. (From the re-review: they were backed off.)
func TestBusyPeerIsNotAMissingBlob(t *testing.T) {
	e := newEnv(t, nil)
	nameStorageOrgs(e, "hospital-b")
	for i := range 3 {
		committedBlob(t, e, bytes.Repeat([]byte(fmt.Sprintf("encrypted note %d ", i)), 50))
	}
	target, _ := url.Parse(e.ts.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var calls atomic.Int64
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			writeError(w, retryLater(http.StatusServiceUnavailable, "index_unavailable", time.Second, "busy"))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(busy.Close)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	_, b := peerOf(t, e, func(o *Options) { o.Storage = svc }, busy.URL)

	rep, err := b.ReplicatePass(context.Background())
	if err != nil || rep.Failed != 3 {
		t.Fatalf("pass 1: %+v, %v", rep, err)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("pass 1 asked the peer %d times; the other keys were 'left alone' unasked", got)
	}
	time.Sleep(1200 * time.Millisecond) // the hold ends
	rep, err = b.ReplicatePass(context.Background())
	if err != nil || rep.Copied != 3 {
		t.Fatalf("pass 2, after the peer's hold ended: %+v, %v; want the 3 blobs the peer holds copied (a busy or held peer is not a missing blob)", rep, err)
	}
}
