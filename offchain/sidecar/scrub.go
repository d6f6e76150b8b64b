package sidecar

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/offchain/blobstore"
)

// Scrub defaults: a pass a day, reading at most 32 MiB/s, the first pass
// scrubFirstDelay after start (at most one interval).
const (
	DefaultScrubInterval       = 24 * time.Hour
	DefaultScrubBytesPerSecond = 32 << 20
	scrubFirstDelay            = 10 * time.Minute
)

// A scrub pass drops at most scrubMaxDrops damaged copies, and logs at
// most scrubMaxLogged damaged or unreadable blobs one by one (its summary
// counts them all).
const (
	scrubMaxDrops  = 100
	scrubMaxLogged = 20
)

// rateBurst is the most credit a scrub's rate limit keeps for time it
// spent not reading.
const rateBurst = time.Second

// scrubBatch bounds the blobs a pass holds listed at once; it lists the
// store again after the last one for the next batch. (A variable for
// tests.)
var scrubBatch = 10_000

// ScrubReport says what one scrub pass found.
type ScrubReport struct {
	// Checked: blobs read whole and hashed, and their bytes.
	Checked int
	Bytes   int64
	// Damaged: copies whose bytes do not hash to the SHA-256 they are
	// stored under. Dropped of them were deleted (dropDamagedCopy); Busy
	// were left because an upload of the blob held its lock (the next
	// pass, or GET, finds them again).
	Damaged int
	Dropped int
	Busy    int
	// Held: damaged copies kept because the pass had dropped
	// scrubMaxDrops already (a fault that damages many at once, or makes
	// intact ones read as damaged, is the operator's to look at first).
	Held int
	// Errors: blobs that could not be read or dropped (kept).
	Errors int
}

// Scrub reads every stored blob whole, at most ScrubBytesPerSecond, and
// checks that its bytes hash to the SHA-256 it is stored under. A copy
// that does not is logged, counted (damaged_copies_total) and dropped, as
// a GET drops one: a sidecar with a storage service identity copies it
// back from a peer at once (replica.go); otherwise the next GET reads the
// blob through from a peer, or the uploader puts it again. Without a scrub, a copy nobody reads is
// found damaged only when someone does, perhaps after the last intact
// copy elsewhere is gone; the scrub tells the operator first.
//
// A pass takes hours on a large store, so it keeps its progress in the
// sidecar's database (scrubProgress, at most scrubSaveEvery old, and when
// it stops): a pass cut short by a restart goes on where it stopped, and
// the report of the pass that goes on counts only what it checked. A new
// pass starts at a random key and wraps around the store, so that passes
// cut short without their progress (a database in memory, a crash) still
// reach every key over time.
func (s *Server) Scrub(ctx context.Context) (ScrubReport, error) {
	var rep ScrubReport
	p, err := s.refs.scrubProgress()
	if err != nil {
		s.log.Error("scrub: the last pass's progress does not read; starting a new pass", "err", err)
	}
	if p == nil {
		start := scrubStart()
		p = &scrubProgress{Start: start, Done: start}
	} else {
		s.log.Info("scrub: going on with the pass a restart cut short", "after", p.Done.String(), "wrapped", p.Wrapped)
	}
	saved := time.Now()
	save := func() {
		if err := s.refs.setScrubProgress(p); err != nil {
			s.log.Error("scrub: cannot keep the pass's progress", "err", err)
		}
		saved = time.Now()
	}
	buf := make([]byte, 256<<10)
	limit := newRateLimit(s.opts.ScrubBytesPerSecond)
	// Above Start to the last key, then from the first key (after the zero
	// Key) up to Start (inclusive).
	for {
		var batch []blobstore.Info
		end := false
		err := s.store.ListAfter(ctx, p.Done, func(i blobstore.Info) bool {
			if p.Wrapped && i.Key.Compare(p.Start) > 0 {
				end = true
				return false
			}
			batch = append(batch, i)
			return len(batch) < scrubBatch
		})
		if err != nil {
			save()
			return rep, fmt.Errorf("scrub: listing the store: %w", err)
		}
		for _, info := range batch {
			if err := s.scrubOne(ctx, info, buf, limit, &rep); err != nil {
				save()
				return rep, err
			}
			p.Done = info.Key
			if time.Since(saved) >= scrubSaveEvery {
				save()
			}
		}
		if end || len(batch) < scrubBatch {
			if p.Wrapped {
				break
			}
			p.Wrapped, p.Done = true, blobstore.Key{}
		}
	}
	if err := s.refs.setScrubProgress(nil); err != nil {
		s.log.Error("scrub: cannot clear the finished pass's progress", "err", err)
	}
	return rep, nil
}

// scrubSaveEvery: how often a pass writes its progress. (A variable for
// tests.)
var scrubSaveEvery = time.Minute

// scrubProgress is how far an unfinished scrub pass got: it started after
// Start and has checked every blob up to Done, in the pass's order (above
// Start to the last key, then, Wrapped, from the first key to Start).
type scrubProgress struct {
	Start, Done blobstore.Key
	Wrapped     bool
}

// scrubProgressSize: Start, Done and the Wrapped byte.
const scrubProgressSize = 2*(len(blobstore.Owner{})+len(blobstore.Sum{})) + 1

func (p *scrubProgress) encode() []byte {
	b := make([]byte, 0, scrubProgressSize)
	b = append(append(b, p.Start.Owner[:]...), p.Start.Sum[:]...)
	b = append(append(b, p.Done.Owner[:]...), p.Done.Sum[:]...)
	if p.Wrapped {
		return append(b, 1)
	}
	return append(b, 0)
}

// decodeScrubProgress is encode's inverse.
func decodeScrubProgress(v []byte) (*scrubProgress, error) {
	if len(v) != scrubProgressSize || v[len(v)-1] > 1 {
		return nil, fmt.Errorf("the scrub's progress (%d bytes) does not decode", len(v))
	}
	var p scrubProgress
	r := v
	for _, k := range []*blobstore.Key{&p.Start, &p.Done} {
		r = r[copy(k.Owner[:], r):]
		r = r[copy(k.Sum[:], r):]
	}
	p.Wrapped = r[0] == 1
	return &p, nil
}

// scrubStart is where a new scrub pass starts: a random key. (A variable
// for tests.)
var scrubStart = func() blobstore.Key {
	var k blobstore.Key
	_, _ = rand.Read(k.Owner[:])
	_, _ = rand.Read(k.Sum[:])
	return k
}

// scrubOne checks one blob; an error stops the pass (ctx ended).
func (s *Server) scrubOne(ctx context.Context, listed blobstore.Info, buf []byte, limit *rateLimit, rep *ScrubReport) error {
	intact, n, err := s.storedCopyIntact(ctx, listed.Key, limit, buf)
	rep.Bytes += n
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil // deleted since the listing (the sweep)
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	logIt := rep.Damaged+rep.Errors < scrubMaxLogged
	if err != nil {
		rep.Errors++
		if logIt {
			s.log.Error("scrub: cannot read blob, keeping it", "key", listed.Key.String(), "err", err)
		}
		return nil
	}
	rep.Checked++
	if intact {
		return nil
	}
	rep.Damaged++
	s.foundDamaged(listed.Key)
	if rep.Dropped >= scrubMaxDrops {
		rep.Held++
		if logIt {
			s.log.Error("scrub: stored blob is damaged (its bytes do not hash to its SHA-256); kept: this pass has dropped as many as it may",
				"key", listed.Key.String(), "size", listed.Size, "max_drops", scrubMaxDrops)
		}
		return nil
	}
	dropped, derr := s.dropDamagedCopy(ctx, listed.Key)
	switch {
	case dropped:
		rep.Dropped++
	case errors.Is(derr, errBlobBusy):
		rep.Busy++
	case derr != nil:
		rep.Errors++
	}
	if logIt {
		s.log.Error("scrub: stored blob is damaged (its bytes do not hash to its SHA-256); dropped, so that the storage service (if set) or the next GET copies it from a peer, or the uploader puts it again",
			"key", listed.Key.String(), "size", listed.Size, "dropped", dropped, "err", derr)
	}
	return nil
}

// rateLimit paces reads to a number of bytes per second (none if not
// positive): after each read, it sleeps until the bytes read so far are
// due. Time spent not reading (a slow listing, a drop) earns at most
// rateBurst of credit, so a pass never catches up at the disk's full
// speed.
type rateLimit struct {
	perSecond int64
	mu        sync.Mutex // the replicator's pass and queue share one
	start     time.Time
	done      int64
}

func newRateLimit(perSecond int64) *rateLimit {
	return &rateLimit{perSecond: perSecond, start: time.Now()}
}

// wait accounts for n bytes read and sleeps until they are due.
func (l *rateLimit) wait(ctx context.Context, n int) error {
	if l.perSecond <= 0 {
		return nil
	}
	l.mu.Lock()
	l.done += int64(n)
	due := l.start.Add(time.Duration(float64(l.done) / float64(l.perSecond) * float64(time.Second)))
	d := time.Until(due)
	if d < -rateBurst {
		// Behind by more than the burst: forget the credit beyond it.
		l.start = l.start.Add(-d - rateBurst)
		d = -rateBurst
	}
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return ctxtime.Sleep(ctx, d)
}

// limitedReader reads r at limit's pace.
type limitedReader struct {
	ctx   context.Context
	r     io.Reader
	limit *rateLimit
}

func (r *limitedReader) Read(p []byte) (int, error) {
	// A file's reader does not watch the context: a pass stopped (the
	// sidecar shutting down) must not read the rest of a large blob.
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if werr := r.limit.wait(r.ctx, n); werr != nil && err == nil {
		err = werr
	}
	return n, err
}

// scrubLoop runs Scrub every ScrubInterval, the first pass
// scrubFirstDelay after start (or one interval, if shorter).
func (s *Server) scrubLoop(stop <-chan struct{}) {
	defer s.wg.Done()
	interval := s.opts.ScrubInterval
	base, cancel := untilStop(context.Background(), stop)
	defer cancel()
	t := time.NewTimer(min(interval, scrubFirstDelay))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		start := time.Now()
		rep, err := s.Scrub(base)
		took := time.Since(start).Round(time.Second).String()
		if err != nil && base.Err() == nil {
			s.log.Error("scrub pass failed", "err", err, "checked", rep.Checked, "damaged", rep.Damaged, "took", took)
		} else if err == nil {
			log := s.log.Info
			if rep.Damaged+rep.Errors > 0 {
				log = s.log.Error
			}
			log("scrub pass", "checked", rep.Checked, "bytes", rep.Bytes, "damaged", rep.Damaged,
				"dropped", rep.Dropped, "busy", rep.Busy, "held", rep.Held, "errors", rep.Errors, "took", took)
		}
		t.Reset(interval)
	}
}
