package app

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// KeyRotationPending refuses new records for p while a revocation's key
// rotations are unfinished (ErrKeyVersion): the patient's key is below
// min_key_version, so a revoked grantee may hold it. Clients check it
// before they upload.
func KeyRotationPending(p *emrv1.Patient) error {
	if p.KeyVersion < p.MinKeyVersion {
		return fmt.Errorf("%w: the patient's key is at version %d, and no record is added below version %d until the key rotations after a revocation are done (the patient runs emrcli revoke again to finish them)",
			ErrKeyVersion, p.KeyVersion, p.MinKeyVersion)
	}
	return nil
}

// addRecord: the owner, or a member with a write right covering the
// category at block time, adds the metadata of an uploaded file.
func (ctx *txContext) addRecord(m *emrv1.MsgAddRecord) error {
	p, err := ctx.patient(m.PatientId)
	if err != nil {
		return err
	}
	if err := ctx.knownCategory(m.Category); err != nil {
		return err
	}
	if _, err := ctx.authorize(p, emrv1.Right_RIGHT_WRITE, m.Category); err != nil {
		return err
	}
	if m.KeyVersion != p.KeyVersion {
		return fmt.Errorf("%w: the file key is wrapped under version %d, the patient's key is at version %d", ErrKeyVersion, m.KeyVersion, p.KeyVersion)
	}
	if err := KeyRotationPending(p); err != nil {
		return err
	}
	if err := CheckBlobSize(ctx.params, m.Size); err != nil {
		return err
	}
	if err := ctx.checkWrappedKeySize(m.WrappedFileKey); err != nil {
		return err
	}
	// The transaction's signature, verified before (sigcache.go), is over
	// RecordSignBytes: it is the record's uploader signature.
	p.RecordCount++
	rec := &emrv1.Record{
		PatientId:         p.Id,
		Sequence:          p.RecordCount,
		Category:          m.Category,
		Uploader:          ctx.tx.Signer,
		ObjectKey:         m.ObjectKey,
		CiphertextSha256:  m.CiphertextSha256,
		Size:              m.Size,
		KeyVersion:        m.KeyVersion,
		WrappedFileKey:    m.WrappedFileKey,
		UploaderSignature: ctx.tx.Signature,
		Height:            ctx.block.Height,
		Time:              timestamp(ctx.block.Time),
		TxHash:            ctx.tx.Hash,
		BodySha256:        ctx.tx.BodySHA256,
	}
	ctx.attrRecord(p.Id, rec.Sequence)
	ctx.detail(CategoryAttribute, m.Category)
	ctx.detailHex(BlobAttribute, m.CiphertextSha256)
	ctx.detail(BlobSizeAttribute, strconv.FormatUint(m.Size, 10))
	return firstError(
		ctx.st.put(recordKey(p.Id, rec.Sequence), rec),
		ctx.st.put(patientKey(p.Id), p),
	)
}

// recordAccess: the owner, or a member with the right for the purpose
// (read for treatment, share for research) on every named record's category
// at block time, logs one access event per record. The blob sidecar serves
// ciphertext only after this is committed. Where the share right demands
// anonymisation, only a clinician reads the record for research: that is
// how a sharer reads the record it anonymises and re-encrypts for the study
// (shareRecord, which only clinicians send); a researcher reads the
// anonymised share, never the record, so the consent cannot be bypassed.
// The study's members log their reads of its shares the same way
// (shareRead), for research. An emergency read is a clinician's, through
// the emergency service of its organization that the patient opted in to
// (breakGlass), and counts against its daily limit of patients
// (countEmergencyRead).
func (ctx *txContext) recordAccess(m *emrv1.MsgRecordAccess) error {
	p, err := ctx.patient(m.PatientId)
	if err != nil {
		return err
	}
	if n := uint64(len(m.RecordSequences)) + uint64(len(m.ShareSequences)); n > uint64(ctx.params.MaxRecordsPerAccess) {
		return fmt.Errorf("%w: %d records and shares in one access, the limit is %d", ErrTooLarge, n, ctx.params.MaxRecordsPerAccess)
	}
	var right emrv1.Right
	var glass *breakGlass
	switch m.Purpose {
	case emrv1.Purpose_PURPOSE_TREATMENT:
		right = emrv1.Right_RIGHT_READ
	case emrv1.Purpose_PURPOSE_RESEARCH:
		right = emrv1.Right_RIGHT_SHARE
	default:
		if glass, err = ctx.breakGlass(p, m.EmergencyService); err != nil {
			return err
		}
		ctx.attrHex(EmergencyServiceAttribute, m.EmergencyService)
		ctx.detail("emergency_reason", EmergencyReasonName(m.EmergencyReason))
	}
	ctx.detailHex("accessor", ctx.tx.Signer)
	ctx.detail("purpose", purposeName(m.Purpose))
	studyOpen := false // a research read's study was found open (liveStudy)
	for _, seq := range m.RecordSequences {
		rec, err := ctx.st.record(p.Id, seq)
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("%w: the patient has no record %d (it has %d)", ErrNotFound, seq, p.RecordCount)
		}
		if glass != nil {
			err = glass.covers(rec.Category, ctx.block.Time)
		} else {
			err = ctx.consentReads(p, m.Purpose, right, rec, &studyOpen)
		}
		if err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if err := ctx.logAccess(p, m.Purpose, seq, 0, m.EmergencyService, m.EmergencyReason); err != nil {
			return err
		}
		ctx.attrRecord(p.Id, seq)
	}
	for _, seq := range m.ShareSequences {
		sh, err := ctx.shareRead(p, seq)
		if err != nil {
			return fmt.Errorf("share %d: %w", seq, err)
		}
		if err := ctx.logAccess(p, m.Purpose, sh.RecordSequence, seq, nil, 0); err != nil {
			return err
		}
	}
	if glass != nil {
		if err := ctx.countEmergencyRead(p.Id); err != nil {
			return err
		}
	}
	return ctx.st.put(patientKey(p.Id), p)
}

// consentReads: the signer's own consent (or ownership) lets it read rec
// for purpose, which needs right. studyOpen says a research read's study
// was already found open, and is set once it is.
func (ctx *txContext) consentReads(p *emrv1.Patient, purpose emrv1.Purpose, right emrv1.Right, rec *emrv1.Record, studyOpen *bool) error {
	perm, err := ctx.authorize(p, right, rec.Category)
	if err != nil || purpose != emrv1.Purpose_PURPOSE_RESEARCH || perm == nil {
		return err
	}
	// A research read serves the study the consent names: once that
	// study's organization has left the consortium, the study can
	// receive nothing (liveStudy refuses its shares), so the consent
	// reads nothing for it either.
	if !*studyOpen {
		if _, err := ctx.liveStudy(perm.StudyId); err != nil {
			return err
		}
		*studyOpen = true
	}
	if perm.Anonymise && ctx.signer.Role != emrv1.Role_ROLE_CLINICIAN {
		return fmt.Errorf("%w: the patient consented to study %q only anonymised, so a %s reads the anonymised share a clinician made, not the record",
			ErrUnauthorized, perm.StudyId, RoleName(ctx.signer.Role))
	}
	return nil
}

// logAccess appends an access event to p's log: a read of record, or of
// share (when not 0) of it, through emergency service via and for reason
// for an emergency read (which the service's break-glass log then lists
// too); and points the reader's last-access index at it, which the
// sidecars authorize with. The caller stores p.
func (ctx *txContext) logAccess(p *emrv1.Patient, purpose emrv1.Purpose, record, share uint64, via []byte, reason emrv1.EmergencyReason) error {
	p.AccessCount++
	ev := &emrv1.AccessEvent{
		PatientId:        p.Id,
		Sequence:         p.AccessCount,
		RecordSequence:   record,
		ShareSequence:    share,
		Accessor:         ctx.tx.Signer,
		Purpose:          purpose,
		Height:           ctx.block.Height,
		Time:             timestamp(ctx.block.Time),
		TxHash:           ctx.tx.Hash,
		EmergencyService: via,
		EmergencyReason:  reason,
	}
	if err := ctx.st.put(accessKey(p.Id, ev.Sequence), ev); err != nil {
		return err
	}
	if len(via) > 0 {
		if err := ctx.st.appendBreakGlass(ev); err != nil {
			return err
		}
	}
	last := lastAccessKey(p.Id, record, ctx.tx.Signer)
	if share != 0 {
		last = lastShareReadKey(p.Id, share, ctx.tx.Signer)
	}
	return ctx.st.kv.Set(last, u64(ev.Sequence))
}

// shareRead: the patient, or the principal investigator or a researcher
// of the study's organization, reads one of the patient's shares with a
// study (research), while the consent the share was made under stands as
// shareRecord required it: the sharer's permission grants share on the
// record's category at block time, for that study, and is not narrowed to
// anonymised sharing when the share is not anonymised. A revocation, the
// consent's end or such a narrowing thus ends the study's reads of what
// was shared under it.
func (ctx *txContext) shareRead(p *emrv1.Patient, seq uint64) (*emrv1.Share, error) {
	sh, err := ctx.st.share(p.Id, seq)
	if err != nil {
		return nil, err
	}
	if sh == nil {
		return nil, fmt.Errorf("%w: the patient has no share %d (it has %d)", ErrNotFound, seq, p.ShareCount)
	}
	if bytes.Equal(p.Owner, ctx.tx.Signer) {
		return sh, nil
	}
	study, err := ctx.st.study(sh.StudyId)
	if err != nil {
		return nil, err
	}
	if study == nil {
		return nil, fmt.Errorf("%w: share of unknown study %q", ErrInternal, sh.StudyId)
	}
	if !bytes.Equal(study.PrincipalInvestigator, ctx.tx.Signer) &&
		(ctx.signer.Role != emrv1.Role_ROLE_RESEARCHER || ctx.signer.OrganizationId != study.OrganizationId) {
		return nil, fmt.Errorf("%w: shared with study %q: the signer is neither its principal investigator nor a researcher of %q",
			ErrUnauthorized, sh.StudyId, study.OrganizationId)
	}
	rec, err := ctx.st.record(p.Id, sh.RecordSequence)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: share of missing record %d", ErrInternal, sh.RecordSequence)
	}
	consent, err := ctx.st.permission(p.Id, sh.Sharer)
	if err != nil {
		return nil, err
	}
	sharer, err := ctx.st.member(sh.Sharer)
	if err != nil {
		return nil, err
	}
	if err := ShareConsentStands(consent, sharer, sh, rec.Category, ctx.block.Time); err != nil {
		return nil, err
	}
	return sh, nil
}

// ShareConsentStands returns nil when consent, the patient's permission
// to sharer under which share sh of a record of category was made, still
// lets the study read it at t: the permission grants share on the
// category (not revoked, its grantee active, within its window), for the
// share's study, and is not narrowed to anonymised sharing when the share
// is not anonymised. It is shareRead's rule, and the blob sidecars apply
// it before they serve the share's ciphertext.
func ShareConsentStands(consent *emrv1.Permission, sharer *emrv1.Member, sh *emrv1.Share, category string, t time.Time) error {
	const gone = "the consent this share was made under no longer stands"
	if consent == nil {
		// CheckPermission would say the patient granted "this member"
		// nothing: the member is the sharer, not the reader.
		return fmt.Errorf("%w: %s: the patient has no consent for the sharer %X", ErrNoPermission, gone, sh.Sharer)
	}
	if err := CheckPermission(consent, sharer, emrv1.Right_RIGHT_SHARE, category, t); err != nil {
		return fmt.Errorf("%s: %w", gone, err)
	}
	if consent.StudyId != sh.StudyId {
		return fmt.Errorf("%w: %s: it is now for study %q", ErrUnauthorized, gone, consent.StudyId)
	}
	if consent.Anonymise && !sh.Anonymised {
		return fmt.Errorf("%w: %s: the patient now consents to study %q only anonymised, and this share is not", ErrUnauthorized, gone, sh.StudyId)
	}
	return nil
}

// recordRef is how events name a record: "<patient hex>/<sequence>".
func recordRef(patient []byte, seq uint64) string {
	return fmt.Sprintf("%x/%d", patient, seq)
}

func purposeName(p emrv1.Purpose) string {
	switch p {
	case emrv1.Purpose_PURPOSE_TREATMENT:
		return "treatment"
	case emrv1.Purpose_PURPOSE_RESEARCH:
		return "research"
	case emrv1.Purpose_PURPOSE_EMERGENCY:
		return "emergency"
	}
	return p.String()
}

func unmarshalAt(key, value []byte, m proto.Message) error {
	if err := proto.Unmarshal(value, m); err != nil {
		return fmt.Errorf("decode %T at %x: %w", m, key, err)
	}
	return nil
}

func decodeU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("counter is %d bytes, want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
