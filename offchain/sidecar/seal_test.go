package sidecar

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// rawGet sends req and returns the answer with its whole body.
func rawGet(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := send(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// openAnswer opens a sealed answer's body with key under context.
func openAnswer(resp *http.Response, body []byte, key *ecdh.PrivateKey, context []byte) ([]byte, error) {
	_, plain, err := openSealed(resp, bytes.NewReader(body), context, key, anySealedSize)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(plain)
}

// TestBlobAnswersAreSealedToTheirMember: a blob GET's body is not the
// blob's ciphertext but that sealed to the asking member's registered
// X25519 key, bound to the request and the range served: the member opens
// it; another member's key does not, and neither does the context of
// another request or range.
func TestBlobAnswersAreSealedToTheirMember(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	uri := "/v1/blobs/" + hex.EncodeToString(sum[:]) + "?" + RecordRef(rec.PatientId, rec.Sequence).query()

	resp, body := rawGet(t, e.signed(e.reader, http.MethodGet, uri, nil, false))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	if bytes.Contains(body, data[:64]) || int64(len(body)) != crypto.CiphertextSize(int64(len(data))) {
		t.Fatalf("the answer (%d bytes) is not the %d-byte blob sealed", len(body), len(data))
	}
	if got, err := openAnswer(resp, body, e.reader.Enc, BlobAnswerContext(uri, "")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the member opening its answer: %d bytes, %v", len(got), err)
	}
	if _, err := openAnswer(resp, body, e.writer.Enc, BlobAnswerContext(uri, "")); !errors.Is(err, crypto.ErrDecrypt) {
		t.Fatalf("another member's key opened the answer: %v", err)
	}
	if _, err := openAnswer(resp, body, e.reader.Enc, BlobAnswerContext(uri, "bytes 0-9/10500")); !errors.Is(err, crypto.ErrDecrypt) {
		t.Fatalf("the answer opened as a range's: %v", err)
	}

	req := e.signed(e.reader, http.MethodGet, uri, nil, false)
	req.Header.Set("Range", "bytes=100-149")
	resp, body = rawGet(t, req)
	contentRange := resp.Header.Get("Content-Range")
	if resp.StatusCode != http.StatusPartialContent || contentRange != "bytes 100-149/10500" {
		t.Fatalf("range GET: %d %q", resp.StatusCode, contentRange)
	}
	if got, err := openAnswer(resp, body, e.reader.Enc, BlobAnswerContext(uri, contentRange)); err != nil || !bytes.Equal(got, data[100:150]) {
		t.Fatalf("the member opening its range: %q, %v", got, err)
	}
	if _, err := openAnswer(resp, body, e.reader.Enc, BlobAnswerContext(uri, "")); !errors.Is(err, crypto.ErrDecrypt) {
		t.Fatalf("a range's answer opened as the whole blob's: %v", err)
	}
}

// TestReplayedRequestAtAnotherSidecarOpensOnlyForItsMember: a member's
// signed GET names no sidecar, and each sidecar keeps its own replay
// cache, so whoever sees the request (a proxy that logs headers) can send
// it again to another sidecar that holds the blob within the clock skew.
// That sidecar answers, but sealed to the member: the replayer gets
// nothing it can read, and the member's own answer is unchanged.
func TestReplayedRequestAtAnotherSidecarOpensOnlyForItsMember(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	other, _ := peerOf(t, e, nil) // another hospital's sidecar holding the blob too
	if _, err := NewClient(other.URL, e.writer, nil).Put(context.Background(), e.pid, testCategory, sum, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	uri := "/v1/blobs/" + hex.EncodeToString(sum[:]) + "?" + RecordRef(rec.PatientId, rec.Sequence).query()
	req := e.signed(e.reader, http.MethodGet, uri, nil, false)
	seen := req.Header.Clone() // what a logging proxy keeps
	if resp, body := rawGet(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("the member's GET: %d %s", resp.StatusCode, body)
	}

	replay, err := http.NewRequest(http.MethodGet, other.URL+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	replay.Header = seen
	resp, body := rawGet(t, replay)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the replay at another sidecar: %d %s", resp.StatusCode, body)
	}
	if bytes.Contains(body, data[:64]) {
		t.Fatal("the replay got the blob's ciphertext")
	}
	replayer := e.chain.addMember("replayer", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	if _, err := openAnswer(resp, body, replayer.Enc, BlobAnswerContext(uri, "")); !errors.Is(err, crypto.ErrDecrypt) {
		t.Fatalf("the replayer opened the answer: %v", err)
	}
	if got, err := openAnswer(resp, body, e.reader.Enc, BlobAnswerContext(uri, "")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the answer is not the member's: %v", err)
	}
}

// TestClientRefusesWhatIsNotSealedToIt: Client.Get opens only an answer
// sealed to its member for its request: one not sealed (a sidecar from
// before answers were sealed), sealed to another key, or altered in
// transit is an error, never bytes; and a signer that holds no
// encryption key cannot download.
func TestClientRefusesWhatIsNotSealedToIt(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	ref := RecordRef(rec.PatientId, rec.Sequence)
	var answer func(w http.ResponseWriter, r *http.Request)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w, r) }))
	t.Cleanup(fake.Close)
	get := func() ([]byte, error) {
		var buf bytes.Buffer
		_, err := NewClient(fake.URL, e.reader, nil).Get(context.Background(), ref, sum, &buf, nil)
		return buf.Bytes(), err
	}

	answer = func(w http.ResponseWriter, r *http.Request) { w.Write(data) }
	if got, err := get(); err == nil || len(got) != 0 || !bytes.Contains([]byte(err.Error()), []byte("came without "+HeaderSealedEnvelope)) {
		t.Fatalf("an answer not sealed: %d bytes, %v", len(got), err)
	}
	answer = func(w http.ResponseWriter, r *http.Request) { sealedAnswer(w, r, e.writer, data, int64(len(data))) }
	if got, err := get(); !errors.Is(err, crypto.ErrDecrypt) || len(got) != 0 {
		t.Fatalf("an answer sealed to another member: %d bytes, %v", len(got), err)
	}
	answer = func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		sealedAnswer(rec, r, e.reader, data, int64(len(data)))
		body := rec.Body.Bytes()
		body[len(body)/2] ^= 1
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Write(body)
	}
	if _, err := get(); !errors.Is(err, crypto.ErrCorrupt) {
		t.Fatalf("an answer altered in transit: %v", err)
	}
	answer = func(w http.ResponseWriter, r *http.Request) { sealedAnswer(w, r, e.reader, data, int64(len(data))) }
	if got, err := get(); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("an answer sealed to the member: %v", err)
	}

	var buf bytes.Buffer
	_, err := NewClient(e.ts.URL, e.reader.KeySigner, nil).Get(context.Background(), ref, sum, &buf, nil)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("not a Recipient")) {
		t.Fatalf("a signer without an encryption key: %v", err)
	}
}

// A sealed answer of no stated length (chunked) is refused whatever size
// it announces: CiphertextSize is -1 for an unknown length and for a size
// whose sealed length overflows, so the two must not be compared alone.
func TestSealedAnswerOfNoStatedLengthIsRefusedWhateverItsSize(t *testing.T) {
	to, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	_, env, err := crypto.SealTransferKey(to.PublicKey(), []byte("context"))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{0, 1000, math.MaxInt64 - 20, math.MaxInt64} {
		resp := &http.Response{Header: http.Header{}, ContentLength: -1}
		resp.Header.Set(HeaderSealedEnvelope, base64.StdEncoding.EncodeToString(env))
		resp.Header.Set(HeaderSealedSize, strconv.FormatInt(size, 10))
		if _, _, err := sealedHeaders(resp, anySealedSize); err == nil {
			t.Errorf("a chunked answer announcing %d bytes was taken", size)
		}
	}
	// One of the stated length still is.
	resp := &http.Response{Header: http.Header{}, ContentLength: crypto.CiphertextSize(1000)}
	resp.Header.Set(HeaderSealedEnvelope, base64.StdEncoding.EncodeToString(env))
	resp.Header.Set(HeaderSealedSize, "1000")
	if _, size, err := sealedHeaders(resp, anySealedSize); err != nil || size != 1000 {
		t.Fatalf("a sealed answer of its stated length: %d, %v", size, err)
	}
}
