package crypto

import (
	"bytes"
	"testing"
)

// TestLengthPrefixedBytes pins the encoding, and FileKeyAAD's (persistent:
// wrapped keys on chain are bound to it), to the bytes the documentation
// gives.
func TestLengthPrefixedBytes(t *testing.T) {
	if got, want := LengthPrefixed("L", []byte("ab"), nil, []byte("c")), []byte("L\x00\x00\x00\x02ab\x00\x00\x00\x00\x00\x00\x00\x01c"); !bytes.Equal(got, want) {
		t.Errorf("LengthPrefixed = %q, want %q", got, want)
	}
	if got, want := FileKeyAAD([]byte("pa"), "cat", 258), []byte("emrchain/v1/file-key-aad\x00\x00\x00\x02pa\x00\x00\x00\x03cat\x00\x00\x00\x00\x00\x00\x01\x02"); !bytes.Equal(got, want) {
		t.Errorf("FileKeyAAD = %q, want %q", got, want)
	}
}
