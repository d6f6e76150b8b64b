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

// wipeBatch is how many keys one batch of a wipe deletes.
const wipeBatch = 10_000

// Restore is a snapshot import in progress into an empty store. Its
// methods are called from one goroutine (CometBFT's snapshot connection);
// the store stays at version 0 until Finish succeeds.
type Restore struct {
	s       *Store
	imp     *iavl.Importer
	version int64
	done    bool
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
	imp, err := s.tree.Import(version)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: restore: %w", err), s.wipeLocked())
	}
	return &Restore{s: s, imp: imp, version: version}, nil
}

// Version is the version being restored.
func (r *Restore) Version() int64 { return r.version }

// AddChunk decodes one chunk and adds its nodes to the import. A chunk
// that does not decode, or whose nodes do not continue a valid tree, is
// ErrBadSnapshot; the import can then only be aborted.
func (r *Restore) AddChunk(chunk []byte) error {
	if r.done {
		return fmt.Errorf("%w: restore already finished", ErrBadSnapshot)
	}
	nodes, err := DecodeChunk(chunk, r.version)
	if err != nil {
		return err
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.s.closed {
		return ErrClosed
	}
	for _, n := range nodes {
		if err := r.imp.Add(n); err != nil {
			return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
		}
	}
	return nil
}

// Finish completes the import, then checks that the imported root is
// trusted (the app hash the light client verified for the version) and
// that check accepts the restored state. Only then is the store at the
// version; on any failure everything imported is wiped and the store is
// empty again (ErrRootMismatch when the root differs).
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
	err := r.commitLocked(trusted, check)
	if err != nil {
		r.imp.Close() // Commit may have failed before closing it
		return errors.Join(err, s.wipeLocked())
	}
	if err := s.db.DeleteSync(restoreMarker); err != nil {
		return errors.Join(fmt.Errorf("store: restore: unmark: %w", err), s.wipeLocked())
	}
	return nil
}

// commitLocked commits the import and checks it. Called with s.mu held.
func (r *Restore) commitLocked(trusted []byte, check func(Reader) error) error {
	s := r.s
	if err := r.imp.Commit(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
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
func wipeDB(db dbm.DB) error {
	for {
		keys, err := firstKeys(db, wipeBatch)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := deleteKeys(db, keys); err != nil {
			return err
		}
	}
}

// firstKeys returns up to n keys of db other than the restore marker,
// or the marker alone when no other key is left.
func firstKeys(db dbm.DB, n int) ([][]byte, error) {
	it, err := db.Iterator(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("store: wipe: %w", err)
	}
	defer it.Close()
	var keys [][]byte
	marker := false
	for ; it.Valid() && len(keys) < n; it.Next() {
		if bytes.Equal(it.Key(), restoreMarker) {
			marker = true
			continue
		}
		keys = append(keys, bytes.Clone(it.Key()))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: wipe: %w", err)
	}
	if len(keys) == 0 && marker {
		keys = append(keys, restoreMarker)
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
