package sidecar

import (
	"container/heap"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
)

// Request headers of the sidecar's signature scheme.
const (
	// HeaderAddress is the signer's member address, 40 hex characters.
	HeaderAddress = "X-Emr-Address"
	// HeaderTimestamp is when the request was signed: RFC 3339 (with
	// fractional seconds) or Unix milliseconds.
	HeaderTimestamp = "X-Emr-Timestamp"
	// HeaderBodySHA256 is the hex SHA-256 of the request body (of the empty
	// string for GET). For PUT it is also the blob's name.
	HeaderBodySHA256 = "X-Emr-Body-SHA256"
	// HeaderSignature is the base64 ed25519 signature of SigningString.
	HeaderSignature = "X-Emr-Signature"
	// HeaderPatient is the patient id (64 hex characters) a PUT uploads for.
	HeaderPatient = "X-Emr-Patient"
	// HeaderCategory is the data category a PUT uploads for: that of the
	// record the blob will be added as, or (PUT /v1/shared-blobs) of the
	// record it shares.
	HeaderCategory = "X-Emr-Category"
	// HeaderMinHeight (optional, not signed) is the height the client
	// knows the chain has committed (decimal): the access event it just
	// logged, say. A sidecar whose node is below it waits a moment for
	// the node (Options.MaxHeightWait) and then answers 503 chain_behind,
	// never a refusal, so that "403" always means "no", not "not yet". A
	// caller who sets it wrongly only delays its own request.
	HeaderMinHeight = "X-Emr-Min-Height"
)

// signDomain separates sidecar request signatures from every other thing
// a member's key signs (transactions, record signatures).
const signDomain = "emrchain/v1/sidecar-request"

// emptySHA256 is the hex SHA-256 of no bytes: the body hash of a GET.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

// Signer signs sidecar requests with a member's ed25519 key. It has the
// shape of the client library's signer.
type Signer interface {
	// PubKey is the 32-byte ed25519 public key.
	PubKey() []byte
	// Address is the member address (first 20 bytes of SHA-256(PubKey)).
	Address() []byte
	// Sign signs msg with the ed25519 private key.
	Sign(msg []byte) ([]byte, error)
}

// SigningString is the exact byte string a request signature covers: a
// domain tag and, one per line, the method, the request URI (path and
// query, as sent), the signer's address header, the timestamp header, the
// body hash header, the patient header and the category header (empty when
// absent), each verbatim. HTTP header values cannot contain a newline, so
// the encoding is injective.
func SigningString(method, requestURI, address, timestamp, bodySHA256, patient, category string) []byte {
	return []byte(strings.Join([]string{signDomain, method, requestURI, address, timestamp, bodySHA256, patient, category}, "\n"))
}

// SignRequest sets the signature headers on req. bodySHA256 is the hex
// SHA-256 of the body the request will send ("" means an empty body); the
// X-Emr-Patient and X-Emr-Category headers, if the request needs them, must
// be set before.
// The timestamp is now, in RFC 3339 with nanoseconds. Each signed request
// may be sent once: the sidecar refuses a replay.
func SignRequest(req *http.Request, signer Signer, bodySHA256 string) error {
	return signRequestAt(req, signer, bodySHA256, time.Now())
}

func signRequestAt(req *http.Request, signer Signer, bodySHA256 string, now time.Time) error {
	if bodySHA256 == "" {
		bodySHA256 = emptySHA256
	}
	addr := hex.EncodeToString(signer.Address())
	ts := now.UTC().Format(time.RFC3339Nano)
	msg := SigningString(req.Method, req.URL.RequestURI(), addr, ts, bodySHA256, req.Header.Get(HeaderPatient), req.Header.Get(HeaderCategory))
	sig, err := signer.Sign(msg)
	if err != nil {
		return fmt.Errorf("sidecar: sign request: %w", err)
	}
	req.Header.Set(HeaderAddress, addr)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderBodySHA256, bodySHA256)
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	return nil
}

// KeySigner is a Signer over an in-memory CometBFT ed25519 private key.
type KeySigner struct{ Key ed25519.PrivKey }

// PubKey implements Signer.
func (k KeySigner) PubKey() []byte { return k.Key.PubKey().Bytes() }

// Address implements Signer.
func (k KeySigner) Address() []byte { return k.Key.PubKey().Address() }

// Sign implements Signer.
func (k KeySigner) Sign(msg []byte) ([]byte, error) { return k.Key.Sign(msg) }

// signedRequest is what the signature headers of a request say, parsed but
// not yet verified.
type signedRequest struct {
	address   []byte
	timestamp time.Time
	bodySum   [32]byte
	signature []byte
	message   []byte
}

// parseSigned reads and syntax-checks the signature headers.
func parseSigned(r *http.Request) (*signedRequest, error) {
	addrHex := r.Header.Get(HeaderAddress)
	tsText := r.Header.Get(HeaderTimestamp)
	bodyHex := r.Header.Get(HeaderBodySHA256)
	sigText := r.Header.Get(HeaderSignature)
	var missing []string
	for _, h := range []struct{ name, v string }{
		{HeaderAddress, addrHex}, {HeaderTimestamp, tsText}, {HeaderBodySHA256, bodyHex}, {HeaderSignature, sigText},
	} {
		if h.v == "" {
			missing = append(missing, h.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("unsigned request: missing %s", strings.Join(missing, ", "))
	}
	sr := &signedRequest{}
	var err error
	if sr.address, err = hex.DecodeString(addrHex); err != nil || len(sr.address) != 20 {
		return nil, fmt.Errorf("%s must be 40 hex characters", HeaderAddress)
	}
	if sr.timestamp, err = parseTimestamp(tsText); err != nil {
		return nil, err
	}
	if b, err := hex.DecodeString(bodyHex); err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%s must be 64 hex characters", HeaderBodySHA256)
	} else {
		copy(sr.bodySum[:], b)
	}
	if sr.signature, err = base64.StdEncoding.DecodeString(sigText); err != nil || len(sr.signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%s must be a base64 %d-byte ed25519 signature", HeaderSignature, ed25519.SignatureSize)
	}
	sr.message = SigningString(r.Method, r.URL.RequestURI(), addrHex, tsText, bodyHex, r.Header.Get(HeaderPatient), r.Header.Get(HeaderCategory))
	return sr, nil
}

// parseTimestamp accepts RFC 3339 (fractional seconds allowed) or Unix
// milliseconds (plain digits).
func parseTimestamp(s string) (time.Time, error) {
	if ms, ok := parseDecimal(s); ok {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %s is neither RFC 3339 nor Unix milliseconds", HeaderTimestamp, app.QuoteInput(s))
	}
	return t, nil
}

// verify checks the signature with the member's registered key (CometBFT's
// ed25519, ZIP-215 rules, as everywhere in emrchain).
func (sr *signedRequest) verify(signPubKey []byte) bool {
	if len(signPubKey) != ed25519.PubKeySize {
		return false
	}
	return ed25519.PubKey(signPubKey).VerifySignature(sr.message, sr.signature)
}

// replayKey identifies a signed request independently of the signature's
// encoding: ed25519 under ZIP-215 accepts several encodings of one
// signature, so keying on signature bytes would let a replay through.
func (sr *signedRequest) replayKey() [32]byte {
	h := sha256.New()
	h.Write(sr.address)
	h.Write(sr.message)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// errReplayCacheFull: the cache holds max entries, none expired yet.
var errReplayCacheFull = errors.New("replay cache full")

// errReplaySignerFull: the request's signer already has its quota of
// entries in the cache (errors.Is matches a *signerBusyError).
var errReplaySignerFull = errors.New("the signer's share of the replay cache is used up")

// errReplayWindowPassed: the request's window closed before it reached
// the cache.
var errReplayWindowPassed = errors.New("the request's skew window closed while it was being checked")

// signerBusyError refuses a request whose signer holds perSigner live
// entries: RetryAfter is when the signer's oldest entry expires.
type signerBusyError struct {
	limit      int
	retryAfter time.Duration
}

func (e *signerBusyError) Error() string {
	return fmt.Sprintf("%v: %d requests in the replay window (the limit per signer); the oldest leaves it in %s",
		errReplaySignerFull, e.limit, e.retryAfter.Round(time.Millisecond))
}

func (e *signerBusyError) Unwrap() error { return errReplaySignerFull }

// signerAddr is a request signer's member address.
type signerAddr [20]byte

// replayCache remembers verified requests until their timestamp leaves the
// skew window (after which the timestamp check refuses them anyway). It
// holds at most max entries; when full of unexpired entries it refuses new
// requests rather than forget one (forgetting would allow a replay). One
// signer may hold at most perSigner of them (0: no limit of its own), so
// that one member signing many requests is refused, with the time its
// oldest entry leaves the window, before it fills the cache for everyone.
// Entries are only added for requests whose signature verified, so a
// signer's share cannot be used up by someone else.
//
// A request reaches it some time after the sidecar read the clock to check
// its timestamp (its member is looked up on the chain in between), and a
// later request may meanwhile have pruned the first copy of a replay. So
// the cache reads the clock itself, under its lock, both to prune and to
// judge: an entry is pruned only once its window closed, and a request
// whose window closed by then is refused, as its first copy may be gone.
type replayCache struct {
	mu        sync.Mutex
	max       int
	perSigner int
	now       func() time.Time
	entries   map[[32]byte]replayEntry
	byExp     expiryHeap
	// bySigner holds, per signer with live entries, their expiries: a
	// min-heap, so its oldest is at hand and its length is the signer's
	// count. An entry leaves it when it leaves entries.
	bySigner map[signerAddr]*timeHeap
}

type replayEntry struct {
	exp    time.Time
	signer signerAddr
}

func newReplayCache(max int, now func() time.Time) *replayCache {
	return &replayCache{max: max, now: now, entries: make(map[[32]byte]replayEntry), bySigner: make(map[signerAddr]*timeHeap)}
}

// admit records key, a request of signer whose window closes at
// windowEnd, until then and for hold from now at least; it returns false
// if key is already there, errReplayWindowPassed if windowEnd is already
// past, a *signerBusyError (errReplaySignerFull) if signer holds its quota
// of entries, and errReplayCacheFull if the cache is full.
//
// A request is judged by its own window, not by when it arrived: a copy
// whose window has closed is refused even if it arrived in time and was
// held up since (the sidecar waits on the node, for as long as an
// unsigned header asks), since the first copy's entry may have been
// pruned by then. Every copy still inside its window finds the first
// copy's entry, which lives until that window closes at least.
func (c *replayCache) admit(signer signerAddr, key [32]byte, windowEnd time.Time, hold time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !windowEnd.After(now) {
		return false, errReplayWindowPassed
	}
	expires := later(windowEnd, now.Add(hold))
	for len(c.byExp) > 0 && !c.byExp[0].exp.After(now) {
		e := heap.Pop(&c.byExp).(expiryEntry)
		if cur, ok := c.entries[e.key]; ok && cur.exp.Equal(e.exp) {
			delete(c.entries, e.key)
			c.dropOldest(cur.signer)
		}
	}
	// Every entry left has not expired: the heap popped those that had.
	if _, ok := c.entries[key]; ok {
		return false, nil
	}
	if sh := c.bySigner[signer]; c.perSigner > 0 && sh != nil && sh.Len() >= c.perSigner {
		return false, &signerBusyError{limit: c.perSigner, retryAfter: (*sh)[0].Sub(now)}
	}
	if len(c.entries) >= c.max {
		return false, errReplayCacheFull
	}
	c.entries[key] = replayEntry{exp: expires, signer: signer}
	heap.Push(&c.byExp, expiryEntry{key: key, exp: expires})
	sh := c.bySigner[signer]
	if sh == nil {
		sh = &timeHeap{}
		c.bySigner[signer] = sh
	}
	heap.Push(sh, expires)
	return true, nil
}

// dropOldest forgets signer's oldest expiry. The cache prunes entries in
// the order of their expiries, so the entry it prunes for signer is the
// signer's oldest (or one as old).
func (c *replayCache) dropOldest(signer signerAddr) {
	sh := c.bySigner[signer]
	if sh == nil {
		return
	}
	heap.Pop(sh)
	if sh.Len() == 0 {
		delete(c.bySigner, signer)
	}
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

type expiryEntry struct {
	key [32]byte
	exp time.Time
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// timeHeap is a min-heap of times.
type timeHeap []time.Time

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *timeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
