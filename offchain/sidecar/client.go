package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
)

// ErrHashMismatch: a downloaded blob does not hash to the sum it was asked
// for. The bytes were already written; the caller must discard them.
var ErrHashMismatch = errors.New("downloaded blob does not hash to the requested sha256")

// Error is a sidecar's refusal: the HTTP status and the JSON reason.
type Error struct {
	StatusCode int
	Code       string
	Reason     string
	// RetryAfter is the answer's Retry-After (in seconds), 0 without one:
	// a 429 for a signer's used-up share of the replay cache says when
	// its oldest request leaves the skew window.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("sidecar: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Reason)
}

// Client talks to a sidecar on behalf of one member.
type Client struct {
	base   string
	signer Signer
	http   *http.Client
	// MinHeight, when positive, is sent with each request as
	// HeaderMinHeight: the height the caller has seen committed (the
	// client library's Client.MinHeight). A sidecar whose node is below it
	// answers 503 chain_behind, not a refusal.
	MinHeight int64
	// Received, when set, is told the size of each read of a GET's answer
	// as it arrives: sealed bytes, which Get opens a stream segment (64
	// KiB) at a time, so a watch of the bytes Get writes would see a slow
	// transfer pause where bytes still move.
	Received func(n int)
}

// NewClient returns a client for the sidecar at baseURL
// ("http://127.0.0.1:7070"). httpClient nil means a client with
// "Expect: 100-continue" support, so a refused upload is refused before its
// body is sent.
func NewClient(baseURL string, signer Signer, httpClient *http.Client) *Client {
	if httpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ExpectContinueTimeout = 2 * time.Second
		httpClient = &http.Client{Transport: tr}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), signer: signer, http: httpClient}
}

// Put uploads size bytes of ciphertext from r under sum, for category of
// patientID: the category of the record it will be added as. Only a
// record of that patient and category will serve it. The sidecar hashes
// the body and refuses it (400) if it does not match.
func (c *Client) Put(ctx context.Context, patientID []byte, category string, sum [32]byte, r io.Reader, size int64) (*PutResult, error) {
	return c.put(ctx, "/v1/blobs/", patientID, category, sum, r, size)
}

// PutShared is Put for a record re-encrypted to a study: category is the
// shared record's, and only a share of a record of that patient and
// category will serve it. It needs the share right, where Put needs the
// write right.
func (c *Client) PutShared(ctx context.Context, patientID []byte, category string, sum [32]byte, r io.Reader, size int64) (*PutResult, error) {
	return c.put(ctx, "/v1/shared-blobs/", patientID, category, sum, r, size)
}

func (c *Client) put(ctx context.Context, path string, patientID []byte, category string, sum [32]byte, r io.Reader, size int64) (*PutResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+path+hex.EncodeToString(sum[:]), io.NopCloser(r))
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Expect", "100-continue")
	req.Header.Set(HeaderPatient, hex.EncodeToString(patientID))
	req.Header.Set(HeaderCategory, category)
	if err := c.sign(req, hex.EncodeToString(sum[:])); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sidecar: put %x: %w", sum, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, readError(resp)
	}
	var res PutResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&res); err != nil {
		return nil, fmt.Errorf("sidecar: put %x: decode answer: %w", sum, err)
	}
	return &res, nil
}

// Range selects bytes [Start, Start+Length) of a blob.
type Range struct {
	Start, Length int64
}

// Get downloads the blob sum of the record or share ref (or one range of
// it) into w and returns the number of bytes written. The client's signer
// must be a Recipient: the answer comes sealed to the member's registered
// X25519 key (seal.go), and Get opens it as it streams, so memory does not
// grow with the blob. A whole-blob download is hashed on the way and
// ErrHashMismatch returned if it does not match sum — after the bytes were
// written, so callers write to a temporary place and discard it on any
// error. A range (which cannot be checked against the sum) must come back
// as exactly the 206 asked for; a range that runs past the end of the
// blob is cut at the end. An answer cut short is ErrCutShort; one that
// does not open (not sealed to this member's key for this request, or
// altered) is an error matching crypto.ErrDecrypt or crypto.ErrCorrupt.
func (c *Client) Get(ctx context.Context, ref BlobRef, sum [32]byte, w io.Writer, rng *Range) (int64, error) {
	member, ok := c.signer.(Recipient)
	if !ok {
		return 0, fmt.Errorf("sidecar: get %x: the signer holds no encryption key to open the answer with (it is not a Recipient)", sum)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/blobs/"+hex.EncodeToString(sum[:])+"?"+ref.query(), nil)
	if err != nil {
		return 0, err
	}
	if rng != nil {
		if rng.Start < 0 || rng.Length <= 0 {
			return 0, fmt.Errorf("sidecar: invalid range %d+%d", rng.Start, rng.Length)
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rng.Start, rng.Start+rng.Length-1))
	}
	if err := c.sign(req, ""); err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("sidecar: get %x: %w", sum, err)
	}
	defer resp.Body.Close()
	contentRange := ""
	ranged := int64(-1) // the bytes a 206 says it holds
	switch {
	case rng == nil && resp.StatusCode == http.StatusOK:
	case rng != nil && resp.StatusCode == http.StatusPartialContent:
		contentRange = resp.Header.Get("Content-Range")
		first, last, ok := parseContentRange(contentRange)
		// last-first, not last-first+1: with first >= 0 it cannot
		// overflow, whatever last a peer sends.
		if !ok || first != rng.Start || last < first || last-first >= rng.Length {
			return 0, fmt.Errorf("sidecar: get %x: Content-Range %q does not answer bytes %d+%d",
				sum, contentRange, rng.Start, rng.Length)
		}
		ranged = last - first + 1
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		return 0, fmt.Errorf("sidecar: get %x: unexpected %d to a request with range %v", sum, resp.StatusCode, rng != nil)
	default:
		return 0, readError(resp)
	}
	var raw io.Reader = resp.Body
	if c.Received != nil {
		raw = receivedReader{r: raw, received: c.Received}
	}
	body := &errRecorder{r: raw}
	// cutShort tells a transfer that broke from an answer that is wrong: a
	// sidecar cuts short the transfer of a copy it finds damaged (HTTP/1.1:
	// the connection closes early; HTTP/2: the stream is reset), and the
	// next GET is answered from an intact copy.
	cutShort := func(n int64) error {
		if body.err == nil || ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("sidecar: get %x: %w after %d bytes (asking again may be served from an intact copy): %w", sum, ErrCutShort, n, body.err)
	}
	size, plain, err := openSealed(resp, body, BlobAnswerContext(req.URL.RequestURI(), contentRange), member.EncPrivKey(), anySealedSize)
	if err != nil {
		if cut := cutShort(0); cut != nil {
			return 0, cut
		}
		return 0, fmt.Errorf("sidecar: get %x: %w", sum, err)
	}
	if ranged >= 0 && size != ranged {
		return 0, fmt.Errorf("sidecar: get %x: the answer holds %d bytes sealed, its Content-Range %q says %d", sum, size, contentRange, ranged)
	}
	h := sha256.New()
	out := w
	if rng == nil {
		out = io.MultiWriter(w, h)
	}
	n, err := io.Copy(out, plain)
	if cut := cutShort(n); cut != nil {
		return n, cut
	}
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, fmt.Errorf("sidecar: get %x: %w", sum, err)
	}
	if rng == nil {
		if got := blobstore.Sum(h.Sum(nil)); got != sum {
			return n, fmt.Errorf("%w: got %s, want %x", ErrHashMismatch, got, sum)
		}
	}
	return n, nil
}

// receivedReader tells received the size of every read.
type receivedReader struct {
	r        io.Reader
	received func(n int)
}

func (r receivedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.received(n)
	}
	return n, err
}

// sign sets the request's MinHeight header, if any, and signs it.
func (c *Client) sign(req *http.Request, bodySHA256 string) error {
	if c.MinHeight > 0 {
		req.Header.Set(HeaderMinHeight, strconv.FormatInt(c.MinHeight, 10))
	}
	return SignRequest(req, c.signer, bodySHA256)
}

// Health asks the sidecar's /healthz, which needs no signature: one
// request, which says whether the sidecar answers at all and, if it does,
// whether it serves (200, its answer returned; a body that is not a
// Health gives a zero one). Any other answer is an *Error: a 503 says
// which of its blob store and its node is unavailable, in Reason (Code is
// the answer's status, "unavailable"). A sidecar that cannot be reached
// is the transport's error.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sidecar: healthz: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var h Health
	decoded := json.Unmarshal(raw, &h) == nil
	if resp.StatusCode == http.StatusOK {
		if !decoded {
			h = Health{}
		}
		return &h, nil
	}
	if !decoded || h.Status == "" {
		return nil, errorOf(resp, raw)
	}
	var why []string
	for _, w := range []string{h.BackendError, h.ChainError} {
		if w != "" {
			why = append(why, w)
		}
	}
	if len(why) == 0 {
		why = append(why, "it says it is "+h.Status)
	}
	e := errorOf(resp, nil)
	e.Code, e.Reason = cleanText(h.Status, maxErrorCode), cleanText(strings.Join(why, "; "), maxErrorReason)
	return nil, e
}

// ErrCutShort: a sidecar's answer ended before the length it announced
// (it cuts the transfer of a copy it finds damaged short, or the
// connection broke). Asking again may be served from an intact copy.
var ErrCutShort = errors.New("the transfer was cut short")

// parseContentRange parses "bytes first-last/size". A refusal returns no
// range, not the half it could parse.
func parseContentRange(s string) (first, last int64, ok bool) {
	spec, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	spec, _, found = strings.Cut(spec, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false
	}
	first, ok1 := parseDecimal(a)
	last, ok2 := parseDecimal(b)
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return first, last, true
}

// readError turns an error answer into an *Error. The answer may come
// from anyone (a peer sidecar, or whatever listens at the URL), and its
// code and reason end up in a terminal, in logs and in this sidecar's own
// answers: both are cleaned (cleanText) and bounded.
func readError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return errorOf(resp, raw)
}

// errorOf is readError of an answer whose body (raw) is read.
func errorOf(resp *http.Response, raw []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode}
	if secs, err := strconv.ParseUint(strings.TrimSpace(resp.Header.Get("Retry-After")), 10, 32); err == nil {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	var body ErrorBody
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Code, e.Reason = cleanText(body.Code, maxErrorCode), cleanText(body.Error, maxErrorReason)
	} else {
		e.Reason = cleanText(strings.TrimSpace(string(raw)), maxErrorReason)
	}
	return e
}

// Bounds of an error answer's code and reason as readError keeps them: a
// sidecar's own reasons are a line or a few (a 404 quotes each peer's).
const (
	maxErrorCode   = 64
	maxErrorReason = 4096
)

// cleanText makes s safe to print on one line (app.OneLine: control and
// format characters, terminal escapes and bidirectional overrides
// escaped) and cuts it to at most limit bytes, on a character boundary,
// ending in "…" when cut.
func cleanText(s string, limit int) string {
	s = app.OneLine(s)
	if len(s) <= limit {
		return s
	}
	cut := limit - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
