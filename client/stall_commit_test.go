package client

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestASlowCommitIsWaitedFor: a sidecar reads an upload's whole body and
// only then commits it (blobstore.MinIO.Put: the last part,
// CompleteMultipartUpload, then a server-side CopyObject or, above 5 GiB,
// ComposeObject of the whole blob to its final name) before it answers,
// in time that grows with the blob; neither the sidecar nor the chain
// bounds it. A fixed answer wait gave up on every sidecar's commit of a
// large enough blob (a reviewer's finding, session 37): the wait grows
// with the blob's size (answerWait). A commit within it is waited for; one
// twice as long is abandoned at each sidecar in turn. Scaled down: answer
// wait 1 s, a commit rate of 100 kB/s.
func TestASlowCommitIsWaitedFor(t *testing.T) {
	shortStallWaits(t)
	sidecarCommitRate = 100_000
	data := bytes.Repeat([]byte("ciphertext of a CT series "), 4000)
	wait := answerWait(int64(len(data)))
	if want := sidecarAnswerWait + time.Second + 40*time.Millisecond; wait != want {
		t.Fatalf("answerWait(%d) = %s, want %s", len(data), wait, want)
	}
	slowCommit := func(commit time.Duration) *httptest.Server {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			stored, _ := io.ReadAll(r.Body) // the body, at full speed
			select {                        // the commit, after the body
			case <-time.After(commit):
			case <-r.Context().Done():
				return // the client gave up: the commit is cancelled
			}
			answerStored(w, stored)
		}))
		t.Cleanup(ts.Close)
		return ts
	}
	put := sealedPut(t, data)
	slow := slowCommit(wait / 2)
	if u, err := put(slow.URL); err != nil || u != slow.URL {
		t.Fatalf("a sidecar committing for %s after the last byte (the wait is %s): %v (stored at %q)", wait/2, wait, err, u)
	}
	tooSlow := []string{slowCommit(2 * wait).URL, slowCommit(2 * wait).URL}
	if _, err := put(tooSlow...); !errors.Is(err, ErrStorageUnavailable) || !strings.Contains(err.Error(), "no answer for "+roundWait(wait).String()) {
		t.Fatalf("two sidecars committing for %s: %v; want ErrStorageUnavailable, each given up after %s", 2*wait, err, wait)
	}
}
