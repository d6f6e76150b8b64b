package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// peerOf starts a second sidecar on e's chain with its own filesystem
// store, whose peers are peers; mod, if not nil, amends its options (it
// may wrap o.Store).
func peerOf(t *testing.T, e *env, mod func(*Options), peers ...string) (*httptest.Server, *Server) {
	t.Helper()
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Store: store, Chain: e.chain, SweepInterval: -1, Peers: peers}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, srv
}

// uploadedRecord uploads a blob to e's sidecar as its writer and records
// it on the chain.
func uploadedRecord(t *testing.T, e *env) ([]byte, [32]byte, *emrv1.Record) {
	t.Helper()
	data := bytes.Repeat([]byte("encrypted lab report "), 500)
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	return data, sum, e.chain.addRecord(e.pid, sum, e.writer)
}

// TestReadThroughPeers: a sidecar that lacks a blob asks a peer on the
// member's own authorization and relays the peer's answer, sealed to the
// member, keeping nothing; the peer refuses whom it would refuse
// directly; an answer not sealed, or of another size than the chain's, is
// not relayed, and one sealed with other bytes fails the member's hash
// check; forwarded requests are not forwarded again.
func TestReadThroughPeers(t *testing.T) {
	e := newEnv(t, nil) // hospital A's sidecar: holds the upload
	data, sum, rec := uploadedRecord(t, e)
	b, bSrv := peerOf(t, e, nil, e.ts.URL) // hospital B's sidecar, peered with A
	viaB := func(a *actor) ([]byte, error) {
		var buf bytes.Buffer
		_, err := NewClient(b.URL, a, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
		return buf.Bytes(), err
	}

	// No access event: B refuses before it asks any peer (it authorizes
	// the member on its own view of the chain first).
	_, err := viaB(e.reader)
	wantStatus(t, err, 403, "no committed access event")

	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	got, err := viaB(e.reader)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through B: %v", err)
	}
	// So is a range, which A serves from its copy.
	var part bytes.Buffer
	if _, err := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &part, &Range{Start: 100, Length: 50}); err != nil || !bytes.Equal(part.Bytes(), data[100:150]) {
		t.Fatalf("a range read through B: %q, %v", part.Bytes(), err)
	}
	// The answer was sealed to the member: B could not keep it.
	if _, err := bSrv.store.Stat(context.Background(), e.key(sum)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("B kept a copy of a relayed blob: %v", err)
	}

	// A peer that serves other bytes under the hash is caught by the
	// member's hash check; one that announces another size than the
	// chain's, or does not seal its answer, is refused before a byte is
	// relayed.
	other := bytes.Repeat([]byte("another report "), 100)
	otherSum := sha256.Sum256(other)
	forged := bytes.Repeat([]byte("forged report! "), 100)
	var lie atomic.Int32
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch lie.Load() {
		case 0:
			sealedAnswer(w, r, e.reader, forged, int64(len(forged)))
		case 1:
			sealedAnswer(w, r, e.reader, forged[:5], 5)
		default:
			w.Header().Set("Content-Length", strconv.Itoa(len(forged)))
			w.Write(forged)
		}
	}))
	t.Cleanup(liar.Close)
	rec2 := e.chain.addRecord(e.pid, otherSum, e.writer)
	rec2.Size = uint64(len(other))
	e.chain.recordAccess(rec2, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	c, _ := peerOf(t, e, nil, liar.URL)
	var buf bytes.Buffer
	getViaC := func() error {
		buf.Reset()
		_, err := NewClient(c.URL, e.reader, nil).Get(context.Background(), RecordRef(rec2.PatientId, rec2.Sequence), otherSum, &buf, nil)
		return err
	}
	if err := getViaC(); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("other bytes sealed under the hash: %v, want ErrHashMismatch", err)
	}
	lie.Store(1)
	wantStatus(t, getViaC(), 404, "it announces 5 bytes; the chain says the blob has 1500")
	lie.Store(2)
	wantStatus(t, getViaC(), 404, "it did not answer sealed")

	// A hostile peer's refusal (terminal escapes, a bidirectional override,
	// 60 KB) reaches the member in this sidecar's 404 only cleaned and
	// bounded, and so does the 404 itself at the client.
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"error":"\u001b]0;owned\u0007\u001b[2J\u202e%s","code":"x\u001b[31m"}`, strings.Repeat("A", 60_000))
	}))
	t.Cleanup(hostile.Close)
	h, _ := peerOf(t, e, nil, hostile.URL)
	// The sidecar's own answer, read raw (a Client would clean it again).
	req, err := http.NewRequest(http.MethodGet, h.URL+"/v1/blobs/"+hex.EncodeToString(otherSum[:])+"?"+RecordRef(rec2.PatientId, rec2.Sequence).query(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(req, e.reader, ""); err != nil {
		t.Fatal(err)
	}
	status, body := doJSON(t, req)
	if status != 404 || !strings.Contains(body.Error, "AAAA") {
		t.Fatalf("through a hostile peer: %d %+v", status, body)
	}
	if strings.ContainsAny(body.Error+body.Code, "\x1b\x07\u202e") || len(body.Error) > 4*maxErrorReason {
		t.Fatalf("a hostile peer's reason went raw into the sidecar's answer (%d bytes): %.200q", len(body.Error), body.Error)
	}
	// And the member's client keeps it bounded too.
	_, err = NewClient(h.URL, e.reader, nil).Get(context.Background(), RecordRef(rec2.PatientId, rec2.Sequence), otherSum, &buf, nil)
	var se *Error
	if !errors.As(err, &se) || se.StatusCode != 404 || len(se.Reason) > maxErrorReason {
		t.Fatalf("through a hostile peer, at the client: %v", err)
	}

	// Two sidecars peered with each other, neither holding the blob: the
	// forwarded request is not forwarded back, so the answer is a 404, not
	// a loop.
	var yHandler http.Handler
	y := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { yHandler.ServeHTTP(w, r) }))
	t.Cleanup(y.Close)
	x, _ := peerOf(t, e, nil, y.URL)
	yStore, _ := blobstore.OpenFS(t.TempDir())
	ySrv, err := New(Options{Store: yStore, Chain: e.chain, SweepInterval: -1, Peers: []string{x.URL}})
	if err != nil {
		t.Fatal(err)
	}
	yHandler = ySrv.Handler()
	_, err = NewClient(y.URL, e.reader, nil).Get(context.Background(), RecordRef(rec2.PatientId, rec2.Sequence), otherSum, &buf, nil)
	wantStatus(t, err, 404, "no peer sidecar has the blob")
	// The answer passes on why the peer refused, in the peer's words.
	wantStatus(t, err, 404, x.URL+": sidecar: 404 Not Found: blob "+hex.EncodeToString(otherSum[:]))
}

// damageFixture: sidecar A holds an uploaded record's blob intact, B is
// peered with A, C (lone) has no peers; the record's read is logged.
type damageFixture struct {
	t          *testing.T
	e          *env
	data       []byte
	sum        [32]byte
	rec        *emrv1.Record
	b, lone    *httptest.Server
	bSrv, cSrv *Server
}

func newDamageFixture(t *testing.T) *damageFixture {
	f := &damageFixture{t: t, e: newEnv(t, nil)}
	f.data, f.sum, f.rec = uploadedRecord(t, f.e)
	f.b, f.bSrv = peerOf(t, f.e, nil, f.e.ts.URL)
	f.lone, f.cSrv = peerOf(t, f.e, nil)
	f.e.chain.recordAccess(f.rec, f.e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	return f
}

// damage writes the blob's bytes, changed by bad, as srv's stored copy
// and returns its path.
func (f *damageFixture) damage(srv *Server, bad func([]byte) []byte) string {
	f.t.Helper()
	p := srv.store.(*blobstore.FS).Path(f.e.key(f.sum))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, bad(bytes.Clone(f.data)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// get reads the record's blob (or rng of it) from url as the reader.
func (f *damageFixture) get(url string, rng *Range) ([]byte, error) {
	var buf bytes.Buffer
	_, err := NewClient(url, f.e.reader, nil).Get(context.Background(), RecordRef(f.rec.PatientId, f.rec.Sequence), f.sum, &buf, rng)
	return buf.Bytes(), err
}

// reuploadServes: C answers 404, then serves the blob the uploader puts
// again over whatever C held.
func (f *damageFixture) reuploadServes() {
	f.t.Helper()
	_, err := f.get(f.lone.URL, nil)
	wantStatus(f.t, err, http.StatusNotFound, "not stored on this sidecar")
	if _, err := NewClient(f.lone.URL, f.e.writer, nil).Put(context.Background(), f.e.pid, testCategory, f.sum, bytes.NewReader(f.data), int64(len(f.data))); err != nil {
		f.t.Fatal(err)
	}
	if got, err := f.get(f.lone.URL, nil); err != nil || !bytes.Equal(got, f.data) {
		f.t.Fatalf("GET after the uploader put the blob again: %d of %d bytes, %v", len(got), len(f.data), err)
	}
}

// TestDamagedCopyIsRepaired: a stored copy whose size is not the chain's
// (torn by a disk, truncated by a bad restore) is never served: the GET
// is answered from a peer that holds the blob intact, and with no peer to
// ask it is a 404. The GET drops nothing on the record's word (a record
// may name a blob with a false size: TestWrongSizeRecordDoesNotDeleteAnIntactCopy);
// the scrub, which reads the copy whole, drops it (and a storage service
// copies it back: replica.go). A re-upload of the right bytes serves.
func TestDamagedCopyIsRepaired(t *testing.T) {
	f := newDamageFixture(t)
	half := func(b []byte) []byte { return b[:len(b)/2] }
	p := f.damage(f.bSrv, half)
	if got, err := f.get(f.b.URL, nil); err != nil || !bytes.Equal(got, f.data) {
		t.Fatalf("GET via B of a record whose copy there is damaged (intact on peer A): %d of %d bytes, %v", len(got), len(f.data), err)
	}
	if rep, err := f.bSrv.Scrub(context.Background()); err != nil || rep.Damaged != 1 {
		t.Fatalf("B's scrub: %+v, %v; want the damaged copy found", rep, err)
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the scrub did not drop B's damaged copy: %v", err)
	}
	f.damage(f.cSrv, half)
	f.reuploadServes()
}

// TestSameSizeDamagedCopy: a stored copy of the right size whose bytes are
// not the blob (a flipped bit) is not served whole: the GET is cut short,
// the copy is dropped and counted, and the next GET is answered from a
// peer that holds it intact; with no peer, it is a 404 until the
// uploader puts the blob again. (A range of a damaged copy:
// TestRangeOfDamagedCopy.)
func TestSameSizeDamagedCopy(t *testing.T) {
	f := newDamageFixture(t)
	flip := func(b []byte) []byte { b[len(b)/3] ^= 0x20; return b }
	cutShort := func(srv *Server, url string, p string) {
		t.Helper()
		before := testutil.ToFloat64(srv.metrics.damaged)
		got, err := f.get(url, nil)
		if err == nil || errors.Is(err, ErrHashMismatch) || !errors.Is(err, ErrCutShort) {
			t.Fatalf("GET of a damaged copy: %d of %d bytes, %v; want a transfer cut short", len(got), len(f.data), err)
		}
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the damaged copy was not dropped: %v", err)
		}
		if n := testutil.ToFloat64(srv.metrics.damaged) - before; n != 1 {
			t.Fatalf("damaged_copies_total grew by %v, want 1", n)
		}
		if n := testutil.ToFloat64(srv.metrics.requests.WithLabelValues("get_blob", "aborted")); n < 1 {
			t.Fatalf("requests_total{outcome=aborted} is %v", n)
		}
	}

	p := f.damage(f.bSrv, flip)
	cutShort(f.bSrv, f.b.URL, p)
	if got, err := f.get(f.b.URL, nil); err != nil || !bytes.Equal(got, f.data) {
		t.Fatalf("GET via B after it dropped its damaged copy (intact on peer A): %d of %d bytes, %v", len(got), len(f.data), err)
	}
	cutShort(f.cSrv, f.lone.URL, f.damage(f.cSrv, flip))
	f.reuploadServes()
}

// TestReadThroughTakesNoUploadSlot: a relayed answer is not kept, so it
// takes no upload slot: with every slot taken, the GET is still served.
func TestReadThroughTakesNoUploadSlot(t *testing.T) {
	e := newEnv(t, nil)
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	b, bSrv := peerOf(t, e, func(o *Options) { o.MaxUploads, o.MaxUploadsPerSigner = 1, 1 }, e.ts.URL)
	release, err := bSrv.uploads.acquire(signerAddr(e.reader.member.Address), false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var buf bytes.Buffer
	if _, err := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("read through B with every upload slot taken: %v", err)
	}
}

// TestStalledPeerIsCutOffInReadThrough: a peer that sends a sealed
// answer's headers and a few bytes and then nothing is cut off after
// peerIdle (as for a replica): the member's transfer breaks at once
// (its answer had begun; asking again is the way on), not held while the
// peer holds it.
func TestStalledPeerIsCutOffInReadThrough(t *testing.T) {
	defer func(d time.Duration) { peerIdle = d }(peerIdle)
	peerIdle = 200 * time.Millisecond
	e := newEnv(t, nil)
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	b, _ := peerOf(t, e, nil, stallingPeer(t, data, e.reader), e.ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var buf bytes.Buffer
	start := time.Now()
	_, err := NewClient(b.URL, e.reader, nil).Get(ctx, RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
	if err == nil || ctx.Err() != nil || buf.Len() != 0 {
		t.Fatalf("read-through from a stalled peer: %d bytes, %v after %v, want the transfer broken", buf.Len(), err, time.Since(start).Round(time.Millisecond))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a stalled peer held the read-through for %v", took)
	}
}

// TestHeadIsNotForwardedToPeers: a HEAD for a blob this sidecar lacks is
// answered 404 here. It used to go to the peers as a GET carrying the
// member's signature over "HEAD", which every peer refused as a bad
// signature (401), each refusal counted against this sidecar's host in
// the peer's failed-authentication limit: cheap HEADs could have every
// peer refuse all of this sidecar's read-throughs.
func TestHeadIsNotForwardedToPeers(t *testing.T) {
	e := newEnv(t, nil) // A holds the upload
	_, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	var mu sync.Mutex
	var answers []int
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, r)
		mu.Lock()
		answers = append(answers, rec.Code)
		mu.Unlock()
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(a.Close)
	b, _ := peerOf(t, e, nil, a.URL) // B lacks the blob, peered with A

	url := b.URL + "/v1/blobs/" + hex.EncodeToString(sum[:]) + "?" + RecordRef(rec.PatientId, rec.Sequence).query()
	head, err := http.NewRequest(http.MethodHead, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(head, e.reader, ""); err != nil {
		t.Fatal(err)
	}
	if resp := do(t, head); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD at B: %d, want 404", resp.StatusCode)
	}
	mu.Lock()
	if len(answers) != 0 {
		t.Fatalf("B forwarded the HEAD to A, which answered %v", answers)
	}
	mu.Unlock()
	// A GET still reads through.
	var buf bytes.Buffer
	if _, err := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil); err != nil || sha256.Sum256(buf.Bytes()) != sum {
		t.Fatalf("GET through B: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(answers) != 1 || answers[0] != http.StatusOK {
		t.Fatalf("A answered B's forwarded GET %v, want one 200", answers)
	}
}
