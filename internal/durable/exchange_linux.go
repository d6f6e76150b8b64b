//go:build linux

package durable

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Exchange swaps the directory entries a and b, both existing, in one
// step (renameat2 RENAME_EXCHANGE): a crash leaves both names in place,
// each naming either what it named or what the other did. It returns
// ErrNoExchange where the system or file system cannot, and an error
// matching fs.ErrNotExist when a or b is missing. The caller syncs the
// parent directories (SyncDir) to keep the swap.
func Exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: exchange %s and %s: %v", ErrNoExchange, a, b, err)
	}
	return fmt.Errorf("exchange %s and %s: %w", a, b, err)
}
