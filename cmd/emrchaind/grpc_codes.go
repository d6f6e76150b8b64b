package main

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/emrchain/emrchain/app"
)

// grpcCodes maps every emrchain result code (app/errors.go) to the gRPC
// status code the gRPC server — and through it the REST gateway, as an HTTP
// status — answers with. A code missing here is answered as Internal; a test
// checks that every registered code is listed.
var grpcCodes = map[uint32]codes.Code{
	app.ErrInternal.Code():              codes.Internal,
	app.ErrTxDecode.Code():              codes.InvalidArgument,
	app.ErrTxTooLarge.Code():            codes.InvalidArgument,
	app.ErrWrongChain.Code():            codes.InvalidArgument,
	app.ErrBadSignature.Code():          codes.Unauthenticated,
	app.ErrBadSequence.Code():           codes.FailedPrecondition,
	app.ErrUnknownSigner.Code():         codes.PermissionDenied,
	app.ErrSignerSuspended.Code():       codes.PermissionDenied,
	app.ErrInvalidMsg.Code():            codes.InvalidArgument,
	app.ErrUnauthorized.Code():          codes.PermissionDenied,
	app.ErrNotFound.Code():              codes.NotFound,
	app.ErrAlreadyExists.Code():         codes.AlreadyExists,
	app.ErrNoPermission.Code():          codes.PermissionDenied,
	app.ErrPermissionNotYetValid.Code(): codes.PermissionDenied,
	app.ErrPermissionExpired.Code():     codes.PermissionDenied,
	app.ErrPermissionRevoked.Code():     codes.PermissionDenied,
	app.ErrRightNotGranted.Code():       codes.PermissionDenied,
	app.ErrCategoryNotGranted.Code():    codes.PermissionDenied,
	app.ErrGranteeSuspended.Code():      codes.PermissionDenied,
	app.ErrKeyVersion.Code():            codes.FailedPrecondition,
	app.ErrUnknownCategory.Code():       codes.InvalidArgument,
	app.ErrTooLarge.Code():              codes.InvalidArgument,
	app.ErrNotEnabled.Code():            codes.FailedPrecondition,
	app.ErrInvalidGenesis.Code():        codes.InvalidArgument,
	app.ErrInvalidQuery.Code():          codes.InvalidArgument,
	app.ErrHeightNotCommitted.Code():    codes.Unavailable,
	app.ErrHeightNotKept.Code():         codes.OutOfRange,
	app.ErrProposalClosed.Code():        codes.FailedPrecondition,
	app.ErrLastValidator.Code():         codes.FailedPrecondition,
	app.ErrTxExpired.Code():             codes.FailedPrecondition,
	app.ErrEmergencyLimit.Code():        codes.ResourceExhausted,
}

// grpcCodeOf is the gRPC status code for an emrchain result code.
func grpcCodeOf(appCode uint32) codes.Code {
	if appCode == 0 {
		return codes.OK
	}
	if c, ok := grpcCodes[appCode]; ok {
		return c
	}
	return codes.Internal
}

// grpcError turns an error of the app (or of a context) into a gRPC status
// error whose message is the error's text. Status errors pass through.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := grpcstatus.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return grpcstatus.FromContextError(err).Err()
	}
	return grpcstatus.Error(grpcCodeOf(app.CodeOf(err)), err.Error())
}
