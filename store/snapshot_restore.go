package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	dbm "github.com/cosmos/cosmos-db"
	"github.com/cosmos/iavl"
)

// restoreMarker is a key outside IAVL's key space, present in the database
// from the start of a restore until its root has been checked: Open wipes
// a database that holds it.
var restoreMarker = []byte("\x00emrchain/restore-in-progress")

// restoredVersionKey, outside IAVL's key space too, holds the version a
// restore put the store at (8 bytes), written once the import is
// committed. The store holds no version below it. IAVL may say otherwise:
// a snapshot of version V whose state last changed at R < V (blocks that
// changed nothing since) imports its root under IAVL's root key of
// version R, with V's a reference to it. So version R looks stored,
// although this node never committed it, and once pruning passes V that
// root node is never deleted (IAVL takes it for a reference of V's), so
// after a restart the search for the first version can land on R, whose
// other nodes pruning deleted. The one node stays behind; the store reads
// no version below the restored one (the review of session 52).
var restoredVersionKey = []byte("\x00emrchain/restored-version")

// wipeBatch is how many keys one batch of a wipe deletes.
const wipeBatch = 10_000

// Restore is a snapshot import in progress into an empty store. Its
// methods are called from one goroutine (CometBFT's snapshot connection);
// the store stays at version 0 until Finish succeeds. Its errors tell
// whose failure it was: ErrBadSnapshot and ErrRootMismatch are the
// snapshot's (another may be tried), anything else is this node's (a
// write or read of its disk that failed, a wipe that failed, a closed
// store), which another snapshot would meet too.
type Restore struct {
	s       *Store
	imp     *iavl.Importer
	version int64
	shape   streamShape
	done    bool
	// writeErrs are the failures of the import's batch writes, which
	// iavl's importer may not report (flushingBatch).
	writeErrs *writeErrors
}

// BeginRestore starts importing the snapshot of version into the store,
// which must be empty (ErrNotEmpty otherwise). Uncommitted writes to the
// working tree are discarded. Finish or Abort it.
func (s *Store) BeginRestore(version int64) (*Restore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.lastVersion != 0 {
		return nil, fmt.Errorf("%w: version %d committed", ErrNotEmpty, s.lastVersion)
	}
	if version < 1 {
		return nil, fmt.Errorf("%w: restore of version %d", ErrBadSnapshot, version)
	}
	// Anything a previous, abandoned import left behind goes first.
	if err := s.wipeLocked(); err != nil {
		return nil, err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(version))
	if err := s.db.SetSync(restoreMarker, v[:]); err != nil {
		return nil, fmt.Errorf("store: restore: mark: %w", err)
	}
	// The import's batches are written as they fill (importBatchBytes),
	// not every 10,000 nodes whatever their size.
	writeErrs := &writeErrors{}
	if err := s.loadTreeOver(iavlDB{db: s.db, flushBytes: importBatchBytes, writeErrs: writeErrs}); err != nil {
		return nil, errors.Join(fmt.Errorf("store: restore: %w", err), s.wipeLocked())
	}
	imp, err := s.tree.Import(version)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: restore: %w", err), s.wipeLocked())
	}
	s.restoring = &Restore{s: s, imp: imp, version: version, writeErrs: writeErrs}
	return s.restoring, nil
}

// Version is the version being restored.
func (r *Restore) Version() int64 { return r.version }

// AddChunk decodes one chunk and adds its nodes to the import, one node
// at a time: a peer's chunk costs no more memory than its bytes and the
// import's bound (maxImportBytes), however many nodes it packs. A chunk
// over MaxChunkSize, one that does not decode, or whose nodes do not
// continue a valid tree, is ErrBadSnapshot; the import can then only be
// aborted.
func (r *Restore) AddChunk(chunk []byte) error {
	if r.done {
		return fmt.Errorf("%w: restore already finished", ErrBadSnapshot)
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.s.closed {
		return ErrClosed
	}
	return eachNode(chunk, r.version, func(n *iavl.ExportNode) error {
		// The importer keeps what it is given until the node's parent
		// comes: a node of its own, not a slice that holds a whole chunk.
		n.Key, n.Value = bytes.Clone(n.Key), bytes.Clone(n.Value)
		if err := r.shape.add(n); err != nil {
			return err
		}
		if err := r.imp.Add(n); err != nil {
			return r.importFailed(err)
		}
		return nil
	})
}

// importFailed is the error of the import for err, an error of iavl's
// importer. The importer reports a write of the import that failed on
// this node's disk as it reports a node that does not fit the tree; the
// first is this node's failure, which another snapshot would meet too,
// and must not count against the peer's (ErrBadSnapshot).
func (r *Restore) importFailed(err error) error {
	if werr := r.writeErrs.err(); werr != nil {
		return fmt.Errorf("store: restore: writing the import: %w", werr)
	}
	return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
}

// Limits of an import stream (streamShape).
const (
	// maxImportStack bounds the subtrees not yet joined to a parent: a
	// post-order export of a tree of height h never holds more than h+1.
	maxImportStack = maxNodeHeight + 1
	// maxImportBytes bounds the bytes of nodes the importer holds in
	// memory while they wait for their parent. Besides them it holds at
	// most two batches of importBatchBytes: the one it fills, and the one
	// it writes meanwhile (iavl writes one every 10,000 nodes, whatever
	// their size; the restore's batches also write themselves out at
	// importBatchBytes: flushingBatch).
	maxImportBytes = 128 << 20
	// importBatchBytes is how much of the nodes written a restore's batch
	// holds at the most before it is written.
	importBatchBytes = 16 << 20
	// nodeOverhead is what the importer holds of a node besides its key
	// and value, roughly.
	nodeOverhead = 200
)

// streamShape checks an import stream, node by node, for what IAVL's hash
// does not cover and its Importer does not check, before the node reaches
// the importer:
//
//   - the keys of inner nodes: IAVL hashes leaves' keys but not inner
//     nodes', which route lookups (left if below the key). A stream with
//     the trusted root could otherwise carry inner keys that send lookups
//     the wrong way, and the restored node would answer "not found" for
//     what the state holds. Leaves must come in strictly ascending order
//     (so the subtrees an inner node joins, runs of consecutive leaves,
//     cannot overlap), and its key must be its right subtree's smallest,
//     as IAVL builds it;
//   - memory: leaves that no inner node ever joins pile up in the
//     importer, so the subtrees waiting and the bytes they hold are
//     bounded (maxImportStack, maxImportBytes); what it has written waits
//     in batches bounded apart (importBatchBytes).
type streamShape struct {
	stack      []subtree
	lastLeaf   []byte // nil before the first leaf (keys are never empty)
	stackBytes int64
}

// subtree is a subtree of the stream not yet joined to its parent.
type subtree struct {
	height int8
	minKey []byte // its smallest key
	root   int64  // its root node's bytes, as the importer holds it
	// held is what the importer holds of it while it waits: its root,
	// and the root's two children, which the importer keeps linked from
	// the root (and in memory) until the root is joined to its parent.
	held int64
}

func (s *streamShape) add(n *iavl.ExportNode) error {
	size := int64(len(n.Key)+len(n.Value)) + nodeOverhead
	if n.Height == 0 {
		if s.lastLeaf != nil && bytes.Compare(n.Key, s.lastLeaf) <= 0 {
			return fmt.Errorf("%w: leaf %X does not come after leaf %X", ErrBadSnapshot, n.Key, s.lastLeaf)
		}
		s.lastLeaf = n.Key
		s.stack = append(s.stack, subtree{height: 0, minKey: n.Key, root: size, held: size})
		s.stackBytes += size
	} else {
		k := len(s.stack)
		if k < 2 {
			return fmt.Errorf("%w: inner node of height %d with %d subtrees to join", ErrBadSnapshot, n.Height, k)
		}
		l, r := s.stack[k-2], s.stack[k-1]
		switch {
		case l.height >= n.Height || r.height >= n.Height:
			return fmt.Errorf("%w: inner node of height %d over subtrees of heights %d and %d", ErrBadSnapshot, n.Height, l.height, r.height)
		case !bytes.Equal(n.Key, r.minKey):
			return fmt.Errorf("%w: inner node key %X is not its right subtree's smallest key %X", ErrBadSnapshot, n.Key, r.minKey)
		}
		// The importer writes both children into its batch now (bounded
		// apart: importBatchBytes), and lets go of their children; it
		// keeps the two linked from the new node until that is joined in
		// turn.
		s.stackBytes -= l.held + r.held
		joined := subtree{height: n.Height, minKey: l.minKey, root: size, held: size + l.root + r.root}
		s.stack = append(s.stack[:k-2], joined)
		s.stackBytes += joined.held
	}
	switch {
	case len(s.stack) > maxImportStack:
		return fmt.Errorf("%w: more than %d subtrees wait for a parent", ErrBadSnapshot, maxImportStack)
	case s.stackBytes > maxImportBytes:
		return fmt.Errorf("%w: the import would hold more than %d MiB in memory", ErrBadSnapshot, maxImportBytes>>20)
	}
	return nil
}

// complete checks that the stream ended in one tree (or none: an empty
// state).
func (s *streamShape) complete() error {
	if len(s.stack) > 1 {
		return fmt.Errorf("%w: the stream ended with %d subtrees not joined into one tree", ErrBadSnapshot, len(s.stack))
	}
	return nil
}

// Finish completes the import, then checks that the imported root is
// trusted (the app hash the light client verified for the version) and
// that check accepts the restored state. Only then is the store at the
// version; on any failure everything imported is wiped and the store is
// empty again (ErrRootMismatch when the root differs). A wipe that fails
// leaves the store holding the import, unable to take another snapshot
// until it is opened again (which wipes it: the restore's marker is still
// there): that error is the node's, whatever the snapshot's was.
func (r *Restore) Finish(trusted []byte, check func(Reader) error) error {
	if r.done {
		return fmt.Errorf("%w: restore already finished", ErrBadSnapshot)
	}
	r.done = true
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.restoring = nil
	err := r.commitLocked(trusted, check)
	if err != nil {
		r.imp.Close() // Commit may have failed before closing it
		if werr := s.wipeLocked(); werr != nil {
			return fmt.Errorf("store: restore: wiping the import after (%v): %w", err, werr)
		}
		return err
	}
	if err := s.db.DeleteSync(restoreMarker); err != nil {
		return errors.Join(fmt.Errorf("store: restore: unmark: %w", err), s.wipeLocked())
	}
	return nil
}

// commitLocked commits the import and checks it. Called with s.mu held.
func (r *Restore) commitLocked(trusted []byte, check func(Reader) error) error {
	s := r.s
	// A stream that ends before its subtrees are joined into one tree is
	// the snapshot's fault; iavl's Commit would say so too, but among
	// failures of this node's own (its last write, the load of the version
	// it imported, which reads the disk).
	if err := r.shape.complete(); err != nil {
		return err
	}
	if err := r.imp.Commit(); err != nil {
		return fmt.Errorf("store: restore: commit the import: %w", err)
	}
	// Commit has waited for every batch it handed to its goroutine.
	if err := r.writeErrs.err(); err != nil {
		return fmt.Errorf("store: restore: writing the import: %w", err)
	}
	if err := s.db.SetSync(restoredVersionKey, binary.BigEndian.AppendUint64(nil, uint64(r.version))); err != nil {
		return fmt.Errorf("store: restore: record the version: %w", err)
	}
	if err := s.loadTree(); err != nil {
		return err
	}
	if s.lastVersion != r.version || !bytes.Equal(s.lastHash, trusted) {
		return fmt.Errorf("%w: version %d root %X, trusted %X", ErrRootMismatch, s.lastVersion, s.lastHash, trusted)
	}
	if check == nil {
		return nil
	}
	t, err := s.immutable(r.version)
	if err != nil {
		return err
	}
	return check(treeReader{t})
}

// treeReader reads one immutable tree without taking the store's lock, for
// a caller that holds it.
type treeReader struct{ t *iavl.ImmutableTree }

func (r treeReader) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, nil
	}
	v, err := r.t.Get(key)
	return cloneValue(v), err
}

func (r treeReader) Has(key []byte) (bool, error) {
	v, err := r.Get(key)
	return v != nil, err
}

func (r treeReader) Iterator(start, end []byte, ascending bool) (Iterator, error) {
	return r.t.Iterator(openBound(start), openBound(end), ascending)
}

// Abort abandons the import and wipes what it wrote; the store is empty
// again. It is safe to call after Finish (then it does nothing).
func (r *Restore) Abort() error {
	if r.done {
		return nil
	}
	r.done = true
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.imp.Close()
	if r.s.closed {
		return ErrClosed
	}
	r.s.restoring = nil
	return r.s.wipeLocked()
}

// wipeLocked deletes every key of the database and reloads the (now
// empty) tree. Only a restore, into a store that was empty, calls it.
// Called with s.mu held.
func (s *Store) wipeLocked() error {
	if err := wipeDB(s.db); err != nil {
		return err
	}
	return s.loadTree()
}

// wipeUnfinishedRestore empties db if a restore was under way in it.
func wipeUnfinishedRestore(db dbm.DB) error {
	marked, err := db.Has(restoreMarker)
	if err != nil {
		return fmt.Errorf("store: check for an unfinished restore: %w", err)
	}
	if !marked {
		return nil
	}
	return wipeDB(db)
}

// wipeDB deletes every key of db, in bounded batches, the marker last.
// Each batch's iterator starts after the last key deleted: started from
// the beginning, it would step over every deletion before it again.
func wipeDB(db dbm.DB) error {
	var from []byte
	for {
		keys, err := keysFrom(db, from, wipeBatch)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		if err := deleteKeys(db, keys); err != nil {
			return err
		}
		from = append(keys[len(keys)-1], 0) // the next key after it
	}
	if err := db.DeleteSync(restoreMarker); err != nil {
		return fmt.Errorf("store: wipe: %w", err)
	}
	return nil
}

// keysFrom returns up to n keys of db from from on (nil: the first),
// other than the restore marker.
func keysFrom(db dbm.DB, from []byte, n int) ([][]byte, error) {
	it, err := db.Iterator(from, nil)
	if err != nil {
		return nil, fmt.Errorf("store: wipe: %w", err)
	}
	defer it.Close()
	var keys [][]byte
	for ; it.Valid() && len(keys) < n; it.Next() {
		if !bytes.Equal(it.Key(), restoreMarker) {
			keys = append(keys, bytes.Clone(it.Key()))
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: wipe: %w", err)
	}
	return keys, nil
}

func deleteKeys(db dbm.DB, keys [][]byte) error {
	b := db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("store: wipe: %w", err)
		}
	}
	if err := b.WriteSync(); err != nil {
		return fmt.Errorf("store: wipe: %w", err)
	}
	return nil
}
