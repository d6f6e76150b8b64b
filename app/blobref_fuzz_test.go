package app_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/app"
)

// FuzzParseBlobRefCursor: a BlobRefs cursor (QueryBlobRefsRequest.after,
// outside input) is read only in its one canonical form: whatever
// ParseBlobRef accepts, BlobRefName writes back byte for byte.
func FuzzParseBlobRefCursor(f *testing.F) {
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
	})
}

// FuzzBlobRefNameParses: every name BlobRefName writes for a record or a
// share (a patient id, a sequence from 1) parses back to what it was made
// of.
func FuzzBlobRefNameParses(f *testing.F) {
	f.Add(false, bytes.Repeat([]byte{0xab}, app.PatientIDSize), uint64(1))
	f.Add(true, make([]byte, app.PatientIDSize), ^uint64(0))
	f.Fuzz(func(t *testing.T, share bool, id []byte, seq uint64) {
		if len(id) != app.PatientIDSize || seq == 0 {
			return
		}
		kind := app.BlobRefRecord
		if share {
			kind = app.BlobRefShare
		}
		name := app.BlobRefName(kind, id, seq)
		k, pid, s, err := app.ParseBlobRef(name)
		if err != nil || k != kind || !bytes.Equal(pid, id) || s != seq {
			t.Fatalf("%q parses as (%s, %x, %d), %v; made of (%s, %x, %d)", name, k, pid, s, err, kind, id, seq)
		}
	})
}
