package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// Read-through replication between the consortium's sidecars.
//
// Each hospital's sidecar stores what is uploaded to it. When a member asks
// a sidecar for a blob it does not hold, the sidecar forwards the member's
// own signed request to its peers (Options.Peers). A peer authorizes it
// exactly as it would the member's direct request — same signature, same
// chain rules, its own view of the chain — so forwarding grants nothing the
// member does not already have. The first peer that serves the blob is
// read into the local store, which checks its SHA-256 while writing
// (blobs are content-addressed, so a lying peer can only fail the
// transfer); then the member is served from the local copy. A forwarded
// request carries HeaderForwarded, and is never forwarded again.

// HeaderForwarded marks a GET one sidecar forwards to another.
const HeaderForwarded = "X-Emr-Forwarded"

// forwardedHeaders are the member's request headers a forward carries:
// every one the signed string covers (SigningString), so the peer verifies
// the member's signature over the same bytes, and the height the member
// knows committed, so a peer whose node lags waits for it too.
var forwardedHeaders = []string{HeaderAddress, HeaderTimestamp, HeaderBodySHA256, HeaderSignature, HeaderPatient, HeaderCategory, HeaderMinHeight}

// peerTimeout bounds one peer transfer (a replica's, plus its time at the
// replication rate). (A variable for tests.)
var peerTimeout = 5 * time.Minute

var errNoPeerHasIt = errors.New("no peer sidecar has the blob")

// errPeersBehind: no peer served the blob, and one answered 503
// chain_behind, its node not yet at the height the member saw committed.
// That one may be the only one that holds it (the uploader's; the others
// answer 404, as a forwarded request is not forwarded again): "not yet",
// which the member must hear as such (a 503 chain_behind), not as "no
// peer has it" (404).
var errPeersBehind = errors.New("a peer sidecar's node is behind the height the client saw committed")

// errPeersUnavailable: no peer served the blob, none said "not yet", and
// one did not answer, failed (5xx) or limited this sidecar's host (429). It may be the one that holds the
// blob: the answer is 503, which asking again may mend, not 404 "no peer
// has it", which the client takes as a refusal.
var errPeersUnavailable = errors.New("a peer sidecar that may hold the blob did not answer or failed")

// localStoreError is a failure of this sidecar's own store while it kept
// a blob a peer served: the member is answered 500, not 404, and the
// details (paths, the MinIO endpoint) go to the log only.
type localStoreError struct{ err error }

func (e *localStoreError) Error() string {
	return "storing the blob a peer served failed: " + e.err.Error()
}
func (e *localStoreError) Unwrap() error { return e.err }

// slotRefusedError: a peer serves the blob, but this sidecar has no upload
// slot free to keep it (a read-through takes one, as an upload does). The
// member is answered the refusal itself: 429 or 503, with Retry-After.
type slotRefusedError struct{ aerr *apiError }

func (e *slotRefusedError) Error() string { return e.aerr.Error() }

// fetchFromPeers copies blob from the first peer that serves it to the
// member whose request r is, into the local store. The peer authorizes the
// member and files blobs by the same rules, so what it serves for the
// record or share r names is the blob uploaded for that record's patient
// and category, which blob.key names. A peer that announces another size
// than the chain's is refused before anything is written.
//
// Only a GET is forwarded: the member signed its method, so a HEAD could
// only go out as a HEAD, whose answer has no bytes to keep, and a GET
// carrying a signature over "HEAD" fails at every peer (and counts against
// this sidecar's host in the peers' failed-authentication limits).
func (s *Server) fetchFromPeers(ctx context.Context, r *http.Request, signer signerAddr, patient bool, blob servedBlob) error {
	if len(s.opts.Peers) == 0 || r.Header.Get(HeaderForwarded) != "" {
		return errNoPeerHasIt
	}
	if r.Method != http.MethodGet {
		return fmt.Errorf("%w: a %s is not forwarded to peers (a GET fetches the blob from them)", errNoPeerHasIt, r.Method)
	}
	// Locked like an upload, before asking any peer (a peer's answer left
	// unread while this waits would be cut by its idle timeout), so that a
	// drop of a damaged copy (which reads the copy again under the lock)
	// never deletes the one kept here; and a read-through or upload of the
	// blob that held the lock may have stored it meanwhile.
	unlock, err := s.blobs.lockCtx(ctx, blob.key)
	if err != nil {
		return err
	}
	defer unlock()
	if info, err := s.store.Stat(ctx, blob.key); err == nil && uint64(info.Size) == blob.size {
		return nil
	}
	var reasons []string
	behind := false // a peer said its node has not reached the member's height yet
	unsure := false // a peer did not answer, or failed (5xx): it may hold the blob
	for _, peer := range s.opts.Peers {
		err := s.fetchFromPeer(ctx, peer, r, signer, patient, blob)
		if err == nil {
			s.verified.intact(blob.key, s.opts.Now()) // Put hashed it as it wrote
			s.log.Info("blob replicated from a peer sidecar", "sha256", blob.key.Sum.String(), "key", blob.key.String(), "peer", peer)
			return nil
		}
		var local *localStoreError
		var refused *slotRefusedError
		if errors.As(err, &local) || errors.As(err, &refused) {
			// Another peer would meet the same store, and the same slots.
			return err
		}
		var se *Error
		var noAnswer *url.Error
		answered := errors.As(err, &se)
		behind = behind || (answered && se.Code == CodeChainBehind)
		unsure = unsure || errors.As(err, &noAnswer) || (answered && (se.StatusCode >= 500 || se.StatusCode == http.StatusTooManyRequests))
		reasons = append(reasons, fmt.Sprintf("%s: %v", peer, err))
	}
	if behind {
		return fmt.Errorf("%w (%s)", errPeersBehind, strings.Join(reasons, "; "))
	}
	if unsure {
		return fmt.Errorf("%w (%s)", errPeersUnavailable, strings.Join(reasons, "; "))
	}
	return fmt.Errorf("%w (%s)", errNoPeerHasIt, strings.Join(reasons, "; "))
}

// The forward asks for exactly what the member asked (r.URL.RequestURI():
// the blob and the record or share it names), which the member's signature
// covers. A peer that stops sending for peerIdle is cut off, so that the
// next peer is asked while the member still waits. The store's Put takes
// an upload slot of the member, signer (*slotRefusedError if none is
// free): the slots bound the Puts in flight and their buffers, not the
// requests to peers.
func (s *Server) fetchFromPeer(ctx context.Context, peer string, r *http.Request, signer signerAddr, patient bool, blob servedBlob) error {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer, "/")+r.URL.RequestURI(), nil)
	if err != nil {
		return err
	}
	for _, h := range forwardedHeaders {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(HeaderForwarded, "1")
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readError(resp) // the peer's reason, e.g. that it limits this host
	}
	if resp.ContentLength < 0 {
		return errors.New("no Content-Length")
	}
	if uint64(resp.ContentLength) != blob.size {
		return fmt.Errorf("it announces %d bytes; the chain says the blob has %d", resp.ContentLength, blob.size)
	}
	release, aerr := s.takeUploadSlot(signer, patient, true)
	if aerr != nil {
		return &slotRefusedError{aerr}
	}
	defer release()
	body, stopIdle := cutWhenIdle(resp.Body, cancel)
	defer stopIdle()
	return s.keepPeerBlob(ctx, blob.key, body, resp.ContentLength)
}

// keepPeerBlob stores body, a peer's answer of size bytes, as key's blob.
// Put hashes while it writes and keeps nothing that does not match. A
// failed read of the body tells a failed Put the peer's (the transfer
// broke, or the bytes are not the blob; or ctx ended: the caller's doing)
// from the local store's, which is a *localStoreError: another peer would
// meet the same store.
func (s *Server) keepPeerBlob(ctx context.Context, key blobstore.Key, body io.Reader, size int64) error {
	read := &errRecorder{r: body}
	err := s.store.Put(ctx, key, read, size)
	if err == nil || read.err != nil || ctx.Err() != nil ||
		errors.Is(err, blobstore.ErrHashMismatch) || errors.Is(err, blobstore.ErrSizeMismatch) {
		return err
	}
	return &localStoreError{err}
}
