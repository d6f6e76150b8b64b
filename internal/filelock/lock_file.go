//go:build (unix && !aix) || windows

package filelock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/internal/fileowner"
)

// openLockFile opens the lock file at path, creating it (0o600) if it is
// missing. A lock file root creates in another user's directory (sudo
// emrcli on a sidecar's keyring) is given the directory's owner: one of
// root's would stop every later run of that user's own. Only a file this
// call created (O_EXCL, which follows no symlink) is given away: an
// existing one, or a name planted as a symlink to a file of root's, keeps
// its owner. Best effort (fileowner.MatchOwner): the lock works either way.
// A lock file deleted between the two opens is made again, as often as
// that happens (up to lockFileRaces times); a name that is a symlink to
// nothing fails at once.
func openLockFile(path string) (*os.File, error) {
	for range lockFileRaces {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			if dir, err := os.Stat(filepath.Dir(path)); err == nil {
				_ = fileowner.MatchOwner(f, dir)
			}
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s is a symlink to nothing: remove it", path)
			}
		}
		// Deleted between the two opens (by another run's cleanup, or a
		// user): make it again.
	}
	return nil, fmt.Errorf("%s is there and then is not, again and again", path)
}

// lockFile takes the exclusive lock on path, creating the file (0o600) if
// it is missing, and returns its release: try takes the system's lock
// without waiting, and busy says its error means another holder has it,
// in which case lockFile tries again after a short wait, until ctx ends; it
// then returns an error that names path and wraps ctx's error. release
// unlocks with unlock and closes the file, which releases the lock anyway.
func lockFile(ctx context.Context, path string, try func(*os.File) error, busy func(error) bool, unlock func(*os.File)) (release func(), err error) {
	f, err := openLockFile(path)
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

// lockFileRaces bounds how often openLockFile makes a lock file again that
// is deleted as it is opened: a name deleted that often is not a race.
const lockFileRaces = 1000
