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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, "audit", "--from", "alice", "--follow", "--interval", "200ms", "--json")
	cmd.Env = append(os.Environ(), e.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(what string) followedRead {
		t.Helper()
		select {
		case line, ok := <-lines:
			var r followedRead
			if !ok || json.Unmarshal([]byte(line), &r) != nil {
				t.Fatalf("audit --follow: %s: got %q (more: %v); stderr: %s", what, line, ok, stderr.String())
			}
			return r
		case <-ctx.Done():
			t.Fatalf("audit --follow: %s: nothing printed; stderr: %s", what, stderr.String())
		}
		return followedRead{}
	}
	first := next("the read logged before")
	if first.PatientID != pid || first.Accessor != clinician || len(first.Records) != 1 || first.Records[0] != 1 || !first.Verified {
		t.Fatalf("audit --follow, the read logged before: %+v", first)
	}
	e.ok("read", "--from", "clinician", "--patient", pid, "--record", "1")
	second := next("the read logged while it follows")
	if second.Accessor != clinician || second.Purpose != "treatment" || second.Height <= first.Height ||
		len(second.Events) != 1 || second.Events[0] != first.Events[0]+1 || !second.Verified {
		t.Fatalf("audit --follow, a new read: %+v after %+v", second, first)
	}
	// Nothing more is printed: no read is shown twice.
	select {
	case line := <-lines:
		t.Fatalf("audit --follow printed %q with no new read", line)
	case <-time.After(time.Second):
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("audit --follow, interrupted: %v; stderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "following the access log of patient "+pid+" from the state at height ") {
		t.Fatalf("audit --follow does not say what it follows: %s", stderr.String())
	}
}
