package crypto

import (
	"bytes"
	"errors"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != KeySize || len(b) != KeySize {
		t.Fatalf("key sizes %d, %d; want %d", len(a), len(b), KeySize)
	}
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, KeySize)) {
		t.Fatal("GenerateKey is not random")
	}
}

func TestWrapKeyRoundTrip(t *testing.T) {
	kek, _ := GenerateKey()
	dk, _ := GenerateKey()
	aad := FileKeyAAD([]byte("patient-1"), "lab-results", 4)
	w1, err := WrapKey(kek, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := WrapKey(kek, dk, aad)
	if len(w1) != WrappedKeySize {
		t.Fatalf("wrapped key is %d bytes, want %d", len(w1), WrappedKeySize)
	}
	if bytes.Equal(w1, w2) {
		t.Fatal("two wraps of the same key are identical (nonce not random)")
	}
	for _, w := range [][]byte{w1, w2} {
		got, err := UnwrapKey(kek, w, aad)
		if err != nil || !bytes.Equal(got, dk) {
			t.Fatalf("UnwrapKey = %x, %v", got, err)
		}
	}
}

func TestUnwrapKeyRejects(t *testing.T) {
	kek, dk := testKey(0x21), testKey(0x22)
	pid := []byte("patient-1")
	aad := FileKeyAAD(pid, "lab-results", 4)
	wrapped, err := WrapKey(kek, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		kek     []byte
		wrapped []byte
		aad     []byte
		want    error
	}{
		{"wrong KEK", testKey(0x23), wrapped, aad, ErrDecrypt},
		{"wrong patient", kek, wrapped, FileKeyAAD([]byte("patient-2"), "lab-results", 4), ErrDecrypt},
		{"wrong category", kek, wrapped, FileKeyAAD(pid, "imaging", 4), ErrDecrypt},
		{"wrong key version", kek, wrapped, FileKeyAAD(pid, "lab-results", 5), ErrDecrypt},
		{"no aad", kek, wrapped, nil, ErrDecrypt},
		{"empty", kek, nil, aad, ErrBadFormat},
		{"truncated", kek, wrapped[:WrappedKeySize-1], aad, ErrBadFormat},
		{"only version", kek, wrapped[:1], aad, ErrBadFormat},
		{"extended", kek, append(bytes.Clone(wrapped), 0), aad, ErrBadFormat},
		{"version 2", kek, append([]byte{2}, wrapped[1:]...), aad, ErrUnsupportedVersion},
		{"short KEK", kek[:16], wrapped, aad, ErrInvalidKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnwrapKey(tc.kek, tc.wrapped, tc.aad)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("UnwrapKey = %x, %v; want error %v", got, err, tc.want)
			}
		})
	}
}

func TestUnwrapKeyBitFlips(t *testing.T) {
	kek, aad := testKey(0x24), []byte("aad")
	wrapped, _ := WrapKey(kek, testKey(0x25), aad)
	for bit := 0; bit < 8*len(wrapped); bit++ {
		w := bytes.Clone(wrapped)
		w[bit/8] ^= 1 << (bit % 8)
		want := ErrDecrypt
		if bit < 8 {
			want = ErrUnsupportedVersion
		}
		if _, err := UnwrapKey(kek, w, aad); !errors.Is(err, want) {
			t.Fatalf("bit %d flipped: got %v, want %v", bit, err, want)
		}
	}
}

func TestWrapKeyInvalidInput(t *testing.T) {
	if _, err := WrapKey(testKey(1)[:31], testKey(2), nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("31-byte KEK: got %v", err)
	}
	if _, err := WrapKey(testKey(1), testKey(2)[:16], nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("16-byte key: got %v", err)
	}
}

// FileKeyAAD must be injective: different (patient, category, version)
// triples, including ones whose concatenations collide, give different
// associated data, and it must not collide with the other labels.
func TestFileKeyAADInjective(t *testing.T) {
	type in struct {
		pid string
		cat string
		ver uint64
	}
	inputs := []in{
		{"ab", "c", 1}, {"a", "bc", 1}, {"abc", "", 1}, {"", "abc", 1},
		{"ab", "c", 2}, {"ab", "c", 1 << 32}, {"ab\x00\x00\x00\x01c", "", 1},
		{"p", "lab-results", 0}, {"p", "imaging", 0},
	}
	seen := map[string]in{}
	for _, x := range inputs {
		a := FileKeyAAD([]byte(x.pid), x.cat, x.ver)
		if !bytes.HasPrefix(a, []byte("emrchain/v1/file-key-aad")) {
			t.Fatalf("%v: missing domain label", x)
		}
		if prev, ok := seen[string(a)]; ok {
			t.Fatalf("FileKeyAAD collision: %v and %v", prev, x)
		}
		seen[string(a)] = x
	}
	// Deterministic.
	if !bytes.Equal(FileKeyAAD([]byte("p"), "c", 9), FileKeyAAD([]byte("p"), "c", 9)) {
		t.Fatal("FileKeyAAD is not deterministic")
	}
}
