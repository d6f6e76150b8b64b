//go:build unix

package fileowner

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMatchOwnerWhereRootMayNotChown: root without CAP_CHOWN (EPERM) or in
// a user namespace where the owner is not mapped (EINVAL) leaves the file
// its own without an error; another chown failure is an error.
func TestMatchOwnerWhereRootMayNotChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("MatchOwner chowns only as root")
	}
	defer func(f func(*os.File, int, int) error) { chownFile = f }(chownFile)
	dir := t.TempDir()
	like := filepath.Join(dir, "config.json")
	if err := os.WriteFile(like, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(like, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(like)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "new.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		errno syscall.Errno
		fails bool
	}{{syscall.EPERM, false}, {syscall.EINVAL, false}, {syscall.EIO, true}} {
		chownFile = func(f *os.File, _, _ int) error {
			return &os.PathError{Op: "chown", Path: f.Name(), Err: c.errno}
		}
		if err := MatchOwner(f, info); (err != nil) != c.fails {
			t.Errorf("chown failing with %v: MatchOwner %v, want an error: %v", c.errno, err, c.fails)
		}
	}
}
