package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emrchain/emrchain/internal/durable"
)

// FS is the embedded filesystem Store: blobs in
// DIR/blobs/<owner hex, first 2>/<owner hex>/<sum hex>, temporary files in
// DIR/tmp. See the package documentation for the crash guarantees.
type FS struct {
	root string
	data string
	tmp  string

	// synced holds the owners whose directory entries this process has
	// made durable (see mkdirSynced); it is cleared when it reaches
	// maxSyncedOwners, which costs each owner's next Put two fsyncs more.
	mu     sync.Mutex
	synced map[Owner]struct{}
}

const maxSyncedOwners = 1 << 16

var _ Store = (*FS)(nil)

// OpenFS opens (creating if needed) a filesystem store in dir.
func OpenFS(dir string) (*FS, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &FS{root: abs, data: filepath.Join(abs, "blobs"), tmp: filepath.Join(abs, "tmp")}
	// A directory created here is synced into its parent: a Put syncs the
	// entries below DIR/blobs, never DIR/blobs's own. Something else in
	// its place is left to MkdirAll to refuse.
	for _, d := range []string{abs, s.data, s.tmp} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			continue
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blobstore: %w", err)
		}
		if err := syncDir(filepath.Dir(d)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Dir is the store's directory.
func (s *FS) Dir() string { return s.root }

// Name implements Store.
func (s *FS) Name() string { return "fs" }

// Path is the file that holds blob key.
func (s *FS) Path(key Key) string {
	o := key.Owner.String()
	return filepath.Join(s.data, o[:2], o, key.Sum.String())
}

// Put implements Store.
func (s *FS) Put(ctx context.Context, key Key, r io.Reader, size int64) (err error) {
	if err := validPut(size); err != nil {
		return err
	}
	final := s.Path(key)
	// A stored copy of another size is damaged (the hash fixes the size):
	// the upload below replaces it.
	if fi, err := os.Stat(final); err == nil && fi.Size() == size {
		if err := drainVerify(ctx, r, key.Sum, size); err != nil {
			return err
		}
		now := time.Now()
		terr := os.Chtimes(final, now, now)
		if terr == nil {
			// The refreshed age is what keeps an acknowledged re-upload
			// from the sweep: make it durable before acknowledging.
			terr = syncFile(final)
		} else {
			terr = fmt.Errorf("blobstore: touch %s: %w", key, terr)
		}
		if errors.Is(terr, fs.ErrNotExist) {
			// Deleted meanwhile (by a sweep): the body is consumed, so the
			// caller must retry.
			return fmt.Errorf("blobstore: %s was deleted while it was being re-put: %w", key, ErrNotFound)
		}
		return terr
	}

	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	tmpName := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmpName)
		}
	}()
	v := newVerifier(ctx, r, size)
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, v, buf); err != nil {
		if errors.Is(err, ErrSizeMismatch) || ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("blobstore: write %s: %w", key, err)
	}
	if err := v.finish(key.Sum); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blobstore: fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blobstore: close: %w", err)
	}
	if err := s.mkdirSynced(key.Owner, filepath.Dir(final)); err != nil {
		return err
	}
	err = os.Rename(tmpName, final)
	if errors.Is(err, fs.ErrNotExist) {
		// The owner's directory was removed behind the store's back since
		// this process made it: make it again rather than fail every Put
		// of that owner until a restart.
		s.forgetSynced(key.Owner)
		if err := s.mkdirSynced(key.Owner, filepath.Dir(final)); err != nil {
			return err
		}
		err = os.Rename(tmpName, final)
	}
	if err != nil {
		return fmt.Errorf("blobstore: commit %s: %w", key, err)
	}
	return syncDir(filepath.Dir(final))
}

// forgetSynced makes the owner's next Put make and sync its directories
// again.
func (s *FS) forgetSynced(owner Owner) {
	s.mu.Lock()
	delete(s.synced, owner)
	s.mu.Unlock()
}

// mkdirSynced creates the directories of a blob (its owner's and that
// one's shard) and makes their entries durable. That the directory exists
// does not make its entry durable: a concurrent Put may have created it and
// not synced it yet, or a Put may have crashed or failed in between. So
// each process syncs an owner's entries once itself before it relies on
// them.
func (s *FS) mkdirSynced(owner Owner, dir string) error {
	s.mu.Lock()
	_, ok := s.synced[owner]
	s.mu.Unlock()
	if ok {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(parent)); err != nil {
		return err
	}
	s.mu.Lock()
	if s.synced == nil || len(s.synced) >= maxSyncedOwners {
		s.synced = make(map[Owner]struct{})
	}
	s.synced[owner] = struct{}{}
	s.mu.Unlock()
	return nil
}

// syncFile makes the metadata of file (its modification time) durable,
// syncDir the entries of dir. Variables, so that tests can see what is
// synced and make a sync fail.
var (
	syncFile = func(name string) error { return wrapSync(durable.Sync(name)) }
	syncDir  = func(dir string) error { return wrapSync(durable.SyncDir(dir)) }
)

// wrapSync prefixes a sync's error, which names its path.
func wrapSync(err error) error {
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	return nil
}

// Get implements Store.
func (s *FS) Get(_ context.Context, key Key, offset, length int64) (io.ReadCloser, int64, error) {
	f, err := os.Open(s.Path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blobstore: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("blobstore: %w", err)
	}
	n, err := checkRange(offset, length, fi.Size())
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return &sectionCloser{Reader: io.NewSectionReader(f, offset, n), f: f}, fi.Size(), nil
}

type sectionCloser struct {
	io.Reader
	f *os.File
}

func (s *sectionCloser) Close() error { return s.f.Close() }

// Stat implements Store.
func (s *FS) Stat(_ context.Context, key Key) (Info, error) {
	fi, err := os.Stat(s.Path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return Info{}, fmt.Errorf("blobstore: %w", err)
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements Store.
func (s *FS) Delete(_ context.Context, key Key) error {
	p := s.Path(key)
	err := os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	return syncDir(filepath.Dir(p))
}

// List implements Store. It reads one directory at a time, so its memory
// does not grow with the number of blobs. Entries of the wrong kind (a file
// where a shard or owner directory belongs, a directory or symlink where a
// blob belongs), as something other than the store may leave, are passed
// over, so they cannot stop a sweep.
func (s *FS) List(ctx context.Context, fn func(Info) bool) error {
	return s.list(ctx, nil, fn)
}

// ListAfter implements Store. Names are fixed-length lowercase hex, so
// comparing them as strings is comparing keys: what lies at or below
// after is passed over without a stat.
func (s *FS) ListAfter(ctx context.Context, after Key, fn func(Info) bool) error {
	return s.list(ctx, &after, fn)
}

// list lists every blob, or those above *after.
func (s *FS) list(ctx context.Context, after *Key, fn func(Info) bool) error {
	var afterOwner, afterSum string
	if after != nil {
		afterOwner, afterSum = after.Owner.String(), after.Sum.String()
	}
	shards, err := readDirNames(s.data, true)
	if err != nil {
		return err
	}
	for _, shard := range shards {
		if len(shard) != 2 || (after != nil && shard < afterOwner[:2]) {
			continue
		}
		owners, err := readDirNames(filepath.Join(s.data, shard), true)
		if err != nil {
			return err
		}
		for _, owner := range owners {
			if !isHexName(owner) || !strings.HasPrefix(owner, shard) || (after != nil && owner < afterOwner) {
				continue
			}
			dir := filepath.Join(s.data, shard, owner)
			names, err := readDirNames(dir, false)
			if err != nil {
				return err
			}
			for _, name := range names {
				if err := ctx.Err(); err != nil {
					return err
				}
				if after != nil && owner == afterOwner && name <= afterSum {
					continue
				}
				key, err := ParseKey(owner + "/" + name)
				if err != nil {
					continue
				}
				fi, err := os.Lstat(filepath.Join(dir, name))
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted meanwhile
				}
				if err != nil {
					return fmt.Errorf("blobstore: %w", err)
				}
				if !fi.Mode().IsRegular() {
					continue // replaced by a non-file meanwhile
				}
				if !fn(Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}) {
					return nil
				}
			}
		}
	}
	return nil
}

// readDirNames lists the names of dir's subdirectories (dirs) or regular
// files (!dirs), sorted; symlinks are neither. A missing dir lists nothing.
func readDirNames(dir string, dirs bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil // removed, or replaced by a file, since it was listed
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if t := e.Type(); (dirs && t.IsDir()) || (!dirs && t.IsRegular()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// CleanTemp implements Store.
func (s *FS) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return 0, fmt.Errorf("blobstore: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		fi, err := e.Info()
		if err != nil || fi.IsDir() || !fi.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(s.tmp, e.Name())); err == nil {
			removed++
		}
	}
	return removed, nil
}

// Ping implements Store: the directories exist and are writable.
func (s *FS) Ping(context.Context) error {
	f, err := os.CreateTemp(s.tmp, "ping-*")
	if err != nil {
		return fmt.Errorf("blobstore: %s is not writable: %w", s.tmp, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
