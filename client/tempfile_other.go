//go:build !linux

package client

import (
	"errors"
	"os"
)

var errNoAnonymous = errors.New("nameless temporary files need Linux O_TMPFILE")

// openAnonymous is Linux only; elsewhere the callers fall back to named
// temporary files.
func openAnonymous(string) (*os.File, error) { return nil, errNoAnonymous }

// linkAnonymous is never reached: openAnonymous always fails here.
func linkAnonymous(*os.File, string, bool) error { return errNoAnonymous }

// renameExclusive has no system call of its own here; renameNoReplace
// falls back to a hard link.
func renameExclusive(string, string) error { return errors.ErrUnsupported }
