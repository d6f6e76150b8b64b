package crypto

import (
	"bytes"
	"io"
	"testing"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"64KiB", 64 << 10},
	{"1MiB", 1 << 20},
	{"64MiB", 64 << 20},
}

// writeN writes size bytes to w, from chunk, in len(chunk)-sized writes.
func writeN(b *testing.B, w io.Writer, chunk []byte, size int) {
	for size > 0 {
		n := min(size, len(chunk))
		if _, err := w.Write(chunk[:n]); err != nil {
			b.Fatal(err)
		}
		size -= n
	}
}

func BenchmarkEncrypt(b *testing.B) {
	key := testKey(0x51)
	chunk := pattern(1 << 20)
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			for b.Loop() {
				w, err := NewEncryptWriter(io.Discard, key, nil)
				if err != nil {
					b.Fatal(err)
				}
				writeN(b, w, chunk, bs.size)
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	key := testKey(0x52)
	chunk := pattern(1 << 20)
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			var buf bytes.Buffer
			w, _ := NewEncryptWriter(&buf, key, nil)
			writeN(b, w, chunk, bs.size)
			w.Close()
			ct := buf.Bytes()
			src := bytes.NewReader(ct)
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				src.Reset(ct)
				r, err := NewDecryptReader(src, key, nil)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, r); err != nil || n != int64(bs.size) {
					b.Fatal(n, err)
				}
			}
		})
	}
}

func BenchmarkWrapUnwrapKey(b *testing.B) {
	kek, dk := testKey(0x53), testKey(0x54)
	aad := FileKeyAAD([]byte("patient"), "imaging", 1)
	for b.Loop() {
		w, _ := WrapKey(kek, dk, aad)
		if _, err := UnwrapKey(kek, w, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealOpenEnvelope(b *testing.B) {
	recipient, _ := GenerateEncryptionKey()
	kek := testKey(0x55)
	binding := testBinding()
	for b.Loop() {
		e, _ := SealEnvelope(recipient.PublicKey(), kek, binding)
		if _, err := OpenEnvelope(recipient, e, binding); err != nil {
			b.Fatal(err)
		}
	}
}
