package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"
	dbm "github.com/cosmos/cosmos-db"
	"github.com/cosmos/iavl"
)

// Reader is a read-only view of key/value state.
type Reader interface {
	// Get returns the value stored at key, or nil, nil when it is absent.
	Get(key []byte) ([]byte, error)
	Has(key []byte) (bool, error)
	// Iterator walks [start, end) in key order (descending when ascending is
	// false). A nil (or empty) bound is open. Close it when done; do not
	// write to the view while an iterator over it is open.
	Iterator(start, end []byte, ascending bool) (Iterator, error)
}

// KV is a readable and writable view.
type KV interface {
	Reader
	// Set stores value at key. Empty keys and empty or nil values are errors
	// (ErrEmptyKey, ErrEmptyValue): IAVL forbids nil values, and absence is
	// expressed only by Delete.
	Set(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
}

// Iterator walks keys in order. Key and Value must not be modified by the
// caller. Valid is false once the range is exhausted; check Error after.
type Iterator interface {
	Valid() bool
	Next()
	Key() []byte
	Value() []byte
	Error() error
	Close() error
}

// Options configure Open.
type Options struct {
	// Backend is "pebble" (default), "goleveldb" or "memdb" (tests only:
	// nothing survives Close).
	Backend string
	// CacheSize is the IAVL node cache size, in nodes. Size it to the
	// working set: it is the largest lever on write speed.
	CacheSize int
	// ValueCacheSize is the number of values of the latest version kept
	// in memory for reads (0 = DefaultValueCacheSize, negative = none).
	ValueCacheSize int
	// KeepRecent is the number of most recent versions always kept when
	// pruning (0 = keep everything).
	KeepRecent uint64
	// PruneInterval prunes when the committed version is a multiple of it
	// (0 = never prune). Pruning needs both KeepRecent and PruneInterval.
	PruneInterval uint64
}

// DefaultBackend is the backend DefaultOptions chooses (see README.md and
// BENCH_RESULTS.md for the measurement behind the choice).
const DefaultBackend = BackendPebble

// DefaultCacheSize is the default IAVL node cache size, in nodes.
const DefaultCacheSize = 500_000

// DefaultValueCacheSize is the default number of latest-version values kept
// in memory (a few hundred bytes each).
const DefaultValueCacheSize = 100_000

// DefaultOptions returns the default options: DefaultBackend, a 500k-node
// cache and no pruning (every version is kept: the audit trail is the point
// of the chain).
func DefaultOptions() Options {
	return Options{
		Backend:        DefaultBackend,
		CacheSize:      DefaultCacheSize,
		ValueCacheSize: DefaultValueCacheSize,
	}
}

func (o Options) pruning() bool { return o.KeepRecent > 0 && o.PruneInterval > 0 }

// Store is the application state: one IAVL tree over one cosmos-db database.
//
// The working tree (Working) is meant to be written by one goroutine (the
// consensus connection); ReaderAt views and GetWithProof may be used from
// any goroutine at the same time. Every method is safe for concurrent use,
// but iterators are not synchronised: do not write to a view while an
// iterator over it is open.
type Store struct {
	mu   sync.RWMutex
	db   dbm.DB
	tree *iavl.MutableTree
	opts Options

	lastVersion int64
	lastHash    []byte
	// firstVersion is the lowest stored version (0 when none); it is only
	// maintained when pruning is enabled.
	firstVersion int64
	// restoredVersion is the version a snapshot restore put the store
	// at (0: none), below which it holds no version whatever IAVL says
	// (restoredVersionKey).
	restoredVersion int64
	closed          bool

	// dirty holds the working tree's writes since the last commit (nil
	// value: deleted); guarded by mu. Commit hands them to values.
	dirty map[string][]byte
	// values caches the latest version's values (nil when disabled).
	valuesMu sync.Mutex
	values   *latestValues

	// exporting counts the snapshot exports reading each version (guarded
	// by mu): pruning never deletes one of them. exports is what Close
	// waits for, after closing stop, which ends them early.
	exporting map[int64]int
	exports   sync.WaitGroup
	stop      chan struct{}
	// restoring is the restore under way, if any: Close stops its
	// importer, which writes batches from a goroutine of its own, before
	// it closes the database (the marker then wipes it at the next open).
	restoring *Restore
}

// Open opens (or creates) the state database in dir and loads the latest
// saved version: after a crash the store is exactly at its last Commit and
// uncommitted writes are gone.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Backend == "" {
		opts.Backend = DefaultBackend
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	db, err := openDB(dir, opts.Backend)
	if err != nil {
		return nil, err
	}
	s, err := openWithDB(db, opts)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// atomicVersions is iavl's flush threshold: never flush a version's batch
// part-way. By default iavl writes a version in 100 kB batches, so a crash
// in the middle of SaveVersion leaves nodes of a version without its root,
// and iavl v1 then takes that half-written version as the latest and fails
// to load it. With one batch per SaveVersion (and per prune), the database
// applies a version entirely or not at all; the memory cost is the size of
// one block's new nodes.
const atomicVersions = math.MaxInt

// openWithDB builds the store over an open database (tests inject faults
// here).
func openWithDB(db dbm.DB, opts Options) (*Store, error) {
	// No fast-node index: reads of the latest version come from
	// latestValues, and the index would cost a second, randomly keyed
	// write (and its compaction) for every key a block sets.
	// SyncOption: a version is on disk (fsynced) when Commit returns, like
	// CometBFT's own stores, so an OS crash or power loss cannot take the
	// state back behind the blocks CometBFT has stored as executed (replay
	// would recover it, from the blocks, but need not).
	// A restore that never finished (crash before its root was checked)
	// is wiped: the store opens empty and state sync starts over.
	if err := wipeUnfinishedRestore(db); err != nil {
		return nil, err
	}
	s := &Store{db: db, opts: opts, dirty: map[string][]byte{}, exporting: map[int64]int{}, stop: make(chan struct{})}
	if err := s.loadTree(); err != nil {
		return nil, err
	}
	return s, nil
}

// loadTree (re)builds the mutable tree over s.db at its latest version and
// resets everything derived from it. Called at open, and under s.mu after
// a restore replaced the database's content.
func (s *Store) loadTree() error { return s.loadTreeOver(iavlDB{db: s.db}) }

// loadTreeOver is loadTree over db (a restore's batches flush by size).
func (s *Store) loadTreeOver(db iavlDB) error {
	tree := iavl.NewMutableTree(db, s.opts.CacheSize, true, iavl.NewNopLogger(),
		iavl.FlushThresholdOption(atomicVersions), iavl.SyncOption(true))
	if _, err := tree.Load(); err != nil {
		return fmt.Errorf("store: load latest version: %w", err)
	}
	s.tree = tree
	s.lastVersion = tree.Version()
	s.lastHash = tree.Hash()
	s.dirty = map[string][]byte{}
	s.values = nil
	if size := cmp.Or(s.opts.ValueCacheSize, DefaultValueCacheSize); size > 0 {
		s.values = newLatestValues(size)
	}
	s.restoredVersion = 0
	if bz, err := s.db.Get(restoredVersionKey); err != nil {
		return fmt.Errorf("store: read the restored version: %w", err)
	} else if bz != nil {
		if len(bz) != 8 {
			return fmt.Errorf("store: the restored version is %d bytes, want 8", len(bz))
		}
		s.restoredVersion = int64(binary.BigEndian.Uint64(bz))
	}
	s.firstVersion = 0
	if s.opts.pruning() && s.lastVersion > 0 {
		s.firstVersion = s.findFirstVersion()
	}
	return nil
}

// findFirstVersion finds the lowest stored version by binary search: the
// stored versions of an IAVL v1 tree are the contiguous range
// [first, latest], but for a restored store's, which start at the version
// restored: below it IAVL may show the version whose root the snapshot's
// version shared (restoredVersionKey).
func (s *Store) findFirstVersion() int64 {
	lo, hi := max(1, s.restoredVersion), s.lastVersion
	for lo < hi {
		mid := lo + (hi-lo)/2
		if s.versionStored(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// versionStored says whether IAVL holds version v's root key (nodes are
// stored at 's' | version | nonce, a version's root at nonce 1), which
// pruning deletes with the version. IAVL's own VersionExists answers from
// the first version it found, which the root of a restored store's
// snapshot can misplace (restoredVersionKey).
func (s *Store) versionStored(v int64) bool {
	has, err := s.db.Has(append([]byte{'s'}, iavl.GetRootKey(v)...))
	return err == nil && has
}

// SetInitialVersion makes the first Commit save version v instead of 1, for
// a chain whose genesis has initial_height v. It fails once a version has
// been committed.
func (s *Store) SetInitialVersion(v int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if v < 1 {
		return fmt.Errorf("store: initial version %d, want >= 1", v)
	}
	if s.lastVersion > 0 {
		return fmt.Errorf("store: cannot set initial version %d: version %d already committed", v, s.lastVersion)
	}
	s.tree.SetInitialVersion(uint64(v))
	return nil
}

// Working returns the mutable working tree. Writes are staged in memory
// until Commit and are visible to reads through Working at once.
func (s *Store) Working() KV { return workingKV{s: s} }

// WorkingHash returns the root hash the working tree would commit to now.
func (s *Store) WorkingHash() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return bytes.Clone(s.tree.WorkingHash())
}

// Commit saves the working tree as the next version (one atomic database
// batch), then prunes according to the options. It returns the new root
// hash (the AppHash) and version. If only the pruning fails, the version is
// saved and is returned together with an error wrapping ErrPruneFailed.
func (s *Store) Commit() ([]byte, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, ErrClosed
	}
	hash, version, err := s.tree.SaveVersion()
	if err != nil {
		return nil, 0, fmt.Errorf("store: save version: %w", err)
	}
	s.lastVersion, s.lastHash = version, bytes.Clone(hash)
	s.valuesMu.Lock()
	s.values.apply(s.dirty)
	s.valuesMu.Unlock()
	s.dirty = map[string][]byte{}
	if s.opts.pruning() {
		if s.firstVersion == 0 {
			s.firstVersion = version
		}
		if err := s.prune(version); err != nil {
			// The version is saved; only the clean-up failed. Report it,
			// the next prune point retries the whole range.
			return bytes.Clone(hash), version, fmt.Errorf("%w: %w", ErrPruneFailed, err)
		}
	}
	return bytes.Clone(hash), version, nil
}

// prune deletes the versions <= version-KeepRecent when version is a prune
// point, at most 2×PruneInterval of them: the deletions are one batch
// written inside Commit, so pruning turned on for a chain that kept every
// version drains its backlog at twice the steady rate, a bounded batch per
// prune point, instead of deleting millions of versions in one Commit.
// Called with s.mu held.
func (s *Store) prune(version int64) error {
	if uint64(version)%s.opts.PruneInterval != 0 || uint64(version) <= s.opts.KeepRecent {
		return nil
	}
	to := version - int64(s.opts.KeepRecent)
	if to < s.firstVersion {
		return nil // nothing old enough (KeepRecent may have grown)
	}
	to = min(to, s.firstVersion+int64(2*s.opts.PruneInterval)-1)
	if oldest := s.oldestExport(); oldest > 0 && to >= oldest {
		// A snapshot is being exported from a version in the range: keep
		// it and everything after it; a later prune point takes them.
		to = oldest - 1
		if to < s.firstVersion {
			return nil
		}
	}
	if err := s.tree.DeleteVersionsTo(to); err != nil {
		return fmt.Errorf("store: prune versions up to %d: %w", to, err)
	}
	s.firstVersion = to + 1
	return nil
}

// LastCommit returns the latest committed version and its root hash; before
// the first commit that is version 0 and the hash of the empty tree
// (SHA-256 of nothing).
func (s *Store) LastCommit() (int64, []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastVersion, bytes.Clone(s.lastHash)
}

// FirstVersion returns the lowest version the store still holds under its
// pruning policy; with pruning off, the version a snapshot restore put it
// at, or 0 when it holds every version since the first.
func (s *Store) FirstVersion() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.opts.pruning() {
		return s.restoredVersion
	}
	return s.firstVersion
}

// Rollback discards every uncommitted change to the working tree.
func (s *Store) Rollback() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.tree.Rollback()
	s.dirty = map[string][]byte{}
}

// ReaderAt returns an immutable view of a committed version. Version 0 is
// the empty state before the first commit (only while nothing has been
// committed). A version that was never saved or has been pruned gives
// ErrVersionNotFound.
func (s *Store) ReaderAt(version int64) (Reader, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if version == 0 && s.lastVersion == 0 {
		return emptyReader{}, nil
	}
	t, err := s.immutable(version)
	if err != nil {
		return nil, err
	}
	return &versionReader{s: s, t: t, version: version}, nil
}

// immutable loads the tree of a saved version. Called with s.mu held.
func (s *Store) immutable(version int64) (*iavl.ImmutableTree, error) {
	if version <= 0 || version < s.restoredVersion || !s.tree.VersionExists(version) {
		return nil, fmt.Errorf("%w: version %d (latest %d)", ErrVersionNotFound, version, s.lastVersion)
	}
	t, err := s.tree.GetImmutable(version)
	if err != nil {
		if errors.Is(err, iavl.ErrVersionDoesNotExist) {
			return nil, fmt.Errorf("%w: version %d", ErrVersionNotFound, version)
		}
		return nil, fmt.Errorf("store: load version %d: %w", version, err)
	}
	return t, nil
}

// GetWithProof returns the value of key at a committed version with an
// ics23:iavl proof: a membership proof when the key is present, an absence
// proof (and a nil value) when it is not. Verify it against the AppHash of
// the block after version (VerifyMembership / VerifyAbsence).
func (s *Store) GetWithProof(key []byte, version int64) ([]byte, *cmtcrypto.ProofOps, error) {
	if len(key) == 0 {
		return nil, nil, ErrEmptyKey
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	t, err := s.immutable(version)
	if err != nil {
		return nil, nil, err
	}
	if t.Size() == 0 {
		return nil, nil, fmt.Errorf("%w: version %d", ErrEmptyTree, version)
	}
	proof, err := t.GetProof(key)
	if err != nil {
		return nil, nil, s.readErr(version, fmt.Errorf("store: prove key %X at version %d: %w", key, version, err))
	}
	var value []byte
	if ex := proof.GetExist(); ex != nil {
		// The value is taken from the proven leaf itself, so value and
		// proof cannot disagree.
		value = bytes.Clone(ex.Value)
	}
	op := CommitmentOp{Key: bytes.Clone(key), Proof: proof}
	return value, &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{op.ProofOp()}}, nil
}

// readErr maps a failed read of a version that has meanwhile been pruned to
// ErrVersionNotFound. Called with s.mu held.
func (s *Store) readErr(version int64, err error) error {
	if version > 0 && !s.tree.VersionExists(version) {
		return fmt.Errorf("%w: version %d was pruned during the read: %v", ErrVersionNotFound, version, err)
	}
	return err
}

// Close releases the tree and the database. Uncommitted writes are lost.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.stop)
	// Exports read the database without the lock; they end at stop.
	s.mu.Unlock()
	s.exports.Wait()
	s.mu.Lock()
	if s.restoring != nil {
		s.restoring.imp.Close()
		s.restoring = nil
	}
	errTree := s.tree.Close()
	errDB := s.db.Close()
	return errors.Join(errTree, errDB)
}

func checkKey(key []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	return nil
}

func checkKV(key, value []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if len(value) == 0 {
		return fmt.Errorf("%w (key %X)", ErrEmptyValue, key)
	}
	return nil
}

// openBound turns an empty bound into an open (nil) one.
func openBound(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// workingKV is the KV over the mutable working tree.
type workingKV struct{ s *Store }

func (w workingKV) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, nil
	}
	w.s.mu.RLock()
	defer w.s.mu.RUnlock()
	if w.s.closed {
		return nil, ErrClosed
	}
	if v, ok := w.s.dirty[string(key)]; ok {
		return cloneValue(v), nil
	}
	// A key unchanged since the last commit has its latest committed value
	// (before the first commit there is none to cache).
	v, err := w.s.get(key, w.s.lastVersion > 0, func() ([]byte, error) { return w.s.tree.Get(key) })
	if err != nil {
		return nil, fmt.Errorf("store: get %X: %w", key, err)
	}
	return v, nil
}

func (w workingKV) Has(key []byte) (bool, error) {
	v, err := w.Get(key)
	return v != nil, err
}

func (w workingKV) Iterator(start, end []byte, ascending bool) (Iterator, error) {
	w.s.mu.RLock()
	defer w.s.mu.RUnlock()
	if w.s.closed {
		return nil, ErrClosed
	}
	it, err := w.s.tree.Iterator(openBound(start), openBound(end), ascending)
	if err != nil {
		return nil, fmt.Errorf("store: working iterator: %w", err)
	}
	return it, nil
}

func (w workingKV) Set(key, value []byte) error {
	if err := checkKV(key, value); err != nil {
		return err
	}
	// IAVL keeps the slices it is given: copy, so callers may reuse buffers.
	key, value = bytes.Clone(key), bytes.Clone(value)
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.closed {
		return ErrClosed
	}
	if _, err := w.s.tree.Set(key, value); err != nil {
		return fmt.Errorf("store: set %X: %w", key, err)
	}
	w.s.dirty[string(key)] = value
	return nil
}

func (w workingKV) Delete(key []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.closed {
		return ErrClosed
	}
	if _, _, err := w.s.tree.Remove(key); err != nil {
		return fmt.Errorf("store: delete %X: %w", key, err)
	}
	w.s.dirty[string(key)] = nil
	return nil
}

// get reads key with read, through the latest version's value cache when
// atLatest (read then reads the latest version). Called with s.mu held for
// reading, so the latest version cannot move meanwhile. The value returned
// is the caller's to keep.
func (s *Store) get(key []byte, atLatest bool, read func() ([]byte, error)) ([]byte, error) {
	if !atLatest || s.values == nil {
		v, err := read()
		return cloneValue(v), err
	}
	s.valuesMu.Lock()
	v, ok := s.values.get(key)
	s.valuesMu.Unlock()
	if ok {
		return cloneValue(v), nil
	}
	v, err := read()
	if err != nil {
		return nil, err
	}
	s.valuesMu.Lock()
	s.values.put(string(key), v) // IAVL never modifies a value it returned
	s.valuesMu.Unlock()
	return cloneValue(v), nil
}

// versionReader is a Reader over one saved version.
type versionReader struct {
	s       *Store
	t       *iavl.ImmutableTree
	version int64
}

func (r *versionReader) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, nil
	}
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	if r.s.closed {
		return nil, ErrClosed
	}
	v, err := r.s.get(key, r.version == r.s.lastVersion, func() ([]byte, error) { return r.t.Get(key) })
	if err != nil {
		return nil, r.s.readErr(r.version, fmt.Errorf("store: get %X at version %d: %w", key, r.version, err))
	}
	return v, nil
}

func (r *versionReader) Has(key []byte) (bool, error) {
	v, err := r.Get(key)
	return v != nil, err
}

func (r *versionReader) Iterator(start, end []byte, ascending bool) (Iterator, error) {
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	if r.s.closed {
		return nil, ErrClosed
	}
	it, err := r.t.Iterator(openBound(start), openBound(end), ascending)
	if err != nil {
		return nil, r.s.readErr(r.version, fmt.Errorf("store: iterator at version %d: %w", r.version, err))
	}
	return &lockedIterator{s: r.s, version: r.version, Iterator: it}, nil
}

// lockedIterator walks a saved version under the store's read lock, one
// step at a time. A saved version shares nodes with the working tree, and
// IAVL clears the child pointers of a shared node when the working tree
// changes above it (Node.clone): a step must not overlap a write. Between
// steps the writer may run; the version's content never changes. Only Next
// walks the tree: IAVL's Valid, Key, Value, Error and Close read what the
// last step left in the iterator.
//
// A Commit between steps may prune the version. IAVL's iterator then
// fails to load the next node and ends, without an error (iavl v1.3.6
// Iterator.Next drops it); a walk that ends while its version is gone
// reports ErrVersionNotFound instead of passing for the end of the range.
type lockedIterator struct {
	s       *Store
	version int64
	err     error // set when the walk ended because its version was pruned
	Iterator
}

func (l *lockedIterator) Next() {
	l.s.mu.RLock()
	defer l.s.mu.RUnlock()
	l.Iterator.Next()
	if !l.Iterator.Valid() && l.version > 0 && !l.s.tree.VersionExists(l.version) {
		l.err = fmt.Errorf("%w: version %d was pruned during the iteration", ErrVersionNotFound, l.version)
	}
}

func (l *lockedIterator) Error() error {
	if l.err != nil {
		return l.err
	}
	return l.Iterator.Error()
}

// emptyReader is the state before the first commit.
type emptyReader struct{}

func (emptyReader) Get([]byte) ([]byte, error) { return nil, nil }
func (emptyReader) Has([]byte) (bool, error)   { return false, nil }
func (emptyReader) Iterator(_, _ []byte, _ bool) (Iterator, error) {
	return &sliceIterator{}, nil
}
