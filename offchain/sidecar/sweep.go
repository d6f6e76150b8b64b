package sidecar

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// SweepReport says what one sweep pass did.
type SweepReport struct {
	// Checked: blobs older than the grace period looked up in the
	// reference index.
	Checked int
	// Deleted: unreferenced blobs removed, and their bytes.
	Deleted      int
	DeletedBytes int64
	// Kept: checked blobs that a committed record or share references.
	Kept int
	// Errors: blobs that could not be checked or deleted (kept).
	Errors int
	// Busy: unreferenced blobs passed over because an upload of them was
	// in progress (it refreshes their age); a later pass sees them again.
	Busy int
	// TempRemoved: leftovers of interrupted uploads removed.
	TempRemoved int
	// Wrapped: the pass reached the end of the store (the next one starts
	// from the beginning).
	Wrapped bool
	// Height: the reference index held every block up to this one when
	// the pass checked blobs.
	Height int64
	// Cutoff: blobs modified after this time were not checked. It is the
	// grace period before the pass's clock or, if earlier, before the time
	// of block Height.
	Cutoff time.Time
	// HeadBehind: how far block Height's time was behind the pass's clock
	// (0 if it was not). Blocks come at least every create-empty-blocks
	// interval, so a large value means the node stopped following the
	// chain, and the pass kept blobs uploaded since then.
	HeadBehind time.Duration
}

// Sweep runs one garbage-collection pass: blobs older than the grace
// period that no committed record and no committed share references are
// deleted. The pass first reads every block up to the chain's head into the
// reference index (refindex.go); if it cannot, it deletes nothing and
// returns the error. A pass checks at most SweepMaxChecks blobs against the
// index and deletes at most SweepMaxDeletes; the next pass continues where
// it stopped, so every blob is visited in turn.
//
// A blob's reference, if it has one, is committed within the grace period
// after its upload. The cutoff is the grace period before the earlier of
// two times, so that every reference to a blob older than it is in the
// index:
//   - the pass's clock, read before the catch-up reads the chain's head: a
//     reference committed after the index caught up was committed after
//     that reading, so its upload is younger than the cutoff however long
//     the catch-up took;
//   - the time of the block the index is complete through: a node that
//     stopped following the chain (partitioned, halted, or a frozen
//     validator set) answers with a head hours old, and a reference
//     committed on the chain since then is in none of its blocks. A blob
//     uploaded after that block's time less the grace period is kept until
//     the node moves on (SweepReport.HeadBehind).
func (s *Server) Sweep(ctx context.Context) (SweepReport, error) {
	var rep SweepReport
	s.metrics.sweepRuns.Inc()
	// First, whatever comes of the rest: an index that is behind (pruned
	// blocks), a listing that fails or a pass cut short must not keep
	// leftovers of interrupted uploads forever.
	rep.TempRemoved = s.cleanTemp(ctx)
	now := s.opts.Now() // before the catch-up: see above
	ix, err := s.refs.catchUp(ctx, s.chain, s.log)
	if err != nil {
		return rep, fmt.Errorf("sweep: nothing deleted: the reference index could not read every block up to the chain's head (it is complete through height %d): %w",
			ix.Height, err)
	}
	rep.Height = ix.Height
	upTo := now
	if ix.Time.Before(now) {
		upTo = ix.Time
		rep.HeadBehind = now.Sub(ix.Time)
	}
	cutoff := upTo.Add(-s.opts.SweepGrace)
	rep.Cutoff = cutoff

	s.mu.Lock()
	cursor := s.cursor
	s.mu.Unlock()

	// Collect candidates after the cursor first (bounded), then ask the
	// chain: listing never waits on the chain.
	var candidates []blobstore.Info
	var last blobstore.Key
	full := false
	err = s.store.ListAfter(ctx, cursor, func(i blobstore.Info) bool {
		last = i.Key
		if i.ModTime.After(cutoff) {
			return true
		}
		candidates = append(candidates, i)
		if len(candidates) >= s.opts.SweepMaxChecks {
			full = true
			return false
		}
		return true
	})
	if err != nil {
		return rep, err
	}
	rep.Wrapped = !full

	for _, c := range candidates {
		if rep.Deleted >= s.opts.SweepMaxDeletes {
			last = c.Key
			rep.Wrapped = false
			break
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Checked++
		referenced, err := s.refs.has(c.Key)
		if err != nil {
			rep.Errors++
			s.metrics.sweepErrs.Inc()
			s.log.Error("sweep: cannot check blob, keeping it", "key", c.Key.String(), "err", err)
			continue
		}
		if referenced {
			rep.Kept++
			continue
		}
		info, deleted, err := s.deleteIfOld(ctx, c.Key, cutoff)
		if errors.Is(err, errBlobBusy) {
			rep.Busy++
			continue
		}
		if err != nil {
			rep.Errors++
			s.metrics.sweepErrs.Inc()
			s.log.Error("sweep: cannot check or delete blob, keeping it", "key", c.Key.String(), "err", err)
			continue
		}
		if !deleted {
			continue
		}
		rep.Deleted++
		rep.DeletedBytes += info.Size
		s.metrics.sweepDel.Inc()
		s.metrics.sweepBytes.Add(float64(info.Size))
		s.log.Info("sweep: deleted unreferenced blob", "key", c.Key.String(), "size", info.Size,
			"age", now.Sub(info.ModTime).Round(time.Second).String())
	}

	s.mu.Lock()
	if rep.Wrapped {
		s.cursor = blobstore.Key{}
	} else {
		// Resume after the last blob this pass finished with; a blob that
		// stopped the pass on the deletion bound is visited again.
		s.cursor = last
		if rep.Deleted >= s.opts.SweepMaxDeletes {
			s.cursor = prevKey(last)
		}
	}
	s.mu.Unlock()
	return rep, nil
}

// cleanTemp removes the leftovers of interrupted uploads older than the
// grace period and returns how many it removed. An upload in flight
// writes to its temporary file at least every upload_idle_timeout (or
// fails), so its file never looks that old.
func (s *Server) cleanTemp(ctx context.Context) int {
	n, err := s.store.CleanTemp(ctx, s.opts.SweepGrace)
	if err != nil {
		s.log.Error("cleaning temporary uploads failed", "err", err)
	}
	return n
}

// errBlobBusy: an upload of the blob (or the sweep, or a drop of a damaged
// copy) holds its lock.
var errBlobBusy = errors.New("the blob is locked by an upload, the sweep or a drop of a damaged copy")

// deleteIfOld deletes blob key if it is still older than cutoff. The age is
// checked again here, locked against uploads of the blob (keyLocks): a
// client may have put it again, which refreshes its age, since it was
// listed. If one is putting it now, it returns errBlobBusy at once rather
// than wait for a body the client may send slowly, or never.
func (s *Server) deleteIfOld(ctx context.Context, key blobstore.Key, cutoff time.Time) (blobstore.Info, bool, error) {
	unlock, ok := s.blobs.tryLock(key)
	if !ok {
		return blobstore.Info{}, false, errBlobBusy
	}
	defer unlock()
	info, err := s.store.Stat(ctx, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		s.pending.deleted(key)
		return info, false, nil
	}
	if err != nil || info.ModTime.After(cutoff) {
		return info, false, err
	}
	if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return info, false, err
	}
	s.pending.deleted(key)
	s.verified.forget(key)
	return info, true, nil
}

// prevKey is the key just before k, so that a listing "after" it
// includes k.
func prevKey(k blobstore.Key) blobstore.Key {
	if decrement(k.Sum[:]) || decrement(k.Owner[:]) {
		return k
	}
	return blobstore.Key{}
}

// decrement subtracts one from b, a big-endian number, and reports whether
// it was above zero (at zero, it wraps to all 0xff).
func decrement(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] > 0 {
			b[i]--
			return true
		}
		b[i] = 0xff
	}
	return false
}

// sweepLoop runs the sweep every SweepInterval, and when the sweep is
// disabled still removes the leftovers of interrupted uploads every
// DefaultSweepInterval (they are no one's blobs, and only take space).
// Those are also removed once at start. Each round ends within its
// interval, and all at once when stop closes.
func (s *Server) sweepLoop(stop <-chan struct{}) {
	defer s.wg.Done()
	sweep := s.opts.SweepInterval > 0
	interval := s.opts.SweepInterval
	if !sweep {
		interval = DefaultSweepInterval
	}
	base, cancelBase := untilStop(context.Background(), stop)
	defer cancelBase()
	s.cleanTempLogged(base, "removed temporary uploads left by an earlier run")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(base, interval)
		if sweep {
			s.sweepLogged(ctx)
		} else {
			s.cleanTempLogged(ctx, "removed temporary uploads of interrupted uploads")
		}
		cancel()
	}
}

// cleanTempLogged is cleanTemp, logging msg with the count if it removed
// any.
func (s *Server) cleanTempLogged(ctx context.Context, msg string) {
	if n := s.cleanTemp(ctx); n > 0 {
		s.log.Info(msg, "count", n)
	}
}

// sweepLogged is Sweep, logging its report.
func (s *Server) sweepLogged(ctx context.Context) {
	start := time.Now()
	rep, err := s.Sweep(ctx)
	if err != nil {
		s.log.Error("sweep failed", "temp_removed", rep.TempRemoved, "err", err)
		return
	}
	s.log.Info("sweep done", "checked", rep.Checked, "deleted", rep.Deleted, "deleted_bytes", rep.DeletedBytes,
		"kept", rep.Kept, "errors", rep.Errors, "busy", rep.Busy, "temp_removed", rep.TempRemoved, "wrapped", rep.Wrapped, "height", rep.Height,
		"took", time.Since(start).Round(time.Millisecond).String())
	if s.opts.MaxHeadAge > 0 && rep.HeadBehind > s.opts.MaxHeadAge {
		s.log.Error("sweep: the node's latest block is old; blobs uploaded since the grace period before it are kept until the node follows the chain again",
			"height", rep.Height, "behind", rep.HeadBehind.Round(time.Second).String(), "cutoff", formatTime(rep.Cutoff))
	}
}

// untilStop is ctx, also cancelled when stop closes (the server shuts
// down). The caller calls cancel when done, which ends the watch.
func untilStop(ctx context.Context, stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
