//go:build (unix && !aix) || windows

package filelock

import (
	"context"
	"fmt"
	"os"

	"github.com/emrchain/emrchain/internal/ctxtime"
)

// lockFile takes the exclusive lock on path, creating the file (0o600) if
// it is missing, and returns its release: try takes the system's lock
// without waiting, and busy says its error means another holder has it,
// in which case lockFile tries again after a short wait, until ctx ends; it
// then returns an error that names path and wraps ctx's error. release
// unlocks with unlock and closes the file, which releases the lock anyway.
func lockFile(ctx context.Context, path string, try func(*os.File) error, busy func(error) bool, unlock func(*os.File)) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	var lockErr error
	if err := ctxtime.Retry(ctx, func() bool {
		lockErr = try(f)
		return !busy(lockErr)
	}); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s stayed locked by another holder: %w", path, err)
	}
	if lockErr != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, lockErr)
	}
	return func() {
		// Closing the file releases the lock; the explicit unlock says
		// so to a reader.
		unlock(f)
		f.Close()
	}, nil
}
