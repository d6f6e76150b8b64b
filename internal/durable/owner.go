package durable

import (
	"os"

	"github.com/emrchain/emrchain/internal/fileowner"
)

// keepOwner gives tmp, about to replace the file old describes, old's
// owner and group when root writes it (fileowner.MatchOwner): root
// replacing a service's key file or config (sudo) must not leave it
// unreadable by that service.
func keepOwner(tmp *os.File, old os.FileInfo) error { return fileowner.MatchOwner(tmp, old) }
