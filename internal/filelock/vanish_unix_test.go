//go:build unix && !aix

package filelock

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockSurvivesTheFileBeingDeletedMeanwhile: a lock file deleted
// between openLockFile's O_EXCL create (EEXIST) and its plain open
// (ENOENT) is made again; the first version of openLockFile failed the
// Lock (a third review's finding).
func TestLockSurvivesTheFileBeingDeletedMeanwhile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			_ = os.WriteFile(path, nil, 0o600)
			_ = os.Remove(path)
		}
	}()
	defer func() { stop.Store(true); <-done }()
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		release, err := Lock(context.Background(), path)
		if errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Lock %d failed while the file was deleted and made again: %v", i, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
}

// TestLockRefusesASymlinkToNothing: a lock file name that is a symlink to
// nothing is refused at once, saying so; it is not taken for a file
// deleted meanwhile and made again.
func TestLockRefusesASymlinkToNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.lock")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), path); err != nil {
		t.Fatal(err)
	}
	release, err := Lock(context.Background(), path)
	if err == nil {
		release()
		t.Fatal("Lock through a symlink to nothing succeeded")
	}
	if !strings.Contains(err.Error(), "symlink to nothing") {
		t.Fatalf("Lock through a symlink to nothing: %v, want it said", err)
	}
}
