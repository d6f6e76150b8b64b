package sidecar

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestReplayRefusedAfterAHeightWait: a copy of a member's signed request,
// sent again inside its window, is refused even when the sidecar holds it
// up past the window's end. The unsigned X-Emr-Min-Height header lets
// whoever holds a copy make the sidecar wait for the node (up to
// MaxHeightWait): here it names the next block, which the node makes 2 s
// later. By then the first copy's entry in the replay cache has expired
// and been pruned; the copy must be judged by its own window (its
// timestamp plus the skew), which has closed, not by its arrival. (The
// review of session 53 found it served: the cache judged the copy by its
// arrival plus the skew, so it was admitted afresh.)
func TestReplayRefusedAfterAHeightWait(t *testing.T) {
	var mu sync.Mutex
	base, realStart := time.Now(), time.Now()
	var offset time.Duration
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return base.Add(offset + time.Since(realStart))
	}
	e := newEnv(t, func(o *Options) { o.Now = clock })
	data := []byte("ciphertext of a discharge letter")
	if _, err := e.put(e.patient, data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	rec := e.chain.addRecord(e.pid, sum, e.writer)

	// The member's request, signed now and served once.
	first := e.signedGetAt(e.patient, RecordRef(rec.PatientId, rec.Sequence), sum, clock())
	replay := first.Clone(first.Context())
	if resp := do(t, first); resp.StatusCode != http.StatusOK {
		t.Fatalf("first copy: %d", resp.StatusCode)
	}
	// The same request again at once: refused, as it should be.
	if resp := do(t, replay.Clone(replay.Context())); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("immediate replay: %d, want 401", resp.StatusCode)
	}

	// 58.5 s later (the sidecar's and the validators' clocks move
	// together), still inside the request's window, the copy comes again
	// with X-Emr-Min-Height naming the next block, which the node makes
	// 2 s later.
	mu.Lock()
	offset = 58500 * time.Millisecond
	mu.Unlock()
	e.chain.shift(58500 * time.Millisecond)
	e.chain.mu.Lock()
	next := e.chain.head.Height + 1
	e.chain.mu.Unlock()
	go func() {
		time.Sleep(2 * time.Second)
		e.chain.advance(2 * time.Second)
	}()
	replay.Header.Set(HeaderMinHeight, strconv.FormatInt(next, 10))
	resp := do(t, replay)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replay of an already-served signed request, sent inside its window with %s set to the next height: %d, want 401 (replayed)",
			HeaderMinHeight, resp.StatusCode)
	}
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
