//go:build unix && !aix

package filelock

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Lock takes the exclusive lock on path, creating the file (0o600) if it
// is missing, and returns its release: flock on the open file. While
// another holder (another process, or another Lock of path in this one)
// has it, Lock tries again after a short wait, until ctx ends; it then
// returns an error that names path and wraps ctx's error. Call release
// exactly once.
func Lock(ctx context.Context, path string) (release func(), err error) {
	return lockFile(ctx, path,
		func(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) },
		func(err error) bool { return errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EINTR) },
		func(f *os.File) { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN) })
}
