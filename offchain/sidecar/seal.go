package sidecar

import (
	"crypto/ecdh"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/emrchain/emrchain/offchain/crypto"
)

// Sealed answers.
//
// A sidecar seals every blob it serves to the X25519 key the chain has for
// the member that asked: the bytes (the ciphertext of a record, or the
// range asked of it) are encrypted once more with crypto.NewEncryptWriter
// under a fresh data key, which goes in a crypto.SealTransferKey envelope
// only that member's private key opens. A signed request names no sidecar,
// so whoever sees one (a proxy that logs headers, a mistyped plain-HTTP
// URL) may send it on, within the clock skew, to another sidecar that
// holds the blob; sealed, what comes back is of no use but to the member
// who signed it. A peer that relays a member's request (read-through,
// peers.go) passes the sealed answer on as it came, and a storage
// service's replica is sealed the same way to the storage service
// (replica.go).
//
// The envelope and the stream are bound to the answer's context: for a
// member, BlobAnswerContext (the request URI and the range served); for a
// replica, its route (ReplicaPath). The stream's final segment is marked,
// so an answer cut short (a damaged copy's, which the sidecar stops
// before its last bytes) never opens whole.

// Headers of a sealed answer: the body is CiphertextSize(size) bytes of
// stream; the answer's Content-Range, if any, names the range of the blob
// it holds.
const (
	// HeaderSealedEnvelope is the base64 (standard, padded)
	// crypto.SealTransferKey envelope of the body's data key, sealed to
	// the asking member's registered X25519 key and bound to the answer's
	// context.
	HeaderSealedEnvelope = "X-Emr-Sealed-Envelope"
	// HeaderSealedSize is the size in bytes (decimal) of what the body
	// holds sealed: the blob, or the range of it served.
	HeaderSealedSize = "X-Emr-Sealed-Size"
)

// Recipient is a member as a sidecar's client: its signing key, which
// signs the requests, and its X25519 key, which opens the sealed answers
// (a *keyring.Key is one).
type Recipient interface {
	Signer
	// EncPrivKey is the X25519 private key whose public key the chain has
	// for the member.
	EncPrivKey() *ecdh.PrivateKey
}

// KeyRecipient is a Recipient over in-memory keys: a CometBFT ed25519
// signing key and an X25519 key.
type KeyRecipient struct {
	KeySigner
	Enc *ecdh.PrivateKey
}

// EncPrivKey implements Recipient.
func (k KeyRecipient) EncPrivKey() *ecdh.PrivateKey { return k.Enc }

// blobAnswerLabel keeps a member's answers apart from replicas, whose
// context is a route.
const blobAnswerLabel = "emrchain/v1/blob-answer"

// BlobAnswerContext is what the seal of a member's blob answer is bound
// to: the request URI as signed (path and query), and the answer's
// Content-Range ("bytes first-last/size"), empty for a whole blob. An
// answer to one request does not open as another's.
func BlobAnswerContext(requestURI, contentRange string) []byte {
	return crypto.LengthPrefixed(blobAnswerLabel, []byte(requestURI), []byte(contentRange))
}

// transferSeal seals one answer: the bytes go encrypted under a fresh data
// key, which goes in an envelope only the recipient's X25519 key opens.
type transferSeal struct {
	dataKey, envelope, context []byte
}

// newTransferSeal prepares the seal of an answer bound to context for the
// holder of to's private key.
func newTransferSeal(to *ecdh.PublicKey, context []byte) (*transferSeal, error) {
	dataKey, envelope, err := crypto.SealTransferKey(to, context)
	if err != nil {
		return nil, err
	}
	return &transferSeal{dataKey: dataKey, envelope: envelope, context: context}, nil
}

// setHeaders announces size bytes sealed.
func (s *transferSeal) setHeaders(h http.Header, size int64) {
	h.Set(HeaderSealedEnvelope, base64.StdEncoding.EncodeToString(s.envelope))
	h.Set(HeaderSealedSize, strconv.FormatInt(size, 10))
	h.Set("Content-Length", strconv.FormatInt(crypto.CiphertextSize(size), 10))
}

// send writes to w, sealed, what copy writes to the writer it is given
// (copyVerified for the whole blob, so that a damaged copy's stream ends
// without its final segment, which the recipient's reader refuses; a
// plain copy for a range, which is not the blob).
func (s *transferSeal) send(w io.Writer, copy func(sealed io.Writer) error) error {
	enc, err := crypto.NewEncryptWriter(w, s.dataKey, s.context)
	if err != nil {
		return err
	}
	if err := copy(enc); err != nil {
		return err
	}
	return enc.Close()
}

// anySealedSize bounds nothing: sealedHeaders' maxSize for an answer of
// any size.
const anySealedSize = math.MaxUint64

// sealedHeaders reads what a sealed answer's headers say: its envelope and
// the size of what it holds, which must be within maxSize (anySealedSize:
// any) and whose sealed size must be the answer's Content-Length.
func sealedHeaders(resp *http.Response, maxSize uint64) (envelope []byte, size int64, err error) {
	sealed := resp.Header.Get(HeaderSealedEnvelope)
	if sealed == "" {
		return nil, 0, fmt.Errorf("the answer came without %s: the sidecar did not seal it to this member's key (a sidecar from before answers were sealed: upgrade it)", HeaderSealedEnvelope)
	}
	if envelope, err = base64.StdEncoding.DecodeString(sealed); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", HeaderSealedEnvelope, err)
	}
	size, err = strconv.ParseInt(resp.Header.Get(HeaderSealedSize), 10, 64)
	switch {
	case err != nil || size < 0:
		return nil, 0, fmt.Errorf("%s %q: not a size", HeaderSealedSize, resp.Header.Get(HeaderSealedSize))
	case uint64(size) > maxSize:
		return nil, 0, fmt.Errorf("it announces %d bytes, above the %d expected", size, maxSize)
	case resp.ContentLength < 0 || resp.ContentLength != crypto.CiphertextSize(size):
		// An unknown length (-1) first: CiphertextSize is -1 too for a
		// size whose sealed length overflows, and the two would match.
		body := "of no stated length"
		if resp.ContentLength >= 0 {
			body = fmt.Sprintf("of %d bytes", resp.ContentLength)
		}
		return nil, 0, fmt.Errorf("a sealed answer of %d bytes is %d bytes long, but this one came in a body %s", size, crypto.CiphertextSize(size), body)
	}
	return envelope, size, nil
}

// openSealed opens a sealed answer (resp, whose body is read from body:
// resp.Body, wrapped) bound to context with the recipient's X25519 key:
// the size of what it holds, which must be within maxSize (sealedHeaders), and a
// reader of those bytes. The reader fails on anything not sealed to this
// key under this context, and on a stream cut short; what says "sealed"
// is the envelope header, whose absence is an error naming the sidecar
// as one from before answers were sealed.
func openSealed(resp *http.Response, body io.Reader, context []byte, to *ecdh.PrivateKey, maxSize uint64) (int64, io.Reader, error) {
	envelope, size, err := sealedHeaders(resp, maxSize)
	if err != nil {
		return 0, nil, err
	}
	dataKey, err := crypto.OpenTransferKey(to, envelope, context)
	if err != nil {
		return 0, nil, fmt.Errorf("the answer's envelope: %w", err)
	}
	plain, err := crypto.NewDecryptReader(body, dataKey, context)
	if err != nil {
		return 0, nil, fmt.Errorf("the sealed answer: %w", err)
	}
	return size, plain, nil
}
