//go:build unix

package load

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user and system) the process has used: with
// the garbage collector and pebble's flushes and compactions, which run on
// other threads and which the wall time of a 2-core machine partly hides.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
