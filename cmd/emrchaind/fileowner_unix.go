//go:build unix

package main

import (
	"os"
	"syscall"
)

// fileOwner is the user id of the file info describes.
func fileOwner(info os.FileInfo) (uid int, known bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
