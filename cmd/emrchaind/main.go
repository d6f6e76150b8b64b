package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		// One line, on stderr, non-zero exit: scripts can rely on it.
		msg := strings.Join(strings.Fields(err.Error()), " ")
		fmt.Fprintln(os.Stderr, "emrchaind: "+msg)
		os.Exit(1)
	}
}
