package sidecar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// Ranges of a copy that is verified first.
//
// A GET of a whole blob is verified as it is sent (copyVerified): a copy
// whose bytes do not hash to the blob's SHA-256 is cut short and dropped,
// and the next GET reads the blob through from a peer. A range cannot be
// checked by itself (the chain has one SHA-256, of the whole blob), and a
// range of a damaged copy used to be served: a program resuming a download
// assembled the damaged bytes again at every try, until the scrub reached
// the copy. So a range is served only from a copy read whole and found
// intact within rangeCheckTTL (checkCopyForRange). One found damaged is
// judged again and dropped under the blob's lock, and the range is read
// through from a peer, or refused. Whatever finds a copy damaged (a whole
// GET, the scrub, this check) forgets that it was found intact. The
// cost is one read of the copy from the local store per blob and
// rangeCheckTTL, while ranges of it are asked for. Concurrent ranges of
// one blob wait for one read, in the first one's handler; the read does
// not take the blob's lock, so a range of an intact copy never waits for
// an upload of the same blob (which holds the lock while its body comes,
// however slowly).

// Bounds of verifiedCopies. (Variables for tests.)
var (
	// rangeCheckTTL is how long a copy found intact serves ranges without
	// being read again.
	rangeCheckTTL = 10 * time.Minute
	// rangeCheckMax bounds the copies remembered as intact.
	rangeCheckMax = 4096
	// rangeCheckTimeout bounds one read of a copy for ranges.
	rangeCheckTimeout = 5 * time.Minute
)

// verifiedCopies remembers which stored copies were read whole and found
// intact, and when, for at most rangeCheckMax copies (forgetting one only
// costs a read); and runs one read at a time of each copy (check).
type verifiedCopies struct {
	mu       sync.Mutex
	at       map[blobstore.Key]time.Time
	inflight map[blobstore.Key]*copyCheck
}

// copyCheck is one read of a copy, which concurrent checks of it share;
// intact and err are set before done is closed.
type copyCheck struct {
	done   chan struct{}
	intact bool
	err    error
	// stale: the copy was found damaged while this read went on.
	stale bool
	// joined counts the checks that waited for this read.
	joined int
}

// fresh reports whether key's copy was found intact within rangeCheckTTL
// before now.
func (v *verifiedCopies) fresh(key blobstore.Key, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.freshLocked(key, now)
}

func (v *verifiedCopies) freshLocked(key blobstore.Key, now time.Time) bool {
	at, ok := v.at[key]
	return ok && now.Sub(at) < rangeCheckTTL && !at.After(now)
}

// intact records that key's copy was read whole and found intact at now.
func (v *verifiedCopies) intact(key blobstore.Key, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.intactLocked(key, now)
}

// intactLocked is intact under v.mu. At the bound, the expired copies are
// forgotten, then the ones checked longest ago.
func (v *verifiedCopies) intactLocked(key blobstore.Key, now time.Time) {
	if v.at == nil {
		v.at = map[blobstore.Key]time.Time{}
	}
	if _, ok := v.at[key]; !ok && len(v.at) >= rangeCheckMax {
		for k, at := range v.at {
			if now.Sub(at) >= rangeCheckTTL || at.After(now) {
				delete(v.at, k)
			}
		}
		if len(v.at) >= rangeCheckMax {
			var oldest blobstore.Key
			first := true
			for k, at := range v.at {
				if first || at.Before(v.at[oldest]) {
					oldest, first = k, false
				}
			}
			delete(v.at, oldest)
		}
	}
	v.at[key] = now
}

// forget drops what is remembered of key's copy (it was found damaged, or
// deleted), and what a read of it under way would find.
func (v *verifiedCopies) forget(key blobstore.Key) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.at, key)
	if c := v.inflight[key]; c != nil {
		c.stale = true
	}
}

// check reports whether key's copy is intact: at once if it was found so
// within rangeCheckTTL, else by read. The first check of a copy reads it
// (read, in its own request's goroutine, and bounded by read, not by that
// request's ctx: it finishes for the others however its own client
// fares), and every check of the copy meanwhile waits for that verdict,
// or its error, which they all share, unless its ctx ends first. A copy
// found damaged while it was read (forget) gets no verdict of intact: the
// read saw bytes from before. now is the clock; the verdict is remembered
// as of when the read began. remembered says the verdict was one found
// earlier, given at once: otherwise the caller waited for a read.
func (v *verifiedCopies) check(ctx context.Context, key blobstore.Key, now func() time.Time, read func() (bool, error)) (intact, remembered bool, err error) {
	v.mu.Lock()
	if v.freshLocked(key, now()) {
		v.mu.Unlock()
		return true, true, nil
	}
	if c := v.inflight[key]; c != nil {
		c.joined++
		v.mu.Unlock()
		select {
		case <-c.done:
			return c.intact, false, c.err
		case <-ctx.Done():
			return false, false, ctx.Err()
		}
	}
	if v.inflight == nil {
		v.inflight = map[blobstore.Key]*copyCheck{}
	}
	c := &copyCheck{done: make(chan struct{})}
	v.inflight[key] = c
	began := now()
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		if c.stale {
			intact = false // judged again (the caller's damaged path)
		}
		c.intact, c.err = intact, err
		delete(v.inflight, key)
		if err == nil && intact {
			v.intactLocked(key, began)
		}
		v.mu.Unlock()
		close(c.done)
	}()
	err = errors.New("the read of the copy did not finish") // a panic: net/http recovers it
	intact, err = read()
	return intact, false, err
}

// checkCopyForRange makes sure the stored copy of key is intact before a
// range of it is served (verifiedCopies.check; the read is bounded by
// rangeCheckTimeout, not by the request, whose handler waits for it). A copy found damaged is counted
// and logged, then judged again and dropped under the blob's lock
// (dropDamagedCopyLocked; only a damaged copy waits for an upload of the
// blob): the error then wraps blobstore.ErrNotFound, and the caller reads
// the blob through from a peer, whose copy a Put verifies as it keeps it.
// nil: the copy is intact (on the first read, or the second). Other errors
// are the store's, or ctx's: nothing may be served. waited is false only
// when the verdict was a remembered one, given at once: a request that
// waited must be authorized again before it is answered.
func (s *Server) checkCopyForRange(ctx context.Context, key blobstore.Key) (waited bool, err error) {
	intact, remembered, err := s.verified.check(ctx, key, s.opts.Now, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rangeCheckTimeout)
		defer cancel()
		bp := s.bufs.Get().(*[]byte)
		defer s.bufs.Put(bp)
		intact, n, err := s.storedCopyIntact(ctx, key, nil, *bp)
		if err == nil && !intact {
			s.foundDamaged(key)
			s.log.Error("stored blob is damaged (its bytes do not hash to its SHA-256): no range of it served",
				"sha256", key.Sum.String(), "key", key.String(), "read", n)
		}
		return intact, err
	})
	if err != nil || intact {
		return !remembered, err
	}
	unlock, err := s.blobs.lockCtx(ctx, key)
	if err != nil {
		s.log.Error("damaged blob left: the request ended while its drop waited for the blob's lock (the next GET or the scrub drops it)",
			"sha256", key.Sum.String(), "key", key.String(), "err", err)
		return true, err
	}
	defer unlock()
	if s.verified.fresh(key, s.opts.Now()) {
		return true, nil // another range that shared the verdict dropped it, and kept a peer's copy
	}
	dropped, err := s.dropDamagedCopyLocked(context.WithoutCancel(ctx), key)
	s.log.Error("damaged blob judged again before a range", "sha256", key.Sum.String(), "key", key.String(),
		"dropped", dropped, "err", err)
	switch {
	case err != nil:
		return true, err
	case dropped:
		return true, fmt.Errorf("%w: the stored copy was damaged, and is dropped", blobstore.ErrNotFound)
	case s.verified.fresh(key, s.opts.Now()):
		return true, nil // intact when read again (a fault of the first read)
	}
	return true, fmt.Errorf("%w: the stored copy is gone", blobstore.ErrNotFound)
}
