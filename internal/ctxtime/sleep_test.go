package ctxtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSleep: a sleep ends when its time passes (nil), or when its context
// ends first (the context's error), whichever comes first.
func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("a sleep that ran its time: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a sleep whose context ended: %v", err)
	}
	if took := time.Since(start); took > time.Minute {
		t.Fatalf("a sleep of an hour whose context ended after 10 ms took %s", took)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no sleep on an ended context: %v", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Fatalf("no sleep: %v", err)
	}
}

// TestRetry: Retry calls try until it is done, and stops, with ctx's
// error, when ctx ends first.
func TestRetry(t *testing.T) {
	calls := 0
	if err := Retry(context.Background(), func() bool { calls++; return calls == 3 }); err != nil || calls != 3 {
		t.Fatalf("Retry until the third call: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	calls = 0
	if err := Retry(ctx, func() bool { calls++; return false }); !errors.Is(err, context.DeadlineExceeded) || calls < 2 {
		t.Fatalf("Retry of a try never done: %v after %d calls, want the deadline after a few", err, calls)
	}
}
