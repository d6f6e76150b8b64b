package sidecar

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the sidecar's Prometheus series (namespace emrchain_sidecar).
type metrics struct {
	reg        *prometheus.Registry
	bytesIn    prometheus.Counter
	bytesOut   prometheus.Counter
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	sweepRuns  prometheus.Counter
	sweepDel   prometheus.Counter
	sweepErrs  prometheus.Counter
	sweepBytes prometheus.Counter
	refusals   *prometheus.CounterVec
	pending    prometheus.Gauge
	damaged    prometheus.Counter
	// emergencyKeys counts the data keys released by the emergency
	// service (emergency.go).
	emergencyKeys prometheus.Counter
	// replicated counts the blobs copied from peers by the storage service
	// (replica.go).
	replicated prometheus.Counter
}

// Reasons of emrchain_sidecar_quota_refusals_total.
const (
	// refusedSignerRequests: the signer holds replay_per_signer requests
	// in the replay window (429).
	refusedSignerRequests = "signer_requests"
	// refusedReplayCacheFull: the replay cache is full (503).
	refusedReplayCacheFull = "replay_cache_full"
	// refusedAuthFailures: the client's host used up its failed
	// authentications, failed_auth_per_minute, or had as many in flight at
	// once (429).
	refusedAuthFailures = "auth_failures"
	// refusedSignerPending: the signer's pending uploads would pass
	// pending_bytes_per_signer (429).
	refusedSignerPending = "signer_pending_bytes"
	// refusedPatientsPending: the patients' pending uploads would pass
	// pending_bytes_patients.
	refusedPatientsPending = "patients_pending_bytes"
	// refusedPending: all pending uploads would pass pending_bytes_total
	// (507).
	refusedPending = "pending_bytes"
	// refusedSignerUploads: the signer has max_uploads_per_signer uploads
	// in flight (429).
	refusedSignerUploads = "signer_uploads"
	// refusedUploads: the sidecar has max_uploads uploads in flight (503).
	refusedUploads = "uploads"
	// refusedPatientsUploads: patients have max_uploads_patients uploads
	// in flight (503).
	refusedPatientsUploads = "patients_uploads"
)

func newMetrics(reg *prometheus.Registry) *metrics {
	const ns, sub = "emrchain", "sidecar"
	m := &metrics{
		reg: reg,
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_in_total", Help: "Ciphertext bytes received in PUT bodies."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_out_total", Help: "Ciphertext bytes sent in GET responses."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "Requests by route and outcome."}, []string{"route", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "request_duration_seconds", Help: "Request latency by route, until the last byte.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}},
			[]string{"route"}),
		sweepRuns: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sweep_runs_total", Help: "Garbage-collection passes."}),
		sweepDel: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sweep_deleted_total", Help: "Unreferenced blobs deleted by the sweep."}),
		sweepErrs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sweep_errors_total", Help: "Blobs the sweep could not check or delete."}),
		sweepBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sweep_deleted_bytes_total", Help: "Bytes freed by the sweep."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "quota_refusals_total", Help: "Requests refused by a quota, a full replay cache or a host's failed authentications, by the limit that refused them."},
			[]string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "pending_bytes", Help: "Bytes of stored blobs that no committed record or share references yet, as the upload quotas count them."}),
		damaged: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "damaged_copies_total", Help: "Reads (GETs, range checks, scrub passes) that found a stored copy damaged (bytes that do not hash to the blob's SHA-256) and did not serve it; two reads of one copy count twice."}),
		emergencyKeys: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "emergency_keys_released_total", Help: "Record data keys the emergency service released to clinicians, against their committed emergency reads."}),
		replicated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "blobs_replicated_total", Help: "Committed blobs copied from peer sidecars by this sidecar's storage service (replicas and repairs)."}),
	}
	reg.MustRegister(m.bytesIn, m.bytesOut, m.requests, m.latency, m.sweepRuns, m.sweepDel, m.sweepErrs, m.sweepBytes, m.refusals, m.pending, m.damaged, m.emergencyKeys, m.replicated)
	return m
}

// refused counts a refusal for reason.
func (m *metrics) refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

// defaultRegistry is a fresh registry with the Go and process collectors.
func defaultRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// outcome names a status code for the requests_total label.
func outcome(status int) string {
	switch {
	case status == http.StatusOK, status == http.StatusCreated:
		return "ok"
	case status == http.StatusPartialContent:
		return "partial"
	case status == http.StatusBadRequest:
		return "bad_request"
	case status == http.StatusUnauthorized:
		return "unauthenticated"
	case status == http.StatusForbidden:
		return "forbidden"
	case status == http.StatusNotFound:
		return "not_found"
	case status == http.StatusConflict:
		return "conflict"
	case status == http.StatusLengthRequired:
		return "length_required"
	case status == http.StatusRequestEntityTooLarge:
		return "too_large"
	case status == http.StatusRequestedRangeNotSatisfiable:
		return "range_not_satisfiable"
	case status == http.StatusTooManyRequests:
		return "too_many_requests"
	case status == http.StatusServiceUnavailable:
		return "unavailable"
	case status == http.StatusInsufficientStorage:
		return "insufficient_storage"
	case status >= 500:
		return "error"
	}
	return strconv.Itoa(status)
}

// instrument counts and times a route; done, when not nil, is told of each
// request answered with an error (writeError).
func (m *metrics) instrument(route string, h http.HandlerFunc, done func(route string, r *http.Request, e *apiError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			// A handler that cuts a transfer short (http.ErrAbortHandler:
			// a damaged copy) is counted too, as aborted.
			if p := recover(); p != nil {
				m.requests.WithLabelValues(route, "aborted").Inc()
				m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
				panic(p)
			}
		}()
		h(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		m.requests.WithLabelValues(route, outcome(status)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		if rec.failure != nil && done != nil {
			done(route, r, rec.failure)
		}
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status  int
	failure *apiError // what writeError answered, if it did
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// countingWriter counts the bytes written through it into a counter.
type countingWriter struct {
	w io.Writer
	c prometheus.Counter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.c.Add(float64(n))
	return n, err
}
