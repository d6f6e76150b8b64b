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

	// ErrWrongBackend is returned by Open when the database on disk was
	// written by another engine than the one asked for: opening it would
	// fail, or worse.
	ErrWrongBackend = errors.New("store: database written by another engine")

	// ErrClosed is returned by operations on a closed Store.
	ErrClosed = errors.New("store: closed")

	// ErrPruneFailed is returned by Commit when the version was saved and
	// only the pruning after it failed; the next prune point retries.
	ErrPruneFailed = errors.New("store: pruning failed (the version is saved)")

	// ErrBadSnapshot is returned when a snapshot's metadata or a chunk does
	// not decode, or its nodes do not form a tree: the peer's snapshot is
	// unusable, another one may be tried.
	ErrBadSnapshot = errors.New("store: bad snapshot")

	// ErrSnapshotNotFound is returned for a snapshot or chunk this node
	// does not hold.
	ErrSnapshotNotFound = errors.New("store: snapshot not found")

	// ErrNotEmpty is returned by BeginRestore when the store already holds
	// a committed version: a snapshot is only restored into an empty store.
	ErrNotEmpty = errors.New("store: not empty")

	// ErrRootMismatch is returned by Restore.Finish when the imported tree's
	// root is not the trusted app hash; the import has been wiped.
	ErrRootMismatch = errors.New("store: restored root does not match the trusted app hash")
)
