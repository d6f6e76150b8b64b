package sidecar

import (
	"context"
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
// intact within rangeCheckTTL (checkCopyForRange); one found damaged is
// dropped as a whole GET drops it, and the range is read through from a
// peer. The cost is one read of the copy from the local store per blob
// and rangeCheckTTL, while ranges of it are asked for; concurrent ranges of
// one blob wait for one read (under the blob's lock).

// Bounds of verifiedCopies. (Variables for tests.)
var (
	// rangeCheckTTL is how long a copy found intact serves ranges without
	// being read again.
	rangeCheckTTL = 10 * time.Minute
	// rangeCheckMax bounds the copies remembered as intact.
	rangeCheckMax = 4096
)

// verifiedCopies remembers which stored copies were read whole and found
// intact, and when, for at most rangeCheckMax copies. Forgetting one only
// costs a read.
type verifiedCopies struct {
	mu sync.Mutex
	at map[blobstore.Key]time.Time
}

// fresh reports whether key's copy was found intact within rangeCheckTTL
// before now.
func (v *verifiedCopies) fresh(key blobstore.Key, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	at, ok := v.at[key]
	return ok && now.Sub(at) < rangeCheckTTL && !at.After(now)
}

// intact records that key's copy was read whole and found intact at now.
// At the bound, the copies checked longest ago are forgotten first.
func (v *verifiedCopies) intact(key blobstore.Key, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.at == nil {
		v.at = map[blobstore.Key]time.Time{}
	}
	if _, ok := v.at[key]; !ok && len(v.at) >= rangeCheckMax {
		for k, at := range v.at {
			if now.Sub(at) >= rangeCheckTTL || at.After(now) {
				delete(v.at, k)
			}
		}
		for len(v.at) >= rangeCheckMax {
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

// forget drops what is remembered of key's copy (it was deleted).
func (v *verifiedCopies) forget(key blobstore.Key) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.at, key)
}

// checkCopyForRange makes sure the stored copy of key is intact before a
// range of it is served: read whole (unless it was within rangeCheckTTL)
// under the blob's lock, so that concurrent ranges wait for one read. A
// copy found damaged is dropped (dropDamagedCopy, which reads it once more
// first) and the error wraps blobstore.ErrNotFound: the caller reads the
// blob through from a peer, as for a copy it never had. Other errors are
// the store's.
func (s *Server) checkCopyForRange(ctx context.Context, key blobstore.Key) error {
	if s.verified.fresh(key, s.opts.Now()) {
		return nil
	}
	unlock, err := s.blobs.lockCtx(ctx, key)
	if err != nil {
		return err
	}
	if s.verified.fresh(key, s.opts.Now()) { // another range read it meanwhile
		unlock()
		return nil
	}
	bp := s.bufs.Get().(*[]byte)
	intact, n, err := s.storedCopyIntact(ctx, key, nil, *bp)
	s.bufs.Put(bp)
	if err == nil && intact {
		s.verified.intact(key, s.opts.Now())
	}
	unlock()
	if err != nil || intact {
		return err
	}
	s.metrics.damaged.Inc()
	dropped, derr := s.dropDamagedCopy(context.WithoutCancel(ctx), key)
	s.log.Error("stored blob is damaged (its bytes do not hash to its SHA-256): no range of it served; reading it from a peer",
		"sha256", key.Sum.String(), "key", key.String(), "read", n, "dropped", dropped, "err", derr)
	return fmt.Errorf("%w: the stored copy is damaged (%w)", blobstore.ErrNotFound, errDamagedCopy)
}
