//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// maxRSS runs a command that must succeed and returns its peak resident
// set size in KiB: VmHWM of /proc/PID/status, polled every 5ms until the
// process exits (the last value read; VmHWM only grows). The rusage of
// wait4 cannot be used: a child started with vfork+exec inherits the
// parent's high-water mark, and this test process holds files in memory.
func (e *transferEnv) maxRSS(args ...string) int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), e.env...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var hwm int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if v := vmHWM(status); v > hwm {
			hwm = v
		}
		select {
		case err := <-done:
			if err != nil {
				e.t.Fatalf("emrcli %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
			}
			if hwm == 0 { // else the memory check would compare 0 with 0 and always pass
				e.t.Fatalf("emrcli %s: no VmHWM read from %s", strings.Join(args, " "), status)
			}
			return hwm
		case <-tick.C:
		}
	}
}

// vmHWM reads the VmHWM line (KiB) of a /proc status file, 0 if absent.
func vmHWM(path string) int64 {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
