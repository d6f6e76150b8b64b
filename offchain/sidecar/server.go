package sidecar

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// MaxUploads bounds the uploads whose body is being read at once: beyond, an upload is refused
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
	// MetricsFrom are the networks whose hosts (the connection's address)
	// may read /metrics; others get 403. Nil means loopback only
	// (DefaultMetricsFrom); empty, not nil, means nobody. The counters say
	// when break-glass keys are released and reads served, which is no
	// outsider's business.
	MetricsFrom []netip.Prefix
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
	// holds what was uploaded to it, and relays the rest from its peers.
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
	if opts.MetricsFrom == nil {
		opts.MetricsFrom = DefaultMetricsFrom()
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
	mux.Handle("GET /metrics", s.metricsFromAllowed(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{})))
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
		if aerr.code == CodeChainBehind && !s.firstSignedByMember(r.Context(), sr) {
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
	fresh, err := s.admit(sr)
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
func (s *Server) firstSignedByMember(ctx context.Context, sr *signedRequest) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), memberCheckWait)
	defer cancel()
	member, err := s.chain.Member(ctx, sr.address)
	if err != nil || !sr.verify(member.SignPubKey) {
		return false
	}
	fresh, err := s.admit(sr)
	return err == nil && fresh
}

// admit records the verified request sr in the replay cache: a request
// is remembered until its signature's window (its timestamp plus the
// skew) closes, and counts against its signer for a whole window from its
// admission at least (a timestamp set back to just inside the window would
// otherwise leave the signer's quota within moments). It returns false
// for a request already seen, and errReplayWindowPassed for one whose
// window closed before it got here (its first copy may be forgotten).
func (s *Server) admit(sr *signedRequest) (bool, error) {
	skew := s.opts.MaxClockSkew
	return s.replay.admit(signerAddr(sr.address), sr.replayKey(), sr.timestamp.Add(skew), skew)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// DefaultMetricsFrom is who may read /metrics unless Options.MetricsFrom
// says otherwise: the loopback networks (a Prometheus on the same host).
func DefaultMetricsFrom() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// metricsFromAllowed serves h to hosts within Options.MetricsFrom, 403 to
// others. The host is the connection's (r.RemoteAddr): behind a reverse
// proxy on the same host every request comes from loopback, and the proxy
// must keep /metrics to itself.
func (s *Server) metricsFromAllowed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			for _, p := range s.opts.MetricsFrom {
				if p.Contains(ap.Addr().Unmap()) {
					h.ServeHTTP(w, r)
					return
				}
			}
		}
		writeError(w, forbidden("/metrics is served to the hosts of the sidecar's metrics_from only"))
	})
}
