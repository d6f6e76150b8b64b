package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// chainBlob is a ciphertext blob as the chain records it: the name the
// sidecars file it under, its SHA-256 and its size.
type chainBlob struct {
	ref  sidecar.BlobRef
	sum  []byte
	size uint64
}

// recordBlob is the ciphertext of a record.
func recordBlob(rec *emrv1.Record) chainBlob {
	return chainBlob{sidecar.RecordRef(rec.PatientId, rec.Sequence), rec.CiphertextSha256, rec.Size}
}

// shareBlob is the ciphertext of a research share.
func shareBlob(sh *emrv1.Share) chainBlob {
	return chainBlob{sidecar.ShareRef(sh.PatientId, sh.Sequence), sh.SharedSha256, sh.Size}
}

// rounds is how many rounds over the sidecars a download asks them in,
// and the delay between two: three with retry (just after its read was
// committed, which a sidecar behind a node a block late has not seen) and
// a RetryDelay that is not negative, else one.
func (o TransferOptions) rounds(retry bool) (int, time.Duration) {
	delay := o.RetryDelay
	if delay == 0 {
		delay = 500 * time.Millisecond
	}
	if retry && delay > 0 {
		return 3, delay
	}
	return 1, delay
}

// fetchBlob downloads blob from the first sidecar that serves it intact,
// into a scratch file in dir positioned at its start. retry allows two more
// rounds when no sidecar served it: a sidecar behind a node a block late
// has not seen an access event committed a moment ago. A sidecar that
// served other bytes than the record's is not asked again, and its lie is
// reported (ErrCiphertextMismatch) only when no other sidecar served the
// blob either: one bad copy must not cost the read an honest sidecar would
// serve a round later.
func fetchBlob(ctx context.Context, s Recipient, blob chainBlob, dir string, opts TransferOptions, retry bool) (*scratchFile, string, error) {
	if len(blob.sum) != sha256.Size {
		return nil, "", fmt.Errorf("%w: the record's hash is %d bytes", ErrCiphertextMismatch, len(blob.sum))
	}
	if blob.size > math.MaxInt64 {
		return nil, "", fmt.Errorf("record size %d out of range", blob.size)
	}
	rounds, delay := opts.rounds(retry)
	// Every distinct failure of every round, in order: a sidecar that cut
	// a damaged copy's transfer short answers 404 in the next round if no
	// peer holds the blob, and the caller needs both to know why.
	var fails sidecarErrors
	sidecars := opts.distinctSidecars()
	lies := map[string]string{} // sidecar -> how its answer was not the blob
	var last map[string]error   // each sidecar's failure in the last round
	for round := 0; round < rounds && len(lies) < len(sidecars); round++ {
		cutShort := false
		if round > 0 {
			if err := ctxtime.Sleep(ctx, delay); err != nil {
				return nil, "", err
			}
		}
		last = map[string]error{}
		for _, u := range sidecars {
			if _, lied := lies[u]; lied {
				continue
			}
			var f *scratchFile
			err := retryLater(ctx, func() error {
				var err error
				f, err = fetchFrom(ctx, s, u, blob, dir, opts)
				return err
			})
			if err == nil {
				return f, u, nil
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			var m *mismatchError
			if errors.As(err, &m) {
				lies[u] = m.detail
				continue
			}
			last[u] = err
			fails = fails.add(&sidecarFailure{URL: u, Err: err})
			cutShort = cutShort || errors.Is(err, sidecar.ErrCutShort)
		}
		if cutShort && rounds == 1 {
			// Without retries (--reuse-access), a transfer cut short is
			// still asked once more: a sidecar that found its copy damaged
			// reads the blob from a peer for the next GET.
			rounds = 2
		}
	}
	if len(lies) > 0 {
		var liars sidecarErrors
		for _, u := range sidecars {
			if detail, lied := lies[u]; lied {
				liars = append(liars, &sidecarFailure{URL: u, Err: errors.New(detail)})
			}
		}
		return nil, "", fmt.Errorf("%w (no sidecar served intact ciphertext): %w", ErrCiphertextMismatch, append(liars, fails...))
	}
	return nil, "", &NotServedError{Failures: fails, Refusal: refusal(sidecars, last)}
}

// NotServedError is why no sidecar served a blob (none lied: that is
// ErrCiphertextMismatch). errors.Is matches ErrSidecarsRefused when
// Refusal is set, and errors.As finds each failure's error (a
// *sidecar.Error for an answer, the transport's error otherwise).
type NotServedError struct {
	// Failures are the distinct failures of every round, in the order
	// they came: each says "URL: error" and unwraps to the error.
	Failures []error
	// Refusal is set when every sidecar asked in the last round refused
	// outright (ErrSidecarsRefused): the first of those refusals that is a
	// 403, else the first. Asking again will not help while it holds.
	Refusal *sidecar.Error
}

func (e *NotServedError) Error() string {
	return "no sidecar served the ciphertext: " + sidecarErrors(e.Failures).Error()
}

// Is matches ErrSidecarsRefused when every sidecar refused outright.
func (e *NotServedError) Is(target error) bool {
	return target == ErrSidecarsRefused && e.Refusal != nil
}

func (e *NotServedError) Unwrap() []error { return e.Failures }

// refusal is the refusal of the sidecars in last (their failures in the
// last round) when every one refused outright (refusedOutright), else nil.
func refusal(sidecars []string, last map[string]error) *sidecar.Error {
	var first *sidecar.Error
	for _, u := range sidecars {
		err, asked := last[u]
		if !asked {
			continue
		}
		var se *sidecar.Error
		if !errors.As(err, &se) || !refusedOutright(se.StatusCode) {
			return nil
		}
		if first == nil || (se.StatusCode == http.StatusForbidden && first.StatusCode != http.StatusForbidden) {
			first = se
		}
	}
	return first
}

// refusedOutright says whether a sidecar's answer status is a refusal
// that asking again does not change (a 4xx but 408 and 429): not a
// failure of the sidecar, its storage or the transfer.
func refusedOutright(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// sidecarFailure is what went wrong at one sidecar.
type sidecarFailure struct {
	URL string
	Err error
}

func (f *sidecarFailure) Error() string { return f.URL + ": " + f.Err.Error() }
func (f *sidecarFailure) Unwrap() error { return f.Err }

// sidecarErrors are the failures of several sidecars, on one line:
// "URL: error; URL: error". errors.Is and errors.As look into each.
type sidecarErrors []error

func (e sidecarErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e sidecarErrors) Unwrap() []error { return e }

// add is e with err appended, unless a failure of the same message is
// already in it.
func (e sidecarErrors) add(err error) sidecarErrors {
	msg := err.Error()
	for _, have := range e {
		if have.Error() == msg {
			return e
		}
	}
	return append(e, err)
}

// sidecarProbeTimeout bounds probeSidecars: how long a sidecar has to
// answer its /healthz before a read is logged.
var sidecarProbeTimeout = 5 * time.Second

// probedLog is log preceded by probeSidecars (its failure said of what):
// a read logged for nothing is a false entry in the patient's audit
// trail, so first make sure a sidecar answers at all.
func probedLog(ctx context.Context, opts TransferOptions, what string, log func() (*TxResult, error)) func() (*TxResult, error) {
	return func() (*TxResult, error) {
		if err := probeSidecars(ctx, opts); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return log()
	}
}

// probeSidecars makes sure, before a read is logged, that at least one of
// the sidecars answers: one GET /healthz to each (no signature), all at
// once, each bounded by sidecarProbeTimeout and ctx. It returns nil as
// soon as one answers 200, or any 4xx (something answered that does not
// serve /healthz, a proxy perhaps: the download decides). If none does
// (nothing listens, no answer in time, 5xx: a 503 says the sidecar's store
// or node is down), the error matches ErrStorageUnavailable and names each
// sidecar's failure. Whether the sidecars will serve the blob to the
// signer is decided after the read is logged, by the sidecars.
func probeSidecars(ctx context.Context, opts TransferOptions) error {
	urls, answers, cancel := askHealth(ctx, opts)
	defer cancel()
	p := newProbe(urls)
	for range urls {
		if p.answered(ctx, <-answers) {
			return nil
		}
	}
	return p.err(ctx)
}

// probe judges askHealth's answers as probeSidecars does: a sidecar
// answered with a 200 or any 4xx; every other answer is its failure.
type probe struct {
	urls  []string
	fails sidecarErrors
	ok    bool
}

func newProbe(urls []string) *probe {
	return &probe{urls: urls, fails: make(sidecarErrors, len(urls))}
}

// answered notes a and reports whether it is an answer.
func (p *probe) answered(ctx context.Context, a healthAnswer) bool {
	var se *sidecar.Error
	if a.err == nil || (errors.As(a.err, &se) && se.StatusCode >= 400 && se.StatusCode < 500) {
		p.ok = true
		return true
	}
	if errors.Is(a.err, context.DeadlineExceeded) && ctx.Err() == nil {
		a.err = fmt.Errorf("no answer within %s: %w", sidecarProbeTimeout, a.err)
	}
	p.fails[a.i] = &sidecarFailure{URL: p.urls[a.i], Err: a.err}
	return false
}

// err is nil once a sidecar answered; else ctx's error, or the
// unreachableError naming each sidecar's failure.
func (p *probe) err(ctx context.Context) error {
	if p.ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return &unreachableError{p.fails}
}

// healthAnswer is sidecar i's answer to GET /healthz (askHealth).
type healthAnswer struct {
	i      int
	health *sidecar.Health
	err    error
}

// askHealth sends one unsigned GET /healthz to each distinct sidecar, all
// at once, each bounded by sidecarProbeTimeout and ctx: it returns the
// sidecars, a channel that gets one answer per sidecar as it comes (none
// blocks once the caller stops listening), and the cancel that ends the
// requests still out.
func askHealth(ctx context.Context, opts TransferOptions) ([]string, <-chan healthAnswer, context.CancelFunc) {
	urls := opts.distinctSidecars()
	pctx, cancel := context.WithTimeout(ctx, sidecarProbeTimeout)
	answers := make(chan healthAnswer, len(urls))
	for i, u := range urls {
		go func() {
			h, err := opts.sidecarClient(u, nil).Health(pctx)
			answers <- healthAnswer{i, h, err}
		}()
	}
	return urls, answers, cancel
}

// unreachableError: no sidecar answered probeSidecars, and no read was
// logged. It matches ErrStorageUnavailable, and unwraps to each sidecar's
// failure.
type unreachableError struct{ fails sidecarErrors }

func (e *unreachableError) Error() string {
	return "no sidecar answered (sidecar or storage unavailable), so no read was logged: " + e.fails.Error()
}

func (e *unreachableError) Is(target error) bool { return target == ErrStorageUnavailable }
func (e *unreachableError) Unwrap() []error      { return e.fails }

// A sidecar answers 429 with Retry-After when the signer's share of its
// replay cache or of its uploads in flight is used up (many requests
// within the skew window, many uploads at once), and 503 with Retry-After
// when all its upload slots are taken: the transfer waits that long, at
// most maxRetryAfter, and asks again, up to maxRetriesAfter times, rather
// than fail part-way through a bulk transfer.
const (
	maxRetryAfter   = 2 * time.Minute
	maxRetriesAfter = 3
)

// retryLater runs attempt, and again after the wait a sidecar's 429 or
// 503 asks for (see maxRetryAfter). Not after a 503 chain_behind: that
// sidecar already waited for its node, and the next sidecar may have the
// height (a download's later round asks this one again).
func retryLater(ctx context.Context, attempt func() error) error {
	for i := 0; ; i++ {
		err := attempt()
		var se *sidecar.Error
		if err == nil || i == maxRetriesAfter || !errors.As(err, &se) ||
			(se.StatusCode != http.StatusTooManyRequests && se.StatusCode != http.StatusServiceUnavailable) ||
			se.Code == sidecar.CodeChainBehind ||
			se.RetryAfter <= 0 || se.RetryAfter > maxRetryAfter {
			return err
		}
		if err := ctxtime.Sleep(ctx, se.RetryAfter); err != nil {
			return err
		}
	}
}

// mismatchError is a sidecar's answer that is not the verified blob.
type mismatchError struct{ detail string }

func (m *mismatchError) Error() string { return ErrCiphertextMismatch.Error() + ": " + m.detail }
func (m *mismatchError) Unwrap() error { return ErrCiphertextMismatch }

// errTooLong: the sidecar sent more bytes than the record says the blob has.
var errTooLong = errors.New("more bytes than the record's size")

// fetchFrom downloads blob (whose hash and size fetchBlob checked) from the
// sidecar at url into a scratch file in dir positioned at its start.
func fetchFrom(ctx context.Context, s Recipient, url string, blob chainBlob, dir string, opts TransferOptions) (*scratchFile, error) {
	sum, size := [32]byte(blob.sum), int64(blob.size)
	f, err := newScratch(dir)
	if err != nil {
		return nil, fmt.Errorf("scratch file for the ciphertext: %w", err)
	}
	sc := opts.sidecarClient(url, s)
	ctx, watch, stop := watchStalls(ctx, size, sidecarStallWait)
	defer stop()
	sc.Received = func(int) { watch.moved() }
	w := &boundedWriter{w: f, limit: size, progress: opts.Progress}
	n, err := sc.Get(ctx, blob.ref, sum, w, nil)
	err = stalled(ctx, err)
	switch {
	case errors.Is(err, sidecar.ErrHashMismatch):
		err = &mismatchError{err.Error()}
	case errors.Is(err, errTooLong):
		err = &mismatchError{fmt.Sprintf("the sidecar sent more than the record's %d bytes", size)}
	case err == nil && n != size:
		err = &mismatchError{fmt.Sprintf("%d bytes served, the record says %d", n, size)}
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Discard()
		return nil, err
	}
	return f, nil
}

// decryptInto decrypts the ciphertext stream src (ctSize bytes) into dst.
// It returns only after the final segment authenticated and EOF followed.
func decryptInto(ctx context.Context, src io.Reader, ctSize int64, dataKey, aad []byte, dst io.Writer, progress func(string, int64, int64)) (int64, error) {
	r, err := decryptReader(ctx, src, ctSize, dataKey, aad, progress)
	if err != nil {
		return 0, err
	}
	return io.Copy(onlyWriter{dst}, r)
}

// decryptReader decrypts the ciphertext stream src (ctSize bytes),
// reporting progress as "decrypt".
func decryptReader(ctx context.Context, src io.Reader, ctSize int64, dataKey, aad []byte, progress func(string, int64, int64)) (io.Reader, error) {
	return crypto.NewDecryptReader(&progressReader{ctx: ctx, r: src, phase: "decrypt", total: ctSize, progress: progress}, dataKey, aad)
}
