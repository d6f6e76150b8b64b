package app_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestBlobQueries covers the questions the blob sidecar asks: a member's
// last read of a record, and one share of a record with a study.
func TestBlobQueries(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	regA, regR := apptest.Registrar(apptest.HospitalA), apptest.Registrar(apptest.Research)
	doc, pi := apptest.NewActor("dr-blob"), apptest.NewActor("pi-blob")
	pat, pid := apptest.NewActor("patient-blob"), apptest.PatientID("patient-blob")
	c.Must(regA, apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	c.Must(regR, apptest.RegisterMember(pi, emrv1.Role_ROLE_RESEARCHER, apptest.Research))
	c.Must(regR, apptest.RegisterStudy("blob-study", pi))
	c.Must(pat, apptest.Enroll(pat))
	c.Must(pat, apptest.Grant(pid, doc, apptest.GrantSpec{
		Rights: []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_SHARE}, NotAfter: c.Now.Add(time.Hour), Study: "blob-study",
	}))
	c.Must(pat, apptest.AddRecord(pid, "imaging", "ct-scan"))

	lastAccess := func() (*emrv1.AccessEvent, error) {
		var resp emrv1.QueryLastAccessResponse
		err := c.TryQuery("LastAccess", &emrv1.QueryLastAccessRequest{PatientId: hexOf(pid), Sequence: 1, Accessor: hexOf(doc.Address)}, &resp)
		return resp.Event, err
	}
	if _, err := lastAccess(); app.CodeOf(err) != app.ErrNotFound.Code() {
		t.Fatalf("LastAccess before any read: %v", err)
	}
	c.Must(doc, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	first, err := lastAccess()
	if err != nil || first.Sequence != 1 {
		t.Fatalf("LastAccess after one read: %v %v", first, err)
	}
	c.Must(doc, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	second, err := lastAccess()
	if err != nil || second.Sequence != 2 || second.Height <= first.Height {
		t.Fatalf("LastAccess after a second read: %v %v", second, err)
	}
	// The index is the reader's own: another member's read of the record
	// (the owner's here) does not move it.
	c.Must(pat, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	if still, err := lastAccess(); err != nil || still.Sequence != 2 || !bytes.Equal(still.Accessor, doc.Address) {
		t.Fatalf("the clinician's LastAccess after the owner's read: %v %v", still, err)
	}

	share := apptest.Share(pid, 1, "blob-study", false)
	c.Must(doc, share)
	var got emrv1.QueryShareResponse
	c.Query("Share", &emrv1.QueryShareRequest{PatientId: hexOf(pid), Sequence: 1}, &got)
	if got.Share.GetStudyId() != "blob-study" || !bytes.Equal(got.Share.GetSharedSha256(), share.GetShareRecord().SharedSha256) {
		t.Fatalf("Share = %v", got.Share)
	}
	if err := c.TryQuery("Share", &emrv1.QueryShareRequest{PatientId: hexOf(pid), Sequence: 2}, &got); app.CodeOf(err) != app.ErrNotFound.Code() {
		t.Fatalf("a share that does not exist: %v", err)
	}
	if err := c.TryQuery("Share", &emrv1.QueryShareRequest{PatientId: "zz", Sequence: 1}, &got); app.CodeOf(err) != app.ErrInvalidQuery.Code() {
		t.Fatalf("bad patient id: %v", err)
	}
}

// TestQueryServiceMatchesABCI: the gRPC service answers exactly what the
// ABCI path answers, at the height asked for.
func TestQueryServiceMatchesABCI(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	pat, pid := apptest.NewActor("patient-svc"), apptest.PatientID("patient-svc")
	c.Must(pat, apptest.Enroll(pat))
	before := c.Height()
	c.Must(pat, apptest.AddRecord(pid, "imaging", "svc"))
	svc := app.NewQueryService(c.App)

	now, err := svc.Patient(context.Background(), &emrv1.QueryPatientRequest{PatientId: hexOf(pid)})
	if err != nil || now.Patient.RecordCount != 1 || now.Height != c.Height() {
		t.Fatalf("latest: %v %v", now, err)
	}
	then, err := svc.Patient(app.WithHeight(context.Background(), before), &emrv1.QueryPatientRequest{PatientId: hexOf(pid)})
	if err != nil || then.Patient.RecordCount != 0 || then.Height != before {
		t.Fatalf("at %d: %v %v", before, then, err)
	}
	var viaABCI emrv1.QueryPatientResponse
	c.Query("Patient", &emrv1.QueryPatientRequest{PatientId: hexOf(pid)}, &viaABCI)
	if !proto.Equal(&viaABCI, now) {
		t.Fatalf("gRPC %v, ABCI %v", now, &viaABCI)
	}
	if _, err := svc.Record(context.Background(), &emrv1.QueryRecordRequest{PatientId: hexOf(pid), Sequence: 9}); app.CodeOf(err) != app.ErrNotFound.Code() {
		t.Fatalf("missing record: %v", err)
	}
}

// TestGrantsPaged: a member's consents come in pages of at most limit, in
// patient id order, each exactly once, whoever granted them; next is the
// last patient id of a full page with more after it, and after may be any
// id, enrolled or not.
func TestGrantsPaged(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	doc := apptest.NewActor("dr-paged")
	c.Must(apptest.Registrar(apptest.HospitalA), apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	var want []string
	for i := range 7 {
		p := apptest.NewActor(fmt.Sprintf("paged-patient-%d", i))
		id := apptest.PatientID(p.Name)
		c.Must(p, apptest.Enroll(p))
		c.Must(p, apptest.Grant(id, doc, apptest.GrantSpec{Rights: []emrv1.Right{emrv1.Right_RIGHT_READ}, NotAfter: c.Now.Add(time.Hour)}))
		if i%3 == 0 {
			c.Must(p, apptest.Revoke(id, doc)) // revoked consents stay listed
		}
		want = append(want, hex.EncodeToString(id))
	}
	slices.Sort(want)
	page := func(after string, limit uint32) ([]string, string) {
		t.Helper()
		var resp emrv1.QueryGrantsResponse
		c.Query("Grants", &emrv1.QueryGrantsRequest{Grantee: hex.EncodeToString(doc.Address), After: after, Limit: limit}, &resp)
		var ids []string
		for _, p := range resp.Permissions {
			ids = append(ids, hex.EncodeToString(p.PatientId))
		}
		return ids, resp.Next
	}
	var got []string
	after, pages := "", 0
	for {
		ids, next := page(after, 3)
		if len(ids) > 3 {
			t.Fatalf("a page of %d, limit 3", len(ids))
		}
		got, pages = append(got, ids...), pages+1
		if next == "" {
			break
		}
		if next != ids[len(ids)-1] {
			t.Fatalf("next %s, want the page's last patient %s", next, ids[len(ids)-1])
		}
		after = next
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("paged Grants: %d pages of %v, want 3 pages of %v", pages, got, want)
	}
	if ids, next := page("", 7); !slices.Equal(ids, want) || next != "" {
		t.Fatalf("one page of 7: %v next %q", ids, next)
	}
	if ids, next := page("", 0); !slices.Equal(ids, want) || next != "" {
		t.Fatalf("the default page: %v next %q", ids, next)
	}
	// After an id between two listed ones (the first id, last byte + 1).
	between, _ := hex.DecodeString(want[0])
	between[len(between)-1]++
	if ids, _ := page(hex.EncodeToString(between), 0); !slices.Equal(ids, want[1:]) {
		t.Fatalf("after an unlisted id: %v, want %v", ids, want[1:])
	}
	if ids, next := page(want[6], 0); len(ids) != 0 || next != "" {
		t.Fatalf("after the last: %v next %q", ids, next)
	}
	for name, req := range map[string]*emrv1.QueryGrantsRequest{
		"after not hex":   {Grantee: hex.EncodeToString(doc.Address), After: "zz"},
		"after too short": {Grantee: hex.EncodeToString(doc.Address), After: want[0][:62]},
		"limit too large": {Grantee: hex.EncodeToString(doc.Address), Limit: app.DefaultParams().MaxPageSize + 1},
	} {
		if err := c.TryQuery("Grants", req, &emrv1.QueryGrantsResponse{}); app.CodeOf(err) != app.ErrInvalidQuery.Code() {
			t.Errorf("%s: %v, want an invalid query", name, err)
		}
	}
}

// TestBlobRefsPaged: BlobRefs lists every record's ciphertext, then every
// share's, each exactly once and under the category it is filed under (a
// share's: its record's) with its size, in pages of at most limit whose next is the last
// reference of a full page with more after it; a malformed after is
// refused.
func TestBlobRefsPaged(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	regA, regR := apptest.Registrar(apptest.HospitalA), apptest.Registrar(apptest.Research)
	doc, pi := apptest.NewActor("dr-refs"), apptest.NewActor("pi-refs")
	c.Must(regA, apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	c.Must(regR, apptest.RegisterMember(pi, emrv1.Role_ROLE_RESEARCHER, apptest.Research))
	c.Must(regR, apptest.RegisterStudy("refs-study", pi))
	type ref struct {
		name, patient, category, sum string
		size                         uint64
	}
	var records, shares []ref
	for i, categories := range [][]string{{"imaging", "lab-results"}, {"lab-results"}, {"imaging", "imaging", "lab-results"}} {
		p := apptest.NewActor(fmt.Sprintf("refs-patient-%d", i))
		id := apptest.PatientID(p.Name)
		c.Must(p, apptest.Enroll(p))
		c.Must(p, apptest.Grant(id, doc, apptest.GrantSpec{
			Rights: []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_SHARE}, NotAfter: c.Now.Add(time.Hour), Study: "refs-study",
		}))
		for j, cat := range categories {
			msg := apptest.AddRecord(id, cat, fmt.Sprintf("refs-%d-%d", i, j))
			c.Must(p, msg)
			records = append(records, ref{app.BlobRefName(app.BlobRefRecord, id, uint64(j+1)), hexOf(id), cat, hexOf(msg.GetAddRecord().CiphertextSha256), msg.GetAddRecord().Size})
		}
		if i != 1 {
			last := uint64(len(categories))
			msg := apptest.Share(id, last, "refs-study", i == 0)
			c.Must(doc, msg)
			shares = append(shares, ref{app.BlobRefName(app.BlobRefShare, id, 1), hexOf(id), categories[last-1], hexOf(msg.GetShareRecord().SharedSha256), msg.GetShareRecord().Size})
		}
	}
	byName := func(a, b ref) int { return strings.Compare(a.name, b.name) }
	slices.SortFunc(records, byName) // patient id, then sequence (single digits)
	slices.SortFunc(shares, byName)
	want := append(records, shares...)

	page := func(after string, limit uint32) ([]ref, string, error) {
		var resp emrv1.QueryBlobRefsResponse
		err := c.TryQuery("BlobRefs", &emrv1.QueryBlobRefsRequest{After: after, Limit: limit}, &resp)
		var refs []ref
		for _, r := range resp.Refs {
			refs = append(refs, ref{r.Ref, hexOf(r.PatientId), r.Category, hexOf(r.Sha256), r.Size})
		}
		return refs, resp.Next, err
	}
	for _, limit := range []uint32{1, 2, 3, uint32(len(want)), 0} {
		var got []ref
		after := ""
		for pages := 0; ; pages++ {
			refs, next, err := page(after, limit)
			if err != nil {
				t.Fatalf("limit %d, after %q: %v", limit, after, err)
			}
			if limit > 0 && len(refs) > int(limit) || pages > len(want) {
				t.Fatalf("limit %d: a page of %d, or page %d", limit, len(refs), pages)
			}
			got = append(got, refs...)
			if next == "" {
				break
			}
			if len(refs) == 0 || next != refs[len(refs)-1].name {
				t.Fatalf("limit %d: next %q, want the page's last reference of %v", limit, next, refs)
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: listed\n%v\nwant\n%v", limit, got, want)
		}
	}

	// A page that ends exactly at the end of the list has no next.
	if refs, next, err := page("", uint32(len(want))); err != nil || len(refs) != len(want) || next != "" {
		t.Fatalf("one full page of all %d: %d refs, next %q, %v", len(want), len(refs), next, err)
	}
	if refs, next, err := page(records[len(records)-2].name, 1); err != nil || len(refs) != 1 || next != records[len(records)-1].name {
		t.Fatalf("a full page with shares after it: %v, next %q, %v", refs, next, err)
	}

	// After any record, enrolled or not, the list goes on in key order.
	if refs, _, err := page(app.BlobRefName(app.BlobRefRecord, bytes.Repeat([]byte{0xff}, 32), 1), 0); err != nil || !slices.Equal(refs, shares) {
		t.Fatalf("after the last possible record: %v %v", refs, err)
	}
	if refs, next, err := page(shares[len(shares)-1].name, 0); err != nil || len(refs) != 0 || next != "" {
		t.Fatalf("after the last share: %v %q %v", refs, next, err)
	}
	pid := records[0].patient
	for _, after := range []string{
		"record", "record/" + pid, "record/" + pid + "/", "record/" + pid + "/0", "record/" + pid + "/01", "record/" + pid + "/+1",
		"record/" + pid + "/1/2", "Record/" + pid + "/1", "access/" + pid + "/1", "share/" + strings.ToUpper(pid) + "/1",
		"share/" + pid[:62] + "/1", "share/" + pid[:62] + "zz/1", "record/" + pid + "/18446744073709551616",
	} {
		if _, _, err := page(after, 0); app.CodeOf(err) != app.ErrInvalidQuery.Code() {
			t.Errorf("after %q: %v, want an invalid query", after, err)
		}
	}
	var params emrv1.QueryParamsResponse
	c.Query("Params", &emrv1.QueryParamsRequest{}, &params)
	if _, _, err := page("", params.Params.MaxPageSize+1); app.CodeOf(err) != app.ErrInvalidQuery.Code() {
		t.Errorf("a page above max_page_size: %v", err)
	}
}
