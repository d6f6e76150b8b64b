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
