package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

// Sentinel errors. Backends wrap them with details; test with errors.Is.
var (
	// ErrNotFound: no blob with this sum is stored.
	ErrNotFound = errors.New("blob not found")
	// ErrHashMismatch: the body does not hash to the claimed SHA-256.
	ErrHashMismatch = errors.New("blob does not hash to the claimed sha256")
	// ErrSizeMismatch: the body is shorter or longer than the declared size.
	ErrSizeMismatch = errors.New("blob size does not match the declared size")
	// ErrInvalidRange: the requested range lies outside the blob.
	ErrInvalidRange = errors.New("invalid range")
	// ErrBucketVersioned: the MinIO bucket keeps object versions, so a
	// deleted or replaced blob would stay readable as an old version.
	ErrBucketVersioned = errors.New("bucket has versioning enabled")
)

// Sum is the SHA-256 of a blob: its name in the store.
type Sum [32]byte

// String is the lowercase hex form, the only form used in names and URLs.
func (s Sum) String() string { return hex.EncodeToString(s[:]) }

// ParseSum parses 64 hex characters (any case). A refusal returns the zero
// Sum, never the bytes decoded before the bad character.
func ParseSum(s string) (Sum, error) {
	var sum Sum
	if len(s) != 2*len(sum) {
		return sum, fmt.Errorf("sha256 must be %d hex characters, got %d", 2*len(sum), len(s))
	}
	if _, err := hex.Decode(sum[:], []byte(s)); err != nil {
		return Sum{}, fmt.Errorf("sha256 %q: %w", s, err)
	}
	return sum, nil
}

// Owner names whose blob it is. The sidecar files every blob under the
// patient it was uploaded for (a patient id is 32 bytes), so the same bytes
// put for two patients are two blobs, each served only through its own
// patient's records.
type Owner [32]byte

// String is the lowercase hex form used in names.
func (o Owner) String() string { return hex.EncodeToString(o[:]) }

// Key names a stored blob: its owner and the SHA-256 of its bytes.
type Key struct {
	Owner Owner
	Sum   Sum
}

// String is "<owner hex>/<sum hex>", the blob's name in both backends.
func (k Key) String() string { return k.Owner.String() + "/" + k.Sum.String() }

// Compare orders keys by owner, then by sum: the order of Store.List.
func (k Key) Compare(o Key) int {
	if c := bytes.Compare(k.Owner[:], o.Owner[:]); c != 0 {
		return c
	}
	return bytes.Compare(k.Sum[:], o.Sum[:])
}

// ParseKey parses "<owner hex>/<sum hex>" (lowercase, as String writes it).
func ParseKey(s string) (Key, error) {
	owner, sum, ok := strings.Cut(s, "/")
	if !ok || !isHexName(owner) || !isHexName(sum) {
		return Key{}, fmt.Errorf("blob key %q: want <64 hex>/<64 hex>", s)
	}
	var k Key
	_, _ = hex.Decode(k.Owner[:], []byte(owner))
	_, _ = hex.Decode(k.Sum[:], []byte(sum))
	return k, nil
}

// Info describes a stored blob.
type Info struct {
	Key  Key
	Size int64
	// ModTime is when the blob was stored or last re-put.
	ModTime time.Time
}

// Store is a content-addressed blob store, with a namespace per owner.
// Implementations are safe for concurrent use.
type Store interface {
	// Put stores the size bytes read from r under key. It hashes while it
	// streams and commits only if the bytes hash to key.Sum and are exactly
	// size long; otherwise it returns ErrHashMismatch or ErrSizeMismatch and
	// stores nothing. If the blob is already stored, Put still verifies the
	// body, keeps the stored copy and refreshes its ModTime; a stored copy
	// of another size is damaged (the sum fixes the size), and the verified
	// body replaces it.
	Put(ctx context.Context, key Key, r io.Reader, size int64) error
	// Get returns a reader over length bytes of the blob from offset
	// (length < 0: to the end) and the blob's total size. The range must lie
	// within the blob (ErrInvalidRange). The caller closes the reader.
	Get(ctx context.Context, key Key, offset, length int64) (io.ReadCloser, int64, error)
	// Stat describes a stored blob, or returns ErrNotFound.
	Stat(ctx context.Context, key Key) (Info, error)
	// Delete removes a blob, or returns ErrNotFound.
	Delete(ctx context.Context, key Key) error
	// List calls fn for every stored blob, in ascending order of key (see
	// Key.Compare), until fn returns false or ctx ends.
	List(ctx context.Context, fn func(Info) bool) error
	// ListAfter is List from the first blob whose key is above after: a
	// pass that goes through the store in batches resumes where it
	// stopped without listing again what it has seen. After the zero Key
	// it lists every blob (no blob has it: its sum would be a SHA-256 of
	// all zeros).
	ListAfter(ctx context.Context, after Key, fn func(Info) bool) error
	// CleanTemp removes temporary objects of interrupted Puts older than
	// olderThan and returns how many it removed.
	CleanTemp(ctx context.Context, olderThan time.Duration) (int, error)
	// Ping checks that the backend is usable.
	Ping(ctx context.Context) error
	// Name names the backend ("fs", "minio") for logs and health reports.
	Name() string
}

// checkRange validates a Get range against a blob of size bytes and
// returns the length to read.
func checkRange(offset, length, size int64) (int64, error) {
	if offset < 0 || offset > size {
		return 0, fmt.Errorf("%w: offset %d of a %d-byte blob", ErrInvalidRange, offset, size)
	}
	if length < 0 {
		return size - offset, nil
	}
	if length > size-offset {
		return 0, fmt.Errorf("%w: %d bytes from offset %d of a %d-byte blob", ErrInvalidRange, length, offset, size)
	}
	return length, nil
}

// verifier reads exactly size bytes from r while hashing them, and then
// checks that r has nothing more to give.
type verifier struct {
	ctx  context.Context
	r    io.Reader
	h    hash.Hash
	size int64
	n    int64
	// short is set when r ended before size bytes.
	short bool
}

func newVerifier(ctx context.Context, r io.Reader, size int64) *verifier {
	return &verifier{ctx: ctx, r: r, h: sha256.New(), size: size}
}

// Read implements io.Reader over the first size bytes of r; it is never an
// io.Seeker or io.ReaderAt, so nothing downstream can re-read around the
// hash.
func (v *verifier) Read(p []byte) (int, error) {
	if err := v.ctx.Err(); err != nil {
		return 0, err
	}
	if rest := v.size - v.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	if len(p) == 0 {
		return 0, io.EOF
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF && v.n < v.size {
		v.short = true
		return n, fmt.Errorf("%w: body ended after %d of %d bytes", ErrSizeMismatch, v.n, v.size)
	}
	if err == io.EOF {
		err = nil // the caller sees EOF at exactly size
		if n == 0 {
			return 0, io.EOF
		}
	}
	return n, err
}

// finish checks length, trailing bytes and the hash after the body was
// consumed.
func (v *verifier) finish(want Sum) error {
	if v.short || v.n != v.size {
		return fmt.Errorf("%w: got %d bytes, declared %d", ErrSizeMismatch, v.n, v.size)
	}
	var one [1]byte
	if n, _ := io.ReadFull(v.r, one[:]); n > 0 {
		return fmt.Errorf("%w: body is longer than the declared %d bytes", ErrSizeMismatch, v.size)
	}
	var got Sum
	v.h.Sum(got[:0])
	if got != want {
		return fmt.Errorf("%w: claimed %s, body hashes to %s", ErrHashMismatch, want, got)
	}
	return nil
}

// drainVerify consumes r (size bytes) only to check it hashes to sum: the
// idempotent path of Put for a blob that is already stored.
func drainVerify(ctx context.Context, r io.Reader, sum Sum, size int64) error {
	v := newVerifier(ctx, r, size)
	buf := make([]byte, 64<<10)
	if _, err := io.CopyBuffer(io.Discard, v, buf); err != nil {
		return err
	}
	return v.finish(sum)
}

// validPut checks Put's arguments.
func validPut(size int64) error {
	if size < 0 {
		return fmt.Errorf("%w: size must be known, got %d", ErrSizeMismatch, size)
	}
	return nil
}

// isHexName reports whether s is a 64-character lowercase hex sum.
func isHexName(s string) bool {
	if len(s) != 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
