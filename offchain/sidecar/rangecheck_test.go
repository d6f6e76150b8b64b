package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// readableRecord is an env with a record whose blob its sidecar holds
// and whose reader has a committed read of it.
func readableRecord(t *testing.T) (*env, []byte, [32]byte, *emrv1.Record) {
	t.Helper()
	e := newEnv(t, nil)
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	return e, data, sum, rec
}

// writeCopy writes b as the stored copy at path p, behind the sidecar's
// back (a disk's damage, a bad restore).
func writeCopy(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wholeReads counts the reads of whole copies (Get from 0 to the end),
// which a sidecar makes to verify a copy, never to serve a GET.
type wholeReads struct {
	blobstore.Store
	n atomic.Int64
}

func (s *wholeReads) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	if off == 0 && n < 0 {
		s.n.Add(1)
	}
	return s.Store.Get(ctx, key, off, n)
}

// TestRangeOfDamagedCopy: a range of a copy whose bytes are not the blob
// (a flipped bit, the right size) is never served. B reads its copy whole
// before the first range, finds it damaged, drops it and counts it, and
// relays the range from A; a sidecar with no peer to ask answers 404 and
// drops its copy. Concurrent ranges of a copy not yet checked (one
// uploaded again) wait for one read, and a copy found intact serves
// ranges without being read again.
func TestRangeOfDamagedCopy(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	key := e.key(sum)
	stores := map[*Server]*blobstore.FS{}
	reads := map[*Server]*wholeReads{}
	sidecar := func(peers ...string) (string, *Server) {
		t.Helper()
		fsys, err := blobstore.OpenFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		counted := &wholeReads{Store: fsys}
		ts, srv := peerOf(t, e, func(o *Options) { o.Store = counted }, peers...)
		stores[srv], reads[srv] = fsys, counted
		return ts.URL, srv
	}
	b, bSrv := sidecar(e.ts.URL) // A (e's sidecar) holds the blob intact
	c, cSrv := sidecar()         // no peer
	at := len(data) / 3
	damage := func(srv *Server) string {
		t.Helper()
		p := stores[srv].Path(key)
		bad := bytes.Clone(data)
		bad[at] ^= 0x20
		writeCopy(t, p, bad)
		return p
	}
	rng := &Range{Start: int64(at - 10), Length: 100}
	want := data[at-10 : at+90]
	get := func(url string) ([]byte, error) {
		var buf bytes.Buffer
		_, err := NewClient(url, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, rng)
		return buf.Bytes(), err
	}

	p := damage(bSrv)
	before := testutil.ToFloat64(bSrv.metrics.damaged)
	if got, err := get(b); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a range of B's damaged copy (intact on A): %q, %v; want %q", got, err, want)
	}
	if n := testutil.ToFloat64(bSrv.metrics.damaged) - before; n != 1 {
		t.Fatalf("damaged_copies_total grew by %v, want 1", n)
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("B did not drop its damaged copy: %v", err)
	}

	// The uploader puts the blob to B again. Concurrent ranges of that
	// copy wait for one whole read; then it is known intact, and ranges
	// read nothing whole.
	if _, err := NewClient(b, e.writer, nil).Put(context.Background(), e.pid, testCategory, sum, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for _, first := range []bool{true, false} {
		start := reads[bSrv].n.Load()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				got, err := get(b)
				if err == nil && !bytes.Equal(got, want) {
					err = errors.New("wrong bytes")
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent ranges of an intact copy: %v", err)
			}
		}
		wantReads := int64(0)
		if first {
			wantReads = 1
		}
		if n := reads[bSrv].n.Load() - start; n != wantReads {
			t.Fatalf("8 concurrent ranges (copy remembered intact: %v) read the copy whole %d times, want %d", !first, n, wantReads)
		}
	}

	p = damage(cSrv)
	got, err := get(c)
	wantStatus(t, err, http.StatusNotFound, "not stored on this sidecar")
	if len(got) != 0 {
		t.Fatalf("C, with no peer, sent %d bytes of its damaged copy", len(got))
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("C did not drop its damaged copy: %v", err)
	}
}

// faultyStore is an FS store whose Delete can fail, and whose first
// whole read (a verification) can be held until hold returns.
type faultyStore struct {
	*blobstore.FS
	failDelete bool
	once       sync.Once
	hold       func()
}

func (s *faultyStore) Delete(ctx context.Context, key blobstore.Key) error {
	if s.failDelete {
		return errors.New("injected: delete failed")
	}
	return s.FS.Delete(ctx, key)
}

func (s *faultyStore) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	if off == 0 && n < 0 && s.hold != nil {
		s.once.Do(s.hold)
	}
	return s.FS.Get(ctx, key, off, n)
}

// damagedRangeFixture: A (e's sidecar) holds the blob intact; B, whose
// peer is A, holds a copy of the right size with one bit flipped inside
// the range asked for, in a faultyStore.
type damagedRangeFixture struct {
	e          *env
	data       []byte
	sum        [32]byte
	rec        *emrv1.Record
	store      *faultyStore
	bURL       string
	bSrv       *Server
	rng        *Range
	want, flip []byte
}

func newDamagedRangeFixture(t *testing.T, mod func(*damagedRangeFixture)) *damagedRangeFixture {
	t.Helper()
	f := &damagedRangeFixture{}
	f.e, f.data, f.sum, f.rec = readableRecord(t)
	fsys, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.store = &faultyStore{FS: fsys}
	if mod != nil {
		mod(f)
	}
	ts, srv := peerOf(t, f.e, func(o *Options) { o.Store = f.store }, f.e.ts.URL)
	f.bURL, f.bSrv = ts.URL, srv
	at := len(f.data) / 3
	bad := bytes.Clone(f.data)
	bad[at] ^= 0x20
	p := fsys.Path(f.e.key(f.sum))
	writeCopy(t, p, bad)
	f.rng = &Range{Start: int64(at - 10), Length: 100}
	f.want, f.flip = f.data[at-10:at+90], bad[at-10:at+90]
	return f
}

func (f *damagedRangeFixture) get() ([]byte, error) {
	var buf bytes.Buffer
	_, err := NewClient(f.bURL, f.e.reader, nil).Get(context.Background(), RecordRef(f.rec.PatientId, f.rec.Sequence), f.sum, &buf, f.rng)
	return buf.Bytes(), err
}

// TestRangeOfDamagedCopyNotDropped: the range check finds B's copy
// damaged and deleting it fails (a store fault): nothing is served (500
// store_error), not the damaged bytes, and not a copy read from the peer
// over them (a Put keeps a stored copy of the same size).
// (The session-44 review's.)
func TestRangeOfDamagedCopyNotDropped(t *testing.T) {
	f := newDamagedRangeFixture(t, func(f *damagedRangeFixture) { f.store.failDelete = true })
	got, err := f.get()
	wantStatus(t, err, http.StatusInternalServerError, "reading the blob failed")
	if len(got) != 0 {
		t.Fatalf("a range of a damaged copy that could not be dropped: %q served", got)
	}
}

// TestConcurrentRangesOfDamagedCopy: two ranges of a damaged copy arrive
// together; the second waits for the first's read of the copy. Neither is
// served the damaged bytes: the copy is dropped once and both ranges come
// from the peer's. (The session-44 review's.)
func TestConcurrentRangesOfDamagedCopy(t *testing.T) {
	f := newDamagedRangeFixture(t, func(f *damagedRangeFixture) {
		f.store.hold = func() {
			// Hold the first read of the copy until the second range
			// waits for it.
			key := f.e.key(f.sum)
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				f.bSrv.verified.mu.Lock()
				c := f.bSrv.verified.inflight[key]
				joined := c != nil && c.joined > 0
				f.bSrv.verified.mu.Unlock()
				if joined {
					return
				}
			}
			t.Error("the second range never waited for the first's read")
		}
	})
	before := testutil.ToFloat64(f.bSrv.metrics.damaged)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			got, err := f.get()
			if err == nil && !bytes.Equal(got, f.want) {
				err = fmt.Errorf("served %q, want %q (damaged: %q)", got, f.want, f.flip)
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent ranges of a damaged copy: %v", err)
		}
	}
	if n := testutil.ToFloat64(f.bSrv.metrics.damaged) - before; n != 1 {
		t.Errorf("damaged_copies_total grew by %v for one shared read, want 1", n)
	}
}

// TestRangeDoesNotWaitForAnUpload: an upload of a blob holds the blob's
// lock while its body comes, however slowly; a range of the intact copy
// stored already is served meanwhile (its check takes no lock).
// (The session-44 review's.)
func TestRangeDoesNotWaitForAnUpload(t *testing.T) {
	e, data, sum, rec := readableRecord(t)

	pr, pw := io.Pipe()
	upCtx, cancelUp := context.WithCancel(context.Background())
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		_, _ = e.client(e.writer).Put(upCtx, e.pid, testCategory, sum, pr, int64(len(data)))
	}()
	defer func() { pw.CloseWithError(errors.New("done")); cancelUp(); <-upDone }()
	if _, err := pw.Write(data[:1024]); err != nil { // the upload's body is being read
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if _, err := e.client(e.reader).Get(ctx, RecordRef(rec.PatientId, rec.Sequence), sum, &buf, &Range{Start: 10, Length: 100}); err != nil {
		t.Fatalf("a range of an intact copy while an upload of the blob is under way: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), data[10:110]) {
		t.Fatalf("range: %q, want %q", buf.Bytes(), data[10:110])
	}
}

// TestVerifiedCopiesExpireAndAreBounded: a copy found intact serves
// ranges for rangeCheckTTL (not before it was read, should the clock step
// back); at rangeCheckMax copies, the one checked longest ago is
// forgotten first, after any expired.
func TestVerifiedCopiesExpireAndAreBounded(t *testing.T) {
	defer func(m int) { rangeCheckMax = m }(rangeCheckMax)
	rangeCheckMax = 3
	k := func(i byte) blobstore.Key { return blobstore.Key{Sum: blobstore.Sum{i}} }
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	var v verifiedCopies
	if v.fresh(k(1), t0) {
		t.Fatal("a copy never read is fresh")
	}
	v.intact(k(1), t0)
	for _, c := range []struct {
		at   time.Time
		want bool
	}{
		{t0, true}, {t0.Add(rangeCheckTTL - time.Nanosecond), true}, {t0.Add(rangeCheckTTL), false}, {t0.Add(-time.Second), false},
	} {
		if got := v.fresh(k(1), c.at); got != c.want {
			t.Errorf("read at %s, fresh at %s: %v, want %v", t0.Format(time.TimeOnly), c.at.Format(time.TimeOnly), got, c.want)
		}
	}
	v.forget(k(1))
	if v.fresh(k(1), t0) {
		t.Fatal("a forgotten copy is fresh")
	}

	v.intact(k(1), t0)
	v.intact(k(2), t0.Add(time.Minute))
	v.intact(k(3), t0.Add(2*time.Minute))
	now := t0.Add(3 * time.Minute)
	v.intact(k(4), now) // at the bound: k(1), the oldest, goes
	for i, want := range map[byte]bool{1: false, 2: true, 3: true, 4: true} {
		if got := v.fresh(k(i), now); got != want {
			t.Errorf("after a fourth copy, copy %d fresh: %v, want %v", i, got, want)
		}
	}
	later := t0.Add(time.Minute + rangeCheckTTL) // k(2) expired; k(3), k(4) not
	v.intact(k(5), later)
	for i, want := range map[byte]bool{2: false, 3: true, 4: true, 5: true} {
		if got := v.fresh(k(i), later); got != want {
			t.Errorf("after a fifth copy, copy %d fresh: %v, want %v", i, got, want)
		}
	}
	if len(v.at) != 3 {
		t.Fatalf("%d copies remembered, the bound is 3", len(v.at))
	}
}

// waitJoined waits until n checks wait for the read of key in flight.
func waitJoined(t *testing.T, v *verifiedCopies, key blobstore.Key, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		v.mu.Lock()
		c := v.inflight[key]
		ok := c != nil && c.joined >= n
		v.mu.Unlock()
		if ok {
			return
		}
	}
	t.Fatalf("%d checks never joined the read in flight", n)
}

// TestFailedReadIsShared: eight concurrent checks of one copy while the
// store fails the read after a while (a MinIO that times out) share the
// one read's error: one read, not one after another. (The session-44
// re-review's.)
func TestFailedReadIsShared(t *testing.T) {
	var v verifiedCopies
	key := blobstore.Key{Sum: blobstore.Sum{7}}
	var reads atomic.Int32
	release := make(chan struct{})
	read := func() (bool, error) {
		reads.Add(1)
		<-release
		return false, errors.New("injected: the store timed out")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, _, err := v.check(context.Background(), key, time.Now, read); err == nil {
				t.Error("a failed read gave a verdict")
			}
		})
	}
	waitJoined(t, &v, key, 7)
	close(release)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("8 concurrent checks of one copy made %d reads of it, want 1 (its failure shared)", n)
	}
}

// ctxStore is an FS store whose whole reads honour their context and take
// readTime, as MinIO's do (its reader is an HTTP body bound to the
// request's context).
type ctxStore struct {
	*blobstore.FS
	readTime time.Duration
	whole    atomic.Int32
}

func (s *ctxStore) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	rc, size, err := s.FS.Get(ctx, key, off, n)
	if err != nil || off != 0 || n >= 0 {
		return rc, size, err
	}
	s.whole.Add(1)
	return &ctxReader{ctx: ctx, rc: rc, until: time.Now().Add(s.readTime)}, size, nil
}

type ctxReader struct {
	ctx   context.Context
	rc    io.ReadCloser
	until time.Time
}

func (r *ctxReader) Read(p []byte) (int, error) {
	for time.Now().Before(r.until) {
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r.rc.Read(p)
}

func (r *ctxReader) Close() error { return r.rc.Close() }

// TestRangeCheckOutlivesTheRequest: a client whose requests time out
// before the copy is read whole (a large blob on MinIO or a cold disk)
// does not abort the read: it is finished and remembered, and the
// client's next try is served, with the copy read once. (The session-44
// re-review's.)
func TestRangeCheckOutlivesTheRequest(t *testing.T) {
	const readTime = 300 * time.Millisecond
	e, data, sum, rec := readableRecord(t)
	fsys, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &ctxStore{FS: fsys, readTime: readTime}
	ts, _ := peerOf(t, e, func(o *Options) { o.Store = store })
	p := fsys.Path(e.key(sum))
	writeCopy(t, p, data)
	served := false
	for try := 0; try < 4 && !served; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), readTime*2/3)
		var buf bytes.Buffer
		_, err := NewClient(ts.URL, e.reader, nil).Get(ctx, RecordRef(rec.PatientId, rec.Sequence), sum, &buf, &Range{Start: 10, Length: 100})
		cancel()
		served = err == nil && bytes.Equal(buf.Bytes(), data[10:110])
		if !served {
			time.Sleep(readTime) // the client waits before it tries again
		}
	}
	if !served || store.whole.Load() != 1 {
		t.Fatalf("a client whose requests time out after %s, trying 4 times %s apart: served %v, the copy read whole %d times; want served, one read",
			readTime*2/3, readTime, served, store.whole.Load())
	}
}

// TestDamageFoundForgetsTheIntactCopy: a copy found intact (by a range)
// is damaged afterwards; a whole GET finds it damaged but cannot drop it
// (an upload of the blob holds the lock). The next range does not trust
// the earlier verdict: it is not served the damaged bytes. (The
// session-44 re-review's.)
func TestDamageFoundForgetsTheIntactCopy(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	key := e.key(sum)
	ref := RecordRef(rec.PatientId, rec.Sequence)
	at := len(data) / 3
	rng := &Range{Start: int64(at - 10), Length: 100}
	if _, err := e.get(e.reader, ref, sum, rng); err != nil { // read whole, found intact, remembered
		t.Fatal(err)
	}
	bad := bytes.Clone(data)
	bad[at] ^= 0x20
	if err := os.WriteFile(e.store.Path(key), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	unlock, err := e.srv.blobs.lockCtx(context.Background(), key) // an upload holds the lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.get(e.reader, ref, sum, nil); err == nil {
		t.Fatal("a whole GET of the damaged copy succeeded")
	}
	unlock()
	if _, err := os.Stat(e.store.Path(key)); err != nil {
		t.Fatalf("the copy was dropped after all (%v): the test needs it kept", err)
	}
	got, err := e.get(e.reader, ref, sum, rng)
	if err == nil && bytes.Equal(got, bad[at-10:at+90]) {
		t.Fatal("a whole GET found the copy damaged, and the next range was served its damaged bytes")
	}
}

// TestRangeOfDamagedCopyLeftIsLogged: the client of a range of a damaged
// copy hangs up while the drop waits for the blob's lock (an upload holds
// it): the log says the copy was left, and does not claim a drop or a
// read from a peer. (The session-44 re-review's.)
func TestRangeOfDamagedCopyLeftIsLogged(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	fsys, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := &lines{}
	ts, srv := peerOf(t, e, func(o *Options) { o.Store, o.Logger = fsys, log }, e.ts.URL)
	key := e.key(sum)
	p := fsys.Path(key)
	bad := bytes.Clone(data)
	bad[len(data)/3] ^= 0x20
	writeCopy(t, p, bad)
	unlock, err := srv.blobs.lockCtx(context.Background(), key) // a slow upload of the blob
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var buf bytes.Buffer
	if _, err := NewClient(ts.URL, e.reader, nil).Get(ctx, RecordRef(rec.PatientId, rec.Sequence), sum, &buf, &Range{Start: 0, Length: 100}); err == nil {
		t.Fatal("the range was served while the copy's drop waited for the lock")
	}
	for deadline := time.Now().Add(5 * time.Second); len(log.with("damaged blob left")) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no line says the damaged copy was left; all lines: %q", log.with(""))
		}
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the copy was dropped (%v): the test needs it kept", err)
	}
	if said := log.with("dropped"); len(said) > 0 {
		t.Fatalf("nothing was dropped, but the log says %q", said)
	}
}

// gatedStore: its first whole read (a range check's) takes the copy's
// bytes as they are when it opens (closing opened), then waits for
// release before it ends.
type gatedStore struct {
	*blobstore.FS
	once            sync.Once
	opened, release chan struct{}
}

type gatedReader struct {
	r       io.Reader
	release chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err == io.EOF {
		<-g.release
	}
	return n, err
}

func (s *gatedStore) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	rc, size, err := s.FS.Get(ctx, key, off, n)
	if err != nil || off != 0 || n >= 0 {
		return rc, size, err
	}
	gated := false
	s.once.Do(func() { gated = true })
	if !gated {
		return rc, size, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, 0, err
	}
	close(s.opened)
	return io.NopCloser(&gatedReader{r: bytes.NewReader(b), release: s.release}), size, nil
}

// TestDamageFoundDuringACheck: a range's check is reading the copy,
// intact so far, when the copy is damaged and a whole GET finds it so but
// cannot drop it (an upload holds the lock). The check's verdict, from
// bytes read before, is not remembered as intact, and no range is served
// the damaged bytes. (The session-44 third review's.)
func TestDamageFoundDuringACheck(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	fsys, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &gatedStore{FS: fsys, opened: make(chan struct{}), release: make(chan struct{})}
	ts, srv := peerOf(t, e, func(o *Options) { o.Store = store }) // no peer
	key := e.key(sum)
	p := fsys.Path(key)
	writeCopy(t, p, data)
	ref := RecordRef(rec.PatientId, rec.Sequence)
	at := len(data) / 3
	rng := &Range{Start: int64(at - 10), Length: 100}
	bad := bytes.Clone(data)
	bad[at] ^= 0x20
	get := func(r *Range) ([]byte, error) {
		var buf bytes.Buffer
		_, err := NewClient(ts.URL, e.reader, nil).Get(context.Background(), ref, sum, &buf, r)
		return buf.Bytes(), err
	}
	first := make(chan []byte, 1)
	go func() { got, _ := get(rng); first <- got }()
	<-store.opened
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	unlock, err := srv.blobs.lockCtx(context.Background(), key) // an upload holds the lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(nil); err == nil {
		t.Fatal("a whole GET of the damaged copy succeeded")
	}
	unlock()
	close(store.release)
	for i, got := range [][]byte{<-first, nil} {
		if i == 1 {
			got, _ = get(rng)
		}
		if bytes.Equal(got, bad[at-10:at+90]) {
			t.Fatalf("range %d was served the damaged bytes after a whole GET found the copy damaged", i+1)
		}
	}
}

// TestPanickedCheckFreesTheCopy: a read that panics (net/http recovers
// the request) leaves no read in flight: the checks that waited for it
// get an error, and the next check reads again.
func TestPanickedCheckFreesTheCopy(t *testing.T) {
	var v verifiedCopies
	key := blobstore.Key{Sum: blobstore.Sum{9}}
	release := make(chan struct{})
	leader := make(chan any, 1)
	go func() {
		defer func() { leader <- recover() }()
		_, _, _ = v.check(context.Background(), key, time.Now, func() (bool, error) {
			<-release
			panic("injected")
		})
	}()
	waiter := make(chan error, 1)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		v.mu.Lock()
		started := v.inflight[key] != nil
		v.mu.Unlock()
		if started {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first check never started its read")
		}
	}
	go func() {
		_, _, err := v.check(context.Background(), key, time.Now, func() (bool, error) { return true, nil })
		waiter <- err
	}()
	waitJoined(t, &v, key, 1)
	close(release)
	if p := <-leader; p == nil {
		t.Fatal("the panic was swallowed")
	}
	if err := <-waiter; err == nil {
		t.Fatal("a check that waited for a read that panicked got a verdict")
	}
	if ok, remembered, err := v.check(context.Background(), key, time.Now, func() (bool, error) { return true, nil }); !ok || remembered || err != nil {
		t.Fatalf("the next check: intact %v, remembered %v, %v; want a fresh read", ok, remembered, err)
	}
}

// TestReplicaCopyServesRangesWithoutAWholeRead: a copy a storage service
// made from a peer was checked against its hash as it came
// (keepPeerBlob), so it is known intact: a range of it reads nothing
// whole.
func TestReplicaCopyServesRangesWithoutAWholeRead(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	nameStorageOrgs(e, "hospital-b")
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	fsys, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	counted := &wholeReads{Store: fsys}
	b, bSrv := peerOf(t, e, func(o *Options) { o.Store, o.Storage = counted, svc }, e.ts.URL)
	if rep, err := bSrv.ReplicatePass(context.Background()); err != nil || rep.Copied != 1 {
		t.Fatalf("replica pass: %+v, %v; want the blob copied", rep, err)
	}
	before := counted.n.Load()
	var buf bytes.Buffer
	rng := &Range{Start: 10, Length: 100}
	if _, err := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, rng); err != nil ||
		!bytes.Equal(buf.Bytes(), data[10:110]) {
		t.Fatalf("a range of the replica copy: %q, %v", buf.Bytes(), err)
	}
	if n := counted.n.Load() - before; n != 0 {
		t.Fatalf("a range of a replica copy read it whole %d times; it was checked as it was copied", n)
	}
}
