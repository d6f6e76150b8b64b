//go:build unix

package durable

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestReplaceFileKeepsTheOwner: root replacing another user's file (an
// operator running emrcli keys change-passphrase on a sidecar's key with
// sudo) leaves it that user's, so the service can still read it.
func TestReplaceFileKeepsTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file another owner")
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 65534, 65534 // nobody, nogroup
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the replaced file is %d:%d %v, want %d:%d -rw-------", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
	}
	// A new file is the writer's, not its directory owner's.
	if err := os.Chown(filepath.Dir(path), uid, gid); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(filepath.Dir(path), "fresh.json")
	if err := ReplaceFile(fresh, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("a new file: %v, %v", fi, err)
	}
}
