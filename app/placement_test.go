package app_test

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func sumOf(i int) []byte {
	s := sha256.Sum256([]byte(fmt.Sprint("blob ", i)))
	return s[:]
}

// TestCopyHolders: storage_copies of the named organizations keep each
// blob, the same ones every time, spread evenly; 0 (or all of them)
// means every one; naming another organization moves a blob only to it.
func TestCopyHolders(t *testing.T) {
	orgs := []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d", "hospital-e"}
	p := &emrv1.Params{StorageOrganizations: orgs}
	for _, k := range []uint32{0, 5} {
		p.StorageCopies = k
		if got := app.CopyHolders(p, sumOf(1)); !slices.Equal(got, orgs) {
			t.Fatalf("storage_copies %d: holders %v, want every organization", k, got)
		}
	}

	p.StorageCopies = 2
	const blobs = 1000
	held := map[string]int{}
	for i := range blobs {
		got := app.CopyHolders(p, sumOf(i))
		if len(got) != 2 || got[0] == got[1] || !slices.Contains(orgs, got[0]) || !slices.Contains(orgs, got[1]) {
			t.Fatalf("blob %d: holders %v, want two of %v", i, got, orgs)
		}
		if again := app.CopyHolders(p, sumOf(i)); !slices.Equal(again, got) {
			t.Fatalf("blob %d: holders %v, then %v", i, got, again)
		}
		for _, org := range orgs {
			if app.HoldsCopy(p, org, sumOf(i)) != slices.Contains(got, org) {
				t.Fatalf("blob %d: HoldsCopy(%s) disagrees with holders %v", i, org, got)
			}
		}
		for _, org := range got {
			held[org]++
		}
	}
	// Each organization's expected share is 2/5 of the blobs, 400 (a
	// binomial standard deviation of about 15).
	for _, org := range orgs {
		if n := held[org]; n < 320 || n > 480 {
			t.Errorf("%s keeps %d of %d blobs, want about 400", org, n, blobs)
		}
	}

	// A sixth organization named: each blob keeps its holders, or one of
	// them gives way to the newcomer.
	grown := &emrv1.Params{StorageOrganizations: append(slices.Clone(orgs), "hospital-f"), StorageCopies: 2}
	moved := 0
	for i := range blobs {
		before, after := app.CopyHolders(p, sumOf(i)), app.CopyHolders(grown, sumOf(i))
		for _, org := range after {
			if !slices.Contains(before, org) && org != "hospital-f" {
				t.Fatalf("blob %d moved from %v to %v: only the new organization may take it", i, before, after)
			}
		}
		if slices.Contains(after, "hospital-f") {
			moved++
		}
	}
	if moved < 250 || moved > 420 { // 2/6 of the blobs expected, 333
		t.Errorf("%d of %d blobs moved to the new organization, want about a third", moved, blobs)
	}
}

// TestStorageCopiesValidated: storage_copies may not exceed the
// organizations named.
func TestStorageCopiesValidated(t *testing.T) {
	p := app.DefaultGenesis().Params
	p.StorageOrganizations = []string{"hospital-a", "hospital-b"}
	for copies, ok := range map[uint32]bool{0: true, 1: true, 2: true, 3: false} {
		p.StorageCopies = copies
		if err := app.ValidateParams(p); (err == nil) != ok {
			t.Errorf("storage_copies %d of 2: %v", copies, err)
		}
	}
}
