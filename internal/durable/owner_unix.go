//go:build unix

package durable

import (
	"os"
	"syscall"
)

// keepOwner gives tmp, about to replace the file old describes, old's
// owner and group when they differ and this process runs as root: root
// replacing a service's key file or config (sudo) must not leave it
// unreadable by that service. Other users cannot give a file away, and
// the replacement is theirs, as before.
func keepOwner(tmp *os.File, old os.FileInfo) error {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 || (int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid()) {
		return nil
	}
	return tmp.Chown(int(st.Uid), int(st.Gid))
}
