package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shortStallWaits makes the stall bounds short for a test (and the answer
// wait the same for every size).
func shortStallWaits(t *testing.T) {
	t.Helper()
	answer, stall, upload, rate := sidecarAnswerWait, sidecarStallWait, sidecarUploadStallWait, sidecarCommitRate
	sidecarAnswerWait, sidecarStallWait, sidecarUploadStallWait, sidecarCommitRate = time.Second, time.Second, time.Second, math.MaxInt64
	t.Cleanup(func() {
		sidecarAnswerWait, sidecarStallWait, sidecarUploadStallWait, sidecarCommitRate = answer, stall, upload, rate
	})
}

// silentSidecar accepts requests and never answers them (until the test
// ends: a handler that has not read a PUT's body is not told that its
// client went away).
func silentSidecar(t *testing.T) *httptest.Server {
	done := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); ts.Close() })
	return ts
}

// TestAStalledSidecarIsLeftForTheNext: a sidecar that accepts a download
// and never answers, and one that sends half the blob and then nothing,
// are each given up (after the answer wait, after the stall wait) and the
// next sidecar serves the blob. When none is left, the error says each
// stalled (ErrSidecarStalled), which is not a refusal. Before, each held
// the download until the user pressed Ctrl-C.
func TestAStalledSidecarIsLeftForTheNext(t *testing.T) {
	shortStallWaits(t)
	body := bytes.Repeat([]byte("ciphertext of a scan "), 5000)
	silent := silentSidecar(t)
	halfway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sealed := sealAnswer(w.Header(), r, testSigner, body)
		w.Write(sealed[:len(sealed)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer halfway.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(sealAnswer(w.Header(), r, testSigner, body)) }))
	defer good.Close()

	fetch := func(sidecars ...string) (string, error) {
		t.Helper()
		f, url, err := fetchBlob(context.Background(), testSigner, blobOf(body), t.TempDir(), TransferOptions{Sidecars: sidecars, RetryDelay: -1}, false)
		if err == nil {
			f.Discard()
		}
		return url, err
	}
	if url, err := fetch(silent.URL, halfway.URL, good.URL); err != nil || url != good.URL {
		t.Fatalf("a silent, a stalled and a good sidecar: served by %q, %v; want the good one", url, err)
	}
	_, err := fetch(silent.URL, halfway.URL)
	if !errors.Is(err, ErrSidecarStalled) || errors.Is(err, ErrSidecarsRefused) {
		t.Fatalf("a silent and a stalled sidecar: %v; want ErrSidecarStalled, not a refusal", err)
	}
	for _, want := range []string{silent.URL + ": the sidecar stopped answering: no answer for 1s", halfway.URL + ": the sidecar stopped answering: no byte moved for 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestAStalledUploadIsLeftForTheNext: a sidecar that takes an upload and
// never answers is given up after the answer wait, and the next stores
// the blob.
func TestAStalledUploadIsLeftForTheNext(t *testing.T) {
	shortStallWaits(t)
	silent := silentSidecar(t)
	var stored []byte
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stored, _ = io.ReadAll(r.Body)
		answerStored(w, stored)
	}))
	defer good.Close()

	data := bytes.Repeat([]byte("ciphertext of a referral "), 1000)
	put := sealedPut(t, data)
	if u, err := put(silent.URL, good.URL); err != nil || u != good.URL || !bytes.Equal(stored, data) {
		t.Fatalf("a silent and a good sidecar: stored at %q (%d bytes), %v; want the good one", u, len(stored), err)
	}
	_, err := put(silent.URL)
	if !errors.Is(err, ErrStorageUnavailable) || !strings.Contains(err.Error(), "the sidecar stopped answering: no answer for 1s") {
		t.Fatalf("a silent sidecar: %v; want ErrStorageUnavailable saying it stopped answering", err)
	}
}

// answerStored answers a PUT as a sidecar that stored body does.
func answerStored(w http.ResponseWriter, body []byte) {
	sum := sha256.Sum256(body)
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte(`{"sha256":"` + hex.EncodeToString(sum[:]) + `","size":` + strconv.Itoa(len(body)) + `,"created":true}`))
}

// sealedPut is data as sealed ciphertext in a scratch file, and put, which
// uploads it with putBlob to the first of sidecars that stores it and
// returns that one.
func sealedPut(t *testing.T, data []byte) (put func(sidecars ...string) (string, error)) {
	t.Helper()
	f, err := newScratch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Discard)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	b := &sealed{file: f, size: int64(len(data)), sum: sha256.Sum256(data)}
	return func(sidecars ...string) (string, error) {
		u, _, err := putBlob(context.Background(), testSigner, bytes.Repeat([]byte{1}, 32), testCategory, false, b, TransferOptions{Sidecars: sidecars})
		return u, err
	}
}
