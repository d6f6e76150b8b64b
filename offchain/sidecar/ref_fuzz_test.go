package sidecar

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// FuzzParseBlobRef: a GET's query string is refused or read as exactly one
// record or share reference that its own encoding reads back the same; it
// never panics.
func FuzzParseBlobRef(f *testing.F) {
	pid := strings.Repeat("ab", patientIDSize)
	for _, seed := range []string{
		"record=" + pid + "/1",
		"share=" + pid + "/18446744073709551615",
		"record=" + pid + "/0",
		"record=" + pid + "/1&share=" + pid + "/1",
		"record=" + pid + "/1&record=" + pid + "/2",
		"record=" + pid[2:] + "/1",
		"record=" + pid,
		"share=%2F1",
		"other=1",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		ref, err := parseBlobRef(q)
		if err != nil {
			return
		}
		if len(ref.PatientID) != patientIDSize || ref.Sequence == 0 {
			t.Fatalf("%q read as %v", raw, ref)
		}
		back, err := url.ParseQuery(ref.query())
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseBlobRef(back)
		if err != nil || again.Share != ref.Share || again.Sequence != ref.Sequence || !bytes.Equal(again.PatientID, ref.PatientID) {
			t.Fatalf("%q: %v encodes as %q, read back as %v (%v)", raw, ref, ref.query(), again, err)
		}
	})
}

// FuzzDecodeRefIndexMeta: the reference index's cursor, a seed's progress
// and a scrub's, as read back from its database, are refused or decoded into
// values whose encoding is exactly the bytes read and whose height is one
// that is written (at least 1); neither decoder panics.
func FuzzDecodeRefIndexMeta(f *testing.F) {
	for _, seed := range [][]byte{
		refCursor{Height: 12, Time: time.Unix(1700000000, 5).UTC()}.encode(),
		seedProgress{Height: 40, After: "patient/ab/record/7"}.encode(),
		seedProgress{Height: 40, Done: true}.encode(),
		{0, 0, 0, 0, 0, 0, 0, 1, 2},
		seedProgress{Done: true}.encode(),
		refCursor{Height: -1}.encode(),
		(&scrubProgress{Start: blobstore.Key{Owner: blobstore.Owner{1}}, Done: blobstore.Key{Sum: blobstore.Sum{2}}, Wrapped: true}).encode(),
		(&scrubProgress{}).encode(),
		encodeRefSize(56000),
		{1, 2, 3},
		nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if cur, err := decodeRefCursor(v); err == nil {
			if back := cur.encode(); !bytes.Equal(back, v) || cur.Height < 1 {
				t.Fatalf("cursor %x decodes as %+v, which encodes as %x", v, cur, back)
			}
		}
		if prog, err := decodeSeedProgress(v); err == nil {
			if back := prog.encode(); !bytes.Equal(back, v) || prog.Height < 1 {
				t.Fatalf("seed progress %x decodes as %+v, which encodes as %x", v, prog, back)
			}
		}
		if prog, err := decodeScrubProgress(v); err == nil {
			if back := prog.encode(); !bytes.Equal(back, v) {
				t.Fatalf("scrub progress %x decodes as %+v, which encodes as %x", v, prog, back)
			}
		}
		if size := decodeRefSize(v); size != 0 && !bytes.Equal(encodeRefSize(size), v) {
			t.Fatalf("a blob entry %x reads as size %d, which encodes as %x", v, size, encodeRefSize(size))
		}
	})
}
