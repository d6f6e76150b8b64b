//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package main

import "os"

// Elsewhere (Plan 9, wasm, ...) the passphrase is read like any line,
// and echoed; EMRCLI_PASSPHRASE is the better way there.
func isTerminal(*os.File) bool { return false }

func echoOff(*os.File) (func(), error) { return func() {}, nil }
