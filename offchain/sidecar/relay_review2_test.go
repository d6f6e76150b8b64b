package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestWrongSizeRecordDoesNotDeleteAnIntactCopy: the chain does not check a
// record's Size against its blob, and any member with the write right can
// add a second record naming an uploaded blob with another size. A GET of
// that record (here forwarded from B, which lacks the blob, to A, which
// holds it) finds A's copy "of the wrong size", and must not delete it:
// every honest record of the blob is served from it. (A version of the
// review's mends dropped such a copy on its size alone: a re-review's
// finding.)
func TestWrongSizeRecordDoesNotDeleteAnIntactCopy(t *testing.T) {
	e := newEnv(t, nil)
	data, sum, good := uploadedRecord(t, e)
	bad := e.chain.addRecord(e.pid, sum, e.writer)
	e.chain.mu.Lock()
	bad.Size = uint64(len(data)) + 1 // a lie the chain accepts
	e.chain.mu.Unlock()
	b, _ := peerOf(t, e, nil, e.ts.URL)
	var buf bytes.Buffer
	_, _ = NewClient(b.URL, e.patient, nil).Get(context.Background(), RecordRef(bad.PatientId, bad.Sequence), sum, &buf, nil)
	if _, err := e.store.Stat(context.Background(), e.key(sum)); err != nil {
		t.Errorf("A's intact copy after a GET of a record with a false size: %v", err)
	}
	got, err := e.get(e.patient, RecordRef(good.PatientId, good.Sequence), sum, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GET of the honest record after a GET of the false one: %v", err)
	}
}

// slowMember is a member's connection that takes in 1 KiB every 20 ms
// (50 KiB/s): a slow link, as a rural clinic's.
type slowMember struct {
	h      http.Header
	status int
	n      int64
}

func (m *slowMember) Header() http.Header { return m.h }
func (m *slowMember) WriteHeader(s int)   { m.status = s }
func (m *slowMember) Flush()              {}
func (m *slowMember) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(len(p), 1024)
		time.Sleep(20 * time.Millisecond)
		m.n += int64(k)
		p = p[k:]
	}
	return total, nil
}

// serveSlowly asks srv for rec's blob as e's patient over a slowMember,
// and returns the bytes it took in and whether the handler aborted.
func serveSlowly(t *testing.T, e *env, srv *Server, rec *emrv1.Record, sum [32]byte) (n, want int64, aborted bool) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/v1/blobs/"+hex.EncodeToString(sum[:])+"?"+RecordRef(rec.PatientId, rec.Sequence).query(), nil)
	if err := signRequestAt(req, e.patient, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	m := &slowMember{h: http.Header{}}
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					panic(p)
				}
				aborted = true
			}
		}()
		srv.Handler().ServeHTTP(m, req)
	}()
	if m.status != http.StatusOK {
		t.Fatalf("status %d", m.status)
	}
	want, _ = strconv.ParseInt(m.h.Get("Content-Length"), 10, 64)
	return m.n, want, aborted
}

// TestSlowMemberIsNotCutFromARelay: a relay's time bound counts the waits
// for the peer's bytes only (waitBudget), so a member that reads steadily
// but slowly is served whole through a relay, as by a sidecar holding
// the blob. (A version of the review's mends bounded the whole relay by a
// deadline, which cut such a member off: a re-review's finding.)
// peerTimeout is shrunk here so a 60 KB blob would show it.
func TestSlowMemberIsNotCutFromARelay(t *testing.T) {
	defer func(d time.Duration) { peerTimeout = d }(peerTimeout)
	peerTimeout = 100 * time.Millisecond
	e := newEnv(t, nil)
	data := bytes.Repeat([]byte("encrypted scan "), 4000) // 60,000 bytes: below 64 KiB sealed, so the deadline is peerTimeout
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.writer)
	if n, want, aborted := serveSlowly(t, e, e.srv, rec, sum); n != want || aborted {
		t.Fatalf("served by A, which holds it: %d of %d bytes, aborted %v", n, want, aborted)
	}
	_, bSrv := peerOf(t, e, nil, paced(t, e.ts.URL))
	if n, want, aborted := serveSlowly(t, e, bSrv, rec, sum); n != want || aborted {
		t.Fatalf("relayed by B from A to the same member: %d of %d bytes, aborted %v", n, want, aborted)
	}
}

// TestReplicaRefusalTrickleIsBounded: a peer (or a proxy in front of it)
// that trickles its refusal, a byte every less than peerIdle, is cut off
// within peerTimeout; with the idle cut alone it held the copy for up to
// 64 KiB (readError's limit) times peerIdle, three weeks (a re-review's
// finding).
func TestReplicaRefusalTrickleIsBounded(t *testing.T) {
	defer func(i, d time.Duration) { peerIdle, peerTimeout = i, d }(peerIdle, peerTimeout)
	peerIdle, peerTimeout = 200*time.Millisecond, 300*time.Millisecond
	e := newEnv(t, nil)
	_, sum, _ := uploadedRecord(t, e)
	trickler := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusServiceUnavailable)
		for i := 0; i < 100; i++ {
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(trickler.Close)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Store: store, Chain: e.chain, SweepInterval: -1, ScrubInterval: -1, Peers: []string{trickler.URL}, Storage: svc})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.replicateOnce(context.Background(), trickler.URL, e.key(sum), 1<<20)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a trickled refusal held the copy %v (peerTimeout %v, peerIdle %v): %v", took.Round(time.Millisecond), peerTimeout, peerIdle, err)
	}
}
