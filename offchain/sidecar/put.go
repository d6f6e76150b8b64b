package sidecar

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

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
	release, aerr := s.takeUploadSlot(signerAddr(sr.address), patient)
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
