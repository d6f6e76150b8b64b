package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/cosmos/iavl"
)

// exportCacheSize is the node cache of the tree an export reads through:
// the export walks each node once, so a cache only needs the path from the
// root.
const exportCacheSize = 1_000

// errExportStopped is returned by an export cut short by Store.Close.
var errExportStopped = errors.New("store: export stopped: store closing")

// Export streams the nodes of committed version to emit, in the post-order
// IAVL's Exporter produces (the order Import needs), and returns the
// version's root hash. It reads the version through a tree of its own, not
// the working tree's nodes, so it may run on any goroutine beside blocks
// being executed and committed; pruning keeps the version until it returns.
// It ends early with ctx's error, or when the store closes.
func (s *Store) Export(ctx context.Context, version int64, emit func(*iavl.ExportNode) error) ([]byte, error) {
	if err := s.beginExport(version); err != nil {
		return nil, err
	}
	defer s.endExport(version)
	tree := iavl.NewMutableTree(iavlDB{db: s.db}, exportCacheSize, true, iavl.NewNopLogger())
	defer tree.Close() // its node db only (its batch, never written); s.db stays open
	t, err := tree.GetImmutable(version)
	if err != nil {
		return nil, fmt.Errorf("store: export version %d: %w", version, err)
	}
	if t.Size() == 0 {
		return nil, fmt.Errorf("%w: version %d", ErrEmptyTree, version)
	}
	exp, err := t.Export()
	if err != nil {
		return nil, fmt.Errorf("store: export version %d: %w", version, err)
	}
	defer exp.Close()
	for {
		if err := s.exportLive(ctx); err != nil {
			return nil, err
		}
		n, err := exp.Next()
		if errors.Is(err, iavl.ErrorExportDone) {
			return t.Hash(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("store: export version %d: %w", version, err)
		}
		if err := emit(n); err != nil {
			return nil, err
		}
	}
}

// exportLive fails once ctx is done or the store is closing.
func (s *Store) exportLive(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return errExportStopped
	default:
		return nil
	}
}

// beginExport registers an export of version, which must be committed and
// not pruned: from here on prune keeps it.
func (s *Store) beginExport(version int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if version <= 0 || version > s.lastVersion || !s.tree.VersionExists(version) {
		return fmt.Errorf("%w: export of version %d (latest %d)", ErrVersionNotFound, version, s.lastVersion)
	}
	s.exporting[version]++
	s.exports.Add(1)
	return nil
}

func (s *Store) endExport(version int64) {
	s.mu.Lock()
	if s.exporting[version]--; s.exporting[version] <= 0 {
		delete(s.exporting, version)
	}
	s.mu.Unlock()
	s.exports.Done()
}

// oldestExport is the lowest version being exported, 0 if none. Called
// with s.mu held.
func (s *Store) oldestExport() int64 {
	var oldest int64
	for v := range s.exporting {
		if oldest == 0 || v < oldest {
			oldest = v
		}
	}
	return oldest
}
