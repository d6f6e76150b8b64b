package app_test

import (
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestRewrapBelowTheRevocationFloor: after a revocation of a grantee whose
// envelope is of version k, min_key_version keeps record keys off the KEKs
// of versions k and k+1 (an attempt at the rotation to k+1 built before the
// revocation may have sealed it to the grantee: docs/decisions.md, "A
// revocation rotates the key to two versions past the grantee's
// envelope"). AddRecord was held to that floor and RotateKey's re-wrapped
// keys were not (the session-46 review): a rotation to k+1 could re-wrap
// every record's data key under a KEK the revoked grantee may hold,
// records under a version it never held among them (here record 1, under
// version 1, the clinician being granted at version 2), for good.
func TestRewrapBelowTheRevocationFloor(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	// Record 1 under version 1; a rotation to 2 that re-wraps nothing.
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.AddRecord(w.pid, ruleImaging, "before-the-grant"),
		apptest.RotateKey(w.pid, 2, nil, nil),
	)...))
	// The clinician is granted at version 2 (it never holds version 1),
	// then revoked: the floor is 4.
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{ruleLab}, NotAfter: w.year, KeyVersion: 2}),
		apptest.Revoke(w.pid, w.doc),
	)...))
	if p := rulePatient(c, w.pid); p.KeyVersion != 2 || p.MinKeyVersion != 4 {
		t.Fatalf("after the revocation: key version %d, floor %d; want 2 and 4", p.KeyVersion, p.MinKeyVersion)
	}
	// As AddRecord at version 3 is refused, so should a re-wrap under 3 be.
	ruleRun(t, c, c.Now, []ruleCase{
		{"add record at version 3, below the floor", w.pat, apptest.AddRecordAt(w.pid, ruleLab, "r", 3), app.ErrKeyVersion, nil},
	})
	rewrap := []*emrv1.RewrappedKey{{RecordSequence: 1, WrappedFileKey: []byte("fk-under-v3")}}
	ruleRun(t, c, c.Now, []ruleCase{
		{"rotation to 3, below the floor, re-wrapping record 1", w.pat, apptest.RotateKey(w.pid, 3, nil, rewrap), app.ErrKeyVersion, []string{"no record key is re-wrapped under version 3", "a revoked grantee may hold it"}},
		{"rotation to 3, below the floor, re-wrapping nothing", w.pat, apptest.RotateKey(w.pid, 3, nil, nil), nil, nil},
	})
	if r := ruleRecord(c, w.pid, 1); r.KeyVersion != 1 {
		t.Fatalf("record 1 after the refused re-wrap: key version %d, want 1", r.KeyVersion)
	}
}
