package app_test

import (
	"testing"

	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestMembersFilterBound (from the review): a filtered Members page reads
// at most ten pages' worth (10 x params.max_page_size) of the index, as
// query.proto says, as Records does; it read (and proved) one more, the
// entry past the budget.
func TestMembersFilterBound(t *testing.T) {
	const pageSize = 2
	c, _ := membersChain(t, pageSize, 30, 0)
	var resp emrv1.QueryMembersResponse
	c.QueryProven("Members", &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, Role: emrv1.Role_ROLE_AUDITOR}, &resp)
	reads := 0
	for _, p := range resp.Proofs {
		if p.Key[0] == 0x04 {
			reads++
		}
	}
	if resp.Next == "" {
		t.Fatal("setup: the page did not end early")
	}
	if reads > 10*pageSize {
		t.Fatalf("a filtered page read and proved %d index entries; the documented bound is %d", reads, 10*pageSize)
	}
}
