package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto/ed25519"
	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/internal/freeport"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// apiNode is a running single-validator emrchaind with gRPC and REST on
// free loopback ports.
type apiNode struct {
	proc              *proc
	home              string
	rpcPort           int
	grpcAddr, apiAddr string
	conn              *grpc.ClientConn
	query             emrv1.QueryClient
	txs               emrv1.TxServiceClient
}

const apiChainID = "emr-api-test"

// startAPINode inits a home with a hospital and a research institute (one
// registrar each), turns CORS on for corsOrigin and starts the node.
func startAPINode(ctx context.Context, t *testing.T, corsOrigin string) *apiNode {
	t.Helper()
	return startAPINodeWith(ctx, t, func(c *appConfig) { c.API.CORSAllowedOrigins = []string{corsOrigin} })
}

// startAPINodeWith is startAPINode with app.toml as edit leaves it.
func startAPINodeWith(ctx context.Context, t *testing.T, edit func(*appConfig)) *apiNode {
	t.Helper()
	return startAPINodeConfigured(ctx, t, edit, nil)
}

// startAPINodeConfigured is startAPINodeWith with config.toml as
// editComet (when not nil) leaves it.
func startAPINodeConfigured(ctx context.Context, t *testing.T, edit func(*appConfig), editComet func(*cmtcfg.Config)) *apiNode {
	t.Helper()
	home := t.TempDir()
	n := &apiNode{home: home, rpcPort: freeport.Get(t),
		grpcAddr: fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)), apiAddr: fmt.Sprintf("127.0.0.1:%d", freeport.Get(t))}
	out, err := exec.Command(binary(t), "init", "--home", home, "--chain-id", apiChainID,
		"--org", "dev-hospital:Dev Hospital:hospital", "--org", "dev-research:Dev Research:research",
		"--registrar", "dev-hospital:registrar", "--registrar", "dev-research:research-registrar",
		"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", n.rpcPort),
		"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", freeport.Get(t)),
		"--grpc.address", n.grpcAddr, "--api.address", n.apiAddr,
		"--sidecar.listen", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--timeout-commit", "100ms", "--empty-blocks-interval", "0s").CombinedOutput()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	conf, err := loadAppConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if conf.GRPC.Address != n.grpcAddr || conf.API.Address != n.apiAddr || !conf.GRPC.Enable || !conf.API.Enable {
		t.Fatalf("init wrote [grpc] %+v [api] %+v", conf.GRPC, conf.API)
	}
	edit(&conf)
	if err := writeAppConfig(home, conf); err != nil {
		t.Fatal(err)
	}
	if editComet != nil {
		cc, err := loadCometConfig(home)
		if err != nil {
			t.Fatal(err)
		}
		editComet(cc)
		cmtcfg.WriteConfigFile(filepath.Join(home, "config", "config.toml"), cc)
	}
	n.proc = startNode(t, home, "node.log")
	waitHeight(ctx, t, n.proc, n.rpcPort, 1)
	n.waitREST(ctx, t)
	n.conn, err = grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.conn.Close() })
	n.query, n.txs = emrv1.NewQueryClient(n.conn), emrv1.NewTxServiceClient(n.conn)
	return n
}

// waitREST waits until the node's REST server answers.
func (n *apiNode) waitREST(ctx context.Context, t *testing.T) {
	t.Helper()
	for {
		resp, err := http.Get("http://" + n.apiAddr + "/openapi.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if n.proc.exited() || ctx.Err() != nil {
			t.Fatalf("REST server did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// devActor loads HOME/dev-keys/NAME.json as an apptest actor.
func devActor(t *testing.T, home, name string) *apptest.Actor {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(home, devKeysDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var k devKey
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	enc, err := ecdh.X25519().NewPrivateKey(k.EncPrivKey)
	if err != nil {
		t.Fatal(err)
	}
	sign := ed25519.PrivKey(k.SignPrivKey)
	return &apptest.Actor{Name: name, Sign: sign, Enc: enc, Address: sign.PubKey().Address()}
}

// restCall is one HTTP request to the REST server.
type restCall struct {
	method, path string
	body         []byte
	header       http.Header
	chunked      bool // send the body without its length
}

type restReply struct {
	status int
	header http.Header
	body   []byte
}

func (n *apiNode) rest(ctx context.Context, t *testing.T, c restCall) restReply {
	t.Helper()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
		if c.chunked {
			body = io.MultiReader(body) // its length unknown to the request
		}
	}
	req, err := http.NewRequestWithContext(ctx, c.method, "http://"+n.apiAddr+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if c.body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return restReply{resp.StatusCode, resp.Header, b}
}

// broadcastREST sends tx through POST /emrchain/v1/txs as JSON.
func (n *apiNode) broadcastREST(ctx context.Context, t *testing.T, tx []byte) *emrv1.BroadcastTxResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"tx": base64.StdEncoding.EncodeToString(tx)})
	r := n.rest(ctx, t, restCall{method: http.MethodPost, path: "/emrchain/v1/txs", body: body})
	if r.status != http.StatusOK {
		t.Fatalf("POST /emrchain/v1/txs: %d %s", r.status, r.body)
	}
	var resp emrv1.BroadcastTxResponse
	if err := protojson.Unmarshal(r.body, &resp); err != nil {
		t.Fatalf("broadcast response %s: %v", r.body, err)
	}
	return &resp
}

func (n *apiNode) broadcastGRPC(ctx context.Context, t *testing.T, tx []byte, async bool) *emrv1.BroadcastTxResponse {
	t.Helper()
	resp, err := n.txs.BroadcastTx(ctx, &emrv1.BroadcastTxRequest{Tx: tx, Async: async})
	if err != nil {
		t.Fatalf("gRPC BroadcastTx: %v", err)
	}
	return resp
}

// mustCommit checks a broadcast committed successfully.
func mustCommit(t *testing.T, what string, tx []byte, r *emrv1.BroadcastTxResponse) {
	t.Helper()
	if r.Code != 0 || r.Height <= 0 || r.Hash != hex.EncodeToString(txHash(tx)) {
		t.Fatalf("%s: %+v; want code 0 at a height, hash %x", what, r, txHash(tx))
	}
}

// txHash is CometBFT's hash of a tx.
func txHash(tx []byte) []byte { return cmttypes.Tx(tx).Hash() }

// queryRoute is one Query method over both transports.
type queryRoute struct {
	method string
	path   string // REST path and query, without height
	grpc   func(ctx context.Context, opts ...grpc.CallOption) (proto.Message, error)
	resp   func() proto.Message
}

// TestAPIServers runs a node with gRPC and REST: txs broadcast through both
// (POST /emrchain/v1/txs and TxService.BroadcastTx), every Query route
// answering the same over both at a pinned height, a sweep of bad inputs
// that must all be 4xx JSON errors, /openapi.json against the protos, CORS,
// reflection, and a clean stop.
func TestAPIServers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const origin = "https://emr.example"
	n := startAPINode(ctx, t, origin)

	regH, regR := devActor(t, n.home, "registrar"), devActor(t, n.home, "research-registrar")
	doc, pi := apptest.NewActor("api-doc"), apptest.NewActor("api-pi")
	er, erDoc := apptest.NewActor("api-emergency-service"), apptest.NewActor("api-er-doc")
	pat, pid := apptest.NewActor("api-patient"), apptest.PatientID("api-patient")
	const study = "api-study"

	// Once the node has committed state and is not catching up,
	// grpc.health.v1 says SERVING, for the server and each service
	// (within a poll of the node: healthPoll).
	for _, svc := range []string{"", "emrchain.v1.Query", "emrchain.v1.TxService"} {
		for {
			res, err := healthpb.NewHealthClient(n.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err == nil && res.Status == healthpb.HealthCheckResponse_SERVING {
				break
			}
			if ctx.Err() != nil || err != nil {
				t.Fatalf("health of %q: %v %v, want SERVING", svc, res, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Txs, alternating REST and gRPC. The first has a timeout height a few
	// blocks ahead, past which its resending after the restart below is
	// refused as expired before its sequence is looked at.
	now, _ := waitHeight(ctx, t, n.proc, n.rpcPort, 1)
	tx1Timeout := uint64(now) + 5
	tx1 := regH.TxUntil(apiChainID, 0, tx1Timeout, apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, "dev-hospital"))
	first := n.broadcastREST(ctx, t, tx1)
	mustCommit(t, "register clinician (REST)", tx1, first)
	tx := regR.Tx(apiChainID, 0, apptest.RegisterMember(pi, emrv1.Role_ROLE_RESEARCHER, "dev-research"))
	mustCommit(t, "register researcher (gRPC)", tx, n.broadcastGRPC(ctx, t, tx, false))
	tx = regR.Tx(apiChainID, 1, apptest.RegisterStudy(study, pi))
	if r := n.broadcastGRPC(ctx, t, tx, true); r.Code != 0 || r.Height != 0 || r.Hash != hex.EncodeToString(txHash(tx)) {
		t.Fatalf("async broadcast: %+v", r)
	}
	tx = pat.Tx(apiChainID, 0, apptest.Enroll(pat))
	mustCommit(t, "enroll (REST)", tx, n.broadcastREST(ctx, t, tx))
	for { // the async study tx
		if _, err := n.query.Study(ctx, &emrv1.QueryStudyRequest{Id: study}); err == nil {
			break
		} else if grpcstatus.Code(err) != codes.NotFound || ctx.Err() != nil {
			t.Fatalf("study after async broadcast: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tx = pat.Tx(apiChainID, 1, apptest.Grant(pid, doc, apptest.GrantSpec{
		Rights:   []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE, emrv1.Right_RIGHT_SHARE},
		NotAfter: time.Now().Add(365 * 24 * time.Hour), Study: study,
	}))
	mustCommit(t, "grant (gRPC)", tx, n.broadcastGRPC(ctx, t, tx, false))
	tx = doc.Tx(apiChainID, 0, apptest.AddRecord(pid, "lab-results", "api-cbc"))
	mustCommit(t, "add record (REST)", tx, n.broadcastREST(ctx, t, tx))
	tx = doc.Tx(apiChainID, 1, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	mustCommit(t, "access (gRPC)", tx, n.broadcastGRPC(ctx, t, tx, false))
	share := apptest.Share(pid, 1, study, false)
	tx = doc.Tx(apiChainID, 2, share)
	mustCommit(t, "share (REST)", tx, n.broadcastREST(ctx, t, tx))
	// Two organizations: the proposal stays open (one of two approved).
	tx = regH.Tx(apiChainID, 1, apptest.AddOrganization("api-lab", apptest.NewActor("api-lab-registrar")))
	mustCommit(t, "propose (gRPC)", tx, n.broadcastGRPC(ctx, t, tx, false))
	// An emergency service, the patient's opt-in to it and a clinician's
	// break-glass read: the service's break-glass log has an entry.
	tx = regH.Tx(apiChainID, 2, apptest.RegisterMember(er, emrv1.Role_ROLE_EMERGENCY_SERVICE, "dev-hospital"))
	mustCommit(t, "register emergency service (REST)", tx, n.broadcastREST(ctx, t, tx))
	tx = regH.Tx(apiChainID, 3, apptest.RegisterMember(erDoc, emrv1.Role_ROLE_CLINICIAN, "dev-hospital"))
	mustCommit(t, "register emergency physician (gRPC)", tx, n.broadcastGRPC(ctx, t, tx, false))
	tx = pat.Tx(apiChainID, 2, apptest.Grant(pid, er, apptest.GrantSpec{
		Rights: []emrv1.Right{emrv1.Right_RIGHT_EMERGENCY}, NotAfter: time.Now().Add(365 * 24 * time.Hour),
	}))
	mustCommit(t, "emergency opt-in (gRPC)", tx, n.broadcastGRPC(ctx, t, tx, false))
	tx = erDoc.Tx(apiChainID, 0, apptest.EmergencyAccess(pid, er, 1))
	mustCommit(t, "break-glass read (REST)", tx, n.broadcastREST(ctx, t, tx))

	// Rejections are answers, not transport errors.
	if r := n.broadcastREST(ctx, t, doc.Tx(apiChainID, 0, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))); r.Code != app.ErrBadSequence.Code() ||
		r.Codespace != app.Codespace || r.Height != 0 || r.Log == "" {
		t.Fatalf("stale sequence: %+v", r)
	}
	if r := n.broadcastGRPC(ctx, t, []byte{0xff, 0x00, 0x13}, false); r.Code == 0 || r.Height != 0 {
		t.Fatalf("garbage tx: %+v", r)
	}
	// REST's health answer: a node that keeps up, at a height.
	if r := n.rest(ctx, t, restCall{method: http.MethodGet, path: restHealthPath}); r.status != http.StatusOK ||
		!bytes.Contains(r.body, []byte(`"status":"SERVING"`)) || !bytes.Contains(r.body, []byte(`"catching_up":false`)) {
		t.Fatalf("GET /healthz: %d %s", r.status, r.body)
	}
	// A tx already committed answers its result again.
	if r := n.broadcastREST(ctx, t, tx1); r.Code != 0 || r.Height != first.Height || r.Hash != first.Hash {
		t.Fatalf("rebroadcast of a committed tx: %+v, want %+v", r, first)
	}

	// Pin a height, then change the state: the pinned answers must not move.
	var hdr metadata.MD
	if _, err := n.query.Params(ctx, &emrv1.QueryParamsRequest{}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	height, err := strconv.ParseInt(strings.Join(hdr.Get(heightMD), ""), 10, 64)
	if err != nil || height <= 0 {
		t.Fatalf("gRPC %s header %q", heightMD, hdr.Get(heightMD))
	}
	tx = doc.Tx(apiChainID, 3, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	mustCommit(t, "second access (gRPC)", tx, n.broadcastGRPC(ctx, t, tx, false))

	hx := hex.EncodeToString
	pidHex, docHex := hx(pid), hx(doc.Address)
	set, err := n.query.Validators(ctx, &emrv1.QueryValidatorsRequest{})
	if err != nil || len(set.Validators) != 1 {
		t.Fatalf("validators: %v %v", set, err)
	}
	// A consensus key in a REST path is URL-safe base64 (grpc-gateway's
	// bytes path parameter: a "/" of standard base64 would split the path).
	validatorKey := set.Validators[0].PubKey
	validatorPath := "/emrchain/v1/validators/" + base64.URLEncoding.EncodeToString(validatorKey)
	routes := []queryRoute{
		{"Params", "/emrchain/v1/params", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Params(ctx, &emrv1.QueryParamsRequest{}, o...)
		}, func() proto.Message { return new(emrv1.QueryParamsResponse) }},
		{"Organization", "/emrchain/v1/organizations/dev-hospital", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Organization(ctx, &emrv1.QueryOrganizationRequest{Id: "dev-hospital"}, o...)
		}, func() proto.Message { return new(emrv1.QueryOrganizationResponse) }},
		{"Organizations", "/emrchain/v1/organizations?limit=1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Organizations(ctx, &emrv1.QueryOrganizationsRequest{Limit: 1}, o...)
		}, func() proto.Message { return new(emrv1.QueryOrganizationsResponse) }},
		{"Members", "/emrchain/v1/organizations/dev-hospital/members?role=ROLE_CLINICIAN", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Members(ctx, &emrv1.QueryMembersRequest{Organization: "dev-hospital", Role: emrv1.Role_ROLE_CLINICIAN}, o...)
		}, func() proto.Message { return new(emrv1.QueryMembersResponse) }},
		{"Member", "/emrchain/v1/members/" + docHex, func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Member(ctx, &emrv1.QueryMemberRequest{Address: docHex}, o...)
		}, func() proto.Message { return new(emrv1.QueryMemberResponse) }},
		{"EmergencyReads", "/emrchain/v1/members/" + docHex + "/emergency-reads", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.EmergencyReads(ctx, &emrv1.QueryEmergencyReadsRequest{Address: docHex}, o...)
		}, func() proto.Message { return new(emrv1.QueryEmergencyReadsResponse) }},
		{"BreakGlassLog", "/emrchain/v1/members/" + hx(er.Address) + "/break-glass-log?page.limit=1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.BreakGlassLog(ctx, &emrv1.QueryBreakGlassLogRequest{Service: hx(er.Address), Page: &emrv1.PageRequest{Limit: 1}}, o...)
		}, func() proto.Message { return new(emrv1.QueryBreakGlassLogResponse) }},
		{"Account", "/emrchain/v1/accounts/" + docHex, func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Account(ctx, &emrv1.QueryAccountRequest{Address: docHex}, o...)
		}, func() proto.Message { return new(emrv1.QueryAccountResponse) }},
		{"Patient", "/emrchain/v1/patients/" + pidHex, func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Patient(ctx, &emrv1.QueryPatientRequest{PatientId: pidHex}, o...)
		}, func() proto.Message { return new(emrv1.QueryPatientResponse) }},
		{"PatientByOwner", "/emrchain/v1/accounts/" + hx(pat.Address) + "/patient", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.PatientByOwner(ctx, &emrv1.QueryPatientByOwnerRequest{Owner: hx(pat.Address)}, o...)
		}, func() proto.Message { return new(emrv1.QueryPatientResponse) }},
		{"Permissions", "/emrchain/v1/patients/" + pidHex + "/permissions", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Permissions(ctx, &emrv1.QueryPermissionsRequest{PatientId: pidHex}, o...)
		}, func() proto.Message { return new(emrv1.QueryPermissionsResponse) }},
		{"Permission", "/emrchain/v1/patients/" + pidHex + "/permissions/" + docHex, func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Permission(ctx, &emrv1.QueryPermissionRequest{PatientId: pidHex, Grantee: docHex}, o...)
		}, func() proto.Message { return new(emrv1.QueryPermissionResponse) }},
		{"Grants", "/emrchain/v1/members/" + docHex + "/grants?limit=1&after=" + strings.Repeat("00", 32), func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Grants(ctx, &emrv1.QueryGrantsRequest{Grantee: docHex, Limit: 1, After: strings.Repeat("00", 32)}, o...)
		}, func() proto.Message { return new(emrv1.QueryGrantsResponse) }},
		{"Records", "/emrchain/v1/patients/" + pidHex + "/records?category=lab-results&page.limit=5", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Records(ctx, &emrv1.QueryRecordsRequest{PatientId: pidHex, Category: "lab-results", Page: &emrv1.PageRequest{Limit: 5}}, o...)
		}, func() proto.Message { return new(emrv1.QueryRecordsResponse) }},
		{"Record", "/emrchain/v1/patients/" + pidHex + "/records/1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Record(ctx, &emrv1.QueryRecordRequest{PatientId: pidHex, Sequence: 1}, o...)
		}, func() proto.Message { return new(emrv1.QueryRecordResponse) }},
		{"AccessEvents", "/emrchain/v1/patients/" + pidHex + "/access_events?page.limit=1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.AccessEvents(ctx, &emrv1.QueryAccessEventsRequest{PatientId: pidHex, Page: &emrv1.PageRequest{Limit: 1}}, o...)
		}, func() proto.Message { return new(emrv1.QueryAccessEventsResponse) }},
		{"Shares", "/emrchain/v1/patients/" + pidHex + "/shares", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Shares(ctx, &emrv1.QuerySharesRequest{PatientId: pidHex}, o...)
		}, func() proto.Message { return new(emrv1.QuerySharesResponse) }},
		{"Share", "/emrchain/v1/patients/" + pidHex + "/shares/1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Share(ctx, &emrv1.QueryShareRequest{PatientId: pidHex, Sequence: 1}, o...)
		}, func() proto.Message { return new(emrv1.QueryShareResponse) }},
		{"LastAccess", "/emrchain/v1/patients/" + pidHex + "/records/1/access/" + docHex, func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.LastAccess(ctx, &emrv1.QueryLastAccessRequest{PatientId: pidHex, Sequence: 1, Accessor: docHex}, o...)
		}, func() proto.Message { return new(emrv1.QueryLastAccessResponse) }},
		{"Study", "/emrchain/v1/studies/" + study, func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Study(ctx, &emrv1.QueryStudyRequest{Id: study}, o...)
		}, func() proto.Message { return new(emrv1.QueryStudyResponse) }},
		{"StudyShares", "/emrchain/v1/studies/" + study + "/shares?page.limit=1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.StudyShares(ctx, &emrv1.QueryStudySharesRequest{StudyId: study, Page: &emrv1.PageRequest{Limit: 1}}, o...)
		}, func() proto.Message { return new(emrv1.QueryStudySharesResponse) }},
		{"BlobRefs", "/emrchain/v1/blob_refs?limit=2", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.BlobRefs(ctx, &emrv1.QueryBlobRefsRequest{Limit: 2}, o...)
		}, func() proto.Message { return new(emrv1.QueryBlobRefsResponse) }},
		{"Validators", "/emrchain/v1/validators", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Validators(ctx, &emrv1.QueryValidatorsRequest{}, o...)
		}, func() proto.Message { return new(emrv1.QueryValidatorsResponse) }},
		{"ValidatorKey", validatorPath, func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.ValidatorKey(ctx, &emrv1.QueryValidatorKeyRequest{PubKey: validatorKey}, o...)
		}, func() proto.Message { return new(emrv1.QueryValidatorKeyResponse) }},
		{"Proposal", "/emrchain/v1/proposals/1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Proposal(ctx, &emrv1.QueryProposalRequest{Id: 1}, o...)
		}, func() proto.Message { return new(emrv1.QueryProposalResponse) }},
		{"Proposals", "/emrchain/v1/proposals?limit=1", func(ctx context.Context, o ...grpc.CallOption) (proto.Message, error) {
			return n.query.Proposals(ctx, &emrv1.QueryProposalsRequest{Limit: 1}, o...)
		}, func() proto.Message { return new(emrv1.QueryProposalsResponse) }},
	}
	covered := map[string]bool{}
	for _, r := range routes {
		covered[r.method] = true
	}
	for _, m := range emrv1.Query_ServiceDesc.Methods {
		if !covered[m.MethodName] {
			t.Errorf("Query/%s has no route in this test", m.MethodName)
		}
	}

	t.Run("gRPC equals REST at a pinned height", func(t *testing.T) {
		pinned := metadata.AppendToOutgoingContext(ctx, heightMD, strconv.FormatInt(height, 10))
		for i, r := range routes {
			var hdr metadata.MD
			viaGRPC, err := r.grpc(pinned, grpc.Header(&hdr))
			if err != nil {
				t.Errorf("%s over gRPC at %d: %v", r.method, height, err)
				continue
			}
			if got := hdr.Get(heightMD); len(got) != 1 || got[0] != strconv.FormatInt(height, 10) {
				t.Errorf("%s over gRPC: header %s = %q, want %d", r.method, heightMD, got, height)
			}
			// Half the routes pin the height by ?height=, half by the header.
			call := restCall{method: http.MethodGet, path: r.path}
			if i%2 == 0 {
				sep := "?"
				if strings.Contains(r.path, "?") {
					sep = "&"
				}
				call.path += sep + "height=" + strconv.FormatInt(height, 10)
			} else {
				call.header = http.Header{"X-Emrchain-Height": {strconv.FormatInt(height, 10)}}
			}
			rep := n.rest(ctx, t, call)
			if rep.status != http.StatusOK {
				t.Errorf("%s over REST: %d %s", call.path, rep.status, rep.body)
				continue
			}
			if got := rep.header.Get("X-Emrchain-Height"); got != strconv.FormatInt(height, 10) {
				t.Errorf("%s over REST: X-Emrchain-Height %q, want %d", r.method, got, height)
			}
			viaREST := r.resp()
			if err := protojson.Unmarshal(rep.body, viaREST); err != nil {
				t.Errorf("%s over REST: %v\n%s", r.method, err, rep.body)
				continue
			}
			if !proto.Equal(viaGRPC, viaREST) {
				t.Errorf("%s at %d:\n gRPC %v\n REST %v", r.method, height, viaGRPC, viaREST)
			}
			if viaGRPC.(heightResponse).GetHeight() != height {
				t.Errorf("%s answered height %d, want %d", r.method, viaGRPC.(heightResponse).GetHeight(), height)
			}
		}
		// A key whose standard base64 has "+" and "/" (none a validator):
		// URL-safe, it is read (count 0, no validator); standard, its "/"
		// (escaped or not) splits the path, which no route matches.
		odd := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:32]
		std := base64.StdEncoding.EncodeToString(odd)
		if !strings.Contains(std, "+") || !strings.Contains(std, "/") {
			t.Fatalf("test key %s lacks '+' or '/'", std)
		}
		got := n.rest(ctx, t, restCall{method: http.MethodGet, path: "/emrchain/v1/validators/" + base64.URLEncoding.EncodeToString(odd)})
		var oddKey emrv1.QueryValidatorKeyResponse
		if err := protojson.Unmarshal(got.body, &oddKey); got.status != http.StatusOK || err != nil || oddKey.Validator != nil || oddKey.Changes != 0 || oddKey.Height == 0 {
			t.Errorf("GET a key never a validator, URL-safe: %d %s (%v)", got.status, got.body, err)
		}
		for _, path := range []string{std, strings.ReplaceAll(std, "/", "%2F")} {
			if rep := n.rest(ctx, t, restCall{method: http.MethodGet, path: "/emrchain/v1/validators/" + path}); rep.status != http.StatusNotFound {
				t.Errorf("GET a key in standard base64 with '/' (%s): %d %s, want 404", path, rep.status, rep.body)
			}
		}
		// The pin matters: the latest state has the second read.
		var pinnedEvents, latest emrv1.QueryAccessEventsResponse
		rep := n.rest(ctx, t, restCall{method: http.MethodGet, path: "/emrchain/v1/patients/" + pidHex + "/access_events?height=" + strconv.FormatInt(height, 10)})
		_ = protojson.Unmarshal(rep.body, &pinnedEvents)
		rep = n.rest(ctx, t, restCall{method: http.MethodGet, path: "/emrchain/v1/patients/" + pidHex + "/access_events"})
		_ = protojson.Unmarshal(rep.body, &latest)
		if len(pinnedEvents.Events) != 2 || len(latest.Events) != 3 || latest.Height <= height {
			t.Errorf("access events: %d at %d, %d at latest %d; want 2 (a read, a break-glass read) and 3", len(pinnedEvents.Events), height, len(latest.Events), latest.Height)
		}
	})

	t.Run("bad input is a 4xx JSON error", func(t *testing.T) {
		unknownAddr, unknownPid := hx(bytes.Repeat([]byte{0xab}, 20)), hx(apptest.PatientID("nobody"))
		records := "/emrchain/v1/patients/" + pidHex + "/records"
		big := bytes.Repeat([]byte("A"), 4<<20)
		type badCase struct {
			call restCall
			want int // 0 = any 4xx
		}
		get := func(path string, want int) badCase {
			return badCase{restCall{method: http.MethodGet, path: path}, want}
		}
		post := func(body string, want int) badCase {
			return badCase{restCall{method: http.MethodPost, path: "/emrchain/v1/txs", body: []byte(body)}, want}
		}
		withHeader := func(c badCase, h string) badCase {
			c.call.header = http.Header{"X-Emrchain-Height": {h}}
			return c
		}
		cases := []badCase{
			get("/emrchain/v1/members/zz", 400),
			get("/emrchain/v1/members/"+unknownAddr, 404),
			get("/emrchain/v1/accounts/not-hex", 400),
			get("/emrchain/v1/accounts/"+unknownAddr+"/patient", 404),
			get("/emrchain/v1/patients/not-hex", 400),
			get("/emrchain/v1/patients/"+unknownPid, 404),
			get("/emrchain/v1/patients/"+unknownPid+"/records", 404),
			get("/emrchain/v1/patients/"+unknownPid+"/permissions", 404),
			get("/emrchain/v1/patients/"+unknownPid+"/access_events", 404),
			get("/emrchain/v1/patients/"+unknownPid+"/shares", 404),
			get("/emrchain/v1/patients/"+unknownPid+"/records/1/access/"+docHex, 404),
			get(records+"/abc", 400),
			get(records+"/-1", 400),
			get(records+"/99999999999999999999999", 400),
			get(records+"/999", 404),
			get(records+"?page.limit=100000", 400),
			get(records+"?page.limit=-1", 400),
			get(records+"?page.limit=99999999999", 400),
			get(records+"?page.after=x", 400),
			get(records+"?categroy=imaging", 400),
			get(records+"?page_limit=1", 400),
			get(records+"?page.limt=1", 400),
			get(records+"?category.x=1", 400),
			get("/emrchain/v1/params?foo=1", 400),
			get("/emrchain/v1/patients/"+pidHex+"/permissions?grantee=abcd", 400),
			{restCall{method: http.MethodPost, path: "/emrchain/v1/txs?async=true", body: []byte(`{"tx": "AAAA"}`)}, 400},
			// A GET route is not served for a form POST or a method
			// override (the gateway would read the body's parameters).
			{restCall{method: http.MethodPost, path: records + "?categroy=imaging", body: []byte("height=1"),
				header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}, 405},
			{restCall{method: http.MethodPost, path: "/emrchain/v1/params?foo=1", header: http.Header{"X-Http-Method-Override": {"GET"}}}, 405},
			get(records+"?page.limit=%zz", 400),
			get(records+"?height=1&page.limit=%zz", 400),
			get("/emrchain/v1/patients/zz/shares/1", 400),
			get("/emrchain/v1/patients/"+strings.Repeat("0", 63)+"/shares/1", 400),
			get(records[:len(records)-len("records")]+"shares/999", 404),
			get("/emrchain/v1/validators/"+base64.URLEncoding.EncodeToString(validatorKey[:31]), 400),
			get("/emrchain/v1/validators/"+strings.TrimRight(base64.URLEncoding.EncodeToString(validatorKey), "="), 400),
			get("/emrchain/v1/validators/"+hx(validatorKey), 400),
			get("/emrchain/v1/validators/not*base64", 400),
			get("/emrchain/v1/organizations/no-such-org", 404),
			get("/emrchain/v1/organizations/"+strings.Repeat("x", 3000), 400),
			get("/emrchain/v1/studies/no-such-study", 404),
			get("/emrchain/v1/studies/no-such-study/shares", 404),
			get("/emrchain/v1/params?height=abc", 400),
			get("/emrchain/v1/params?height=-5", 400),
			get("/emrchain/v1/params?height=999999999", 503),
			get("/emrchain/v1/params?height=1&height=2", 400),
			withHeader(get("/emrchain/v1/params", 400), "x"),
			withHeader(get("/emrchain/v1/params?height=1", 400), "2"),
			get("/emrchain/v1/nope", 404),
			get("/nope", 404),
			{restCall{method: http.MethodDelete, path: "/emrchain/v1/params"}, 405},
			get("/emrchain/v1/txs", 405),
			{restCall{method: http.MethodPost, path: "/openapi.json", body: []byte("{}")}, 405},
			post("{", 400),
			post(`[1,2]`, 400),
			post(`{}`, 400),
			post(`{"tx": ""}`, 400),
			post(`{"tx": "%%%"}`, 400),
			post(`{"tx": "`+strings.Repeat("%", 500_000)+`"}`, 400),
			post(`{"`+strings.Repeat("x", 500_000)+`": 1}`, 400),
			post(`{"bogus": 1, "tx": "AAAA"}`, 400),
			post(`{"tx": "AAAA", "async": "maybe"}`, 400),
			post(`{"tx": "`+string(big)+`"}`, 413),
			{restCall{method: http.MethodPost, path: "/emrchain/v1/txs", body: []byte(`{"tx": "` + string(big) + `"}`), chunked: true}, 413},
		}
		for _, c := range cases {
			rep := n.rest(ctx, t, c.call)
			name := c.call.method + " " + c.call.path
			if len(name) > 120 {
				name = name[:120] + "..."
			}
			if (c.want == 0 && (rep.status < 400 || rep.status > 499)) || (c.want != 0 && rep.status != c.want) {
				t.Errorf("%s: HTTP %d %s; want %d", name, rep.status, rep.body, c.want)
				continue
			}
			if retry := rep.header.Get("Retry-After"); (rep.status == http.StatusServiceUnavailable) != (retry == "1") {
				t.Errorf("%s: HTTP %d with Retry-After %q", name, rep.status, retry)
			}
			if len(rep.body) > maxRESTErrorMessage+200 {
				t.Errorf("%s: an error body of %d bytes", name, len(rep.body))
			}
			var e struct {
				Code    *int    `json:"code"`
				Status  *string `json:"status"`
				Message *string `json:"message"`
				Height  *string `json:"height"` // a NOT_FOUND's, as X-Emrchain-Height
			}
			dec := json.NewDecoder(bytes.NewReader(rep.body))
			dec.DisallowUnknownFields()
			if ct := rep.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: Content-Type %q", name, ct)
			}
			if err := dec.Decode(&e); err != nil || e.Code == nil || e.Status == nil || e.Message == nil ||
				*e.Code == 0 || *e.Message == "" || codes.Code(*e.Code).String() != *e.Status {
				t.Errorf("%s: error body %s (%v)", name, rep.body, err)
			}
			// A NOT_FOUND says the height it was read at, in the body and
			// the header; no other error does (none read a height).
			if hdr := rep.header.Get(heightHeader); e.Code != nil && codes.Code(*e.Code) == codes.NotFound {
				if e.Height == nil || *e.Height == "" || *e.Height != hdr {
					t.Errorf("%s: NOT_FOUND %s with %s %q: want the height in both", name, rep.body, heightHeader, hdr)
				}
			} else if e.Height != nil || hdr != "" {
				t.Errorf("%s: error %s with %s %q: only a NOT_FOUND says a height", name, rep.body, heightHeader, hdr)
			}
		}
		// The same mistakes over gRPC.
		pinned := func(h string) context.Context { return metadata.AppendToOutgoingContext(ctx, heightMD, h) }
		for _, c := range []struct {
			name string
			err  error
			want codes.Code
		}{
			{"malformed address", second(n.query.Member(ctx, &emrv1.QueryMemberRequest{Address: "zz"})), codes.InvalidArgument},
			{"short consensus key", second(n.query.ValidatorKey(ctx, &emrv1.QueryValidatorKeyRequest{PubKey: validatorKey[:31]})), codes.InvalidArgument},
			{"unknown patient", second(n.query.Patient(ctx, &emrv1.QueryPatientRequest{PatientId: unknownPid})), codes.NotFound},
			{"huge page", second(n.query.Records(ctx, &emrv1.QueryRecordsRequest{PatientId: pidHex, Page: &emrv1.PageRequest{Limit: 1 << 30}})), codes.InvalidArgument},
			{"bad height", second(n.query.Params(pinned("x"), &emrv1.QueryParamsRequest{})), codes.InvalidArgument},
			{"future height", second(n.query.Params(pinned("999999999"), &emrv1.QueryParamsRequest{})), codes.Unavailable},
			{"empty tx", second(n.txs.BroadcastTx(ctx, &emrv1.BroadcastTxRequest{})), codes.InvalidArgument},
		} {
			if got := grpcstatus.Code(c.err); got != c.want {
				t.Errorf("gRPC %s: %v, want %v", c.name, c.err, c.want)
			}
		}
		// A long height header is not echoed back whole.
		long := strings.Repeat("9", 8<<10)
		err := second(n.query.Params(pinned(long), &emrv1.QueryParamsRequest{}))
		if st := grpcstatus.Convert(err); st.Code() != codes.InvalidArgument || len(st.Message()) > 300 {
			t.Errorf("an 8 KiB height: %v, a message of %d bytes; want InvalidArgument quoting at most a prefix", st.Code(), len(st.Message()))
		}
		// One past the header bound (grpcMaxHeaderListBytes) is refused
		// before it is read.
		huge := strings.Repeat("9", 1<<20)
		err = second(n.query.Params(pinned(huge), &emrv1.QueryParamsRequest{}))
		if st := grpcstatus.Convert(err); st.Code() == codes.OK || len(st.Message()) > 300 {
			t.Errorf("a 1 MiB height: %v, a message of %d bytes; want a refusal quoting at most a prefix", st.Code(), len(st.Message()))
		}
	})

	t.Run("OpenAPI lists every route", func(t *testing.T) {
		rep := n.rest(ctx, t, restCall{method: http.MethodGet, path: "/openapi.json"})
		var doc struct {
			Swagger string                                `json:"swagger"`
			Paths   map[string]map[string]json.RawMessage `json:"paths"`
		}
		if rep.status != http.StatusOK || json.Unmarshal(rep.body, &doc) != nil || doc.Swagger != "2.0" {
			t.Fatalf("/openapi.json: %d %.200s", rep.status, rep.body)
		}
		if !bytes.Equal(rep.body, emrv1.OpenAPI) {
			t.Error("/openapi.json is not the generated document")
		}
		param := regexp.MustCompile(`\{[^}]*\}`)
		served := map[string]bool{}
		for p, ops := range doc.Paths {
			for op := range ops {
				served[strings.ToUpper(op)+" "+param.ReplaceAllString(p, "{}")] = true
			}
		}
		var want []string
		for _, svc := range []protoreflect.ServiceDescriptor{
			emrv1.File_emrchain_v1_query_proto.Services().ByName("Query"),
			emrv1.File_emrchain_v1_tx_service_proto.Services().ByName("TxService"),
		} {
			for i := 0; i < svc.Methods().Len(); i++ {
				m := svc.Methods().Get(i)
				rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
				switch {
				case m.IsStreamingClient():
					if rule != nil {
						t.Errorf("%s streams from the client, which REST cannot: it must have no route", m.FullName())
					}
				case rule.GetGet() != "":
					want = append(want, "GET "+param.ReplaceAllString(rule.GetGet(), "{}"))
				case rule.GetPost() != "":
					want = append(want, "POST "+param.ReplaceAllString(rule.GetPost(), "{}"))
				default:
					t.Errorf("%s has no GET or POST route", m.FullName())
				}
			}
		}
		sort.Strings(want)
		if len(want) != len(served) {
			t.Errorf("OpenAPI serves %d operations, the protos define %d", len(served), len(want))
		}
		for _, w := range want {
			if !served[w] {
				t.Errorf("OpenAPI lacks %s", w)
			}
		}
		if len(want) != len(emrv1.Query_ServiceDesc.Methods)+1 {
			t.Errorf("routes from the protos: %v", want)
		}
	})

	t.Run("CORS", func(t *testing.T) {
		rep := n.rest(ctx, t, restCall{method: http.MethodGet, path: "/emrchain/v1/params", header: http.Header{"Origin": {origin}}})
		if rep.status != http.StatusOK || rep.header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(rep.header.Get("Access-Control-Expose-Headers"), "X-Emrchain-Height") {
			t.Errorf("GET from %s: %d, headers %v", origin, rep.status, rep.header)
		}
		rep = n.rest(ctx, t, restCall{method: http.MethodOptions, path: "/emrchain/v1/txs", header: http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}}})
		if rep.status/100 != 2 || rep.header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("preflight from %s: %d, headers %v", origin, rep.status, rep.header)
		}
		rep = n.rest(ctx, t, restCall{method: http.MethodGet, path: "/emrchain/v1/params", header: http.Header{"Origin": {"https://other.example"}}})
		if got := rep.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("a foreign origin got Access-Control-Allow-Origin %q", got)
		}
	})

	t.Run("reflection", func(t *testing.T) {
		stream, err := reflectionpb.NewServerReflectionClient(n.conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		found := map[string]bool{}
		for _, s := range resp.GetListServicesResponse().GetService() {
			found[s.Name] = true
		}
		if !found["emrchain.v1.Query"] || !found["emrchain.v1.TxService"] {
			t.Errorf("reflection lists %v", found)
		}
	})

	t.Run("BroadcastTxs", func(t *testing.T) {
		stream, err := n.txs.BroadcastTxs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		access := func(seq uint64) []byte {
			return doc.Tx(apiChainID, seq, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
		}
		cases := []struct {
			name string
			tx   []byte
			code uint32     // of the result
			not  codes.Code // of the refusal; OK for a result
			at   int64      // the result's height
		}{
			{"next sequence", access(4), 0, codes.OK, 0},
			{"empty", nil, 0, codes.InvalidArgument, 0},
			{"stale sequence", access(0), app.ErrBadSequence.Code(), codes.OK, 0},
			// Checked after sequence 4 of the same stream: in order.
			{"the one after", access(5), 0, codes.OK, 0},
			{"committed already", tx1, 0, codes.OK, first.Height},
		}
		// All sent before any answer is read: answered in order.
		for _, c := range cases {
			if err := stream.Send(&emrv1.BroadcastTxsRequest{Tx: c.tx}); err != nil {
				t.Fatalf("%s: send: %v", c.name, err)
			}
		}
		for _, c := range cases {
			r, err := stream.Recv()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if c.not != codes.OK {
				if got := codes.Code(r.GetRefusal().GetCode()); got != c.not || r.GetRefusal().GetMessage() == "" {
					t.Errorf("%s: %v, want refusal %v", c.name, r, c.not)
				}
				continue
			}
			res := r.GetResult()
			if res == nil || res.Code != c.code || res.Height != c.at || res.Hash != hex.EncodeToString(txHash(c.tx)) || (c.code != 0) != (res.Log != "") {
				t.Errorf("%s: %v, want code %d at height %d", c.name, r, c.code, c.at)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if r, err := stream.Recv(); err != io.EOF {
			t.Fatalf("after CloseSend: %v, %v; want the stream's end", r, err)
		}
		for { // the stream's txs commit
			a, err := n.query.Account(ctx, &emrv1.QueryAccountRequest{Address: docHex})
			if err != nil {
				t.Fatal(err)
			}
			if a.Account.GetNextSequence() == 6 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("clinician's next sequence %d, want 6", a.Account.GetNextSequence())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	// A stream left open does not hold the node's stop: it ends at once,
	// UNAVAILABLE, instead of when the stop's time is up.
	idle, err := n.txs.BroadcastTxs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Send(&emrv1.BroadcastTxsRequest{}); err != nil {
		t.Fatal(err)
	}
	if r, err := idle.Recv(); err != nil || r.GetRefusal() == nil {
		t.Fatalf("idle stream's first answer: %v, %v", r, err)
	}
	if err := n.proc.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("node did not exit cleanly on SIGTERM: %v", err)
	}
	if _, err := idle.Recv(); grpcstatus.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("idle stream at the stop: %v, want UNAVAILABLE, shutting down", err)
	}
	logText, _ := os.ReadFile(n.proc.log)
	for _, line := range []string{"gRPC server stopped", "REST server stopped"} {
		if !bytes.Contains(logText, []byte(line)) {
			t.Errorf("log lacks %q", line)
		}
	}

	// After a restart the mempool's cache of seen txs is empty, so a
	// committed tx sent again reaches CheckTx, which refuses its sequence
	// (used by itself), or, past its timeout height, refuses it as
	// expired: the answer is still its committed result, from the tx
	// index, not a rejection a client would re-sign after. The index is
	// lost here first (as a stop between a commit and its indexing loses
	// the last block's): start indexes again the blocks it lacks.
	if err := os.RemoveAll(filepath.Join(n.home, "data", "tx_index.db")); err != nil {
		t.Fatal(err)
	}
	n.proc = startNode(t, n.home, "node-restarted.log")
	waitHeight(ctx, t, n.proc, n.rpcPort, max(first.Height+1, int64(tx1Timeout)+1))
	if logText, _ := os.ReadFile(n.proc.log); !bytes.Contains(logText, []byte("indexed blocks the tx index lacked")) {
		t.Errorf("the restart's log does not say it indexed the blocks again")
	}
	n.waitREST(ctx, t)
	for name, r := range map[string]*emrv1.BroadcastTxResponse{"REST": n.broadcastREST(ctx, t, tx1), "gRPC": n.broadcastGRPC(ctx, t, tx1, false)} {
		if r.Code != 0 || r.Height != first.Height || r.Hash != first.Hash {
			t.Errorf("%s: a committed tx sent again after a restart: %+v, want %+v", name, r, first)
		}
	}
}

// second returns the error of a call's two results.
func second[T any](_ T, err error) error { return err }

// TestAPIPortInUse: a listen address already taken stops start with an
// error naming the server and the address, before the node starts (it
// would otherwise join consensus, then exit).
func TestAPIPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	home := t.TempDir()
	bin := binary(t)
	out, err := exec.Command(bin, "init", "--home", home, "--chain-id", "emr-port-test",
		"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", freeport.Get(t)),
		"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", freeport.Get(t)),
		"--grpc.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--api.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--sidecar.listen", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t))).CombinedOutput()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, flag := range []string{"--grpc.address", "--api.address", "--sidecar.listen"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, "start", "--home", home, "--log-level", "main:info,*:error", flag, taken.Addr().String()).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		// The error line (log lines of the node stopping may interleave).
		var errLine string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "emrchaind: ") {
				errLine = line
			}
		}
		if err == nil || timedOut || !strings.Contains(errLine, "address already in use") || !strings.Contains(errLine, taken.Addr().String()) ||
			strings.Contains(string(out), "node started") {
			t.Errorf("start %s %s: %v; error line %q\n%s", flag, taken.Addr(), err, errLine, out)
		}
	}
}

// TestServingStatus: the gRPC health is SERVING only for a node with
// committed state that is not catching up and whose latest block is at
// most max_head_age old by the node's clock (no bound at 0); REST's
// /healthz says the same as an HTTP status, with the reason while not
// serving.
func TestServingStatus(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	const bound = time.Minute
	serving, notServing := healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING
	for _, tc := range []struct {
		catchingUp bool
		height     int64
		age        time.Duration // of the block at height, by now
		maxAge     time.Duration
		want       healthpb.HealthCheckResponse_ServingStatus
		reason     string // in the reason while NOT_SERVING
	}{
		{false, 5, bound / 2, bound, serving, ""},
		{false, 5, bound, bound, serving, ""},
		{false, 5, bound + time.Millisecond, bound, notServing, "more than max_head_age 1m0s"},
		{false, 5, time.Hour, bound, notServing, "is 1h0m0s old"},
		{false, 5, -time.Minute, bound, serving, ""}, // the block's time ahead of the node's clock
		{false, 5, time.Hour, 0, serving, ""},
		{true, 5, bound / 2, bound, notServing, "catching up"},
		{true, 5, time.Hour, bound, notServing, "catching up"},
		{true, 5, time.Hour, 0, notServing, "catching up"},
		{false, 0, 0, bound, notServing, "no committed state"},
		{true, 0, 0, 0, notServing, "catching up"},
		{false, 0, 0, 0, notServing, "no committed state"},
	} {
		head := nodeHead{catchingUp: tc.catchingUp, height: tc.height}
		if tc.height > 0 {
			head.time = now.Add(-tc.age)
		}
		name := fmt.Sprintf("catching up %v, height %d, head %s old, max_head_age %s", tc.catchingUp, tc.height, tc.age, tc.maxAge)
		got := servingStatus(head, now, tc.maxAge)
		if got.status != tc.want || (got.reason == "") != (tc.want == serving) || !strings.Contains(got.reason, tc.reason) {
			t.Errorf("%s: %v %q, want %v %q", name, got.status, got.reason, tc.want, tc.reason)
		}
		// REST's /healthz says the same, as an HTTP status.
		rec := httptest.NewRecorder()
		serveHealth(rec, httptest.NewRequest(http.MethodGet, restHealthPath, nil), func() nodeHealth { return got })
		var h restHealth
		if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil || h.Status != tc.want.String() || h.Height != tc.height || h.CatchingUp != tc.catchingUp ||
			!h.BlockTime.Equal(head.time) || h.Reason != got.reason ||
			(rec.Code == http.StatusOK) != (tc.want == serving) || (rec.Code == http.StatusServiceUnavailable) != (rec.Header().Get("Retry-After") == "1") {
			t.Errorf("GET /healthz (%s): %d %s", name, rec.Code, rec.Body)
		}
	}
	// A head whose time the node cannot read is not taken as fresh.
	if got := servingStatus(nodeHead{height: 5}, now, bound); got.status != notServing || !strings.Contains(got.reason, "unknown") {
		t.Errorf("head without a time: %v %q", got.status, got.reason)
	}
}

// TestHealthStaleHead: through the real node, its gRPC server and REST
// gateway say NOT_SERVING (REST: 503 with the reason) while the node's
// latest block is older than [grpc] max_head_age by the node's clock. The
// bound is below one block interval, so the head is always past it: the
// test needs no frozen chain and waits for no bound.
func TestHealthStaleHead(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	n := startAPINodeWith(ctx, t, func(c *appConfig) { c.GRPC.MaxHeadAge = time.Millisecond })
	// The node keeps up (catching_up is false) and makes blocks, yet every
	// block is more than a millisecond old by its clock.
	waitHeight(ctx, t, n.proc, n.rpcPort, 2)
	r := n.rest(ctx, t, restCall{method: http.MethodGet, path: restHealthPath})
	var h restHealth
	if err := json.Unmarshal(r.body, &h); err != nil || r.status != http.StatusServiceUnavailable || h.Status != "NOT_SERVING" ||
		h.CatchingUp || h.Height < 1 || h.BlockTime.IsZero() || time.Since(h.BlockTime) > time.Minute || !strings.Contains(h.Reason, "more than max_head_age 1ms") {
		t.Fatalf("GET /healthz with a head older than max_head_age: %d %s", r.status, r.body)
	}
	// gRPC's health tells no reason: the node logs it once its poll
	// (healthPoll) sees the stale head rather than a node catching up.
	waitLog(ctx, t, n.proc, "health: NOT_SERVING", "more than max_head_age 1ms")
	for _, svc := range []string{"", "emrchain.v1.Query", "emrchain.v1.TxService"} {
		res, err := healthpb.NewHealthClient(n.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health of %q with a head older than max_head_age: %v %v, want NOT_SERVING", svc, res, err)
		}
	}
	// Reads are still answered: the health says where to send clients, it
	// does not refuse them.
	if _, err := n.query.Params(ctx, &emrv1.QueryParamsRequest{}); err != nil {
		t.Fatalf("Params: %v", err)
	}
}
