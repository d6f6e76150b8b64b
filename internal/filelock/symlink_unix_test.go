//go:build unix && !aix

package filelock

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRootLockDoesNotChownASymlinkTarget: the owner of a directory (the
// sidecar's service account) plants its lock file's name as a symlink to
// a file of root's. When root then locks in that directory (sudo emrcli on
// the keyring), lockFile opens the symlink's target and MatchOwner fchowns
// it to the directory's owner: the service account is given any file of
// root's (/etc/shadow, a root key) to rewrite.
func TestRootLockDoesNotChownASymlinkTarget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const uid, gid = 65534, 65534
	dir := t.TempDir()
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "shadow") // root's, elsewhere
	if err := os.WriteFile(secret, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, ".alice.lock")
	if err := os.Symlink(secret, lock); err != nil { // planted by the directory's owner
		t.Fatal(err)
	}
	if err := os.Lchown(lock, uid, gid); err != nil {
		t.Fatal(err)
	}
	release, err := Lock(context.Background(), lock)
	if err == nil {
		release()
	}
	fi, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("root's file behind a symlinked lock file was given to %d:%d", st.Uid, st.Gid)
	}
}
