package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends, and returns ctx's error then (nil once
// d passed). A d of zero or less returns at once, with ctx's error if it
// has ended.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// The waits of Retry: short at first (what is waited for, another run's
// hold of a lock, takes milliseconds to seconds), doubling up to
// retryMaxWait, so a long wait costs a few tries a second.
const (
	retryMinWait = 2 * time.Millisecond
	retryMaxWait = 100 * time.Millisecond
)

// Retry calls try until it reports done, waiting between two calls from
// 2 ms, doubling up to 100 ms, for as long as ctx lets it; it returns
// ctx's error if ctx ends first (try keeps its own result).
func Retry(ctx context.Context, try func() (done bool)) error {
	wait := retryMinWait
	for !try() {
		if err := Sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, retryMaxWait)
	}
	return nil
}
