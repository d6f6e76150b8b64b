package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// laggingView is an ownerView whose node is a block behind: at height 10
// until catchUp (never, when zero), then at 11, the height whose block
// committed every record addBlob added.
type laggingView struct {
	*ownerView
	catchUp atomic.Int64 // Unix nanoseconds
}

func (v *laggingView) height() int64 {
	if at := v.catchUp.Load(); at != 0 && time.Now().UnixNano() >= at {
		return 11
	}
	return 10
}

func (v *laggingView) Head(context.Context) (sidecar.Head, error) {
	return sidecar.Head{Height: v.height(), Time: time.Now()}, nil
}

func (v *laggingView) Record(ctx context.Context, id []byte, seq uint64) (*emrv1.Record, error) {
	if v.height() < 11 {
		return nil, fmt.Errorf("%w: record %d (committed in block 11, which this node has not seen)", sidecar.ErrNotFound, seq)
	}
	return v.ownerView.Record(ctx, id, seq)
}

// TestALaggingSidecarSaysNotYet: a download whose record (or access event)
// the client saw committed at height 11, from a sidecar whose node is still
// at 10. Told the height (X-Emr-Min-Height, the Client's MinHeight), the
// sidecar waits for its node and serves the blob, in the client's first
// and only round; if its node does not get there within MaxHeightWait, it
// answers 503 chain_behind, which is not a refusal (ErrSidecarsRefused
// would tell the user that asking again cannot help), and is not asked
// again at once for its Retry-After (the next sidecar is). Not told, it
// refuses (403 "no committed record"), as every sidecar did before.
func TestALaggingSidecarSaysNotYet(t *testing.T) {
	body := bytes.Repeat([]byte("ciphertext of a discharge letter "), 100)
	sum := sha256.Sum256(body)
	var asked atomic.Int32 // requests the sidecar had in the last fetch
	// catchUp is how long after the request is made the node catches up
	// (0: never).
	fetch := func(catchUp time.Duration, tell bool, wait time.Duration) error {
		t.Helper()
		pid := bytes.Repeat([]byte{0x6c}, 32)
		view := &laggingView{ownerView: newOwnerView(testSigner, pid)}
		store, err := blobstore.OpenFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := sidecar.New(sidecar.Options{Store: store, Chain: view, SweepInterval: -1, Registry: prometheus.NewRegistry(), MaxHeightWait: wait})
		if err != nil {
			t.Fatal(err)
		}
		asked.Store(0)
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked.Add(1)
			srv.Handler().ServeHTTP(w, r)
		}))
		defer ts.Close()
		if err := store.Put(context.Background(), sidecar.BlobKey(pid, testCategory, sum), bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
		view.addBlob(sum, int64(len(body)))
		rec, err := view.ownerView.Record(context.Background(), pid, 1)
		if err != nil {
			t.Fatal(err)
		}
		opts := TransferOptions{Sidecars: []string{ts.URL}, RetryDelay: -1} // one round: no retry hides the answer
		if tell {
			var seen atomic.Int64
			seen.Store(11)
			opts.minHeight = seen.Load
		}
		if catchUp > 0 {
			view.catchUp.Store(time.Now().Add(catchUp).UnixNano())
		}
		f, _, err := fetchBlob(context.Background(), testSigner, recordBlob(rec), t.TempDir(), opts, true)
		if err == nil {
			f.Discard()
		}
		return err
	}

	if err := fetch(300*time.Millisecond, true, 0); err != nil {
		t.Fatalf("told the height, a sidecar whose node catches up in 300 ms: %v; want the blob served", err)
	}
	err := fetch(0, true, 100*time.Millisecond)
	var se *sidecar.Error
	if err == nil || errors.Is(err, ErrSidecarsRefused) || !errors.As(err, &se) ||
		se.StatusCode != http.StatusServiceUnavailable || se.Code != "chain_behind" || se.RetryAfter <= 0 {
		t.Fatalf("told the height, a node that stays behind: %v (%+v); want 503 chain_behind with Retry-After, not a refusal", err, se)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the sidecar whose node stays behind was asked %d times; want once (it waited already: the next sidecar is asked)", n)
	}
	err = fetch(300*time.Millisecond, false, 0)
	if !errors.Is(err, ErrSidecarsRefused) || !errors.As(err, &se) || se.StatusCode != http.StatusForbidden {
		t.Fatalf("not told the height: %v; want the node's 403, a refusal", err)
	}
}
