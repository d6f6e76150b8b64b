package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFileAndSync: WriteFile writes a new file with the permissions
// asked and refuses to overwrite one; Sync and SyncDir accept a file and a
// directory and name a missing path in their error.
func TestWriteFileAndSync(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if err := WriteFile(path, []byte("other"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteFile over an existing file: %v", err)
	}
	if err := Sync(path); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	var pe *fs.PathError
	if err := Sync(filepath.Join(dir, "missing")); !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Sync of a missing path: %v", err)
	}
}
