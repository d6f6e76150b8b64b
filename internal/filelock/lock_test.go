//go:build unix && !aix

package filelock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// holdEnv makes the test binary a child that holds the lock on the file
// it names (TestHoldLockChild) until its stdin closes or it is killed.
const holdEnv = "FILELOCK_TEST_HOLD"

// TestHoldLockChild is not a test: run by holder with holdEnv set, it
// takes the lock, says "held" on stdout, and keeps the lock until its
// stdin closes.
func TestHoldLockChild(t *testing.T) {
	path := os.Getenv(holdEnv)
	if path == "" {
		t.Skip("the child of TestLockHeldByAnotherProcess")
	}
	release, err := Lock(context.Background(), path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("held")
	_, _ = io.Copy(io.Discard, os.Stdin)
	release()
	os.Exit(0)
}

// holder starts a child process that holds the lock on path, and returns
// once it does; closing stdin makes it release the lock and exit.
func holder(t *testing.T, path string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLockChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		t.Fatalf("the child holding %s: %q %v", path, line, err)
	}
	return cmd, stdin
}

// lockAsync takes the lock on path in a goroutine; the channel gives the
// release (nil on error) and the error.
func lockAsync(ctx context.Context, path string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		release, err := Lock(ctx, path)
		ch <- lockResult{release, err}
	}()
	return ch
}

type lockResult struct {
	release func()
	err     error
}

// granted waits (at most 10 s) for a lock taken by lockAsync.
func granted(t *testing.T, ch <-chan lockResult, what string) func() {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r.release
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not granted after 10 s", what)
		return nil
	}
}

// notYet fails if the lock taken by lockAsync was granted (or failed)
// already: it must still be waiting.
func notYet(t *testing.T, ch <-chan lockResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: returned (%v) while the lock is held elsewhere", what, r.err)
	default:
	}
}

// TestLockWaitsForRelease: a lock held by another holder in this process
// is waited for and granted once released; the file is created 0o600.
func TestLockWaitsForRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the lock file: %v %v, want mode 0600", fi, err)
	}
	ch := lockAsync(context.Background(), path)
	notYet(t, ch, "a second Lock")
	first()
	granted(t, ch, "a second Lock, once the first released")()
	// And again, free.
	release, err := Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	release()
}

// TestLockContextEnds: a lock that stays held is given up when ctx ends,
// with an error naming the file and wrapping ctx's error.
func TestLockContextEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	held, err := Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Lock(ctx, path)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), path) {
		t.Fatalf("a lock held past the context: %v, want the file named and context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("gave up after %s, want about the context's 50 ms", took)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := Lock(ctx, path); !errors.Is(err, context.Canceled) {
		t.Fatalf("a held lock with a canceled context: %v", err)
	}
}

// TestLockHeldByAnotherProcess: a lock another process holds is waited
// for, given up when ctx ends, granted when that process releases it, and
// released by the kernel when a holder is killed.
func TestLockHeldByAnotherProcess(t *testing.T) {
	if os.Getenv(holdEnv) != "" {
		t.Skip("the child")
	}
	path := filepath.Join(t.TempDir(), "x.lock")

	_, stdin := holder(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := Lock(ctx, path)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), path) {
		t.Fatalf("a lock another process holds, past the context: %v", err)
	}
	ch := lockAsync(context.Background(), path)
	notYet(t, ch, "Lock while another process holds it")
	stdin.Close() // the child releases and exits
	granted(t, ch, "Lock once the other process released it")()

	child, _ := holder(t, path)
	ch = lockAsync(context.Background(), path)
	notYet(t, ch, "Lock while another process holds it")
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	granted(t, ch, "Lock once the process holding it was killed")()
}
