package main

// Review (API integration angle): failing tests for what a program that
// integrates with emrchaind's REST and gRPC APIs depends on. Each runs the
// real REST handler (newRESTHandler) or the real gRPC server options over an
// in-memory chain (apptest), on loopback only.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/libs/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// reviewGet is one GET to srv: status, header, body.
func reviewGet(t *testing.T, base, path string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// TestRecordsUnknownCategoryIsRefused: the category filter of GET
// .../records is a value from params.categories. A misspelt or unknown one
// ("lab-result", "Lab-Results") is the caller's mistake and must be refused
// (400 INVALID_ARGUMENT, as an unknown parameter name is), not answered 200
// with an empty list, which an EHR shows as "no lab results" for a patient
// who has them.
func TestRecordsUnknownCategoryIsRefused(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	pat, pid := apptest.NewActor("review-cat"), apptest.PatientID("review-cat")
	c.Must(pat, apptest.Enroll(pat))
	c.Must(pat, apptest.AddRecord(pid, "lab-results", "review-cbc"))
	srv := newTestREST(t, c)

	status, _, body := reviewGet(t, srv.URL, fmt.Sprintf("/emrchain/v1/patients/%x/records?category=lab-results", pid))
	if status != http.StatusOK {
		t.Fatalf("the known category: %d %s", status, body)
	}
	for _, cat := range []string{"lab-result", "Lab-Results", "lab-results%20"} {
		status, _, body := reviewGet(t, srv.URL, fmt.Sprintf("/emrchain/v1/patients/%x/records?category=%s", pid, cat))
		var e restErrorBody
		_ = json.Unmarshal(body, &e)
		if status != http.StatusBadRequest || e.Status != "InvalidArgument" {
			t.Errorf("GET records?category=%s (not a category of params): HTTP %d %s; want 400 InvalidArgument", cat, status, body)
		}
	}
}

// TestNotFoundSaysItsHeight: README, "Programs: REST and gRPC":
// "Every answer says its height (height, and the X-Emrchain-Height
// header)". A NOT_FOUND is an answer about one height ("no consent", "not
// enrolled"): from a node that lags, it may be stale, and a program can
// tell only by its height. It carries none: not in the header, not in the
// body.
func TestNotFoundSaysItsHeight(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	pat, pid := apptest.NewActor("review-h"), apptest.PatientID("review-h")
	c.Must(pat, apptest.Enroll(pat))
	srv := newTestREST(t, c)
	doc := apptest.NewActor("review-h-doc")

	for _, path := range []string{
		fmt.Sprintf("/emrchain/v1/patients/%x/permissions/%x", pid, doc.Address), // "has given no consent"
		fmt.Sprintf("/emrchain/v1/patients/%x", apptest.PatientID("review-h-nobody")),
		fmt.Sprintf("/emrchain/v1/patients/%x/records/7", pid),
	} {
		status, hdr, body := reviewGet(t, srv.URL, path)
		if status != http.StatusNotFound {
			t.Fatalf("GET %s: %d %s, want 404", path, status, body)
		}
		var fields map[string]any
		_ = json.Unmarshal(body, &fields)
		_, inBody := fields["height"]
		if hdr.Get("X-Emrchain-Height") == "" && !inBody {
			t.Errorf("GET %s: 404 %s without X-Emrchain-Height or a height in the body: at which height is it not found?", path, body)
		}
	}

	// gRPC: no x-emrchain-height header or trailer on NOT_FOUND either.
	conn := queryGRPC(t, c)
	var header, trailer struct{ md metadata.MD }
	_, err := emrv1.NewQueryClient(conn).Permission(context.Background(),
		&emrv1.QueryPermissionRequest{PatientId: fmt.Sprintf("%x", pid), Grantee: fmt.Sprintf("%x", doc.Address)},
		grpc.Header(&header.md), grpc.Trailer(&trailer.md))
	if grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("gRPC Permission: %v, want NOT_FOUND", err)
	}
	if len(header.md.Get(heightMD)) == 0 && len(trailer.md.Get(heightMD)) == 0 {
		t.Errorf("gRPC NOT_FOUND (%v) carries no %s header or trailer", err, heightMD)
	}
}

// queryGRPC serves the Query service over c with the node's own gRPC
// server options and registration on a loopback port.
func queryGRPC(t *testing.T, c *apptest.Chain) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(grpcServerOptions(4 << 20)...)
	registerAPIServices(srv, newQueryServerOver(app.NewQueryService(c.App), log.NewNopLogger(), queriesPerCPU), nil)
	return serveGRPC(t, srv)
}

// serveGRPC serves srv on a loopback port until the test ends, and
// returns a connection to it.
func serveGRPC(t *testing.T, srv *grpc.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// reviewRawCodec sends and receives raw bytes as "proto".
type reviewRawCodec struct{}

func (reviewRawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (reviewRawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (reviewRawCodec) Name() string { return "proto" }

// TestGRPCMalformedRequestIsInvalidArgument: a request the server
// cannot decode (a patient id that is not UTF-8, truncated protobuf) is the
// caller's mistake. Over REST the same mistake is 400 (decisions.md: "A REST
// parameter that is not UTF-8 was a 500 ... it is a 400"); over gRPC it is
// INTERNAL, the code a program retries or pages an operator for.
func TestGRPCMalformedRequestIsInvalidArgument(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	conn := queryGRPC(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, in := range map[string][]byte{
		"patient id not UTF-8": protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe"),
		"truncated message":    {0x0a, 0x40, 0x41},
	} {
		var out []byte
		err := conn.Invoke(ctx, "/emrchain.v1.Query/Patient", &in, &out, grpc.ForceCodec(reviewRawCodec{}))
		if got := grpcstatus.Code(err); got != codes.InvalidArgument {
			t.Errorf("Query/Patient, %s: %v; want INVALID_ARGUMENT", name, err)
		}
	}
}

// TestOpenAPIMatchesServedErrors: the OpenAPI document served at
// /openapi.json says every error is rpcStatus {code, message, details}; the
// server answers {code, status, message}. A client generated from the
// document with strict decoding (openapi-generator's Java client refuses a
// field the schema lacks) cannot read any error.
func TestOpenAPIMatchesServedErrors(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	srv := newTestREST(t, c)
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Schema struct {
					Ref string `json:"$ref"`
				}
			}
		}
		Definitions map[string]struct{ Properties map[string]json.RawMessage }
	}
	if err := json.Unmarshal(emrv1.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	ref := doc.Paths["/emrchain/v1/patients/{patientId}"]["get"].Responses["default"].Schema.Ref
	schema, ok := doc.Definitions[ref[len("#/definitions/"):]]
	if !ok {
		t.Fatalf("no error schema %q", ref)
	}
	status, _, body := reviewGet(t, srv.URL, fmt.Sprintf("/emrchain/v1/patients/%x", apptest.PatientID("review-nobody")))
	var served map[string]json.RawMessage
	if err := json.Unmarshal(body, &served); err != nil || status != http.StatusNotFound {
		t.Fatalf("%d %s", status, body)
	}
	var extra []string
	for k := range served {
		if _, ok := schema.Properties[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("error body %s has %v, which the OpenAPI error schema %s (properties %v) does not define", body, extra, ref, slices.Sorted(mapKeys(schema.Properties)))
	}
}

// TestOpenAPIDocumentsHeight: README: "send it [the height] back
// (?height=N or the header ...) to page through a list consistently". The
// OpenAPI document, the one description a generated client has, lists no
// height parameter (query or header) on any route, so a generated client
// cannot page consistently or pin a read after its own transaction.
func TestOpenAPIDocumentsHeight(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string }
		}
	}
	if err := json.Unmarshal(emrv1.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/emrchain/v1/patients/{patientId}/records", "/emrchain/v1/members/{grantee}/grants", "/emrchain/v1/patients/{patientId}/access_events"} {
		found := false
		for _, p := range doc.Paths[path]["get"].Parameters {
			if (p.In == "query" && p.Name == "height") || (p.In == "header" && http.CanonicalHeaderKey(p.Name) == "X-Emrchain-Height") {
				found = true
			}
		}
		if !found {
			t.Errorf("OpenAPI GET %s: no height parameter (?height= or X-Emrchain-Height), which the server takes", path)
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestGrantsOfNonMemberIsNotFound: every per-object list answers
// 404 for an object that does not exist (records, permissions, shares and
// access events of an unknown patient, a study's shares), except Grants:
// the grants of an address that is no member (a mistyped clinician) are
// 200 with an empty list, "this clinician holds no consent".
func TestGrantsOfNonMemberIsNotFound(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	srv := newTestREST(t, c)
	status, _, body := reviewGet(t, srv.URL, fmt.Sprintf("/emrchain/v1/patients/%x/permissions", apptest.PatientID("review-nobody")))
	if status != http.StatusNotFound {
		t.Fatalf("permissions of an unknown patient: %d %s", status, body)
	}
	status, _, body = reviewGet(t, srv.URL, fmt.Sprintf("/emrchain/v1/members/%x/grants", apptest.NewActor("review-not-a-member").Address))
	if status != http.StatusNotFound {
		t.Errorf("grants of an address that is no member: HTTP %d %s; want 404 as for the lists of an unknown patient", status, body)
	}
}

// TestBlobRefsLimitAsDocumented: the OpenAPI document (from
// query.proto) said GET /emrchain/v1/blob_refs's limit is "capped by
// params.max_page_size"; the server refuses a larger one (400), as README
// says every list does. A client written to the document, asking for
// "as many as allowed", failed. The document now says what the server
// does, for every list's page size: refused above params.max_page_size.
// (The reviewer's version asked the server for 200; a page size above the
// maximum is refused on every list, so the document was what was wrong.)
func TestBlobRefsLimitAsDocumented(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, Description string }
		}
	}
	if err := json.Unmarshal(emrv1.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	described := map[string]string{}
	for path, ops := range doc.Paths {
		for _, p := range ops["get"].Parameters {
			if p.Name == "limit" || p.Name == "page.limit" {
				described[path+"?"+p.Name] = p.Description
				if !strings.Contains(p.Description, "above params.max_page_size is INVALID_ARGUMENT") {
					t.Errorf("OpenAPI GET %s, %s: %q does not say a page size above params.max_page_size is refused", path, p.Name, p.Description)
				}
			}
		}
	}
	if _, ok := described["/emrchain/v1/blob_refs?limit"]; !ok {
		t.Fatalf("OpenAPI GET /emrchain/v1/blob_refs has no limit parameter (%v)", slices.Sorted(mapKeys(described)))
	}
	c := apptest.New(t, apptest.Options{})
	pat, pid := apptest.NewActor("review-limit"), apptest.PatientID("review-limit")
	c.Must(pat, apptest.Enroll(pat))
	srv := newTestREST(t, c)
	var params emrv1.QueryParamsResponse
	c.Query("Params", &emrv1.QueryParamsRequest{}, &params)
	for _, path := range []string{
		fmt.Sprintf("/emrchain/v1/blob_refs?limit=%d", params.Params.MaxPageSize+1),
		fmt.Sprintf("/emrchain/v1/patients/%x/records?page.limit=%d", pid, params.Params.MaxPageSize+1),
	} {
		status, _, body := reviewGet(t, srv.URL, path)
		var e restErrorBody
		_ = json.Unmarshal(body, &e)
		if status != http.StatusBadRequest || e.Status != "InvalidArgument" {
			t.Errorf("GET %s (max_page_size+1): HTTP %d %s; want 400 InvalidArgument, as the OpenAPI document says", path, status, body)
		}
	}
	for _, path := range []string{
		fmt.Sprintf("/emrchain/v1/blob_refs?limit=%d", params.Params.MaxPageSize),
		fmt.Sprintf("/emrchain/v1/patients/%x/records?page.limit=%d", pid, params.Params.MaxPageSize),
	} {
		if status, _, body := reviewGet(t, srv.URL, path); status != http.StatusOK {
			t.Errorf("GET %s (max_page_size): HTTP %d %s; want 200", path, status, body)
		}
	}
}

// TestUnknownRouteIsNotAMissingObject: a program tells "this patient
// is not enrolled" by NOT_FOUND (code 5). A request to a route that does
// not exist (a typo, "/patient/" for "/patients/", or an API version the
// node does not serve) answers the very same code and status, so the
// program concludes the patient is not enrolled. gRPC answers an unknown
// method UNIMPLEMENTED; REST should be told apart the same way.
func TestUnknownRouteIsNotAMissingObject(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	srv := newTestREST(t, c)
	pid := apptest.PatientID("review-route")
	decode := func(path string) (int, restErrorBody) {
		status, _, body := reviewGet(t, srv.URL, path)
		var e restErrorBody
		_ = json.Unmarshal(body, &e)
		return status, e
	}
	_, missing := decode(fmt.Sprintf("/emrchain/v1/patients/%x", pid))
	for _, path := range []string{fmt.Sprintf("/emrchain/v1/patient/%x", pid), fmt.Sprintf("/emrchain/v2/patients/%x", pid)} {
		status, e := decode(path)
		if e.Code == missing.Code && e.Status == missing.Status {
			t.Errorf("GET %s (no such route): HTTP %d code %d %q, the same code and status as an unknown patient (%d %q)", path, status, e.Code, e.Status, missing.Code, missing.Status)
		}
	}
}

// TestRESTErrorBodyIsErrorBody: the body writeRESTError sends has the
// fields, by JSON name, of emrchain.v1.ErrorBody, which the OpenAPI
// document names as every route's error; a NOT_FOUND's height is a string,
// as protojson writes an int64 (and as every answer's height is).
func TestRESTErrorBodyIsErrorBody(t *testing.T) {
	served, err := json.Marshal(restErrorBody{Code: codes.NotFound, Status: codes.NotFound.String(), Message: "m", Height: 7})
	if err != nil {
		t.Fatal(err)
	}
	var got emrv1.ErrorBody
	if err := protojson.Unmarshal(served, &got); err != nil {
		t.Fatalf("%s is no emrchain.v1.ErrorBody: %v", served, err)
	}
	if got.Code != int32(codes.NotFound) || got.Status != "NotFound" || got.Message != "m" || got.Height != 7 {
		t.Errorf("%s read as %v", served, &got)
	}
	want, _ := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(&emrv1.ErrorBody{Height: 7})
	var wantFields, servedFields map[string]any
	_ = json.Unmarshal(want, &wantFields)
	_ = json.Unmarshal(served, &servedFields)
	if !slices.Equal(slices.Sorted(mapKeys(wantFields)), slices.Sorted(mapKeys(servedFields))) {
		t.Errorf("served fields %v, ErrorBody's %v", slices.Sorted(mapKeys(servedFields)), slices.Sorted(mapKeys(wantFields)))
	}
	if servedFields["height"] != "7" {
		t.Errorf("height served as %#v, want the string \"7\"", servedFields["height"])
	}
}
