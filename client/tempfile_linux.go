//go:build linux

package client

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openAnonymous opens a nameless read-write file (mode 0600) in dir with
// O_TMPFILE; it fails where the file system does not support it.
func openAnonymous(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir+"/(unnamed)"), nil
}

// procSelfFD is where linkAnonymous finds the open files of this process
// by number; tests point it elsewhere to exercise the copy without /proc.
var procSelfFD = "/proc/self/fd/"

// linkAnonymous gives the O_TMPFILE file f the name target: linkat through
// /proc/self/fd (no privilege needed), which fails if target exists; with
// overwrite it links a fresh temporary name and renames that over target.
// Without /proc it copies f into a temporary name beside target and moves
// that into place only once complete and synced, so a crash never leaves
// part of the plaintext under target.
func linkAnonymous(f *os.File, target string, overwrite bool) error {
	src := procSelfFD + strconv.Itoa(int(f.Fd()))
	tmp := tempName(target)
	dst := target
	if overwrite {
		dst = tmp
	}
	err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	switch {
	case err == nil:
		if !overwrite {
			return nil
		}
	case errors.Is(err, unix.EEXIST) && !overwrite:
		return fmt.Errorf("%s: %w", target, ErrOutputExists)
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		if err := copyToName(f, tmp); err != nil {
			return err
		}
	default:
		return &os.LinkError{Op: "linkat", Old: src, New: dst, Err: err}
	}
	if err := moveInto(tmp, target, overwrite); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// renameExclusive renames tmp to target unless target exists:
// renameat2 with RENAME_NOREPLACE; errors.ErrUnsupported where the file
// system or kernel lacks it.
func renameExclusive(tmp, target string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, target, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP) {
		return errors.ErrUnsupported
	}
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: tmp, New: target, Err: err}
	}
	return nil
}

// copyBeforeSync, when set by a test, is called with the name a copy is
// being written to, after the copy and before its fsync.
var copyBeforeSync func(name string)

// copyToName copies f's content into a new file dst (0600, must not
// exist: a fresh temporary name, so the target's ErrOutputExists is
// decided by the rename that follows, not here).
func copyToName(f *os.File, dst string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, f)
	if err == nil && copyBeforeSync != nil {
		copyBeforeSync(dst)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}
