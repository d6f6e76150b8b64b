package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cometbft/cometbft/libs/log"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rs/cors"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// REST server limits.
const (
	// restMaxBody bounds the body of every request but a broadcast (queries
	// have none).
	restMaxBody = 64 << 10
	// restTxBodyMargin is what a broadcast's JSON may carry beyond the
	// base64 of the largest tx.
	restTxBodyMargin = 16 << 10
	// restTxPath is the broadcast route (tx_service.proto).
	restTxPath = "/emrchain/v1/txs"
	// openAPIPath serves emrv1.OpenAPI.
	openAPIPath = "/openapi.json"
)

// heightHeader is heightMD as an HTTP header.
var heightHeader = textproto.CanonicalMIMEHeaderKey(heightMD)

// restService is the REST gateway: grpc-gateway's ServeMux with the Query
// and TxService handlers registered in-process (Register*HandlerServer), so
// a REST call runs the very queryServer and txServer methods the gRPC server
// runs, without a loopback connection. Incoming x-emrchain-height and the
// answered height travel as metadata, which the in-process handlers carry
// (see queryServer). REST keeps working with [grpc] disabled.
type restService struct {
	srv    *http.Server
	txs    *txServer
	addr   string
	done   chan error
	logger log.Logger
}

// restMaxConnections bounds the REST gateway's connections served at
// once; more wait in the listen queue until one closes.
const restMaxConnections = 512

// startREST serves on [api] address (taken by listenServices) in the
// background.
func startREST(env serviceEnv, queries *queryServer, txs *txServer) (*restService, error) {
	logger := env.logger.With("module", "rest")
	// Every connection holds a file descriptor, which consensus shares.
	lis := netutil.LimitListener(take(&env.listeners.api), restMaxConnections)
	handler, err := newRESTHandler(queries, txs, env.nodeHealth, env.appConfig.API.CORSAllowedOrigins,
		newHostFilter(env.appConfig.App.AllowedHosts), logger)
	if err != nil {
		lis.Close()
		return nil, err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// A broadcast may wait broadcast_timeout for its block.
		WriteTimeout:   txs.timeout + 30*time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       stdlog.New(logWriter{logger}, "", 0),
	}
	s := &restService{srv: srv, txs: txs, addr: lis.Addr().String(), done: make(chan error, 1), logger: logger}
	go func() { s.done <- srv.Serve(lis) }()
	logger.Info("REST server listening", "address", s.addr, "openapi", "http://"+s.addr+openAPIPath,
		"cors_allowed_origins", strings.Join(env.appConfig.API.CORSAllowedOrigins, ","),
		"allowed_hosts", strings.Join(env.appConfig.App.AllowedHosts, ","))
	return s, nil
}

// Name implements service.
func (s *restService) Name() string { return "rest" }

// Stop ends waiting broadcasts, then shuts the server down gracefully; when
// ctx ends first, the remaining connections are closed.
func (s *restService) Stop(ctx context.Context) error {
	s.txs.close()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if err == nil {
		s.logger.Info("REST server stopped", "address", s.addr)
	}
	return err
}

// newRESTHandler is the whole REST API: the gateway, /openapi.json, body
// limits, ?height=, CORS (when origins are given), the Host check (hosts)
// and panic recovery.
func newRESTHandler(queries *queryServer, txs *txServer, health func() nodeHealth, corsOrigins []string, hosts hostFilter, logger log.Logger) (http.Handler, error) {
	ctx := context.Background()
	gw := runtime.NewServeMux(
		// A route is served for its method only: the gateway would
		// otherwise serve a GET route for a form POST, or for
		// X-HTTP-Method-Override, reading parameters from the body where
		// neither the height nor the query-parameter check looks.
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithErrorHandler(restError),
		runtime.WithRoutingErrorHandler(restRoutingError),
		runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
			if textproto.CanonicalMIMEHeaderKey(key) == heightHeader {
				return heightMD, true
			}
			return runtime.DefaultHeaderMatcher(key)
		}),
		runtime.WithOutgoingHeaderMatcher(func(key string) (string, bool) {
			if key == heightMD {
				return heightHeader, true
			}
			return "", false
		}),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true},
			// A misspelt field ("asynch") is an error, not silently ignored.
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
	)
	if err := emrv1.RegisterQueryHandlerServer(ctx, gw, queries); err != nil {
		return nil, fmt.Errorf("rest server: %w", err)
	}
	if err := emrv1.RegisterTxServiceHandlerServer(ctx, gw, txs); err != nil {
		return nil, fmt.Errorf("rest server: %w", err)
	}

	params, err := routeParamsOf(emrv1.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("rest server: %w", err)
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case openAPIPath:
			serveOpenAPI(w, r)
			return
		case restHealthPath:
			serveHealth(w, r, health)
			return
		}
		limit := int64(restMaxBody)
		if r.URL.Path == restTxPath {
			limit = int64(base64.StdEncoding.EncodedLen(txs.maxTxBytes()) + restTxBodyMargin)
		}
		if r.ContentLength > limit {
			writeRESTError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
				fmt.Sprintf("request body of %d bytes is above the limit of %d", r.ContentLength, limit))
			return
		}
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit)}
		if err := heightParam(r); err != nil {
			writeRESTError(w, http.StatusBadRequest, codes.InvalidArgument, err.Error())
			return
		}
		if err := params.check(r); err != nil {
			writeRESTError(w, http.StatusBadRequest, codes.InvalidArgument, err.Error())
			return
		}
		gw.ServeHTTP(w, r)
	})
	if len(corsOrigins) > 0 {
		h = cors.New(cors.Options{
			AllowedOrigins: corsOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost},
			AllowedHeaders: []string{"Content-Type", heightHeader},
			ExposedHeaders: []string{heightHeader},
			MaxAge:         600,
		}).Handler(h)
	}
	h = hosts.wrap(h, func(w http.ResponseWriter, why string) {
		writeRESTError(w, http.StatusForbidden, codes.PermissionDenied, why)
	})
	return recoverREST(h, logger), nil
}

// heightParam moves ?height=N into the x-emrchain-height header, which the
// gateway passes on as metadata; the query parameter and the header may not
// disagree.
func heightParam(r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("malformed query string: %v", err)
	}
	vals, ok := q["height"]
	if !ok {
		return nil
	}
	for _, v := range append(vals[1:], r.Header.Values(heightHeader)...) {
		if v != vals[0] {
			return fmt.Errorf("conflicting heights: ?height=%s and %s", app.QuoteInput(vals[0]), app.QuoteInput(v))
		}
	}
	r.Header.Set(heightHeader, vals[0])
	q.Del("height")
	r.URL.RawQuery = q.Encode()
	return nil
}

// routeParams is, for each route of the OpenAPI document, the query
// parameters it takes. The gateway ignores a parameter its route's
// request has no field for, and a route whose request has no query fields
// never reads the query at all: a misspelt filter ("?categroy=imaging")
// would answer unfiltered, and "?async=true" on a POST would be dropped.
// A request naming any other parameter (besides height) is refused.
type routeParams []routeParam

type routeParam struct {
	method   string
	segments []string // a "{name}" segment matches any one segment
	allowed  map[string]bool
}

// routeParamsOf reads the routes of an OpenAPI (Swagger 2) document.
func routeParamsOf(doc []byte) (routeParams, error) {
	var spec struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &spec); err != nil {
		return nil, fmt.Errorf("the OpenAPI document: %w", err)
	}
	var out routeParams
	for path, ops := range spec.Paths {
		for method, op := range ops {
			rp := routeParam{method: strings.ToUpper(method), segments: strings.Split(strings.Trim(path, "/"), "/"), allowed: map[string]bool{}}
			for _, p := range op.Parameters {
				if p.In == "query" {
					rp.allowed[p.Name] = true
				}
			}
			out = append(out, rp)
		}
	}
	return out, nil
}

// check refuses a query parameter r's route does not take (its JSON name,
// or the proto name of each dotted part: "page.after", "study_id").
// Requests no route matches are left to the gateway's 404 and 405.
func (rs routeParams) check(r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	segments := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	for _, rp := range rs {
		if rp.method != method || !matchSegments(rp.segments, segments) {
			continue
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return fmt.Errorf("malformed query string: %v", err)
		}
		for _, key := range slices.Sorted(maps.Keys(q)) {
			if !rp.allowed[key] && !rp.allowed[jsonPath(key)] {
				return fmt.Errorf("unknown query parameter %s for %s %s (%s lists each route's)", app.QuoteInput(key), method, "/"+strings.Join(rp.segments, "/"), openAPIPath)
			}
		}
		return nil
	}
	return nil
}

func matchSegments(template, path []string) bool {
	if len(template) != len(path) {
		return false
	}
	for i, t := range template {
		if !strings.HasPrefix(t, "{") && t != path[i] {
			return false
		}
	}
	return true
}

// jsonPath is a dotted path of proto field names in their JSON form
// ("study_id.page_size" → "studyId.pageSize").
func jsonPath(key string) string {
	parts := strings.Split(key, ".")
	for i, part := range parts {
		words := strings.Split(part, "_")
		for j := 1; j < len(words); j++ {
			if words[j] != "" {
				words[j] = strings.ToUpper(words[j][:1]) + words[j][1:]
			}
		}
		parts[i] = strings.Join(words, "")
	}
	return strings.Join(parts, ".")
}

// restHealthPath answers whether the node serves current reads: what
// grpc.health.v1 says over gRPC.
const restHealthPath = "/healthz"

// restHealth is the JSON of GET /healthz.
type restHealth struct {
	Status     string    `json:"status"` // SERVING or NOT_SERVING, as grpc.health.v1
	CatchingUp bool      `json:"catching_up"`
	Height     int64     `json:"height"`
	BlockTime  time.Time `json:"block_time,omitzero"` // of the block at height
	Reason     string    `json:"reason,omitempty"`    // why NOT_SERVING
}

// serveHealth answers 200 while the node serves reads that keep up with
// the chain, and 503 (Retry-After) with the reason while it catches up,
// holds no committed state or its latest block is older than [grpc]
// max_head_age (servingStatus): a load balancer sends clients elsewhere
// meanwhile.
func serveHealth(w http.ResponseWriter, r *http.Request, health func() nodeHealth) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeRESTError(w, http.StatusMethodNotAllowed, codes.Unimplemented, "method "+r.Method+" not allowed on "+restHealthPath)
		return
	}
	h := health()
	body, _ := json.Marshal(restHealth{Status: h.status.String(), CatchingUp: h.head.catchingUp, Height: h.head.height,
		BlockTime: h.head.time.UTC(), Reason: h.reason})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	code := http.StatusOK
	if h.status != healthpb.HealthCheckResponse_SERVING {
		w.Header().Set("Retry-After", "1")
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		_, _ = w.Write(append(body, '\n'))
	}
}

// serveOpenAPI serves the OpenAPI document generated from the protos.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeRESTError(w, http.StatusMethodNotAllowed, codes.Unimplemented, "method "+r.Method+" not allowed on "+openAPIPath)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	if r.Method == http.MethodGet {
		_, _ = w.Write(emrv1.OpenAPI)
	}
}

// restErrorBody is every REST error: the gRPC status code (as a number and
// by name) and the message, which for app errors is the app's error text.
// A NOT_FOUND also says the height it was read at, as a found object's
// answer does (and as the X-Emrchain-Height header): a string, as the
// height of every answer is in JSON. (The OpenAPI document's
// ErrorBody, in query.proto, describes this body.)
type restErrorBody struct {
	Code    codes.Code `json:"code"`
	Status  string     `json:"status"`
	Message string     `json:"message"`
	Height  int64      `json:"height,omitempty,string"`
}

// maxRESTErrorMessage bounds an error's message: the gateway's own parse
// errors quote what they could not parse, whole.
const maxRESTErrorMessage = 512

func writeRESTError(w http.ResponseWriter, httpStatus int, code codes.Code, msg string) {
	writeRESTErrorAt(w, httpStatus, code, msg, 0)
}

// writeRESTErrorAt is writeRESTError for an answer read at height (0 =
// none: the header and the body's height are left out).
func writeRESTErrorAt(w http.ResponseWriter, httpStatus int, code codes.Code, msg string, height int64) {
	body, _ := json.Marshal(restErrorBody{Code: code, Status: code.String(), Message: app.Cut(msg, maxRESTErrorMessage), Height: height})
	h := w.Header()
	h.Del(heightHeader)
	if height > 0 {
		h.Set(heightHeader, strconv.FormatInt(height, 10))
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if code == codes.Unavailable || code == codes.ResourceExhausted {
		// A node catching up, a full mempool, a height not committed yet.
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(append(body, '\n'))
}

// limitedBody is a request body cut at the REST limit, which remembers
// being cut: the gateway reports the cut as a malformed body, and
// restError answers 413 for it, as for a Content-Length above the limit.
type limitedBody struct {
	io.ReadCloser
	exceeded bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		b.exceeded = true
	}
	return n, err
}

// restError is the gateway's error handler: the HTTP status follows the
// gRPC code (InvalidArgument 400, PermissionDenied 403, NotFound 404,
// AlreadyExists 409, ...).
func restError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if body, ok := r.Body.(*limitedBody); ok && body.exceeded {
		writeRESTError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "the request body is above the limit")
		return
	}
	st := grpcstatus.Convert(err)
	code := st.Code()
	if code == codes.Unknown {
		// Errors the gateway itself raises without a status are about the
		// request (its body or parameters), never about the node.
		code = codes.InvalidArgument
	}
	writeRESTErrorAt(w, runtime.HTTPStatusFromCode(code), code, st.Message(), answeredHeight(ctx, code))
}

// answeredHeight is the height a NOT_FOUND from the query server was read
// at (the x-emrchain-height it set, which the gateway hands the error
// handler as server metadata); 0 for any other error, which says none.
func answeredHeight(ctx context.Context, code codes.Code) int64 {
	if code != codes.NotFound {
		return 0
	}
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return 0
	}
	vals := md.HeaderMD.Get(heightMD)
	if len(vals) != 1 {
		return 0
	}
	h, err := strconv.ParseInt(vals[0], 10, 64)
	if err != nil || h <= 0 {
		return 0
	}
	return h
}

// restRoutingError answers requests no route matches: 404, or 405 when the
// path exists for another method.
func restRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeRESTError(w, httpStatus, codes.Unimplemented, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
	case http.StatusNotFound:
		// Still 404, but UNIMPLEMENTED in the body, as gRPC answers an
		// unknown method: a program must not read a mistyped path (or an
		// API version this node does not serve) as NOT_FOUND, "no such
		// patient".
		writeRESTError(w, httpStatus, codes.Unimplemented, fmt.Sprintf("no such route: %s %s (the routes are in %s)", r.Method, app.QuoteInput(r.URL.Path), openAPIPath))
	default:
		writeRESTError(w, http.StatusBadRequest, codes.InvalidArgument, http.StatusText(httpStatus))
	}
}

// recoverREST turns a panic in a handler into a JSON 500 instead of a
// dropped connection.
func recoverREST(next http.Handler, logger log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logger.Error("REST handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeRESTError(w, http.StatusInternalServerError, codes.Internal, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// logWriter sends net/http's own log lines (TLS handshakes, bad requests)
// to the node's logger.
type logWriter struct{ logger log.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.logger.Debug("http server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
