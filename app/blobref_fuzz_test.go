package app_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/app"
)

// FuzzParseBlobRef: a BlobRefs cursor (QueryBlobRefsRequest.after, outside
// input) is read only in its one canonical form: whatever ParseBlobRef
// accepts, BlobRefName writes back byte for byte, and every name
// BlobRefName writes parses back to what it was made of.
func FuzzParseBlobRef(f *testing.F) {
	id := bytes.Repeat([]byte{0xab}, app.PatientIDSize)
	for _, s := range []string{
		app.BlobRefName(app.BlobRefRecord, id, 1),
		app.BlobRefName(app.BlobRefShare, id, 18446744073709551615),
		"record/" + strings.Repeat("AB", app.PatientIDSize) + "/1",
		"record/" + strings.Repeat("ab", app.PatientIDSize) + "/01",
		"share//1", "", "record", "access/" + strings.Repeat("00", app.PatientIDSize) + "/1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kind, pid, seq, err := app.ParseBlobRef(s)
		if err != nil {
			if len(err.Error()) > maxQueryError { // it reaches the query's answer
				t.Fatalf("an error of %d bytes for %d bytes of input", len(err.Error()), len(s))
			}
			return
		}
		if got := app.BlobRefName(kind, pid, seq); got != s {
			t.Fatalf("%q parsed as (%s, %x, %d), which is named %q", s, kind, pid, seq, got)
		}
		k2, p2, s2, err := app.ParseBlobRef(app.BlobRefName(kind, pid, seq))
		if err != nil || k2 != kind || !bytes.Equal(p2, pid) || s2 != seq {
			t.Fatalf("round trip of %q: (%s, %x, %d), %v", s, k2, p2, s2, err)
		}
	})
}
