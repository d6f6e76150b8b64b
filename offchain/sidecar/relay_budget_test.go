package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// slowLastRead returns all of data in one read, with io.EOF, after a wait:
// as net/http's body returns the last bytes of a Content-Length body.
type slowLastRead struct {
	data []byte
	wait time.Duration
}

func (r *slowLastRead) Read(p []byte) (int, error) {
	time.Sleep(r.wait)
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// TestWaitBudgetSpentOnTheLastReadKeepsTheAnswer: a read that brings the
// last bytes of the answer together with io.EOF is a complete answer; the
// budget running out during it does not turn it into errPeerTooSlow,
// which made the relay abort an answer it held whole (a third review's
// finding).
func TestWaitBudgetSpentOnTheLastReadKeepsTheAnswer(t *testing.T) {
	canceled := false
	b := &waitBudget{r: &slowLastRead{data: []byte("tail"), wait: 30 * time.Millisecond}, left: 10 * time.Millisecond,
		cancel: func() { canceled = true }}
	buf := make([]byte, 16)
	n, err := b.Read(buf)
	if n != 4 || err != io.EOF {
		t.Fatalf("last read of a complete answer: %d bytes, %v (canceled %v); want 4 bytes and io.EOF", n, err, canceled)
	}
}

// TestRelayStallIsCutAtTheBudget: a peer that stalls before its last bytes
// (within peerIdle) is cut off once the relay's reads have waited its
// budget (peerTimeout plus size/relayMinRate), during the stall; the
// first waitBudget looked at the clock only after a read returned, so the
// relay waited out the whole stall (a third review's finding).
func TestRelayStallIsCutAtTheBudget(t *testing.T) {
	defer func(d time.Duration) { peerTimeout = d }(peerTimeout)
	peerTimeout = 100 * time.Millisecond // budget: 100 ms + 0 s for a blob below 64 KiB sealed
	const stall = 1500 * time.Millisecond
	e := newEnv(t, nil)
	data := bytes.Repeat([]byte("encrypted scan "), 2000)
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.writer)
	staller := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, body, err := forward(e.ts.URL, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		answerWith(w, resp)
		if len(body) < 200 {
			_, _ = w.Write(body)
			return
		}
		_, _ = w.Write(body[:len(body)-100])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(stall):
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(body[len(body)-100:])
	}))
	t.Cleanup(staller.Close)
	b, _ := peerOf(t, e, nil, staller.URL)
	start := time.Now()
	var buf bytes.Buffer
	_, err := NewClient(b.URL, e.patient, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
	took := time.Since(start)
	if took > stall*2/3 {
		t.Fatalf("relay of a peer stalled %v with a budget of %v ended after %v (%d of %d bytes, err %v): the budget did not cut the stall",
			stall, peerTimeout, took.Round(time.Millisecond), buf.Len(), len(data), err)
	}
	// The relay began the answer, then cut it: the member sees it cut short.
	if !errors.Is(err, ErrCutShort) {
		t.Fatalf("relay of a stalled peer ended after %v with %d bytes and %v, want ErrCutShort", took.Round(time.Millisecond), buf.Len(), err)
	}
}
