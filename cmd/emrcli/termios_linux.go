package main

import "golang.org/x/sys/unix"

// The terminal attribute requests (passphrase_termios.go).
const (
	ioctlGetTermios = unix.TCGETS
	ioctlSetTermios = unix.TCSETS
)
