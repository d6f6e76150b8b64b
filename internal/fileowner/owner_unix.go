//go:build unix

package fileowner

import (
	"os"
	"syscall"
)

// Of is the user and group ids owning the file info describes.
func Of(info os.FileInfo) (uid, gid int, known bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
