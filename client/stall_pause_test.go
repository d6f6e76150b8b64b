package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// TestAPausingStoreIsNotAStall: a sidecar over MinIO does not read
// an upload's body at an even pace. blobstore.MinIO.Put hands the body to
// minio-go's PutObject, which (a reader that is no io.ReaderAt, a size
// above one part) runs putObjectMultipartStreamOptionalChecksum: read a
// whole part (5 MiB, io.ReadFull), upload it to MinIO and wait for its
// answer, then read the next. While a part is in flight the sidecar reads
// nothing; once the socket buffers are full the client's body stops
// moving. The sidecar allows that pause (its bodyDeadline only runs while
// it reads), and minio-go allows each part's PUT a ResponseHeaderTimeout
// of one minute and retries it up to 10 times: one slow answer from MinIO
// is already a pause of at least 1 minute, the download's stall wait
// (sidecarStallWait), with which the client abandoned an upload the
// sidecar was storing (a reviewer's finding, session 37). An upload's
// body has a stall wait of its own, sidecarUploadStallWait. Scaled: the
// download's stall wait 1 s, the upload's and the answer wait 2 s (6
// minutes each), each part's upload 500 ms.
func TestAPausingStoreIsNotAStall(t *testing.T) {
	if testing.Short() {
		t.Skip("40 MiB upload")
	}
	shortStallWaits(t)
	sidecarUploadStallWait, sidecarAnswerWait = 2*time.Second, 2*time.Second
	const part = 5 << 20
	const partUpload = 500 * time.Millisecond
	minioLike := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		buf := make([]byte, part)
		var n int64
		for {
			m, err := io.ReadFull(r.Body, buf)
			h.Write(buf[:m])
			n += int64(m)
			if err != nil {
				break // the last part, short, or the client gone
			}
			select { // PUT the part to MinIO, wait for its answer
			case <-time.After(partUpload):
			case <-r.Context().Done():
				return
			}
		}
		sum := h.Sum(nil)
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"sha256":"` + hex.EncodeToString(sum) + `","size":` + strconv.FormatInt(n, 10) + `,"created":true}`))
	}))
	t.Cleanup(minioLike.Close)
	data := bytes.Repeat([]byte("CT series ciphertext "), (40<<20)/21)
	put := sealedPut(t, data)
	if u, err := put(minioLike.URL); err != nil || u != minioLike.URL {
		t.Fatalf("a sidecar storing the body part by part, pausing %s for each part's upload to MinIO (upload stall wait %s): %v", partUpload, sidecarUploadStallWait, err)
	}
}
