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
	// A new file is the writer's.
	fresh := filepath.Join(filepath.Dir(path), "fresh.json")
	if err := ReplaceFile(fresh, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("a new file: %v, %v", fi, err)
	}
}

// TestReplaceFileWhereRootMayNotChown: root without CAP_CHOWN (EPERM) or
// in a user namespace where the owner is not mapped (EINVAL) still
// replaces the file, as its own; another chown failure fails the write.
func TestReplaceFileWhereRootMayNotChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("keepOwner chowns only as root")
	}
	defer func(f func(*os.File, int, int) error) { chownFile = f }(chownFile)
	for _, c := range []struct {
		errno   syscall.Errno
		written bool
	}{{syscall.EPERM, true}, {syscall.EINVAL, true}, {syscall.EIO, false}} {
		chownFile = func(f *os.File, _, _ int) error {
			return &os.PathError{Op: "chown", Path: f.Name(), Err: c.errno}
		}
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		err := ReplaceFile(path, []byte("new"), 0o600)
		got, _ := os.ReadFile(path)
		if (err == nil) != c.written || (string(got) == "new") != c.written {
			t.Errorf("chown failing with %v: ReplaceFile %v, the file holds %q; want it written: %v", c.errno, err, got, c.written)
		}
	}
}
