package sidecar

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/crypto"
)

// Read-through between the consortium's sidecars.
//
// Each hospital's sidecar stores what is uploaded to it (and, as a storage
// service, copies of what the consortium's custodians keep: replica.go).
// When a member asks a sidecar for a blob it does not hold, the sidecar
// forwards the member's own signed request to its peers (Options.Peers). A
// peer authorizes it exactly as it would the member's direct request —
// same signature, same chain rules, its own view of the chain — so
// forwarding grants nothing the member does not already have. The first
// peer that serves the blob has its answer relayed to the member as it
// came: sealed to the member's key (seal.go), it is nothing this sidecar
// can read or keep, and the member checks it as it would the peer's own.
// A forwarded request carries HeaderForwarded, and is never forwarded
// again.

// HeaderForwarded marks a GET one sidecar forwards to another.
const HeaderForwarded = "X-Emr-Forwarded"

// forwardedHeaders are the member's request headers a forward carries:
// every one the signed string covers (SigningString), so the peer verifies
// the member's signature over the same bytes; the height the member knows
// committed, so a peer whose node lags waits for it too; and the range
// asked, which the peer serves from its copy.
var forwardedHeaders = []string{HeaderAddress, HeaderTimestamp, HeaderBodySHA256, HeaderSignature, HeaderPatient, HeaderCategory, HeaderMinHeight, "Range"}

// relayedHeaders are the headers of a peer's answer relayed to the member.
var relayedHeaders = []string{"Content-Length", "Content-Range", HeaderSealedEnvelope, HeaderSealedSize}

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

// peerAnswer is a peer's answer serving a member's forwarded request: its
// headers read and checked, its body (cut off when the peer stalls:
// cutWhenIdle, waitBudget) not yet.
type peerAnswer struct {
	peer string
	resp *http.Response
	done func() // closes the body and ends the transfer
}

// askPeers forwards the member's request r for blob to the peers in turn
// and returns the first answer that serves it. The peer authorizes the
// member and files blobs by the same rules, so what it serves for the
// record or share r names is the blob uploaded for that record's patient
// and category. The caller must call the answer's done.
//
// Only a GET is forwarded: the member signed its method, so a HEAD could
// only go out as a HEAD, whose answer has no bytes, and a GET carrying a
// signature over "HEAD" fails at every peer (and counts against this
// sidecar's host in the peers' failed-authentication limits).
func (s *Server) askPeers(ctx context.Context, r *http.Request, blob servedBlob) (*peerAnswer, error) {
	if len(s.opts.Peers) == 0 || r.Header.Get(HeaderForwarded) != "" {
		return nil, errNoPeerHasIt
	}
	if r.Method != http.MethodGet {
		return nil, fmt.Errorf("%w: a %s is not forwarded to peers (a GET is)", errNoPeerHasIt, r.Method)
	}
	var reasons []string
	behind := false // a peer said its node has not reached the member's height yet
	unsure := false // a peer did not answer, or failed (5xx): it may hold the blob
	for _, peer := range s.opts.Peers {
		ans, err := s.askPeer(ctx, peer, r, blob)
		if err == nil {
			return ans, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *Error
		var noAnswer *url.Error
		answered := errors.As(err, &se)
		behind = behind || (answered && se.Code == CodeChainBehind)
		unsure = unsure || errors.As(err, &noAnswer) || (answered && (se.StatusCode >= 500 || se.StatusCode == http.StatusTooManyRequests))
		reasons = append(reasons, fmt.Sprintf("%s: %v", peer, err))
	}
	if behind {
		return nil, fmt.Errorf("%w (%s)", errPeersBehind, strings.Join(reasons, "; "))
	}
	if unsure {
		return nil, fmt.Errorf("%w (%s)", errPeersUnavailable, strings.Join(reasons, "; "))
	}
	return nil, fmt.Errorf("%w (%s)", errNoPeerHasIt, strings.Join(reasons, "; "))
}

// askPeer forwards r to peer. The forward asks for exactly what the member
// asked (r.URL.RequestURI(): the blob and the record or share it names),
// which the member's signature covers. The answer's headers must come
// within the peer client's timeout; then a peer that stops sending for
// peerIdle, in an answer or a refusal, is cut off, and so is one whose
// reads have waited, in all, longer than peerTimeout plus the answer's
// time at relayMinRate (waitBudget). An answer
// that does not serve the blob sealed, or announces another size than the
// chain's, is refused before a byte is relayed (the member's client would
// refuse it too, but the next peer may serve it).
func (s *Server) askPeer(ctx context.Context, peer string, r *http.Request, blob servedBlob) (ans *peerAnswer, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer, "/")+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	for _, h := range forwardedHeaders {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(HeaderForwarded, "1")
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return nil, err
	}
	stopIdle := cutWhenIdle(resp, cancel)
	resp.Body = readCloser{&waitBudget{r: resp.Body, cancel: cancel,
		left: peerTimeout + time.Duration(crypto.CiphertextSize(int64(blob.size))/relayMinRate)*time.Second}, resp.Body}
	done := func() {
		stopIdle()
		resp.Body.Close()
		cancel()
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		err = readError(resp) // the peer's reason, e.g. that it limits this host
	} else if _, sealedSize, herr := sealedHeaders(resp, blob.size); herr != nil {
		err = fmt.Errorf("it did not answer sealed: %w", herr)
	} else if resp.StatusCode == http.StatusOK && uint64(sealedSize) != blob.size {
		err = fmt.Errorf("it announces %d bytes; the chain says the blob has %d", sealedSize, blob.size)
	}
	if err != nil {
		done()
		return nil, err
	}
	return &peerAnswer{peer: peer, resp: resp, done: done}, nil
}

// relayMinRate (bytes a second) is the pace of a peer below which its
// relayed answer is cut off once peerTimeout has passed (waitBudget): the
// default minimum rate of an upload. A slow member does not count: it
// slows the writes, not the waits for the peer's bytes.
const relayMinRate = DefaultUploadMinRate

// errPeerTooSlow: a peer's answer waited longer than its budget.
var errPeerTooSlow = errors.New("the peer sent its answer too slowly")

// waitBudget reads a peer's body and cuts the transfer off (cancel) once
// its reads have waited, in all, longer than left, during the read that
// uses it up (a timer armed for what is left): a peer that trickles, or
// stalls within peerIdle, cannot hold a relay for ever, while a member
// that reads slowly, whose relay finds the peer's bytes already waiting,
// costs it nothing. A read that brings the last bytes in time is the
// answer's, even if it used the budget up.
type waitBudget struct {
	r      io.Reader
	left   time.Duration
	cancel context.CancelFunc
	timer  *time.Timer // armed for left around each read
}

func (b *waitBudget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.cancel()
		return 0, errPeerTooSlow
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(b.left, b.cancel)
	} else {
		b.timer.Reset(b.left)
	}
	start := time.Now()
	n, err := b.r.Read(p)
	b.timer.Stop()
	b.left -= time.Since(start)
	return n, err
}

// relay sends a peer's answer on to the member as it came: its status and
// the headers that describe the sealed body (this sidecar's own
// Content-Type and Cache-Control). A transfer that the peer breaks
// part-way is cut short for the member too (the connection aborted): the
// sealed stream then lacks its final segment, which the member's reader
// refuses. A member that stops reading, or hangs up (ctx, its request's,
// ends), just ends it.
func (s *Server) relay(ctx context.Context, w http.ResponseWriter, ans *peerAnswer, reader []byte, sum blobstore.Sum, height int64) {
	h := w.Header()
	for _, k := range relayedHeaders {
		if v := ans.resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	cw := s.blobAnswer(w)
	w.WriteHeader(ans.resp.StatusCode)
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	from := &errRecorder{r: ans.resp.Body}
	_, err := io.CopyBuffer(cw, struct{ io.Reader }{from}, *bp)
	if err == nil && cw.n != ans.resp.ContentLength {
		from.err = fmt.Errorf("%w: the peer sent %d of its %d bytes", io.ErrUnexpectedEOF, cw.n, ans.resp.ContentLength)
	}
	switch {
	case from.err != nil && ctx.Err() == nil:
		s.log.Error("relay of a peer's answer broken by the peer", "sha256", sum.String(), "reader", hex.EncodeToString(reader), "peer", ans.peer, "sent", cw.n, "err", from.err)
		panic(http.ErrAbortHandler)
	case err != nil || from.err != nil:
		s.log.Error("blob transfer interrupted", "sha256", sum.String(), "reader", hex.EncodeToString(reader), "peer", ans.peer, "sent", cw.n, "err", errors.Join(err, from.err))
		return
	}
	s.log.Info("blob relayed from a peer sidecar", "sha256", sum.String(), "reader", hex.EncodeToString(reader), "peer", ans.peer,
		"bytes", cw.n, "range", ans.resp.Header.Get("Content-Range"), "height", height)
}
