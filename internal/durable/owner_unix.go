//go:build unix

package durable

import (
	"errors"
	"os"
	"syscall"
)

// chownFile is (*os.File).Chown; tests replace it.
var chownFile = (*os.File).Chown

// keepOwner gives tmp, about to replace the file old describes, old's
// owner and group when they differ and this process runs as root: root
// replacing a service's key file or config (sudo) must not leave it
// unreadable by that service. Other users cannot give a file away, and
// the replacement is theirs, as before. It is a best effort: root without
// CAP_CHOWN (a container with its capabilities dropped), or in a user
// namespace where the owner is not mapped, may not chown (EPERM, EINVAL),
// and the replacement is then root's, as it was before keepOwner.
func keepOwner(tmp *os.File, old os.FileInfo) error {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 || (int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid()) {
		return nil
	}
	err := chownFile(tmp, int(st.Uid), int(st.Gid))
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
