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

// linkAnonymous gives the O_TMPFILE file f the name target: linkat through
// /proc/self/fd (no privilege needed), which fails if target exists; with
// overwrite it links a fresh temporary name and renames that over target.
func linkAnonymous(f *os.File, target string, overwrite bool) error {
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	dst := target
	if overwrite {
		dst = tempName(target)
	}
	err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST) && !overwrite:
		return fmt.Errorf("%s: %w", target, ErrOutputExists)
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		// No /proc: copy into a named temporary file instead.
		if err := copyToName(f, dst); err != nil {
			return err
		}
	default:
		return &os.LinkError{Op: "linkat", Old: src, New: dst, Err: err}
	}
	if overwrite {
		if err := os.Rename(dst, target); err != nil {
			_ = os.Remove(dst)
			return err
		}
	}
	return nil
}

// copyToName copies f's content into a new file dst (0600, must not exist).
func copyToName(f *os.File, dst string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w", dst, ErrOutputExists)
		}
		return err
	}
	_, err = io.Copy(out, f)
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
