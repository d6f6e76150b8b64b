//go:build windows

package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows"

	"github.com/emrchain/emrchain/internal/ctxtime"
)

// Lock takes the exclusive lock on path, creating the file (0o600) if it
// is missing, and returns its release: LockFileEx on the file's first
// byte, the Windows counterpart of flock. While another holder (another
// process, or another Lock of path in this one: the lock is the handle's)
// has it, Lock tries again after a short wait, until ctx ends; it then
// returns an error that names path and wraps ctx's error. Call release
// exactly once.
func Lock(ctx context.Context, path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	h := windows.Handle(f.Fd())
	var lockErr error
	if err := ctxtime.Retry(ctx, func() bool {
		lockErr = windows.LockFileEx(h, windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, new(windows.Overlapped))
		return !errors.Is(lockErr, windows.ERROR_LOCK_VIOLATION)
	}); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s stayed locked by another holder: %w", path, err)
	}
	if lockErr != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, lockErr)
	}
	return func() {
		// Closing the handle releases the lock; the explicit unlock says
		// so to a reader.
		_ = windows.UnlockFileEx(h, 0, 1, 0, new(windows.Overlapped))
		f.Close()
	}, nil
}
