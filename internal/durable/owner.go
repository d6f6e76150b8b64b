package durable

import (
	"errors"
	"os"
	"syscall"

	"github.com/emrchain/emrchain/internal/fileowner"
)

// chownFile is (*os.File).Chown; tests replace it.
var chownFile = (*os.File).Chown

// keepOwner gives tmp, about to replace the file old describes, old's
// owner and group when they differ and this process runs as root: root
// replacing a service's key file or config (sudo) must not leave it
// unreadable by that service. Other users cannot give a file away, and
// the replacement is theirs, as before; where owners are not ids
// (Windows) there is nothing to keep. It is a best effort: root without
// CAP_CHOWN (a container with its capabilities dropped), or in a user
// namespace where the owner is not mapped, may not chown (EPERM, EINVAL),
// and the replacement is then root's, as it was before keepOwner.
func keepOwner(tmp *os.File, old os.FileInfo) error {
	uid, gid, known := fileowner.Of(old)
	if !known || os.Geteuid() != 0 || (uid == os.Geteuid() && gid == os.Getegid()) {
		return nil
	}
	err := chownFile(tmp, uid, gid)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
