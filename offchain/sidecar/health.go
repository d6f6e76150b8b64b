package sidecar

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

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
