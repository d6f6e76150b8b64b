package sidecar

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// blockWholeReads blocks every whole read (off 0, n < 0: a check of the
// copy, or a drop's read of it again) until release is closed; ranges and
// Stat pass.
type blockWholeReads struct {
	blobstore.Store
	started chan struct{}
	once    sync.Once
	release chan struct{}
}

func (s *blockWholeReads) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	if off == 0 && n < 0 {
		s.once.Do(func() { close(s.started) })
		<-s.release
	}
	return s.Store.Get(ctx, key, off, n)
}

// TestWrongSizeCopyDoesNotHoldTheAnswer: a GET at B, whose copy has the
// wrong size, is relayed from peer A, and nothing reads B's copy whole
// meanwhile (the scrub judges it): the first version read the copy whole
// again in a deferred call, before net/http ended the response, and held
// the member's answer for as long (a review's finding). Here every whole
// read is held, and the peer sends its answer in pieces (paced), its
// last bytes a moment after the rest.
func TestWrongSizeCopyDoesNotHoldTheAnswer(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	gate := &blockWholeReads{started: make(chan struct{}), release: make(chan struct{})}
	b, _ := peerOf(t, e, func(o *Options) { gate.Store = o.Store; o.Store = gate }, paced(t, e.ts.URL))
	t.Cleanup(func() { close(gate.release) })
	// B's copy: the first half (a truncated restore).
	path := gate.Store.(*blobstore.FS).Path(e.key(sum))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var buf bytes.Buffer
	start := time.Now()
	_, err := NewClient(b.URL, e.reader, nil).Get(ctx, RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
	if err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("GET relayed from A while B drops its wrong-size copy: %d of %d bytes after %v, %v",
			buf.Len(), len(data), time.Since(start).Round(time.Millisecond), err)
	}
	select {
	case <-gate.started:
		t.Fatal("the GET read the wrong-size copy whole")
	default:
	}
}

// TestPeerStalledInItsRefusalIsLeftForTheNext: a peer that answers a
// refusal's headers and then never sends its body is cut off after
// peerIdle, and the next peer, which holds the blob, serves the member.
// The first version read the refusal with no idle cut and no deadline:
// the GET hung for as long as the member waited (a review's finding).
func TestPeerStalledInItsRefusalIsLeftForTheNext(t *testing.T) {
	defer func(d time.Duration) { peerIdle = d }(peerIdle)
	peerIdle = 200 * time.Millisecond
	e, data, sum, rec := readableRecord(t)
	release := make(chan struct{})
	staller := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusNotFound)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); staller.Close() })
	b, _ := peerOf(t, e, nil, staller.URL, e.ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var buf bytes.Buffer
	start := time.Now()
	_, err := NewClient(b.URL, e.reader, nil).Get(ctx, RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
	if err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("GET via B, first peer stalls in its refusal's body, second holds the blob: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
}

// TestUnsatisfiableRangeThroughARelay: a range that is not satisfiable
// is a 416 (with Content-Range "bytes */size") at a sidecar that lacks
// the blob too, judged on the chain's size before any peer is asked. The
// first version took the peer's 416 as "no peer has it" and answered 404
// not_found, which clients read as a refusal (a review's finding).
func TestUnsatisfiableRangeThroughARelay(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	b, _ := peerOf(t, e, nil, e.ts.URL)
	past := &Range{Start: int64(len(data)) + 10, Length: 5}
	var buf bytes.Buffer
	_, direct := NewClient(e.ts.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, past)
	if statusOf(direct) != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("at A: %v, want 416", direct)
	}
	_, relayed := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, past)
	if statusOf(relayed) != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("via B (relayed from A): %v, want 416 as at A", relayed)
	}
}
