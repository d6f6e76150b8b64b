package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// followedRead is a line of audit --follow --json.
type followedRead struct {
	PatientID string   `json:"patient_id"`
	Accessor  string   `json:"accessor"`
	Purpose   string   `json:"purpose"`
	Records   []uint64 `json:"records"`
	Events    []uint64 `json:"events"`
	Height    int64    `json:"height"`
	Verified  bool     `json:"verified"`
}

// testAuditFollow: audit --follow prints the reads logged so far, then
// each new read once, as it is committed, and exits 0 when interrupted.
// pid's log holds one read, of record 1 by the clinician at that address.
func testAuditFollow(t *testing.T, e *cliEnv, pid, clinician string) {
	f := e.startFollowing(t, "audit", "--from", "alice", "--follow", "--interval", "200ms", "--json")
	var first, second followedRead
	f.next(&first, "the read logged before")
	if first.PatientID != pid || first.Accessor != clinician || len(first.Records) != 1 || first.Records[0] != 1 || !first.Verified {
		t.Fatalf("audit --follow, the read logged before: %+v", first)
	}
	e.ok("read", "--from", "clinician", "--patient", pid, "--record", "1")
	f.next(&second, "the read logged while it follows")
	if second.Accessor != clinician || second.Purpose != "treatment" || second.Height <= first.Height ||
		len(second.Events) != 1 || second.Events[0] != first.Events[0]+1 || !second.Verified {
		t.Fatalf("audit --follow, a new read: %+v after %+v", second, first)
	}
	f.nothingMore(time.Second)
	if stderr := f.interrupt(); !strings.Contains(stderr, "following the access log of patient "+pid+" from the state at height ") {
		t.Fatalf("audit --follow does not say what it follows: %s", stderr)
	}
}

// following is an emrcli --follow --json command running in the
// background: its lines are read as they come.
type following struct {
	t      *testing.T
	ctx    context.Context
	cmd    *exec.Cmd
	lines  chan string
	stderr *strings.Builder
}

// startFollowing runs emrcli args (a --follow --json command) in the
// background, for at most a minute.
func (e *cliEnv) startFollowing(t *testing.T, args ...string) *following {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), e.env...)
	f := &following{t: t, ctx: ctx, cmd: cmd, lines: make(chan string), stderr: &strings.Builder{}}
	cmd.Stderr = f.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A test that fails before interrupt leaves no process, nor a reader
	// blocked on lines, behind.
	t.Cleanup(func() {
		cancel()
		for range f.lines {
		}
		_ = cmd.Wait()
	})
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
	}()
	return f
}

// next decodes the next line into v; what names it for a failure.
func (f *following) next(v any, what string) {
	f.t.Helper()
	select {
	case line, ok := <-f.lines:
		if !ok || json.Unmarshal([]byte(line), v) != nil {
			f.t.Fatalf("%s: %s: got %q (more: %v); stderr: %s", f.cmd.Args[1], what, line, ok, f.stderr.String())
		}
	case <-f.ctx.Done():
		f.t.Fatalf("%s: %s: nothing printed; stderr: %s", f.cmd.Args[1], what, f.stderr.String())
	}
}

// nothingMore fails if a line comes within d: nothing is shown twice.
func (f *following) nothingMore(d time.Duration) {
	f.t.Helper()
	select {
	case line := <-f.lines:
		f.t.Fatalf("%s --follow printed %q with nothing new", f.cmd.Args[1], line)
	case <-time.After(d):
	}
}

// interrupt sends SIGINT, makes sure the command exits 0, and returns
// its standard error.
func (f *following) interrupt() string {
	f.t.Helper()
	if err := f.cmd.Process.Signal(syscall.SIGINT); err != nil {
		f.t.Fatal(err)
	}
	for range f.lines {
	}
	if err := f.cmd.Wait(); err != nil {
		f.t.Fatalf("%s --follow, interrupted: %v; stderr: %s", f.cmd.Args[1], err, f.stderr.String())
	}
	return f.stderr.String()
}
