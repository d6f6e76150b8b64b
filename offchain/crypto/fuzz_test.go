package crypto

// Fuzz targets for every decoder. Seed corpora live in
// testdata/fuzz/<FuzzName>/ (Go's "go test fuzz v1" format) and were produced
// by testdata/gen_vectors.py with the fixed keys below: each corpus holds
// valid encodings under those keys (so the fuzzer starts on the success
// path) and the interesting failures (truncations, version bytes, bad sizes,
// bit flips). `go test` runs the seeds; `go test -fuzz=FuzzX` explores.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// Fixed keys of the fuzz targets; testdata/gen_vectors.py uses the same.
var (
	fuzzStreamKey    = seqBytes(0x00, 32)
	fuzzStreamAAD    = []byte("emrchain fuzz aad")
	fuzzKEK          = seqBytes(0x40, 32)
	fuzzWrapAAD      = FileKeyAAD([]byte("fuzz-patient"), "lab-results", 3)
	fuzzRecipientKey = seqBytes(0x80, 32)
	fuzzBinding      = EnvelopeBinding{PatientID: []byte("fuzz-patient"), Grantee: seqBytes(0xc0, 20), KeyVersion: 3}
)

func seqBytes(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func FuzzDecryptReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decryptAll(bytes.NewReader(data), fuzzStreamKey, fuzzStreamAAD)
		// Read boundaries of the source must not matter.
		got1, err1 := decryptAll(iotest.OneByteReader(bytes.NewReader(data)), fuzzStreamKey, fuzzStreamAAD)
		if !bytes.Equal(got, got1) || (err == nil) != (err1 == nil) {
			t.Fatalf("result depends on source read sizes: %d/%v vs %d/%v", len(got), err, len(got1), err1)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("failure %q does not match ErrCorrupt", err)
			}
			// Only whole, non-final (hence full) segments may precede an error.
			if len(data) >= streamHeaderSize {
				if s := int(binary.BigEndian.Uint32(data[5:9])); s > 0 && len(got)%s != 0 {
					t.Fatalf("released %d bytes, not a whole number of %d-byte segments", len(got), s)
				}
			} else if len(got) != 0 {
				t.Fatal("plaintext released without a header")
			}
			return
		}
		// Accepted: the input must be the one canonical encoding of its
		// plaintext under (key, salt, segment size, aad).
		seg := int(binary.BigEndian.Uint32(data[5:9]))
		re := mustEncrypt(t, fuzzStreamKey, fuzzStreamAAD, got, seg, data[9:25])
		if !bytes.Equal(re, data) {
			t.Fatalf("accepted a non-canonical ciphertext")
		}
		if int64(len(data)) != ciphertextSize(int64(len(got)), seg) {
			t.Fatalf("accepted %d bytes for %d bytes of plaintext", len(data), len(got))
		}
	})
}

func FuzzUnwrapKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := UnwrapKey(fuzzKEK, data, fuzzWrapAAD)
		if err != nil {
			if key != nil {
				t.Fatal("key returned with an error")
			}
			if !errors.Is(err, ErrBadFormat) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("unclassified error %q", err)
			}
			return
		}
		if len(key) != KeySize {
			t.Fatalf("unwrapped a %d-byte key", len(key))
		}
		re, err := wrapKey(fuzzKEK, key, fuzzWrapAAD, data[1:1+gcmNonceSize])
		if err != nil || !bytes.Equal(re, data) {
			t.Fatal("accepted a non-canonical wrapped key")
		}
		if _, err := UnwrapKey(fuzzKEK, data, FileKeyAAD([]byte("fuzz-patient"), "lab-results", 4)); !errors.Is(err, ErrDecrypt) {
			t.Fatal("wrapped key opened under another key version")
		}
	})
}

func FuzzOpenEnvelope(f *testing.F) {
	recipient, err := ParseEncryptionPrivateKey(fuzzRecipientKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kek, err := OpenEnvelope(recipient, data, fuzzBinding)
		if err != nil {
			if kek != nil {
				t.Fatal("KEK returned with an error")
			}
			if !errors.Is(err, ErrBadFormat) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("unclassified error %q", err)
			}
			return
		}
		if len(kek) != KeySize || len(data) != EnvelopeSize {
			t.Fatalf("opened a %d-byte envelope into a %d-byte KEK", len(data), len(kek))
		}
		for _, b := range []EnvelopeBinding{
			{PatientID: fuzzBinding.PatientID, Grantee: fuzzBinding.Grantee, KeyVersion: 4},
			{PatientID: []byte("other"), Grantee: fuzzBinding.Grantee, KeyVersion: 3},
			{PatientID: fuzzBinding.PatientID, Grantee: seqBytes(0xc1, 20), KeyVersion: 3},
		} {
			if _, err := OpenEnvelope(recipient, data, b); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("envelope opened under binding %+v", b)
			}
		}
	})
}

// The committed seed corpora must parse, and each must contain at least one
// input that decodes successfully and one that fails; otherwise the fuzzer
// would start blind (e.g. if the fixed keys above drifted from the seeds).
func TestFuzzSeedCorpora(t *testing.T) {
	recipient, _ := ParseEncryptionPrivateKey(fuzzRecipientKey)
	decoders := map[string]func([]byte) error{
		"FuzzDecryptReader": func(b []byte) error {
			_, err := decryptAll(bytes.NewReader(b), fuzzStreamKey, fuzzStreamAAD)
			return err
		},
		"FuzzUnwrapKey": func(b []byte) error {
			_, err := UnwrapKey(fuzzKEK, b, fuzzWrapAAD)
			return err
		},
		"FuzzOpenEnvelope": func(b []byte) error {
			_, err := OpenEnvelope(recipient, b, fuzzBinding)
			return err
		},
		"FuzzOpenTransferKey": func(b []byte) error {
			_, err := OpenTransferKey(recipient, b, fuzzTransferContext)
			return err
		},
	}
	for name, decode := range decoders {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no seed corpus (%v)", name, err)
		}
		var ok, failed int
		for _, file := range files {
			data := readSeed(t, file)
			if decode(data) == nil {
				ok++
				if !strings.HasPrefix(filepath.Base(file), "valid") {
					t.Errorf("%s decodes but is not named valid*", file)
				}
			} else {
				failed++
				if strings.HasPrefix(filepath.Base(file), "valid") {
					t.Errorf("%s is named valid* but does not decode", file)
				}
			}
		}
		if ok == 0 || failed == 0 {
			t.Errorf("%s: %d seeds decode, %d fail; want both", name, ok, failed)
		}
	}
}

// readSeed parses a one-value "go test fuzz v1" file holding a []byte.
func readSeed(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("%s: not a one-value []byte corpus file", file)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return []byte(s)
}
