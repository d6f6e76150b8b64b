//go:build unix && !aix

package filelock

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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
