package app_test

import (
	"strings"
	"testing"

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
