package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// How long a sidecar transfer may stand still before it is given up and
// the next sidecar asked (variables for the tests).
var (
	// sidecarAnswerWait bounds the wait for a sidecar's answer (after a
	// download's request, or after an upload's last byte), with the time
	// to store the blob (answerWait). A sidecar that does not hold a blob
	// asks its peers in turn before it answers (each that does not answer
	// costs it 30 s, each that stalls in its refusal a minute more), after
	// waiting up to MaxHeightWait (3 s) for its node; and it stores an
	// upload whole before it answers.
	sidecarAnswerWait = 6 * time.Minute
	// sidecarCommitRate (bytes a second) is the slowest pace at which a
	// sidecar is expected to store a whole blob before it answers: an
	// upload's commit (MinIO completes
	// the multipart upload and copies the object to its name, server
	// side, in time that grows with the blob). The answer wait grows by
	// a blob's size at this pace (answerWait).
	sidecarCommitRate int64 = 16 << 20
	// sidecarStallWait bounds the pause between two reads of a download's
	// body: bytes that stop coming for this long mean the sidecar, or the
	// way to it, is stuck.
	sidecarStallWait = time.Minute
	// sidecarUploadStallWait bounds the pause between two reads of an
	// upload's body by the sidecar. It is longer: a sidecar over MinIO
	// reads a whole part (5 MiB or more), stores it, and only then reads
	// on, and minio-go gives MinIO a minute to answer each attempt at a
	// part, and tries again (a reviewer's finding, session 37).
	sidecarUploadStallWait = 6 * time.Minute
)

// ErrSidecarStalled: a sidecar accepted a transfer and then did not
// answer within the answer wait (answerWait), or stopped moving its bytes
// for the stall wait (sidecarStallWait, sidecarUploadStallWait). The
// transfer was abandoned (for a download, the next sidecar is asked).
var ErrSidecarStalled = errors.New("the sidecar stopped answering")

// answerWait is how long a sidecar may take to answer a transfer of a
// blob of size bytes: sidecarAnswerWait, and the time to store the blob
// at sidecarCommitRate (a 64 GiB imaging study: 68 minutes more).
func answerWait(size int64) time.Duration {
	const most = time.Duration(math.MaxInt64)
	extra := float64(max(size, 0)) / float64(sidecarCommitRate) * float64(time.Second)
	if extra >= float64(most-sidecarAnswerWait) {
		return most
	}
	return sidecarAnswerWait + time.Duration(extra)
}

// stallWatch cancels a transfer's context when it stands still too long:
// waiting for the answer (answering) for its answer wait, or between two
// moves of its bytes (moved) for its idle wait. Its context's cause is
// then a stallError.
type stallWatch struct {
	mu     sync.Mutex
	timer  *time.Timer
	answer time.Duration // the answer wait
	idle   time.Duration // the longest pause between two moves
	// waiting is what the watch waits for now, and how long: the cause
	// it cancels with when the timer fires.
	waiting stallError
}

// stallError is why a stallWatch cancelled: what did not happen, and for
// how long.
type stallError struct {
	what string
	wait time.Duration
}

func (e *stallError) Error() string {
	return fmt.Sprintf("%v: %s for %s", ErrSidecarStalled, e.what, roundWait(e.wait))
}

func (e *stallError) Unwrap() error { return ErrSidecarStalled }

// roundWait is d as a person reads it: whole seconds, or below a second,
// whole milliseconds.
func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// watchStalls returns ctx with a stallWatch over it for the transfer of a
// blob of size bytes whose bytes may pause for idle at most, waiting for
// the answer first; stop releases it.
func watchStalls(ctx context.Context, size int64, idle time.Duration) (context.Context, *stallWatch, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{answer: answerWait(size), idle: idle}
	w.mu.Lock()
	w.waiting = stallError{"no answer", w.answer}
	w.timer = time.AfterFunc(w.answer, func() {
		w.mu.Lock()
		cause := w.waiting
		w.mu.Unlock()
		cancel(&cause)
	})
	w.mu.Unlock()
	return ctx, w, func() { w.timer.Stop(); cancel(nil) }
}

// answering: the transfer now waits for the sidecar's answer.
func (w *stallWatch) answering() { w.reset("no answer", w.answer) }

// moved: bytes moved; the next must within the watch's idle wait.
func (w *stallWatch) moved() { w.reset("no byte moved", w.idle) }

func (w *stallWatch) reset(what string, wait time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiting = stallError{what, wait}
	w.timer.Reset(wait)
}

// stalled is err, or the stall that caused it when the watch's context
// ctx was cancelled by one.
func stalled(ctx context.Context, err error) error {
	var stall *stallError
	if err != nil && errors.As(context.Cause(ctx), &stall) {
		return fmt.Errorf("%w (%v)", stall, err)
	}
	return err
}

// watchedReader tells a stallWatch of every read (an upload's bytes
// leaving), and that the answer is awaited once the body is all read.
type watchedReader struct {
	r     io.Reader
	watch *stallWatch
}

func (r watchedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		r.watch.answering()
	} else {
		r.watch.moved()
	}
	return n, err
}
