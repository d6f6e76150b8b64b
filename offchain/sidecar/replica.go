package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Replication between the consortium's sidecars.
//
// A blob is uploaded to one sidecar, and another only relays it (peers.go)
// when a member reads it there, keeping nothing: a lost disk at the first
// loses ciphertext the chain still names. A sidecar given a
// storage service identity (Options.Storage: a member its organization's
// registrar registered with ROLE_STORAGE_SERVICE, whose signing key the
// sidecar holds) therefore keeps a copy of every blob a committed record
// or share references (its reference index, refindex.go) and it does not
// hold, copied from its peers; with params.storage_copies set, of every
// such blob app.CopyHolders places at its organization:
//
//   - as blocks commit: each page of keys the index reads is queued
//     (replicator.want), and the index is read up to the chain's head every
//     replicaPoll;
//   - when it drops a copy found damaged (a GET, the scrub): the repair the
//     scrub could not make before, as it had no member's request to
//     forward (replicator.repair; wherever the blob is placed, since this
//     sidecar held it);
//   - and in a pass every ReplicaInterval (the first soon after start),
//     which walks the index and the store side by side and copies what the
//     store lacks: what was committed before the sidecar had the identity,
//     what a full queue dropped, and what no peer could serve the last
//     time (a blob every peer says it lacks, a record whose blob was never
//     uploaded, is asked for after 1, 3, 7, ... passes, at most 64).
//
// Nothing is asked of the peers until the chain has the key as an active
// storage service they serve (checkStorage): each refused request would
// count against this sidecar's host in the peers' failed-authentication
// limits, which its members' read-throughs share. A peer that refuses or
// is busy is left alone for a while (replicateFrom).
//
// A peer serves GET ReplicaPath(key) to an active storage service only, of
// an organization the consortium names in params.storage_organizations
// (the chain lets only those have one, and a params proposal that drops an
// organization stops its copies at once), and only a blob its own
// reference index has (a committed reference: a pending upload is its
// uploader's until its record commits), whole and verified as it is read,
// as it serves a member. The copy is checked against the
// blob's SHA-256 while it is written (Store.Put), so a lying peer can only
// fail the transfer. Ciphertext goes only from sidecar to sidecar of the
// consortium; a storage service has no key to any of it.
//
// The replica goes sealed to the storage service that asked, as every
// answer goes to its member (seal.go), bound to its route (ReplicaPath):
// an organization the consortium did not name in
// params.storage_organizations collects nothing by relaying a storage
// service's request.

// ReplicaPathPrefix is the route a storage service copies a committed
// blob from: GET ReplicaPathPrefix + "<owner hex>/<sum hex>" (ReplicaPath).
const ReplicaPathPrefix = "/v1/replicas/"

// ReplicaPath is the route of the blob filed under key.
func ReplicaPath(key blobstore.Key) string { return ReplicaPathPrefix + key.String() }

// StorageIdentity is the storage service a sidecar copies blobs as: the
// member's signing key, which signs its requests, and its X25519 key, to
// which the peers seal the replicas (a *keyring.Key is one).
type StorageIdentity = Recipient

// replicaContext is what a replica's seal is bound to: the route it is
// copied from.
func replicaContext(key blobstore.Key) []byte { return []byte(ReplicaPath(key)) }

// Defaults of the replication.
const (
	DefaultReplicaInterval       = time.Hour
	DefaultReplicaBytesPerSecond = 32 << 20
)

// Tunables of the replication. (Variables for tests.)
var (
	// replicaPoll: how often the replicator reads the chain's new blocks
	// into the reference index, which queues their blobs.
	replicaPoll = 5 * time.Second
	// replicaFirstPass: the first pass after start (or one interval, if
	// shorter).
	replicaFirstPass = 30 * time.Second
	// replicaPage: the keys of the index a pass reads at a time.
	replicaPage = 1000
)

const (
	// replicaQueue bounds the keys waiting to be copied; beyond, they are
	// left to the next pass.
	replicaQueue = 4096
)

// errNotAStorageService: Options.Storage's key is not an active storage
// service on the chain.
var errNotAStorageService = errors.New("not an active storage service")

// replicator queues the blobs the sidecar should copy from its peers.
type replicator struct {
	queue chan replicaJob
	// dropped counts the keys left to the next pass because the queue
	// was full, since the last pass's log.
	dropped atomic.Int64
	// limit paces the copies (ReplicaBytesPerSecond), of the queue's
	// worker and of a pass together.
	limit *rateLimit
	// ready is set once the chain has the sidecar's key as a storage
	// service its peers will serve (CheckStorageService); until then, and
	// after a pass finds it no longer is, nothing is asked of the peers:
	// each refused request would count against this sidecar's host in the
	// peers' failed-authentication limits, which its members' read-throughs
	// share.
	ready atomic.Bool
	// complained is set once a check's refusal is logged, until one passes.
	complained atomic.Bool

	mu sync.Mutex
	// held are the peers not asked until the time given: one that refused
	// this sidecar's signature (401, 403) or said it is busy (429, 503).
	held map[string]time.Time
	// misses are the blobs no peer served, with how many passes in a row
	// and the pass that asks again (an exponential backoff: a record whose
	// blob was never uploaded is asked for less and less often).
	misses map[blobstore.Key]replicaMiss
	passes int64 // passes begun
	// org is the organization of the storage service, as the chain last
	// had it (CheckStorageService): the one whose copies it keeps.
	org string
	// params are the chain's params read at paramsAt, for placing the
	// queue's copies (at most replicaPoll old).
	params   *emrv1.Params
	paramsAt time.Time
	// repairs are the blobs this sidecar held and dropped as damaged and
	// has not copied back yet: a pass copies them back wherever the
	// placement puts them (a repair the queue had no room for, or whose
	// copy failed). Each is stamped with the pass it was last needed in
	// (or begun before); a pass that walks the whole index forgets those
	// stamped before it that it did not need (restored another way, by an
	// upload, or never referenced: a pending upload the scrub dropped). At
	// most replicaMaxMisses.
	repairs map[blobstore.Key]int64
}

// replicaJob is a blob to copy: one a new block referenced (kept only
// where the placement puts it), or the repair of a copy this sidecar
// held and dropped as damaged (kept whatever the placement says: the
// sidecar held it, perhaps as the uploader's).
type replicaJob struct {
	key    blobstore.Key
	repair bool
}

// replicaMiss is a blob no peer served: fails passes in a row, asked again
// from pass next.
type replicaMiss struct {
	fails int
	next  int64
}

// Bounds of the replicator's memory of peers and blobs.
const (
	// replicaMaxMisses bounds the blobs remembered as missing; beyond,
	// new misses are asked for at every pass.
	replicaMaxMisses = 100_000
	// replicaHold is how long a peer that refused this sidecar's signature
	// is left alone; a missing blob's backoff is at most
	// 1<<replicaMaxBackoffShift (64) passes.
	replicaHold            = 5 * time.Minute
	replicaMaxBackoffShift = 6
)

func newReplicator(bytesPerSecond int64) *replicator {
	return &replicator{queue: make(chan replicaJob, replicaQueue), limit: newRateLimit(bytesPerSecond),
		held: map[string]time.Time{}, misses: map[blobstore.Key]replicaMiss{}, repairs: map[blobstore.Key]int64{}}
}

// peerHeld reports whether peer is left alone now.
func (r *replicator) peerHeld(peer string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.held[peer]
	if ok && !now.Before(until) {
		delete(r.held, peer)
		return false
	}
	return ok
}

// hold leaves peer alone for d.
func (r *replicator) hold(peer string, now time.Time, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held[peer] = now.Add(d)
}

// due reports whether a pass asks for key: not while a miss's backoff runs.
func (r *replicator) due(key blobstore.Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.misses[key]
	return !ok || r.passes >= m.next
}

// missed notes that no peer served key.
func (r *replicator) missed(key blobstore.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.misses[key]
	if !ok && len(r.misses) >= replicaMaxMisses {
		return
	}
	m.fails++
	m.next = r.passes + int64(1)<<min(m.fails, replicaMaxBackoffShift)
	r.misses[key] = m
}

// want queues keys a new block referenced, to be copied if this sidecar
// does not hold them and the placement puts them here. It never blocks:
// a key that does not fit is left to the next pass.
func (r *replicator) want(keys ...blobstore.Key) {
	for _, k := range keys {
		r.enqueue(replicaJob{key: k})
	}
}

// repair queues the copy back of key, which this sidecar held and dropped
// as damaged, and remembers it for the passes until it is copied.
func (r *replicator) repair(key blobstore.Key) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if _, ok := r.repairs[key]; ok || len(r.repairs) < replicaMaxMisses {
		r.repairs[key] = r.passes
	}
	r.mu.Unlock()
	r.enqueue(replicaJob{key: key, repair: true})
}

// repairing reports whether key is a repair not done yet, and stamps it
// as needed by the pass under way.
func (r *replicator) repairing(key blobstore.Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.repairs[key]; !ok {
		return false
	}
	r.repairs[key] = r.passes
	return true
}

// forgetRepairs drops the repairs stamped before pass, which walked the
// whole index without needing them.
func (r *replicator) forgetRepairs(pass int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, stamp := range r.repairs {
		if stamp < pass {
			delete(r.repairs, k)
		}
	}
}

// copied forgets key's misses and repair: the store holds the blob again.
func (r *replicator) copied(key blobstore.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.misses, key)
	delete(r.repairs, key)
}

func (r *replicator) enqueue(job replicaJob) {
	if r == nil {
		return
	}
	select {
	case r.queue <- job:
	default:
		r.dropped.Add(1)
	}
}

// setPlacement records the storage service's organization and the
// params just read, which place its copies.
func (r *replicator) setPlacement(org string, params *emrv1.Params) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.org, r.params, r.paramsAt = org, params, time.Now()
}

// placement is the params and organization the placement of copies is
// judged by: the params read at most replicaPoll ago (read now if older).
func (s *Server) placement(ctx context.Context) (*emrv1.Params, string, error) {
	r := s.replicas
	r.mu.Lock()
	params, org, fresh := r.params, r.org, time.Since(r.paramsAt) < replicaPoll
	r.mu.Unlock()
	if params != nil && fresh {
		return params, org, nil
	}
	params, err := s.chain.Params(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("reading the chain's params (where copies are kept, the blob size limit): %w", err)
	}
	r.setPlacement(org, params)
	return params, org, nil
}

// ReplicaReport is what one replication pass did.
type ReplicaReport struct {
	// Referenced is the committed blobs the pass went through.
	Referenced int
	// Missing is those the store did not hold.
	Missing int
	// Copied is those copied from a peer, Bytes their size.
	Copied int
	Bytes  int64
	// Failed is those no peer served (each is tried again by the next
	// pass); the first failure's reason is kept in FirstFailure.
	Failed       int
	FirstFailure string
	// BackingOff is the missing blobs not asked for this pass: no peer
	// served them the last times (a record whose blob was never uploaded).
	BackingOff int
	// PlacedElsewhere is the blobs the store does not hold that the
	// placement (params.storage_copies) gives to other organizations.
	PlacedElsewhere int
}

// CheckStorageService checks that the chain has Options.Storage's key as an
// active storage service of an organization params.storage_organizations
// names (nil when the sidecar has no such identity): its peers refuse the
// copies of any other.
func (s *Server) CheckStorageService(ctx context.Context) error {
	signer := s.opts.Storage
	if signer == nil {
		return nil
	}
	m, err := s.chain.Member(ctx, signer.Address())
	if err != nil {
		return fmt.Errorf("sidecar: storage service %X: %w", signer.Address(), err)
	}
	switch {
	case m.Role != emrv1.Role_ROLE_STORAGE_SERVICE:
		return fmt.Errorf("sidecar: member %X, whose key this sidecar holds as its storage service's, is registered as %s: %w",
			m.Address, app.RoleName(m.Role), errNotAStorageService)
	case !bytes.Equal(m.SignPubKey, signer.PubKey()):
		return fmt.Errorf("sidecar: the chain has signing key %x for storage service %X, not the key this sidecar holds: %w", m.SignPubKey, m.Address, errNotAStorageService)
	case !bytes.Equal(m.EncPubKey, crypto.MarshalEncryptionPublicKey(signer.EncPrivKey().PublicKey())):
		return fmt.Errorf("sidecar: the chain has encryption key %x for storage service %X, not the one this sidecar holds (the peers seal replicas to the chain's): %w",
			m.EncPubKey, m.Address, errNotAStorageService)
	case !app.IsActive(m):
		return fmt.Errorf("sidecar: storage service %X is %s: %w", m.Address, app.StatusName(m.Status), errNotAStorageService)
	}
	params, err := s.chain.Params(ctx)
	if err != nil {
		return fmt.Errorf("sidecar: storage service %X: %w", m.Address, err)
	}
	if !app.StorageOrganization(params, m.OrganizationId) {
		return fmt.Errorf("sidecar: storage service %X is of organization %q, which params.storage_organizations does not name (it names: %s; the consortium changes it by proposal): %w",
			m.Address, m.OrganizationId, app.StorageOrganizationsText(params), errNotAStorageService)
	}
	s.replicas.setPlacement(m.OrganizationId, params) // Storage comes with peers, hence replicas (New)
	return nil
}

// handleReplica serves GET ReplicaPath(key) to a storage service: the
// whole blob, if a committed record or share references it and this
// sidecar holds it. It never reads through from a peer.
func (s *Server) handleReplica(w http.ResponseWriter, r *http.Request) {
	var key blobstore.Key
	caller, head, ok := s.getPrologue(w, r, func() (err error) {
		if key, err = blobstore.ParseKey(r.PathValue("owner") + "/" + r.PathValue("sha256")); err != nil {
			return fmt.Errorf("path: %w", err)
		}
		if r.Header.Get("Range") != "" {
			return errors.New("a replica is copied whole: no Range")
		}
		return nil
	})
	if !ok {
		return
	}
	if caller.Role != emrv1.Role_ROLE_STORAGE_SERVICE || !app.IsActive(caller) {
		writeError(w, forbidden("only an active storage service copies blobs from sidecar to sidecar; member %X's role is %s (%s)",
			caller.Address, app.RoleName(caller.Role), app.StatusName(caller.Status)))
		return
	}
	ctx := r.Context()
	params, err := s.chain.Params(ctx)
	if err != nil {
		writeError(w, chainError(err))
		return
	}
	if !app.StorageOrganization(params, caller.OrganizationId) {
		writeError(w, forbidden("the consortium does not name organization %q among those that keep copies of every blob (params.storage_organizations)", caller.OrganizationId))
		return
	}
	committed, err := s.committedReference(ctx, key, head)
	if err != nil {
		s.log.Error("replica: the reference index cannot say whether a blob is committed", "key", key.String(), "err", err)
		writeError(w, retryLater(http.StatusServiceUnavailable, "index_unavailable", 10*time.Second, "this sidecar cannot tell yet whether a committed record references blob %s", key))
		return
	}
	if !committed {
		writeError(w, errf(http.StatusNotFound, "not_committed", "no committed record or share this sidecar has read references blob %s", key))
		return
	}
	info, err := s.store.Stat(ctx, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		writeError(w, errf(http.StatusNotFound, "not_found", "blob %s is not stored on this sidecar", key))
		return
	}
	if err != nil {
		s.log.Error("blob stat failed", "key", key.String(), "err", err)
		writeError(w, errf(http.StatusInternalServerError, "store_error", "reading the blob failed"))
		return
	}
	s.serveStored(w, r, key, wholeBlob(info.Size), caller, head.Height, func(string) []byte { return replicaContext(key) })
}

// committedReference reports whether a committed block referenced key,
// reading the chain's new blocks (up to head) into the index first if it
// does not know the key yet (the index is otherwise read up by the sweep
// and the replicator).
func (s *Server) committedReference(ctx context.Context, key blobstore.Key, head Head) (bool, error) {
	if ok, err := s.refs.has(key); err != nil || ok {
		return ok, err
	}
	// Only when the node has blocks the index has not read, and once a
	// second at most for all requests: a key no block referenced must not
	// cost the node a read of its blocks each time it is asked for.
	if behind, err := s.refs.behind(head); err != nil || !behind {
		return false, err
	}
	now := time.Now().UnixNano()
	if last := s.replicaCatchUp.Load(); now-last < int64(time.Second) || !s.replicaCatchUp.CompareAndSwap(last, now) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := s.refs.catchUp(ctx, s.chain, s.log); err != nil {
		return false, err
	}
	return s.refs.has(key)
}

// replicaLoop copies what the replicator queues, reads new blocks into
// the reference index every replicaPoll, and starts a pass every
// ReplicaInterval, which runs beside the queue's copies so that a long
// pass never delays a new blob's. Nothing is copied until the chain has
// the sidecar's key as a storage service (checkStorage). Blobs committed
// faster than they are copied overflow the queue; the next pass copies
// them.
func (s *Server) replicaLoop(stop <-chan struct{}) {
	defer s.wg.Done()
	ctx, cancel := untilStop(context.Background(), stop)
	defer cancel()
	interval := s.opts.ReplicaInterval
	pass := time.NewTimer(min(replicaFirstPass, max(interval, replicaPoll)))
	if interval < 0 {
		pass.Stop()
	}
	defer pass.Stop()
	poll := time.NewTicker(replicaPoll)
	defer poll.Stop()
	var passing sync.WaitGroup
	defer passing.Wait()
	// The pass timer is set again only when a pass is done, so one runs at
	// a time.
	passDone := make(chan struct{}, 1)
	for {
		queue := s.replicas.queue
		if !s.replicas.ready.Load() {
			queue = nil // left queued (or to the next pass) until the key is one the peers serve
		}
		select {
		case <-stop:
			return
		case job := <-queue:
			s.copyQueued(ctx, job)
		case <-poll.C:
			if !s.replicas.ready.Load() {
				s.checkStorage(ctx)
			}
			if _, err := s.refs.catchUp(ctx, s.chain, s.log); err != nil && ctx.Err() == nil {
				s.log.Error("replication: reading new blocks into the reference index failed", "err", err)
			}
		case <-passDone:
			pass.Reset(interval)
		case <-pass.C:
			passing.Add(1)
			go func() {
				defer passing.Done()
				s.logPass(ctx)
				passDone <- struct{}{}
			}()
		}
	}
}

// copyQueued copies a queued blob, unless it is a new one the placement
// gives to other organizations. A failure is left to the next pass,
// which asks again: only a pass's errBlobAbsent starts a blob's backoff.
func (s *Server) copyQueued(ctx context.Context, job replicaJob) {
	params, org, err := s.placement(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Info("replication: a later pass copies a committed blob", "key", job.key.String(), "err", err)
		}
		return
	}
	if !job.repair && !app.HoldsCopy(params, org, job.key.Sum[:]) {
		return
	}
	_, err = s.replicate(ctx, job.key, params.MaxBlobBytes)
	switch {
	case err == nil:
		s.replicas.copied(job.key)
	case ctx.Err() == nil:
		s.log.Info("replication: no peer served a committed blob yet; a later pass asks again", "key", job.key.String(), "err", err)
	}
}

// logPass runs a pass and logs what it did.
func (s *Server) logPass(ctx context.Context) {
	start := time.Now()
	rep, err := s.ReplicatePass(ctx)
	took := time.Since(start).Round(time.Second).String()
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("replication pass failed", "err", err, "copied", rep.Copied, "failed", rep.Failed, "took", took)
	case err == nil:
		log := s.log.Info
		if rep.Failed > 0 {
			log = s.log.Error
		}
		log("replication pass", "referenced", rep.Referenced, "placed_elsewhere", rep.PlacedElsewhere, "missing", rep.Missing, "copied", rep.Copied,
			"bytes", rep.Bytes, "failed", rep.Failed, "backing_off", rep.BackingOff, "first_failure", rep.FirstFailure, "took", took,
			"queue_overflow", s.replicas.dropped.Swap(0))
	}
}

// checkStorage asks the chain whether Options.Storage's key is one the
// peers serve (CheckStorageService), sets the replicator ready
// accordingly, and logs each change of the answer. A chain that cannot
// tell yet (a node starting, or catching up) changes nothing: the error
// is then nil if the replicator was ready.
func (s *Server) checkStorage(ctx context.Context) error {
	err := s.CheckStorageService(ctx)
	if errors.Is(err, ErrChainUnavailable) || ctx.Err() != nil {
		if s.replicas.ready.Load() {
			return nil
		}
		return err
	}
	was := s.replicas.ready.Swap(err == nil)
	switch {
	case err != nil && (was || !s.replicas.complained.Swap(true)):
		s.log.Error("replication: nothing is copied until this is fixed (the peers would refuse this sidecar's requests, or seal their copies to a key it does not hold)", "err", err)
	case err == nil && !was:
		s.replicas.complained.Store(false)
		s.log.Info("replication: copying the committed blobs placed at this organization (every one without params.storage_copies) from the peers as storage service", "service", fmt.Sprintf("%X", s.opts.Storage.Address()), "peers", len(s.opts.Peers))
	}
	return err
}

// ReplicatePass copies from the peers every blob that a committed block
// referenced and the store does not hold. It reads the chain's new blocks
// into the reference index first, then walks the index and the store's
// listing side by side (both in key order), a page at a time.
func (s *Server) ReplicatePass(ctx context.Context) (ReplicaReport, error) {
	var rep ReplicaReport
	if s.replicas == nil {
		return rep, errors.New("sidecar: replication needs a storage service identity and peers")
	}
	if err := s.checkStorage(ctx); err != nil {
		return rep, fmt.Errorf("replication: the peers would refuse this sidecar's requests: %w", err)
	}
	if _, err := s.refs.catchUp(ctx, s.chain, s.log); err != nil {
		return rep, fmt.Errorf("replication: reading the chain into the reference index: %w", err)
	}
	r := s.replicas
	r.mu.Lock()
	r.passes++
	pass := r.passes
	r.mu.Unlock()
	var after blobstore.Key
	for {
		keys, err := s.refs.keysAfter(after, replicaPage)
		if err != nil {
			return rep, fmt.Errorf("replication: reading the reference index: %w", err)
		}
		if len(keys) == 0 {
			r.forgetRepairs(pass)
			return rep, nil
		}
		last := keys[len(keys)-1]
		held := make(map[blobstore.Key]bool, len(keys))
		err = s.store.ListAfter(ctx, after, func(i blobstore.Info) bool {
			if i.Key.Compare(last) > 0 {
				return false
			}
			held[i.Key] = true
			return true
		})
		if err != nil {
			return rep, fmt.Errorf("replication: listing the store: %w", err)
		}
		params, org, err := s.placement(ctx)
		if err != nil {
			return rep, fmt.Errorf("replication: %w", err)
		}
		rep.Referenced += len(keys)
		for _, k := range keys {
			if held[k] {
				continue
			}
			if !app.HoldsCopy(params, org, k.Sum[:]) && !r.repairing(k) {
				rep.PlacedElsewhere++
				continue
			}
			rep.Missing++
			if !r.due(k) {
				rep.BackingOff++
				continue
			}
			n, err := s.replicate(ctx, k, params.MaxBlobBytes)
			if cerr := ctx.Err(); cerr != nil {
				return rep, cerr
			}
			switch {
			case err == nil:
				r.copied(k)
			case errors.Is(err, errBlobAbsent):
				r.missed(k)
			}
			switch {
			case err != nil:
				rep.Failed++
				if rep.FirstFailure == "" {
					rep.FirstFailure = fmt.Sprintf("%s: %v", k, err)
				}
			case n > 0:
				rep.Copied++
				rep.Bytes += n
			}
		}
		after = last
	}
}

// replicate copies key's blob from the first peer that serves it, unless
// the store holds a copy (n is then 0: the scrub, or a GET, checks that
// copy). n is the bytes copied. The blob may have at most maxSize bytes
// (the chain's params.max_blob_bytes), or as many as its records give it
// (the reference index): one committed before the consortium lowered the
// limit is copied all the same.
func (s *Server) replicate(ctx context.Context, key blobstore.Key, maxSize uint64) (n int64, err error) {
	// Locked like an upload, so that a drop of a damaged
	// copy never deletes the one kept here.
	unlock, err := s.blobs.lockCtx(ctx, key)
	if err != nil {
		return 0, err
	}
	defer unlock()
	if _, err := s.store.Stat(ctx, key); err == nil {
		return 0, nil
	} else if !errors.Is(err, blobstore.ErrNotFound) {
		return 0, &localStoreError{err}
	}
	committed, err := s.refs.size(key)
	if err != nil {
		return 0, fmt.Errorf("the blob's size in the reference index: %w", err)
	}
	maxSize = max(maxSize, committed)
	var reasons []string
	absent := true // every peer was asked and said it does not hold the blob
	for _, peer := range s.opts.Peers {
		if s.replicas.peerHeld(peer, time.Now()) {
			reasons = append(reasons, peer+": left alone for now (it refused this sidecar's signature, or was busy)")
			absent = false
			continue
		}
		n, err := s.replicateFrom(ctx, peer, key, maxSize)
		if err == nil {
			s.metrics.replicated.Inc()
			s.log.Info("blob copied from a peer sidecar", "key", key.String(), "peer", peer, "bytes", n)
			return n, nil
		}
		var local *localStoreError
		if errors.As(err, &local) || ctx.Err() != nil {
			return 0, err
		}
		var se *Error
		absent = absent && errors.As(err, &se) && se.StatusCode == http.StatusNotFound && se.Code == "not_found"
		reasons = append(reasons, fmt.Sprintf("%s: %v", peer, err))
	}
	if absent {
		return 0, fmt.Errorf("%w (%s)", errBlobAbsent, strings.Join(reasons, "; "))
	}
	return 0, fmt.Errorf("%w (%s)", errNoPeerHasIt, strings.Join(reasons, "; "))
}

// errBlobAbsent: every peer was asked for a blob and answered that a
// committed record references it but it does not hold it (404
// not_found): a record whose blob was never uploaded, or lost everywhere.
// Only this starts a blob's backoff (replicator.missed); a peer busy,
// refusing, unreachable, cut off or behind (not_committed: its index has
// not read the block yet) says nothing about the blob.
var errBlobAbsent = fmt.Errorf("%w: every peer says it does not hold it", errNoPeerHasIt)

// replicateFrom copies key's blob from peer. A peer that refuses this
// sidecar's signature (401, 403: the key is not yet, or no longer, one it
// serves; or the clocks disagree) is left alone for replicaHold, and one
// that says it is busy (429, 503) for its Retry-After: each refused
// request counts against this sidecar's host in the peer's
// failed-authentication limit, which its members' read-throughs share.
// Nothing waits here, under the blob's lock: the blob is asked for again
// later.
func (s *Server) replicateFrom(ctx context.Context, peer string, key blobstore.Key, maxSize uint64) (int64, error) {
	n, err := s.replicateOnce(ctx, peer, key, maxSize)
	var se *Error
	if errors.As(err, &se) {
		switch se.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			s.replicas.hold(peer, time.Now(), replicaHold)
			// Ask the chain again at the next poll whether the key is still
			// one the peers serve (an organization dropped from the list).
			s.replicas.ready.Store(false)
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			s.replicas.hold(peer, time.Now(), min(max(se.RetryAfter, time.Second), replicaHold))
		}
	}
	return n, err
}

// replicateOnce asks peer for key's blob and keeps it. The answer's
// headers must come within the peer client's timeout; then the body must
// keep coming (peerIdle between reads) and be done within peerTimeout
// plus twice its time at the replication rate (at least 1 MiB/s) from
// then; a refusal's, within peerTimeout.
func (s *Server) replicateOnce(ctx context.Context, peer string, key blobstore.Key, maxSize uint64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer, "/")+ReplicaPath(key), nil)
	if err != nil {
		return 0, err
	}
	if err := SignRequest(req, s.opts.Storage, ""); err != nil {
		return 0, err
	}
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// The idle timer runs while a read of the peer's body waits (a
	// refusal's too), not while this sidecar's own rate limit does
	// (limitedReader, outside it); the deadline, from the headers on.
	defer cutWhenIdle(resp, cancel)()
	deadline := time.AfterFunc(peerTimeout, cancel)
	defer deadline.Stop()
	if resp.StatusCode != http.StatusOK {
		return 0, readError(resp)
	}
	if resp.ContentLength < 0 {
		return 0, errors.New("no Content-Length")
	}
	rate := s.replicas.limit.perSecond
	if rate <= 0 || rate > 1<<20 {
		rate = 1 << 20
	}
	deadline.Reset(peerTimeout + 2*time.Duration(resp.ContentLength/rate+1)*time.Second)
	size, blob, err := openSealed(resp, resp.Body, replicaContext(key), s.opts.Storage.EncPrivKey(), maxSize)
	if err != nil {
		return 0, err
	}
	if err := s.keepPeerBlob(ctx, key, &limitedReader{ctx: ctx, r: blob, limit: s.replicas.limit}, size); err != nil {
		return 0, err
	}
	return size, nil
}

// localStoreError is a failure of this sidecar's own store while it kept
// a blob a peer served (a replica): the details (paths, the MinIO
// endpoint) go to the log only.
type localStoreError struct{ err error }

func (e *localStoreError) Error() string {
	return "storing the blob a peer served failed: " + e.err.Error()
}
func (e *localStoreError) Unwrap() error { return e.err }

// keepPeerBlob stores body, a peer's answer of size bytes, as key's blob.
// Put hashes while it writes and keeps nothing that does not match, so a
// copy kept is remembered intact (no range waits for a read of it). A
// failed read of the body tells a failed Put the peer's (the transfer
// broke, or the bytes are not the blob; or ctx ended: the caller's doing)
// from the local store's, which is a *localStoreError: another peer would
// meet the same store.
func (s *Server) keepPeerBlob(ctx context.Context, key blobstore.Key, body io.Reader, size int64) error {
	read := &errRecorder{r: body}
	err := s.store.Put(ctx, key, read, size)
	if err == nil {
		s.verified.intact(key, s.opts.Now()) // Put hashed it as it wrote
	}
	if err == nil || read.err != nil || ctx.Err() != nil ||
		errors.Is(err, blobstore.ErrHashMismatch) || errors.Is(err, blobstore.ErrSizeMismatch) {
		return err
	}
	return &localStoreError{err}
}

// peerIdle bounds the wait for each read of a peer's body, copied
// (replicateOnce) or relayed to a member (askPeer), a refusal's too: a
// peer that stalls is cut off. A copy, or a refusal, then asks the next
// peer; a relay that has begun ends cut short. (A variable for tests.)
var peerIdle = 30 * time.Second

// cutWhenIdle wraps the body of a peer's answer resp (an answer or a
// refusal: readError reads it too) so that a read waiting longer than
// peerIdle calls cancel (which ends the transfer's context); stop ends the
// timer.
func cutWhenIdle(resp *http.Response, cancel context.CancelFunc) (stop func()) {
	idle := &idleReader{r: resp.Body, idle: peerIdle, timer: time.AfterFunc(peerIdle, cancel)}
	idle.timer.Stop()
	resp.Body = readCloser{idle, resp.Body}
	return func() { idle.timer.Stop() }
}

// readCloser reads through a wrapper and closes the wrapped body.
type readCloser struct {
	io.Reader
	io.Closer
}

// idleReader arms timer for idle during every read: a peer that sends
// nothing for that long has its transfer cut (the timer cancels it). The
// timer is stopped between reads.
type idleReader struct {
	r     io.Reader
	idle  time.Duration
	timer *time.Timer
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.timer.Reset(r.idle)
	n, err := r.r.Read(p)
	r.timer.Stop()
	return n, err
}
