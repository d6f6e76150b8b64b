package blobstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFSConformance(t *testing.T) {
	runConformance(t, func(t *testing.T) Store {
		s, err := OpenFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestFSLayout: paths by owner (sharded by its first byte), private
// permissions, and no temporary file left after a Put.
func TestFSLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("ciphertext")
	key := mustPut(t, s, data)
	o := key.Owner.String()
	p := filepath.Join(dir, "blobs", o[:2], o, key.Sum.String())
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("blob not at %s: %v", p, err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("blob mode %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Fatalf("tmp holds %d entries after a Put", len(entries))
	}
}

// TestFSCrashLeftovers: a temporary file left by a crash mid-Put is
// invisible to readers and removed by CleanTemp once old enough; a stray
// file in a shard directory is not listed.
func TestFSCrashLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := testData(11, 4096)
	sum := keyOf(data)
	// A half-written upload, as a crash would leave it.
	leftover := filepath.Join(dir, "tmp", "put-123")
	if err := os.WriteFile(leftover, data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, sum); err == nil {
		t.Fatal("a temporary file is visible as a blob")
	}
	o := testOwner.String()
	for _, d := range []string{filepath.Join("zz", "zz"), filepath.Join(o[:2], o), filepath.Join(o[:2], "junk")} {
		if err := os.MkdirAll(filepath.Join(dir, "blobs", d), 0o700); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, "blobs", d, "junk"), nil, 0o600)
	}
	if l := listAll(t, s); len(l) != 0 {
		t.Fatalf("List = %v", l)
	}
	if n, err := s.CleanTemp(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("CleanTemp removed a fresh file: %d %v", n, err)
	}
	old := time.Now().Add(-2 * time.Hour)
	_ = os.Chtimes(leftover, old, old)
	if n, err := s.CleanTemp(ctx, time.Hour); err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v; want 1", n, err)
	}
	// The store works after the "crash".
	mustPut(t, s, data)
}

// TestFSListSkipsStrayEntries: entries of the wrong kind that something
// other than the store left under blobs/ — a file where a shard or an
// owner directory belongs, a directory or a symlink named like a blob — are
// not listed and do not make List fail (which would stop every sweep).
func TestFSListSkipsStrayEntries(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	real := mustPut(t, s, []byte("the only blob"))
	o := testOwner.String()
	other := Owner{0x42, 0x01}.String() // same shard as testOwner
	blobDir := filepath.Dir(s.Path(real))
	strays := []struct{ path, kind string }{
		{filepath.Join(dir, "blobs", "ff"), "file"},         // a shard-named file
		{filepath.Join(dir, "blobs", o[:2], other), "file"}, // an owner-named file
		{filepath.Join(blobDir, filepath.Base(s.Path(keyOf([]byte("a dir"))))), "dir"},
		{filepath.Join(blobDir, filepath.Base(s.Path(keyOf([]byte("a link"))))), "symlink"},
	}
	for _, st := range strays {
		switch st.kind {
		case "file":
			err = os.WriteFile(st.path, []byte("stray"), 0o600)
		case "dir":
			err = os.Mkdir(st.path, 0o700)
		case "symlink":
			err = os.Symlink(s.Path(real), st.path)
		}
		if err != nil {
			t.Fatalf("stray %s %s: %v", st.kind, st.path, err)
		}
	}
	l := listAll(t, s)
	if len(l) != 1 || l[0].Key != real {
		t.Fatalf("List = %v, want only %v", l, real)
	}
}

// TestFSListSkipsSymlinkedDirs: a symlink where a shard or an owner
// directory belongs is not followed, so List (and the sweep, which deletes
// what List gives it) never reaches blobs outside the store's directory.
func TestFSListSkipsSymlinkedDirs(t *testing.T) {
	s, err := OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	outside, err := OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := mustPut(t, s, []byte("the only blob"))
	shardOwner := Owner{0x17}      // a shard s has no directory of
	sameShard := Owner{0x42, 0x01} // testOwner's shard
	for _, o := range []Owner{shardOwner, sameShard} {
		// The owner directory, or for shardOwner its shard, links to
		// outside's, which holds a blob of o.
		target := filepath.Dir(outside.Path(mustPutFor(t, outside, o, []byte("a blob outside"))))
		link := filepath.Dir(s.Path(Key{Owner: o}))
		if o == shardOwner {
			link, target = filepath.Dir(link), filepath.Dir(target)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	l := listAll(t, s)
	if len(l) != 1 || l[0].Key != real {
		t.Fatalf("List = %v, want only %v", l, real)
	}
}

// TestFSRePutRefreshesModTime: an idempotent Put makes an old blob young
// again, so a sweep does not delete a blob that was just uploaded again.
func TestFSRePutRefreshesModTime(t *testing.T) {
	ctx := context.Background()
	s, err := OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("some ciphertext")
	sum := mustPut(t, s, data)
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(s.Path(sum), old, old); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, sum, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, sum)
	if err != nil || time.Since(info.ModTime) > time.Minute {
		t.Fatalf("ModTime after re-put = %v (%v)", info.ModTime, err)
	}
}

// TestFSReputSyncsModTime: a re-upload of a stored blob refreshes its age
// (which keeps it from the sweep) durably before it acknowledges, and
// fails if that cannot be made durable: without the fsync, a crash could
// bring the old age back and a sweep delete an acknowledged re-upload.
func TestFSReputSyncsModTime(t *testing.T) {
	s, err := OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := testData(30, 1000)
	key := keyOf(data)
	if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(s.Path(key), old, old); err != nil {
		t.Fatal(err)
	}
	var synced []string
	fail := false
	prev := syncFile
	syncFile = func(name string) error {
		synced = append(synced, name)
		if fail {
			return errors.New("injected fsync failure")
		}
		return prev(name)
	}
	t.Cleanup(func() { syncFile = prev })
	if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != s.Path(key) {
		t.Fatalf("a re-put synced %q, want the blob's file %s once", synced, s.Path(key))
	}
	fail = true
	if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("a re-put whose refreshed age could not be synced returned %v, want the fsync error", err)
	}
}

// recordSyncs replaces syncDir for the test: block, if not nil, is called
// before each sync with its directory, and the returned function gives the
// directories synced so far (once their block returned).
func recordSyncs(t *testing.T, block func(dir string)) func() map[string]bool {
	t.Helper()
	var mu sync.Mutex
	synced := map[string]bool{}
	prev := syncDir
	syncDir = func(dir string) error {
		if block != nil {
			block(dir)
		}
		mu.Lock()
		synced[dir] = true
		mu.Unlock()
		return prev(dir)
	}
	t.Cleanup(func() { syncDir = prev })
	return func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(synced)
	}
}

// TestFSPutSyncsOwnerDirEntries: a Put that finds its owner's directory
// already created (by a concurrent Put still on its way to syncing it, or
// by a Put that crashed or failed before) still makes that directory's
// entry durable before it acknowledges, so a crash cannot take the blob
// away with the directory entry.
func TestFSPutSyncsOwnerDirEntries(t *testing.T) {
	s, err := OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := testOwner.String()
	shard := filepath.Join(s.data, o[:2])
	// The first Put of the owner stops just before it syncs the shard
	// directory (the owner directory's entry), as a crash would stop it.
	reached, release := make(chan struct{}), make(chan struct{})
	var first bool
	syncs := recordSyncs(t, func(dir string) {
		if dir == shard && !first {
			first = true
			close(reached)
			<-release
		}
	})
	done := make(chan error, 1)
	a := testData(20, 1000)
	go func() { done <- s.Put(context.Background(), keyOf(a), bytes.NewReader(a), int64(len(a))) }()
	<-reached
	// A second Put of the same owner, meanwhile, must not return before
	// the owner directory's entry is synced.
	b := testData(21, 1000)
	err = s.Put(context.Background(), keyOf(b), bytes.NewReader(b), int64(len(b)))
	synced := syncs() // before the first Put goes on to sync them itself
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if !synced[shard] || !synced[s.data] {
		t.Fatalf("the second Put returned before %s and %s were synced (synced: %v)", shard, s.data, synced)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFSOpenSyncsNewDirs: the directories OpenFS creates are durable
// before the first Put relies on them (a Put syncs the entries below
// DIR/blobs, not DIR/blobs's own in DIR).
func TestFSOpenSyncsNewDirs(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "store")
	syncs := recordSyncs(t, nil)
	if _, err := OpenFS(root); err != nil {
		t.Fatal(err)
	}
	synced := syncs()
	if !synced[root] || !synced[parent] {
		t.Fatalf("OpenFS created %s and its blobs and tmp directories without syncing %s and %s (synced: %v)", root, parent, root, synced)
	}
}

// TestFSOpenRefusesFileForDir: a file where one of the store's directories
// belongs fails OpenFS, rather than opening a store that lists nothing and
// fails every Put.
func TestFSOpenRefusesFileForDir(t *testing.T) {
	for _, name := range []string{"", "blobs", "tmp"} {
		root := filepath.Join(t.TempDir(), "store")
		if name != "" {
			if err := os.Mkdir(root, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenFS(root); err == nil {
			t.Errorf("OpenFS with a file at %s: opened", filepath.Join(root, name))
		}
	}
}

// TestFSPutAfterOwnerDirRemoved: an owner's directory removed behind the
// store's back (by an operator, or a restore that left it out) does not
// break that owner's next Put until a restart: the Put makes the directory
// again, durably, and the blob is there to read.
func TestFSPutAfterOwnerDirRemoved(t *testing.T) {
	ctx := context.Background()
	s, err := OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first := mustPut(t, s, []byte("first ciphertext"))
	ownerDir := filepath.Dir(s.Path(first))
	if err := os.RemoveAll(ownerDir); err != nil {
		t.Fatal(err)
	}
	syncs := recordSyncs(t, nil)
	second := mustPutFor(t, s, first.Owner, []byte("second ciphertext"))
	if fi, err := os.Lstat(s.Path(second)); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("second blob not stored in the owner directory made again: %v", err)
	}
	synced := syncs()
	for _, d := range []string{filepath.Dir(ownerDir), ownerDir} {
		if !synced[d] {
			t.Errorf("%s not synced after the owner directory was made again (synced: %v)", d, synced)
		}
	}
	rc, _, err := s.Get(ctx, second, 0, -1)
	if err != nil {
		t.Fatalf("Get after re-created owner directory: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != "second ciphertext" {
		t.Fatalf("read %q (%v)", got, err)
	}
}
