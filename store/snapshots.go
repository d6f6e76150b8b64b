package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cosmos/iavl"

	"github.com/emrchain/emrchain/internal/durable"
)

// Names inside a snapshot directory.
const (
	snapshotMetadataFile = "metadata"
	snapshotTempPrefix   = ".tmp-"
	// prunedPrefix names a pruned snapshot while its files are removed.
	prunedPrefix = snapshotTempPrefix + "pruned-"
	// maxMetadataLen is the longest metadata a snapshot of
	// MaxSnapshotChunks can have.
	maxMetadataLen = sha256.Size + 3 + sha256.Size*MaxSnapshotChunks
)

// SnapshotInfo describes a snapshot held on disk, as ABCI ListSnapshots
// reports it.
type SnapshotInfo struct {
	Height   int64
	Format   uint32
	Chunks   uint32
	Hash     []byte // SHA-256 of Metadata
	Metadata []byte // SnapshotMetadata.Encode
}

// Snapshots is a node's directory of state-sync snapshots: one
// subdirectory HEIGHT-FORMAT per snapshot, holding the metadata and one
// file per chunk. A snapshot is written under a temporary name, every file
// and the directory fsynced, then renamed into place: a crash leaves no
// partial snapshot under a listed name. A pruned one goes the other way:
// renamed to a temporary name, then removed. The temporary names are
// removed at open. Safe for concurrent use.
//
// A snapshot a peer is downloading, or was offered (Advertise), outlives
// keepRecent: pruning keeps up to keepRecent more, the newest of those
// that served a chunk or were offered within ServingGrace, so a join under
// way is not cut off by the next snapshot, and the directory still holds
// at most 2*keepRecent of them.
type Snapshots struct {
	dir        string
	keepRecent int
	chunkSize  int
	now        func() time.Time // the wall clock; snapshots are not consensus state
	// removeAll removes a pruned snapshot's directory (os.RemoveAll; tests
	// make it fail part way).
	removeAll func(path string) error

	mu sync.Mutex // serializes Create's rename and pruning with List

	// servedMu guards served alone, so that serving a chunk never waits
	// for a prune's removals.
	servedMu sync.Mutex
	served   map[string]time.Time // snapshot name -> when it last served a chunk or was advertised
}

// ServingGrace is how long after serving a chunk a snapshot is kept
// beyond keepRecent. CometBFT's state sync asks for the next chunk within
// seconds (it retries a chunk after chunk_request_timeout, 10 s by
// default), so a download with no request for this long has ended.
const ServingGrace = 2 * time.Minute

// OpenSnapshots opens (creating it if needed) the snapshot directory dir,
// keeping the keepRecent most recent snapshots (at least 1), and removes
// what an interrupted Create left behind.
func OpenSnapshots(dir string, keepRecent int) (*Snapshots, error) {
	if keepRecent < 1 {
		return nil, fmt.Errorf("store: snapshots: keep_recent %d, want at least 1", keepRecent)
	}
	// Synced into its parent: Create syncs the entries below dir only.
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: snapshots: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: snapshots: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), snapshotTempPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("store: snapshots: remove unfinished %s: %w", e.Name(), err)
			}
		}
	}
	return &Snapshots{dir: dir, keepRecent: keepRecent, chunkSize: DefaultChunkSize, now: time.Now, removeAll: os.RemoveAll, served: map[string]time.Time{}}, nil
}

// MinChunkSize is the smallest chunk size SetChunkSize takes.
const MinChunkSize = 1 << 10

// SetChunkSize sets the size at which new snapshots start a new chunk,
// clamped to [MinChunkSize, DefaultChunkSize] (tests use small chunks to
// cut a small state into many). Call it before the first Create.
func (sn *Snapshots) SetChunkSize(n int) {
	sn.chunkSize = min(max(n, MinChunkSize), DefaultChunkSize)
}

// snapshotName is the directory name of a snapshot.
func snapshotName(height int64, format uint32) string {
	return strconv.FormatInt(height, 10) + "-" + strconv.FormatUint(uint64(format), 10)
}

// parseSnapshotName parses HEIGHT-FORMAT; ok is false for any other name.
func parseSnapshotName(name string) (height int64, format uint32, ok bool) {
	h, f, found := strings.Cut(name, "-")
	height, err1 := strconv.ParseInt(h, 10, 64)
	f64, err2 := strconv.ParseUint(f, 10, 32)
	if !found || err1 != nil || err2 != nil || height < 1 || snapshotName(height, uint32(f64)) != name {
		return 0, 0, false
	}
	return height, uint32(f64), true
}

// Create exports committed version of st into a new snapshot, then removes
// the snapshots beyond keepRecent. It runs for as long as the export takes;
// call it off the consensus path. An existing snapshot of the version is
// kept as it is.
func (sn *Snapshots) Create(ctx context.Context, st *Store, version int64) (SnapshotInfo, error) {
	final := filepath.Join(sn.dir, snapshotName(version, SnapshotFormat))
	if _, err := os.Stat(final); err == nil {
		return sn.info(version, SnapshotFormat)
	}
	tmp, err := os.MkdirTemp(sn.dir, snapshotTempPrefix+snapshotName(version, SnapshotFormat)+"-")
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot %d: %w", version, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	w := &chunkWriter{dir: tmp, size: sn.chunkSize}
	root, err := st.Export(ctx, version, w.add)
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot %d: %w", version, err)
	}
	meta := SnapshotMetadata{Root: root, ChunkHashes: w.hashes}
	raw := meta.Encode()
	if err := durable.WriteFile(filepath.Join(tmp, snapshotMetadataFile), raw, 0o600); err != nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot %d: %w", version, err)
	}
	if err := sn.publish(tmp, final); err != nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot %d: %w", version, err)
	}
	if err := sn.prune(); err != nil {
		return SnapshotInfo{}, err
	}
	return snapshotInfo(version, SnapshotFormat, meta, raw), nil
}

// publish renames the finished temporary directory into place and syncs
// the parent, so the new name survives a crash.
func (sn *Snapshots) publish(tmp, final string) error {
	if err := durable.SyncDir(tmp); err != nil {
		return err
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return durable.SyncDir(sn.dir)
}

// prune removes the snapshots older than the keepRecent most recent,
// except those being downloaded (see Snapshots).
func (sn *Snapshots) prune() error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	all, err := sn.names()
	if err != nil {
		return err
	}
	now := sn.now()
	// Serving within the grace period counts; older entries are dropped,
	// which also bounds the map (names of removed snapshots included).
	sn.servedMu.Lock()
	recent := make(map[string]bool, len(sn.served))
	for name, last := range sn.served {
		if now.Sub(last) < ServingGrace {
			recent[name] = true
		} else {
			delete(sn.served, name)
		}
	}
	sn.servedMu.Unlock()
	extra := 0
	var pruned []string
	for i := sn.keepRecent; i < len(all); i++ {
		name := snapshotName(all[i].Height, all[i].Format)
		if recent[name] && extra < sn.keepRecent {
			extra++
			continue
		}
		pruned = append(pruned, name)
	}
	return sn.remove(pruned)
}

// remove removes the named snapshots. Each is first renamed to a temporary
// name, and the renames synced, so it leaves the listing at once and
// whole: a crash or a failure part way through a removal must not leave a
// snapshot listed without some of its chunks, which a joining node would
// then ask every peer for in vain. What a removal that failed left under
// the temporary name, the next one removes first, and OpenSnapshots too.
// Called with sn.mu held.
func (sn *Snapshots) remove(names []string) error {
	if len(names) == 0 {
		return nil
	}
	entries, err := os.ReadDir(sn.dir)
	if err != nil {
		return fmt.Errorf("store: snapshots: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prunedPrefix) {
			if err := sn.removeAll(filepath.Join(sn.dir, e.Name())); err != nil {
				return fmt.Errorf("store: remove what a pruning left, %s: %w", e.Name(), err)
			}
		}
	}
	for _, name := range names {
		if err := os.Rename(filepath.Join(sn.dir, name), filepath.Join(sn.dir, prunedPrefix+name)); err != nil {
			return fmt.Errorf("store: remove snapshot %s: %w", name, err)
		}
	}
	if err := durable.SyncDir(sn.dir); err != nil {
		return fmt.Errorf("store: remove snapshots: %w", err)
	}
	for _, name := range names {
		if err := sn.removeAll(filepath.Join(sn.dir, prunedPrefix+name)); err != nil {
			return fmt.Errorf("store: remove snapshot %s: %w", name, err)
		}
	}
	return nil
}

// names lists the snapshot directories, newest first (height, then
// format). Called with sn.mu held.
func (sn *Snapshots) names() ([]SnapshotInfo, error) {
	entries, err := os.ReadDir(sn.dir)
	if err != nil {
		return nil, fmt.Errorf("store: snapshots: %w", err)
	}
	var out []SnapshotInfo
	for _, e := range entries {
		if h, f, ok := parseSnapshotName(e.Name()); ok && e.IsDir() {
			out = append(out, SnapshotInfo{Height: h, Format: f})
		}
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int {
		return cmp.Or(cmp.Compare(b.Height, a.Height), cmp.Compare(b.Format, a.Format))
	})
	return out, nil
}

// List returns the snapshots on disk, newest first. One whose metadata no
// longer reads is left out and named in the error, which then comes with
// the snapshots that do read: the caller may offer those and report the
// rest.
func (sn *Snapshots) List() ([]SnapshotInfo, error) {
	// Held while the metadata is read: a prune removing a snapshot would
	// otherwise make it look damaged.
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return sn.list()
}

// list is List, called with sn.mu held.
func (sn *Snapshots) list() ([]SnapshotInfo, error) {
	all, err := sn.names()
	if err != nil {
		return nil, err
	}
	out := make([]SnapshotInfo, 0, len(all))
	var unreadable []error
	for _, s := range all {
		info, err := sn.info(s.Height, s.Format)
		if err != nil {
			unreadable = append(unreadable, fmt.Errorf("store: snapshot %s is left out: %w", snapshotName(s.Height, s.Format), err))
			continue
		}
		out = append(out, info)
	}
	return out, errors.Join(unreadable...)
}

// Advertise is List for a peer that asks which snapshots this node
// offers: each snapshot listed counts as served, so it outlives
// keepRecent for ServingGrace like one being downloaded. A joining node
// asks for the first chunk only after its discovery time (15 s by
// default); a snapshot pruned in between would stall its join, which
// CometBFT retries forever.
func (sn *Snapshots) Advertise() ([]SnapshotInfo, error) {
	sn.mu.Lock() // no prune between the listing and the marks
	defer sn.mu.Unlock()
	list, err := sn.list()
	now := sn.now()
	sn.servedMu.Lock()
	for _, info := range list {
		sn.served[snapshotName(info.Height, info.Format)] = now
	}
	sn.servedMu.Unlock()
	return list, err
}

// info reads the description of one snapshot from its metadata.
func (sn *Snapshots) info(height int64, format uint32) (SnapshotInfo, error) {
	raw, err := readFileMax(filepath.Join(sn.dir, snapshotName(height, format), snapshotMetadataFile), maxMetadataLen)
	if err != nil {
		return SnapshotInfo{}, err
	}
	meta, err := DecodeSnapshotMetadata(raw)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return snapshotInfo(height, format, meta, raw), nil
}

// snapshotInfo describes the snapshot whose metadata is meta, encoded as
// raw.
func snapshotInfo(height int64, format uint32, meta SnapshotMetadata, raw []byte) SnapshotInfo {
	hash := sha256.Sum256(raw) // meta.Hash(), without encoding meta again
	return SnapshotInfo{
		Height: height, Format: format, Chunks: uint32(len(meta.ChunkHashes)),
		Hash: hash[:], Metadata: raw,
	}
}

// LoadChunk returns chunk index of a snapshot (at most MaxChunkSize bytes
// are read). A snapshot or chunk this node does not hold (never made, or
// pruned since it was listed) is ErrSnapshotNotFound.
func (sn *Snapshots) LoadChunk(height int64, format uint32, index uint32) ([]byte, error) {
	if height < 1 || index >= MaxSnapshotChunks {
		return nil, fmt.Errorf("%w: snapshot %d format %d chunk %d", ErrSnapshotNotFound, height, format, index)
	}
	name := snapshotName(height, format)
	chunk, err := readFileMax(filepath.Join(sn.dir, name, chunkName(index)), MaxChunkSize)
	if err != nil {
		return nil, err
	}
	sn.servedMu.Lock()
	sn.served[name] = sn.now() // prune forgets it after ServingGrace
	sn.servedMu.Unlock()
	return chunk, nil
}

func chunkName(index uint32) string { return fmt.Sprintf("chunk-%06d", index) }

// readFileMax reads a file of at most max bytes; a missing file is
// ErrSnapshotNotFound.
func readFileMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrSnapshotNotFound, filepath.Base(path))
	}
	if err != nil {
		return nil, fmt.Errorf("store: snapshots: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("store: snapshots: %w", err)
	}
	if int64(len(raw)) > max {
		return nil, fmt.Errorf("store: snapshots: %s is larger than %d bytes", path, max)
	}
	return raw, nil
}

// chunkWriter cuts the export stream into chunk files of about size bytes,
// at node boundaries, and remembers each chunk's SHA-256. It holds one
// chunk in memory.
type chunkWriter struct {
	dir    string
	size   int
	buf    []byte
	hashes [][sha256.Size]byte
}

// add appends one export node, first writing out the current chunk if the
// node would take it past size.
func (w *chunkWriter) add(n *iavl.ExportNode) error {
	if err := checkExportNode(n); err != nil {
		return err
	}
	start := len(w.buf)
	w.buf = appendNode(w.buf, n)
	if start > 0 && len(w.buf) > w.size {
		node := slices.Clone(w.buf[start:])
		w.buf = w.buf[:start]
		if err := w.flush(); err != nil {
			return err
		}
		w.buf = append(w.buf, node...)
	}
	return nil
}

// flush writes the buffered chunk, if any.
func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if len(w.hashes) >= MaxSnapshotChunks {
		return fmt.Errorf("%w: more than %d chunks", ErrBadSnapshot, MaxSnapshotChunks)
	}
	if err := durable.WriteFile(filepath.Join(w.dir, chunkName(uint32(len(w.hashes)))), w.buf, 0o600); err != nil {
		return err
	}
	w.hashes = append(w.hashes, sha256.Sum256(w.buf))
	w.buf = w.buf[:0]
	return nil
}
