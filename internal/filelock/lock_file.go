//go:build (unix && !aix) || windows

package filelock

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/internal/fileowner"
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
	// Root locking in a user's directory (sudo emrcli on a sidecar's
	// keyring) leaves the lock file that user's: a 0600 lock file of
	// root's would stop every later run of the user's own. A lock file
	// root left before is given back the same way. Best effort: the
	// lock works either way for root.
	if dir, err := os.Stat(filepath.Dir(path)); err == nil {
		_ = fileowner.MatchOwner(f, dir)
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
