package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// KeySize is the size in bytes of every symmetric key in this package: data
// keys, KEKs and derived AES-256 keys.
const KeySize = 32

// DefaultSegmentSize is the plaintext size of every segment but the last one
// written by NewEncryptWriter.
const DefaultSegmentSize = 64 << 10

const (
	streamMagic          = "EMR1"
	streamVersion        = 1
	streamSaltSize       = 16
	streamHeaderSize     = len(streamMagic) + 1 + 4 + streamSaltSize // 25
	streamNoncePrefixLen = 4
	streamKeyLabel       = "emrchain/v1/stream-segment-key"
	gcmNonceSize         = 12
	gcmTagSize           = 16

	// Bounds a reader accepts for the header's segment size. The upper bound
	// caps the reader's buffer (memory) whatever the header claims.
	minSegmentSize = 16
	maxSegmentSize = 1 << 20
)

// streamCipher holds the per-file AEAD and the reusable nonce and
// associated-data buffers, so sealing or opening a segment allocates nothing.
type streamCipher struct {
	aead  cipher.AEAD
	nonce [gcmNonceSize]byte // derived prefix (4) || segment index (8)
	aad   []byte             // header (25) || segment index (8) || final (1) || caller aad
}

func newStreamCipher(dataKey, header, aad []byte) (*streamCipher, error) {
	salt := header[streamHeaderSize-streamSaltSize:]
	okm, err := hkdf.Key(sha256.New, dataKey, salt, streamKeyLabel, KeySize+streamNoncePrefixLen)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(okm[:KeySize])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &streamCipher{aead: aead}
	copy(s.nonce[:streamNoncePrefixLen], okm[KeySize:])
	clear(okm)
	s.aad = make([]byte, 0, streamHeaderSize+9+len(aad))
	s.aad = append(s.aad, header...)
	s.aad = append(s.aad, make([]byte, 9)...)
	s.aad = append(s.aad, aad...)
	return s, nil
}

// set prepares nonce and associated data for segment idx.
func (s *streamCipher) set(idx uint64, final bool) {
	binary.BigEndian.PutUint64(s.nonce[streamNoncePrefixLen:], idx)
	binary.BigEndian.PutUint64(s.aad[streamHeaderSize:], idx)
	s.aad[streamHeaderSize+8] = 0
	if final {
		s.aad[streamHeaderSize+8] = 1
	}
}

func encodeStreamHeader(segmentSize int, salt []byte) []byte {
	h := make([]byte, 0, streamHeaderSize)
	h = append(h, streamMagic...)
	h = append(h, streamVersion)
	h = binary.BigEndian.AppendUint32(h, uint32(segmentSize))
	return append(h, salt...)
}

// CiphertextSize returns the exact size of the stream NewEncryptWriter
// produces for plaintextSize bytes of plaintext (header, every segment and
// its tag). It returns -1 if plaintextSize is negative or the result would
// overflow an int64.
func CiphertextSize(plaintextSize int64) int64 {
	return ciphertextSize(plaintextSize, DefaultSegmentSize)
}

func ciphertextSize(n int64, segmentSize int) int64 {
	if n < 0 {
		return -1
	}
	segs := n / int64(segmentSize)
	if n%int64(segmentSize) != 0 || n == 0 {
		segs++
	}
	overhead := int64(streamHeaderSize) + segs*gcmTagSize
	if n > math.MaxInt64-overhead {
		return -1
	}
	return n + overhead
}

// NewEncryptWriter returns a writer that encrypts everything written to it
// under dataKey (KeySize bytes, fresh for every file: see GenerateKey) and
// writes the streaming format described in the package documentation to dst.
// aad is bound to every segment and must be presented again to decrypt; it
// is not written to dst.
//
// The header is written to dst before NewEncryptWriter returns. The caller
// must call Close to write the final segment: without it the output is
// truncated and will not decrypt. Close does not close dst. Memory use is
// constant (one segment buffer) whatever the size of the plaintext.
func NewEncryptWriter(dst io.Writer, dataKey []byte, aad []byte) (io.WriteCloser, error) {
	salt := make([]byte, streamSaltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return newEncryptWriter(dst, dataKey, aad, DefaultSegmentSize, salt)
}

// newEncryptWriter is NewEncryptWriter with the segment size and the salt
// chosen by the caller. Only tests (known-answer vectors, small segments)
// use it: production files always get a random salt.
func newEncryptWriter(dst io.Writer, dataKey, aad []byte, segmentSize int, salt []byte) (*encryptWriter, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("%w: data key is %d bytes, want %d", ErrInvalidKey, len(dataKey), KeySize)
	}
	if segmentSize < minSegmentSize || segmentSize > maxSegmentSize {
		return nil, fmt.Errorf("crypto: segment size %d out of range [%d, %d]", segmentSize, minSegmentSize, maxSegmentSize)
	}
	if len(salt) != streamSaltSize {
		return nil, fmt.Errorf("crypto: salt is %d bytes, want %d", len(salt), streamSaltSize)
	}
	header := encodeStreamHeader(segmentSize, salt)
	sc, err := newStreamCipher(dataKey, header, aad)
	if err != nil {
		return nil, err
	}
	if err := writeFull(dst, header); err != nil {
		return nil, err
	}
	return &encryptWriter{
		dst:         dst,
		sc:          sc,
		segmentSize: segmentSize,
		buf:         make([]byte, 0, segmentSize+gcmTagSize),
	}, nil
}

var errWriterClosed = errors.New("crypto: write to closed encrypt writer")

type encryptWriter struct {
	dst         io.Writer
	sc          *streamCipher
	segmentSize int
	buf         []byte // buffered plaintext of the current segment; cap segmentSize+tag
	idx         uint64
	err         error // sticky
	closed      bool
}

// Write buffers p and seals every segment that is known not to be the last
// one. A full segment is only sealed once more plaintext arrives, because
// only Close knows which segment is final.
func (w *encryptWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errWriterClosed
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == w.segmentSize {
			if err := w.seal(false); err != nil {
				w.err = err
				return n, err
			}
		}
		k := copy(w.buf[len(w.buf):w.segmentSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

// Close seals and writes the final segment (empty if nothing was written).
// It does not close the underlying writer. Calling Close again returns the
// result of the first call.
func (w *encryptWriter) Close() error {
	if w.closed || w.err != nil {
		return w.err
	}
	w.closed = true
	if err := w.seal(true); err != nil {
		w.err = err
	}
	return w.err
}

func (w *encryptWriter) seal(final bool) error {
	if w.idx == math.MaxUint64 {
		return errors.New("crypto: stream segment counter exhausted")
	}
	w.sc.set(w.idx, final)
	ct := w.sc.aead.Seal(w.buf[:0], w.sc.nonce[:], w.buf, w.sc.aad)
	w.buf = w.buf[:0]
	w.idx++
	return writeFull(w.dst, ct)
}

func writeFull(w io.Writer, p []byte) error {
	n, err := w.Write(p)
	if err != nil {
		return err
	}
	if n != len(p) {
		return io.ErrShortWrite
	}
	return nil
}

// NewDecryptReader reads the stream header from src and returns a reader of
// the plaintext. dataKey and aad must be those given to NewEncryptWriter.
//
// The reader returns the plaintext of a segment only after that segment
// authenticated, and reports io.EOF only after a segment sealed as final
// authenticated and src reported EOF immediately after it. Every problem with
// the ciphertext (truncation, extension, reordering, duplication, splicing,
// bit flips, wrong key, wrong aad) is an error matching ErrCorrupt, returned
// by Read (or by NewDecryptReader for a bad header) and then returned again
// by every later Read. Errors from src itself are passed through, wrapped.
//
// Plaintext returned before an error came from authentic segments of the
// file, but it is a prefix only: callers must not act on a file until Read
// returned io.EOF. Memory use is constant (one segment buffer).
func NewDecryptReader(src io.Reader, dataKey []byte, aad []byte) (io.Reader, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("%w: data key is %d bytes, want %d", ErrInvalidKey, len(dataKey), KeySize)
	}
	in := &endReader{r: src}
	header := make([]byte, streamHeaderSize)
	if _, err := io.ReadFull(in, header); err != nil {
		if in.ended(err) {
			return nil, fmt.Errorf("%w: %w: truncated header", ErrCorrupt, ErrBadFormat)
		}
		return nil, fmt.Errorf("crypto: reading stream header: %w", err)
	}
	if string(header[:len(streamMagic)]) != streamMagic {
		return nil, fmt.Errorf("%w: %w: bad magic %q", ErrCorrupt, ErrBadFormat, header[:len(streamMagic)])
	}
	if v := header[len(streamMagic)]; v != streamVersion {
		return nil, fmt.Errorf("%w: %w: stream version %d", ErrCorrupt, ErrUnsupportedVersion, v)
	}
	seg := binary.BigEndian.Uint32(header[len(streamMagic)+1:])
	if seg < minSegmentSize || seg > maxSegmentSize {
		return nil, fmt.Errorf("%w: %w: segment size %d out of range [%d, %d]", ErrCorrupt, ErrBadFormat, seg, minSegmentSize, maxSegmentSize)
	}
	sc, err := newStreamCipher(dataKey, header, aad)
	if err != nil {
		return nil, err
	}
	return &decryptReader{
		src:         in,
		sc:          sc,
		segmentSize: int(seg),
		buf:         make([]byte, int(seg)+gcmTagSize+1),
	}, nil
}

// endReader tells the end of its source from the source's own failure:
// io.ReadFull turns a short read that ends in io.EOF into
// io.ErrUnexpectedEOF, but passes on an io.ErrUnexpectedEOF the source
// returned itself (net/http's bodies do, for a connection dropped before
// Content-Length), and that is a read error, not a truncated ciphertext.
type endReader struct {
	r   io.Reader
	eof bool // the source returned io.EOF
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

// ended reports whether err, from io.ReadFull over e, means the source
// ended (rather than failed).
func (e *endReader) ended(err error) bool {
	return e.eof && (err == io.EOF || err == io.ErrUnexpectedEOF)
}

type decryptReader struct {
	src         *endReader
	sc          *streamCipher
	segmentSize int
	buf         []byte // one ciphertext segment plus one look-ahead byte
	plain       []byte // authenticated plaintext not yet returned (aliases buf)
	idx         uint64
	peek        byte // look-ahead byte that starts the next segment
	havePeek    bool
	done        bool  // the final segment authenticated and EOF followed it
	err         error // sticky
}

func (r *decryptReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.nextSegment()
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

// nextSegment reads, classifies (final or not) and authenticates one
// segment. A segment is final exactly when src ends within it or right after
// it, which a one-byte look-ahead tells apart; a final segment is only
// accepted if it was sealed as final, so dropping trailing segments fails.
func (r *decryptReader) nextSegment() error {
	ctMax := r.segmentSize + gcmTagSize
	off := 0
	if r.havePeek {
		r.buf[0] = r.peek
		r.havePeek = false
		off = 1
	}
	n, err := io.ReadFull(r.src, r.buf[off:ctMax])
	total := off + n
	final := false
	switch {
	case err == nil:
		switch _, perr := io.ReadFull(r.src, r.buf[ctMax:ctMax+1]); {
		case perr == nil:
			r.peek, r.havePeek = r.buf[ctMax], true
		case r.src.ended(perr):
			final = true
		default:
			return fmt.Errorf("crypto: reading segment %d: %w", r.idx, perr)
		}
	case r.src.ended(err):
		final = true
	default:
		return fmt.Errorf("crypto: reading segment %d: %w", r.idx, err)
	}
	if total < gcmTagSize {
		return fmt.Errorf("%w: segment %d truncated to %d bytes (shorter than a tag)", ErrCorrupt, r.idx, total)
	}
	if r.idx == math.MaxUint64 {
		return fmt.Errorf("%w: segment counter exhausted", ErrCorrupt)
	}
	r.sc.set(r.idx, final)
	pt, err := r.sc.aead.Open(r.buf[:0], r.sc.nonce[:], r.buf[:total], r.sc.aad)
	if err != nil {
		if final {
			return fmt.Errorf("%w: %w: segment %d (read as final) failed authentication: tampered, truncated or extended stream, or wrong key or aad", ErrCorrupt, ErrDecrypt, r.idx)
		}
		return fmt.Errorf("%w: %w: segment %d failed authentication: tampered or reordered stream, or wrong key or aad", ErrCorrupt, ErrDecrypt, r.idx)
	}
	if final && len(pt) == 0 && r.idx > 0 {
		// The writer only emits an empty final segment for an empty file.
		return fmt.Errorf("%w: empty final segment %d", ErrCorrupt, r.idx)
	}
	r.idx++
	r.plain = pt
	r.done = final
	return nil
}
