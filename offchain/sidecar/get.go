package sidecar

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// authenticateGet authenticates a GET (authenticate), which has no body.
func (s *Server) authenticateGet(r *http.Request) (*emrv1.Member, *apiError) {
	caller, sr, aerr := s.authenticate(r)
	if aerr != nil {
		return nil, aerr
	}
	if sr.bodySum != [32]byte(mustHex(emptySHA256)) {
		return nil, errf(http.StatusBadRequest, "bad_request", "a GET has no body: %s must be the SHA-256 of nothing (%s)", HeaderBodySHA256, emptySHA256)
	}
	return caller, nil
}

// getPrologue is what every GET of a blob or key does first: it
// authenticates the caller (authenticateGet), parses the request's path
// and query with parse (an error is a 400 with its text), and reads the
// node's head to authorize by. If any fails it has answered w, and ok is
// false.
func (s *Server) getPrologue(w http.ResponseWriter, r *http.Request, parse func() error) (caller *emrv1.Member, head Head, ok bool) {
	caller, aerr := s.authenticateGet(r)
	if aerr == nil {
		if err := parse(); err != nil {
			aerr = errf(http.StatusBadRequest, "bad_request", "%v", err)
		}
	}
	if aerr == nil {
		head, aerr = s.head(r.Context())
	}
	if aerr != nil {
		writeError(w, aerr)
		return nil, Head{}, false
	}
	return caller, head, true
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	var sum blobstore.Sum
	var ref BlobRef
	caller, head, ok := s.getPrologue(w, r, func() (err error) {
		if sum, err = blobstore.ParseSum(r.PathValue("sha256")); err != nil {
			return fmt.Errorf("path: %w", err)
		}
		ref, err = parseBlobRef(r.URL.Query())
		return err
	})
	if !ok {
		return
	}
	ctx := r.Context()
	blob, aerr := newAuthState(s.chain, caller, head, s.opts.AccessWindow).authorizeGet(ctx, ref, sum)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rng, rerr := parseByteRange(r.Header.Get("Range"), int64(blob.size))
	if rerr != nil {
		// Judged on the chain's size, so that a relayed range is judged
		// as a local one is; a copy of another size is not served.
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", blob.size))
		writeError(w, errf(http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", "%v", rerr))
		return
	}
	key := blob.key
	waited := false // for a range's copy check: authorize again before a byte goes out
	info, err := s.store.Stat(ctx, key)
	if err == nil && uint64(info.Size) != blob.size {
		// The stored copy has another size than the record (or share)
		// says: a copy torn or truncated by a disk or a restore, or a
		// record that names the blob with a false size (the chain does
		// not know a blob's bytes). Not served; the answer is relayed
		// from a peer. Nothing is dropped on the record's word: the
		// scrub reads the copy whole, and drops it only if its bytes are
		// not the blob.
		s.log.Error("stored blob has another size than the record says: not served; relaying it from a peer", "sha256", sum.String(), "key", key.String(),
			"stored", info.Size, "record", blob.size, "ref", ref.String())
		err = fmt.Errorf("%w: the stored copy has %d bytes, the record says %d", blobstore.ErrNotFound, info.Size, blob.size)
	}
	if err == nil && r.Method == http.MethodGet {
		if rng.partial {
			// A range is not checked as it is sent: the copy is, first
			// (rangecheck.go).
			var cerr error
			if waited, cerr = s.checkCopyForRange(ctx, key); errors.Is(cerr, blobstore.ErrNotFound) {
				err = cerr // dropped as damaged, or gone: relay it from a peer
			} else if cerr != nil {
				if ctx.Err() == nil {
					s.log.Error("checking the stored blob before serving a range failed", "sha256", sum.String(), "key", key.String(), "err", cerr)
				}
				writeError(w, errf(http.StatusInternalServerError, "store_error", "reading the blob failed"))
				return
			}
		}
	}
	if errors.Is(err, blobstore.ErrNotFound) {
		ans, perr := s.askPeers(ctx, r, blob)
		if perr != nil {
			const notHere = "blob %s of %s is not stored on this sidecar, and %v"
			switch {
			case errors.Is(perr, errPeersBehind):
				writeError(w, retryLater(http.StatusServiceUnavailable, CodeChainBehind, time.Second, notHere, sum, ref, perr))
			case errors.Is(perr, errPeersUnavailable):
				writeError(w, errf(http.StatusServiceUnavailable, "peers_unavailable", notHere, sum, ref, perr))
			default:
				writeError(w, errf(http.StatusNotFound, "not_found", "blob %s of %s is not stored on this sidecar for that record's patient and category: %v", sum, ref, perr))
			}
			return
		}
		defer ans.done()
		if head, aerr = s.reauthorizeGet(ctx, caller, head, ref, sum); aerr != nil {
			writeError(w, aerr)
			return
		}
		s.relay(ctx, w, ans, caller.Address, sum, head.Height)
		return
	}
	if err != nil {
		s.log.Error("blob stat failed", "sha256", sum.String(), "key", key.String(), "err", err)
		writeError(w, errf(http.StatusInternalServerError, "store_error", "reading the blob failed"))
		return
	}
	if waited {
		if head, aerr = s.reauthorizeGet(ctx, caller, head, ref, sum); aerr != nil {
			writeError(w, aerr)
			return
		}
	}
	s.serveStored(w, r, key, rng, caller, head.Height, func(contentRange string) []byte {
		return BlobAnswerContext(r.URL.RequestURI(), contentRange)
	})
}

// reauthorizeGet judges again a GET that caller's request, authorized at
// head, waited on: a range's copy check or a peer's answer can take minutes
// (the blob's lock, a whole read of a large copy, a peer's own wait), and
// a consent revoked, a member suspended or replaced, or an access window
// passed meanwhile must stop the bytes before the first goes out. It
// reads the node's head, which must not have gone back, and the caller's
// membership anew (caller is as authentication read it), and returns the
// head it authorized at.
func (s *Server) reauthorizeGet(ctx context.Context, caller *emrv1.Member, was Head, ref BlobRef, sum blobstore.Sum) (Head, *apiError) {
	head, aerr := s.head(ctx)
	if aerr != nil {
		return Head{}, aerr
	}
	if head.Height < was.Height {
		return Head{}, retryLater(http.StatusServiceUnavailable, CodeChainBehind, time.Second,
			"the node's head went back from height %d to %d while the request waited: not judged again on older state", was.Height, head.Height)
	}
	now, err := s.chain.Member(ctx, caller.Address)
	switch {
	case errors.Is(err, ErrNotFound):
		return Head{}, forbidden("member %x is no longer on the chain", caller.Address)
	case err != nil:
		return Head{}, chainError(err)
	case !bytes.Equal(now.SignPubKey, caller.SignPubKey):
		return Head{}, unauthenticated("the signing key of %x was replaced while the request waited; sign the request anew", caller.Address)
	case !app.IsActive(now):
		return Head{}, forbidden("member %x is %s", caller.Address, app.StatusName(now.Status))
	}
	if _, aerr := newAuthState(s.chain, now, head, s.opts.AccessWindow).authorizeGet(ctx, ref, sum); aerr != nil {
		return Head{}, aerr
	}
	return head, nil
}

// serveStored answers r with rng of the stored blob key (the whole blob,
// or the range r asked, which the caller checked against the copy's
// size), sealed to caller (seal.go) under the context sealContext gives
// for the answer's Content-Range ("" for the whole blob). The whole blob
// is verified as it is sent.
func (s *Server) serveStored(w http.ResponseWriter, r *http.Request, key blobstore.Key, rng byteRange, caller *emrv1.Member, height int64, sealContext func(contentRange string) []byte) {
	ctx, sum := r.Context(), key.Sum
	start, length, partial := rng.start, rng.length, rng.partial
	sealTo, err := crypto.ParseEncryptionPublicKey(caller.EncPubKey)
	if err != nil { // the chain checks every member's key when it registers it
		s.log.Error("a member's registered encryption key does not parse", "member", hex.EncodeToString(caller.Address), "err", err)
		writeError(w, forbidden("member %X has no usable encryption key on the chain to seal the answer to", caller.Address))
		return
	}
	rc, size, err := s.store.Get(ctx, key, start, length)
	if err != nil {
		if errors.Is(err, blobstore.ErrNotFound) {
			writeError(w, errf(http.StatusNotFound, "not_found", "blob %s is not stored on this sidecar", sum))
			return
		}
		if errors.Is(err, blobstore.ErrInvalidRange) { // the blob changed size meanwhile: impossible for a hash, but be exact
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			writeError(w, errf(http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", "%v", err))
			return
		}
		s.log.Error("blob read failed", "sha256", sum.String(), "err", err)
		writeError(w, errf(http.StatusInternalServerError, "store_error", "reading the blob failed"))
		return
	}
	defer rc.Close()
	contentRange := ""
	if partial {
		contentRange = fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size)
	}
	seal, err := newTransferSeal(sealTo, sealContext(contentRange))
	if err != nil {
		s.log.Error("sealing an answer failed", "sha256", sum.String(), "err", err)
		writeError(w, errf(http.StatusInternalServerError, "seal_error", "sealing the answer failed"))
		return
	}
	cw := s.blobAnswer(w)
	h := w.Header()
	seal.setHeaders(h, length)
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", contentRange)
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	var n int64
	if r.Method != http.MethodHead {
		bp := s.bufs.Get().(*[]byte)
		if partial {
			// A range is not the blob: the reader checks the whole it
			// assembles against the chain's hash.
			err = seal.send(cw, func(sealed io.Writer) error {
				_, err := io.CopyBuffer(sealed, struct{ io.Reader }{rc}, *bp)
				return err
			})
		} else {
			// The status goes out first, so that a copy found damaged is
			// a transfer cut short, whatever its size.
			if err = http.NewResponseController(w).Flush(); err == nil {
				err = seal.send(cw, func(sealed io.Writer) error {
					_, err := copyVerified(sealed, rc, length, sum, *bp)
					return err
				})
			}
		}
		s.bufs.Put(bp)
		n = cw.n
		if errors.Is(err, errDamagedCopy) {
			// Same size, other bytes (a flipped bit on a disk, a bad
			// restore): the reader gets a transfer cut short, never the
			// whole damaged blob. Dropping the copy lets the next GET be
			// relayed from a peer (the reader's retry, or another's), and
			// a storage service copy the blob back.
			s.foundDamaged(key)
			dropped, derr := s.dropDamagedCopy(context.WithoutCancel(ctx), key)
			s.log.Error("stored blob is damaged (its bytes do not hash to its SHA-256): not served; the next GET reads it from a peer, and a storage service copies it",
				"sha256", sum.String(), "key", key.String(), "sent", n, "dropped", dropped, "err", derr)
			panic(http.ErrAbortHandler)
		}
		if err != nil {
			s.log.Error("blob transfer interrupted", "sha256", sum.String(), "reader", hex.EncodeToString(caller.Address), "sent", n, "err", err)
			return
		}
	}
	s.log.Info("blob served", "sha256", sum.String(), "reader", hex.EncodeToString(caller.Address),
		"bytes", n, "range", r.Header.Get("Range"), "height", height)
}

// blobAnswer sets the headers every blob answer has (an opaque body, not
// to be cached) and returns the writer its body goes through: counted in
// the bytes-out metric, each write bounded by the idle timeout.
func (s *Server) blobAnswer(w http.ResponseWriter) *countingWriter {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "private, no-store")
	return &countingWriter{w: &writeDeadline{w: w, rc: http.NewResponseController(w), idle: s.opts.UploadIdleTimeout}, c: s.metrics.bytesOut}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// byteRange is the part of a blob an answer holds: length bytes from
// start, partial unless it is the whole blob.
type byteRange struct {
	start, length int64
	partial       bool
}

// wholeBlob is the byteRange of all size bytes.
func wholeBlob(size int64) byteRange { return byteRange{0, size, false} }

// parseByteRange is parseRange as a byteRange.
func parseByteRange(h string, size int64) (byteRange, error) {
	start, length, partial, err := parseRange(h, size)
	return byteRange{start, length, partial}, err
}

// parseRange interprets a Range header for a blob of size bytes: one range
// "bytes=a-b", "bytes=a-" or "bytes=-n". It returns the start, the length
// and whether the answer is partial. A header that is absent, malformed or
// asks for several ranges is ignored (the whole blob, 200), as HTTP allows;
// a well-formed single range that lies outside the blob is an error (416).
func parseRange(h string, size int64) (start, length int64, partial bool, err error) {
	if h == "" {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, false, nil
	}
	if a == "" { // suffix: the last n bytes
		n, ok := parseDecimal(b)
		if !ok {
			return 0, size, false, nil
		}
		if n == 0 || size == 0 {
			return 0, 0, false, fmt.Errorf("range %q selects nothing of a %d-byte blob", h, size)
		}
		n = min(n, size)
		return size - n, n, true, nil
	}
	first, ok := parseDecimal(a)
	if !ok {
		return 0, size, false, nil
	}
	last := size - 1
	if b != "" {
		l, ok := parseDecimal(b)
		if !ok || l < first {
			return 0, size, false, nil
		}
		last = min(l, size-1)
	}
	if first >= size {
		return 0, 0, false, fmt.Errorf("range %q starts beyond the %d-byte blob", h, size)
	}
	return first, last - first + 1, true, nil
}

// parseDecimal reads a non-negative decimal number of plain ASCII digits,
// as HTTP writes them (1*DIGIT): no sign, no spaces, no underscores, and
// nothing beyond int64. strconv alone would also take a sign.
func parseDecimal(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// writeDeadline gives each write to a download's reader idle to complete
// (none when idle is negative): a reader that stops reading would
// otherwise hold the handler, its buffer and the blob's file or stream
// for as long as it keeps the connection.
type writeDeadline struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (d *writeDeadline) Write(p []byte) (int, error) {
	if d.idle > 0 {
		_ = d.rc.SetWriteDeadline(time.Now().Add(d.idle)) // not every writer has deadlines
	}
	return d.w.Write(p)
}
