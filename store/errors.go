package store

import "errors"

// Sentinel errors. Functions in this package wrap them with %w to add detail,
// so test for them with errors.Is.
var (
	// ErrVersionNotFound is returned when a version was never committed or has
	// been pruned.
	ErrVersionNotFound = errors.New("store: version not found")

	// ErrReadOnly is returned by Set and Delete on a view made with ReadOnly.
	ErrReadOnly = errors.New("store: read-only view")

	// ErrInvalidProof is returned when a proof cannot be decoded or does not
	// verify against the given root, key and value.
	ErrInvalidProof = errors.New("store: invalid proof")

	// ErrEmptyKey is returned when a key is nil or empty; the tree and the
	// proof key paths cannot represent the empty key.
	ErrEmptyKey = errors.New("store: empty key")

	// ErrEmptyValue is returned by Set for a nil or empty value. Absence is
	// expressed with Delete, never with an empty value.
	ErrEmptyValue = errors.New("store: empty value")

	// ErrEmptyTree is returned by GetWithProof when the requested version
	// holds no keys at all: ICS23 cannot express absence in an empty tree.
	ErrEmptyTree = errors.New("store: no proof possible in an empty tree")

	// ErrClosed is returned by operations on a closed Store.
	ErrClosed = errors.New("store: closed")

	// ErrPruneFailed is returned by Commit when the version was saved and
	// only the pruning after it failed; the next prune point retries.
	ErrPruneFailed = errors.New("store: pruning failed (the version is saved)")
)
