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
// serves the range read through from A, whose verified copy it keeps; a
// sidecar with no peer to read from answers 404 and drops its copy. A
// copy found intact serves ranges without being read again, and
// concurrent ranges of a copy not yet checked wait for one read.
func TestRangeOfDamagedCopy(t *testing.T) {
	e := newEnv(t, nil)
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
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
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
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
	if kept, err := os.ReadFile(p); err != nil || !bytes.Equal(kept, data) {
		t.Fatalf("B did not replace its damaged copy with A's: %d bytes, %v", len(kept), err)
	}

	// A copy kept from a peer was hashed as it was written: ranges of it
	// read nothing whole. Forgotten, concurrent ranges wait for one read.
	for _, forget := range []bool{false, true} {
		if forget {
			bSrv.verified.forget(key)
		}
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
		if forget {
			wantReads = 1
		}
		if n := reads[bSrv].n.Load() - start; n != wantReads {
			t.Fatalf("8 concurrent ranges (copy remembered intact: %v) read the copy whole %d times, want %d", !forget, n, wantReads)
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
	f := &damagedRangeFixture{e: newEnv(t, nil)}
	f.data, f.sum, f.rec = uploadedRecord(t, f.e)
	f.e.chain.recordAccess(f.rec, f.e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
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
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
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
	e := newEnv(t, nil)
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)

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
