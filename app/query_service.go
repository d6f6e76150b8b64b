package app

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

type heightKey struct{}

// WithHeight asks the QueryService to answer at height (0 = the last
// commit); the gRPC server sets it from the request metadata.
func WithHeight(ctx context.Context, height int64) context.Context {
	return context.WithValue(ctx, heightKey{}, height)
}

func heightOf(ctx context.Context) int64 {
	h, _ := ctx.Value(heightKey{}).(int64)
	return h
}

// QueryService serves the gRPC Query service through App.Query: the same
// code, the same snapshot rules and the same errors as ABCI queries, so
// REST, gRPC and ABCI cannot disagree. Errors are the app's coded errors;
// the server maps their codes to gRPC status codes.
type QueryService struct {
	emrv1.UnimplementedQueryServer
	app *App
}

// NewQueryService serves queries from a.
func NewQueryService(a *App) *QueryService { return &QueryService{app: a} }

var _ emrv1.QueryServer = (*QueryService)(nil)

func call[Resp any, PResp interface {
	*Resp
	proto.Message
}](ctx context.Context, s *QueryService, method string, req proto.Message) (PResp, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		// The caller's request cannot be encoded (a string that is not
		// UTF-8, which the REST gateway lets through): its mistake.
		return nil, fmt.Errorf("%w: encode request: %v", ErrInvalidQuery, err)
	}
	out, h, err := s.app.Query(QueryPathPrefix+method, data, heightOf(ctx), false)
	if err != nil {
		if h > 0 {
			err = &answeredError{err: err, height: h}
		}
		return nil, err
	}
	resp := PResp(new(Resp))
	if err := proto.Unmarshal(out, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// answeredError is an error answer of the state at height: the query
// read it (a "not found" there, say), so the answer holds for that height.
type answeredError struct {
	err    error
	height int64
}

func (e *answeredError) Error() string { return e.err.Error() }
func (e *answeredError) Unwrap() error { return e.err }

// AnsweredHeight is the height a QueryService error was read at: the state
// in which, for example, a patient was not found. 0 when the query failed
// before it read any state (a height the node does not have).
func AnsweredHeight(err error) int64 {
	var a *answeredError
	if errors.As(err, &a) {
		return a.height
	}
	return 0
}

func (s *QueryService) Params(ctx context.Context, r *emrv1.QueryParamsRequest) (*emrv1.QueryParamsResponse, error) {
	return call[emrv1.QueryParamsResponse](ctx, s, "Params", r)
}
func (s *QueryService) Organization(ctx context.Context, r *emrv1.QueryOrganizationRequest) (*emrv1.QueryOrganizationResponse, error) {
	return call[emrv1.QueryOrganizationResponse](ctx, s, "Organization", r)
}
func (s *QueryService) Organizations(ctx context.Context, r *emrv1.QueryOrganizationsRequest) (*emrv1.QueryOrganizationsResponse, error) {
	return call[emrv1.QueryOrganizationsResponse](ctx, s, "Organizations", r)
}
func (s *QueryService) Members(ctx context.Context, r *emrv1.QueryMembersRequest) (*emrv1.QueryMembersResponse, error) {
	return call[emrv1.QueryMembersResponse](ctx, s, "Members", r)
}
func (s *QueryService) Member(ctx context.Context, r *emrv1.QueryMemberRequest) (*emrv1.QueryMemberResponse, error) {
	return call[emrv1.QueryMemberResponse](ctx, s, "Member", r)
}
func (s *QueryService) EmergencyReads(ctx context.Context, r *emrv1.QueryEmergencyReadsRequest) (*emrv1.QueryEmergencyReadsResponse, error) {
	return call[emrv1.QueryEmergencyReadsResponse](ctx, s, "EmergencyReads", r)
}
func (s *QueryService) Account(ctx context.Context, r *emrv1.QueryAccountRequest) (*emrv1.QueryAccountResponse, error) {
	return call[emrv1.QueryAccountResponse](ctx, s, "Account", r)
}
func (s *QueryService) Patient(ctx context.Context, r *emrv1.QueryPatientRequest) (*emrv1.QueryPatientResponse, error) {
	return call[emrv1.QueryPatientResponse](ctx, s, "Patient", r)
}
func (s *QueryService) PatientByOwner(ctx context.Context, r *emrv1.QueryPatientByOwnerRequest) (*emrv1.QueryPatientResponse, error) {
	return call[emrv1.QueryPatientResponse](ctx, s, "PatientByOwner", r)
}
func (s *QueryService) Permissions(ctx context.Context, r *emrv1.QueryPermissionsRequest) (*emrv1.QueryPermissionsResponse, error) {
	return call[emrv1.QueryPermissionsResponse](ctx, s, "Permissions", r)
}
func (s *QueryService) Permission(ctx context.Context, r *emrv1.QueryPermissionRequest) (*emrv1.QueryPermissionResponse, error) {
	return call[emrv1.QueryPermissionResponse](ctx, s, "Permission", r)
}
func (s *QueryService) Grants(ctx context.Context, r *emrv1.QueryGrantsRequest) (*emrv1.QueryGrantsResponse, error) {
	return call[emrv1.QueryGrantsResponse](ctx, s, "Grants", r)
}
func (s *QueryService) Records(ctx context.Context, r *emrv1.QueryRecordsRequest) (*emrv1.QueryRecordsResponse, error) {
	return call[emrv1.QueryRecordsResponse](ctx, s, "Records", r)
}
func (s *QueryService) Record(ctx context.Context, r *emrv1.QueryRecordRequest) (*emrv1.QueryRecordResponse, error) {
	return call[emrv1.QueryRecordResponse](ctx, s, "Record", r)
}
func (s *QueryService) AccessEvents(ctx context.Context, r *emrv1.QueryAccessEventsRequest) (*emrv1.QueryAccessEventsResponse, error) {
	return call[emrv1.QueryAccessEventsResponse](ctx, s, "AccessEvents", r)
}
func (s *QueryService) Shares(ctx context.Context, r *emrv1.QuerySharesRequest) (*emrv1.QuerySharesResponse, error) {
	return call[emrv1.QuerySharesResponse](ctx, s, "Shares", r)
}
func (s *QueryService) Share(ctx context.Context, r *emrv1.QueryShareRequest) (*emrv1.QueryShareResponse, error) {
	return call[emrv1.QueryShareResponse](ctx, s, "Share", r)
}
func (s *QueryService) LastAccess(ctx context.Context, r *emrv1.QueryLastAccessRequest) (*emrv1.QueryLastAccessResponse, error) {
	return call[emrv1.QueryLastAccessResponse](ctx, s, "LastAccess", r)
}
func (s *QueryService) Study(ctx context.Context, r *emrv1.QueryStudyRequest) (*emrv1.QueryStudyResponse, error) {
	return call[emrv1.QueryStudyResponse](ctx, s, "Study", r)
}
func (s *QueryService) StudyShares(ctx context.Context, r *emrv1.QueryStudySharesRequest) (*emrv1.QueryStudySharesResponse, error) {
	return call[emrv1.QueryStudySharesResponse](ctx, s, "StudyShares", r)
}
func (s *QueryService) BreakGlassLog(ctx context.Context, r *emrv1.QueryBreakGlassLogRequest) (*emrv1.QueryBreakGlassLogResponse, error) {
	return call[emrv1.QueryBreakGlassLogResponse](ctx, s, "BreakGlassLog", r)
}
func (s *QueryService) BlobRefs(ctx context.Context, r *emrv1.QueryBlobRefsRequest) (*emrv1.QueryBlobRefsResponse, error) {
	return call[emrv1.QueryBlobRefsResponse](ctx, s, "BlobRefs", r)
}
func (s *QueryService) Validators(ctx context.Context, r *emrv1.QueryValidatorsRequest) (*emrv1.QueryValidatorsResponse, error) {
	return call[emrv1.QueryValidatorsResponse](ctx, s, "Validators", r)
}
func (s *QueryService) ValidatorKey(ctx context.Context, r *emrv1.QueryValidatorKeyRequest) (*emrv1.QueryValidatorKeyResponse, error) {
	return call[emrv1.QueryValidatorKeyResponse](ctx, s, "ValidatorKey", r)
}
func (s *QueryService) Proposal(ctx context.Context, r *emrv1.QueryProposalRequest) (*emrv1.QueryProposalResponse, error) {
	return call[emrv1.QueryProposalResponse](ctx, s, "Proposal", r)
}
func (s *QueryService) Proposals(ctx context.Context, r *emrv1.QueryProposalsRequest) (*emrv1.QueryProposalsResponse, error) {
	return call[emrv1.QueryProposalsResponse](ctx, s, "Proposals", r)
}
