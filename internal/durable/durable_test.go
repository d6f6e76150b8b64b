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

// TestCreateFile: CreateFile writes a new file (never over one) with the
// permissions asked.
func TestCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := CreateFile(path, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "secret" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if err := CreateFile(path, []byte("other"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreateFile over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "secret" {
		t.Fatalf("the existing file became %q", b)
	}
}

// TestReplaceFile: ReplaceFile creates a file or replaces one whole, with
// the permissions asked, and leaves no temporary file behind, also when
// it fails.
func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.json")
	for _, data := range []string{"first", "second, longer"} {
		if err := ReplaceFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != data {
			t.Fatalf("read back %q, %v; want %q", b, err, data)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, %v", st.Mode(), err)
		}
	}
	if err := ReplaceFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReplaceFile into a missing directory: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "taken"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceFile(filepath.Join(dir, "taken"), []byte("x"), 0o600); err == nil {
		t.Fatal("ReplaceFile over a directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("%d entries left, want key.json and taken (no temporary file)", len(entries))
	}
}

// TestMkdirAll: MkdirAll makes every missing directory with the
// permissions asked, accepts one that exists, and refuses a file in the
// way. (That each new directory is synced into its parent needs a power
// cut to observe.)
func TestMkdirAll(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, "a", "b", "c")
	for range 2 {
		if err := MkdirAll(deep, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Join(dir, "a"), filepath.Join(dir, "a", "b"), deep} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, %v", d, st, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(dir, "file", "sub"), 0o700); err == nil {
		t.Fatal("MkdirAll through a file succeeded")
	}
}

// TestExchange: two directories swap names in one step (each name then
// holds what the other did); a missing one is fs.ErrNotExist, so a caller
// can tell "nothing to replace" from a failure. Where the system cannot
// (not Linux), the error is ErrNoExchange.
func TestExchange(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "name"), []byte(filepath.Base(d)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := Exchange(a, b)
	if errors.Is(err, ErrNoExchange) {
		t.Skipf("no atomic exchange here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{a: "b", b: "a"} {
		if got, err := os.ReadFile(filepath.Join(path, "name")); err != nil || string(got) != want {
			t.Errorf("after the exchange %s holds %q (%v), want %q", path, got, err, want)
		}
	}
	if err := Exchange(a, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("exchange with a missing directory: %v, want fs.ErrNotExist", err)
	}
}
