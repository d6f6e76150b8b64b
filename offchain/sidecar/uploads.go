package sidecar

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Uploads in flight.
//
// A store's Put holds memory from the moment it starts, whatever the pace
// of the body: MinIO one part (5 MiB for blobs up to 48.8 GiB, allocated
// before the first byte; see the blobstore package), the filesystem store a
// 256 KiB copy buffer. A client may send the headers and then the body
// slowly, or never. So:
//
//   - the body is read under a deadline (bodyDeadline): each read must come
//     within UploadIdleTimeout, and the body as a whole at UploadMinRate
//     at least, after a first UploadIdleTimeout;
//   - the Puts in flight are bounded (uploadSlots): MaxUploads in all
//     (beyond: 503), MaxUploadsPerSigner of one signer (beyond: 429) and
//     MaxUploadsPatients of all patients (beyond: 503), with Retry-After,
//     taken before the body is read. Patients enroll themselves, one transaction each, so
//     without their own bound a few accounts sending bodies at
//     UploadMinRate could hold every slot for hours (as long as their
//     pending bytes allow) and deny uploads to the members a registrar
//     registered, who keep the rest.
//
// The memory of uploads in flight is therefore at most MaxUploads parts:
// 64 × 5 MiB = 320 MiB with MinIO by default, 16 MiB with the filesystem.

// Defaults of the upload bounds in Options.
const (
	DefaultUploadIdleTimeout   = 30 * time.Second
	DefaultUploadMinRate       = 64 << 10 // bytes a second
	DefaultMaxUploads          = 64
	DefaultMaxUploadsPerSigner = 8
	// DefaultMaxConnections bounds the connections a sidecar serves at
	// once (Options.MaxConnections).
	DefaultMaxConnections = 1024
)

// uploadRetryAfter is the Retry-After of an upload refused for want of a
// slot: uploads in flight end within an idle timeout when stalled.
const uploadRetryAfter = 5 * time.Second

var (
	errUploadsFull         = errors.New("too many uploads in flight")
	errSignerUploadsFull   = errors.New("too many uploads of this signer in flight")
	errPatientsUploadsFull = errors.New("too many uploads of patients in flight")
)

// UploadsPatientsShare is the default bound of the patients' uploads in
// flight for a total bound of total: half of it (0, no bound of its own,
// when the total is not positive or is 1).
func UploadsPatientsShare(total int) int {
	return max(total, 0) / 2
}

// uploadSlots bounds the store Puts in flight: in all, per signer, and of
// all signers who are patients (0: no bound).
type uploadSlots struct {
	total, perSigner, patients int

	mu            sync.Mutex
	inUse         int
	patientsInUse int
	bySigner      map[signerAddr]int
}

// acquire takes a slot for signer, a patient or not, or returns
// errSignerUploadsFull, errPatientsUploadsFull or errUploadsFull; release
// gives it back.
func (u *uploadSlots) acquire(signer signerAddr, patient bool) (release func(), err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.perSigner > 0 && u.bySigner[signer] >= u.perSigner {
		return nil, errSignerUploadsFull
	}
	if patient && u.patients > 0 && u.patientsInUse >= u.patients {
		return nil, errPatientsUploadsFull
	}
	if u.total > 0 && u.inUse >= u.total {
		return nil, errUploadsFull
	}
	if u.bySigner == nil {
		u.bySigner = make(map[signerAddr]int)
	}
	u.inUse++
	u.bySigner[signer]++
	if patient {
		u.patientsInUse++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			defer u.mu.Unlock()
			u.inUse--
			if patient {
				u.patientsInUse--
			}
			if u.bySigner[signer]--; u.bySigner[signer] <= 0 {
				delete(u.bySigner, signer)
			}
		})
	}, nil
}

// inFlight is the number of slots taken.
func (u *uploadSlots) inFlight() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.inUse
}

// takeUploadSlot is acquire, refusals answered as the client should see
// them (and counted).
func (s *Server) takeUploadSlot(signer signerAddr, patient bool) (release func(), aerr *apiError) {
	release, err := s.uploads.acquire(signer, patient)
	if err == nil {
		return release, nil
	}
	switch {
	case errors.Is(err, errSignerUploadsFull):
		s.metrics.refused(refusedSignerUploads)
		return nil, tooManyRequests("signer_uploads", uploadRetryAfter,
			"%x has %d uploads in flight on this sidecar, the limit per signer (max_uploads_per_signer)",
			signer[:], s.uploads.perSigner)
	case errors.Is(err, errPatientsUploadsFull):
		s.metrics.refused(refusedPatientsUploads)
		return nil, retryLater(http.StatusServiceUnavailable, "patients_uploads_busy", uploadRetryAfter,
			"patients have %d uploads in flight on this sidecar, their limit together (max_uploads_patients)",
			s.uploads.patients)
	}
	s.metrics.refused(refusedUploads)
	return nil, retryLater(http.StatusServiceUnavailable, "uploads_busy", uploadRetryAfter,
		"this sidecar has %d uploads in flight, its limit (max_uploads)",
		s.uploads.total)
}

// bodyDeadline reads an upload's body under a read deadline on its
// connection, moved at each read: within idle of now, and no later than
// start + idle + (bytes read) / minRate. So a stalled body ends within
// idle, and one that trickles below minRate soon after; a body at minRate
// or faster is never cut. When the body hits its end, net/http lifts the
// deadline itself (it starts its background read of the connection), and
// no read after the end sets one again (the stores try a byte past the
// end to check the size), so the store may take its time to commit
// (TestPutSlowCommitOutlastsIdleTimeout). It counts the bytes read into
// bytesIn too.
type bodyDeadline struct {
	rc      *http.ResponseController
	idle    time.Duration // <= 0: no deadline at all
	minRate int64         // bytes a second; <= 0: none
	start   time.Time
	n       int64
	bytesIn prometheus.Counter
	// failed: SetReadDeadline is not supported here; read without.
	failed bool
	// ended: the body hit its end; the connection is net/http's again.
	ended bool
	// errRecorder reads through; its err tells a read that failed on the
	// deadline (timedOut).
	errRecorder
}

func newBodyDeadline(w http.ResponseWriter, r io.Reader, idle time.Duration, minRate int64, bytesIn prometheus.Counter) *bodyDeadline {
	return &bodyDeadline{errRecorder: errRecorder{r: r}, rc: http.NewResponseController(w), idle: idle, minRate: minRate, start: time.Now(), bytesIn: bytesIn}
}

func (b *bodyDeadline) deadline(now time.Time) time.Time {
	d := now.Add(b.idle)
	if b.minRate > 0 {
		allowed := b.idle + time.Duration(float64(b.n)/float64(b.minRate)*float64(time.Second))
		if r := b.start.Add(allowed); r.Before(d) {
			d = r
		}
	}
	return d
}

func (b *bodyDeadline) Read(p []byte) (int, error) {
	if b.idle > 0 && !b.failed && !b.ended {
		if err := b.rc.SetReadDeadline(b.deadline(time.Now())); err != nil {
			b.failed = true
		}
	}
	n, err := b.errRecorder.Read(p)
	b.ended = b.ended || err == io.EOF
	b.n += int64(n)
	b.bytesIn.Add(float64(n))
	return n, err
}

// timedOut: a read failed on the deadline.
func (b *bodyDeadline) timedOut() bool { return isTimeout(b.err) }

// isTimeout: err is a timeout, among them an exceeded deadline
// (os.ErrDeadlineExceeded is a net.Error whose Timeout is true).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errRecorder reads r and remembers its first failure (io.EOF is none) in err,
// so that the reader's failure can be told from its consumer's.
type errRecorder struct {
	r   io.Reader
	err error
}

func (b *errRecorder) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}
