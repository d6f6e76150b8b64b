package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	corestore "cosmossdk.io/core/store"
	dbm "github.com/cosmos/cosmos-db"
	iavldb "github.com/cosmos/iavl/db"
)

// Backend names accepted in Options.Backend.
const (
	BackendGoLevelDB = "goleveldb"
	BackendPebble    = "pebble"
	BackendMemDB     = "memdb"
)

// dbName is the database name inside the data directory: <dir>/state.db.
const dbName = "state"

// openDB opens the cosmos-db database for a backend name ("" means
// DefaultBackend). "pebbledb" is accepted as an alias of "pebble" (it is
// cosmos-db's and CometBFT's own spelling).
func openDB(dir, backend string) (dbm.DB, error) {
	if backend == "" {
		backend = DefaultBackend
	}
	var bt dbm.BackendType
	switch backend {
	case BackendGoLevelDB:
		bt = dbm.GoLevelDBBackend
	case BackendPebble, string(dbm.PebbleDBBackend):
		bt = dbm.PebbleDBBackend
	case BackendMemDB:
		return dbm.NewMemDB(), nil
	default:
		return nil, fmt.Errorf("store: unknown backend %q (want %q, %q or %q)",
			backend, BackendGoLevelDB, BackendPebble, BackendMemDB)
	}
	if dir == "" {
		return nil, fmt.Errorf("store: backend %q needs a directory", backend)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	path := filepath.Join(dir, dbName+".db")
	if err := CheckBackend(path, backend); err != nil {
		return nil, fmt.Errorf("%w (set [store] backend = %q in app.toml)", err, backendOnDisk(path))
	}
	db, err := dbm.NewDB(dbName, bt, dir)
	if err != nil {
		return nil, fmt.Errorf("store: open %s database in %s: %w", backend, dir, err)
	}
	return db, nil
}

// CheckBackend returns an error wrapping ErrWrongBackend when the database
// directory path was written by another engine than backend (goleveldb,
// pebble or pebbledb); nil when it was not written yet, or by backend.
// Opening a database with the wrong engine fails or, worse, rewrites its
// files (goleveldb "opening" a young pebble database drops its log).
func CheckBackend(path, backend string) error {
	if found := backendOnDisk(path); found != "" && found != canonicalBackend(backend) {
		return fmt.Errorf("%w: %s was created with %s; opening it with %s would fail or corrupt it", ErrWrongBackend, path, found, backend)
	}
	return nil
}

// canonicalBackend is backend's name in Options.Backend spelling.
func canonicalBackend(backend string) string {
	if backend == string(dbm.PebbleDBBackend) {
		return BackendPebble
	}
	return backend
}

// backendOnDisk names the engine that wrote the database directory path,
// from the files only it writes: pebble keeps OPTIONS-<n> and
// marker.<name>.<n> files (a marker comes first, when a new database is
// created), goleveldb a CURRENT file and neither of those. "" when path
// holds none of them (not created yet, or something else).
func backendOnDisk(path string) string {
	entries, err := os.ReadDir(path)
	if err != nil {
		return ""
	}
	current := false
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), "OPTIONS-"), strings.HasPrefix(e.Name(), "marker."):
			return BackendPebble
		case e.Name() == "CURRENT":
			current = true
		}
	}
	if current {
		return BackendGoLevelDB
	}
	return ""
}

// iavlDB adapts a cosmos-db database to the database interface of iavl v1.3
// (github.com/cosmos/iavl/db), whose iterators and batches are the
// cosmossdk.io/core/store types. The method sets are identical; only the
// named return types differ, so every method is a plain forward.
type iavlDB struct {
	db dbm.DB
	// flushBytes, when not 0, makes every batch write itself out each
	// time it holds that many bytes (flushingBatch): a restore's, whose
	// failed writes are kept in writeErrs.
	flushBytes int
	writeErrs  *writeErrors
}

var _ iavldb.DB = iavlDB{}

func (a iavlDB) Get(key []byte) ([]byte, error) { return a.db.Get(key) }
func (a iavlDB) Has(key []byte) (bool, error)   { return a.db.Has(key) }
func (a iavlDB) Close() error                   { return a.db.Close() }

func (a iavlDB) NewBatch() corestore.Batch {
	if a.flushBytes > 0 {
		return &flushingBatch{db: a.db, b: a.db.NewBatch(), limit: a.flushBytes, errs: a.writeErrs}
	}
	return a.db.NewBatch()
}

// flushingBatch writes itself out whenever it holds limit bytes of keys
// and values, and goes on in a new batch. iavl's importer writes its batch
// every 10,000 nodes whatever their size, so a restore of a state with
// large values (a consortium's proposals run to tens of KB each) would
// otherwise hold ten thousand of them at once. It gives up the batch's
// atomicity, which an import does not need: an unfinished one is wiped
// (restoreMarker). Only a restore's tree uses it (BeginRestore), and only
// iavl's importer takes its batches (NewBatch; the tree's own, atomic
// ones come from NewBatchWithSize).
//
// Every write is synced, so that an import the store accepts is on disk
// whole (goleveldb does not sync the journal it rotates), and its error
// is also kept in errs: iavl's importer writes batches from a goroutine
// and drops the error of the last one it hands over, so Finish asks errs
// (commitLocked).
type flushingBatch struct {
	db    dbm.DB
	b     dbm.Batch
	bytes int
	limit int
	errs  *writeErrors
}

func (f *flushingBatch) Set(key, value []byte) error {
	if err := f.b.Set(key, value); err != nil {
		return err
	}
	return f.flushIfFull(len(key) + len(value))
}

func (f *flushingBatch) Delete(key []byte) error {
	if err := f.b.Delete(key); err != nil {
		return err
	}
	return f.flushIfFull(len(key))
}

func (f *flushingBatch) flushIfFull(n int) error {
	if f.bytes += n; f.bytes < f.limit {
		return nil
	}
	if err := f.Write(); err != nil {
		return err
	}
	if err := f.b.Close(); err != nil {
		return f.errs.keep(err)
	}
	f.b, f.bytes = f.db.NewBatch(), 0
	return nil
}

func (f *flushingBatch) Write() error              { return f.errs.keep(f.b.WriteSync()) }
func (f *flushingBatch) WriteSync() error          { return f.Write() }
func (f *flushingBatch) Close() error              { return f.b.Close() }
func (f *flushingBatch) GetByteSize() (int, error) { return f.b.GetByteSize() }

// writeErrors keeps the first error of a restore's batch writes, from
// whatever goroutine.
type writeErrors struct {
	mu    sync.Mutex
	first error
}

// keep notes err if it is the first (w may be nil: nothing is kept), and
// returns it.
func (w *writeErrors) keep(err error) error {
	if err != nil && w != nil {
		w.mu.Lock()
		if w.first == nil {
			w.first = err
		}
		w.mu.Unlock()
	}
	return err
}

// err is the first error kept, if any.
func (w *writeErrors) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

// NewBatchWithSize caps the pre-allocation hint. The store sets iavl's
// flush threshold to "never" so that a version is written in one atomic
// batch (see atomicVersions in store.go), and iavl passes that threshold
// here as the size to pre-allocate.
func (a iavlDB) NewBatchWithSize(n int) corestore.Batch {
	if n > maxBatchPrealloc {
		n = maxBatchPrealloc
	}
	return a.db.NewBatchWithSize(n)
}

// maxBatchPrealloc bounds the memory pre-allocated for a write batch; the
// batch still grows as needed.
const maxBatchPrealloc = 1 << 20

func (a iavlDB) Iterator(start, end []byte) (corestore.Iterator, error) {
	it, err := a.db.Iterator(start, end)
	if err != nil {
		return nil, err
	}
	return it, nil
}

func (a iavlDB) ReverseIterator(start, end []byte) (corestore.Iterator, error) {
	it, err := a.db.ReverseIterator(start, end)
	if err != nil {
		return nil, err
	}
	return it, nil
}
