package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/internal/ctxtime"
)

// followWarnEvery is how often --follow says again that its reads
// fail, while they do.
const followWarnEvery = time.Minute

// defaultFollowInterval is how often --follow asks for new reads:
// about two blocks.
const defaultFollowInterval = 2 * time.Second

// followTable starts a --follow's table on standard output (after the
// --no-verify banner): header in one batch with first, the rows shown so
// far, so that the columns fit them, and room made for widths, so that
// rows to come line up with them if they fit.
func (a *cli) followTable(header []string, first [][]string, widths ...int) *columns {
	a.unverifiedBanner()
	out := newColumns(a.stdout, len(header))
	out.fit(widths...)
	out.print(append([][]string{header}, first...)...)
	return out
}

// followStart says on standard error what a --follow follows, from which
// state, and what it has shown so far.
func (a *cli) followStart(what string, height int64, verified bool, shown string, interval time.Duration) {
	v := "verified"
	if !verified {
		v = "NOT verified"
	}
	fmt.Fprintf(a.stderr, "following %s from the state at height %d (%s, %s): each new read is printed as it is committed (every %s; Ctrl-C to stop)\n",
		what, height, v, shown, interval)
}

// follow calls next every interval, until ctx ends (nil) or next fails in
// a way asking again cannot mend (followEnds). next reads what was logged
// since its last call and prints it. Any other failure (a node or witness
// out of reach or behind, an answer that does not verify, of which next
// printed nothing) is warned about on standard error when reads start
// failing, then once a minute while they do, and asked again; what names
// what is read ("the access log").
func (a *cli) follow(ctx context.Context, interval time.Duration, what string, next func(context.Context) error) error {
	var failingSince, warned time.Time // while reads fail: since when, and the last warning
	for {
		if ctxtime.Sleep(ctx, interval) != nil {
			return nil
		}
		err := next(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case followEnds(err):
			return err
		case err != nil:
			// The chain's log is still there to be read, so ask again.
			// Warn when reads start failing, then once a minute while
			// they do (a failure's text names the height, which changes
			// every block).
			now := time.Now()
			switch {
			case failingSince.IsZero():
				failingSince, warned = now, now
				fmt.Fprintf(a.stderr, "warning: reading %s failed, asking again every %s: %s\n", what, interval, app.OneLine(err.Error()))
			case now.Sub(warned) >= followWarnEvery:
				warned = now
				fmt.Fprintf(a.stderr, "warning: reading %s has failed since %s: %s\n", what, rfc3339(failingSince), app.OneLine(err.Error()))
			}
		case !failingSince.IsZero():
			fmt.Fprintf(a.stderr, "%s is read again\n", what)
			failingSince = time.Time{}
		}
	}
}

// followEnds says whether a failed read ends a --follow (follow): only what
// asking again cannot mend, a root of trust replaced meanwhile (this
// run's client reads from the old one: run again) or expired (set a new
// one). Every other failure leaves the chain's log there to be read.
func followEnds(err error) bool {
	return errors.Is(err, client.ErrTrustRootReplaced) || errors.Is(err, client.ErrTrustExpired)
}
