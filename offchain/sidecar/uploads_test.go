package sidecar

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// putEntered says when the store's Put starts (the handler holds the
// blob's key lock and its upload slot by then).
type putEntered struct {
	blobstore.Store
	entered chan struct{}
}

func (p *putEntered) Put(ctx context.Context, key blobstore.Key, r io.Reader, size int64) error {
	select {
	case p.entered <- struct{}{}:
	default:
	}
	return p.Store.Put(ctx, key, r, size)
}

// stalledUpload starts an upload by a of blob sum, size bytes, whose body
// comes from the returned pipe writer, and waits until the store's Put
// started (hook). The returned channel has the client's result.
func stalledUpload(t *testing.T, e *env, hook *putEntered, a *actor, sum [32]byte, size int64) (*io.PipeWriter, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	done := make(chan error, 1)
	go func() {
		_, err := e.client(a).Put(context.Background(), e.pid, testCategory, sum, pr, size)
		done <- err
	}()
	select {
	case <-hook.entered:
	case err := <-done:
		t.Fatalf("the upload ended before its body was read: %v", err)
	}
	return pw, done
}

// waitNoUploads waits until no upload is in flight, or fails after 5 s.
func waitNoUploads(t *testing.T, e *env, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); e.srv.uploads.inFlight() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still holds its upload slot after 5 s", what)
		}
	}
}

// neverSent is the sum of the stalled uploads whose body is never sent
// whole.
var neverSent = sha256.Sum256([]byte("never sent"))

// hookedEnv is newEnv (mod amends its options) with its store's Put
// hooked (putEntered).
func hookedEnv(t *testing.T, mod func(*Options)) (*env, *putEntered) {
	hook := &putEntered{entered: make(chan struct{}, 1)}
	e := newEnv(t, func(o *Options) {
		hook.Store = o.Store
		o.Store = hook
		if mod != nil {
			mod(o)
		}
	})
	return e, hook
}

// TestPutStalledBodyTimesOut: an upload whose client sends the headers
// and then no body is ended after UploadIdleTimeout (408): its slot, its
// pending reservation and its blob's lock are given back, and the store's
// buffer freed.
func TestPutStalledBodyTimesOut(t *testing.T) {
	e, hook := hookedEnv(t, func(o *Options) { o.UploadIdleTimeout = 300 * time.Millisecond })
	start := time.Now()
	pw, done := stalledUpload(t, e, hook, e.writer, neverSent, 1<<20)
	waitNoUploads(t, e, "an upload that sends no body")
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the stalled upload ended after %s", took)
	}
	if used, _ := e.srv.pending.usage(signerAddr(e.writer.member.Address)); used != 0 {
		t.Fatalf("the timed-out upload still holds %d pending bytes", used)
	}
	// The client hears the 408 while its body is still unsent.
	err := <-done
	pw.Close()
	wantStatus(t, err, http.StatusRequestTimeout, "")
	if se := err.(*Error); se.Code != "upload_timeout" {
		t.Fatalf("refusal %+v: want code upload_timeout", se)
	}
}

// TestPutTricklingBodyTimesOut: a body that keeps coming, but slower than
// UploadMinRate, is ended too; the idle timeout alone never would.
func TestPutTricklingBodyTimesOut(t *testing.T) {
	e, hook := hookedEnv(t, func(o *Options) {
		o.UploadIdleTimeout = time.Second
		o.UploadMinRate = 1000
	})
	start := time.Now()
	pw, _ := stalledUpload(t, e, hook, e.writer, neverSent, 1<<20)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := pw.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}()
	waitNoUploads(t, e, "an upload that trickles 20 bytes a second")
	if took := time.Since(start); took < time.Second || took > 4*time.Second {
		t.Fatalf("the trickling upload ended after %s, want soon after the 1 s idle allowance", took)
	}
}

// TestPutUploadSlots: beyond MaxUploadsPerSigner uploads in flight, a
// signer's next is refused with 429, and beyond MaxUploads anyone's with
// 503, both with Retry-After and before the body is read; a slot comes
// back when its upload ends.
func TestPutUploadSlots(t *testing.T) {
	e, hook := hookedEnv(t, func(o *Options) {
		o.MaxUploads = 1
		o.MaxUploadsPerSigner = 1
	})
	data := []byte("a second upload")
	pw, done := stalledUpload(t, e, hook, e.writer, neverSent, 1<<20)
	_, err := e.put(e.writer, data)
	wantStatus(t, err, http.StatusTooManyRequests, "max_uploads_per_signer")
	if strings.Contains(err.Error(), "download") {
		t.Errorf("an upload's refusal speaks of downloads: %v", err)
	}
	if se := err.(*Error); se.Code != "signer_uploads" || se.RetryAfter <= 0 {
		t.Fatalf("refusal %+v: want code signer_uploads and a Retry-After", se)
	}
	_, err = e.put(e.patient, data)
	wantStatus(t, err, http.StatusServiceUnavailable, "max_uploads")
	if se := err.(*Error); se.Code != "uploads_busy" || se.RetryAfter <= 0 {
		t.Fatalf("refusal %+v: want code uploads_busy and a Retry-After", se)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-done
	waitNoUploads(t, e, "an aborted upload")
	if _, err := e.put(e.patient, data); err != nil {
		t.Fatalf("upload after the slot came back: %v", err)
	}
	metrics := scrape(t, e)
	for _, want := range []string{
		`emrchain_sidecar_quota_refusals_total{reason="signer_uploads"} 1`,
		`emrchain_sidecar_quota_refusals_total{reason="uploads"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestUploadSlotsRules: the bounds of the uploads in flight, per signer,
// of all patients together and in all, each refused with its own error,
// and each slot given back by its release.
func TestUploadSlotsRules(t *testing.T) {
	u := &uploadSlots{total: 4, perSigner: 2, patients: 2}
	pa, pb, pc, m, n := signerAddr{1}, signerAddr{2}, signerAddr{3}, signerAddr{4}, signerAddr{5}
	take := func(who signerAddr, patient bool, want error) func() {
		t.Helper()
		release, err := u.acquire(who, patient)
		if !errors.Is(err, want) || (err == nil) != (release != nil) {
			t.Fatalf("acquire(%x, patient %v) = %v, want %v", who[:1], patient, err, want)
		}
		return release
	}
	releaseA := take(pa, true, nil)
	take(pb, true, nil)
	take(pc, true, errPatientsUploadsFull) // patients hold their 2
	take(m, false, nil)                    // members keep the rest
	take(m, false, nil)
	take(m, false, errSignerUploadsFull)
	take(n, false, errUploadsFull)
	releaseA()
	releaseA() // a second release gives nothing back
	take(pc, true, nil)
	take(n, false, errUploadsFull)
	if u.inFlight() != 4 || u.patientsInUse != 2 {
		t.Fatalf("%d in flight, %d of patients: want 4 and 2", u.inFlight(), u.patientsInUse)
	}
	for total, want := range map[int]int{-1: 0, 0: 0, 1: 0, 2: 1, 64: 32, 65: 32} {
		if got := UploadsPatientsShare(total); got != want {
			t.Errorf("UploadsPatientsShare(%d) = %d, want %d", total, got, want)
		}
	}
}

// TestPutPatientsUploadSlots: beyond MaxUploadsPatients uploads of
// patients in flight, a patient's next is refused with 503 and
// Retry-After, while a member registered by a registrar still uploads.
func TestPutPatientsUploadSlots(t *testing.T) {
	e, hook := hookedEnv(t, func(o *Options) {
		o.MaxUploads = 3
		o.MaxUploadsPatients = 1
	})
	pw, done := stalledUpload(t, e, hook, e.patient, neverSent, 1<<20)
	_, err := e.put(e.patient, []byte("a patient's second upload"))
	wantStatus(t, err, http.StatusServiceUnavailable, "max_uploads_patients")
	if se := err.(*Error); se.Code != "patients_uploads_busy" || se.RetryAfter <= 0 {
		t.Fatalf("refusal %+v: want code patients_uploads_busy and a Retry-After", se)
	}
	if _, err := e.put(e.writer, []byte("a clinician's upload")); err != nil {
		t.Fatalf("a member's upload while patients hold their slots: %v", err)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-done
	waitNoUploads(t, e, "an aborted upload")
	if _, err := e.put(e.patient, []byte("a patient's second upload")); err != nil {
		t.Fatalf("a patient's upload after the slot came back: %v", err)
	}
	if metrics := scrape(t, e); !strings.Contains(metrics, `emrchain_sidecar_quota_refusals_total{reason="patients_uploads"} 1`) {
		t.Errorf("metrics lack the patients' refusal")
	}
}

// slowCommit has the store read the whole body (and, as the stores do,
// try one byte past its end), then takes its time to commit, as a large
// MinIO commit (a server-side copy after the body) does.
type slowCommit struct {
	blobstore.Store
	delay time.Duration
}

func (s slowCommit) Put(ctx context.Context, key blobstore.Key, r io.Reader, size int64) error {
	if err := s.Store.Put(ctx, key, r, size); err != nil {
		return err
	}
	select {
	case <-time.After(s.delay):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cancelled during the commit: %w", ctx.Err())
	}
}

// TestPutSlowCommitOutlastsIdleTimeout: the read deadline is lifted once
// the whole body is in, so a commit slower than UploadIdleTimeout is not
// cut (the server's read of the idle connection would otherwise fail on
// the deadline and cancel the request).
func TestPutSlowCommitOutlastsIdleTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.UploadIdleTimeout = 200 * time.Millisecond
		o.Store = slowCommit{Store: o.Store, delay: 800 * time.Millisecond}
	})
	if _, err := e.put(e.writer, []byte("a blob whose commit is slow")); err != nil {
		t.Fatalf("upload with a commit slower than the idle timeout: %v", err)
	}
}
