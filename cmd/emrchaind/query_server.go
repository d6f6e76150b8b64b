package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/cometbft/cometbft/libs/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// heightMD is the metadata key (gRPC) and header (REST, also settable as the
// ?height= query parameter) that pins a query to a block height, and the
// response header that says which height answered. 0 or absent = the last
// committed height.
const heightMD = "x-emrchain-height"

// queryServer is the emrchain.v1.Query service both API servers expose: it
// reads the height from the request metadata, calls app.QueryService (the
// same code as ABCI queries), sets the answered height as a response header
// and turns app errors into gRPC status errors (grpc_codes.go).
//
// It does this in the methods rather than in gRPC interceptors because the
// REST gateway calls it in-process (Register*HandlerServer), where gRPC
// interceptors do not run; the gateway does carry incoming metadata and
// response headers in-process, so REST and gRPC go through exactly this code.
type queryServer struct {
	emrv1.UnimplementedQueryServer
	inner  *app.QueryService
	logger log.Logger
	// slots holds one token per query being served, gRPC and REST
	// together: a query waits for a free one (until its deadline).
	slots chan struct{}
}

var _ emrv1.QueryServer = (*queryServer)(nil)

// queriesPerCPU bounds the queries served at once, per CPU. The connection
// limits (grpc_server.go, rest_server.go) allow tens of thousands of
// concurrent calls; each query reads IAVL and builds proofs on the cores
// consensus needs, and past a few per core more at once only add memory
// and lengthen every answer.
const queriesPerCPU = 4

func newQueryServer(env serviceEnv) *queryServer {
	return newQueryServerOver(app.NewQueryService(env.app), env.logger.With("module", "query"), queriesPerCPU*runtime.GOMAXPROCS(0))
}

// newQueryServerOver serves inner with at most slots queries at once.
func newQueryServerOver(inner *app.QueryService, logger log.Logger, slots int) *queryServer {
	return &queryServer{inner: inner, logger: logger, slots: make(chan struct{}, slots)}
}

// requestHeight is the height the request's metadata asks for; 0 = latest.
func requestHeight(ctx context.Context) (int64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(heightMD)
	if len(vals) == 0 {
		return 0, nil
	}
	for _, v := range vals[1:] {
		if strings.TrimSpace(v) != strings.TrimSpace(vals[0]) {
			return 0, grpcstatus.Errorf(codes.InvalidArgument, "conflicting %s values %s and %s", heightMD, app.QuoteInput(vals[0]), app.QuoteInput(v))
		}
	}
	h, err := strconv.ParseInt(strings.TrimSpace(vals[0]), 10, 64)
	if err != nil || h < 0 {
		return 0, grpcstatus.Errorf(codes.InvalidArgument, "invalid %s %s: want a block height, 0 or absent for the latest", heightMD, app.QuoteInput(vals[0]))
	}
	return h, nil
}

// heightResponse is every Query response: each carries the height it was
// read at.
type heightResponse interface {
	proto.Message
	GetHeight() int64
}

// serveQuery runs one query method for s.
func serveQuery[Req any, Resp heightResponse](ctx context.Context, s *queryServer, method string, req Req,
	call func(context.Context, Req) (Resp, error)) (resp Resp, err error) {
	var zero Resp
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("query panicked", "method", method, "panic", r, "stack", string(debug.Stack()))
			resp, err = zero, grpcstatus.Errorf(codes.Internal, "internal error serving %s", method)
		}
	}()
	h, err := requestHeight(ctx)
	if err != nil {
		return zero, err
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return zero, grpcstatus.Errorf(grpcstatus.FromContextError(ctx.Err()).Code(),
			"%s: the request ended while it waited for one of the node's %d query slots (all busy)", method, cap(s.slots))
	}
	resp, err = call(app.WithHeight(ctx, h), req)
	if err != nil {
		answered := app.AnsweredHeight(err)
		err = grpcError(err)
		switch grpcstatus.Code(err) {
		case codes.Internal:
			// The error names the node's own stores; the caller gets none of it.
			s.logger.Error("query failed", "method", method, "height", h, "err", err)
			err = grpcstatus.Errorf(codes.Internal, "internal error serving %s (the node's log has the details)", method)
		case codes.NotFound:
			// "Not found" is an answer about one state, as a found object
			// is: it says its height (from a node that lags, it may be
			// stale). The REST gateway copies it into the error answer.
			if answered > 0 {
				setHeight(ctx, answered)
			}
		}
		return zero, err
	}
	setHeight(ctx, resp.GetHeight()) // also in the response body
	return resp, nil
}

// setHeight sends the height an answer was read at as the call's
// heightMD header. It fails only outside a gRPC call (never here).
func setHeight(ctx context.Context, h int64) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(heightMD, strconv.FormatInt(h, 10)))
}

func (s *queryServer) Params(ctx context.Context, r *emrv1.QueryParamsRequest) (*emrv1.QueryParamsResponse, error) {
	return serveQuery(ctx, s, "Params", r, s.inner.Params)
}
func (s *queryServer) Organization(ctx context.Context, r *emrv1.QueryOrganizationRequest) (*emrv1.QueryOrganizationResponse, error) {
	return serveQuery(ctx, s, "Organization", r, s.inner.Organization)
}
func (s *queryServer) Organizations(ctx context.Context, r *emrv1.QueryOrganizationsRequest) (*emrv1.QueryOrganizationsResponse, error) {
	return serveQuery(ctx, s, "Organizations", r, s.inner.Organizations)
}
func (s *queryServer) Members(ctx context.Context, r *emrv1.QueryMembersRequest) (*emrv1.QueryMembersResponse, error) {
	return serveQuery(ctx, s, "Members", r, s.inner.Members)
}
func (s *queryServer) Member(ctx context.Context, r *emrv1.QueryMemberRequest) (*emrv1.QueryMemberResponse, error) {
	return serveQuery(ctx, s, "Member", r, s.inner.Member)
}
func (s *queryServer) EmergencyReads(ctx context.Context, r *emrv1.QueryEmergencyReadsRequest) (*emrv1.QueryEmergencyReadsResponse, error) {
	return serveQuery(ctx, s, "EmergencyReads", r, s.inner.EmergencyReads)
}
func (s *queryServer) Account(ctx context.Context, r *emrv1.QueryAccountRequest) (*emrv1.QueryAccountResponse, error) {
	return serveQuery(ctx, s, "Account", r, s.inner.Account)
}
func (s *queryServer) Patient(ctx context.Context, r *emrv1.QueryPatientRequest) (*emrv1.QueryPatientResponse, error) {
	return serveQuery(ctx, s, "Patient", r, s.inner.Patient)
}
func (s *queryServer) PatientByOwner(ctx context.Context, r *emrv1.QueryPatientByOwnerRequest) (*emrv1.QueryPatientResponse, error) {
	return serveQuery(ctx, s, "PatientByOwner", r, s.inner.PatientByOwner)
}
func (s *queryServer) Permissions(ctx context.Context, r *emrv1.QueryPermissionsRequest) (*emrv1.QueryPermissionsResponse, error) {
	return serveQuery(ctx, s, "Permissions", r, s.inner.Permissions)
}
func (s *queryServer) Permission(ctx context.Context, r *emrv1.QueryPermissionRequest) (*emrv1.QueryPermissionResponse, error) {
	return serveQuery(ctx, s, "Permission", r, s.inner.Permission)
}
func (s *queryServer) Grants(ctx context.Context, r *emrv1.QueryGrantsRequest) (*emrv1.QueryGrantsResponse, error) {
	return serveQuery(ctx, s, "Grants", r, s.inner.Grants)
}
func (s *queryServer) Records(ctx context.Context, r *emrv1.QueryRecordsRequest) (*emrv1.QueryRecordsResponse, error) {
	return serveQuery(ctx, s, "Records", r, s.inner.Records)
}
func (s *queryServer) Record(ctx context.Context, r *emrv1.QueryRecordRequest) (*emrv1.QueryRecordResponse, error) {
	return serveQuery(ctx, s, "Record", r, s.inner.Record)
}
func (s *queryServer) AccessEvents(ctx context.Context, r *emrv1.QueryAccessEventsRequest) (*emrv1.QueryAccessEventsResponse, error) {
	return serveQuery(ctx, s, "AccessEvents", r, s.inner.AccessEvents)
}
func (s *queryServer) Shares(ctx context.Context, r *emrv1.QuerySharesRequest) (*emrv1.QuerySharesResponse, error) {
	return serveQuery(ctx, s, "Shares", r, s.inner.Shares)
}
func (s *queryServer) StudyShares(ctx context.Context, r *emrv1.QueryStudySharesRequest) (*emrv1.QueryStudySharesResponse, error) {
	return serveQuery(ctx, s, "StudyShares", r, s.inner.StudyShares)
}
func (s *queryServer) BreakGlassLog(ctx context.Context, r *emrv1.QueryBreakGlassLogRequest) (*emrv1.QueryBreakGlassLogResponse, error) {
	return serveQuery(ctx, s, "BreakGlassLog", r, s.inner.BreakGlassLog)
}
func (s *queryServer) Share(ctx context.Context, r *emrv1.QueryShareRequest) (*emrv1.QueryShareResponse, error) {
	return serveQuery(ctx, s, "Share", r, s.inner.Share)
}
func (s *queryServer) LastAccess(ctx context.Context, r *emrv1.QueryLastAccessRequest) (*emrv1.QueryLastAccessResponse, error) {
	return serveQuery(ctx, s, "LastAccess", r, s.inner.LastAccess)
}
func (s *queryServer) Study(ctx context.Context, r *emrv1.QueryStudyRequest) (*emrv1.QueryStudyResponse, error) {
	return serveQuery(ctx, s, "Study", r, s.inner.Study)
}
func (s *queryServer) BlobRefs(ctx context.Context, r *emrv1.QueryBlobRefsRequest) (*emrv1.QueryBlobRefsResponse, error) {
	return serveQuery(ctx, s, "BlobRefs", r, s.inner.BlobRefs)
}
func (s *queryServer) Validators(ctx context.Context, r *emrv1.QueryValidatorsRequest) (*emrv1.QueryValidatorsResponse, error) {
	return serveQuery(ctx, s, "Validators", r, s.inner.Validators)
}
func (s *queryServer) ValidatorKey(ctx context.Context, r *emrv1.QueryValidatorKeyRequest) (*emrv1.QueryValidatorKeyResponse, error) {
	return serveQuery(ctx, s, "ValidatorKey", r, s.inner.ValidatorKey)
}
func (s *queryServer) Proposal(ctx context.Context, r *emrv1.QueryProposalRequest) (*emrv1.QueryProposalResponse, error) {
	return serveQuery(ctx, s, "Proposal", r, s.inner.Proposal)
}
func (s *queryServer) Proposals(ctx context.Context, r *emrv1.QueryProposalsRequest) (*emrv1.QueryProposalsResponse, error) {
	return serveQuery(ctx, s, "Proposals", r, s.inner.Proposals)
}
