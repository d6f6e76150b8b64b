package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/emrchain/emrchain/internal/fileowner"
)

// Sync opens name (a file or a directory), fsyncs it and closes it. Its
// errors are *fs.PathError, which name the path.
func Sync(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// SyncDir makes the entries of dir durable: the names created, renamed or
// removed in it last. Windows cannot open a directory for syncing (its
// renames are metadata the file system journals): there it does nothing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	return Sync(dir)
}

// WriteFile writes data to a new file at path (it must not exist) with
// permissions perm and fsyncs it before closing. The name itself is
// durable once its directory is synced (SyncDir). A file it fails to write
// whole is removed, so that a retry does not find it there.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// CreateFile is WriteFile, then SyncDir of path's directory: the file and
// its name are durable when it returns (a key file a user is told about,
// and may then delete the only other copy of). If the directory cannot be
// synced the file is removed, so that a retry does not find it there.
func CreateFile(path string, data []byte, perm os.FileMode) error {
	if err := WriteFile(path, data, perm); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// ReplaceFile writes data to path with permissions perm through a
// temporary file in the same directory and a rename, so that a crash
// leaves the old file or the new one, never half of it; the directory is
// synced after the rename, so the new file is durable when it returns
// (an error wrapping ErrNotSynced: it is in place, not yet durable).
// Run as root, it keeps the owner and group of the file it replaces
// (fileowner.MatchOwner): root replacing a service's key file or config
// (sudo) must not leave it unreadable by that service.
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	old, err := os.Lstat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	err = tmp.Chmod(perm)
	if err == nil && old != nil {
		err = fileowner.MatchOwner(tmp, old)
	}
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSynced, err)
	}
	return nil
}

// ErrNotSynced: ReplaceFile renamed the new file into place, but syncing
// its directory failed, so a crash before the directory reaches the disk
// may bring the old file back. Readers meanwhile see the new one.
var ErrNotSynced = errors.New("the file was replaced, but a crash before its directory reaches the disk may bring back the old one")

// MkdirAll is os.MkdirAll whose new directories are durable: each one it
// creates is synced into its parent, so a file made in dir and synced
// there cannot vanish with a directory entry above it that never reached
// the disk.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			if !fi.IsDir() {
				return &os.PathError{Op: "mkdir", Path: d, Err: syscall.ENOTDIR}
			}
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], perm); err != nil && !os.IsExist(err) {
			return err
		}
		if err := SyncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoExchange: Exchange cannot swap two names in one step here (not
// Linux, or a file system without RENAME_EXCHANGE).
var ErrNoExchange = errors.New("durable: no atomic exchange of two names here")
