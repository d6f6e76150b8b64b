package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Replication between the consortium's sidecars.
//
// A blob is uploaded to one sidecar, and read through (peers.go) to
// another only when a member reads it there: until then a lost disk at
// the first loses ciphertext the chain still names. A sidecar given a
// storage service identity (Options.Storage: a member its organization's
// registrar registered with ROLE_STORAGE_SERVICE, whose signing key the
// sidecar holds) therefore keeps a copy of every blob a committed record
// or share references (its reference index, refindex.go) and it does not
// hold, copied from its peers:
//
//   - as blocks commit: each page of keys the index reads is queued
//     (replicator.want), and the index is read up to the chain's head every
//     replicaPoll;
//   - when it drops a copy found damaged (a GET, the scrub): the repair the
//     scrub could not make before, as it had no member's request to
//     forward;
//   - and in a pass every ReplicaInterval (the first soon after start),
//     which walks the index and the store side by side and copies what the
//     store lacks: what was committed before the sidecar had the identity,
//     what a full queue dropped, and what no peer could serve the last
//     time (a record whose blob was never uploaded is asked for again at
//     every pass).
//
// A peer serves GET ReplicaPath(key) to an active storage service only, of
// an organization the consortium names in params.storage_organizations
// (the chain lets only those have one, and a params proposal that drops an
// organization stops its copies at once), and only a blob its own
// reference index has (a committed reference: a pending
// upload is its uploader's until its record commits), whole and verified
// as it is read, as it serves a member. The copy is checked against the
// blob's SHA-256 while it is written (Store.Put), so a lying peer can only
// fail the transfer. Ciphertext goes only from sidecar to sidecar of the
// consortium; a storage service has no key to any of it.

// ReplicaPathPrefix is the route a storage service copies a committed
// blob from: GET ReplicaPathPrefix + "<owner hex>/<sum hex>" (ReplicaPath).
const ReplicaPathPrefix = "/v1/replicas/"

// ReplicaPath is the route of the blob filed under key.
func ReplicaPath(key blobstore.Key) string { return ReplicaPathPrefix + key.String() }

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
	// replicaMaxWait bounds how long a copy waits on a peer's Retry-After
	// (its share of the replay cache used up) before going on.
	replicaMaxWait = time.Minute
)

// errNotAStorageService: Options.Storage's key is not an active storage
// service on the chain.
var errNotAStorageService = errors.New("not an active storage service")

// replicator queues the blobs the sidecar should copy from its peers.
type replicator struct {
	queue chan blobstore.Key
	// dropped counts the keys left to the next pass because the queue
	// was full.
	dropped atomic.Int64
	// limit paces the copies (ReplicaBytesPerSecond); used by the
	// replicator's one goroutine only.
	limit *rateLimit
}

func newReplicator(bytesPerSecond int64) *replicator {
	return &replicator{queue: make(chan blobstore.Key, replicaQueue), limit: newRateLimit(bytesPerSecond)}
}

// want queues keys to be copied if this sidecar does not hold them. It
// never blocks: a key that does not fit is left to the next pass.
func (r *replicator) want(keys ...blobstore.Key) {
	if r == nil {
		return
	}
	for _, k := range keys {
		select {
		case r.queue <- k:
		default:
			r.dropped.Add(1)
		}
	}
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
}

// CheckStorageService checks that the chain has Options.Storage's key as an
// active storage service (nil when the sidecar has no such identity): its
// peers refuse the copies of any other.
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
	case !app.IsActive(m):
		return fmt.Errorf("sidecar: storage service %X is %s: %w", m.Address, app.StatusName(m.Status), errNotAStorageService)
	}
	params, err := s.chain.Params(ctx)
	if err != nil {
		return fmt.Errorf("sidecar: storage service %X: %w", m.Address, err)
	}
	if !app.StorageOrganization(params, m.OrganizationId) {
		return fmt.Errorf("sidecar: storage service %X is of organization %q, which params.storage_organizations does not name (%v): %w",
			m.Address, m.OrganizationId, params.StorageOrganizations, errNotAStorageService)
	}
	return nil
}

// handleReplica serves GET ReplicaPath(key) to a storage service: the
// whole blob, if a committed record or share references it and this
// sidecar holds it. It never reads through from a peer.
func (s *Server) handleReplica(w http.ResponseWriter, r *http.Request) {
	var key blobstore.Key
	caller, _, head, ok := s.getPrologue(w, r, func() (err error) {
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
	committed, err := s.committedReference(ctx, key)
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
	s.serveStored(w, r, key, info, caller.Address, head.Height)
}

// committedReference reports whether a committed block referenced key,
// reading the chain's new blocks into the index first if it does not
// know the key yet (the index is otherwise read up only by the sweep and
// the replicator).
func (s *Server) committedReference(ctx context.Context, key blobstore.Key) (bool, error) {
	if ok, err := s.refs.has(key); err != nil || ok {
		return ok, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := s.refs.catchUp(ctx, s.chain, s.log); err != nil {
		return false, err
	}
	return s.refs.has(key)
}

// replicaLoop copies what the replicator queues, reads new blocks into
// the reference index every replicaPoll, and runs a pass every
// ReplicaInterval. Blobs committed faster than they are copied overflow
// the queue; the next pass copies them.
func (s *Server) replicaLoop(stop <-chan struct{}) {
	defer s.wg.Done()
	ctx, cancel := untilStop(context.Background(), stop)
	defer cancel()
	checked := false // whether the chain has said if the storage key is an active service's
	interval := s.opts.ReplicaInterval
	pass := time.NewTimer(min(replicaFirstPass, max(interval, replicaPoll)))
	if interval < 0 {
		pass.Stop()
	}
	defer pass.Stop()
	poll := time.NewTicker(replicaPoll)
	defer poll.Stop()
	for {
		select {
		case <-stop:
			return
		case key := <-s.replicas.queue:
			if _, err := s.replicate(ctx, key); err != nil && ctx.Err() == nil {
				s.log.Info("replication: no peer served a committed blob yet; the next pass tries again", "key", key.String(), "err", err)
			}
		case <-poll.C:
			if !checked {
				checked = s.checkStorageOnce(ctx)
			}
			if _, err := s.refs.catchUp(ctx, s.chain, s.log); err != nil && ctx.Err() == nil {
				s.log.Error("replication: reading new blocks into the reference index failed", "err", err)
			}
		case <-pass.C:
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
				log("replication pass", "referenced", rep.Referenced, "missing", rep.Missing, "copied", rep.Copied,
					"bytes", rep.Bytes, "failed", rep.Failed, "first_failure", rep.FirstFailure, "took", took)
			}
			pass.Reset(interval)
		}
	}
}

// checkStorageOnce logs whether the chain has Options.Storage's key as an
// active storage service, and reports whether the chain could tell (a node
// still starting, or catching up, cannot yet: the loop asks again at its
// next poll).
func (s *Server) checkStorageOnce(ctx context.Context) bool {
	err := s.CheckStorageService(ctx)
	switch {
	case errors.Is(err, ErrChainUnavailable) || ctx.Err() != nil:
		return false
	case err != nil:
		s.log.Error("replication: the peers will refuse this sidecar's copies until this is fixed", "err", err)
	default:
		s.log.Info("replication: copying every committed blob from the peers as storage service", "service", fmt.Sprintf("%X", s.opts.Storage.Address()), "peers", len(s.opts.Peers))
	}
	return true
}

// ReplicatePass copies from the peers every blob that a committed block
// referenced and the store does not hold. It reads the chain's new blocks
// into the reference index first, then walks the index and the store's
// listing side by side (both in key order), a page at a time.
func (s *Server) ReplicatePass(ctx context.Context) (ReplicaReport, error) {
	var rep ReplicaReport
	if s.opts.Storage == nil || len(s.opts.Peers) == 0 {
		return rep, errors.New("sidecar: replication needs a storage service identity and peers")
	}
	if _, err := s.refs.catchUp(ctx, s.chain, s.log); err != nil {
		return rep, fmt.Errorf("replication: reading the chain into the reference index: %w", err)
	}
	var after blobstore.Key
	for {
		keys, err := s.refs.keysAfter(after, replicaPage)
		if err != nil {
			return rep, fmt.Errorf("replication: reading the reference index: %w", err)
		}
		if len(keys) == 0 {
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
		rep.Referenced += len(keys)
		for _, k := range keys {
			if held[k] {
				continue
			}
			rep.Missing++
			n, err := s.replicate(ctx, k)
			if cerr := ctx.Err(); cerr != nil {
				return rep, cerr
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
// copy). n is the bytes copied.
func (s *Server) replicate(ctx context.Context, key blobstore.Key) (n int64, err error) {
	if s.opts.Storage == nil || len(s.opts.Peers) == 0 {
		return 0, errNoPeerHasIt
	}
	// Locked like an upload or a read-through, so that a drop of a damaged
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
	params, err := s.chain.Params(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the chain's blob size limit: %w", err)
	}
	var reasons []string
	for _, peer := range s.opts.Peers {
		n, err := s.replicateFrom(ctx, peer, key, params.MaxBlobBytes)
		if err == nil {
			s.metrics.replicated.Inc()
			s.log.Info("blob copied from a peer sidecar", "key", key.String(), "peer", peer, "bytes", n)
			return n, nil
		}
		var local *localStoreError
		if errors.As(err, &local) || ctx.Err() != nil {
			return 0, err
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", peer, err))
	}
	return 0, fmt.Errorf("%w (%s)", errNoPeerHasIt, strings.Join(reasons, "; "))
}

// replicateFrom copies key's blob from peer, asking once more after the
// peer's Retry-After (at most replicaMaxWait) when it is busy.
func (s *Server) replicateFrom(ctx context.Context, peer string, key blobstore.Key, maxSize uint64) (int64, error) {
	n, err := s.replicateOnce(ctx, peer, key, maxSize)
	var se *Error
	if errors.As(err, &se) && se.RetryAfter > 0 && (se.StatusCode == http.StatusTooManyRequests || se.StatusCode == http.StatusServiceUnavailable) {
		if werr := ctxtime.Sleep(ctx, min(se.RetryAfter, replicaMaxWait)); werr != nil {
			return 0, werr
		}
		return s.replicateOnce(ctx, peer, key, maxSize)
	}
	return n, err
}

func (s *Server) replicateOnce(ctx context.Context, peer string, key blobstore.Key, maxSize uint64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
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
	if resp.StatusCode != http.StatusOK {
		return 0, readError(resp)
	}
	switch {
	case resp.ContentLength < 0:
		return 0, errors.New("no Content-Length")
	case maxSize > 0 && uint64(resp.ContentLength) > maxSize:
		return 0, fmt.Errorf("it announces %d bytes, above the chain's limit of %d", resp.ContentLength, maxSize)
	}
	body := &errRecorder{r: &limitedReader{ctx: ctx, r: resp.Body, limit: s.replicas.limit}}
	switch err := s.store.Put(ctx, key, body, resp.ContentLength); {
	case err == nil:
		return resp.ContentLength, nil
	case body.err != nil || ctx.Err() != nil || errors.Is(err, blobstore.ErrHashMismatch) || errors.Is(err, blobstore.ErrSizeMismatch):
		return 0, err // the peer's doing (or the pass's, stopped)
	default:
		return 0, &localStoreError{err}
	}
}
