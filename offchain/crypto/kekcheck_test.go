package crypto

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestKEKCheck: the check value is a fixed function of the KEK, the
// patient and the version (a known answer pins the encoding, which lives
// on chain), and changes with each of them.
func TestKEKCheck(t *testing.T) {
	kek, pid := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, 32)
	got := KEKCheck(kek, pid, 3)
	// HMAC-SHA256(01*32, "emrchain/v1/kek-check" 00000020 02*32
	// 0000000000000003)[:16], computed apart (Python's hmac).
	if want := "775dd453bc5997273a42511021fcfb53"; hex.EncodeToString(got) != want {
		t.Fatalf("KEKCheck = %x, want %s", got, want)
	}
	if len(got) != KEKCheckSize || !KEKMatches(kek, pid, 3, got) {
		t.Fatalf("KEKCheck = %x, does not match itself", got)
	}
	other := bytes.Repeat([]byte{9}, KeySize)
	for name, c := range map[string][]byte{
		"another KEK":     KEKCheck(other, pid, 3),
		"another patient": KEKCheck(kek, pid[:31], 3),
		"another version": KEKCheck(kek, pid, 4),
	} {
		if bytes.Equal(c, got) {
			t.Errorf("%s gives the same check value", name)
		}
	}
	if KEKMatches(other, pid, 3, got) || KEKMatches(kek, pid, 3, got[:8]) {
		t.Fatal("a check value matches another KEK, or a truncated one matches")
	}
}
