package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/deid"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// DefaultMaxAnonymiseBytes bounds the plaintext ShareRecord holds in
// memory to de-identify it.
const DefaultMaxAnonymiseBytes = 64 << 20

// ShareRequest is a record to share with a study.
type ShareRequest struct {
	PatientID []byte
	Record    uint64
	StudyID   string
	// ReuseAccess: see DownloadRequest (here the purpose is research).
	ReuseAccess bool
	// Deid tunes de-identification when the consent requires it.
	Deid deid.Options
	// MaxAnonymiseBytes bounds the plaintext held in memory for
	// de-identification; 0 means DefaultMaxAnonymiseBytes.
	MaxAnonymiseBytes int64
}

// ShareResult says what ShareRecord did.
type ShareResult struct {
	// Share is the verified share (nil if it could not be looked up after
	// the transaction committed; the transaction is in Tx either way).
	Share      *emrv1.Share
	Anonymised bool
	// Report of the de-identification (nil when not anonymised). It names
	// paths of the input, never values; it is for the sharer only.
	Report *deid.Report
	SHA256 [32]byte
	Size   int64
	// Access is the RecordAccess (purpose research); nil with ReuseAccess.
	Access  *TxResult
	Sidecar string
	Tx      *TxResult
}

// ShareRecord shares a record with a study (see the pipeline description
// above): download and decrypt it (as Download does, only once a sidecar
// answers is the read logged), de-identify it if the consent says
// anonymise, re-encrypt it to the study key, upload it and submit
// ShareRecord.
func (c *Client) ShareRecord(ctx context.Context, s Recipient, req ShareRequest, opts TransferOptions) (*ShareResult, error) {
	opts = opts.withMinHeight(c)
	if len(opts.Sidecars) == 0 {
		return nil, errors.New("share: no sidecar URL configured")
	}
	if err := c.SealVerified("a share seals the record to the study's key"); err != nil {
		return nil, err
	}
	// Before the consent's envelope is opened with it: a key that is not
	// the registered one would fail there, less clearly.
	if _, err := c.registeredRecipient(ctx, s, sealedToYou); err != nil {
		return nil, err
	}
	perm, err := c.shareConsent(ctx, s.Address(), req.PatientID, req.StudyID)
	if err != nil {
		return nil, err
	}
	study, err := c.Study(ctx, req.StudyID)
	if err != nil {
		return nil, fmt.Errorf("study %q: %w", req.StudyID, err)
	}
	studyPub, err := crypto.ParseEncryptionPublicKey(study.StudyPubKey)
	if err != nil {
		return nil, fmt.Errorf("study %q key: %w", req.StudyID, err)
	}
	// As Download does: what goes to a study is what its uploader signed.
	rec, err := c.signedRecord(ctx, req.PatientID, req.Record)
	if err != nil {
		return nil, err
	}
	if rec.KeyVersion != perm.KeyVersion {
		return nil, fmt.Errorf("record %d: its data key is wrapped under patient key version %d but your consent carries version %d: "+
			"only the patient can unwrap it until it is re-wrapped", rec.Sequence, rec.KeyVersion, perm.KeyVersion)
	}
	dataKey, err := unwrapRecordKey(rec, func(uint64) ([]byte, error) {
		kek, err := OpenKEK(s.EncPrivKey(), perm)
		if err != nil {
			return nil, fmt.Errorf("open the patient key envelope of your consent: %w", err)
		}
		return kek, nil
	})
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	res := &ShareResult{Anonymised: perm.Anonymise}
	if !req.ReuseAccess {
		if err := probeSidecars(ctx, opts); err != nil {
			return nil, fmt.Errorf("record %d: %w", req.Record, err)
		}
		if res.Access, err = c.logRead(ctx, s, req.PatientID, req.Record, emrv1.Purpose_PURPOSE_RESEARCH); err != nil {
			return nil, err
		}
	}
	ct, _, err := fetchBlob(ctx, s, recordBlob(rec), opts.TempDir, opts, !req.ReuseAccess)
	if err != nil {
		if res.Access != nil {
			// As for a download: a retry within the window need not log
			// another read.
			return nil, fmt.Errorf("record %d: %w (height %d): %w", req.Record, ErrReadLoggedNotServed, res.Access.Height, err)
		}
		return nil, fmt.Errorf("record %d: %w", req.Record, err)
	}
	defer ct.Discard()
	plain, err := decryptReader(ctx, ct, int64(rec.Size), dataKey, RecordStreamAAD(req.PatientID, rec.Category), opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("record %d: decrypt: %w", req.Record, err)
	}
	src, plainSize := plain, int64(-1)
	if perm.Anonymise {
		out, report, err := anonymise(plain, rec, req)
		if err != nil {
			return nil, err
		}
		res.Report = report
		src, plainSize = bytes.NewReader(out), int64(len(out))
	}
	shareKey, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	defer clear(shareKey)
	sl, err := sealToScratch(ctx, opts.TempDir, src, plainSize, shareKey, ShareStreamAAD(req.PatientID, req.StudyID, rec.Sequence), opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("record %d: re-encrypt for study %q: %w", req.Record, req.StudyID, err)
	}
	defer sl.file.Discard()
	wrapped, err := crypto.SealEnvelope(studyPub, shareKey, StudyKeyBinding(req.PatientID, req.StudyID, rec.Sequence))
	if err != nil {
		return nil, err
	}
	url, _, err := putBlob(ctx, s, req.PatientID, rec.Category, true, sl, opts)
	if err != nil {
		return nil, fmt.Errorf("upload failed, nothing was shared: %w", err)
	}
	res.SHA256, res.Size, res.Sidecar = sl.sum, sl.size, url
	msg := &emrv1.Msg{Sum: &emrv1.Msg_ShareRecord{ShareRecord: &emrv1.MsgShareRecord{
		PatientId: req.PatientID, RecordSequence: rec.Sequence, StudyId: req.StudyID, Anonymised: perm.Anonymise,
		SharedSha256: sl.sum[:], ObjectKey: hex.EncodeToString(sl.sum[:]), Size: uint64(sl.size), WrappedStudyKey: wrapped,
	}}}
	if res.Tx, err = c.Submit(ctx, s, msg); err != nil {
		return nil, storedButFailed(err, fmt.Sprintf("the shared ciphertext is stored (sha256 %x)", sl.sum),
			"the share", "recorded", "emrcli shares --study "+req.StudyID, "the study holds it twice")
	}
	res.Share = c.shareCreatedBy(ctx, res.Tx, req.PatientID)
	return res, nil
}

// shareConsent returns the signer's verified permission if it stands and
// carries the share right for the study; otherwise an error that says why.
func (c *Client) shareConsent(ctx context.Context, grantee, patientID []byte, studyID string) (*emrv1.Permission, error) {
	p, info, err := c.Permission(ctx, patientID, grantee)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("patient %x has granted you nothing: %w", patientID, err)
	case err != nil:
		return nil, fmt.Errorf("your consent from patient %x: %w", patientID, err)
	}
	now := info.timeOrNow()
	switch {
	case p.RevokedHeight != 0:
		return nil, fmt.Errorf("your consent from patient %x was revoked at height %d", patientID, p.RevokedHeight)
	case p.NotBefore != nil && now.Before(p.NotBefore.AsTime()):
		return nil, fmt.Errorf("your consent from patient %x starts at %s", patientID, p.NotBefore.AsTime().UTC().Format(time.RFC3339))
	case !now.Before(p.GetNotAfter().AsTime()):
		return nil, fmt.Errorf("your consent from patient %x expired at %s", patientID, p.GetNotAfter().AsTime().UTC().Format(time.RFC3339))
	case !slices.Contains(p.Rights, emrv1.Right_RIGHT_SHARE):
		return nil, fmt.Errorf("your consent from patient %x does not include the share right", patientID)
	case p.StudyId != studyID:
		return nil, fmt.Errorf("your share consent from patient %x is for study %q, not %q", patientID, p.StudyId, studyID)
	}
	return p, nil
}

// anonymise reads the whole plaintext (bounded) and de-identifies it.
func anonymise(plain io.Reader, rec *emrv1.Record, req ShareRequest) ([]byte, *deid.Report, error) {
	limit := req.MaxAnonymiseBytes
	if limit <= 0 {
		limit = DefaultMaxAnonymiseBytes
	}
	limit = min(limit, math.MaxInt64-1) // limit+1 below must not wrap
	in, err := io.ReadAll(io.LimitReader(plain, limit+1))
	defer clear(in)
	if err != nil {
		return nil, nil, fmt.Errorf("record %d: decrypt: %w", rec.Sequence, err)
	}
	if int64(len(in)) > limit {
		return nil, nil, fmt.Errorf("%w: record %d is larger than %d bytes, the most this client de-identifies in memory: nothing was shared",
			ErrCannotAnonymise, rec.Sequence, limit)
	}
	out, report, err := deid.Deidentify(in, req.Deid)
	switch {
	case errors.Is(err, deid.ErrNotFHIR):
		return nil, nil, fmt.Errorf("%w: record %d (%s) is not a FHIR R4 JSON resource, and the patient's consent for study %q requires anonymisation, "+
			"which only FHIR JSON supports: nothing was shared", ErrCannotAnonymise, rec.Sequence, rec.Category, req.StudyID)
	case errors.Is(err, deid.ErrUnsupported):
		return nil, nil, fmt.Errorf("%w: record %d (%s): %v: nothing was shared", ErrCannotAnonymise, rec.Sequence, rec.Category, err)
	case err != nil:
		return nil, nil, fmt.Errorf("%w: record %d: %v: nothing was shared", ErrCannotAnonymise, rec.Sequence, err)
	}
	return out, report, nil
}

// shareCreatedBy finds the share a committed ShareRecord created: the
// newest shares are searched for one carrying the tx's hash.
func (c *Client) shareCreatedBy(ctx context.Context, tx *TxResult, patientID []byte) *emrv1.Share {
	p, err := c.Patient(ctx, patientID)
	if err != nil || p.ShareCount == 0 {
		return nil
	}
	after := uint64(0)
	if p.ShareCount > 20 {
		after = p.ShareCount - 20
	}
	var resp emrv1.QuerySharesResponse
	req := &emrv1.QuerySharesRequest{PatientId: hex.EncodeToString(patientID), Page: &emrv1.PageRequest{After: after}}
	if c.Query(ctx, "Shares", req, &resp) != nil {
		return nil
	}
	for i := len(resp.Shares) - 1; i >= 0; i-- {
		if bytes.Equal(resp.Shares[i].TxHash, tx.Hash) {
			return resp.Shares[i]
		}
	}
	return nil
}

// ShareDownloadRequest names a share to download and decrypt.
type ShareDownloadRequest struct {
	PatientID []byte
	Share     uint64
	// StudyKey is the private half of the study's registered key (by
	// default the principal investigator's encryption key).
	StudyKey  *ecdh.PrivateKey
	Output    string
	Overwrite bool
	// ReuseAccess skips logging a read: the caller's read of the share
	// committed within the sidecars' access window serves again.
	ReuseAccess bool
}

// ShareDownloadResult says what DownloadShare did.
type ShareDownloadResult struct {
	Share   *emrv1.Share // verified
	Access  *TxResult    // the committed read of the share (nil with ReuseAccess)
	Sidecar string
	Size    int64
	Path    string
}

// DownloadShare commits the caller's read of a shared record (an access
// event on the patient's audit trail, which the chain allows the study's
// principal investigator and the researchers of its organization while
// the consent the share was made under stands), fetches it (the sidecar
// serves it after that event), checks it against the verified Share, and
// decrypts it with the study key into req.Output (atomically, and with
// the same checks before the read is logged, as Download).
func (c *Client) DownloadShare(ctx context.Context, s Recipient, req ShareDownloadRequest, opts TransferOptions) (*ShareDownloadResult, error) {
	opts = opts.withMinHeight(c)
	if err := checkDownload(req.Output, req.Overwrite, opts); err != nil {
		return nil, err
	}
	if req.StudyKey == nil {
		return nil, errors.New("download: no study key")
	}
	if _, err := c.registeredRecipient(ctx, s, sealedToYou); err != nil {
		return nil, err
	}
	sh, err := c.Share(ctx, req.PatientID, req.Share)
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", req.Share, err)
	}
	study, err := c.Study(ctx, sh.StudyId)
	if err != nil {
		return nil, fmt.Errorf("study %q: %w", sh.StudyId, err)
	}
	if !bytes.Equal(study.StudyPubKey, req.StudyKey.PublicKey().Bytes()) {
		return nil, fmt.Errorf("share %d is encrypted to the key of study %q (%x), and the key you hold (%x) is not it: "+
			"by default the study key is the principal investigator's encryption key; a study registered with its own key needs that key",
			req.Share, sh.StudyId, study.StudyPubKey, req.StudyKey.PublicKey().Bytes())
	}
	dataKey, err := crypto.OpenEnvelope(req.StudyKey, sh.WrappedStudyKey, StudyKeyBinding(req.PatientID, sh.StudyId, sh.RecordSequence))
	if err != nil {
		return nil, fmt.Errorf("share %d: open its study key envelope: %w", req.Share, err)
	}
	defer clear(dataKey)
	what := fmt.Sprintf("share %d", req.Share)
	var logRead func() (*TxResult, error)
	if !req.ReuseAccess {
		logRead = probedLog(ctx, opts, what, func() (*TxResult, error) { return c.logShareRead(ctx, s, req.PatientID, req.Share) })
	}
	saved, err := saveDecrypted(ctx, s, what, shareBlob(sh), knownKey(dataKey),
		ShareStreamAAD(req.PatientID, sh.StudyId, sh.RecordSequence), req.Output, req.Overwrite, logRead, opts)
	if err != nil {
		return nil, err
	}
	return &ShareDownloadResult{Share: sh, Access: saved.access, Sidecar: saved.sidecar, Size: saved.size, Path: req.Output}, nil
}
