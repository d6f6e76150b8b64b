package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/sidecar"
)

// TestASidecarSendingMoreThanTheRecordIsCutOff: a sidecar whose answer
// holds more bytes than the record's size is cut off at that size
// (boundedWriter), before the hash could be checked at the end of an
// answer as long as the sidecar cares to send, and its lie says so.
func TestASidecarSendingMoreThanTheRecordIsCutOff(t *testing.T) {
	body := bytes.Repeat([]byte("ciphertext"), 100)
	sum := sha256.Sum256(body)
	s := newTestRecipient("long sidecar")
	long := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(sealAnswer(w.Header(), r, s, append(bytes.Clone(body), body...)))
	}))
	defer long.Close()
	blob := chainBlob{ref: sidecar.RecordRef(bytes.Repeat([]byte{1}, 32), 1), sum: sum[:], size: uint64(len(body))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := fetchBlob(ctx, s, blob, t.TempDir(), TransferOptions{Sidecars: []string{long.URL}}, false)
	if want := "more than the record's " + strconv.Itoa(len(body)) + " bytes"; !errors.Is(err, ErrCiphertextMismatch) || !strings.Contains(err.Error(), want) {
		t.Fatalf("a sidecar sending twice the record's bytes: %v; want ErrCiphertextMismatch saying %q", err, want)
	}
}

// TestAnAnswerAnnouncedPastItsBoundIsNotRead: a node whose answer's
// Content-Length is past the bound is refused at once, before a byte of
// the body is read; the node here sends its head and then nothing, as a
// node may that means to hold the client until its timeout.
func TestAnAnswerAnnouncedPastItsBoundIsNotRead(t *testing.T) {
	const bound = 1 << 20
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(2*bound))
		_, _ = w.Write(answerHead(r))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	defer srv.Close()
	defer close(done)
	rpc, err := newRPC(srv.URL, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = rpc.Status(withAnswerBound(context.Background(), bound))
	if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "more than 1 MiB") || time.Since(start) > 5*time.Second {
		t.Fatalf("an answer announced at 2 MiB against a bound of 1 MiB: %v after %s; want a verification error naming the bound, at once",
			err, time.Since(start).Round(time.Millisecond))
	}
}
