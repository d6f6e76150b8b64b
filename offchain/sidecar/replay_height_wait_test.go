package sidecar

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// onHeadView calls f with every head its chain view answers.
type onHeadView struct {
	ChainView
	f func(Head)
}

func (v onHeadView) Head(ctx context.Context) (Head, error) {
	h, err := v.ChainView.Head(ctx)
	if err == nil {
		v.f(h)
	}
	return h, err
}

// TestReplayRefusedAfterAHeightWait: a copy of a member's signed request,
// sent again inside its window, is refused even when the sidecar holds it
// up past the window's end. The unsigned X-Emr-Min-Height header lets
// whoever holds a copy make the sidecar wait for the node (up to
// MaxHeightWait): here it names the next block, which the node makes, 2 s
// later, once the sidecar waits for it. By then the first copy's entry in
// the replay cache has expired and been pruned; the copy is judged by its
// own window (its timestamp plus the skew), which has closed, not by its
// arrival. (The review of session 53 found it served: the cache judged the
// copy by its arrival plus the skew, so it was admitted afresh.) The
// sidecar's clock moves only when the test moves it.
func TestReplayRefusedAfterAHeightWait(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	var e *env
	var waitFor int64 // the height the replay names; 0: not sent yet
	var once sync.Once
	e = newEnv(t, func(o *Options) {
		o.Now = clock
		o.Chain = onHeadView{o.Chain, func(h Head) {
			mu.Lock()
			want := waitFor
			mu.Unlock()
			if want != 0 && h.Height < want {
				once.Do(func() { // the sidecar waits: the node makes the block 2 s later
					mu.Lock()
					now = now.Add(2 * time.Second)
					mu.Unlock()
					e.chain.advance(2 * time.Second)
				})
			}
		}}
	})
	_, sum, rec := uploadedRecord(t, e)

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
	// with X-Emr-Min-Height naming the next block.
	e.chain.shift(58500 * time.Millisecond)
	e.chain.mu.Lock()
	next := e.chain.head.Height + 1
	e.chain.mu.Unlock()
	mu.Lock()
	now = now.Add(58500 * time.Millisecond)
	waitFor = next
	mu.Unlock()
	replay.Header.Set(HeaderMinHeight, strconv.FormatInt(next, 10))
	status, body := doJSON(t, replay)
	if status != http.StatusUnauthorized || !strings.Contains(body.Error, errReplayWindowPassed.Error()) {
		t.Fatalf("replay of an already-served signed request, sent inside its window with %s set to the next height: %d %q, "+
			"want 401 saying its window closed while it was checked", HeaderMinHeight, status, body.Error)
	}
}
