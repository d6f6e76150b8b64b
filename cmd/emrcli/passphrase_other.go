//go:build !linux

package main

import (
	"bufio"
	"os"
	"strings"
)

// Elsewhere the passphrase is read like any line (and echoed); prefer
// EMRCLI_PASSPHRASE there.
func isTerminal(*os.File) bool { return false }

func readNoEcho(f *os.File) ([]byte, error) {
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return nil, err
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}
