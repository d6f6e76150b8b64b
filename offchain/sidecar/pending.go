package sidecar

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// Quotas on pending uploads.
//
// A blob is pending from its upload until a committed record or share
// references it (the reference index reads it from a block) or the sweep
// deletes it. Anyone may enroll a patient and, as its owner, upload blobs
// for it that no record will ever reference; until the sweep removes them
// (an hour's grace, then a bounded number per pass) they hold disk. So the
// bytes of pending blobs are bounded per signer of the upload and in
// total: an upload that would pass a bound is refused before its body is
// read (429 for the signer's bound, 507 for the total).
//
// Patients enroll themselves, one transaction each, so their uploads
// together have a bound of their own below the total (patients): a few
// self-enrolled accounts can fill it, and then they deny uploads to other
// patients until the sweep, but not to the members a registrar registered,
// who keep the rest of the total.
//
// Per signer, not per owner (patient and category): an owner costs
// nothing to multiply — a patient's owner may upload under any well-formed
// category name (checkCategory: the name, not the chain's list), and a
// writer under every patient that granted it — while a signer is a member,
// which takes a committed transaction. The total bounds what many members
// can do together.
//
// The accounting lives in memory and is rebuilt when the sidecar starts
// (before its first upload is accepted) from what is true on disk: every
// blob in the store that the reference index does not hold is pending. The
// store does not say who uploaded a blob, so blobs found at the rebuild
// count toward no signer's bound, but toward the patients' as well as the
// total (counted toward the total only, they would give patients a fresh
// share at each restart on top of what they hold, and so the whole total;
// counted toward it, they may refuse patients a while after a restart);
// they are gone, or referenced, within the grace period and a few sweep
// passes. An index that is behind counts
// blobs whose records it has not read yet; the accounting learns each
// reference when the index writes it (refIndex.onAdd), and an upload that
// would pass a bound first has the index read the blocks up to the head.

// Errors of pendingQuota.reserve; errors.Is matches a *pendingQuotaError.
var (
	errSignerPendingFull   = errors.New("the signer's pending uploads would pass its limit")
	errPatientsPendingFull = errors.New("the patients' pending uploads would pass their limit")
	errPendingFull         = errors.New("the pending uploads would pass the sidecar's limit")
)

// pendingQuotaError refuses an upload: the bound (limit), the bytes pending
// under it (used) and the upload's size.
type pendingQuotaError struct {
	err               error
	limit, used, size int64
}

func (e *pendingQuotaError) Error() string {
	return fmt.Sprintf("%v: %d bytes pending, %d more, limit %d", e.err, e.used, e.size, e.limit)
}

func (e *pendingQuotaError) Unwrap() error { return e.err }

// pendingQuota accounts pending blobs. Its methods may be called on nil
// (no bound configured): they do nothing.
type pendingQuota struct {
	perSigner, patients, total int64 // bounds in bytes; 0: none
	store                      blobstore.Store
	refs                       *refIndex
	gauge                      prometheus.Gauge

	mu    sync.Mutex
	ready bool // the rebuild is done
	blobs map[blobstore.Key]*pendingBlob
	// bySigner: pending bytes per uploader; blobs found at the rebuild are
	// in sum and patientSum only.
	bySigner   map[signerAddr]int64
	sum        int64
	patientSum int64 // of blobs patients uploaded, and those found at the rebuild
}

// pendingBlob is one pending blob: its size and who uploaded it.
type pendingBlob struct {
	key        blobstore.Key
	size       int64
	signer     signerAddr
	patient    bool // the signer is a patient, or unknown (found at the rebuild)
	attributed bool // false for a blob found at the rebuild
}

func newPendingQuota(perSigner, patients, total int64, store blobstore.Store, refs *refIndex, gauge prometheus.Gauge) *pendingQuota {
	return &pendingQuota{
		perSigner: perSigner, patients: patients, total: total, store: store, refs: refs, gauge: gauge,
		blobs: make(map[blobstore.Key]*pendingBlob), bySigner: make(map[signerAddr]int64),
	}
}

// ensure rebuilds the accounting unless it is done.
func (q *pendingQuota) ensure(ctx context.Context) error {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rebuildLocked(ctx)
}

// rebuildLocked lists the store and counts every blob the reference index
// does not hold. It holds q.mu throughout: the index's and the sweep's
// news wait (it reads what they change, and applies them after), and so
// do uploads.
func (q *pendingQuota) rebuildLocked(ctx context.Context) error {
	if q.ready {
		return nil
	}
	blobs := make(map[blobstore.Key]*pendingBlob)
	var sum int64
	var idxErr error
	err := q.store.List(ctx, func(i blobstore.Info) bool {
		referenced, err := q.refs.has(i.Key)
		if err != nil {
			idxErr = err
			return false
		}
		if !referenced {
			// Who uploaded it is unknown: it counts toward the patients'
			// share too, or a restart would hand patients a fresh share on
			// top of what they hold (see pendingQuota).
			blobs[i.Key] = &pendingBlob{key: i.Key, size: i.Size, patient: true}
			sum += i.Size
		}
		return true
	})
	if err = errors.Join(err, idxErr); err != nil {
		return fmt.Errorf("counting the pending uploads: %w", err)
	}
	q.blobs, q.sum, q.patientSum, q.ready = blobs, sum, sum, true
	q.bySigner = make(map[signerAddr]int64)
	q.setGauge()
	return nil
}

// reserve counts an upload of size bytes by signer (a patient or not) for
// key before its body is stored, or refuses it (a *pendingQuotaError) if it
// would pass a bound. It returns nil, counting nothing, when key is already pending (a
// second upload of the same bytes) or referenced. Check and count are one
// step under q.mu, so concurrent uploads cannot both pass a bound. The
// caller holds key's lock (keyLocks), against the sweep's delete.
func (q *pendingQuota) reserve(ctx context.Context, signer signerAddr, patient bool, key blobstore.Key, size int64) (*pendingBlob, error) {
	if q == nil {
		return nil, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.rebuildLocked(ctx); err != nil {
		return nil, err
	}
	if _, ok := q.blobs[key]; ok {
		return nil, nil
	}
	// Read under q.mu: the index calls referenced after it wrote, so a
	// reference is either seen here or removes the reservation later.
	referenced, err := q.refs.has(key)
	if err != nil {
		return nil, fmt.Errorf("the reference index: %w", err)
	}
	if referenced {
		return nil, nil
	}
	if used := q.bySigner[signer]; q.perSigner > 0 && used+size > q.perSigner {
		return nil, &pendingQuotaError{err: errSignerPendingFull, limit: q.perSigner, used: used, size: size}
	}
	if patient && q.patients > 0 && q.patientSum+size > q.patients {
		return nil, &pendingQuotaError{err: errPatientsPendingFull, limit: q.patients, used: q.patientSum, size: size}
	}
	if q.total > 0 && q.sum+size > q.total {
		return nil, &pendingQuotaError{err: errPendingFull, limit: q.total, used: q.sum, size: size}
	}
	b := &pendingBlob{key: key, size: size, signer: signer, patient: patient, attributed: true}
	q.blobs[key] = b
	q.bySigner[signer] += size
	q.sum += size
	if patient {
		q.patientSum += size
	}
	q.setGauge()
	return b, nil
}

// release gives back the reservation of an upload that stored nothing.
func (q *pendingQuota) release(b *pendingBlob) {
	if q == nil || b == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.blobs[b.key] == b {
		q.removeLocked(b)
	}
}

// referenced: the reference index learned that committed blocks reference
// keys; they are no longer pending.
func (q *pendingQuota) referenced(keys []blobstore.Key) {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range keys {
		if b, ok := q.blobs[k]; ok {
			q.removeLocked(b)
		}
	}
}

// deleted: the sweep deleted key (or found it gone).
func (q *pendingQuota) deleted(key blobstore.Key) { q.referenced([]blobstore.Key{key}) }

func (q *pendingQuota) removeLocked(b *pendingBlob) {
	delete(q.blobs, b.key)
	q.sum -= b.size
	if b.patient {
		q.patientSum -= b.size
	}
	if b.attributed {
		if q.bySigner[b.signer] -= b.size; q.bySigner[b.signer] <= 0 {
			delete(q.bySigner, b.signer)
		}
	}
	q.setGauge()
}

func (q *pendingQuota) setGauge() {
	if q.gauge != nil {
		q.gauge.Set(float64(q.sum))
	}
}

// patientsUsage is the pending bytes of the blobs patients uploaded.
func (q *pendingQuota) patientsUsage() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.patientSum
}

// usage is the pending bytes of signer and in total.
func (q *pendingQuota) usage(signer signerAddr) (mine, total int64) {
	if q == nil {
		return 0, 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bySigner[signer], q.sum
}
