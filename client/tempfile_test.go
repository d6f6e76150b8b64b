package client

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestLinkNoReplace: the way renameNoReplace takes where renameat2 is not
// available (every system but Linux, where no other test reaches it): a
// new target gets tmp's content and tmp is gone; an existing target is
// refused as os.ErrExist and left as it was, tmp kept for its owner to
// remove.
func TestLinkNoReplace(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	read := func(path string) string {
		b, _ := os.ReadFile(path)
		return string(b)
	}

	tmp, target := write(".tmp-1", "mine"), filepath.Join(dir, "new")
	if err := linkNoReplace(tmp, target); err != nil {
		t.Fatal(err)
	}
	if got := read(target); got != "mine" {
		t.Fatalf("new target holds %q", got)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tmp after the move: %v", err)
	}

	tmp, target = write(".tmp-2", "mine"), write("old", "theirs")
	if err := linkNoReplace(tmp, target); !errors.Is(err, os.ErrExist) {
		t.Fatalf("onto an existing target: %v, want os.ErrExist", err)
	}
	if got := read(target); got != "theirs" {
		t.Fatalf("the existing target now holds %q", got)
	}
	if got := read(tmp); got != "mine" {
		t.Fatalf("tmp after the refusal holds %q", got)
	}
}
