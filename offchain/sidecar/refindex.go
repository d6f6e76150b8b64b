package sidecar

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	dbm "github.com/cosmos/cosmos-db"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// refIndex is the sweep's reference index: the store key (owner and
// SHA-256, owner.go) of every blob that the successful transactions of a
// committed block referenced (ChainView.BlockBlobs), complete from height 1
// through its cursor; on a node without the early blocks, seeded from the
// state (seed). The chain keeps no index by hash (docs/decisions.md), so
// the sidecar keeps its own, read from block results.
//
// It lives in a cosmos-db database: pebble in a directory, which only
// spares re-reading the chain at each start, or in memory. Each page of
// blocks is written as one synced batch holding the page's keys and the new
// cursor, so the cursor is never ahead of the keys it vouches for.
type refIndex struct {
	catchUpMu sync.Mutex // one catch-up at a time

	mu  sync.Mutex // guards db and cur
	db  dbm.DB     // nil once closed
	cur refCursor

	// onAdd, if set, learns the keys of every page written, after the
	// write and outside mu (the pending uploads' accounting).
	onAdd func([]blobstore.Key)
}

// refCursor says how far the index is complete: every blob of blocks 1
// through Height is in it. Time is block Height's time; a catch-up checks
// it against the chain, so an index built from another chain is refused
// (unless the node no longer holds that block: catchUp).
type refCursor struct {
	Height int64
	Time   time.Time
}

// Keys of the reference index: the cursor, a seed's progress, one key per
// blob, and the progress of a scrub pass (which keeps it here, in the
// sidecar's one database, so that a restart does not start it again).
var (
	refCursorKey  = []byte{0x00}
	refSeedKey    = []byte{0x01}
	refBlobPrefix = byte(0x02)
	refScrubKey   = []byte{0x03}
)

// seedProgress is how far a seed from the state (refIndex.seed) got: the
// lowest height of the pages read so far, and where the next page starts,
// or that every page is read (Done).
type seedProgress struct {
	Height int64
	Done   bool
	After  string
}

func (p seedProgress) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(p.Height))
	if p.Done {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, p.After...)
}

// decodeSeedProgress is encode's inverse.
// A progress is written only once a page was read, so its height is at
// least 1.
func decodeSeedProgress(v []byte) (seedProgress, error) {
	if len(v) < 9 || v[8] > 1 || int64(binary.BigEndian.Uint64(v)) < 1 {
		return seedProgress{}, fmt.Errorf("reference index: the seed's progress (%x) does not decode: remove the directory to rebuild the index", v)
	}
	return seedProgress{Height: int64(binary.BigEndian.Uint64(v)), Done: v[8] == 1, After: string(v[9:])}, nil
}

func refBlobKey(key blobstore.Key) []byte {
	b := append([]byte{refBlobPrefix}, key.Owner[:]...)
	return append(b, key.Sum[:]...)
}

// refIndexName is the database's name in its directory
// (<dir>/blob-refs.db). An index of an earlier sidecar, which kept bare
// sums (<dir>/refs.db), is not read: this one is built anew from the chain.
const refIndexName = "blob-refs"

// Catch-up: blocks asked per BlockBlobs call (CometBFT's BlockchainInfo
// returns at most 20), and when a long catch-up logs its progress.
const (
	refPageBlocks = nodeBlocksPerCall
	refLogEvery   = 5 * time.Second
)

var errRefIndexClosed = errors.New("the reference index is closed")

// openRefIndex opens the index kept in dir, or a new one in memory when dir
// is empty.
func openRefIndex(dir string) (*refIndex, error) {
	if dir == "" {
		return newRefIndex(dbm.NewMemDB())
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sidecar: reference index: %w", err)
	}
	db, err := dbm.NewPebbleDB(refIndexName, dir, nil)
	if err != nil {
		return nil, fmt.Errorf("sidecar: open the reference index in %s (is another sidecar using it?): %w", dir, err)
	}
	x, err := newRefIndex(db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sidecar: reference index in %s: %w", dir, err)
	}
	return x, nil
}

// newRefIndex reads the cursor of the index kept in db.
func newRefIndex(db dbm.DB) (*refIndex, error) {
	v, err := db.Get(refCursorKey)
	if err != nil {
		return nil, fmt.Errorf("read the cursor: %w", err)
	}
	x := &refIndex{db: db}
	if v != nil {
		if x.cur, err = decodeRefCursor(v); err != nil {
			return nil, err
		}
	}
	return x, nil
}

func (c refCursor) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(c.Height))
	return binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixNano()))
}

// decodeRefCursor is encode's inverse. A cursor is written only past a
// block, so its height is at least 1.
func decodeRefCursor(v []byte) (refCursor, error) {
	if len(v) != 16 {
		return refCursor{}, fmt.Errorf("the cursor is %d bytes, want 16: remove the directory to rebuild the index", len(v))
	}
	if h := int64(binary.BigEndian.Uint64(v)); h < 1 {
		return refCursor{}, fmt.Errorf("the cursor is at height %d: remove the directory to rebuild the index", h)
	}
	return refCursor{
		Height: int64(binary.BigEndian.Uint64(v)),
		Time:   time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC(),
	}, nil
}

// cursor is how far the index is complete.
func (x *refIndex) cursor() (refCursor, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return refCursor{}, errRefIndexClosed
	}
	return x.cur, nil
}

// behind reports whether the node's head is a block the index has not
// read yet: a key not in the index may then still be referenced, and a
// catchUp would tell.
func (x *refIndex) behind(head Head) (bool, error) {
	cur, err := x.cursor()
	return err == nil && cur.Height < head.Height, err
}

// size is the largest size a committed record or share has given the blob
// key (0: none the index has read, or an entry written before sizes were
// kept).
func (x *refIndex) size(key blobstore.Key) (uint64, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return 0, errRefIndexClosed
	}
	v, err := x.db.Get(refBlobKey(key))
	return decodeRefSize(v), err
}

// encodeRefSize is a blob entry's value: its size, 8 bytes big-endian.
// Entries written before sizes were kept hold one byte, 1.
func encodeRefSize(size uint64) []byte { return binary.BigEndian.AppendUint64(nil, size) }

// decodeRefSize reads encodeRefSize: 0 for an older entry, or none.
func decodeRefSize(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// has reports whether a block the index has read referenced the blob key.
func (x *refIndex) has(key blobstore.Key) (bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return false, errRefIndexClosed
	}
	return x.db.Has(refBlobKey(key))
}

// keysAfter returns up to n keys of the index above after, in key order
// (Key.Compare: the order of Store.List).
func (x *refIndex) keysAfter(after blobstore.Key, n int) ([]blobstore.Key, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return nil, errRefIndexClosed
	}
	it, err := x.db.Iterator(append(refBlobKey(after), 0), []byte{refBlobPrefix + 1})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var keys []blobstore.Key
	for ; it.Valid() && len(keys) < n; it.Next() {
		k := it.Key()
		if len(k) != 1+len(blobstore.Owner{})+len(blobstore.Sum{}) {
			return nil, fmt.Errorf("reference index: a key of %d bytes", len(k))
		}
		var key blobstore.Key
		copy(key.Sum[:], k[1+copy(key.Owner[:], k[1:]):])
		keys = append(keys, key)
	}
	return keys, it.Error()
}

// close closes the database; later calls fail. It may be called again.
func (x *refIndex) close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return nil
	}
	err := x.db.Close()
	x.db = nil
	return err
}

// catchUp reads every block after the cursor up to the chain's head into
// the index and returns the new cursor. It first reads the block at the
// cursor again: a different time there means the index was built from
// another chain, and nothing in it is trusted. A node that no longer holds
// that block is read on from the next one, or, holding not even that, the
// index is read again from the state (seed). On error the index keeps
// every page it completed.
func (x *refIndex) catchUp(ctx context.Context, chain ChainView, log Logger) (refCursor, error) {
	x.catchUpMu.Lock()
	defer x.catchUpMu.Unlock()
	cur, err := x.cursor()
	if err != nil {
		return cur, err
	}
	head, err := chain.Head(ctx)
	if err != nil {
		return cur, fmt.Errorf("the chain's head: %w", err)
	}
	if head.Height < cur.Height {
		return cur, fmt.Errorf("the index is complete through height %d but the chain's head is %d: another chain, or a rolled-back one (remove the index directory to rebuild it)",
			cur.Height, head.Height)
	}
	verify := cur.Height > 0
	switch {
	case cur.Height == 0 && head.Earliest > 1:
		if cur, err = x.seed(ctx, chain, head, log); err != nil {
			return cur, err
		}
		verify = false // the seed has just read the cursor's block
	case cur.Height > 0 && head.Earliest > cur.Height+1:
		// The node no longer holds the blocks just after the cursor: it
		// rejoined from a state-sync snapshot with this index kept, or
		// pruned past it. The state holds every reference those blocks made
		// (seed), so the index is read again from it, keeping the keys it
		// has (docs/decisions.md, "An index older than the node's blocks"),
		// and the cursor stays until the seed completes.
		log.Info("sweep: the node holds no blocks after the reference index's cursor; reading the index again from the state",
			"cursor", cur.Height, "earliest", head.Earliest)
		seeded, err := x.seed(ctx, chain, head, log)
		if err != nil {
			return cur, err // the index is still complete through cur
		}
		cur, verify = seeded, false
	case cur.Height > 0 && head.Earliest == cur.Height+1:
		// Restored from a snapshot at the cursor's height: every block
		// after the cursor is there, only the one that would tell this
		// chain from another is not. Read on unverified; an index of
		// another chain only holds keys too many.
		verify = false
	}
	started, lastLog, startHeight := time.Now(), time.Now(), cur.Height
	for {
		if err := ctx.Err(); err != nil {
			return cur, err
		}
		from := cur.Height + 1
		if verify {
			from = cur.Height
		}
		blocks, err := chain.BlockBlobs(ctx, from, refPageBlocks)
		if err != nil {
			return cur, fmt.Errorf("blocks from height %d: %w", from, err)
		}
		if verify {
			if len(blocks) == 0 || blocks[0].Height != cur.Height || !blocks[0].Time.Equal(cur.Time) {
				return cur, fmt.Errorf("block %d of the chain is not the one the index read (at %s): another chain? remove the index directory to rebuild it",
					cur.Height, cur.Time.Format(time.RFC3339Nano))
			}
			blocks, verify = blocks[1:], false
		}
		if len(blocks) == 0 {
			if cur.Height >= head.Height {
				break
			}
			return cur, fmt.Errorf("the chain listed no block from height %d (its head is %d)", cur.Height+1, head.Height)
		}
		if cur, err = x.add(cur, blocks); err != nil {
			return cur, err
		}
		if cur.Height >= head.Height {
			break
		}
		if time.Since(lastLog) >= refLogEvery {
			log.Info("sweep: reading the chain into the reference index", "height", cur.Height, "head", head.Height)
			lastLog = time.Now()
		}
	}
	if took := time.Since(started); took >= refLogEvery {
		log.Info("sweep: reference index caught up", "height", cur.Height, "blocks", cur.Height-startHeight,
			"took", took.Round(time.Millisecond).String())
	}
	return cur, nil
}

// seed fills an empty index from the chain's state instead of its blocks,
// for a node that holds no blocks from height 1 (restored from a state-sync
// snapshot, or pruned), and refills one whose cursor is below the node's
// earliest block (catchUp): the blobs that the records and shares of the state
// reference (ChainView.StateBlobs), then the cursor at H, the lowest height
// of the pages read, with block H's time. Records and shares are never
// removed, so every page, read at H or above, holds at least what the
// state at H holds in its range, and whatever came after H the catch-up
// reads from block H+1 on.
//
// Each page is written with the seed's progress, unsynced; the cursor last,
// synced (which makes the pages before it durable too). Until the seed
// completes the cursor stays where it was (0 for an empty index). A seed
// cut short (an error, a cancelled request, a crash after the progress
// reached the disk) goes on from its progress, unless its pages were read
// below the node's earliest block (it pruned, or state-synced again,
// since): then it reads the state again.
func (x *refIndex) seed(ctx context.Context, chain ChainView, head Head, log Logger) (refCursor, error) {
	started, lastLog := time.Now(), time.Now()
	prog, err := x.seedProgress()
	if err != nil {
		return refCursor{}, err
	}
	if prog.Height > 0 && prog.Height < head.Earliest {
		// A seed cut short before the node pruned, or state-synced again,
		// past the height its pages were read at: its last step would ask
		// for a block the node no longer has. Its pages stay (keys too
		// many are harmless); the state is read again.
		prog = seedProgress{}
	}
	blobs := 0
	seen := map[string]bool{} // the pages asked for: a node that answers in a cycle is refused
	for !prog.Done {
		if seen[prog.After] {
			return refCursor{}, fmt.Errorf("the chain listed the state's blobs after %q twice: its pages go round in a cycle", prog.After)
		}
		seen[prog.After] = true
		if err := ctx.Err(); err != nil {
			return refCursor{}, err
		}
		page, err := chain.StateBlobs(ctx, prog.After)
		if err != nil {
			return refCursor{}, fmt.Errorf("the blobs the state references, after %q: %w", prog.After, err)
		}
		if prog.Height == 0 || page.Height < prog.Height {
			prog.Height = page.Height
		}
		prog.After, prog.Done = page.Next, page.Next == ""
		if err := x.putSeedPage(page.Blobs, prog); err != nil {
			return refCursor{}, err
		}
		blobs += len(page.Blobs)
		if time.Since(lastLog) >= refLogEvery {
			log.Info("sweep: reading the state's blobs into the reference index (the node lacks the blocks right after the index's cursor)", "blobs", blobs, "at", prog.After)
			lastLog = time.Now()
		}
	}
	height := prog.Height
	blocks, err := chain.BlockBlobs(ctx, height, 1)
	if err != nil {
		return refCursor{}, fmt.Errorf("block %d, whose state seeds the index: %w", height, err)
	}
	if len(blocks) == 0 {
		return refCursor{}, fmt.Errorf("the chain listed no block %d, whose state seeds the index", height)
	}
	cur, err := x.add(refCursor{Height: height - 1}, blocks[:1])
	if err != nil {
		return refCursor{}, err
	}
	log.Info("sweep: reference index read from the state (the node lacks the blocks right after the index's cursor)", "height", height, "blobs", blobs,
		"took", time.Since(started).Round(time.Millisecond).String())
	return cur, nil
}

// add writes blocks, which must directly follow cur, as one synced batch:
// their blob keys and the new cursor; then it tells onAdd.
func (x *refIndex) add(cur refCursor, blocks []BlockBlobs) (refCursor, error) {
	var blobs []CommittedBlob
	for i, b := range blocks {
		if want := cur.Height + 1 + int64(i); b.Height != want {
			return cur, fmt.Errorf("the chain listed block %d where block %d was expected", b.Height, want)
		}
		blobs = append(blobs, b.Blobs...)
	}
	last := blocks[len(blocks)-1]
	next := refCursor{Height: last.Height, Time: last.Time}
	if err := x.putBlocks(blobs, next); err != nil {
		return cur, fmt.Errorf("blocks %d-%d: %w", blocks[0].Height, last.Height, err)
	}
	return next, nil
}

// putBlocks writes the blobs of a run of blocks and the cursor past them,
// next, as one synced batch (it ends any seed).
func (x *refIndex) putBlocks(blobs []CommittedBlob, next refCursor) error {
	return x.put(blobs, true, func(b dbm.Batch) error {
		if err := b.Set(refCursorKey, next.encode()); err != nil {
			return err
		}
		return b.Delete(refSeedKey)
	}, func() { x.cur = next })
}

// putSeedPage writes the blobs of one page of a seed and the seed's
// progress, unsynced: the cursor a seed ends with is written synced.
func (x *refIndex) putSeedPage(blobs []CommittedBlob, prog seedProgress) error {
	return x.put(blobs, false, func(b dbm.Batch) error { return b.Set(refSeedKey, prog.encode()) }, nil)
}

// put writes blobs and what meta adds as one batch (synced if sync), runs
// done under the index's lock once it is written, then tells onAdd.
func (x *refIndex) put(blobs []CommittedBlob, sync bool, meta func(dbm.Batch) error, done func()) error {
	if err := x.writeBatch(blobs, sync, meta, done); err != nil {
		return err
	}
	if x.onAdd != nil {
		x.onAdd(blobKeys(blobs))
	}
	return nil
}

// writeBatch writes each blob's key with the largest size a record or
// share has given it (encodeRefSize): records of one patient and category
// that name the same SHA-256 name the same bytes, and only a writer's
// mistake gives them two sizes; the larger bounds a copy (size).
func (x *refIndex) writeBatch(blobs []CommittedBlob, sync bool, meta func(dbm.Batch) error, done func()) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return errRefIndexClosed
	}
	batch := x.db.NewBatch()
	defer batch.Close()
	sizes := make(map[blobstore.Key]uint64, len(blobs)) // the batch's own, not yet readable
	for _, b := range blobs {
		size, seen := sizes[b.Key]
		if !seen {
			v, err := x.db.Get(refBlobKey(b.Key))
			if err != nil {
				return fmt.Errorf("reference index: %w", err)
			}
			size = decodeRefSize(v)
		}
		size = max(size, b.Size)
		sizes[b.Key] = size
		if err := batch.Set(refBlobKey(b.Key), encodeRefSize(size)); err != nil {
			return fmt.Errorf("reference index: %w", err)
		}
	}
	write := batch.Write
	if sync {
		write = batch.WriteSync
	}
	if err := meta(batch); err != nil {
		return fmt.Errorf("reference index: %w", err)
	}
	if err := write(); err != nil {
		return fmt.Errorf("reference index: %w", err)
	}
	if done != nil {
		done()
	}
	return nil
}

// scrubProgress is the progress of a scrub pass cut short, or nil.
func (x *refIndex) scrubProgress() (*scrubProgress, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return nil, errRefIndexClosed
	}
	v, err := x.db.Get(refScrubKey)
	if err != nil || v == nil {
		return nil, err
	}
	return decodeScrubProgress(v)
}

// setScrubProgress keeps a scrub pass's progress, or deletes it (nil). It
// is not synced: a crash loses at most the pass's last steps, which the
// pass then checks again.
func (x *refIndex) setScrubProgress(p *scrubProgress) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return errRefIndexClosed
	}
	if p == nil {
		return x.db.Delete(refScrubKey)
	}
	return x.db.Set(refScrubKey, p.encode())
}

// seedProgress is the progress of a seed cut short, or none.
func (x *refIndex) seedProgress() (seedProgress, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return seedProgress{}, errRefIndexClosed
	}
	v, err := x.db.Get(refSeedKey)
	if err != nil || v == nil {
		return seedProgress{}, err
	}
	return decodeSeedProgress(v)
}
