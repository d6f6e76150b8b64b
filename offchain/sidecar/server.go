package sidecar

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Defaults of Options.
const (
	DefaultAccessWindow    = 10 * time.Minute
	DefaultMaxClockSkew    = 60 * time.Second
	DefaultMaxHeadAge      = time.Minute
	DefaultMaxHeightWait   = 3 * time.Second
	DefaultReplayCacheSize = 100_000
	DefaultReplayPerSigner = 1_000
	DefaultSweepInterval   = 10 * time.Minute
	DefaultSweepGrace      = time.Hour
	DefaultSweepMaxDeletes = 1000
	DefaultSweepMaxChecks  = 10_000
)

// Default bounds on pending uploads: per signer, four blobs of the genesis
// default max_blob_bytes (4 GiB); of all patients, half the total; in all,
// 64 GiB.
const (
	DefaultPendingBytesPerSigner = 16 << 30
	DefaultPendingBytesPatients  = 32 << 30
	DefaultPendingBytesTotal     = 64 << 30
)

// DefaultFailedAuthPerMinute is the default of
// Options.FailedAuthPerMinute. A client that is set up right fails
// authentication rarely (a clock off by more than the skew, a key the node
// has not seen yet), so one failure a second per address leaves room for
// several of them behind one NAT address, while a host that keeps failing
// costs the node one member lookup a second. It also bounds the
// authentications in flight at once from one host (authfail.go).
const DefaultFailedAuthPerMinute = 60

// PatientsShare is the default bound of the patients' pending uploads for
// a total bound of total bytes (no bound when not positive): half of it,
// at most DefaultPendingBytesPatients, so that a lowered total does not
// leave the patients' bound above it (and so without effect).
func PatientsShare(total int64) int64 {
	if total <= 0 {
		return DefaultPendingBytesPatients
	}
	return min(DefaultPendingBytesPatients, total/2)
}

// Logger is the logging the sidecar needs; CometBFT's log.Logger has it.
type Logger interface {
	Info(msg string, keyvals ...any)
	Error(msg string, keyvals ...any)
}

type nopLogger struct{}

func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}

// Options configure a Server. Zero values take the defaults above.
type Options struct {
	Store  blobstore.Store
	Chain  ChainView
	Logger Logger
	// AccessWindow: how long, in block time, a committed access event lets
	// its member download the record's ciphertext.
	AccessWindow time.Duration
	// MaxClockSkew: how far a request's timestamp may be from the
	// sidecar's clock.
	MaxClockSkew time.Duration
	// MaxHeadAge: how old, by the sidecar's clock, the node's latest block
	// may be for the sidecar to authorize by it. A node that stopped
	// advancing (cut off from the other validators, or on a chain that
	// lost its quorum) does not say it is catching up: it answers with
	// its last block, and grants revoked and windows closed since would
	// still count. Beyond this age requests are refused (503
	// chain_stale). An emrchaind chain makes a block at least every
	// create_empty_blocks_interval (10 s by default), so the default
	// (DefaultMaxHeadAge, 1 minute) leaves room for slow rounds. Negative:
	// no bound (for chains that make no empty blocks).
	MaxHeadAge time.Duration
	// MaxHeightWait: how long a request that says its client has seen a
	// height committed (HeaderMinHeight) waits for the node to reach it
	// before the answer is 503 chain_behind, with Retry-After. A node
	// a block behind the one that committed a member's access event would
	// otherwise refuse it (403), which the member must take as final. The
	// default (DefaultMaxHeightWait, 3 s) covers a block or two; waiting
	// requests hold the host's authentication tokens (FailedAuthPerMinute),
	// so one host cannot keep many waiting. Negative: answer at once.
	MaxHeightWait time.Duration
	// ReplayCacheSize bounds the remembered request signatures.
	ReplayCacheSize int
	// ReplayPerSigner bounds the remembered requests of one signer: beyond
	// it, its requests are refused (429, with Retry-After) until its oldest
	// leaves the skew window, and the other signers are unaffected.
	// Negative: no bound of its own (ReplayCacheSize still holds).
	ReplayPerSigner int
	// FailedAuthPerMinute bounds the failed authentications (401: unsigned,
	// malformed, stale, replayed, of no member, or with a bad signature) of
	// one client host, its IPv4 address or IPv6 /64, with a burst of as
	// many: when they are used up, every request from the host is refused
	// (429, with Retry-After) before the chain is asked or a signature
	// checked, until one is back. Each authentication holds a token while
	// it runs, so no more than that many may be under way at once from one
	// host either. The host is the connection's address, never a header:
	// behind a reverse proxy every client shares the proxy's (authfail.go).
	// Negative: no limit.
	FailedAuthPerMinute int
	// PendingBytesPerSigner bounds the bytes of the blobs one signer
	// uploaded that no committed record or share references yet (pending
	// until referenced or swept): an upload that would pass it is refused
	// (429) before its body is read. Negative: no bound.
	PendingBytesPerSigner int64
	// PendingBytesPatients bounds the bytes of the pending blobs patients
	// uploaded, all together (507): patients enroll themselves, so a few
	// accounts could otherwise take the whole total from the members a
	// registrar registered. 0: PatientsShare(PendingBytesTotal). Negative:
	// no bound.
	PendingBytesPatients int64
	// PendingBytesTotal bounds the bytes of all pending blobs: an upload
	// that would pass it is refused (507). Negative: no bound.
	PendingBytesTotal int64
	// UploadIdleTimeout bounds the wait for each read of an upload's body;
	// an upload that waits longer is refused (408) and its connection
	// closed (uploads.go). Negative: no deadline (a stalled body then
	// holds its upload slot, its blob's lock and the store's buffer for as
	// long as the client keeps the connection). It bounds, the same way,
	// how long a download's write waits for its reader: one that stops
	// reading is cut off, and its blob's file or stream closed.
	UploadIdleTimeout time.Duration
	// UploadMinRate (bytes a second): after a first UploadIdleTimeout, an
	// upload's body must have come at this rate at least (408 otherwise).
	// Negative: no rate (UploadIdleTimeout still holds).
	UploadMinRate int64
	// MaxUploads bounds the uploads whose body is being read (and the
	// read-throughs from peers) at once: beyond, an upload is refused
	// (503, Retry-After) before its body is read. With MinIO each holds a
	// 5 MiB part (for blobs up to 48.8 GiB), so memory is bounded by
	// MaxUploads × 5 MiB. Negative: no bound.
	MaxUploads int
	// MaxUploadsPatients bounds those of all signers who are patients
	// together (503, Retry-After; uploads.go). 0:
	// UploadsPatientsShare(MaxUploads). Negative: no bound.
	MaxUploadsPatients int
	// MaxUploadsPerSigner bounds those of one signer (429, Retry-After).
	// Negative: no bound.
	MaxUploadsPerSigner int
	// MaxConnections bounds the connections served at once: beyond, a new
	// one waits in the listen queue until another closes. Every
	// connection holds a file descriptor, which the node's consensus
	// shares; idle ones are closed after two minutes. 0:
	// DefaultMaxConnections. Negative: no bound.
	MaxConnections int
	// SweepInterval between garbage-collection passes; negative disables
	// the background sweep (Sweep can still be called). Leftovers of
	// interrupted uploads older than SweepGrace are removed at start, at
	// each pass (even one that cannot check blobs) and, with the sweep
	// disabled, every DefaultSweepInterval.
	SweepInterval time.Duration
	// SweepGrace: blobs younger than this are never swept (an upload comes
	// before the transaction that references it).
	SweepGrace time.Duration
	// SweepMaxDeletes bounds deletions per pass.
	SweepMaxDeletes int
	// SweepMaxChecks bounds the blobs a pass checks.
	SweepMaxChecks int
	// ScrubInterval between passes that read every stored blob and check
	// its SHA-256 (Scrub); 0 means DefaultScrubInterval, negative disables
	// the background scrub (Scrub can still be called).
	ScrubInterval time.Duration
	// ScrubBytesPerSecond bounds how fast a scrub reads the store; 0
	// means DefaultScrubBytesPerSecond, negative no bound.
	ScrubBytesPerSecond int64
	// RefIndexDir holds the sweep's reference index (a pebble database):
	// the blobs every committed block referenced, read from block results.
	// Empty keeps it in memory, read again at each start (from height 1,
	// or from the state on a node without the early blocks); either way
	// the sweep deletes nothing until it is complete up to the chain's
	// head.
	RefIndexDir string
	// Registry receives the metrics; nil means a fresh one with the Go and
	// process collectors. /metrics serves it.
	Registry *prometheus.Registry
	// Now is the wall clock (timestamps, sweep ages); nil means time.Now.
	Now func() time.Time
	// Peers are the other sidecars of the consortium (base URLs): a blob
	// this sidecar does not hold is fetched through them on the member's
	// own authorization (peers.go).
	Peers []string
	// Emergency, when set, makes the sidecar its organization's emergency
	// ("break-glass") service: GET EmergencyKeyPath releases a record's data
	// key to a clinician whose committed emergency read went through it
	// (emergency.go). Nil: that route answers 404 CodeNoEmergencyService.
	Emergency *EmergencyService
	// Storage, when set, is the storage service this sidecar signs as
	// towards its peers: a member of its organization registered with
	// ROLE_STORAGE_SERVICE. With it and Peers, the sidecar keeps a copy of
	// every blob a committed record or share references, copied from the
	// peers, and repairs a copy it drops as damaged (replica.go). Nil: it
	// holds what was uploaded to it and what members read through it.
	// Either way it serves ReplicaPath to its peers' storage services.
	Storage StorageIdentity
	// ReplicaInterval between passes that copy the committed blobs the
	// store lacks (with Storage); 0 means DefaultReplicaInterval, negative
	// no passes (new blobs and repairs are still copied as they come).
	ReplicaInterval time.Duration
	// ReplicaBytesPerSecond bounds how fast blobs are copied from peers
	// (with Storage); 0 means DefaultReplicaBytesPerSecond, negative no
	// bound.
	ReplicaBytesPerSecond int64
}

// Server is the blob sidecar.
type Server struct {
	opts    Options
	store   blobstore.Store
	chain   ChainView
	log     Logger
	metrics *metrics
	replay  *replayCache
	refs    *refIndex     // what committed blocks reference, for the sweep
	pending *pendingQuota // nil: no bound on pending uploads
	// replicas queues the blobs to copy from peers; nil without
	// Options.Storage (replica.go).
	replicas *replicator
	// replicaCatchUp is when (Unix ns) a replica request last read new
	// blocks into the reference index.
	replicaCatchUp atomic.Int64
	blobs          keyLocks       // an upload against the sweep's delete, per blob
	verified       verifiedCopies // copies read whole and found intact lately, for ranges
	uploads        *uploadSlots   // store Puts in flight
	handler        http.Handler
	bufs           sync.Pool
	// peerClient fetches blobs from peer sidecars.
	peerClient *http.Client
	// authFails counts failed authentications per client host; nil: no
	// limit.
	authFails *authFailLimiter

	mu       sync.Mutex
	http     *http.Server
	listener net.Listener
	stop     chan struct{}
	wg       sync.WaitGroup
	cursor   blobstore.Key // where the next sweep pass starts

	health   healthCache
	refusals logBudget // refusals logged (logRefusal)
}

// New builds a Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Chain == nil {
		return nil, errors.New("sidecar: a store and a chain view are required")
	}
	if opts.Logger == nil {
		opts.Logger = nopLogger{}
	}
	if opts.AccessWindow <= 0 {
		opts.AccessWindow = DefaultAccessWindow
	}
	if opts.MaxHeadAge == 0 {
		opts.MaxHeadAge = DefaultMaxHeadAge
	}
	opts.MaxHeightWait = cmp.Or(opts.MaxHeightWait, DefaultMaxHeightWait)
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = DefaultMaxClockSkew
	}
	if opts.ReplayCacheSize <= 0 {
		opts.ReplayCacheSize = DefaultReplayCacheSize
	}
	opts.ReplayPerSigner = cmp.Or(opts.ReplayPerSigner, DefaultReplayPerSigner)
	opts.FailedAuthPerMinute = cmp.Or(opts.FailedAuthPerMinute, DefaultFailedAuthPerMinute)
	opts.PendingBytesPerSigner = cmp.Or(opts.PendingBytesPerSigner, DefaultPendingBytesPerSigner)
	opts.PendingBytesTotal = cmp.Or(opts.PendingBytesTotal, DefaultPendingBytesTotal)
	opts.PendingBytesPatients = cmp.Or(opts.PendingBytesPatients, PatientsShare(opts.PendingBytesTotal))
	opts.UploadIdleTimeout = cmp.Or(opts.UploadIdleTimeout, DefaultUploadIdleTimeout)
	opts.UploadMinRate = cmp.Or(opts.UploadMinRate, DefaultUploadMinRate)
	opts.MaxUploads = cmp.Or(opts.MaxUploads, DefaultMaxUploads)
	opts.MaxConnections = cmp.Or(opts.MaxConnections, DefaultMaxConnections)
	opts.MaxUploadsPerSigner = cmp.Or(opts.MaxUploadsPerSigner, DefaultMaxUploadsPerSigner)
	opts.MaxUploadsPatients = cmp.Or(opts.MaxUploadsPatients, UploadsPatientsShare(opts.MaxUploads))
	opts.SweepInterval = cmp.Or(opts.SweepInterval, DefaultSweepInterval)
	opts.ScrubInterval = cmp.Or(opts.ScrubInterval, DefaultScrubInterval)
	opts.ScrubBytesPerSecond = cmp.Or(opts.ScrubBytesPerSecond, DefaultScrubBytesPerSecond)
	opts.ReplicaInterval = cmp.Or(opts.ReplicaInterval, DefaultReplicaInterval)
	opts.ReplicaBytesPerSecond = cmp.Or(opts.ReplicaBytesPerSecond, DefaultReplicaBytesPerSecond)
	if opts.SweepGrace <= 0 {
		opts.SweepGrace = DefaultSweepGrace
	}
	if opts.SweepMaxDeletes <= 0 {
		opts.SweepMaxDeletes = DefaultSweepMaxDeletes
	}
	if opts.SweepMaxChecks <= 0 {
		opts.SweepMaxChecks = DefaultSweepMaxChecks
	}
	if opts.Registry == nil {
		opts.Registry = defaultRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Emergency != nil {
		if err := opts.Emergency.validate(); err != nil {
			return nil, err
		}
	}
	switch {
	case opts.Storage != nil && opts.Emergency != nil:
		return nil, errors.New("sidecar: a sidecar is an emergency service or a storage service, not both: one process would hold the key that opens opted-in patients' keys and a copy of every blob; run the emergency service as a sidecar of its own")
	case opts.Storage != nil && len(opts.Peers) == 0:
		return nil, errors.New("sidecar: a storage service copies blobs from the peers, and none is set")
	case opts.Storage != nil && opts.Storage.EncPrivKey() == nil:
		return nil, errors.New("sidecar: the storage service has no X25519 key: the peers seal its replicas to the one the chain has for it")
	}
	refs, err := openRefIndex(opts.RefIndexDir)
	if err != nil {
		return nil, err
	}
	replay := newReplayCache(opts.ReplayCacheSize, opts.Now)
	replay.perSigner = max(opts.ReplayPerSigner, 0)
	s := &Server{
		opts:    opts,
		store:   opts.Store,
		chain:   opts.Chain,
		log:     opts.Logger,
		metrics: newMetrics(opts.Registry),
		replay:  replay,
		refs:    refs,
		bufs:    sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }},
		peerClient: &http.Client{Transport: &http.Transport{
			ResponseHeaderTimeout: 30 * time.Second,
			MaxIdleConnsPerHost:   4,
		}},
		authFails: newAuthFailLimiter(opts.FailedAuthPerMinute, opts.Now),
		refusals:  logBudget{perSecond: refusalLogsPerSecond, perHost: refusalLogsPerHost},
		uploads:   &uploadSlots{total: max(opts.MaxUploads, 0), perSigner: max(opts.MaxUploadsPerSigner, 0), patients: max(opts.MaxUploadsPatients, 0)},
	}
	if opts.PendingBytesPerSigner > 0 || opts.PendingBytesPatients > 0 || opts.PendingBytesTotal > 0 {
		s.pending = newPendingQuota(max(opts.PendingBytesPerSigner, 0), max(opts.PendingBytesPatients, 0), max(opts.PendingBytesTotal, 0),
			opts.Store, refs, s.metrics.pending)
	}
	if opts.Storage != nil { // with peers: refused above without
		s.replicas = newReplicator(opts.ReplicaBytesPerSecond)
	}
	refs.onAdd = func(keys []blobstore.Key) {
		if s.pending != nil {
			s.pending.referenced(keys)
		}
		s.replicas.want(keys...)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/blobs", s.instrument("put_blob", s.handlePut(false)))
	mux.HandleFunc("PUT /v1/blobs/{sha256}", s.instrument("put_blob", s.handlePut(false)))
	mux.HandleFunc("PUT /v1/shared-blobs/{sha256}", s.instrument("put_shared_blob", s.handlePut(true)))
	mux.HandleFunc("GET /v1/blobs/{sha256}", s.instrument("get_blob", s.handleGet))
	mux.HandleFunc("GET "+EmergencyKeyPath, s.instrument("emergency_key", s.handleEmergencyKey))
	mux.HandleFunc("GET "+ReplicaPathPrefix+"{owner}/{sha256}", s.instrument("replica", s.handleReplica))
	mux.HandleFunc("GET /healthz", s.instrument("healthz", s.handleHealth))
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	s.handler = mux
	return s, nil
}

// instrument counts and times a route, and logs the requests it refuses.
func (s *Server) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return s.metrics.instrument(route, h, s.logRefusal)
}

// refusalLogsPerSecond and refusalLogsPerHost bound the refusals logged,
// in all and per client host: a client that keeps being refused can
// neither flood the log nor keep another's refusals out of it, and the
// next line logged says how many went unlogged (all are counted in
// requests_total).
const (
	refusalLogsPerSecond = 50
	refusalLogsPerHost   = 5
	// maxLoggedReason bounds a refusal's reason in the log: a reason may
	// quote what the client sent.
	maxLoggedReason = 512
)

// logRefusal logs a request refused for who asked (401), what it may not
// do (403) or how often it asks (429): who tried what is the operator's
// to know, beside the chain's record of the reads that were allowed.
func (s *Server) logRefusal(route string, r *http.Request, e *apiError) {
	switch e.status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
	default:
		return
	}
	ok, unlogged := s.refusals.take(s.opts.Now(), clientHost(r.RemoteAddr))
	if !ok {
		return
	}
	address := r.Header.Get(HeaderAddress)
	if len(address) > 2*app.AddressSize {
		address = strings.ToValidUTF8(address[:2*app.AddressSize], "") + "..."
	}
	s.log.Info("request refused", "route", route, "status", e.status, "code", e.code, "reason", app.Cut(e.reason, maxLoggedReason),
		"client", r.RemoteAddr, "address", address, "unlogged_before", unlogged)
}

// logBudget lets through, each second, at most perSecond events, and at
// most perHost of one host, and counts the rest.
type logBudget struct {
	perSecond, perHost int
	mu                 sync.Mutex
	second             int64
	used               int
	byHost             map[netip.Addr]int
	dropped            int
}

// take reports whether an event from host at now may be logged and, when
// it may, how many were not since the last one that was.
func (b *logBudget) take(now time.Time, host netip.Addr) (ok bool, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sec := now.Unix(); sec != b.second || b.byHost == nil {
		b.second, b.used, b.byHost = sec, 0, map[netip.Addr]int{}
	}
	// Only hosts logged this second are tracked: at most perSecond.
	n := b.byHost[host]
	if b.used >= b.perSecond || n >= b.perHost {
		b.dropped++
		return false, 0
	}
	b.used++
	b.byHost[host] = n + 1
	dropped, b.dropped = b.dropped, 0
	return true, dropped
}

// Handler serves the sidecar's HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on addr (host:port; port 0 picks one) and serves in the
// background; it also starts the periodic sweep unless disabled.
func (s *Server) Start(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sidecar: listen %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Serve serves on l in the background (see Start).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.http != nil {
		return errors.New("sidecar: already started")
	}
	if s.opts.MaxConnections > 0 {
		l = netutil.LimitListener(l, s.opts.MaxConnections)
	}
	s.listener = l
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	s.stop = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sidecar HTTP server stopped", "err", err)
		}
	}()
	s.wg.Add(1)
	go s.sweepLoop(s.stop) // with the sweep disabled, only temporary uploads
	if s.opts.ScrubInterval > 0 {
		s.wg.Add(1)
		go s.scrubLoop(s.stop)
	}

	if s.replicas != nil {
		s.wg.Add(1)
		go s.replicaLoop(s.stop)
	}
	if s.pending != nil {
		// Count the pending uploads now rather than at the first upload.
		s.wg.Add(1)
		go func(stop <-chan struct{}) {
			defer s.wg.Done()
			ctx, cancel := untilStop(context.Background(), stop)
			defer cancel()
			if err := s.pending.ensure(ctx); err != nil {
				s.log.Error("counting the pending uploads failed; the first upload tries again", "err", err)
			}
		}(s.stop)
	}
	s.log.Info("sidecar listening", "addr", l.Addr().String(), "backend", s.store.Name(),
		"access_window", s.opts.AccessWindow.String(), "sweep_interval", s.opts.SweepInterval.String(),
		"scrub_interval", s.opts.ScrubInterval.String())
	return nil
}

// Addr is the address the server listens on (nil before Start).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Shutdown stops accepting requests, waits for those in flight (until ctx
// ends, then closes their connections), stops the sweep and closes the
// reference index (also when the server was never started).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, stop := s.http, s.stop
	s.mu.Unlock()
	if srv == nil {
		return s.refs.close()
	}
	close(stop)
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("sidecar: shutdown: %w", ctx.Err())
	}
	return errors.Join(err, s.refs.close())
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.failure = e
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `EMR-Signature realm="emrchain-sidecar"`)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(e.retryAfter/time.Second), 10))
	}
	writeJSON(w, e.status, ErrorBody{Error: e.reason, Code: e.code})
}

// retrySeconds rounds d up to whole seconds (Retry-After's unit), and to
// at least one.
func retrySeconds(d time.Duration) time.Duration {
	return max(time.Second, (d + time.Second - 1).Truncate(time.Second))
}

// unauthenticated is a 401: a failed authentication, charged to the
// client's host (authenticate).
func unauthenticated(format string, args ...any) *apiError {
	e := errf(http.StatusUnauthorized, "unauthenticated", format, args...)
	e.charged = true
	return e
}

// authenticate is authenticateSigned for a client host that has not used
// up its failed authentications, and charges the host each one that fails
// (401): a host that has used them up is refused before its request is
// parsed or the chain asked (authfail.go).
func (s *Server) authenticate(r *http.Request) (*emrv1.Member, *signedRequest, *apiError) {
	host := clientHost(r.RemoteAddr)
	refund, wait, ok := s.authFails.take(host)
	if !ok {
		s.metrics.refused(refusedAuthFailures)
		return nil, nil, tooManyRequests("auth_failures", wait,
			"too many failed authentications from %s, or too many at once: a host may fail %d times a minute, and have as many authenticating at the same moment (failed_auth_per_minute); until it may fail again every request from it is refused, validly signed or not",
			hostName(host), s.opts.FailedAuthPerMinute)
	}
	member, sr, aerr := s.authenticateSigned(r)
	if aerr == nil || !aerr.charged {
		refund()
	}
	return member, sr, aerr
}

// tooManyRequests is a 429 with code, whose message ends in when to retry,
// which Retry-After says too.
func tooManyRequests(code string, wait time.Duration, format string, args ...any) *apiError {
	return retryLater(http.StatusTooManyRequests, code, wait, format, args...)
}

// retryLater is an answer of status with code, whose message ends in when
// to retry, which Retry-After says too.
func retryLater(status int, code string, wait time.Duration, format string, args ...any) *apiError {
	retry := retrySeconds(wait)
	e := errf(status, code, format+"; retry in %s", append(args, retry)...)
	e.retryAfter = retry
	return e
}

// withinSkew: ts is at most skew before or after now; d is now - ts
// (time.Duration saturates, so a far-off ts cannot wrap into the window).
func withinSkew(now, ts time.Time, skew time.Duration) (d time.Duration, ok bool) {
	d = now.Sub(ts)
	return d, d <= skew && d >= -skew
}

// authenticateSigned checks the request signature against the member's
// key on the chain, the timestamp against the clock and the replay cache,
// and that the member is active. It returns the calling member.
func (s *Server) authenticateSigned(r *http.Request) (*emrv1.Member, *signedRequest, *apiError) {
	sr, err := parseSigned(r)
	if err != nil {
		return nil, nil, unauthenticated("%v", err)
	}
	now := s.opts.Now()
	if d, ok := withinSkew(now, sr.timestamp, s.opts.MaxClockSkew); !ok {
		return nil, nil, unauthenticated("stale timestamp: %s is %s away from the sidecar's clock %s (allowed skew %s)",
			sr.timestamp.UTC().Format(time.RFC3339Nano), d.Round(time.Millisecond), now.UTC().Format(time.RFC3339Nano), s.opts.MaxClockSkew)
	}
	// Before the chain judges the member (a key registered or rotated,
	// a member reinstated) or the request (an access event, a consent),
	// its node must have what the client saw committed.
	if aerr := s.reachHeight(r); aerr != nil {
		if aerr.code == CodeChainBehind && !s.firstSignedByMember(r.Context(), sr, now) {
			// Not a member's signature at the state the node has, or a
			// copy of a request already seen: the wait is charged to the
			// host like a failed authentication, so a host that signs
			// nothing, or replays what a member signed (the height header
			// is not signed), cannot keep requests waiting on the node for
			// free.
			aerr.charged = true
		}
		return nil, nil, aerr
	}
	member, err := s.chain.Member(r.Context(), sr.address)
	if errors.Is(err, ErrNotFound) {
		// A node still catching up may not know a member registered
		// lately: that is the node's state (503, retried elsewhere), not a
		// failed authentication counted against the caller's host.
		if _, herr := s.chain.Head(r.Context()); herr != nil {
			return nil, nil, chainError(herr)
		}
		return nil, nil, unauthenticated("%x is not a member of the chain", sr.address)
	}
	if err != nil {
		return nil, nil, chainError(err)
	}
	if !sr.verify(member.SignPubKey) {
		return nil, nil, unauthenticated("bad signature: it does not verify with the signing key %x registered for %x", member.SignPubKey, sr.address)
	}
	fresh, err := s.admit(sr, now)
	var busy *signerBusyError
	switch {
	case errors.Is(err, errReplayWindowPassed):
		return nil, nil, unauthenticated("stale timestamp: %v (allowed skew %s); sign the request anew", err, s.opts.MaxClockSkew)
	case errors.As(err, &busy):
		s.metrics.refused(refusedSignerRequests)
		return nil, nil, tooManyRequests("signer_quota", busy.retryAfter,
			"too many requests signed by %x: %d are within the replay window (%s), the limit per signer (replay_per_signer)",
			sr.address, busy.limit, s.opts.MaxClockSkew)
	case err != nil:
		s.metrics.refused(refusedReplayCacheFull)
		return nil, nil, errf(http.StatusServiceUnavailable, "busy", "too many requests in the replay window; retry later")
	}
	if !fresh {
		return nil, nil, unauthenticated("replayed request: this signed request was already received; sign each request anew")
	}
	if !app.IsActive(member) {
		return nil, nil, forbidden("member %x is %s", sr.address, app.StatusName(member.Status))
	}
	return member, sr, nil
}

// memberCheckWait bounds firstSignedByMember's lookup, which must not end
// with the request: a client that gives up during the height wait is not
// to be charged for it.
const memberCheckWait = 5 * time.Second

// firstSignedByMember says whether sr is signed with the key the node has
// for its signer, a member, and is that request's first copy: it admits
// sr to the replay cache (admit), as authentication would have, so a copy
// sent again is not.
func (s *Server) firstSignedByMember(ctx context.Context, sr *signedRequest, now time.Time) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), memberCheckWait)
	defer cancel()
	member, err := s.chain.Member(ctx, sr.address)
	if err != nil || !sr.verify(member.SignPubKey) {
		return false
	}
	fresh, err := s.admit(sr, now)
	return err == nil && fresh
}

// admit records the verified request sr in the replay cache (its clock
// checked at now): a request is remembered until its signature's window
// closes, and counts against its signer for a whole window from its
// arrival at least (a timestamp set back to just inside the window would
// otherwise leave the signer's quota within moments). It returns false
// for a request already seen.
func (s *Server) admit(sr *signedRequest, now time.Time) (bool, error) {
	expires := later(sr.timestamp, now).Add(s.opts.MaxClockSkew)
	return s.replay.admit(signerAddr(sr.address), sr.replayKey(), expires)
}

// PutResult is the JSON answer to a successful PUT.
type PutResult struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Created is false when the blob was already stored.
	Created bool `json:"created"`
}

// handlePut stores a record's ciphertext, or, shared, a share's.
func (s *Server) handlePut(shared bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.put(w, r, shared) }
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, shared bool) {
	caller, sr, aerr := s.authenticate(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	sum := blobstore.Sum(sr.bodySum)
	if p := r.PathValue("sha256"); p != "" {
		pathSum, err := blobstore.ParseSum(p)
		if err != nil {
			writeError(w, errf(http.StatusBadRequest, "bad_request", "path: %v", err))
			return
		}
		if pathSum != sum {
			writeError(w, errf(http.StatusBadRequest, "bad_request", "the path names blob %s but %s says %s", pathSum, HeaderBodySHA256, sum))
			return
		}
	}
	patientID, err := hex.DecodeString(r.Header.Get(HeaderPatient))
	if err != nil || len(patientID) != patientIDSize {
		writeError(w, errf(http.StatusBadRequest, "bad_request", "%s must be the patient id, %d hex characters", HeaderPatient, 2*patientIDSize))
		return
	}
	category := r.Header.Get(HeaderCategory)
	if err := checkCategory(category); err != nil {
		writeError(w, errf(http.StatusBadRequest, "bad_request", "%s must be the data category the blob is uploaded for: %v", HeaderCategory, err))
		return
	}
	key := blobKeyOf(shared, patientID, category, sum)
	size := r.ContentLength
	if size < 0 {
		writeError(w, errf(http.StatusLengthRequired, "length_required", "Content-Length is required"))
		return
	}
	ctx := r.Context()
	head, aerr := s.head(ctx)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	params, err := s.chain.Params(ctx)
	if err != nil {
		writeError(w, chainError(err))
		return
	}
	if uint64(size) > params.MaxBlobBytes {
		writeError(w, errf(http.StatusRequestEntityTooLarge, "too_large",
			"blob is %d bytes; the chain's limit (params.max_blob_bytes) is %d", size, params.MaxBlobBytes))
		return
	}
	if aerr := newAuthState(s.chain, caller, head, s.opts.AccessWindow).authorizePut(ctx, patientID, category, shared); aerr != nil {
		writeError(w, aerr)
		return
	}
	patient := caller.Role == emrv1.Role_ROLE_PATIENT
	release, aerr := s.takeUploadSlot(signerAddr(sr.address), patient, false)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer release()
	unlock, err := s.blobs.lockCtx(ctx, key)
	if err != nil {
		// The uploader hung up while another upload of the blob held it.
		writeError(w, errf(http.StatusRequestTimeout, "upload_timeout", "the upload ended while another upload of the same blob was in progress: %v", err))
		return
	}
	defer unlock()
	_, statErr := s.store.Stat(ctx, key)
	existed := statErr == nil
	var reserved *pendingBlob
	if !existed { // a second upload of stored bytes adds none
		if reserved, aerr = s.reservePending(ctx, signerAddr(sr.address), patient, key, size, head); aerr != nil {
			writeError(w, aerr)
			return
		}
	}
	body := newBodyDeadline(w, http.MaxBytesReader(w, r.Body, size), s.opts.UploadIdleTimeout, s.opts.UploadMinRate, s.metrics.bytesIn)
	if err := s.store.Put(ctx, key, body, size); err != nil {
		s.pending.release(reserved)
		switch {
		case body.timedOut():
			s.log.Info("upload timed out", "sha256", sum.String(), "uploader", hex.EncodeToString(caller.Address), "received", body.n, "size", size)
			rate := "" // upload_min_rate disabled
			if s.opts.UploadMinRate > 0 {
				rate = fmt.Sprintf(", and the body at %d bytes a second at least (upload_min_rate)", s.opts.UploadMinRate)
			}
			writeError(w, errf(http.StatusRequestTimeout, "upload_timeout",
				"the body came too slowly: %d of %d bytes in %s; each read must come within %s (upload_idle_timeout)%s",
				body.n, size, time.Since(body.start).Round(time.Millisecond), s.opts.UploadIdleTimeout, rate))
		case errors.Is(err, blobstore.ErrHashMismatch):
			writeError(w, errf(http.StatusBadRequest, "hash_mismatch", "the body does not hash to %s: nothing was stored (%v)", sum, err))
		case errors.Is(err, blobstore.ErrSizeMismatch):
			writeError(w, errf(http.StatusBadRequest, "size_mismatch", "the body is not the %d bytes announced: nothing was stored (%v)", size, err))
		case ctx.Err() != nil:
			writeError(w, errf(http.StatusBadRequest, "aborted", "upload aborted: %v", ctx.Err()))
		default:
			s.log.Error("blob store failed", "sha256", sum.String(), "key", key.String(), "err", err)
			writeError(w, errf(http.StatusInternalServerError, "store_error", "storing the blob failed"))
		}
		return
	}
	s.log.Info("blob stored", "sha256", sum.String(), "size", size, "uploader", hex.EncodeToString(caller.Address),
		"patient", hex.EncodeToString(patientID), "category", category, "shared", shared, "key", key.String(), "created", !existed)
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	writeJSON(w, status, PutResult{SHA256: sum.String(), Size: size, Created: !existed})
}

// reservePending counts an upload among the pending ones, or refuses it
// if it would pass a bound. The accounting learns references as the
// reference index reads blocks (the sweep's passes); before it refuses, the
// index reads the blocks up to head, so that records committed since count
// no more.
func (s *Server) reservePending(ctx context.Context, signer signerAddr, patient bool, key blobstore.Key, size int64, head Head) (*pendingBlob, *apiError) {
	b, err := s.pending.reserve(ctx, signer, patient, key, size)
	var qe *pendingQuotaError
	if errors.As(err, &qe) { // a bound refused it
		if behind, _ := s.refs.behind(head); behind {
			if _, cerr := s.refs.catchUp(ctx, s.chain, s.log); cerr != nil {
				s.log.Error("the reference index could not read the latest blocks for the upload quota", "err", cerr)
			}
			b, err = s.pending.reserve(ctx, signer, patient, key, size)
		}
	}
	switch {
	case err == nil:
		return b, nil
	case errors.As(err, &qe) && errors.Is(err, errSignerPendingFull):
		s.metrics.refused(refusedSignerPending)
		return nil, errf(http.StatusTooManyRequests, "signer_pending_quota",
			"the blobs %x uploaded that no committed record or share references yet hold %d bytes; this %d-byte upload would pass the limit per signer (pending_bytes_per_signer) of %d bytes: add the records of those uploads, or wait until the sweep removes the ones no record references",
			signer[:], qe.used, qe.size, qe.limit)
	case errors.As(err, &qe) && errors.Is(err, errPatientsPendingFull):
		s.metrics.refused(refusedPatientsPending)
		return nil, errf(http.StatusInsufficientStorage, "patients_pending_quota",
			"the blobs patients uploaded that no committed record or share references yet hold %d bytes on this sidecar; this %d-byte upload would pass their limit (pending_bytes_patients) of %d bytes: retry later",
			qe.used, qe.size, qe.limit)
	case errors.As(err, &qe):
		s.metrics.refused(refusedPending)
		return nil, errf(http.StatusInsufficientStorage, "pending_quota",
			"the blobs no committed record or share references yet hold %d bytes on this sidecar; this %d-byte upload would pass its limit (pending_bytes_total) of %d bytes: retry later",
			qe.used, qe.size, qe.limit)
	}
	s.log.Error("pending uploads accounting failed", "key", key.String(), "err", err)
	return nil, errf(http.StatusServiceUnavailable, "quota_unavailable", "cannot count the pending uploads to check the upload quotas: %v", err)
}

// authenticateGet authenticates a GET (authenticate), which has no body.
func (s *Server) authenticateGet(r *http.Request) (*emrv1.Member, *signedRequest, *apiError) {
	caller, sr, aerr := s.authenticate(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	if sr.bodySum != [32]byte(mustHex(emptySHA256)) {
		return nil, nil, errf(http.StatusBadRequest, "bad_request", "a GET has no body: %s must be the SHA-256 of nothing (%s)", HeaderBodySHA256, emptySHA256)
	}
	return caller, sr, nil
}

// getPrologue is what every GET of a blob or key does first: it
// authenticates the caller (authenticateGet), parses the request's path
// and query with parse (an error is a 400 with its text), and reads the
// node's head to authorize by. If any fails it has answered w, and ok is
// false.
func (s *Server) getPrologue(w http.ResponseWriter, r *http.Request, parse func() error) (caller *emrv1.Member, sr *signedRequest, head Head, ok bool) {
	caller, sr, aerr := s.authenticateGet(r)
	if aerr == nil {
		if err := parse(); err != nil {
			aerr = errf(http.StatusBadRequest, "bad_request", "%v", err)
		}
	}
	if aerr == nil {
		head, aerr = s.head(r.Context())
	}
	if aerr != nil {
		writeError(w, aerr)
		return nil, nil, Head{}, false
	}
	return caller, sr, head, true
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	var sum blobstore.Sum
	var ref BlobRef
	caller, sr, head, ok := s.getPrologue(w, r, func() (err error) {
		if sum, err = blobstore.ParseSum(r.PathValue("sha256")); err != nil {
			return fmt.Errorf("path: %w", err)
		}
		ref, err = parseBlobRef(r.URL.Query())
		return err
	})
	if !ok {
		return
	}
	ctx := r.Context()
	blob, aerr := newAuthState(s.chain, caller, head, s.opts.AccessWindow).authorizeGet(ctx, ref, sum)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	key := blob.key
	info, err := s.store.Stat(ctx, key)
	if err == nil && uint64(info.Size) != blob.size {
		// A damaged copy (torn or truncated by a disk or a restore): the
		// chain names the size. Read the blob through from a peer, whose
		// verified copy replaces this one, rather than serve these bytes.
		s.log.Error("stored blob has the wrong size: reading it from a peer", "sha256", sum.String(), "key", key.String(), "stored", info.Size, "chain", blob.size)
		s.foundDamaged(key)
		err = fmt.Errorf("%w: the stored copy has %d bytes, the chain says %d", blobstore.ErrNotFound, info.Size, blob.size)
	}
	if err == nil && r.Method == http.MethodGet {
		if _, _, partial, rerr := parseRange(r.Header.Get("Range"), info.Size); partial && rerr == nil {
			// A range is not checked as it is sent: the copy is, first
			// (rangecheck.go).
			if cerr := s.checkCopyForRange(ctx, key); errors.Is(cerr, blobstore.ErrNotFound) {
				err = cerr // dropped as damaged, or gone: read it through from a peer
			} else if cerr != nil {
				if ctx.Err() == nil {
					s.log.Error("checking the stored blob before serving a range failed", "sha256", sum.String(), "key", key.String(), "err", cerr)
				}
				writeError(w, errf(http.StatusInternalServerError, "store_error", "reading the blob failed"))
				return
			}
		}
	}
	if errors.Is(err, blobstore.ErrNotFound) {
		if perr := s.fetchFromPeers(ctx, r, signerAddr(sr.address), caller.Role == emrv1.Role_ROLE_PATIENT, blob); perr != nil {
			var refused *slotRefusedError
			if errors.As(perr, &refused) {
				writeError(w, refused.aerr)
				return
			}
			const notHere = "blob %s of %s is not stored on this sidecar, and %v"
			switch {
			case errors.Is(perr, errPeersBehind):
				writeError(w, retryLater(http.StatusServiceUnavailable, CodeChainBehind, time.Second, notHere, sum, ref, perr))
				return
			case errors.Is(perr, errPeersUnavailable):
				writeError(w, errf(http.StatusServiceUnavailable, "peers_unavailable", notHere, sum, ref, perr))
				return
			}
			var local *localStoreError
			if errors.As(perr, &local) {
				s.log.Error("blob store failed keeping a blob a peer served", "sha256", sum.String(), "key", key.String(), "err", local.err)
				writeError(w, errf(http.StatusInternalServerError, "store_error", "storing the blob fetched from a peer sidecar failed"))
				return
			}
			writeError(w, errf(http.StatusNotFound, "not_found", "blob %s of %s is not stored on this sidecar for that record's patient and category: %v", sum, ref, perr))
			return
		}
		info, err = s.store.Stat(ctx, key)
	}
	if err != nil {
		s.log.Error("blob stat failed", "sha256", sum.String(), "key", key.String(), "err", err)
		writeError(w, errf(http.StatusInternalServerError, "store_error", "reading the blob failed"))
		return
	}
	s.serveStored(w, r, key, info, caller.Address, head.Height, nil)
}

// serveStored answers r with the stored blob key (info: its Stat), or the
// range r asks, to reader; the whole blob is verified as it is sent. A
// replica (seal not nil) goes whole and sealed to its storage service.
func (s *Server) serveStored(w http.ResponseWriter, r *http.Request, key blobstore.Key, info blobstore.Info, reader []byte, height int64, seal *replicaSeal) {
	ctx, sum := r.Context(), key.Sum
	start, length, partial, rerr := parseRange(r.Header.Get("Range"), info.Size)
	if rerr != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
		writeError(w, errf(http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", "%v", rerr))
		return
	}
	rc, size, err := s.store.Get(ctx, key, start, length)
	if err != nil {
		if errors.Is(err, blobstore.ErrNotFound) {
			writeError(w, errf(http.StatusNotFound, "not_found", "blob %s is not stored on this sidecar", sum))
			return
		}
		if errors.Is(err, blobstore.ErrInvalidRange) { // the blob changed size meanwhile: impossible for a hash, but be exact
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			writeError(w, errf(http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", "%v", err))
			return
		}
		s.log.Error("blob read failed", "sha256", sum.String(), "err", err)
		writeError(w, errf(http.StatusInternalServerError, "store_error", "reading the blob failed"))
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "private, no-store")
	if seal != nil {
		seal.setHeaders(h, length)
	} else {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
		h.Set("Accept-Ranges", "bytes")
		h.Set("ETag", `"`+sum.String()+`"`)
	}
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	var n int64
	if r.Method != http.MethodHead {
		bp := s.bufs.Get().(*[]byte)
		cw := &countingWriter{w: &writeDeadline{w: w, rc: http.NewResponseController(w), idle: s.opts.UploadIdleTimeout}, c: s.metrics.bytesOut}
		if partial {
			// A range is not the blob: the reader checks the whole it
			// assembles against the chain's hash.
			_, err = io.CopyBuffer(cw, struct{ io.Reader }{rc}, *bp)
		} else {
			// The status goes out first, so that a copy found damaged is
			// a transfer cut short, whatever its size.
			if err = http.NewResponseController(w).Flush(); err == nil {
				if seal != nil {
					err = seal.copyVerified(cw, rc, length, sum, *bp)
				} else {
					_, err = copyVerified(cw, rc, length, sum, *bp)
				}
			}
		}
		s.bufs.Put(bp)
		n = cw.n
		if errors.Is(err, errDamagedCopy) {
			// Same size, other bytes (a flipped bit on a disk, a bad
			// restore): the reader gets a transfer cut short, never the
			// whole damaged blob. Dropping the copy lets the next GET read
			// it through from a peer (the reader's retry, or another's).
			s.foundDamaged(key)
			dropped, derr := s.dropDamagedCopy(context.WithoutCancel(ctx), key)
			s.log.Error("stored blob is damaged (its bytes do not hash to its SHA-256): not served; the next GET reads it from a peer, and a storage service copies it",
				"sha256", sum.String(), "key", key.String(), "sent", n, "dropped", dropped, "err", derr)
			panic(http.ErrAbortHandler)
		}
		if err != nil {
			s.log.Error("blob transfer interrupted", "sha256", sum.String(), "reader", hex.EncodeToString(reader), "sent", n, "err", err)
			return
		}
	}
	s.log.Info("blob served", "sha256", sum.String(), "reader", hex.EncodeToString(reader),
		"bytes", n, "range", r.Header.Get("Range"), "height", height)
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// parseRange interprets a Range header for a blob of size bytes: one range
// "bytes=a-b", "bytes=a-" or "bytes=-n". It returns the start, the length
// and whether the answer is partial. A header that is absent, malformed or
// asks for several ranges is ignored (the whole blob, 200), as HTTP allows;
// a well-formed single range that lies outside the blob is an error (416).
func parseRange(h string, size int64) (start, length int64, partial bool, err error) {
	if h == "" {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, false, nil
	}
	if a == "" { // suffix: the last n bytes
		n, ok := parseDecimal(b)
		if !ok {
			return 0, size, false, nil
		}
		if n == 0 || size == 0 {
			return 0, 0, false, fmt.Errorf("range %q selects nothing of a %d-byte blob", h, size)
		}
		n = min(n, size)
		return size - n, n, true, nil
	}
	first, ok := parseDecimal(a)
	if !ok {
		return 0, size, false, nil
	}
	last := size - 1
	if b != "" {
		l, ok := parseDecimal(b)
		if !ok || l < first {
			return 0, size, false, nil
		}
		last = min(l, size-1)
	}
	if first >= size {
		return 0, 0, false, fmt.Errorf("range %q starts beyond the %d-byte blob", h, size)
	}
	return first, last - first + 1, true, nil
}

// parseDecimal reads a non-negative decimal number of plain ASCII digits,
// as HTTP writes them (1*DIGIT): no sign, no spaces, no underscores, and
// nothing beyond int64. strconv alone would also take a sign.
func parseDecimal(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Health is the JSON answer of /healthz.
type Health struct {
	Status       string `json:"status"`
	Backend      string `json:"backend"`
	BackendError string `json:"backend_error,omitempty"`
	Height       int64  `json:"height,omitempty"`
	BlockTime    string `json:"block_time,omitempty"`
	ChainError   string `json:"chain_error,omitempty"`
	// EmergencyService is the member address, in hex, of the emergency
	// service this sidecar runs (Options.Emergency), if any: clients find
	// the sidecar that releases an emergency read's data key by it before
	// they log the read.
	EmergencyService string `json:"emergency_service,omitempty"`
}

// NotOpenHandler answers every request with 503 and why (backend names
// the configured blob store): what a sidecar's address serves while its
// store cannot be opened yet, so that clients move on to another sidecar
// and a monitor sees the reason. GET /healthz gets a Health body with
// status "unavailable"; everything else an ErrorBody, code
// "store_unavailable", without Retry-After: a client waits on a sidecar
// that says when to come back, and this one cannot say.
func NotOpenHandler(backend string, why func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason := why()
		if r.Method == http.MethodGet && r.URL.Path == "/healthz" {
			writeJSON(w, http.StatusServiceUnavailable, Health{Status: "unavailable", Backend: backend, BackendError: reason})
			return
		}
		writeError(w, errf(http.StatusServiceUnavailable, "store_unavailable", "the sidecar has not opened its blob store yet: %s", reason))
	})
}

// healthCheckTimeout bounds each of /healthz's two checks, and
// healthFresh is how long their answer is served again: /healthz is
// anonymous, so however often it is asked, the store and the node see at
// most one check each per healthFresh.
const healthFresh = time.Second

var healthCheckTimeout = 5 * time.Second // a variable for a test

// healthCache is the last /healthz answer, when its checks ended, and the
// checks in flight.
type healthCache struct {
	mu      sync.Mutex
	at      time.Time
	answer  Health
	running chan struct{} // closed when the checks in flight end; nil when none are
	// storeBusy and chainBusy are set while a check of the store, or of
	// the chain, has not returned (it may outlive its timeout).
	storeBusy, chainBusy atomic.Bool
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h, err := s.checkHealth(r.Context())
	if err != nil {
		return // the caller went away
	}
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

// checkHealth answers /healthz from the last checks when they ended less
// than healthFresh ago; otherwise it waits, until ctx ends, for checks of
// the store and the chain, which run once however many callers wait (one
// is started if none is in flight). An anonymous caller learns whether
// each answered, not the error: that names hosts, paths and buckets, and
// goes to the sidecar's log.
func (s *Server) checkHealth(ctx context.Context) (Health, error) {
	c := &s.health
	c.mu.Lock()
	if now := s.opts.Now(); !c.at.IsZero() && now.Sub(c.at) < healthFresh && now.Sub(c.at) >= 0 {
		defer c.mu.Unlock()
		return c.answer, nil
	}
	if c.running == nil {
		c.running = make(chan struct{})
		go s.runHealthChecks(c.running)
	}
	done := c.running
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return Health{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answer, nil
}

// runHealthChecks checks the store and the chain, keeps the answer and
// closes done. Its context is its own: a caller that hangs up must not
// leave an "unavailable" for the others. A check that does not return in
// time (a store on a hung mount ignores its context) is reported as such,
// and is not started again until it has returned.
func (s *Server) runHealthChecks(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), healthCheckTimeout)
	defer cancel()
	c := &s.health
	h := Health{Status: "ok", Backend: s.store.Name()}
	if s.opts.Emergency != nil {
		h.EmergencyService = hex.EncodeToString(s.opts.Emergency.Address())
	}
	// The two checks run side by side: a slow store must not use up the
	// node's time.
	var storeErr error
	storeChecked := make(chan struct{})
	go func() {
		defer close(storeChecked)
		_, storeErr = boundedCheck(ctx, &c.storeBusy, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.store.Ping(ctx)
		})
	}()
	head, chainErr := boundedCheck(ctx, &c.chainBusy, s.chain.Head)
	<-storeChecked
	if err := storeErr; err != nil {
		s.log.Error("health check: blob store", "backend", h.Backend, "err", err)
		h.Status, h.BackendError = "unavailable", healthFailure("the blob store", err)
	}
	if err := chainErr; err != nil {
		s.log.Error("health check: chain", "err", err)
		h.Status, h.ChainError = "unavailable", healthFailure("the node", err)
	} else {
		h.Height, h.BlockTime = head.Height, head.Time.UTC().Format(time.RFC3339Nano)
		if age, stale := s.staleHead(head); stale {
			// Every request is refused (chain_stale): say so here too.
			h.Status, h.ChainError = "unavailable", fmt.Sprintf("the node's latest block is %s old (more than max_head_age %s)", age.Round(time.Second), s.opts.MaxHeadAge)
		}
	}
	c.mu.Lock()
	c.at, c.answer, c.running = s.opts.Now(), h, nil
	c.mu.Unlock()
	close(done)
}

// errCheckRunning: the previous check has not returned yet.
var errCheckRunning = errors.New("the previous check has not returned")

// boundedCheck runs check until ctx ends, unless the previous call (busy)
// has not returned yet: a check that ignores its context then holds one
// goroutine, not one per call.
func boundedCheck[T any](ctx context.Context, busy *atomic.Bool, check func(context.Context) (T, error)) (T, error) {
	var zero T
	if !busy.CompareAndSwap(false, true) {
		return zero, errCheckRunning
	}
	type result struct {
		v   T
		err error
	}
	out := make(chan result, 1)
	go func() {
		defer busy.Store(false)
		v, err := check(ctx)
		out <- result{v, err}
	}()
	select {
	case r := <-out:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// healthFailure says which check failed and how, without the error.
func healthFailure(what string, err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s did not answer within %s", what, healthCheckTimeout)
	case errors.Is(err, errCheckRunning):
		return fmt.Sprintf("%s has not answered a check begun more than %s ago", what, healthCheckTimeout)
	}
	return fmt.Sprintf("%s failed the check (the sidecar's log has the error)", what)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// writeDeadline gives each write to a download's reader idle to complete
// (none when idle is negative): a reader that stops reading would
// otherwise hold the handler, its buffer and the blob's file or stream
// for as long as it keeps the connection.
type writeDeadline struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (d *writeDeadline) Write(p []byte) (int, error) {
	if d.idle > 0 {
		_ = d.rc.SetWriteDeadline(time.Now().Add(d.idle)) // not every writer has deadlines
	}
	return d.w.Write(p)
}
