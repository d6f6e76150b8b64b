package blobstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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
