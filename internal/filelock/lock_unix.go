//go:build unix && !aix

package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/emrchain/emrchain/internal/ctxtime"
)

// Lock takes the exclusive lock on path, creating the file (0o600) if it
// is missing, and returns its release. While another holder (another
// process, or another Lock of path in this one) has it, Lock tries again
// after a short wait, until ctx ends; it then returns an error that names
// path and wraps ctx's error. Call release exactly once.
func Lock(ctx context.Context, path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	var lockErr error
	if err := ctxtime.Retry(ctx, func() bool {
		lockErr = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		return !errors.Is(lockErr, unix.EWOULDBLOCK) && !errors.Is(lockErr, unix.EINTR)
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
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
