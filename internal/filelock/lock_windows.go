//go:build windows

package filelock

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// Lock takes the exclusive lock on path, creating the file (0o600) if it
// is missing, and returns its release: LockFileEx on the file's first
// byte, the Windows counterpart of flock. While another holder (another
// process, or another Lock of path in this one: the lock is the handle's)
// has it, Lock tries again after a short wait, until ctx ends; it then
// returns an error that names path and wraps ctx's error. Call release
// exactly once.
func Lock(ctx context.Context, path string) (release func(), err error) {
	return lockFile(ctx, path,
		func(f *os.File) error {
			return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, new(windows.Overlapped))
		},
		func(err error) bool { return errors.Is(err, windows.ERROR_LOCK_VIOLATION) },
		func(f *os.File) { _ = windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, new(windows.Overlapped)) })
}
