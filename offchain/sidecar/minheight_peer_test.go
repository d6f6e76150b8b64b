package sidecar

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// laggingView is a chain view whose node is stuck at height (a node a
// few blocks behind).
type laggingView struct {
	ChainView
	height int64
}

func (v laggingView) Head(ctx context.Context) (Head, error) {
	h, err := v.ChainView.Head(ctx)
	h.Height = min(h.Height, v.height)
	return h, err
}

// TestLaggingPeerSaysNotYet: hospital A's sidecar holds the blob,
// its node lags at 10; hospital B's sidecar, whose node has block 11 (the
// access event), lacks it and reads it through A, forwarding
// X-Emr-Min-Height 11. A waits and answers 503 chain_behind ("not yet").
// B must pass that on (503 chain_behind), not turn it into 404 not_found
// ("no sidecar has it"), which the client takes as a refusal
// (ErrSidecarsRefused: "retrying will not help unless another sidecar
// holds the blob"), as it did before a reviewer's finding (session 37).
func TestLaggingPeerSaysNotYet(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Chain = laggingView{o.Chain, 10}
		o.MaxHeightWait = 200 * time.Millisecond
	})
	_, sum, rec := uploadedRecord(t, e) // A holds it
	b, _ := peerOf(t, e, func(o *Options) { o.MaxHeightWait = 200 * time.Millisecond }, e.ts.URL)
	e.chain.mu.Lock()
	e.chain.head.Height = 11 // the block of the access event below
	e.chain.mu.Unlock()
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)

	c := NewClient(b.URL, e.reader, nil)
	c.MinHeight = 11
	var buf bytes.Buffer
	_, err := c.Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
	var se *Error
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || se.Code != CodeChainBehind || se.RetryAfter <= 0 {
		t.Fatalf("read through B of a blob only A holds, A's node a block behind the access event: %v; want 503 (not yet), not a refusal", err)
	}
}
