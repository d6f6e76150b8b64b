package sidecar

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// TestCopyVerified: a whole blob is copied only if its bytes hash to its
// SHA-256; otherwise the copy stops short of the end (the last chunk is
// held back until the hash is known), whatever the blob's size against
// the buffer's halves and however the store's reader splits its reads.
func TestCopyVerified(t *testing.T) {
	const bufSize = 64
	half := bufSize / 2
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"halves":   iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, size := range []int{1, half - 1, half, half + 1, bufSize, bufSize + 1, 3*half - 1, 10 * bufSize, 10*bufSize + 7} {
		data := bytes.Repeat([]byte("emr-chain"), size/9+1)[:size]
		sum := blobstore.Sum(sha256.Sum256(data))
		for name, wrap := range readers {
			t.Run(fmt.Sprintf("%d/%s", size, name), func(t *testing.T) {
				var out bytes.Buffer
				n, err := copyVerified(&out, wrap(bytes.NewReader(data)), int64(size), sum, make([]byte, bufSize))
				if err != nil || n != int64(size) || !bytes.Equal(out.Bytes(), data) {
					t.Fatalf("intact: %d of %d bytes, %v", n, size, err)
				}

				damaged := bytes.Clone(data)
				damaged[size/2] ^= 0x01
				out.Reset()
				n, err = copyVerified(&out, wrap(bytes.NewReader(damaged)), int64(size), sum, make([]byte, bufSize))
				if !errors.Is(err, errDamagedCopy) {
					t.Fatalf("damaged: %v, want errDamagedCopy", err)
				}
				if n != int64(out.Len()) || n >= int64(size) || !bytes.Equal(out.Bytes(), damaged[:n]) {
					t.Fatalf("damaged: sent %d (%d written) of %d bytes, want a prefix short of the end", n, out.Len(), size)
				}

				// A store whose read ends early (a cut connection) is a
				// failed read, not damage: nothing is dropped for it.
				for _, short := range []io.Reader{
					bytes.NewReader(data[:size-1]),
					io.MultiReader(bytes.NewReader(data[:size/2]), iotest.ErrReader(io.ErrUnexpectedEOF)),
				} {
					out.Reset()
					n, err = copyVerified(&out, wrap(short), int64(size), sum, make([]byte, bufSize))
					if errors.Is(err, errDamagedCopy) || !errors.Is(err, io.ErrUnexpectedEOF) || n >= int64(size) {
						t.Fatalf("short read: %d of %d bytes sent, %v; want a failed read, not damage", n, size, err)
					}
				}
			})
		}
	}

	// A store that fails part-way: its error, not a verdict on the bytes.
	data := bytes.Repeat([]byte{7}, 5*bufSize)
	failing := io.MultiReader(bytes.NewReader(data[:2*bufSize]), iotest.ErrReader(errors.New("disk read error")))
	var out bytes.Buffer
	if _, err := copyVerified(&out, failing, int64(len(data)), blobstore.Sum(sha256.Sum256(data)), make([]byte, bufSize)); err == nil || errors.Is(err, errDamagedCopy) || err.Error() != "disk read error" {
		t.Fatalf("failing store: %v, want its error", err)
	}
	if out.Len() >= 2*bufSize {
		t.Fatalf("failing store: %d bytes sent, want the last chunk read held back", out.Len())
	}
	// A reader that goes away: the writer's error.
	if _, err := copyVerified(errWriter{}, bytes.NewReader(data), int64(len(data)), blobstore.Sum(sha256.Sum256(data)), make([]byte, bufSize)); err == nil || err.Error() != "broken pipe" {
		t.Fatalf("broken writer: %v", err)
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }
