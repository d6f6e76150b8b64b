package client_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clienttest.Cleanup()
	os.Exit(code)
}

// world is a chain with a registrar, a clinician, a patient with a grant,
// three records and two reads.
type world struct {
	node      *clienttest.Node
	chainID   string
	trust     *client.TrustOptions
	registrar *keyring.Key
	clinician *keyring.Key
	patient   *keyring.Key
	patientID []byte
	// validator is the node's consensus key (its genesis validator).
	validator []byte
}

// kek is the patient's KEKFunc: like emrcli's, it makes a version's KEK
// once and hands out copies, which the caller may clear.
func (w *world) kek(v uint64) ([]byte, error) {
	k, ok := w.patient.KEKs[v]
	if !ok {
		var err error
		if k, err = crypto.GenerateKey(); err != nil {
			return nil, err
		}
		w.patient.KEKs[v] = k
	}
	return bytes.Clone(k), nil
}

// newClient is a verified client with an in-memory light store, talking to
// node (a URL: the node or a proxy) with node itself as witness.
func (w *world) newClient(t *testing.T, node string) (*client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return client.New(ctx, client.Config{Node: node, Verify: true, Trust: w.trust, Timeout: 10 * time.Second})
}

// rpc is an unverified CometBFT RPC client of w's node, for what a test
// reads of the chain beside the client under test.
func (w *world) rpc(t *testing.T) *rpchttp.HTTP {
	t.Helper()
	rpc, err := rpchttp.New(w.node.RPC)
	if err != nil {
		t.Fatal(err)
	}
	return rpc
}

func (w *world) mustClient(t *testing.T, node string) *client.Client {
	t.Helper()
	c, err := w.newClient(t, node)
	if err != nil {
		t.Fatalf("client.New(%s): %v", node, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mustSubmit submits msg signed by s through c and waits for it to
// commit, verified, without error.
func (w *world) mustSubmit(ctx context.Context, t *testing.T, c *client.Client, s client.Signer, msg *emrv1.Msg) *client.TxResult {
	t.Helper()
	res, err := c.Submit(ctx, s, msg)
	if err != nil {
		t.Fatalf("%s: %v", app.MsgName(msg), err)
	}
	if res.Height <= 0 || res.Code != 0 || !res.Verified {
		t.Fatalf("%s: result %+v", app.MsgName(msg), res)
	}
	return res
}

// runningWorld is setup for a test that runs emrchaind (skipped with
// -short), with a context that ends timeout after the setup.
func runningWorld(t *testing.T, timeout time.Duration) (*world, context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	w := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return w, ctx
}

// setup starts a node (emrchaind testnet's flags and initArgs) and the
// world of the client tests on it.
func setup(t *testing.T, initArgs ...string) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node := clienttest.StartNode(t, clienttest.NodeOptions{InitArgs: append([]string{
		"--org", "dev-hospital:Development Hospital:hospital", "--org", "dev-research:Research Institute:research",
		"--registrar", "dev-hospital:registrar", "--registrar", "dev-research:research-registrar",
	}, initArgs...)})
	chainID, trust := node.Trust(t, ctx)
	if chainID != node.ChainID || trust.Height != 1 {
		t.Fatalf("TrustFromGenesis = %q %+v", chainID, trust)
	}
	w := &world{node: node, chainID: chainID, trust: trust}
	doc, err := cmttypes.GenesisDocFromFile(node.Genesis)
	if err != nil || len(doc.Validators) != 1 {
		t.Fatalf("the node's genesis: %v", err)
	}
	w.validator = doc.Validators[0].PubKey.Bytes()
	raw, err := os.ReadFile(node.RegistrarKey)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(keyring.BackendTest, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.registrar, _, err = kr.ImportDev("", raw); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(filepath.Join(node.Home, "dev-keys", "research-registrar.json"))
	if err != nil {
		t.Fatal(err)
	}
	researchRegistrar, _, err := kr.ImportDev("", raw)
	if err != nil {
		t.Fatal(err)
	}
	researcher, _ := keyring.Generate("researcher")
	w.clinician, _ = keyring.Generate("clinician")
	w.patient, _ = keyring.Generate("patient")
	w.patient.KEKs = map[uint64][]byte{}
	identity, _ := client.IdentityFromNameAndBirth("Ada Lovelace", "1815-12-10")
	seed, _ := client.PatientSeed(w.patient.PatientSecret, identity)
	kek1, err := w.kek(1)
	if err != nil {
		t.Fatal(err)
	}
	enroll := client.EnrollPatientMsg(w.patient.PubKey(), w.patient.EncPubKey(), seed, kek1)
	w.patientID = enroll.GetEnrollPatient().PatientId

	c := w.mustClient(t, node.RPC)
	submit := func(s client.Signer, msg *emrv1.Msg) *client.TxResult {
		t.Helper()
		return w.mustSubmit(ctx, t, c, s, msg)
	}
	submit(w.registrar, &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
		SignPubKey: w.clinician.PubKey(), EncPubKey: w.clinician.EncPubKey(), Role: emrv1.Role_ROLE_CLINICIAN,
		OrganizationId: "dev-hospital", CredentialRef: "licence:GMC-1234",
	}}})
	submit(researchRegistrar, &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
		SignPubKey: researcher.PubKey(), EncPubKey: researcher.EncPubKey(), Role: emrv1.Role_ROLE_RESEARCHER,
		OrganizationId: "dev-research", CredentialRef: "orcid:0000-0002-1825-0097",
	}}})
	submit(researchRegistrar, &emrv1.Msg{Sum: &emrv1.Msg_RegisterStudy{RegisterStudy: &emrv1.MsgRegisterStudy{
		StudyId: worldStudy, Title: "Lab trends", PrincipalInvestigator: researcher.Address(), StudyPubKey: researcher.EncPubKey(),
	}}})
	submit(w.patient, enroll)
	// Two organizations: the proposal stays open with one approval.
	labRegistrar, _ := keyring.Generate("lab-registrar")
	submit(w.registrar, &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{Reason: "a lab joins",
		Change: &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddOrganization{AddOrganization: &emrv1.AddOrganization{
			Organization:        &emrv1.Organization{Id: "world-lab", Name: "World Lab", Kind: emrv1.OrganizationKind_ORGANIZATION_KIND_LAB},
			RegistrarSignPubKey: labRegistrar.PubKey(), RegistrarEncPubKey: labRegistrar.EncPubKey(),
		}}}}}})
	grant, err := c.GrantMsg(ctx, w.patientID, client.GrantSpec{
		Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE, emrv1.Right_RIGHT_SHARE},
		Categories: []string{"lab-results"}, NotAfter: time.Now().Add(365 * 24 * time.Hour), StudyID: worldStudy,
	}, w.kek)
	if err != nil {
		t.Fatal(err)
	}
	submit(w.patient, grant)
	kek, version, err := c.GranteeKEK(ctx, w.clinician.EncPrivKey(), w.patientID, w.clinician.Address())
	if err != nil || version != 1 || !bytes.Equal(kek, w.patient.KEKs[1]) {
		t.Fatalf("GranteeKEK = v%d, %v; want the patient's KEK v1", version, err)
	}
	for i, cat := range []string{"lab-results", "lab-results"} {
		sum := sha256.Sum256([]byte(fmt.Sprint("blob", i)))
		dk, _ := crypto.GenerateKey()
		msg, err := client.AddRecordMsg(w.patientID, client.RecordSpec{Category: cat, ObjectKey: fmt.Sprintf("blobs/%x", sum), SHA256: sum[:], Size: 100}, kek, version, dk)
		if err != nil {
			t.Fatal(err)
		}
		submit(w.clinician, msg)
	}
	// The patient adds one of another category.
	sum := sha256.Sum256([]byte("xray"))
	dk, _ := crypto.GenerateKey()
	msg, _ := client.AddRecordMsg(w.patientID, client.RecordSpec{Category: "imaging", ObjectKey: "blobs/xray", SHA256: sum[:], Size: 5000}, w.patient.KEKs[1], 1, dk)
	submit(w.patient, msg)
	submit(w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{PatientId: w.patientID, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}})
	submit(w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{PatientId: w.patientID, RecordSequences: []uint64{2, 1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}})
	// The clinician shares record 2 with the study (the chain's side of
	// it: the blob is not uploaded).
	shareKey, _ := crypto.GenerateKey()
	wrapped, err := crypto.SealEnvelope(researcher.EncPrivKey().PublicKey(), shareKey, client.StudyKeyBinding(w.patientID, worldStudy, 2))
	if err != nil {
		t.Fatal(err)
	}
	shared := sha256.Sum256([]byte("shared lab results"))
	submit(w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_ShareRecord{ShareRecord: &emrv1.MsgShareRecord{
		PatientId: w.patientID, RecordSequence: 2, StudyId: worldStudy, SharedSha256: shared[:],
		ObjectKey: fmt.Sprintf("shares/%x", shared), Size: 100, WrappedStudyKey: wrapped,
	}}})
	return w
}

// worldStudy is the world's study, with one share.
const worldStudy = "lab-trends"

func hexs(b []byte) string { return hex.EncodeToString(b) }

// queries is one request of every Query method, for the world, but
// EmergencyReads and BreakGlassLog (an emergency read has tests of its
// own: TestEmergencyRead in cmd/emrcli, testBreakGlassLog).
func (w *world) queries() []struct {
	method    string
	req, resp proto.Message
} {
	pid := hexs(w.patientID)
	return []struct {
		method    string
		req, resp proto.Message
	}{
		{"Params", &emrv1.QueryParamsRequest{}, &emrv1.QueryParamsResponse{}},
		{"Organization", &emrv1.QueryOrganizationRequest{Id: "dev-hospital"}, &emrv1.QueryOrganizationResponse{}},
		{"Organizations", &emrv1.QueryOrganizationsRequest{}, &emrv1.QueryOrganizationsResponse{}},
		{"Members", &emrv1.QueryMembersRequest{Organization: "dev-hospital"}, &emrv1.QueryMembersResponse{}},
		{"Member", &emrv1.QueryMemberRequest{Address: hexs(w.clinician.Address())}, &emrv1.QueryMemberResponse{}},
		{"Account", &emrv1.QueryAccountRequest{Address: hexs(w.clinician.Address())}, &emrv1.QueryAccountResponse{}},
		{"Patient", &emrv1.QueryPatientRequest{PatientId: pid}, &emrv1.QueryPatientResponse{}},
		{"PatientByOwner", &emrv1.QueryPatientByOwnerRequest{Owner: hexs(w.patient.Address())}, &emrv1.QueryPatientResponse{}},
		{"Permissions", &emrv1.QueryPermissionsRequest{PatientId: pid}, &emrv1.QueryPermissionsResponse{}},
		{"Permission", &emrv1.QueryPermissionRequest{PatientId: pid, Grantee: hexs(w.clinician.Address())}, &emrv1.QueryPermissionResponse{}},
		{"Grants", &emrv1.QueryGrantsRequest{Grantee: hexs(w.clinician.Address())}, &emrv1.QueryGrantsResponse{}},
		{"Records", &emrv1.QueryRecordsRequest{PatientId: pid}, &emrv1.QueryRecordsResponse{}},
		{"Record", &emrv1.QueryRecordRequest{PatientId: pid, Sequence: 2}, &emrv1.QueryRecordResponse{}},
		{"AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: pid}, &emrv1.QueryAccessEventsResponse{}},
		{"Shares", &emrv1.QuerySharesRequest{PatientId: pid}, &emrv1.QuerySharesResponse{}},
		{"Study", &emrv1.QueryStudyRequest{Id: worldStudy}, &emrv1.QueryStudyResponse{}},
		{"StudyShares", &emrv1.QueryStudySharesRequest{StudyId: worldStudy}, &emrv1.QueryStudySharesResponse{}},
		{"LastAccess", &emrv1.QueryLastAccessRequest{PatientId: pid, Sequence: 1, Accessor: hexs(w.clinician.Address())}, &emrv1.QueryLastAccessResponse{}},
		{"BlobRefs", &emrv1.QueryBlobRefsRequest{}, &emrv1.QueryBlobRefsResponse{}},
		{"Validators", &emrv1.QueryValidatorsRequest{}, &emrv1.QueryValidatorsResponse{}},
		{"ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: w.validator}, &emrv1.QueryValidatorKeyResponse{}},
		{"Proposal", &emrv1.QueryProposalRequest{Id: 1}, &emrv1.QueryProposalResponse{}},
		{"Proposals", &emrv1.QueryProposalsRequest{}, &emrv1.QueryProposalsResponse{}},
	}
}

func TestClientAgainstNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	start := time.Now()
	// The fork (same chain id, another validator) starts first, so it is
	// always ahead of the real chain and has every header the client asks.
	fork := clienttest.StartNode(t, clienttest.NodeOptions{})
	w := setup(t)
	t.Logf("setup (node, 9 verified txs) took %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	t.Run("VerifiedQueries", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		for _, q := range w.queries() {
			info, err := c.QueryInfo(ctx, q.method, q.req, q.resp)
			if err != nil {
				t.Fatalf("%s: %v", q.method, err)
			}
			if !info.Verified || info.Height <= 0 {
				t.Fatalf("%s: info %+v", q.method, info)
			}
		}
		var recs emrv1.QueryRecordsResponse
		if err := c.Query(ctx, "Records", &emrv1.QueryRecordsRequest{PatientId: hexs(w.patientID), Category: "lab-results"}, &recs); err != nil || len(recs.Records) != 2 {
			t.Fatalf("Records by category: %d records, %v", len(recs.Records), err)
		}
		if err := c.Query(ctx, "Records", &emrv1.QueryRecordsRequest{PatientId: hexs(w.patientID), Page: &emrv1.PageRequest{Limit: 1, After: 1}}, &recs); err != nil || len(recs.Records) != 1 || recs.Page.Next != 2 {
			t.Fatalf("Records page: %v %v", recs.Page, err)
		}
		var evs emrv1.QueryAccessEventsResponse
		if err := c.Query(ctx, "AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: hexs(w.patientID), Page: &emrv1.PageRequest{Limit: 2}}, &evs); err != nil || len(evs.Events) != 2 || evs.Page.Next != 2 {
			t.Fatalf("AccessEvents page: %v %v", evs.Page, err)
		}
		events, _, err := c.AllAccessEvents(ctx, w.patientID)
		if err != nil || len(events) != 3 || events[0].Sequence != 3 {
			t.Fatalf("AllAccessEvents: %d, %v", len(events), err)
		}
		// A verified "not found".
		_, err = c.Member(ctx, bytes.Repeat([]byte{0xab}, 20))
		var cerr *client.ChainError
		if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &cerr) {
			t.Fatalf("unknown member: %v, want a verified ErrNotFound", err)
		}
		// One consent by its key: the list's entry; none is a verified
		// "not found", which GranteeKEK reports as no permission.
		perms, _, err := c.Permissions(ctx, w.patientID)
		if err != nil || len(perms) != 1 {
			t.Fatalf("Permissions: %v, %v", perms, err)
		}
		perm, info, err := c.Permission(ctx, w.patientID, w.clinician.Address())
		if err != nil || !proto.Equal(perm, perms[0]) || !info.Verified {
			t.Fatalf("Permission of the clinician: %v, %+v, %v; want %v, verified", perm, info, err, perms[0])
		}
		if _, _, err := c.Permission(ctx, w.patientID, w.registrar.Address()); !errors.Is(err, client.ErrNotFound) || !errors.As(err, &cerr) {
			t.Fatalf("Permission of a member without consent: %v, want a verified ErrNotFound", err)
		}
		if _, _, err := c.GranteeKEK(ctx, w.registrar.EncPrivKey(), w.patientID, w.registrar.Address()); !errors.Is(err, app.ErrNoPermission) || !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("GranteeKEK without consent: %v, want ErrNoPermission", err)
		}
		// The grants of an address that is no member: a verified "not
		// found" (the member key proven absent), not an empty list.
		if _, _, err := c.AllGrants(ctx, bytes.Repeat([]byte{0xab}, 20)); !errors.Is(err, client.ErrNotFound) || !errors.As(err, &cerr) {
			t.Fatalf("grants of no member: %v, want a verified ErrNotFound", err)
		}
		// A verified invalid query.
		if err := c.Query(ctx, "Member", &emrv1.QueryMemberRequest{Address: "zz"}, &emrv1.QueryMemberResponse{}); !errors.Is(err, app.ErrInvalidQuery) {
			t.Fatalf("bad address: %v", err)
		}
		if err := c.Query(ctx, "Records", &emrv1.QueryRecordsRequest{PatientId: hexs(w.patientID), Category: "lab-result"}, &recs); !errors.Is(err, app.ErrInvalidQuery) {
			t.Fatalf("Records of a category params do not list: %v, want ErrInvalidQuery", err)
		}
		seq, err := c.Sequence(ctx, w.clinician.Address())
		if err != nil || seq != 5 {
			t.Fatalf("clinician sequence = %d, %v; want 5", seq, err)
		}
	})

	t.Run("UploaderSignature", func(t *testing.T) {
		// Records 1 and 2 were added by the clinician, 3 by the patient:
		// each one's signature verifies with its uploader's key, and a
		// record altered anywhere it is signed, or credited to another
		// member, is refused, also behind a genuine one in the same list.
		c := w.mustClient(t, w.node.RPC)
		for seq := uint64(1); seq <= 3; seq++ {
			rec, err := c.Record(ctx, w.patientID, seq)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CheckUploaderSignatures(ctx, []*emrv1.Record{rec}); err != nil {
				t.Fatalf("record %d as stored: %v", seq, err)
			}
		}
		rec, err := c.Record(ctx, w.patientID, 1)
		if err != nil {
			t.Fatal(err)
		}
		for name, alter := range map[string]func(r *emrv1.Record){
			"category":        func(r *emrv1.Record) { r.Category = "imaging" },
			"ciphertext hash": func(r *emrv1.Record) { r.CiphertextSha256 = bytes.Repeat([]byte{1}, 32) },
			"body hash":       func(r *emrv1.Record) { r.BodySha256 = bytes.Repeat([]byte{2}, 32) },
			"patient":         func(r *emrv1.Record) { r.PatientId = bytes.Repeat([]byte{3}, 32) },
			"uploader":        func(r *emrv1.Record) { r.Uploader = w.patient.Address() },
		} {
			forged := proto.Clone(rec).(*emrv1.Record)
			alter(forged)
			if err := c.CheckUploaderSignatures(ctx, []*emrv1.Record{rec, forged}); !errors.Is(err, client.ErrVerification) {
				t.Errorf("record 1 with another %s: %v, want ErrVerification", name, err)
			}
		}
	})

	t.Run("TxStatus", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		tx, err := c.SignTx(ctx, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
			PatientId: w.patientID, RecordSequences: []uint64{3}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}})
		if err != nil {
			t.Fatal(err)
		}
		// Record 3 is imaging, not granted: CheckTx refuses it.
		_, err = c.Broadcast(ctx, tx, true)
		if !errors.Is(err, client.ErrTxRejected) || !errors.Is(err, app.ErrCategoryNotGranted) {
			t.Fatalf("read of a non-granted category: %v", err)
		}
		if _, err := c.TxStatus(ctx, app.TxHash(tx)); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("status of a rejected tx: %v", err)
		}
		res, err := c.Submit(ctx, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
			PatientId: w.patientID, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}})
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.TxStatus(ctx, res.Hash)
		if err != nil || st.Height != res.Height || st.Code != 0 || !st.Verified {
			t.Fatalf("TxStatus = %+v, %v", st, err)
		}
	})

	t.Run("TrustRootFile", func(t *testing.T) {
		// A light store whose trust.json is gone is used again only with
		// the root it was verified from; trust.json is then rewritten.
		home := t.TempDir()
		open := func(trust *client.TrustOptions) (*client.Client, error) {
			return client.New(ctx, client.Config{Node: w.node.RPC, Verify: true, Trust: trust, Home: home, Timeout: 10 * time.Second})
		}
		c, err := open(w.trust)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Patient(ctx, w.patientID); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := os.Remove(filepath.Join(home, "trust.json")); err != nil {
			t.Fatal(err)
		}
		other := *w.trust
		other.Hash = bytes.Repeat([]byte{0xee}, 32)
		if _, err := open(&other); err == nil || !strings.Contains(err.Error(), "no trust root file") {
			t.Fatalf("another root over the orphaned store: %v, want a refusal", err)
		}
		c, err = open(w.trust)
		if err != nil {
			t.Fatalf("the store's own root: %v", err)
		}
		c.Close()
		if tr, err := client.ReadTrustRoot(home); err != nil || tr == nil || tr.Height != w.trust.Height {
			t.Fatalf("trust.json after reopening: %+v %v", tr, err)
		}
	})

	t.Run("ClockBehind", func(t *testing.T) {
		// emrcli runs on users' machines: a clock a few seconds slow
		// still verifies the newest header; one far behind is told so.
		for _, tc := range []struct {
			behind  time.Duration
			wantErr string
		}{
			{5 * time.Second, ""},
			{time.Minute, "is this computer's clock behind"},
		} {
			c := w.mustClient(t, w.node.RPC)
			client.SetClock(c, func() time.Time { return time.Now().Add(-tc.behind) })
			_, err := c.Patient(ctx, w.patientID)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("clock %s behind: %v", tc.behind, err)
			}
			if tc.wantErr != "" && (!errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("clock %s behind: %v, want ErrVerification saying %q", tc.behind, err, tc.wantErr)
			}
		}
	})

	// A clock past the trusting period of every header the client could
	// verify from: ErrTrustExpired, which says what to do.
	t.Run("TrustExpired", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		client.SetClock(c, func() time.Time { return time.Now().Add(client.DefaultTrustPeriod + time.Hour) })
		_, err := c.Patient(ctx, w.patientID)
		if !errors.Is(err, client.ErrTrustExpired) || !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), "light init --force") {
			t.Fatalf("a read with every trusted header expired: %v; want ErrTrustExpired (and ErrVerification) naming light init --force", err)
		}
	})

	t.Run("LyingNode", func(t *testing.T) { testLyingNode(t, w) })
	t.Run("LyingNodeEdges", func(t *testing.T) { testLyingNodeEdges(t, w) })
	t.Run("UnverifiedEmptyAnswer", func(t *testing.T) { testUnverifiedEmptyAnswer(t, w) })
	t.Run("NotCommittedWithinTimeout", func(t *testing.T) { testNotCommitted(t, w) })

	// An upload the chain would refuse (a category it does not know, a
	// file past max_blob_bytes) fails before the file is read or anything
	// stored: the sidecar here does not even exist.
	t.Run("UploadRefusedBeforeWork", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		p, err := c.Patient(ctx, w.patientID)
		if err != nil {
			t.Fatal(err)
		}
		kek, err := w.kek(p.KeyVersion)
		if err != nil {
			t.Fatal(err)
		}
		nowhere := client.TransferOptions{Sidecars: []string{"http://127.0.0.1:1"}}
		for _, tc := range []struct {
			category string
			size     int64
			want     error
		}{
			{"labs", 1, app.ErrUnknownCategory},
			{"lab-results", 1 << 50, app.ErrTooLarge},
		} {
			_, err := c.Upload(ctx, w.clinician, client.UploadRequest{PatientID: w.patientID, Category: tc.category,
				Source: strings.NewReader("x"), Size: tc.size, KEK: kek, KeyVersion: p.KeyVersion}, nowhere)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "nothing was uploaded") {
				t.Errorf("upload of %d bytes of %s: %v, want %v", tc.size, tc.category, err, tc.want)
			}
		}
	})
	t.Run("EncKeyNotRegistered", func(t *testing.T) { testEncKeyNotRegistered(t, w) })
	t.Run("RangeProofsAtOnce", func(t *testing.T) { testRangeProofsAtOnce(t, w) })
	t.Run("BreakGlassLog", func(t *testing.T) { testBreakGlassLog(t, w) })
	t.Run("Fork", func(t *testing.T) { testFork(t, w, fork) })

	// A copy of the patient's key whose KEK of the current version is not
	// the committed one (a rotation begun on another device that never
	// committed) neither grants nor uploads under it, and a grantee sealed
	// such a KEK is told so.
	t.Run("WrongKEK", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		stale, _ := crypto.GenerateKey()
		staleKEK := func(uint64) ([]byte, error) { return bytes.Clone(stale), nil }
		_, err := c.GrantMsg(ctx, w.patientID, client.GrantSpec{Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
			NotAfter: time.Now().Add(time.Hour)}, staleKEK)
		if !errors.Is(err, client.ErrWrongKEK) {
			t.Fatalf("grant under a KEK the chain did not commit: %v, want ErrWrongKEK", err)
		}
		_, err = c.Upload(ctx, w.patient, client.UploadRequest{PatientID: w.patientID, Category: "lab-results", Source: strings.NewReader("x"), Size: 1,
			KEK: stale, KeyVersion: 1}, client.TransferOptions{Sidecars: []string{"http://127.0.0.1:1"}})
		if !errors.Is(err, client.ErrWrongKEK) {
			t.Fatalf("upload under a KEK the chain did not commit: %v, want ErrWrongKEK", err)
		}
		if _, err := c.GrantMsg(ctx, w.patientID, client.GrantSpec{Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
			NotAfter: time.Now().Add(time.Hour)}, w.kek); err != nil {
			t.Fatalf("grant under the committed KEK: %v", err)
		}
		// A grant built by hand from the stale KEK: the chain cannot tell,
		// the grantee can.
		auditor, _ := keyring.Generate("wrong-kek-auditor")
		if _, err := c.Submit(ctx, w.registrar, &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
			SignPubKey: auditor.PubKey(), EncPubKey: auditor.EncPubKey(), Role: emrv1.Role_ROLE_CLINICIAN,
			OrganizationId: "dev-hospital", CredentialRef: "licence:wrong-kek",
		}}}); err != nil {
			t.Fatal(err)
		}
		m, err := c.Member(ctx, auditor.Address())
		if err != nil {
			t.Fatal(err)
		}
		env, err := client.SealKEK(m, w.patientID, 1, stale)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Submit(ctx, w.patient, &emrv1.Msg{Sum: &emrv1.Msg_Grant{Grant: &emrv1.MsgGrant{
			PatientId: w.patientID, Grantee: auditor.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
			NotAfter: timestamppb.New(time.Now().Add(time.Hour)), WrappedKek: env, KeyVersion: 1,
		}}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.GranteeKEK(ctx, auditor.EncPrivKey(), w.patientID, auditor.Address()); !errors.Is(err, client.ErrWrongKEK) {
			t.Fatalf("a grantee opening an envelope of a KEK the chain did not commit: %v, want ErrWrongKEK", err)
		}
		if kek, v, err := c.GranteeKEK(ctx, w.clinician.EncPrivKey(), w.patientID, w.clinician.Address()); err != nil || v != 1 || !bytes.Equal(kek, w.patient.KEKs[1]) {
			t.Fatalf("the clinician's envelope: v%d, %v", v, err)
		}
		// The world's later rotations seal to standing grants only.
		if _, err := c.Submit(ctx, w.patient, &emrv1.Msg{Sum: &emrv1.Msg_Revoke{Revoke: &emrv1.MsgRevoke{
			PatientId: w.patientID, Grantee: auditor.Address()}}}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RevokeAndRotate", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		res, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Two rotations: the clinician's envelope is of version 1, and the
		// KEK of version 2 may have been sealed to it by an attempt that
		// never committed (TestRevokeAfterDroppedRotation).
		if res.Revoke == nil || len(res.Rotations) != 2 || res.Rotations[1].NewVersion != 3 ||
			len(res.Rotations[0].Grantees) != 0 || len(res.Rotations[1].Grantees) != 0 {
			t.Fatalf("RevokeAndRotate = %+v", res)
		}
		p, err := c.Patient(ctx, w.patientID)
		if err != nil || p.KeyVersion != 3 {
			t.Fatalf("patient after rotation: %v %v", p, err)
		}
		_, err = c.Submit(ctx, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
			PatientId: w.patientID, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}})
		if !errors.Is(err, app.ErrPermissionRevoked) {
			t.Fatalf("read after revoke: %v", err)
		}
		// Run again: nothing left to do.
		again, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
		if err != nil || again.Revoke != nil || again.LastRotation() != nil {
			t.Fatalf("second RevokeAndRotate = %+v, %v", again, err)
		}
	})

	// Two more patients grant to the clinician: its consents, the revoked
	// one included, come in verified pages of one, and AllGrants pages
	// through them.
	t.Run("GrantsPaged", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		want := []string{hexs(w.patientID)}
		for _, name := range []string{"patient-2", "patient-3"} {
			p, _ := keyring.Generate(name)
			seed := sha256.Sum256([]byte(name))
			kek, _ := crypto.GenerateKey()
			enroll := client.EnrollPatientMsg(p.PubKey(), p.EncPubKey(), seed[:], kek)
			id := enroll.GetEnrollPatient().PatientId
			if _, err := c.Submit(ctx, p, enroll); err != nil {
				t.Fatal(err)
			}
			grant, err := c.GrantMsg(ctx, id, client.GrantSpec{Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
				NotAfter: time.Now().Add(time.Hour)}, func(uint64) ([]byte, error) { return kek, nil })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Submit(ctx, p, grant); err != nil {
				t.Fatal(err)
			}
			want = append(want, hexs(id))
		}
		slices.Sort(want)
		var got []string
		req := &emrv1.QueryGrantsRequest{Grantee: hexs(w.clinician.Address()), Limit: 1}
		for range 4 {
			var resp emrv1.QueryGrantsResponse
			if err := c.Query(ctx, "Grants", req, &resp); err != nil {
				t.Fatal(err)
			}
			for _, p := range resp.Permissions {
				got = append(got, hexs(p.PatientId))
			}
			if req.After = resp.Next; req.After == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("verified pages of one: %v, want %v", got, want)
		}
		all, info, err := c.AllGrants(ctx, w.clinician.Address())
		if err != nil || len(all) != 3 || !info.Verified {
			t.Fatalf("AllGrants: %d consents, %+v, %v", len(all), info, err)
		}
	})

	// QueryInfoAt reads the state an earlier answer came from, verified or
	// not: a patient's account from before its enrollment has sequence 0,
	// whatever the chain holds now.
	t.Run("QueryInfoAt", func(t *testing.T) {
		c := w.mustClient(t, w.node.RPC)
		unverified, err := client.New(ctx, client.Config{Node: w.node.RPC, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer unverified.Close()
		p, _ := keyring.Generate("patient-at")
		req := &emrv1.QueryAccountRequest{Address: hexs(p.Address())}
		var acct emrv1.QueryAccountResponse
		before, err := c.QueryInfo(ctx, "Account", req, &acct)
		if err != nil || acct.Account.GetNextSequence() != 0 {
			t.Fatalf("account before enrolling: %v, %v", &acct, err)
		}
		seed := sha256.Sum256([]byte(p.Name))
		kek, _ := crypto.GenerateKey()
		res, err := c.Submit(ctx, p, client.EnrollPatientMsg(p.PubKey(), p.EncPubKey(), seed[:], kek))
		if err != nil {
			t.Fatal(err)
		}
		for _, read := range []struct {
			c      *client.Client
			height int64
			want   uint64
		}{{c, before.Height, 0}, {c, res.Height, 1}, {unverified, before.Height, 0}, {unverified, res.Height, 1}} {
			info, err := read.c.QueryInfoAt(ctx, read.height, "Account", req, &acct)
			if err != nil || info.Height != read.height || info.Verified != read.c.Verified() || acct.Account.GetNextSequence() != read.want {
				t.Fatalf("account at height %d (verified client: %v): %v, %+v, %v; want sequence %d", read.height, read.c.Verified(), &acct, info, err, read.want)
			}
		}
		if _, err := c.QueryInfoAt(ctx, 0, "Account", req, &acct); err == nil {
			t.Fatal("QueryInfoAt height 0: no error")
		}
	})

	t.Run("TrustFromGenesisOfAChainOlderThanThePeriod", func(t *testing.T) {
		// Block 1 (made at the genesis time) is older than the trusting
		// period; a root from the genesis is a later header, at most half
		// the period old, and verifies reads.
		raw, err := os.ReadFile(w.node.Genesis)
		if err != nil {
			t.Fatal(err)
		}
		gen, err := cmttypes.GenesisDocFromJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		const period = 10 * time.Second
		if wait := period + time.Second - time.Since(gen.GenesisTime); wait > 0 {
			time.Sleep(wait)
		}
		asked := time.Now()
		chainID, trust, err := client.TrustFromGenesis(ctx, w.node.RPC, raw, period)
		if err != nil || chainID != w.chainID || trust.Height <= 1 || trust.Period != period {
			t.Fatalf("TrustFromGenesis on a chain older than the period: %q %+v %v, want a root above block 1", chainID, trust, err)
		}
		// The root is the oldest header younger than half the period (not
		// the newest, whose older heights a light client would walk back
		// to one by one).
		rpc := w.rpc(t)
		timeAt := func(h int64) time.Time {
			c, err := rpc.Commit(ctx, &h)
			if err != nil {
				t.Fatal(err)
			}
			return c.Time
		}
		since := asked.Add(-period / 2)
		if root, before := timeAt(trust.Height), timeAt(trust.Height-1); root.Before(since.Add(-time.Second)) || before.After(time.Now().Add(-period/2)) {
			t.Fatalf("root %d at %s, header %d at %s: want the first header after %s", trust.Height, root, trust.Height-1, before, since)
		}
		c, err := client.New(ctx, client.Config{Node: w.node.RPC, Verify: true, Trust: trust, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Patient(ctx, w.patientID); err != nil {
			t.Fatalf("a verified read from the root of a chain older than the period: %v", err)
		}
		// A node whose newest block is older than the period is refused
		// up front.
		if _, _, err := client.TrustFromGenesis(ctx, w.node.RPC, raw, time.Millisecond); err == nil || !strings.Contains(err.Error(), "older than the trusting period") {
			t.Fatalf("a trusting period shorter than the newest block's age: %v, want a refusal", err)
		}
	})
}

// --- the lying node ---------------------------------------------------

// isQuery reports whether call is an ABCI query of a Query service method.
func isQuery(call clienttest.Call, method string) bool {
	if call.Method != "abci_query" {
		return false
	}
	var params struct {
		Path string `json:"path"`
	}
	_ = json.Unmarshal(call.Params, &params)
	return params.Path == app.QueryPathPrefix+method
}

// queryRewrite rewrites the ABCI answers to one query method: fn gets the
// decoded response and may change it in place.
func queryRewrite(method string, fn func(resp proto.Message)) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		if !isQuery(call, method) {
			return result
		}
		var res struct {
			Response map[string]any `json:"response"`
		}
		if err := json.Unmarshal(result, &res); err != nil {
			return result
		}
		value, _ := res.Response["value"].(string)
		raw, _ := base64.StdEncoding.DecodeString(value)
		resp := responseFor(method)
		if err := proto.Unmarshal(raw, resp); err != nil {
			return result
		}
		fn(resp)
		out, _ := proto.Marshal(resp)
		res.Response["value"] = base64.StdEncoding.EncodeToString(out)
		// Keep the ABCI height consistent with the (possibly changed) one inside.
		r := resp.ProtoReflect()
		if f := r.Descriptor().Fields().ByName("height"); f != nil {
			res.Response["height"] = strconv.FormatInt(r.Get(f).Int(), 10)
		}
		b, _ := json.Marshal(res)
		return b
	}
}

// responseFor is an empty response of the Query method.
func responseFor(method string) proto.Message {
	sd, err := protoregistry.GlobalFiles.FindDescriptorByName("emrchain.v1.Query")
	if err != nil {
		panic(err)
	}
	m := sd.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(method))
	if m == nil {
		panic("no Query method " + method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
	if err != nil {
		panic(err)
	}
	return mt.New().Interface()
}

// notFound replaces every answer to method by a "not found" error.
func notFound(method string) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return refuse(method, app.ErrNotFound.Code())
}

// refuse answers every query of method with the app's error code, and
// leaves the raw-key proofs that check it honest.
func refuse(method string, code uint32) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		if !isQuery(call, method) {
			return result
		}
		return refusal(code)
	}
}

// refusal is an abci_query result failing with the app's error code.
func refusal(code uint32) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"response": map[string]any{
		"code": code, "codespace": app.Codespace, "log": "a lie", "height": "0",
	}})
	return b
}

// testUnverifiedEmptyAnswer: with verification off (emrcli --no-verify) a
// node that answers a query with an empty success gets an error from the
// typed reads, not a nil the flows built on them would dereference
// (Download and GrantMsg used to panic). Nothing was verified, so it is not
// a verification failure (it said so until 2026-11-23).
func testUnverifiedEmptyAnswer(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := clienttest.NewProxy(t, w.node.RPC)
	c, err := client.New(ctx, client.Config{Node: proxy.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	empty := func(method string) func(clienttest.Call, json.RawMessage) json.RawMessage {
		return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
			if !isQuery(call, method) {
				return result
			}
			b, _ := json.Marshal(map[string]any{"response": map[string]any{"code": 0, "value": "", "height": "5"}})
			return b
		}
	}
	defer proxy.Honest()
	for method, read := range map[string]func() error{
		"Record":         func() error { _, err := c.Record(ctx, w.patientID, 1); return err },
		"Patient":        func() error { _, err := c.Patient(ctx, w.patientID); return err },
		"PatientByOwner": func() error { _, err := c.PatientByOwner(ctx, w.patient.Address()); return err },
		"Member":         func() error { _, err := c.Member(ctx, w.clinician.Address()); return err },
		"Study":          func() error { _, err := c.Study(ctx, "any-study"); return err },
		"Params":         func() error { _, err := c.Params(ctx); return err },
		"Permission":     func() error { _, _, err := c.Permission(ctx, w.patientID, w.clinician.Address()); return err },
	} {
		proxy.SetRewrite(empty(method))
		if err := read(); err == nil || errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), "the node answered without the") {
			t.Errorf("%s, empty answer: %v, want an error", method, err)
		}
	}
	proxy.SetRewrite(empty("Record"))
	_, err = c.Download(ctx, w.clinician, client.DownloadRequest{PatientID: w.patientID, Record: 1, KEK: w.kek, Output: filepath.Join(t.TempDir(), "out")},
		client.TransferOptions{Sidecars: []string{"http://127.0.0.1:1"}})
	if err == nil {
		t.Error("Download with an empty Record answer succeeded")
	}
	proxy.SetRewrite(empty("Patient"))
	_, err = c.GrantMsg(ctx, w.patientID, client.GrantSpec{Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
		NotAfter: time.Now().Add(time.Hour)}, w.kek)
	if err == nil {
		t.Error("GrantMsg with an empty Patient answer succeeded")
	}
}

// testNotCommitted: a transaction the node accepted but that is in no
// block within the client's timeout (here the node swallowed it) is
// reported as not committed yet, with the block after which it never can
// be: its timeout height, TxTimeoutBlocks past the head it was signed at.
func testNotCommitted(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := clienttest.NewProxy(t, w.node.RPC)
	proxy.SetAnswer(clienttest.SwallowTxs)
	c, err := client.New(ctx, client.Config{Node: proxy.URL, Timeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.LatestHeight(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Submit(ctx, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: w.patientID, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}})
	after, herr := c.LatestHeight(ctx)
	if herr != nil {
		t.Fatal(herr)
	}
	var nc *client.NotCommittedError
	if !errors.As(err, &nc) {
		t.Fatalf("a swallowed transaction: %v, want a NotCommittedError", err)
	}
	if lo, hi := uint64(before)+client.TxTimeoutBlocks, uint64(after)+client.TxTimeoutBlocks; nc.TimeoutHeight < lo || nc.TimeoutHeight > hi {
		t.Fatalf("timeout height %d, want %d..%d", nc.TimeoutHeight, lo, hi)
	}
	if want := fmt.Sprintf("until block %d (its timeout height), never after; check with: emrcli tx status %X", nc.TimeoutHeight, nc.Hash); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

// failing answers the queries of method with the app's error code, and so
// every raw-key proof the client then asks for to check that failure: a
// node that lies about a failure and refuses to prove what would show it.
func failing(method string, code uint32) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		if !isQuery(call, method) && !isRawKey(call) {
			return result
		}
		return refusal(code)
	}
}

func isRawKey(call clienttest.Call) bool {
	var params struct {
		Path string `json:"path"`
	}
	_ = json.Unmarshal(call.Params, &params)
	return call.Method == "abci_query" && params.Path == app.RawKeyPath
}

// testRangeProofsAtOnce: the gap proofs that make a verified list
// complete are asked for several at a time, not one after another. Every
// raw-key proof is held 100 ms in the proxy; the most held at once is
// counted.
func testRangeProofsAtOnce(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := clienttest.NewProxy(t, w.node.RPC)
	var mu sync.Mutex
	held, most, proofs := 0, 0, 0
	proxy.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		if call.Method != "abci_query" || !bytes.Contains(call.Params, []byte(app.RawKeyPath)) {
			return result
		}
		mu.Lock()
		held, proofs = held+1, proofs+1
		most = max(most, held)
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		held--
		mu.Unlock()
		return result
	})
	var resp emrv1.QueryBlobRefsResponse
	if err := w.mustClient(t, proxy.URL).Query(ctx, "BlobRefs", &emrv1.QueryBlobRefsRequest{}, &resp); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	asked, atOnce := proofs, most
	mu.Unlock()
	if len(resp.Refs) < 3 || asked < len(resp.Refs) || atOnce < 2 {
		t.Fatalf("%d refs proven with %d gap proofs, at most %d at once; want several at once", len(resp.Refs), asked, atOnce)
	}
	t.Logf("%d refs proven with %d gap proofs, at most %d at once", len(resp.Refs), asked, atOnce)

	// A node that refuses every gap proof, the first asked answering
	// last: the error names the lowest key, as one at a time would.
	var lowest []byte
	first := true
	proxy.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		if call.Method != "abci_query" || !bytes.Contains(call.Params, []byte(app.RawKeyPath)) {
			return result
		}
		var params struct {
			Data string `json:"data"`
		}
		_ = json.Unmarshal(call.Params, &params)
		key, _ := hex.DecodeString(params.Data)
		mu.Lock()
		if lowest == nil || bytes.Compare(key, lowest) < 0 {
			lowest = key
		}
		wait := first
		first = false
		mu.Unlock()
		if wait {
			time.Sleep(200 * time.Millisecond)
		}
		var res map[string]map[string]any
		if err := json.Unmarshal(result, &res); err != nil {
			t.Errorf("abci_query result: %v", err)
			return result
		}
		res["response"]["code"], res["response"]["log"] = 1, "refused"
		out, _ := json.Marshal(res)
		return out
	})
	err := w.mustClient(t, proxy.URL).Query(ctx, "BlobRefs", &emrv1.QueryBlobRefsRequest{}, &resp)
	mu.Lock()
	low := lowest
	mu.Unlock()
	if !errors.Is(err, client.ErrVerification) || low == nil || !strings.Contains(err.Error(), fmt.Sprintf("at key %X:", low)) {
		t.Fatalf("every gap proof refused: %v; want the refusal at the lowest key %X", err, low)
	}
}

func testLyingNode(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := clienttest.NewProxy(t, w.node.RPC)
	pid := hexs(w.patientID)
	clinician := hexs(w.clinician.Address())

	cases := []lyingQuery{
		{"AlterValue", queryRewrite("Member", func(m proto.Message) {
			m.(*emrv1.QueryMemberResponse).Member.Role = emrv1.Role_ROLE_REGISTRAR
		}), "Member", &emrv1.QueryMemberRequest{Address: clinician}},
		{"AlterValueAndProofValue", queryRewrite("Member", func(m proto.Message) {
			r := m.(*emrv1.QueryMemberResponse)
			r.Member.Role = emrv1.Role_ROLE_REGISTRAR
			for _, p := range r.Proofs {
				if len(p.Value) > 0 {
					v := &emrv1.Member{}
					if proto.Unmarshal(p.Value, v) == nil && bytes.Equal(v.Address, r.Member.Address) {
						v.Role = emrv1.Role_ROLE_REGISTRAR
						p.Value, _ = proto.MarshalOptions{Deterministic: true}.Marshal(v)
					}
				}
			}
		}), "Member", &emrv1.QueryMemberRequest{Address: clinician}},
		{"DropProof", queryRewrite("Member", func(m proto.Message) {
			m.(*emrv1.QueryMemberResponse).Proofs = nil
		}), "Member", &emrv1.QueryMemberRequest{Address: clinician}},
		{"SwapProofs", queryRewrite("Records", func(m proto.Message) {
			ps := m.(*emrv1.QueryRecordsResponse).Proofs
			// Keep the keys, swap what proves them.
			a, b := ps[len(ps)-1], ps[len(ps)-2]
			a.Value, b.Value = b.Value, a.Value
			a.Ops, b.Ops = b.Ops, a.Ops
		}), "Records", &emrv1.QueryRecordsRequest{PatientId: pid}},
		{"SwapProofOpsOnly", queryRewrite("Records", func(m proto.Message) {
			ps := m.(*emrv1.QueryRecordsResponse).Proofs
			a, b := ps[len(ps)-1], ps[len(ps)-2]
			a.Ops, b.Ops = b.Ops, a.Ops
		}), "Records", &emrv1.QueryRecordsRequest{PatientId: pid}},
		{"DropRecordAndItsProof", queryRewrite("Records", func(m proto.Message) {
			r := m.(*emrv1.QueryRecordsResponse)
			drop := r.Records[1]
			r.Records = append(r.Records[:1], r.Records[2:]...)
			dropProofOf(&r.Proofs, drop)
		}), "Records", &emrv1.QueryRecordsRequest{PatientId: pid}},
		{"DropFilteredRecordProof", queryRewrite("Records", func(m proto.Message) {
			r := m.(*emrv1.QueryRecordsResponse)
			// Hide record 1 (lab-results) from a category listing.
			var kept []*emrv1.Record
			for _, rec := range r.Records {
				if rec.Sequence != 1 {
					kept = append(kept, rec)
				} else {
					dropProofOf(&r.Proofs, rec)
				}
			}
			r.Records = kept
		}), "Records", &emrv1.QueryRecordsRequest{PatientId: pid, Category: "lab-results"}},
		{"DropAccessEvent", queryRewrite("AccessEvents", func(m proto.Message) {
			r := m.(*emrv1.QueryAccessEventsResponse)
			drop := r.Events[0] // hide the newest read
			r.Events = r.Events[1:]
			for i, p := range r.Proofs {
				v := &emrv1.AccessEvent{}
				if proto.Unmarshal(p.Value, v) == nil && v.Sequence == drop.Sequence && bytes.Equal(v.PatientId, drop.PatientId) && bytes.Equal(v.TxHash, drop.TxHash) {
					r.Proofs = append(r.Proofs[:i], r.Proofs[i+1:]...)
					break
				}
			}
		}), "AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: pid}},
		{"ExtendPermission", queryRewrite("Permissions", func(m proto.Message) {
			r := m.(*emrv1.QueryPermissionsResponse)
			r.Permissions[0].NotAfter.Seconds += 86400 * 365
		}), "Permissions", &emrv1.QueryPermissionsRequest{PatientId: pid}},
		{"HidePermission", queryRewrite("Permissions", func(m proto.Message) {
			// Leave the consent and its proof out: the list looks empty.
			r := m.(*emrv1.QueryPermissionsResponse)
			r.Permissions = nil
			r.Proofs = r.Proofs[:1] // the patient's proof only
		}), "Permissions", &emrv1.QueryPermissionsRequest{PatientId: pid}},
		{"ExtendOnePermission", queryRewrite("Permission", func(m proto.Message) {
			m.(*emrv1.QueryPermissionResponse).Permission.NotAfter.Seconds += 86400 * 365
		}), "Permission", &emrv1.QueryPermissionRequest{PatientId: pid, Grantee: clinician}},
		{"FalseNotFoundPermission", notFound("Permission"), "Permission", &emrv1.QueryPermissionRequest{PatientId: pid, Grantee: clinician}},
		{"HideRegistrar", queryRewrite("Organization", func(m proto.Message) {
			// Leave the registrar and the proofs of it out (its index entry
			// 0x17 and member 0x03 keys; store/README.md): the hospital
			// looks as if it had none.
			r := m.(*emrv1.QueryOrganizationResponse)
			var kept []*emrv1.StoreProof
			for _, p := range r.Proofs {
				if len(p.Key) > 0 && (p.Key[0] == 0x17 || p.Key[0] == 0x03) {
					continue
				}
				kept = append(kept, p)
			}
			r.Registrars, r.Proofs = nil, kept
		}), "Organization", &emrv1.QueryOrganizationRequest{Id: "dev-hospital"}},
		{"HideGrant", queryRewrite("Grants", func(m proto.Message) {
			r := m.(*emrv1.QueryGrantsResponse)
			r.Permissions = nil
			r.Proofs = nil
		}), "Grants", &emrv1.QueryGrantsRequest{Grantee: clinician}},
		{"SkipGrantsPage", queryRewrite("Grants", func(m proto.Message) {
			// Claim the page is empty and the next starts past every id.
			r := m.(*emrv1.QueryGrantsResponse)
			r.Permissions, r.Proofs, r.Next = nil, nil, strings.Repeat("ff", 32)
		}), "Grants", &emrv1.QueryGrantsRequest{Grantee: clinician, Limit: 1}},
		{"HideBlobRefs", queryRewrite("BlobRefs", func(m proto.Message) {
			// Claim the state references no ciphertext: a sidecar seeding
			// its sweep from this would delete referenced blobs.
			r := m.(*emrv1.QueryBlobRefsResponse)
			var params []*emrv1.StoreProof // the page size's proof stays
			for _, p := range r.Proofs {
				if len(p.Key) == 1 {
					params = append(params, p)
				}
			}
			r.Refs, r.Proofs, r.Next = nil, params, ""
		}), "BlobRefs", &emrv1.QueryBlobRefsRequest{}},
		{"HideStudyShare", queryRewrite("StudyShares", func(m proto.Message) {
			// Claim the study has no share: leave the share and the
			// proofs of it and of its index entry out (keys 0x0f and
			// 0x11, store/README.md); those of the study and the page
			// size stay.
			r := m.(*emrv1.QueryStudySharesResponse)
			var kept []*emrv1.StoreProof
			for _, p := range r.Proofs {
				if p.Key[0] != 0x0f && p.Key[0] != 0x11 {
					kept = append(kept, p)
				}
			}
			r.Shares, r.Proofs = nil, kept
		}), "StudyShares", &emrv1.QueryStudySharesRequest{StudyId: worldStudy}},
		{"HideValidators", queryRewrite("Validators", func(m proto.Message) {
			// Claim the chain has no validators: leave them and their
			// proofs out.
			r := m.(*emrv1.QueryValidatorsResponse)
			r.Validators, r.Proofs = nil, nil
		}), "Validators", &emrv1.QueryValidatorsRequest{}},
		{"HideValidatorKey", queryRewrite("ValidatorKey", func(m proto.Message) {
			// Claim the node's key is no validator: leave its entry and
			// the proof of it (key 0x13, store/README.md) out; the proofs
			// of its count and unseen power stay.
			r := m.(*emrv1.QueryValidatorKeyResponse)
			var kept []*emrv1.StoreProof
			for _, p := range r.Proofs {
				if p.Key[0] != 0x13 {
					kept = append(kept, p)
				}
			}
			r.Validator, r.Proofs = nil, kept
		}), "ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: w.validator}},
		{"AlterValidatorKeyChanges", queryRewrite("ValidatorKey", func(m proto.Message) {
			// Claim another change count, which a possession would then
			// be checked against.
			m.(*emrv1.QueryValidatorKeyResponse).Changes++
		}), "ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: w.validator}},
		{"HideProposals", queryRewrite("Proposals", func(m proto.Message) {
			// Claim nothing is proposed; the page size's proof stays.
			r := m.(*emrv1.QueryProposalsResponse)
			var params []*emrv1.StoreProof
			for _, p := range r.Proofs {
				if len(p.Key) == 1 {
					params = append(params, p)
				}
			}
			r.Proposals, r.Proofs = nil, params
		}), "Proposals", &emrv1.QueryProposalsRequest{}},
		{"HideMember", queryRewrite("Members", func(m proto.Message) {
			// Leave the clinician out of its organization's list: its
			// entry, and the proofs of its member index entry (key
			// 0x04, store/README.md) and of its member (0x03).
			r := m.(*emrv1.QueryMembersResponse)
			var kept []*emrv1.Member
			for _, mem := range r.Members {
				if !bytes.Equal(mem.Address, w.clinician.Address()) {
					kept = append(kept, mem)
				}
			}
			proofs := r.Proofs[:0]
			for _, p := range r.Proofs {
				if !((p.Key[0] == 0x04 || p.Key[0] == 0x03) && bytes.HasSuffix(p.Key, w.clinician.Address())) {
					proofs = append(proofs, p)
				}
			}
			r.Members, r.Proofs = kept, proofs
		}), "Members", &emrv1.QueryMembersRequest{Organization: "dev-hospital"}},
		{"FewerOrganizations", queryRewrite("Proposal", func(m proto.Message) {
			// Claim one organization fewer, so that fewer approvals
			// would seem to carry the proposal: leave one registrar
			// out, its registrar index entry's proof (key 0x17,
			// store/README.md) and its member's (0x03), which the
			// organizations that can approve are counted from.
			r := m.(*emrv1.QueryProposalResponse)
			var dropped []byte
			var kept []*emrv1.StoreProof
			for _, p := range r.Proofs {
				if p.Key[0] == 0x17 && dropped == nil {
					dropped = p.Key[len(p.Key)-20:]
					continue
				}
				kept = append(kept, p)
			}
			r.Proofs = kept[:0]
			for _, p := range kept {
				if !(p.Key[0] == 0x03 && bytes.Equal(p.Key[1:], dropped)) {
					r.Proofs = append(r.Proofs, p)
				}
			}
			r.Organizations--
		}), "Proposal", &emrv1.QueryProposalRequest{Id: 1}},
		{"WrongHeight", queryRewrite("Patient", func(m proto.Message) {
			m.(*emrv1.QueryPatientResponse).Height--
		}), "Patient", &emrv1.QueryPatientRequest{PatientId: pid}},
		{"ExtraUnknownField", queryRewrite("Patient", func(m proto.Message) {
			m.ProtoReflect().SetUnknown([]byte{0xa8, 0x1f, 0x01}) // field 501 = 1
		}), "Patient", &emrv1.QueryPatientRequest{PatientId: pid}},
		{"RaisedEmergencyLimit", queryRewrite("EmergencyReads", func(m proto.Message) {
			m.(*emrv1.QueryEmergencyReadsResponse).PatientsPerDay += 5
		}), "EmergencyReads", &emrv1.QueryEmergencyReadsRequest{Address: clinician}},
		{"HiddenEmergencyReads", queryRewrite("EmergencyReads", func(m proto.Message) {
			// Claim no reads were kept, with the proofs of the member and
			// the params alone (the kept reads' key's proof dropped).
			r := m.(*emrv1.QueryEmergencyReadsResponse)
			r.Reads = nil
			r.Proofs = slices.DeleteFunc(r.Proofs, func(p *emrv1.StoreProof) bool { return p.Key[0] == 0x18 })
		}), "EmergencyReads", &emrv1.QueryEmergencyReadsRequest{Address: clinician}},
		{"FalseNotFound", notFound("Member"), "Member", &emrv1.QueryMemberRequest{Address: clinician}},
		// The node also refuses the key-by-key proofs that would check its
		// failure: its own error must not stand for the query's.
		{"FalseNotFoundUnproven", failing("Member", app.ErrNotFound.Code()), "Member", &emrv1.QueryMemberRequest{Address: clinician}},
		{"FalseRevokedUnproven", failing("Permission", app.ErrPermissionRevoked.Code()), "Permission",
			&emrv1.QueryPermissionRequest{PatientId: pid, Grantee: clinician}},
		{"FalseNotFoundPatient", notFound("Records"), "Records", &emrv1.QueryRecordsRequest{PatientId: pid}},
		{"TamperedHeader", clienttest.ForgeAppHashExcept(w.trust.Height), "Patient", &emrv1.QueryPatientRequest{PatientId: pid}},
	}
	w.refuseLies(ctx, t, proxy, cases)

	t.Run("TxStatusLies", func(t *testing.T) {
		proxy.Honest()
		c := w.mustClient(t, proxy.URL)
		res, err := c.Submit(ctx, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
			PatientId: w.patientID, RecordSequences: []uint64{2}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}})
		if err != nil {
			t.Fatal(err)
		}
		// Claim the tx failed.
		proxy.SetRewrite(rewriteTx(func(r map[string]any) {
			r["tx_result"].(map[string]any)["code"] = 16
		}))
		defer proxy.Honest()
		if _, err := c.TxStatus(ctx, res.Hash); !errors.Is(err, client.ErrVerification) {
			t.Fatalf("altered tx code: %v", err)
		}
		// Claim another codespace: not covered by the results hash, so the
		// verified result takes the chain's own (none, for success).
		proxy.SetRewrite(rewriteTx(func(r map[string]any) {
			r["tx_result"].(map[string]any)["codespace"] = "elsewhere"
		}))
		if st, err := c.TxStatus(ctx, res.Hash); err != nil || st.Code != 0 || st.Codespace != "" || !st.Verified {
			t.Fatalf("TxStatus with another codespace = %+v, %v; want a verified success with no codespace", st, err)
		}
		// Claim it is in another block.
		proxy.SetRewrite(rewriteTx(func(r map[string]any) {
			r["height"] = strconv.FormatInt(res.Height-1, 10)
		}))
		if _, err := c.TxStatus(ctx, res.Hash); !errors.Is(err, client.ErrVerification) {
			t.Fatalf("altered tx height: %v", err)
		}
	})

	t.Run("TxProofOfAnotherCount", func(t *testing.T) {
		// In a block of three transactions, the proof of the third also
		// passes as the second of two over the same root: its one aunt is
		// the first pair's hash either way.
		proxy.Honest()
		c := w.mustClient(t, proxy.URL)
		third := lastOfThreeInOneBlock(ctx, t, w, c)
		if st, err := c.TxStatus(ctx, third); err != nil || !st.Verified {
			t.Fatalf("honest TxStatus = %+v, %v", st, err)
		}
		proxy.SetRewrite(rewriteTx(func(r map[string]any) {
			r["index"] = 1
			p := r["proof"].(map[string]any)["proof"].(map[string]any)
			p["total"], p["index"] = "2", "1"
		}))
		defer proxy.Honest()
		if st, err := c.TxStatus(ctx, third); !errors.Is(err, client.ErrVerification) {
			t.Fatalf("TxStatus with the third of three proven as the second of two = %+v, %v; want ErrVerification", st, err)
		}
	})
}

// lyingQuery is a query and the lie a node tells in its answer.
type lyingQuery struct {
	name    string
	rewrite func(clienttest.Call, json.RawMessage) json.RawMessage
	method  string
	req     proto.Message
}

// refuseLies runs each case as a subtest: the query verifies through the
// honest proxy, and is refused with ErrVerification once the proxy tells
// the case's lie.
func (w *world) refuseLies(ctx context.Context, t *testing.T, proxy *clienttest.Proxy, cases []lyingQuery) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy.Honest()
			c := w.mustClient(t, proxy.URL)
			if err := c.Query(ctx, tc.method, tc.req, responseFor(tc.method)); err != nil {
				t.Fatalf("honest %s through the proxy: %v", tc.method, err)
			}
			proxy.SetRewrite(tc.rewrite)
			defer proxy.Honest()
			resp := responseFor(tc.method)
			err := w.mustClient(t, proxy.URL).Query(ctx, tc.method, tc.req, resp)
			if !errors.Is(err, client.ErrVerification) {
				t.Fatalf("lying %s: err = %v, answer %v; want ErrVerification", tc.method, err, resp)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// rewriteTx is a proxy rewrite that edits the result of every "tx" call.
func rewriteTx(edit func(r map[string]any)) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		if call.Method != "tx" {
			return result
		}
		var r map[string]any
		_ = json.Unmarshal(result, &r)
		edit(r)
		b, _ := json.Marshal(r)
		return b
	}
}

// lastOfThreeInOneBlock commits three RecordAccess transactions of w's
// clinician in one block that holds nothing else and returns the hash of
// the third. A block can close between two broadcasts, so it tries again,
// a bounded number of times.
func lastOfThreeInOneBlock(ctx context.Context, t *testing.T, w *world, c *client.Client) []byte {
	t.Helper()
	rpc := w.rpc(t)
	msg := &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: w.patientID, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}}
	for try := 0; try < 5; try++ {
		seq, err := c.Sequence(ctx, w.clinician.Address())
		if err != nil {
			t.Fatal(err)
		}
		var txs [][]byte
		for i := range uint64(3) {
			tx, err := c.SignTxWithSequence(w.clinician, seq+i, msg)
			if err != nil {
				t.Fatal(err)
			}
			txs = append(txs, tx)
		}
		for _, tx := range txs[:2] {
			if _, err := c.Broadcast(ctx, tx, false); err != nil {
				t.Fatal(err)
			}
		}
		res, err := c.Broadcast(ctx, txs[2], true)
		if err != nil {
			t.Fatal(err)
		}
		block, err := rpc.Block(ctx, &res.Height)
		if err != nil {
			t.Fatal(err)
		}
		if len(block.Block.Txs) == 3 && bytes.Equal(block.Block.Txs[0], txs[0]) && bytes.Equal(block.Block.Txs[2], txs[2]) {
			return res.Hash
		}
		t.Logf("try %d: block %d holds %d transactions; again", try+1, res.Height, len(block.Block.Txs))
	}
	t.Fatal("no block held the three transactions in 5 tries")
	return nil
}

// dropProofOf removes the proof whose value is rec.
func dropProofOf(proofs *[]*emrv1.StoreProof, rec *emrv1.Record) {
	for i, p := range *proofs {
		v := &emrv1.Record{}
		if proto.Unmarshal(p.Value, v) == nil && v.Sequence == rec.Sequence && bytes.Equal(v.CiphertextSha256, rec.CiphertextSha256) {
			*proofs = append((*proofs)[:i], (*proofs)[i+1:]...)
			return
		}
	}
}

// testFork: a second chain with the same chain id (another validator)
// serves the headers; the light client, trusting the real chain's genesis
// header, must refuse them.
func testFork(t *testing.T, w *world, fork *clienttest.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if fork.ChainID != w.chainID {
		t.Fatalf("fork chain id %q, real %q", fork.ChainID, w.chainID)
	}
	proxy := clienttest.NewProxy(t, w.node.RPC)
	c := w.mustClient(t, proxy.URL) // trusts a header of the real chain
	proxy.SetRoute(func(call clienttest.Call) string {
		switch call.Method {
		case "commit", "validators", "status":
			return fork.RPC
		}
		return ""
	})
	err := c.Query(ctx, "Patient", &emrv1.QueryPatientRequest{PatientId: hexs(w.patientID)}, &emrv1.QueryPatientResponse{})
	if !errors.Is(err, client.ErrVerification) {
		t.Fatalf("headers from a fork: %v, want ErrVerification", err)
	}
	t.Logf("refused: %v", err)
	// A fresh client cannot even start from the fork's genesis header.
	if _, err := w.newClient(t, fork.RPC); !errors.Is(err, client.ErrVerification) {
		t.Fatalf("light client on the fork: %v", err)
	}
}

// otherEncKey is a member's key with an X25519 key that is not the one
// registered for it: a keyring pairing the wrong keys, or a program's
// Recipient that does.
type otherEncKey struct {
	*keyring.Key
	enc *ecdh.PrivateKey
}

func (k otherEncKey) EncPrivKey() *ecdh.PrivateKey { return k.enc }

// testEncKeyNotRegistered: a download or a share by a recipient whose
// encryption key is not the registered one fails with
// ErrEncKeyNotRegistered before the read is logged and before a sidecar
// is asked, with ReuseAccess too:
// every sidecar seals what it serves to the registered key, so the read
// would be logged and what was served would not open.
func testEncKeyNotRegistered(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := w.mustClient(t, w.node.RPC)
	var asked atomic.Int32
	sc := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { asked.Add(1) }))
	defer sc.Close()
	before, _, err := c.AllAccessEvents(ctx, w.patientID)
	if err != nil {
		t.Fatal(err)
	}
	other, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	wrong := otherEncKey{Key: w.clinician, enc: other}
	opts := client.TransferOptions{Sidecars: []string{sc.URL}}
	wantRefused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, client.ErrEncKeyNotRegistered) || !strings.Contains(err.Error(), hex.EncodeToString(w.clinician.EncPubKey())) {
			t.Fatalf("%s with another encryption key: %v; want ErrEncKeyNotRegistered naming the registered key", what, err)
		}
	}
	// The KEK opens with the recipient's key, as emrcli's does: the
	// refusal says why before that fails.
	for _, reuse := range []bool{false, true} {
		_, err := c.Download(ctx, wrong, client.DownloadRequest{PatientID: w.patientID, Record: 1, ReuseAccess: reuse,
			KEK: c.GranteeKEKFunc(ctx, wrong.EncPrivKey(), w.patientID, w.clinician.Address()), Output: filepath.Join(t.TempDir(), "out")}, opts)
		wantRefused(fmt.Sprintf("download (reuse %v)", reuse), err)
	}
	_, err = c.ShareRecord(ctx, wrong, client.ShareRequest{PatientID: w.patientID, Record: 1, StudyID: worldStudy}, opts)
	wantRefused("a share", err)
	after, _, err := c.AllAccessEvents(ctx, w.patientID)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || asked.Load() != 0 {
		t.Fatalf("the refused downloads logged %d read(s) and asked the sidecar %d time(s), want none", len(after)-len(before), asked.Load())
	}
}
