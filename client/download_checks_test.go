package client

// A download checks what can fail without the chain before it logs the
// read (session 36): the output, and that a sidecar answers; and after the
// read, it tells a refusal by every sidecar from a failure that asking
// again may mend.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/sidecar"
)

// TestCheckOutputRefusesWhatCannotBeWritten: a directory (existing, or a
// path ending in a separator, or a link to one) is refused as not a file,
// with or without overwrite and without advising --force; a missing or
// non-directory parent is refused by name; an existing file only without
// overwrite.
func TestCheckOutputRefusesWhatCannotBeWritten(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "my-records")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "old.txt")
	if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link-to-dir")
	if err := os.Symlink(sub, link); err != nil {
		t.Fatal(err)
	}
	sep := string(filepath.Separator)
	for _, overwrite := range []bool{false, true} {
		for _, target := range []string{sub, sub + sep, filepath.Join(dir, "newdir") + sep, link} {
			err := CheckOutput(target, overwrite)
			if !errors.Is(err, ErrOutputNotAFile) || errors.Is(err, ErrOutputExists) || strings.Contains(err.Error(), "--force") ||
				!strings.Contains(err.Error(), "name a file, e.g. "+filepath.Join(target, "NAME")) {
				t.Errorf("CheckOutput(%q, overwrite %v) = %v, want a directory refused as not a file, with an example, without --force", target, overwrite, err)
			}
		}
		missing := filepath.Join(dir, "no-such-dir", "out.txt")
		if err := CheckOutput(missing, overwrite); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "no-such-dir")+" does not exist") {
			t.Errorf("CheckOutput in a missing directory: %v", err)
		}
		if err := CheckOutput(filepath.Join(file, "out.txt"), overwrite); err == nil || !strings.Contains(err.Error(), file+" is not a directory") {
			t.Errorf("CheckOutput under a file: %v", err)
		}
		if err := CheckOutput(filepath.Join(sub, "new.txt"), overwrite); err != nil {
			t.Errorf("CheckOutput of a new file: %v", err)
		}
	}
	if err := CheckOutput(file, false); !errors.Is(err, ErrOutputExists) {
		t.Errorf("CheckOutput of an existing file: %v, want ErrOutputExists", err)
	}
	if err := CheckOutput(file, true); err != nil {
		t.Errorf("CheckOutput of an existing file, overwrite: %v", err)
	}
	if runtime.GOOS != "windows" {
		if err := CheckOutput(os.DevNull, true); !errors.Is(err, ErrOutputNotAFile) {
			t.Errorf("CheckOutput(%s, overwrite) = %v, want ErrOutputNotAFile", os.DevNull, err)
		}
	}
	if names := dirNames(t, dir); len(names) != 3 {
		t.Errorf("CheckOutput created something: %v", names)
	}
}

// readLog is a logRead that counts the reads it logs.
type readLog struct{ n atomic.Int32 }

func (l *readLog) log() (*TxResult, error) {
	l.n.Add(1)
	return &TxResult{Height: 42, Code: 0}, nil
}

// blobOf is a chain blob of body, as record 1 of a patient.
func blobOf(body []byte) chainBlob {
	sum := sha256.Sum256(body)
	return chainBlob{ref: sidecar.RecordRef(bytes.Repeat([]byte{1}, 32), 1), sum: sum[:], size: uint64(len(body))}
}

var testSigner = newTestRecipient("download checks")

// TestDownloadIntoADirectoryLogsNoRead: an output that is a directory is
// refused before the read is logged and before any sidecar is asked, with
// --force too.
func TestDownloadIntoADirectoryLogsNoRead(t *testing.T) {
	var asked atomic.Int32
	sc := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { asked.Add(1) }))
	defer sc.Close()
	dir := t.TempDir()
	var reads readLog
	for _, overwrite := range []bool{false, true} {
		for _, out := range []string{dir, filepath.Join(dir, "newdir") + string(filepath.Separator), filepath.Join(dir, "missing", "out")} {
			opts := TransferOptions{Sidecars: []string{sc.URL}}
			_, err := saveDecrypted(context.Background(), testSigner, "record 1", blobOf([]byte("x")), knownKey(nil), nil, out, overwrite,
				probedLog(context.Background(), opts, "record 1", reads.log), opts)
			if err == nil {
				t.Fatalf("download into %s (overwrite %v) succeeded", out, overwrite)
			}
		}
	}
	if reads.n.Load() != 0 || asked.Load() != 0 {
		t.Fatalf("refused outputs logged %d read(s) and asked the sidecar %d time(s), want none", reads.n.Load(), asked.Load())
	}
}

// TestDownloadWithNoReachableSidecarLogsNoRead: when no sidecar answers
// (nothing listens, a 503 from /healthz, no answer in time), the download
// fails with ErrStorageUnavailable naming each sidecar's failure, and logs
// nothing. One sidecar that answers is enough, and a 4xx from /healthz
// (something that does not serve it) counts as an answer.
func TestDownloadWithNoReachableSidecarLogsNoRead(t *testing.T) {
	old := sidecarProbeTimeout
	sidecarProbeTimeout = 300 * time.Millisecond
	t.Cleanup(func() { sidecarProbeTimeout = old })

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there now
	notOpen := httptest.NewServer(sidecar.NotOpenHandler("fs", func() string { return "the disk is not mounted" }))
	defer notOpen.Close()
	silent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer silent.Close()
	defer silent.CloseClientConnections()

	var reads readLog
	out := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	opts := TransferOptions{Sidecars: []string{closed.URL, notOpen.URL, silent.URL}}
	_, err := saveDecrypted(context.Background(), testSigner, "record 1", blobOf([]byte("x")), knownKey(nil), nil, out, false,
		probedLog(context.Background(), opts, "record 1", reads.log), opts)
	took := time.Since(start)
	if !errors.Is(err, ErrStorageUnavailable) || errors.Is(err, ErrReadLoggedNotServed) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("no sidecar answers: %v; want ErrStorageUnavailable (unwrapping to connection refused), not a logged read", err)
	}
	for _, want := range []string{"no read was logged", closed.URL + ": ", notOpen.URL + ": sidecar: 503 Service Unavailable: the disk is not mounted",
		silent.URL + ": no answer within 300ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no sidecar answers: %v; want it to say %q", err, want)
		}
	}
	var se *sidecar.Error
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no sidecar answers: errors.As finds %+v, want the 503", se)
	}
	if reads.n.Load() != 0 {
		t.Fatalf("%d read(s) logged with no sidecar answering", reads.n.Load())
	}
	if took > 3*time.Second {
		t.Errorf("the check took %s: the sidecars are asked at once, each for at most 300ms", took)
	}

	// One sidecar that answers: the read is logged, and it serves.
	e := newBlobEnv(t, 1)
	sl, key := e.upload(t, []byte("CBC: Hb 13.2 g/dL\n"), TransferOptions{Sidecars: e.urls})
	blob := chainBlob{e.view.ref(sl.sum), sl.sum[:], uint64(sl.size)}
	opts = TransferOptions{Sidecars: []string{closed.URL, notOpen.URL, e.urls[0]}}
	saved, err := saveDecrypted(context.Background(), e.signer, "record 1", blob, knownKey(key), RecordStreamAAD(e.patientID, testCategory), out, false,
		probedLog(context.Background(), opts, "record 1", reads.log), opts)
	if err != nil || saved.sidecar != e.urls[0] || reads.n.Load() != 1 {
		t.Fatalf("one sidecar of three answering: %v (served by %v), %d read(s) logged; want it served, one read", err, saved, reads.n.Load())
	}

	// A 4xx from /healthz is an answer: the read is logged, and the
	// sidecars decide (here they refuse it).
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"code":"forbidden","error":"record 1: permission revoked at height 40"}`))
	}))
	defer proxy.Close()
	opts = TransferOptions{Sidecars: []string{proxy.URL}, RetryDelay: time.Millisecond}
	_, err = saveDecrypted(context.Background(), testSigner, "record 1", blobOf([]byte("x")), knownKey(nil), nil, filepath.Join(t.TempDir(), "out"), false,
		probedLog(context.Background(), opts, "record 1", reads.log), opts)
	if !errors.Is(err, ErrReadLoggedNotServed) || reads.n.Load() != 2 {
		t.Fatalf("a sidecar whose /healthz answers 403: %v, %d reads; want the read logged, then not served", err, reads.n.Load())
	}
}

// refusingSidecar answers /healthz, and every GET with status and reason
// (a 503 without Retry-After: failing, not asking to wait).
func refusingSidecar(t *testing.T, status int, reason string) *httptest.Server {
	t.Helper()
	sc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = w.Write([]byte(`{"status":"ok","backend":"fs"}`))
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"code":"x","error":` + strconv.Quote(reason) + `}`))
	}))
	t.Cleanup(sc.Close)
	return sc
}

// TestRefusedByEverySidecar: after the read is logged, when every sidecar
// refuses outright (403, 404) in the last round, the error matches
// ErrReadLoggedNotServed and ErrSidecarsRefused, its Refusal is the 403
// (the reason that holds), and errors.As finds each sidecar's error; its
// message is the one users saw before. A failure asking again may mend (a
// 5xx, nothing listening, a transfer cut short) is not a refusal.
func TestRefusedByEverySidecar(t *testing.T) {
	revoked := refusingSidecar(t, http.StatusForbidden, "record 1: permission revoked at height 40")
	missing := refusingSidecar(t, http.StatusNotFound, "blob 0a is not stored on this sidecar")
	failing := refusingSidecar(t, http.StatusInternalServerError, "reading the blob failed")
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	download := func(sidecars ...string) error {
		t.Helper()
		var reads readLog
		opts := TransferOptions{Sidecars: sidecars, RetryDelay: time.Millisecond}
		_, err := saveDecrypted(context.Background(), testSigner, "record 1", blobOf([]byte("x")), knownKey(nil), nil, filepath.Join(t.TempDir(), "out"), false,
			probedLog(context.Background(), opts, "record 1", reads.log), opts)
		if !errors.Is(err, ErrReadLoggedNotServed) || reads.n.Load() != 1 {
			t.Fatalf("download from %v: %v after %d read(s); want one read logged, then not served", sidecars, err, reads.n.Load())
		}
		return err
	}

	err := download(missing.URL, revoked.URL)
	var ns *NotServedError
	var se *sidecar.Error
	if !errors.Is(err, ErrSidecarsRefused) || !errors.As(err, &ns) || ns.Refusal == nil || ns.Refusal.StatusCode != http.StatusForbidden ||
		ns.Refusal.Reason != "record 1: permission revoked at height 40" {
		t.Fatalf("a 404 and a 403: %v (refusal %+v); want ErrSidecarsRefused, the 403 its refusal", err, ns)
	}
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Errorf("errors.As(*sidecar.Error) = %+v, want the first sidecar's 404", se)
	}
	want := "record 1: the read is logged but no sidecar served the ciphertext (height 42): no sidecar served the ciphertext: " +
		missing.URL + ": sidecar: 404 Not Found: blob 0a is not stored on this sidecar; " +
		revoked.URL + ": sidecar: 403 Forbidden: record 1: permission revoked at height 40"
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
	if err := download(missing.URL); !errors.Is(err, ErrSidecarsRefused) || !errors.As(err, &ns) || ns.Refusal.StatusCode != http.StatusNotFound {
		t.Errorf("a 404 at every sidecar: %v, want ErrSidecarsRefused", err)
	}

	for name, sidecars := range map[string][]string{
		"5xx":                  {failing.URL},
		"a 403 and a 5xx":      {revoked.URL, failing.URL},
		"a 403 and no sidecar": {closed.URL, revoked.URL},
	} {
		err := download(sidecars...)
		if errors.Is(err, ErrSidecarsRefused) || !errors.As(err, &ns) || ns.Refusal != nil {
			t.Errorf("%s: %v; want not served, not refused", name, err)
		}
	}
}

// TestRefusalIsJudgedByTheLastRound: a sidecar that failed in one round
// and refused in the last is a refusal (a damaged copy cut short, then
// 404: no peer holds it), and one that refused and then failed is not.
func TestRefusalIsJudgedByTheLastRound(t *testing.T) {
	body := bytes.Repeat([]byte("ciphertext"), 1000)
	var gets atomic.Int32
	cutThen404 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gets.Add(1) == 1 {
			sealed := sealAnswer(w.Header(), r, testSigner, body)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(sealed[:len(sealed)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":"not_found","error":"not stored on this sidecar"}`))
	}))
	defer cutThen404.Close()
	// Without retry rounds (--reuse-access) a transfer cut short is asked
	// once more.
	_, _, err := fetchBlob(context.Background(), testSigner, blobOf(body), t.TempDir(),
		TransferOptions{Sidecars: []string{cutThen404.URL}, RetryDelay: time.Millisecond}, false)
	if !errors.Is(err, ErrSidecarsRefused) || !errors.Is(err, sidecar.ErrCutShort) || !strings.Contains(err.Error(), "not stored on this sidecar") {
		t.Fatalf("cut short, then 404: %v; want a refusal that still reports the transfer cut short", err)
	}

	gets.Store(0)
	refusedThenFailing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if gets.Add(1) == 1 {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"code":"forbidden","error":"no committed access event for this record"}`))
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer refusedThenFailing.Close()
	_, _, err = fetchBlob(context.Background(), testSigner, blobOf(body), t.TempDir(),
		TransferOptions{Sidecars: []string{refusedThenFailing.URL}, RetryDelay: time.Millisecond}, true)
	if errors.Is(err, ErrSidecarsRefused) || !strings.Contains(err.Error(), "no committed access event") || !strings.Contains(err.Error(), "502") {
		t.Fatalf("403, then 502: %v; want both reported, not a refusal", err)
	}
}
