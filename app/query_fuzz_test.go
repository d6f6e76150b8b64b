package app_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// queryChain is a small committed chain for FuzzQuery: a clinician, a
// researcher, a study, a patient with a grant, three records, a read and a
// share, an emergency service the patient opted in to and an emergency
// read of the three records, with a page size of 2 so that paging matters;
// roots holds the AppHash of every height.
type queryChain struct {
	c     *apptest.Chain
	roots map[int64][]byte
	pid   []byte
	doc   *apptest.Actor
	er    *apptest.Actor // the emergency service
}

func newQueryChain(tb testing.TB) *queryChain {
	g := apptest.Consortium()
	g.Params.MaxPageSize = 2
	c := apptest.New(tb, apptest.Options{Genesis: g})
	q := &queryChain{c: c, roots: map[int64][]byte{c.Height(): c.AppHash()}}
	regA, regR := apptest.Registrar(apptest.HospitalA), apptest.Registrar(apptest.Research)
	doc, pi := apptest.NewActor("dr-fuzz"), apptest.NewActor("pi-fuzz")
	pat, pid := apptest.NewActor("patient-fuzz"), apptest.PatientID("patient-fuzz")
	er := apptest.NewActor("er-fuzz")
	q.pid, q.doc, q.er = pid, doc, er
	for _, step := range []struct {
		by  *apptest.Actor
		msg *emrv1.Msg
	}{
		{regA, apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)},
		{regR, apptest.RegisterMember(pi, emrv1.Role_ROLE_RESEARCHER, apptest.Research)},
		{regR, apptest.RegisterStudy("fuzz-study", pi)},
		{pat, apptest.Enroll(pat)},
		{pat, apptest.Grant(pid, doc, apptest.GrantSpec{
			Rights: []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_SHARE}, NotAfter: apptest.GenesisTime.Add(time.Hour), Study: "fuzz-study",
		})},
		{pat, apptest.AddRecord(pid, "imaging", "fuzz-1")},
		{pat, apptest.AddRecord(pid, "lab-results", "fuzz-2")},
		{pat, apptest.AddRecord(pid, "imaging", "fuzz-3")},
		{doc, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1, 3)},
		{doc, apptest.Share(pid, 1, "fuzz-study", true)},
		{regA, apptest.RegisterMember(er, emrv1.Role_ROLE_EMERGENCY_SERVICE, apptest.HospitalA)},
		{pat, apptest.Grant(pid, er, apptest.GrantSpec{Rights: []emrv1.Right{emrv1.Right_RIGHT_EMERGENCY}, NotAfter: apptest.GenesisTime.Add(time.Hour)})},
		{doc, apptest.EmergencyAccess(pid, er, 1, 2, 3)},
	} {
		c.Must(step.by, step.msg)
		q.roots[c.Height()] = c.AppHash()
	}
	return q
}

// querySeed is one ABCI query.
type querySeed struct {
	path   string
	data   []byte
	height int64
	prove  bool
}

// querySeeds is a valid request for every method of the Query service
// (about the chain's objects, at the last height and proven, and at
// height 2 unproven), raw key reads, and a few malformed queries.
func querySeeds(q *queryChain) map[string]querySeed {
	pid, doc := hexOf(q.pid), hexOf(q.doc.Address)
	reqs := map[string]proto.Message{
		"Params":         &emrv1.QueryParamsRequest{},
		"Organization":   &emrv1.QueryOrganizationRequest{Id: apptest.HospitalA},
		"Member":         &emrv1.QueryMemberRequest{Address: doc},
		"Organizations":  &emrv1.QueryOrganizationsRequest{After: apptest.HospitalA, Limit: 1},
		"Members":        &emrv1.QueryMembersRequest{Organization: apptest.HospitalA, Role: emrv1.Role_ROLE_CLINICIAN, Limit: 2},
		"Account":        &emrv1.QueryAccountRequest{Address: "0x" + strings.ToUpper(doc)},
		"Patient":        &emrv1.QueryPatientRequest{PatientId: pid},
		"PatientByOwner": &emrv1.QueryPatientByOwnerRequest{Owner: hexOf(apptest.NewActor("patient-fuzz").Address)},
		"Permissions":    &emrv1.QueryPermissionsRequest{PatientId: pid},
		"Permission":     &emrv1.QueryPermissionRequest{PatientId: pid, Grantee: doc},
		"Grants":         &emrv1.QueryGrantsRequest{Grantee: doc, Limit: 1, After: strings.Repeat("00", 32)},
		"Records":        &emrv1.QueryRecordsRequest{PatientId: pid, Category: "imaging", Page: &emrv1.PageRequest{After: 1, Limit: 2}},
		"Record":         &emrv1.QueryRecordRequest{PatientId: pid, Sequence: 2},
		"Share":          &emrv1.QueryShareRequest{PatientId: pid, Sequence: 1},
		"AccessEvents":   &emrv1.QueryAccessEventsRequest{PatientId: pid, Page: &emrv1.PageRequest{After: 2}},
		"Shares":         &emrv1.QuerySharesRequest{PatientId: pid, Page: &emrv1.PageRequest{After: ^uint64(0)}},
		"Study":          &emrv1.QueryStudyRequest{Id: "fuzz-study"},
		"StudyShares":    &emrv1.QueryStudySharesRequest{StudyId: "fuzz-study", Page: &emrv1.PageRequest{After: 0, Limit: 1}},
		"LastAccess":     &emrv1.QueryLastAccessRequest{PatientId: pid, Sequence: 3, Accessor: doc},
		"BlobRefs":       &emrv1.QueryBlobRefsRequest{After: app.BlobRefName(app.BlobRefRecord, q.pid, 2), Limit: 2},
		"ValidatorKey":   &emrv1.QueryValidatorKeyRequest{PubKey: apptest.Validator(0).SignPub()},
		"BreakGlassLog":  &emrv1.QueryBreakGlassLogRequest{Service: hexOf(q.er.Address), Page: &emrv1.PageRequest{After: 1, Limit: 2}},
	}
	seeds := map[string]querySeed{}
	for method, req := range reqs {
		data, err := proto.Marshal(req)
		if err != nil {
			panic(err)
		}
		seeds[method] = querySeed{app.QueryPathPrefix + method, data, 0, true}
		seeds[method+"-old"] = querySeed{app.QueryPathPrefix + method, data, 2, false}
	}
	// The keys a proven Records query read: raw reads of present keys.
	var records emrv1.QueryRecordsResponse
	out, _, err := q.c.App.Query(app.QueryPathPrefix+"Records", seeds["Records"].data, 0, true)
	if err != nil || proto.Unmarshal(out, &records) != nil || len(records.Proofs) == 0 {
		panic("no proven Records query for the seeds")
	}
	seeds["raw-key"] = querySeed{app.RawKeyPath, records.Proofs[0].Key, 0, false}
	seeds["raw-key-old"] = querySeed{app.RawKeyPath, records.Proofs[len(records.Proofs)-1].Key, 3, true}
	seeds["raw-absent-key"] = querySeed{app.RawKeyPath, []byte("no such key"), 0, true}
	seeds["raw-empty-key"] = querySeed{app.RawKeyPath, nil, 0, false}
	seeds["unknown-method"] = querySeed{app.QueryPathPrefix + "Nope", nil, 0, false}
	seeds["prefix-only"] = querySeed{app.QueryPathPrefix, nil, 0, false}
	seeds["unknown-path"] = querySeed{"/p2p/filter/id/x", nil, 0, false}
	seeds["garbage-request"] = querySeed{app.QueryPathPrefix + "Member", []byte{0xff, 0xff}, 0, false}
	seeds["future-height"] = querySeed{app.QueryPathPrefix + "Params", nil, 1 << 40, false}
	seeds["negative-height"] = querySeed{app.QueryPathPrefix + "Params", nil, -1, true}
	seeds["long-method"] = querySeed{app.QueryPathPrefix + strings.Repeat("\x01", 300), nil, 0, false}
	return seeds
}

// queryService is the Query service's descriptor: the response type of
// each method.
func queryService(tb testing.TB) protoreflect.ServiceDescriptor {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName("emrchain.v1.Query")
	if err != nil {
		tb.Fatal(err)
	}
	return d.(protoreflect.ServiceDescriptor)
}

// maxQueryError bounds a query error's size, as in
// TestQueryErrorsDoNotEchoHugeInput.
const maxQueryError = 1024

// FuzzQuery sends arbitrary ABCI queries (path, data, height, prove: all
// chosen by any RPC caller) to a small committed chain. Never a panic; an
// error is an invalid query or a not found, of bounded size, with no
// value; an answer is at the height asked for (the last for 0), the same
// every time, and for a Query service method the canonical encoding of
// that method's response, carrying its height and, with prove only,
// proofs that verify against that height's AppHash; a raw key read
// answers the value QueryKey proves there.
func FuzzQuery(f *testing.F) {
	q := newQueryChain(f)
	for _, s := range querySeeds(q) {
		f.Add(s.path, s.data, s.height, s.prove)
	}
	svc := queryService(f)
	last := q.c.Height()
	f.Fuzz(func(t *testing.T, path string, data []byte, height int64, prove bool) {
		out, h, err := q.c.App.Query(path, data, height, prove)
		if err != nil {
			code := app.CodeOf(err)
			if code != app.ErrInvalidQuery.Code() && code != app.ErrNotFound.Code() && code != app.ErrHeightNotCommitted.Code() {
				t.Fatalf("query error with code %d: %v", code, err)
			}
			// A height above the last is code 26, for a path that names
			// something (an unknown one is an invalid query first).
			method, isService := strings.CutPrefix(path, app.QueryPathPrefix)
			named := (path == app.RawKeyPath && len(data) > 0) || (isService && svc.Methods().ByName(protoreflect.Name(method)) != nil)
			if code == app.ErrHeightNotCommitted.Code() && height <= last || named && height > last && code != app.ErrHeightNotCommitted.Code() {
				t.Fatalf("height %d of a chain at %d: code %d: %v", height, last, code, err)
			}
			if out != nil {
				t.Fatalf("an error and a value: %v", err)
			}
			if n := len(err.Error()); n > maxQueryError {
				t.Fatalf("a query error of %d bytes (path of %d, data of %d)", n, len(path), len(data))
			}
			return
		}
		want := height
		if height == 0 {
			want = last
		}
		if h != want || q.roots[h] == nil {
			t.Fatalf("answered at height %d, asked %d (last %d)", h, height, last)
		}
		again, h2, err := q.c.App.Query(path, data, height, prove)
		if err != nil || h2 != h || !bytes.Equal(again, out) {
			t.Fatalf("the same query answered differently: %v", err)
		}
		root := q.roots[h]
		if path == app.RawKeyPath {
			value, ops, ph, err := q.c.App.QueryKey(data, h, true)
			if err != nil || ph != h || !bytes.Equal(value, out) {
				t.Fatalf("raw read %x = %x, proven %x at %d: %v", data, out, value, ph, err)
			}
			verifyProof(t, root, data, value, ops)
			return
		}
		m := svc.Methods().ByName(protoreflect.Name(strings.TrimPrefix(path, app.QueryPathPrefix)))
		if m == nil {
			t.Fatalf("path %q answered: it names no method", path)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
		if err != nil {
			t.Fatal(err)
		}
		resp := mt.New()
		if err := proto.Unmarshal(out, resp.Interface()); err != nil {
			t.Fatalf("%s answered a value that does not decode: %v", m.Name(), err)
		}
		if canon, err := (proto.MarshalOptions{Deterministic: true}).Marshal(resp.Interface()); err != nil || !bytes.Equal(canon, out) {
			t.Fatalf("%s answered a non-canonical encoding: %v", m.Name(), err)
		}
		fields := resp.Descriptor().Fields()
		if got := resp.Get(fields.ByName("height")).Int(); got != h {
			t.Fatalf("%s response carries height %d, answered at %d", m.Name(), got, h)
		}
		proofs := resp.Get(fields.ByName("proofs")).List()
		if prove != (proofs.Len() > 0) {
			t.Fatalf("%s carries %d proofs, prove %v: want proofs exactly when asked", m.Name(), proofs.Len(), prove)
		}
		seen := map[string]bool{}
		for i := range proofs.Len() {
			p := proofs.Get(i).Message().Interface().(*emrv1.StoreProof)
			if seen[string(p.Key)] {
				t.Fatalf("%s proves key %x twice", m.Name(), p.Key)
			}
			seen[string(p.Key)] = true
			verifyProof(t, root, p.Key, p.Value, app.FromProofOps(p.Ops))
		}
	})
}

// verifyProof checks a proof of key's value (absence when empty)
// against root.
func verifyProof(t *testing.T, root, key, value []byte, proof *cmtcrypto.ProofOps) {
	t.Helper()
	var err error
	if len(value) == 0 {
		err = store.VerifyAbsence(root, key, proof)
	} else {
		err = store.VerifyMembership(root, key, value, proof)
	}
	if err != nil {
		t.Fatalf("proof of %x (value %x): %v", key, value, err)
	}
}
