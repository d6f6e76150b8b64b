package app_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestStorageServiceNeedsANamedOrganization: a copy of every patient's
// ciphertext is the consortium's decision, not one registrar's. A storage
// service is registered, or seated in the genesis, only for an
// organization params.storage_organizations names; and the list is
// checked like every param.
func TestStorageServiceNeedsANamedOrganization(t *testing.T) {
	g := apptest.Consortium()
	g.Params.StorageOrganizations = []string{apptest.HospitalB}
	c := apptest.New(t, apptest.Options{Genesis: g})
	res := c.Exec(apptest.Registrar(apptest.HospitalA), apptest.RegisterMember(apptest.NewActor("storage-a"), emrv1.Role_ROLE_STORAGE_SERVICE, apptest.HospitalA))
	if res.Code != app.ErrUnauthorized.Code() || !strings.Contains(res.Log, "may not have a storage service") {
		t.Fatalf("a storage service of an organization not named: code %d, %s", res.Code, res.Log)
	}
	c.Must(apptest.Registrar(apptest.HospitalB), apptest.RegisterMember(apptest.NewActor("storage-b"), emrv1.Role_ROLE_STORAGE_SERVICE, apptest.HospitalB))
	// Naming concerns storage services alone.
	c.Must(apptest.Registrar(apptest.HospitalA), apptest.RegisterMember(apptest.NewActor("clinician-a"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))

	seated := apptest.Consortium()
	storageA := apptest.NewActor("genesis-storage-a")
	seated.Members = append(seated.Members, &emrv1.GenesisMember{SignPubKey: storageA.SignPub(), EncPubKey: storageA.EncPub(),
		Role: emrv1.Role_ROLE_STORAGE_SERVICE, OrganizationId: apptest.HospitalA, CredentialRef: "sidecar"})
	if err := app.ValidateGenesis(seated); app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), "may not have a storage service") {
		t.Fatalf("a genesis storage service of an organization not named: %v", err)
	}
	seated.Params.StorageOrganizations = []string{apptest.HospitalA}
	if err := app.ValidateGenesis(seated); err != nil {
		t.Fatalf("a genesis storage service of a named organization: %v", err)
	}

	for _, bad := range []struct {
		orgs []string
		want string
	}{
		{[]string{apptest.HospitalA, apptest.HospitalA}, "listed twice"},
		{[]string{"Not An Id"}, "storage organization"},
		{make([]string, 65), "more than 64"},
	} {
		p := apptest.Consortium().Params
		p.StorageOrganizations = bad.orgs
		if err := app.ValidateParams(p); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("storage_organizations %q: %v, want %q", bad.orgs, err, bad.want)
		}
	}
}

// TestStorageOrganizationsAreMembers: params.storage_organizations names
// organizations that can run a storage service. A genesis may name only
// its own organizations, a params change may newly name only one that
// exists and has not retired, and a retiring organization is dropped from
// the list (storage_copies coming down with it), which overtakes a params
// proposal made before, as any params change does.
func TestStorageOrganizationsAreMembers(t *testing.T) {
	g := apptest.Consortium()
	g.Params.StorageOrganizations = []string{apptest.HospitalA, "hospital-nowhere"}
	if err := app.ValidateGenesis(g); app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), `params.storage_organizations names "hospital-nowhere"`) {
		t.Fatalf("a genesis naming an unknown storage organization: %v, want an invalid genesis", err)
	}
	g.Params.StorageOrganizations, g.Params.StorageCopies = []string{apptest.HospitalA, apptest.HospitalB}, 2
	w := newRuleWorld(t, apptest.Options{Genesis: g})
	c := w.c

	current, changes := paramsAndChanges(c)
	naming := func(orgs ...string) *emrv1.Params {
		p := proto.Clone(current).(*emrv1.Params)
		p.StorageOrganizations = orgs
		return p
	}
	ruleCheck(t, "an unknown organization named", c.Exec(w.regA, apptest.SetParams(naming(apptest.HospitalA, apptest.HospitalB, "hospital-nowhere"), changes)),
		app.ErrNotFound, `params.storage_organizations: not found: no organization "hospital-nowhere"`)
	// Open when hospital B retires: a change of the page size.
	smallPages := proto.Clone(current).(*emrv1.Params)
	smallPages.MaxPageSize = 50
	c.Must(w.regA, apptest.SetParams(smallPages, changes))
	open := ruleProposalsMade(c)

	c.Must(w.regA, apptest.RetireOrganization(apptest.HospitalB))
	retire := ruleProposalsMade(c)
	c.Must(w.regR, apptest.Approve(retire))
	c.Must(w.regB, apptest.Approve(retire))
	after, changesAfter := paramsAndChanges(c)
	if !slices.Equal(after.StorageOrganizations, []string{apptest.HospitalA}) || after.StorageCopies != 1 || changesAfter != changes+1 {
		t.Fatalf("after hospital B retired: storage organizations %q, %d copies, %d params changes; want [%s], 1, %d",
			after.StorageOrganizations, after.StorageCopies, changesAfter, apptest.HospitalA, changes+1)
	}
	if c.ConsensusUpdate != nil {
		t.Errorf("the retirement handed CometBFT %v: its limits did not change", c.ConsensusUpdate)
	}
	ruleCheck(t, "the params proposal made before", c.Exec(w.regR, apptest.Approve(open)), app.ErrProposalClosed, "the params were changed 1 times since this was proposed")
	ruleCheck(t, "the retired organization named again", c.Exec(w.regA, apptest.SetParams(naming(apptest.HospitalA, apptest.HospitalB), changesAfter)),
		app.ErrProposalClosed, `organization "hospital-b" was retired at height`)
	// Naming the research institute, a member, is a change like any.
	grown := proto.Clone(after).(*emrv1.Params)
	grown.StorageOrganizations = append(grown.StorageOrganizations, apptest.Research)
	c.Must(w.regA, apptest.SetParams(grown, changesAfter))
	c.Must(w.regR, apptest.Approve(ruleProposalsMade(c)))
	if got, _ := paramsAndChanges(c); !slices.Equal(got.StorageOrganizations, grown.StorageOrganizations) {
		t.Fatalf("after naming the research institute: %q", got.StorageOrganizations)
	}
}
