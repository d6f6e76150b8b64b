package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"testing"
	"testing/iotest"
)

// ---------------------------------------------------------------- helpers ---

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// pattern returns n deterministic, non-repeating-per-segment bytes.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}

func mustEncrypt(t testing.TB, key, aad, pt []byte, segmentSize int, salt []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newEncryptWriter(&buf, key, aad, segmentSize, salt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pt); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decryptAll returns whatever plaintext the reader released and the first
// error other than io.EOF (from the constructor or from Read).
func decryptAll(src io.Reader, key, aad []byte) ([]byte, error) {
	r, err := NewDecryptReader(src, key, aad)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

var fixedSalt = bytes.Repeat([]byte{0x5a}, streamSaltSize)

// ------------------------------------------------------------ round trips ---

func TestStreamRoundTrip(t *testing.T) {
	const S = DefaultSegmentSize
	key, aad := testKey(1), []byte("patient-1/lab-results/v1")
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"segment-1", S - 1},
		{"segment", S},
		{"segment+1", S + 1},
		{"two segments", 2 * S},
		{"3.5 segments", 3*S + S/2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt := pattern(tc.size)
			var buf bytes.Buffer
			w, err := NewEncryptWriter(&buf, key, aad)
			if err != nil {
				t.Fatal(err)
			}
			// Odd chunk size so that writes straddle segment boundaries.
			for rest := pt; len(rest) > 0; {
				n := min(len(rest), 10007)
				if k, err := w.Write(rest[:n]); err != nil || k != n {
					t.Fatalf("Write = %d, %v", k, err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			ct := buf.Bytes()
			if got, want := int64(len(ct)), CiphertextSize(int64(tc.size)); got != want {
				t.Fatalf("ciphertext is %d bytes, CiphertextSize says %d", got, want)
			}
			if bytes.Contains(ct, pt[:min(len(pt), 64)]) && len(pt) >= 16 {
				t.Fatal("plaintext visible in ciphertext")
			}
			got, err := decryptAll(bytes.NewReader(ct), key, aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatalf("round trip mismatch: got %d bytes, want %d", len(got), len(pt))
			}
			// Different read patterns, and a source that returns one byte at a time.
			r, err := NewDecryptReader(iotest.OneByteReader(bytes.NewReader(ct)), key, aad)
			if err != nil {
				t.Fatal(err)
			}
			if err := iotest.TestReader(r, pt); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The ciphertext must depend only on (key, salt, segment size, aad,
// plaintext), never on how the plaintext was split into Write calls.
func TestStreamChunkingInvariance(t *testing.T) {
	const S = 64
	key, aad := testKey(2), []byte("aad")
	for _, size := range []int{0, 1, S - 1, S, S + 1, 3*S + S/2, 4 * S} {
		pt := pattern(size)
		want := mustEncrypt(t, key, aad, pt, S, fixedSalt)
		for _, chunk := range []int{1, 3, S - 1, S, S + 1, 2*S + 5} {
			var buf bytes.Buffer
			w, err := newEncryptWriter(&buf, key, aad, S, fixedSalt)
			if err != nil {
				t.Fatal(err)
			}
			for rest := pt; len(rest) > 0; {
				n := min(len(rest), chunk)
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(nil); err != nil { // empty writes are no-ops
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("size %d chunk %d: ciphertext depends on write pattern", size, chunk)
			}
		}
	}
}

func TestStreamRandomSalt(t *testing.T) {
	key := testKey(3)
	enc := func() []byte {
		var buf bytes.Buffer
		w, err := NewEncryptWriter(&buf, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("same plaintext"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := enc(), enc()
	if bytes.Equal(a[9:25], b[9:25]) {
		t.Fatal("two files got the same salt")
	}
	if bytes.Equal(a[25:], b[25:]) {
		t.Fatal("same plaintext under the same key encrypted identically")
	}
}

func TestCiphertextSize(t *testing.T) {
	const S, H, T = int64(DefaultSegmentSize), int64(streamHeaderSize), int64(gcmTagSize)
	for _, tc := range []struct {
		in, want int64
	}{
		{0, H + T},
		{1, H + 1 + T},
		{S - 1, H + S - 1 + T},
		{S, H + S + T},
		{S + 1, H + S + 1 + 2*T},
		{3*S + S/2, H + 3*S + S/2 + 4*T},
		{64 << 20, H + 64<<20 + 1024*T},
		{-1, -1},
		{math.MaxInt64, -1},
		{math.MaxInt64 - H - T, -1},
	} {
		if got := CiphertextSize(tc.in); got != tc.want {
			t.Errorf("CiphertextSize(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// --------------------------------------------------------- constant memory ---

// keystream is a fast deterministic source of pseudo-random plaintext.
func keystream(n int64) io.Reader {
	block, _ := aes.NewCipher(make([]byte, 16))
	return io.LimitReader(cipher.StreamReader{S: cipher.NewCTR(block, make([]byte, 16)), R: zeroReader{}}, n)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestStreamConstantMemory encrypts 64 MiB into a pipe and decrypts it on the
// other end. Total heap allocation over the whole run must stay far below
// one segment per segment processed: anything that buffered the stream or
// allocated per segment would allocate >= 64 MiB here.
func TestStreamConstantMemory(t *testing.T) {
	const size = 64 << 20
	key, aad := testKey(4), []byte("memory")
	wantHash, gotHash := sha256.New(), sha256.New()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		w, err := NewEncryptWriter(pw, key, aad)
		if err == nil {
			_, err = io.Copy(w, io.TeeReader(keystream(size), wantHash))
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
		done <- err
	}()
	r, err := NewDecryptReader(pr, key, aad)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(gotHash, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)

	if n != size || !bytes.Equal(gotHash.Sum(nil), wantHash.Sum(nil)) {
		t.Fatalf("64 MiB round trip mismatch (%d bytes)", n)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("64 MiB encrypt+decrypt allocated %d KiB in total", allocated>>10)
	if allocated > 1<<20 {
		t.Fatalf("allocated %d bytes for a 64 MiB stream; want < 1 MiB (constant memory)", allocated)
	}
}

// After setup, sealing and opening segments must not allocate at all.
func TestStreamSteadyStateAllocs(t *testing.T) {
	key := testKey(5)
	chunk := pattern(DefaultSegmentSize)

	w, err := NewEncryptWriter(io.Discard, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(chunk)
	if a := testing.AllocsPerRun(50, func() { w.Write(chunk) }); a != 0 {
		t.Errorf("encrypt: %v allocations per 64 KiB Write, want 0", a)
	}

	var buf bytes.Buffer
	w2, _ := NewEncryptWriter(&buf, key, nil)
	for range 60 {
		w2.Write(chunk)
	}
	w2.Close()
	r, err := NewDecryptReader(bytes.NewReader(buf.Bytes()), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, DefaultSegmentSize)
	if a := testing.AllocsPerRun(50, func() {
		if _, err := io.ReadFull(r, out); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("decrypt: %v allocations per 64 KiB Read, want 0", a)
	}
}

// ----------------------------------------------------------------- tamper ---

// checkPrefix asserts the failure contract: an ErrCorrupt error, and released
// plaintext that is exactly the first wantSegs authentic segments.
func checkPrefix(t *testing.T, got []byte, err error, pt []byte, S, wantSegs int, also ...error) {
	t.Helper()
	if err == nil {
		t.Fatal("tampered stream decrypted without error")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %q does not match ErrCorrupt", err)
	}
	for _, e := range also {
		if !errors.Is(err, e) {
			t.Fatalf("error %q does not match %q", err, e)
		}
	}
	want := pt[:min(len(pt), wantSegs*S)]
	if !bytes.Equal(got, want) {
		t.Fatalf("released %d plaintext bytes, want exactly the %d bytes of %d authenticated segment(s)", len(got), len(want), wantSegs)
	}
}

func TestStreamTamper(t *testing.T) {
	const S = DefaultSegmentSize
	const H, C = streamHeaderSize, S + gcmTagSize
	key, aad := testKey(6), []byte("patient-7/imaging/v3")
	pt := pattern(3*S + S/2) // segments 0,1,2 full; 3 final and half full
	ct := mustEncrypt(t, key, aad, pt, S, fixedSalt)
	other := mustEncrypt(t, key, aad, pt, S, bytes.Repeat([]byte{0x77}, streamSaltSize))
	seg := func(c []byte, i int) []byte { return c[H+i*C : min(len(c), H+(i+1)*C)] }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	flip := func(i int) func([]byte) []byte {
		return func(c []byte) []byte { c[i] ^= 0x01; return c }
	}
	hdr := ct[:H]

	for _, tc := range []struct {
		name     string
		mutate   func([]byte) []byte
		key, aad []byte // override
		wantSegs int
		also     []error
	}{
		{name: "flip magic", mutate: flip(0), also: []error{ErrBadFormat}},
		{name: "flip version", mutate: flip(4), also: []error{ErrUnsupportedVersion}},
		{name: "flip segment size", mutate: flip(8)},
		{name: "segment size above max", mutate: func(c []byte) []byte { c[5] = 0xff; return c }, also: []error{ErrBadFormat}},
		{name: "segment size zero", mutate: func(c []byte) []byte { clear(c[5:9]); return c }, also: []error{ErrBadFormat}},
		{name: "flip salt", mutate: flip(9)},
		{name: "header of another file", mutate: func(c []byte) []byte { copy(c, other[:H]); return c }},
		{name: "flip first segment body", mutate: flip(H)},
		{name: "flip first segment tag", mutate: flip(H + C - 1)},
		{name: "flip middle segment", mutate: flip(H + C + 100), wantSegs: 1},
		{name: "flip final segment body", mutate: flip(H + 3*C), wantSegs: 3},
		{name: "flip final tag", mutate: flip(len(ct) - 1), wantSegs: 3},
		{name: "empty input", mutate: func([]byte) []byte { return nil }, also: []error{ErrBadFormat}},
		{name: "truncate mid header", mutate: func(c []byte) []byte { return c[:10] }, also: []error{ErrBadFormat}},
		{name: "truncate to header", mutate: func(c []byte) []byte { return c[:H] }},
		{name: "truncate at boundary 1", mutate: func(c []byte) []byte { return c[:H+C] }},
		{name: "truncate at boundary 2", mutate: func(c []byte) []byte { return c[:H+2*C] }, wantSegs: 1},
		{name: "drop final segment", mutate: func(c []byte) []byte { return c[:H+3*C] }, wantSegs: 2},
		{name: "truncate mid segment", mutate: func(c []byte) []byte { return c[:H+C+100] }, wantSegs: 1},
		{name: "truncate inside a tag", mutate: func(c []byte) []byte { return c[:H+2*C-3] }, wantSegs: 1},
		{name: "truncate final tag", mutate: func(c []byte) []byte { return c[:len(c)-1] }, wantSegs: 3},
		{name: "reorder segments 0 and 1", mutate: func(c []byte) []byte {
			return cat(hdr, seg(c, 1), seg(c, 0), seg(c, 2), seg(c, 3))
		}},
		{name: "reorder segments 1 and 2", mutate: func(c []byte) []byte {
			return cat(hdr, seg(c, 0), seg(c, 2), seg(c, 1), seg(c, 3))
		}, wantSegs: 1},
		{name: "duplicate segment 1", mutate: func(c []byte) []byte {
			return cat(hdr, seg(c, 0), seg(c, 1), seg(c, 1), seg(c, 2), seg(c, 3))
		}, wantSegs: 2},
		{name: "final segment moved forward", mutate: func(c []byte) []byte {
			return cat(hdr, seg(c, 0), seg(c, 3))
		}, wantSegs: 1},
		{name: "segment spliced from another file", mutate: func(c []byte) []byte {
			return cat(hdr, seg(c, 0), seg(other, 1), seg(c, 2), seg(c, 3))
		}, wantSegs: 1},
		{name: "append one byte", mutate: func(c []byte) []byte { return cat(c, []byte{0}) }, wantSegs: 3},
		{name: "append a tag of garbage", mutate: func(c []byte) []byte { return cat(c, make([]byte, gcmTagSize)) }, wantSegs: 3},
		{name: "append a copy of segment 1", mutate: func(c []byte) []byte { return cat(c, seg(c, 1)) }, wantSegs: 3},
		{name: "append another file", mutate: func(c []byte) []byte { return cat(c, other) }, wantSegs: 3},
		{name: "wrong data key", key: testKey(7)},
		{name: "wrong aad", aad: []byte("patient-7/imaging/v4")},
		{name: "missing aad", aad: []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bytes.Clone(ct)
			if tc.mutate != nil {
				c = tc.mutate(c)
			}
			k, a := key, aad
			if tc.key != nil {
				k = tc.key
			}
			if tc.aad != nil {
				a = tc.aad
			}
			got, err := decryptAll(bytes.NewReader(c), k, a)
			checkPrefix(t, got, err, pt, S, tc.wantSegs, tc.also...)
		})
	}
}

// Exhaustive variant on small segments: every single-bit flip and every
// truncation of a 4-segment file must fail, releasing exactly the
// segments before the damage.
func TestStreamTamperExhaustive(t *testing.T) {
	const S = 16
	const H, C = streamHeaderSize, S + gcmTagSize
	key, aad := testKey(8), []byte("x")
	pt := pattern(3*S + S/2)
	ct := mustEncrypt(t, key, aad, pt, S, fixedSalt)
	if got, err := decryptAll(bytes.NewReader(ct), key, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("baseline: %v", err)
	}
	segOf := func(pos int) int {
		if pos < H {
			return 0
		}
		return (pos - H) / C
	}
	for bit := 0; bit < 8*len(ct); bit++ {
		c := bytes.Clone(ct)
		c[bit/8] ^= 1 << (bit % 8)
		got, err := decryptAll(bytes.NewReader(c), key, aad)
		t.Run(fmt.Sprintf("flip bit %d", bit), func(t *testing.T) {
			checkPrefix(t, got, err, pt, S, segOf(bit/8))
		})
	}
	for n := 0; n < len(ct); n++ {
		want := 0
		if n >= H {
			full, rem := (n-H)/C, (n-H)%C
			want = full
			if rem == 0 {
				want = max(full-1, 0)
			}
		}
		for _, src := range []io.Reader{bytes.NewReader(ct[:n]), iotest.OneByteReader(bytes.NewReader(ct[:n]))} {
			got, err := decryptAll(src, key, aad)
			t.Run(fmt.Sprintf("truncate to %d", n), func(t *testing.T) {
				checkPrefix(t, got, err, pt, S, want)
			})
		}
	}
}

// A file whose final segment is full is the case where the reader can only
// learn "final" from EOF: data after it must make that segment fail
// (it was sealed as final but is no longer last), whatever the data is.
func TestStreamTrailingDataAfterFullFinalSegment(t *testing.T) {
	const S = 16
	const C = S + gcmTagSize
	key := testKey(14)
	for _, segs := range []int{1, 2, 4} {
		pt := pattern(segs * S)
		ct := mustEncrypt(t, key, nil, pt, S, fixedSalt)
		empty := mustEncrypt(t, key, nil, nil, S, fixedSalt)
		for _, tail := range [][]byte{
			{0}, make([]byte, gcmTagSize), make([]byte, C), make([]byte, C+1),
			ct[streamHeaderSize : streamHeaderSize+C], // a copy of segment 0
			empty[streamHeaderSize:],                  // a valid empty final segment
			ct,                                        // a whole second file
		} {
			c := append(bytes.Clone(ct), tail...)
			for _, src := range []io.Reader{bytes.NewReader(c), iotest.OneByteReader(bytes.NewReader(c))} {
				got, err := decryptAll(src, key, nil)
				t.Run(fmt.Sprintf("%d segments + %d bytes", segs, len(tail)), func(t *testing.T) {
					checkPrefix(t, got, err, pt, S, segs-1)
				})
			}
		}
	}
}

// An empty final segment is only valid as the only segment.
func TestStreamRejectsEmptyFinalAfterData(t *testing.T) {
	const S = 16
	key := testKey(9)
	// Build "one non-final full segment + empty final segment" with the
	// package's own primitives: the writer never emits it, a reader must
	// still refuse it even though every tag is valid.
	header := encodeStreamHeader(S, fixedSalt)
	sc, err := newStreamCipher(key, header, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Clone(header)
	sc.set(0, false)
	out = sc.aead.Seal(out, sc.nonce[:], pattern(S), sc.aad)
	sc.set(1, true)
	out = sc.aead.Seal(out, sc.nonce[:], nil, sc.aad)
	got, err := decryptAll(bytes.NewReader(out), key, nil)
	checkPrefix(t, got, err, pattern(S), S, 1)
}

func TestStreamErrorIsSticky(t *testing.T) {
	key := testKey(10)
	ct := mustEncrypt(t, key, nil, pattern(100), 16, fixedSalt)
	ct[len(ct)-1] ^= 1
	r, err := NewDecryptReader(bytes.NewReader(ct), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, first := io.ReadAll(r)
	if !errors.Is(first, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", first)
	}
	for range 3 {
		if n, err := r.Read(make([]byte, 10)); n != 0 || err != first {
			t.Fatalf("Read after failure = %d, %v; want 0, the same error", n, err)
		}
	}
}

// A source's own failure is its error, not a corrupt ciphertext, wherever
// it strikes, the whole file read included; io.ErrUnexpectedEOF too, which
// net/http's bodies return for a connection dropped before Content-Length
// and io.ReadFull passes on as it is.
func TestStreamReaderPassesThroughIOErrors(t *testing.T) {
	key := testKey(11)
	ct := mustEncrypt(t, key, nil, pattern(1000), 64, fixedSalt)
	for _, boom := range []error{errors.New("network down"), io.ErrUnexpectedEOF} {
		for _, cut := range []int{0, 10, streamHeaderSize, streamHeaderSize + 50, streamHeaderSize + 80, len(ct) - 1, len(ct)} {
			src := io.MultiReader(bytes.NewReader(ct[:cut]), iotest.ErrReader(boom))
			_, err := decryptAll(src, key, nil)
			if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
				t.Errorf("%v after %d of %d bytes: got %v, want the source error and not ErrCorrupt", boom, cut, len(ct), err)
			}
		}
	}
}

// ----------------------------------------------------------------- writer ---

type failWriter struct {
	budget int
	short  bool
}

var errDisk = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.budget {
		if f.short {
			return f.budget, nil
		}
		return 0, errDisk
	}
	f.budget -= len(p)
	return len(p), nil
}

func TestEncryptWriterErrors(t *testing.T) {
	key := testKey(12)
	if _, err := NewEncryptWriter(io.Discard, key[:16], nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("16-byte data key: got %v, want ErrInvalidKey", err)
	}
	if _, err := NewDecryptReader(bytes.NewReader(nil), key[:31], nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("31-byte data key: got %v, want ErrInvalidKey", err)
	}
	if _, err := newEncryptWriter(io.Discard, key, nil, maxSegmentSize+1, fixedSalt); err == nil {
		t.Error("segment size above maximum accepted")
	}
	if _, err := NewEncryptWriter(&failWriter{budget: 3}, key, nil); !errors.Is(err, errDisk) {
		t.Errorf("header write failure: got %v", err)
	}

	// Destination fails after the header: the error surfaces and sticks.
	w, err := newEncryptWriter(&failWriter{budget: streamHeaderSize}, key, nil, 16, fixedSalt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pattern(40)); !errors.Is(err, errDisk) {
		t.Fatalf("Write: got %v, want disk error", err)
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, errDisk) {
		t.Fatalf("Write after failure: got %v", err)
	}
	if err := w.Close(); !errors.Is(err, errDisk) {
		t.Fatalf("Close after failure: got %v", err)
	}

	// A short write without error is an error too.
	w, _ = newEncryptWriter(&failWriter{budget: streamHeaderSize + 5, short: true}, key, nil, 16, fixedSalt)
	w.Write([]byte("abc"))
	if err := w.Close(); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write: got %v", err)
	}

	// Close is idempotent; Write after Close fails.
	w, _ = newEncryptWriter(io.Discard, key, nil, 16, fixedSalt)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// Forgetting Close must not produce a file that decrypts.
func TestStreamUnclosedWriterDoesNotDecrypt(t *testing.T) {
	key := testKey(13)
	for _, size := range []int{0, 10, 64, 200} {
		var buf bytes.Buffer
		w, _ := newEncryptWriter(&buf, key, nil, 64, fixedSalt)
		w.Write(pattern(size))
		if _, err := decryptAll(bytes.NewReader(buf.Bytes()), key, nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("size %d without Close: got %v, want ErrCorrupt", size, err)
		}
	}
}
