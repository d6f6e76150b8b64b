//go:build linux

package client

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestPendingCommitWithoutProc: where /proc/self/fd cannot be used, a
// nameless pending file is copied into a temporary name and moved into
// place only once complete and synced, so the target never holds part of
// the plaintext (checked in the middle of the copy, where a crash would
// leave it); a target that appeared meanwhile is refused without
// overwrite and replaced with it; nothing else is left in the directory.
func TestPendingCommitWithoutProc(t *testing.T) {
	if _, err := openAnonymous(t.TempDir()); err != nil {
		t.Skipf("no O_TMPFILE here (%v): pending files are named and never copied", err)
	}
	procSelfFD = filepath.Join(t.TempDir(), "no-proc") + "/"
	t.Cleanup(func() { procSelfFD, copyBeforeSync = "/proc/self/fd/", nil })
	dir := t.TempDir()
	var target string
	var mid []string // what target held at each copy's midpoint ("" for nothing)
	copyBeforeSync = func(string) {
		b, err := os.ReadFile(target)
		if errors.Is(err, os.ErrNotExist) {
			mid = append(mid, "")
			return
		}
		mid = append(mid, string(b))
	}
	commit := func(name, content string, overwrite bool, before func()) error {
		t.Helper()
		target = filepath.Join(dir, name)
		p, err := newPending(target, overwrite)
		if err != nil {
			t.Fatal(err)
		}
		if p.name != "" {
			t.Fatal("the pending file has a name: O_TMPFILE was not used")
		}
		if _, err := io.WriteString(p, content); err != nil {
			t.Fatal(err)
		}
		if before != nil {
			before()
		}
		return p.Commit()
	}
	write := func(name, content string) func() {
		return func() {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return string(b)
	}

	if err := commit("new", "plaintext", false, nil); err != nil {
		t.Fatal(err)
	}
	if got := read("new"); got != "plaintext" {
		t.Fatalf("new = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "new")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new: %v, %v", fi, err)
	}
	if err := commit("raced", "plaintext", false, write("raced", "someone else's")); !errors.Is(err, ErrOutputExists) {
		t.Fatalf("a target created meanwhile: %v, want ErrOutputExists", err)
	}
	if got := read("raced"); got != "someone else's" {
		t.Fatalf("raced = %q: replaced without overwrite", got)
	}
	if err := commit("old", "new content", true, write("old", "old content")); err != nil {
		t.Fatal(err)
	}
	if got := read("old"); got != "new content" {
		t.Fatalf("old = %q after overwrite", got)
	}
	if want := []string{"", "someone else's", "old content"}; len(mid) != 3 || mid[0] != want[0] || mid[1] != want[1] || mid[2] != want[2] {
		t.Fatalf("targets in the middle of the copies: %q, want %q", mid, want)
	}
	if names := dirNames(t, dir); len(names) != 3 {
		t.Fatalf("leftovers: %v", names)
	}
}
