//go:build !unix

package durable

import "os"

// keepOwner: no user and group ids to keep here (Windows keeps an owner
// SID and ACLs, which a new file in the same directory inherits).
func keepOwner(*os.File, os.FileInfo) error { return nil }
