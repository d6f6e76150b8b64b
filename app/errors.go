package app

import (
	"errors"
	"fmt"
)

// Codespace names emrchain's result codes in ABCI responses.
const Codespace = "emrchain"

// CodedError is a sentinel error with a stable ABCI result code. Handlers
// wrap one with details (fmt.Errorf("%w: ...", ErrX)); CodeOf finds it.
type CodedError struct {
	code uint32
	name string
}

func (e *CodedError) Error() string { return e.name }

// Code is the stable ABCI result code.
func (e *CodedError) Code() uint32 { return e.code }

var registered = map[uint32]*CodedError{}

func register(code uint32, name string) *CodedError {
	if _, dup := registered[code]; dup {
		panic(fmt.Sprintf("app: result code %d registered twice", code))
	}
	e := &CodedError{code: code, name: name}
	registered[code] = e
	return e
}

// Result codes. They are part of the protocol: never renumber one.
var (
	ErrInternal              = register(1, "internal error")
	ErrTxDecode              = register(2, "malformed transaction")
	ErrTxTooLarge            = register(3, "transaction too large")
	ErrWrongChain            = register(4, "wrong chain id")
	ErrBadSignature          = register(5, "invalid signature")
	ErrBadSequence           = register(6, "wrong account sequence")
	ErrUnknownSigner         = register(7, "unknown signer")
	ErrSignerSuspended       = register(8, "signer suspended")
	ErrInvalidMsg            = register(9, "invalid message")
	ErrUnauthorized          = register(10, "unauthorized")
	ErrNotFound              = register(11, "not found")
	ErrAlreadyExists         = register(12, "already exists")
	ErrNoPermission          = register(13, "no permission")
	ErrPermissionNotYetValid = register(14, "permission not yet valid")
	ErrPermissionExpired     = register(15, "permission expired")
	ErrPermissionRevoked     = register(16, "permission revoked")
	ErrRightNotGranted       = register(17, "right not granted")
	ErrCategoryNotGranted    = register(18, "category not granted")
	ErrGranteeSuspended      = register(19, "grantee suspended")
	ErrKeyVersion            = register(20, "wrong key version")
	ErrUnknownCategory       = register(21, "unknown category")
	ErrTooLarge              = register(22, "too large")
	ErrNotEnabled            = register(23, "not enabled")
	ErrInvalidGenesis        = register(24, "invalid genesis")
	ErrInvalidQuery          = register(25, "invalid query")
	// ErrHeightNotCommitted: a query asked for a height this node has not
	// committed yet (or it has committed nothing): another node, or this
	// one a little later, may answer.
	ErrHeightNotCommitted = register(26, "height not committed yet")
	// ErrHeightNotKept: a query asked for a height this node no longer
	// keeps (pruned), or never had (before its state-sync snapshot).
	ErrHeightNotKept = register(27, "height not kept")
	// ErrProposalClosed: the proposal was executed or withdrawn, its voting
	// ended, or (still open) another change overtook it and it can no
	// longer execute.
	ErrProposalClosed = register(28, "proposal closed")
	// ErrLastValidator: the change would leave the chain no validator.
	ErrLastValidator = register(29, "last validator")
	// ErrTxExpired: the block is past the transaction's timeout height.
	// It never executes: its signer may sign the message again.
	ErrTxExpired = register(30, "transaction expired")
	// ErrEmergencyLimit: the clinician has read as many patients in
	// emergencies within the last 24 hours of block time as
	// params.emergency_patients_per_day allows. It may read them again, and
	// another patient once enough of the reads that counted them are 24
	// hours old (the refusal names when).
	ErrEmergencyLimit = register(31, "emergency read limit reached")
)

// CodeOf returns the ABCI result code of err: 0 for nil, the code of the
// CodedError it wraps, or ErrInternal's code for anything else.
func CodeOf(err error) uint32 {
	if err == nil {
		return 0
	}
	var coded *CodedError
	if errors.As(err, &coded) {
		return coded.code
	}
	return ErrInternal.code
}
