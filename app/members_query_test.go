package app_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// membersChain is the test consortium with clinicians clinicians and
// auditors auditors in hospital A, one clinician in hospital B, and a
// page size of pageSize. It returns the addresses of each role in
// hospital A (the registrar's under ROLE_REGISTRAR).
func membersChain(t *testing.T, pageSize uint32, clinicians, auditors int) (*apptest.Chain, map[emrv1.Role][][]byte) {
	g := apptest.Consortium()
	g.Params.MaxPageSize = pageSize
	byRole := map[emrv1.Role][][]byte{emrv1.Role_ROLE_REGISTRAR: {apptest.Registrar(apptest.HospitalA).Address}}
	add := func(role emrv1.Role, n int) {
		for i := range n {
			a := apptest.NewActor(fmt.Sprintf("members-%s-%d", role, i))
			g.Members = append(g.Members, a.GenesisMember(role, apptest.HospitalA))
			byRole[role] = append(byRole[role], a.Address)
		}
	}
	add(emrv1.Role_ROLE_CLINICIAN, clinicians)
	add(emrv1.Role_ROLE_AUDITOR, auditors)
	g.Members = append(g.Members, apptest.NewActor("members-elsewhere").GenesisMember(emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB))
	c := apptest.New(t, apptest.Options{Genesis: g})
	for role := range byRole {
		slices.SortFunc(byRole[role], bytes.Compare)
	}
	if clinicians == 0 {
		return c, byRole
	}
	// A suspended member is still a member: it is listed.
	c.Must(apptest.Registrar(apptest.HospitalA), apptest.SetStatus(apptest.NewActor(fmt.Sprintf("members-%s-0", emrv1.Role_ROLE_CLINICIAN)), emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	return c, byRole
}

// allMembers pages through Members with req (its After set page by
// page), with proofs, checking that every page reads a bounded number of
// index entries (maxIndexReads) and moves on; it returns the members'
// addresses in the order listed.
func allMembers(t *testing.T, c *apptest.Chain, req *emrv1.QueryMembersRequest, maxIndexReads int) [][]byte {
	t.Helper()
	var got [][]byte
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("no end after %d pages", pages)
		}
		var resp emrv1.QueryMembersResponse
		c.QueryProven("Members", req, &resp)
		reads := 0
		for _, p := range resp.Proofs {
			if p.Key[0] == 0x04 { // the organization member index (store/README.md)
				reads++
			}
		}
		if reads > maxIndexReads {
			t.Fatalf("a page after %q read and proved %d index entries; want at most %d", req.After, reads, maxIndexReads)
		}
		for _, m := range resp.Members {
			if m.OrganizationId != req.Organization || req.Role != emrv1.Role_ROLE_UNSPECIFIED && m.Role != req.Role {
				t.Fatalf("a page of %s's %s members holds %X (%s, %s)", req.Organization, req.Role, m.Address, m.OrganizationId, m.Role)
			}
			got = append(got, m.Address)
		}
		if resp.Next == "" {
			return got
		}
		if resp.Next <= req.After {
			t.Fatalf("next %s does not move past %s", resp.Next, req.After)
		}
		req.After = resp.Next
	}
}

// TestMembersQuery: an organization's members are listed by address, of
// every status, each once and no one else's, page by page; a role filter
// keeps one role and still reads a bounded part of the index per page.
func TestMembersQuery(t *testing.T) {
	const pageSize = 2
	c, byRole := membersChain(t, pageSize, 30, 2)
	var all [][]byte
	for _, addrs := range byRole {
		all = append(all, addrs...)
	}
	slices.SortFunc(all, bytes.Compare)

	// Unfiltered: pages of the page size, one index entry read past it.
	got := allMembers(t, c, &emrv1.QueryMembersRequest{Organization: apptest.HospitalA}, pageSize+1)
	if !slices.EqualFunc(got, all, bytes.Equal) {
		t.Fatalf("listed %d members, want the %d of %s in address order", len(got), len(all), apptest.HospitalA)
	}
	var first emrv1.QueryMembersResponse
	c.Query("Members", &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, Limit: 1}, &first)
	if len(first.Members) != 1 || first.Next != hex.EncodeToString(all[0]) {
		t.Fatalf("a page of one: %d members, next %q", len(first.Members), first.Next)
	}
	var suspended int
	for _, m := range allPage(t, c, apptest.HospitalA) {
		if m.Status == emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED {
			suspended++
		}
	}
	if suspended != 1 {
		t.Fatalf("%d suspended members listed, want 1", suspended)
	}

	// Filtered: 2 auditors among 33 members, with a page size of 2, are
	// found within ten pages' worth of index entries per page (not one
	// read past it: from the review), and each is listed once.
	for _, role := range []emrv1.Role{emrv1.Role_ROLE_AUDITOR, emrv1.Role_ROLE_REGISTRAR, emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER} {
		got := allMembers(t, c, &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, Role: role}, 10*pageSize)
		if !slices.EqualFunc(got, byRole[role], bytes.Equal) {
			t.Errorf("role %s: listed %d members, want %d", role, len(got), len(byRole[role]))
		}
	}
}

// allPage is every member of org, read with the largest page the params
// allow, page by page.
func allPage(t *testing.T, c *apptest.Chain, org string) []*emrv1.Member {
	t.Helper()
	var out []*emrv1.Member
	req := &emrv1.QueryMembersRequest{Organization: org}
	for {
		var resp emrv1.QueryMembersResponse
		c.Query("Members", req, &resp)
		out = append(out, resp.Members...)
		if resp.Next == "" {
			return out
		}
		req.After = resp.Next
	}
}

// TestMembersQueryRefuses: what is not a question about an organization's
// members is refused, never answered with an empty list.
func TestMembersQueryRefuses(t *testing.T) {
	c, _ := membersChain(t, 2, 1, 0)
	for _, tc := range []struct {
		name string
		req  *emrv1.QueryMembersRequest
		code uint32
	}{
		{"no such organization", &emrv1.QueryMembersRequest{Organization: "no-such-org"}, app.ErrNotFound.Code()},
		{"no organization", &emrv1.QueryMembersRequest{}, app.ErrInvalidQuery.Code()},
		{"malformed organization", &emrv1.QueryMembersRequest{Organization: "Hospital A"}, app.ErrInvalidQuery.Code()},
		{"patients", &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, Role: emrv1.Role_ROLE_PATIENT}, app.ErrInvalidQuery.Code()},
		{"no such role", &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, Role: 99}, app.ErrInvalidQuery.Code()},
		{"malformed after", &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, After: "xyz"}, app.ErrInvalidQuery.Code()},
		{"page too large", &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, Limit: 3}, app.ErrInvalidQuery.Code()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.TryQuery("Members", tc.req, &emrv1.QueryMembersResponse{})
			if code := app.CodeOf(err); code != tc.code {
				t.Fatalf("code %d (%v), want %d", code, err, tc.code)
			}
		})
	}
}

// TestOrganizationsQuery: the organizations are listed by id, page by
// page, each once.
func TestOrganizationsQuery(t *testing.T) {
	c, _ := membersChain(t, 2, 0, 0)
	want := []string{apptest.HospitalA, apptest.HospitalB, apptest.Research}
	var got []string
	req := &emrv1.QueryOrganizationsRequest{Limit: 2}
	for pages := 0; ; pages++ {
		if pages > len(want) {
			t.Fatalf("no end after %d pages", pages)
		}
		var resp emrv1.QueryOrganizationsResponse
		c.QueryProven("Organizations", req, &resp)
		for _, o := range resp.Organizations {
			got = append(got, o.Id)
		}
		if resp.Next == "" {
			break
		}
		req.After = resp.Next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %q, want %q", got, want)
	}
	err := c.TryQuery("Organizations", &emrv1.QueryOrganizationsRequest{After: "Not An Id"}, &emrv1.QueryOrganizationsResponse{})
	if app.CodeOf(err) != app.ErrInvalidQuery.Code() {
		t.Fatalf("a malformed after: %v", err)
	}
}
