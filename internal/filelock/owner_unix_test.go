//go:build unix && !aix

package filelock

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestLockFileOfRootIsTheDirectorysOwners: root taking a lock in a user's
// directory (sudo emrcli on a sidecar's keyring) leaves the lock file it
// creates that user's; a 0600 lock file of root's stopped every later run
// of the user's own ("permission denied"). A lock file that was there
// keeps its owner (it may be a name the directory's owner planted: see
// TestRootLockDoesNotChownASymlinkTarget).
func TestLockFileOfRootIsTheDirectorysOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file another owner")
	}
	const uid, gid = 65534, 65534 // nobody, nogroup
	dir := t.TempDir()
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	owner := func(path string) (uint32, uint32) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return st.Uid, st.Gid
	}
	fresh := filepath.Join(dir, ".alice.lock")
	left := filepath.Join(dir, ".bob.lock")
	if err := os.WriteFile(left, nil, 0o600); err != nil { // root's, from before
		t.Fatal(err)
	}
	for path, want := range map[string]uint32{fresh: uid, left: 0} {
		release, err := Lock(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		release()
		if u, _ := owner(path); u != want {
			t.Errorf("%s is %d's after root locked it, want %d's", filepath.Base(path), u, want)
		}
	}
}
