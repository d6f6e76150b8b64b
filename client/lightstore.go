package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/light/store"
	lightdb "github.com/cometbft/cometbft/light/store/db"
	cmttypes "github.com/cometbft/cometbft/types"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

// The light store under a Home is shared by every run of that Home (two
// emrcli commands in two terminals, a script's parallel uploads), so it is
// never kept open: goleveldb locks it for as long as it is open. A Client
// copies it into memory at New (a read-only open: runs that copy at once
// share the lock), its light client works on that copy, and the headers
// it verifies are written back (an exclusive open) as soon as a newer
// header than the store had is verified, before anything that header
// proves is returned, and, the others, at Close. Each open lasts as long
// as the copy or the write; a run that finds the store locked waits for
// it (openStore), within the client's timeout.
const (
	// lightRootKey holds, in the store itself, the trust root (a TrustRoot
	// as JSON) its headers were verified from: written before them, so that
	// a write-back can tell the store it copied from one emrcli light init
	// --force replaced meanwhile, even after a crash between the store and
	// trust.json. Stores made before it have none; the first write-back
	// adds it.
	lightRootKey = "emrchain-trust-root"
	// lightPruningSize is how many headers the store keeps, the newest: the
	// light client's default, given explicitly because each write-back
	// prunes the store on disk to it too.
	lightPruningSize = 1000
	// lockRetryMax bounds the wait between two attempts to open a store
	// another run holds.
	lockRetryMax = 100 * time.Millisecond
)

// openStore opens the goleveldb store under home, read-only (sharing the
// lock with other readers) or not (alone). A missing store is created only
// when create; otherwise it is an error matching fs.ErrNotExist. A store
// another run holds is asked for again, after a short and growing wait,
// until ctx ends.
func openStore(ctx context.Context, home string, readOnly, create bool) (*dbm.GoLevelDB, error) {
	if !create {
		// goleveldb creates the directory before it finds no store in it:
		// never leave an empty one where the store was.
		if _, err := os.Stat(filepath.Join(home, lightDBName+".db", "CURRENT")); err != nil {
			return nil, err
		}
	}
	o := &opt.Options{ReadOnly: readOnly, ErrorIfMissing: !create}
	start, wait := time.Now(), 5*time.Millisecond
	for {
		db, err := dbm.NewGoLevelDBWithOpts(lightDBName, home, o)
		if err == nil {
			return db, nil
		}
		if !lockBusy(err) {
			return nil, fmt.Errorf("open the light store in %s: %w", home, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the light store in %s stayed locked by another run of this home for %s (%w): %w",
				home, time.Since(start).Round(time.Millisecond), ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, lockRetryMax)
	}
}

// lockBusy reports whether err is goleveldb's "another process holds the
// lock": flock's EWOULDBLOCK, or Windows' sharing violation.
func lockBusy(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	return errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK ||
		(runtime.GOOS == "windows" && errno == 32) // ERROR_SHARING_VIOLATION
}

// loadStore copies the light store under home into memory, and reads the
// trust root the store records (nil for a store made before it did) and
// trust.json (nil when absent), both while the store is open, so that the
// three are of one moment. A home without a store gives an empty copy.
func loadStore(ctx context.Context, home string) (mem dbm.DB, dbRoot, stored *TrustRoot, err error) {
	mem = dbm.NewMemDB()
	db, err := openStore(ctx, home, true, false)
	if errors.Is(err, fs.ErrNotExist) {
		stored, err = ReadTrustRoot(home)
		return mem, nil, stored, err
	}
	if err != nil {
		return nil, nil, nil, err
	}
	defer db.Close()
	if err := copyDB(mem, db); err != nil {
		return nil, nil, nil, fmt.Errorf("read the light store in %s: %w", home, err)
	}
	if dbRoot, err = storeRoot(db, home); err != nil {
		return nil, nil, nil, err
	}
	if stored, err = ReadTrustRoot(home); err != nil {
		return nil, nil, nil, err
	}
	return mem, dbRoot, stored, nil
}

// copyDB sets every key of src in dst.
func copyDB(dst, src dbm.DB) error {
	it, err := src.Iterator(nil, nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for ; it.Valid(); it.Next() {
		if err := dst.Set(bytes.Clone(it.Key()), bytes.Clone(it.Value())); err != nil {
			return err
		}
	}
	return it.Error()
}

// storeRoot is the trust root db records (lightRootKey), nil if none.
func storeRoot(db dbm.DB, home string) (*TrustRoot, error) {
	raw, err := db.Get([]byte(lightRootKey))
	if err != nil || raw == nil {
		return nil, err
	}
	var tr TrustRoot
	if err := json.Unmarshal(raw, &tr); err != nil {
		return nil, fmt.Errorf("the light store in %s: its trust root: %w", home, err)
	}
	return &tr, nil
}

// sameRoot reports whether a and b are the same header of the same chain.
func sameRoot(a, b *TrustRoot) bool {
	return a.ChainID == b.ChainID && a.Height == b.Height && strings.EqualFold(a.Hash, b.Hash)
}

// savedStore is the light client's store (the in-memory copy): it records
// the heights of the headers the light client saves, for diskStore to
// write back.
type savedStore struct {
	store.Store
	mu    sync.Mutex
	saved map[int64]bool
}

func (s *savedStore) SaveLightBlock(lb *cmttypes.LightBlock) error {
	if err := s.Store.SaveLightBlock(lb); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saved == nil {
		s.saved = map[int64]bool{}
	}
	s.saved[lb.Height] = true
	return nil
}

// unsaved is the heights saved since they were last written back, in
// order.
func (s *savedStore) unsaved() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := make([]int64, 0, len(s.saved))
	for h := range s.saved {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	return hs
}

func (s *savedStore) written(hs []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hs {
		delete(s.saved, h)
	}
}

// diskStore writes a Client's newly verified headers back to the light
// store under its Home.
type diskStore struct {
	home string
	// root is the trust root the run's headers were verified from: the
	// store's (or trust.json's) at New, or Config.Trust for a new store.
	root *TrustRoot
	mem  *savedStore

	mu sync.Mutex
	// newest is the newest header the store on disk is known to hold.
	newest int64
	// replaced: the store on disk is no longer of root (emrcli light init
	// --force replaced it, or it was removed): nothing more is written.
	replaced bool
}

// stale reports whether the light client holds a header newer than the
// store on disk is known to.
func (d *diskStore) stale() bool {
	hs := d.mem.unsaved()
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.replaced && len(hs) > 0 && hs[len(hs)-1] > d.newest
}

// write writes the headers the light client saved and the store lacks
// into the store on disk, and prunes it to lightPruningSize, under the
// store's lock. A store another trust root replaced meanwhile is left as
// it is: the run's headers were verified from a root it no longer trusts.
// With create (a new trust root), the store is created if need be, and
// trust.json written once the store holds the root.
func (d *diskStore) write(ctx context.Context, create bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.replaced {
		return nil
	}
	hs := d.mem.unsaved()
	if len(hs) == 0 && !create {
		return nil
	}
	if create {
		if err := os.MkdirAll(d.home, 0o700); err != nil {
			return err
		}
	}
	db, err := openStore(ctx, d.home, false, create)
	if errors.Is(err, fs.ErrNotExist) {
		d.replaced = true // removed
		return nil
	}
	if err != nil {
		return err
	}
	defer db.Close()
	dbRoot, err := storeRoot(db, d.home)
	if err != nil {
		return err
	}
	same := dbRoot != nil && sameRoot(dbRoot, d.root)
	if dbRoot == nil {
		// A store from before lightRootKey (or one created a moment ago):
		// trust.json, which only a light init changes, and it under this
		// lock, says which root it is of. A new root's store has neither
		// yet: its New checked that a store it found holds the root.
		tr, err := ReadTrustRoot(d.home)
		if err != nil {
			return err
		}
		same = (tr != nil && sameRoot(tr, d.root)) || (tr == nil && create)
		if same {
			raw, err := json.Marshal(d.root)
			if err != nil {
				return err
			}
			// Before the headers: a store with headers always says
			// which root they are of.
			if err := db.SetSync([]byte(lightRootKey), raw); err != nil {
				return err
			}
		}
	}
	if !same {
		d.replaced = true
		return nil
	}
	disk := lightdb.New(db, lightPrefix)
	for _, h := range hs {
		lb, err := d.mem.LightBlock(h)
		if errors.Is(err, store.ErrLightBlockNotFound) {
			continue // pruned since
		}
		if err != nil {
			return err
		}
		if have, err := disk.LightBlock(h); err == nil {
			// Another run of the same root verified it too.
			if !bytes.Equal(have.Hash(), lb.Hash()) {
				return verificationError("header %d: the light store in %s holds %X, this run verified %X from the same root of trust: a fork of the chain?",
					h, d.home, have.Hash(), lb.Hash())
			}
			continue
		} else if !errors.Is(err, store.ErrLightBlockNotFound) {
			return err
		}
		// Only headers the store lacks: SaveLightBlock counts each one
		// saved, and Prune goes by that count.
		if err := disk.SaveLightBlock(lb); err != nil {
			return err
		}
	}
	if err := disk.Prune(lightPruningSize); err != nil {
		return err
	}
	if create {
		if err := writeTrustRoot(d.home, d.root); err != nil {
			return err
		}
	}
	if last, err := disk.LastLightBlockHeight(); err == nil {
		d.newest = max(d.newest, last)
	}
	d.mem.written(hs)
	return nil
}

// ReplaceStore replaces the light store and trust root under home by those
// under from: a Home a Client was made with a new trust root on, and
// closed (emrcli light init builds a new root there, and replaces its
// store only once the root verified). The store under home keeps its
// place: its contents are replaced in one write, under its lock, so a run
// of home copying or writing it meanwhile is waited for, and one that
// copied it before writes none of the old root's headers into the new
// store. ctx bounds the wait.
func ReplaceStore(ctx context.Context, home, from string) error {
	tr, err := ReadTrustRoot(from)
	if err != nil {
		return err
	}
	if tr == nil {
		return fmt.Errorf("%s holds no trust root", from)
	}
	src, err := openStore(ctx, from, true, false)
	if err != nil {
		return err
	}
	defer src.Close()
	root, err := storeRoot(src, from)
	if err != nil {
		return err
	}
	if root == nil || !sameRoot(root, tr) {
		return fmt.Errorf("the light store in %s is not of its trust.json's root", from)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	dst, err := openStore(ctx, home, false, true)
	if err != nil {
		return err
	}
	defer dst.Close()
	b := dst.NewBatch()
	defer b.Close()
	it, err := dst.Iterator(nil, nil)
	if err != nil {
		return err
	}
	for ; it.Valid(); it.Next() {
		if err := b.Delete(bytes.Clone(it.Key())); err != nil {
			it.Close()
			return err
		}
	}
	err = it.Error()
	it.Close()
	if err != nil {
		return err
	}
	if it, err = src.Iterator(nil, nil); err != nil {
		return err
	}
	for ; it.Valid(); it.Next() {
		if err := b.Set(bytes.Clone(it.Key()), bytes.Clone(it.Value())); err != nil {
			it.Close()
			return err
		}
	}
	err = it.Error()
	it.Close()
	if err != nil {
		return err
	}
	// The store says which root it is of (lightRootKey) in the same
	// write: a crash before trust.json is rewritten leaves the two
	// disagreeing, which New refuses (run light init --force again), never
	// a store whose headers trust.json misnames.
	if err := b.WriteSync(); err != nil {
		return fmt.Errorf("write the light store in %s: %w", home, err)
	}
	return writeTrustRoot(home, tr)
}
