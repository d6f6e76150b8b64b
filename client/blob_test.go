package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// upload runs the data path of Upload (everything but AddRecord) and
// registers the blob as the owner's record.
func (e *blobEnv) upload(t *testing.T, plain []byte, opts TransferOptions) (*sealed, []byte) {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sl, err := sealToScratch(context.Background(), t.TempDir(), bytes.NewReader(plain), int64(len(plain)), key, RecordStreamAAD(e.patientID, "lab-results"), opts.Progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sl.file.Discard)
	if _, _, err := putBlob(context.Background(), e.signer, e.patientID, testCategory, false, sl, opts); err != nil {
		t.Fatal(err)
	}
	e.view.addBlob(sl.sum, sl.size)
	return sl, key
}

// download runs the data path of Download (everything but RecordAccess and
// the verified record query).
func (e *blobEnv) download(sl *sealed, key []byte, out string, opts TransferOptions) error {
	ctx := context.Background()
	p, err := newPending(out, false)
	if err != nil {
		return err
	}
	defer p.Discard()
	ct, _, err := fetchBlob(ctx, e.signer, chainBlob{e.view.ref(sl.sum), sl.sum[:], uint64(sl.size)}, filepath.Dir(out), opts, false)
	if err != nil {
		return err
	}
	defer ct.Discard()
	if _, err := decryptInto(ctx, ct, sl.size, key, RecordStreamAAD(e.patientID, "lab-results"), p, opts.Progress); err != nil {
		return err
	}
	return p.Commit()
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// dirNames lists a directory (hidden files included).
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestBlobRoundTrip(t *testing.T) {
	e := newBlobEnv(t, 1)
	for _, n := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 300 << 10} {
		plain := randomBytes(t, n)
		var phases []string
		opts := TransferOptions{Sidecars: e.urls, Progress: func(phase string, done, total int64) {
			if len(phases) == 0 || phases[len(phases)-1] != phase {
				phases = append(phases, phase)
			}
			if total >= 0 && done > total {
				t.Errorf("%s: %d of %d", phase, done, total)
			}
		}}
		sl, key := e.upload(t, plain, opts)
		if sl.size != crypto.CiphertextSize(int64(n)) || sl.plainSize != int64(n) {
			t.Fatalf("%d bytes: sealed %d/%d", n, sl.size, sl.plainSize)
		}
		dir := t.TempDir()
		out := filepath.Join(dir, "record.bin")
		if err := e.download(sl, key, out, opts); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: round trip differs (%v)", n, err)
		}
		if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
			t.Fatalf("output mode %v", fi.Mode())
		}
		if names := dirNames(t, dir); len(names) != 1 {
			t.Fatalf("leftovers beside the output: %v", names)
		}
		// The output exists now: a second download refuses to replace it.
		if err := e.download(sl, key, out, opts); !errors.Is(err, ErrOutputExists) {
			t.Fatalf("second download: %v", err)
		}
		if n > 0 && strings.Join(phases, ",") != "encrypt,upload,download,decrypt" {
			t.Fatalf("progress phases %v", phases)
		}
	}
}

// Storage that altered a blob's bytes: the sidecar cuts the transfer short
// and drops its copy. A sidecar that alters bytes is detected by the hash;
// the next sidecar serves intact data; with no honest one nothing is
// written, not even scratch files.
func TestBlobTamperedSidecar(t *testing.T) {
	e := newBlobEnv(t, 1)
	opts := TransferOptions{Sidecars: e.urls}
	plain := randomBytes(t, 200<<10)
	sl, key := e.upload(t, plain, opts)

	// Flip one byte of the stored blob in the fs store itself.
	var path string
	_ = filepath.WalkDir(e.stores[0].Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == hex.EncodeToString(sl.sum[:]) {
			path = p
		}
		return nil
	})
	if path == "" {
		t.Fatal("blob file not found in the store")
	}
	blob, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good := bytes.Clone(blob)
	blob[len(blob)/2] ^= 0x01
	if err := os.WriteFile(path, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "x")
	err = e.download(sl, key, out, opts)
	if err == nil || !strings.Contains(err.Error(), "the transfer was cut short") {
		t.Fatalf("tampered store: %v, want a transfer cut short", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("files left after a transfer cut short: %v", names)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the sidecar kept its damaged copy: %v", err)
	}

	// A lying sidecar first, an honest one second: the honest one serves.
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := bytes.Clone(good)
		b[0] ^= 0xff
		w.Write(sealAnswer(w.Header(), r, e.signer, b))
	}))
	defer liar.Close()
	long := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(sealAnswer(w.Header(), r, e.signer, append(bytes.Clone(good), good...))) // more than the record's size
	}))
	defer long.Close()
	opts.Sidecars = []string{liar.URL, long.URL, e.urls[0]}
	if err := e.download(sl, key, out, opts); err != nil {
		t.Fatalf("liar, then honest sidecar: %v", err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, plain) {
		t.Fatal("wrong plaintext")
	}
	os.Remove(out)
	opts.Sidecars = []string{liar.URL, long.URL}
	if err := e.download(sl, key, out, opts); !errors.Is(err, ErrCiphertextMismatch) {
		t.Fatalf("only liars: %v", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("files left: %v", names)
	}
}

// TestLyingSidecarDoesNotStopTheRetry: right after a read is logged, a
// sidecar whose node is a block behind refuses (403), and fetchBlob asks
// again a round later. A lying sidecar listed before it used to end the
// download at once (ErrCiphertextMismatch), though the honest one would
// serve the blob a round later: the read was then in the audit log with
// nothing delivered. The liar is left out of later rounds, and its lie is
// reported only when no sidecar served the blob.
func TestLyingSidecarDoesNotStopTheRetry(t *testing.T) {
	body := bytes.Repeat([]byte("ciphertext"), 100)
	sum := sha256.Sum256(body)
	var lies atomic.Int32
	s := newTestRecipient("lying sidecar")
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lies.Add(1)
		_, _ = w.Write(sealAnswer(w.Header(), r, s, bytes.Repeat([]byte("x"), len(body))))
	}))
	defer liar.Close()
	var asked atomic.Int32
	var refuse atomic.Bool
	behind := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if asked.Add(1) == 1 || refuse.Load() { // its node has not seen the access event yet
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"code":"no_access","error":"no access event"}`))
			return
		}
		_, _ = w.Write(sealAnswer(w.Header(), r, s, body))
	}))
	defer behind.Close()
	blob := chainBlob{ref: sidecar.RecordRef(bytes.Repeat([]byte{1}, 32), 1), sum: sum[:], size: uint64(len(body))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	opts := TransferOptions{Sidecars: []string{liar.URL, behind.URL}, RetryDelay: 20 * time.Millisecond}
	f, url, err := fetchBlob(ctx, s, blob, t.TempDir(), opts, true)
	if err != nil {
		t.Fatalf("a liar before an honest sidecar a block behind: %v", err)
	}
	f.Discard()
	if url != behind.URL || lies.Load() != 1 {
		t.Fatalf("served by %s after %d lies, want the honest sidecar, the liar asked once", url, lies.Load())
	}
	// With no honest copy anywhere, the lie is what the caller is told.
	refuse.Store(true)
	if _, _, err := fetchBlob(ctx, s, blob, t.TempDir(), opts, true); !errors.Is(err, ErrCiphertextMismatch) || !strings.Contains(err.Error(), liar.URL) {
		t.Fatalf("a liar and a sidecar that keeps refusing: %v, want ErrCiphertextMismatch naming the liar", err)
	}
}

// Decryption failures (wrong key, wrong binding) leave nothing behind.
func TestBlobDecryptFailureWritesNothing(t *testing.T) {
	e := newBlobEnv(t, 1)
	opts := TransferOptions{Sidecars: e.urls}
	sl, _ := e.upload(t, randomBytes(t, 150<<10), opts)
	dir := t.TempDir()
	wrong, _ := crypto.GenerateKey()
	err := e.download(sl, wrong, filepath.Join(dir, "out"), opts)
	if !errors.Is(err, crypto.ErrCorrupt) {
		t.Fatalf("wrong key: %v", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("files left after a failed decryption: %v", names)
	}
}

// Upload failures: a sidecar that is down is skipped for the next one; with
// none up the error says the storage is unavailable; a refusal is final.
func TestBlobPutFailures(t *testing.T) {
	e := newBlobEnv(t, 1)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":"storing the blob failed","code":"store_error"}`)
	}))
	defer failing.Close()
	key, _ := crypto.GenerateKey()
	sl, err := sealToScratch(context.Background(), "", bytes.NewReader([]byte("x")), 1, key, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.file.Discard()
	url, _, err := putBlob(context.Background(), e.signer, e.patientID, testCategory, false, sl, TransferOptions{Sidecars: []string{down.URL, failing.URL, e.urls[0]}})
	if err != nil || url != e.urls[0] {
		t.Fatalf("fallback to the working sidecar: %q %v", url, err)
	}
	_, _, err = putBlob(context.Background(), e.signer, e.patientID, testCategory, false, sl, TransferOptions{Sidecars: []string{down.URL, failing.URL}})
	if !errors.Is(err, ErrStorageUnavailable) || !strings.Contains(err.Error(), "storing the blob failed") {
		t.Fatalf("all down: %v", err)
	}
	other := bytes.Repeat([]byte{1}, 32) // not enrolled: 403, final
	_, _, err = putBlob(context.Background(), e.signer, other, testCategory, false, sl, TransferOptions{Sidecars: []string{e.urls[0], failing.URL}})
	var se *sidecar.Error
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || errors.Is(err, ErrStorageUnavailable) {
		t.Fatalf("refusal: %v", err)
	}
}

// TestTransferWaitsForRetryAfter: a sidecar that refuses a signer's
// request for its used-up share of the replay cache (429, Retry-After) is
// asked again after that wait, so an upload or download in a burst of
// requests goes through instead of failing.
func TestTransferWaitsForRetryAfter(t *testing.T) {
	e := newBlobEnvWith(t, 1, func(o *sidecar.Options) {
		o.ReplayPerSigner = 2            // two requests per signer in the window...
		o.MaxClockSkew = 2 * time.Second // ...of two seconds
	})
	opts := TransferOptions{Sidecars: e.urls}
	plain := randomBytes(t, 1000)
	sl, key := e.upload(t, plain, opts) // request 1
	dir := t.TempDir()
	for i := range 2 { // requests 2 and 3: the third is refused once, then served
		out := filepath.Join(dir, fmt.Sprint("copy-", i))
		if err := e.download(sl, key, out, opts); err != nil {
			t.Fatalf("download %d: %v", i+1, err)
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("download %d differs (%v)", i+1, err)
		}
	}
	e.upload(t, randomBytes(t, 10), opts) // refused once, then stored
}

// TestRetryLaterStatuses: a 429 or a 503 with Retry-After (a signer's
// share used up; every upload slot of the sidecar taken) is asked again
// after the wait; other refusals, a Retry-After beyond maxRetryAfter and
// the last retry are returned as they are.
func TestRetryLaterStatuses(t *testing.T) {
	for _, c := range []struct {
		status     int
		retryAfter time.Duration
		failures   int // answers before success
		wantCalls  int
		wantErr    bool
	}{
		{http.StatusTooManyRequests, time.Millisecond, 1, 2, false},
		{http.StatusServiceUnavailable, time.Millisecond, 2, 3, false},
		{http.StatusServiceUnavailable, 0, 1, 1, true},
		{http.StatusServiceUnavailable, maxRetryAfter + time.Second, 1, 1, true},
		{http.StatusInternalServerError, time.Millisecond, 1, 1, true},
		{http.StatusTooManyRequests, time.Millisecond, maxRetriesAfter + 5, maxRetriesAfter + 1, true},
	} {
		calls := 0
		err := retryLater(context.Background(), func() error {
			if calls++; calls <= c.failures {
				return &sidecar.Error{StatusCode: c.status, RetryAfter: c.retryAfter}
			}
			return nil
		})
		if calls != c.wantCalls || (err != nil) != c.wantErr {
			t.Errorf("%d, Retry-After %s, %d refusals: %d calls, err %v; want %d calls, error %v",
				c.status, c.retryAfter, c.failures, calls, err, c.wantCalls, c.wantErr)
		}
	}
}

// The fallback for systems without O_TMPFILE: named temporary files,
// removed on every path.
func TestBlobNamedTempFallback(t *testing.T) {
	if _, err := openAnonymous(t.TempDir()); err != nil {
		t.Logf("nameless files unsupported here (%v): the other tests already ran the fallback", err)
	}
	openAnon = func(string) (*os.File, error) { return nil, errors.New("disabled by the test") }
	t.Cleanup(func() { openAnon = openAnonymous })
	t.Run("RoundTrip", TestBlobRoundTrip)
	t.Run("Tampered", TestBlobTamperedSidecar)
	t.Run("DecryptFailure", TestBlobDecryptFailureWritesNothing)
	t.Run("Pending", TestPendingFileOverwrite)
}

func TestPendingFileOverwrite(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "f")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newPending(out, false); !errors.Is(err, ErrOutputExists) {
		t.Fatalf("existing output: %v", err)
	}
	p, err := newPending(out, true)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(p, "new")
	if got, _ := os.ReadFile(out); string(got) != "old" {
		t.Fatal("the output changed before Commit")
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "new" {
		t.Fatalf("after commit: %q", got)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("leftovers: %v", names)
	}
	// A target created between newPending and Commit is not replaced.
	raced := filepath.Join(dir, "r")
	p, err = newPending(raced, false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(p, "mine")
	if err := os.WriteFile(raced, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); !errors.Is(err, ErrOutputExists) {
		t.Fatalf("Commit over a file created meanwhile: %v, want ErrOutputExists", err)
	}
	if got, _ := os.ReadFile(raced); string(got) != "theirs" {
		t.Fatalf("the file created meanwhile now holds %q", got)
	}
	if err := os.Remove(raced); err != nil {
		t.Fatal(err)
	}
	// Discard before Commit leaves nothing.
	p, _ = newPending(filepath.Join(dir, "g"), false)
	io.WriteString(p, "partial")
	p.Discard()
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("leftovers after discard: %v", names)
	}
}

func TestFileKeyRewrapper(t *testing.T) {
	pid := bytes.Repeat([]byte{7}, 32)
	kek1, _ := crypto.GenerateKey()
	kek2, _ := crypto.GenerateKey()
	dk, _ := crypto.GenerateKey()
	w1, err := crypto.WrapKey(kek1, dk, crypto.FileKeyAAD(pid, "imaging", 1))
	if err != nil {
		t.Fatal(err)
	}
	keks := map[uint64][]byte{1: kek1}
	var handed [][]byte
	kekOf := func(v uint64) ([]byte, error) {
		if k, ok := keks[v]; ok {
			handed = append(handed, bytes.Clone(k)) // KEKFunc hands out copies
			return handed[len(handed)-1], nil
		}
		return nil, errors.New("no such version")
	}
	rw := FileKeyRewrapper(pid, kekOf)
	rec := &emrv1.Record{PatientId: pid, Sequence: 1, Category: "imaging", KeyVersion: 1, WrappedFileKey: w1}
	w2, err := rw(context.Background(), rec, 2, kek2)
	if err != nil {
		t.Fatal(err)
	}
	// The copy of the old KEK it was handed is cleared once used.
	if len(handed) != 1 || !bytes.Equal(handed[0], make([]byte, len(kek1))) {
		t.Fatalf("the rewrapper left its copy of the old KEK in memory (%d handed)", len(handed))
	}
	got, err := crypto.UnwrapKey(kek2, w2, crypto.FileKeyAAD(pid, "imaging", 2))
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("re-wrapped key does not open under version 2: %v", err)
	}
	if _, err := crypto.UnwrapKey(kek2, w2, crypto.FileKeyAAD(pid, "lab-results", 2)); err == nil {
		t.Fatal("re-wrapped key not bound to its category")
	}
	// A version the keyring lacks, or garbage: ErrCannotRewrap (skipped).
	rec3 := &emrv1.Record{PatientId: pid, Sequence: 2, Category: "imaging", KeyVersion: 3, WrappedFileKey: w1}
	if _, err := rw(context.Background(), rec3, 4, kek2); !errors.Is(err, ErrCannotRewrap) {
		t.Fatalf("missing version: %v", err)
	}
	bad := &emrv1.Record{PatientId: pid, Sequence: 3, Category: "imaging", KeyVersion: 1, WrappedFileKey: bytes.Repeat([]byte{1}, crypto.WrappedKeySize)}
	if _, err := rw(context.Background(), bad, 2, kek2); !errors.Is(err, ErrCannotRewrap) {
		t.Fatalf("garbage wrapped key: %v", err)
	}
}

// A rotation re-wraps the newest records up to the chain's limit and
// reports the rest, and the records it cannot re-wrap, as skipped.
func TestRewrapRecordsLimit(t *testing.T) {
	pid := bytes.Repeat([]byte{7}, 32)
	kek1, _ := crypto.GenerateKey()
	kek2, _ := crypto.GenerateKey()
	var recs []*emrv1.Record
	for seq := uint64(1); seq <= 5; seq++ {
		dk, _ := crypto.GenerateKey()
		w, _ := crypto.WrapKey(kek1, dk, crypto.FileKeyAAD(pid, "imaging", 1))
		if seq == 4 {
			w = bytes.Repeat([]byte{1}, crypto.WrappedKeySize) // garbage a writer recorded
		}
		recs = append(recs, &emrv1.Record{PatientId: pid, Sequence: seq, Category: "imaging", KeyVersion: 1, WrappedFileKey: w})
	}
	rw := FileKeyRewrapper(pid, func(v uint64) ([]byte, error) { return bytes.Clone(kek1), nil })
	done, skipped, err := rewrapRecords(context.Background(), recs, 3, 2, kek2, rw)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, d := range done {
		got = append(got, d.RecordSequence)
	}
	if len(got) != 3 || got[0] != 2 || got[1] != 3 || got[2] != 5 {
		t.Fatalf("re-wrapped %v, want the newest three that can be: [2 3 5]", got)
	}
	if len(skipped) != 2 || skipped[0].Sequence != 1 || !strings.Contains(skipped[0].Reason, "limit of 3") ||
		skipped[1].Sequence != 4 || !strings.Contains(skipped[1].Reason, "does not open") {
		t.Fatalf("skipped %+v", skipped)
	}
	// Any other error aborts the rotation.
	boom := errors.New("boom")
	if _, _, err := rewrapRecords(context.Background(), recs, 3, 2, kek2, func(context.Context, *emrv1.Record, uint64, []byte) ([]byte, error) {
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("error: %v", err)
	}
}

// The study envelope opens only for its (patient, study, record).
func TestStudyKeyBinding(t *testing.T) {
	pid := bytes.Repeat([]byte{9}, 32)
	study, _ := crypto.GenerateEncryptionKey()
	dk, _ := crypto.GenerateKey()
	env, err := crypto.SealEnvelope(study.PublicKey(), dk, StudyKeyBinding(pid, "s1", 4))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := crypto.OpenEnvelope(study, env, StudyKeyBinding(pid, "s1", 4)); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("open: %v", err)
	}
	for _, b := range []struct {
		pid   []byte
		study string
		rec   uint64
	}{{bytes.Repeat([]byte{8}, 32), "s1", 4}, {pid, "s2", 4}, {pid, "s1", 5}} {
		if _, err := crypto.OpenEnvelope(study, env, StudyKeyBinding(b.pid, b.study, b.rec)); !errors.Is(err, crypto.ErrDecrypt) {
			t.Fatalf("opened under %x/%s/%d", b.pid[:2], b.study, b.rec)
		}
	}
	// Distinct labels: a record stream and a share stream never share aad.
	if bytes.Equal(RecordStreamAAD(pid, "s1"), ShareStreamAAD(pid, "s1", 0)[:len(RecordStreamAAD(pid, "s1"))]) {
		t.Fatal("record and share stream aad overlap")
	}
	// Length prefixes make the encoding injective.
	if bytes.Equal(RecordStreamAAD([]byte("ab"), "c"), RecordStreamAAD([]byte("a"), "bc")) {
		t.Fatal("record stream aad is not injective")
	}
}

// TestSidecarNamedTwiceIsAskedOnce: a sidecar named twice in Sidecars is
// asked once by an upload, and once per round by a download. (emrcli
// deduplicated its own list; a program calling the client did not.)
func TestSidecarNamedTwiceIsAskedOnce(t *testing.T) {
	e := newBlobEnv(t, 1)
	var puts, gets atomic.Int32
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			puts.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
		} else {
			gets.Add(1)
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer failing.Close()
	good, _ := e.upload(t, []byte("stored on the working sidecar"), TransferOptions{Sidecars: e.urls})
	opts := TransferOptions{Sidecars: []string{failing.URL, failing.URL, e.urls[0]}, RetryDelay: -1}
	if _, _, err := putBlob(context.Background(), e.signer, e.patientID, testCategory, false, good, opts); err != nil {
		t.Fatal(err)
	}
	if err := e.download(good, nil, filepath.Join(t.TempDir(), "out"), opts); err == nil {
		// nil key: the decryption fails, after the fetch this test counts
		t.Fatal("decrypting with no key succeeded")
	}
	if puts.Load() != 1 || gets.Load() != 1 {
		t.Fatalf("the sidecar named twice got %d uploads and %d downloads, want 1 and 1", puts.Load(), gets.Load())
	}
}
