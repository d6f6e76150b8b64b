//go:build unix && !aix

package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emrchain/emrchain/internal/ctxtime"
)

// The wait between two tries at a lock held elsewhere: short at first (a
// light-client operation of another run takes milliseconds to seconds),
// doubling up to maxWait, so a long wait costs a few polls a second.
const (
	minWait = 2 * time.Millisecond
	maxWait = 100 * time.Millisecond
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
	wait := minWait
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return func() {
				// Closing the file releases the lock; the explicit
				// unlock says so to a reader.
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EWOULDBLOCK):
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s stayed locked by another holder: %w", path, err)
		}
		wait = min(2*wait, maxWait)
	}
}
