//go:build !unix

package main

import "os"

// fileOwner: files have no user id to read here (Windows keeps an owner
// SID and ACLs, which the mode bits do not describe).
func fileOwner(os.FileInfo) (uid int, known bool) { return 0, false }
