package fileowner

import (
	"errors"
	"os"
	"syscall"
)

// chownFile is (*os.File).Chown; tests replace it.
var chownFile = (*os.File).Chown

// MatchOwner gives f the owner and group of the file like describes when
// they differ from this process's and it runs as root: root writing in a
// service's place (sudo emrcli on a sidecar's keyring) must not leave a
// file that service cannot read or open. Other users cannot give a file
// away, and what they write is theirs; where owners are not ids (Windows)
// there is nothing to match. It is a best effort: root without CAP_CHOWN
// (a container with its capabilities dropped), or in a user namespace
// where the owner is not mapped, may not chown (EPERM, EINVAL), and f then
// stays root's; another failure is returned.
func MatchOwner(f *os.File, like os.FileInfo) error {
	uid, gid, known := Of(like)
	if !known || os.Geteuid() != 0 || (uid == os.Geteuid() && gid == os.Getegid()) {
		return nil
	}
	err := chownFile(f, uid, gid)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
