package blobstore

import (
	"regexp"
	"strings"
	"testing"
)

// keyPattern is the only form ParseKey reads: String's.
var keyPattern = regexp.MustCompile(`^[0-9a-f]{64}/[0-9a-f]{64}$`)

// FuzzParseKey: a stored object's name is refused with the zero key, or it
// is "<64 lowercase hex>/<64 lowercase hex>" and read as the key whose
// String is that very name.
func FuzzParseKey(f *testing.F) {
	owner := strings.Repeat("0a", 32)
	sum := strings.Repeat("f1", 32)
	for _, seed := range []string{
		owner + "/" + sum,
		strings.Repeat("0", 64) + "/" + strings.Repeat("0", 64),
		strings.ToUpper(owner) + "/" + sum,
		owner + "/" + strings.ToUpper(sum),
		owner + "/" + sum + "/",
		owner + "/" + sum + "/" + sum,
		owner + sum,
		owner[2:] + "/" + sum + "ab",
		"/" + sum,
		owner + "/",
		owner + "/" + sum[:63] + "g",
		owner + "/" + sum + ".tmp",
		owner + "/.tmp-" + sum[5:],
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			if k != (Key{}) {
				t.Fatalf("%q refused (%v) but read as %v", s, err, k)
			}
			if keyPattern.MatchString(s) {
				t.Fatalf("%q refused: %v", s, err)
			}
			return
		}
		if !keyPattern.MatchString(s) {
			t.Fatalf("%q accepted as %v", s, k)
		}
		if k.String() != s {
			t.Fatalf("%q read as %v", s, k)
		}
	})
}

// FuzzParseSum: a sha256 is refused with the zero sum, or it is 64 hex
// characters of any case and read as the sum whose (lowercase) String is
// those characters, lowercased.
func FuzzParseSum(f *testing.F) {
	for _, seed := range []string{
		strings.Repeat("ab", 32),
		strings.Repeat("AB", 32),
		strings.Repeat("aB", 32),
		strings.Repeat("0", 64),
		strings.Repeat("ab", 31) + "zz",
		"zz" + strings.Repeat("ab", 31),
		strings.Repeat("ab", 16) + "g" + strings.Repeat("ab", 15) + "a",
		strings.Repeat("ab", 33),
		strings.Repeat("ab", 31) + "a",
		strings.Repeat("ab", 31) + "é",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sum, err := ParseSum(s)
		isHex := len(s) == 64 && strings.Trim(s, "0123456789abcdefABCDEF") == ""
		if err != nil {
			if sum != (Sum{}) {
				t.Fatalf("%q refused (%v) but read as %v", s, err, sum)
			}
			if isHex {
				t.Fatalf("%q refused: %v", s, err)
			}
			return
		}
		if !isHex {
			t.Fatalf("%q accepted as %v", s, sum)
		}
		if sum.String() != strings.ToLower(s) {
			t.Fatalf("%q read as %v", s, sum)
		}
		if again, err := ParseSum(sum.String()); err != nil || again != sum {
			t.Fatalf("%v reads back as %v (%v)", sum, again, err)
		}
	})
}
