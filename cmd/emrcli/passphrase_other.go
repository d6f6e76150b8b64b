//go:build !linux

package main

import "os"

// Elsewhere the passphrase is read like any line (and echoed); prefer
// EMRCLI_PASSPHRASE there.
func isTerminal(*os.File) bool { return false }

func echoOff(*os.File) (func(), error) { return func() {}, nil }
