package app

import (
	"fmt"
	"strconv"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// registerStudy: a registrar of a research organization registers a study
// led by a researcher of the same organization.
func (ctx *txContext) registerStudy(m *emrv1.MsgRegisterStudy) error {
	if err := ctx.requireRegistrarOf(ctx.signer.OrganizationId); err != nil {
		return err
	}
	org, err := ctx.st.organization(ctx.signer.OrganizationId)
	if err != nil {
		return err
	}
	if org == nil || org.Kind != emrv1.OrganizationKind_ORGANIZATION_KIND_RESEARCH {
		return fmt.Errorf("%w: only registrars of a research organization register studies, %q is not one", ErrUnauthorized, ctx.signer.OrganizationId)
	}
	existing, err := ctx.st.study(m.StudyId)
	if err != nil {
		return err
	}
	if existing != nil {
		return fmt.Errorf("%w: study %q is already registered", ErrAlreadyExists, m.StudyId)
	}
	pi, err := ctx.st.member(m.PrincipalInvestigator)
	if err != nil {
		return err
	}
	if pi == nil || pi.Role != emrv1.Role_ROLE_RESEARCHER || pi.OrganizationId != org.Id {
		return fmt.Errorf("%w: the principal investigator %X must be a researcher of %q", ErrInvalidMsg, m.PrincipalInvestigator, org.Id)
	}
	if !IsActive(pi) {
		return fmt.Errorf("%w: the principal investigator %X is suspended", ErrGranteeSuspended, m.PrincipalInvestigator)
	}
	ctx.attr("study", m.StudyId)
	return ctx.st.put(studyKey(m.StudyId), &emrv1.Study{
		Id:                    m.StudyId,
		Title:                 m.Title,
		PrincipalInvestigator: m.PrincipalInvestigator,
		OrganizationId:        org.Id,
		StudyPubKey:           m.StudyPubKey,
		RegisteredBy:          ctx.tx.Signer,
		RegisteredHeight:      ctx.block.Height,
	})
}

// shareRecord: a clinician with a share right for the study covering the
// record's category records that it shared the record (re-encrypted to the
// study key, anonymised when the consent demands it).
func (ctx *txContext) shareRecord(m *emrv1.MsgShareRecord) error {
	p, err := ctx.patient(m.PatientId)
	if err != nil {
		return err
	}
	if ctx.signer.Role != emrv1.Role_ROLE_CLINICIAN {
		return fmt.Errorf("%w: only clinicians share records with studies, the signer is a %s", ErrUnauthorized, RoleName(ctx.signer.Role))
	}
	rec, err := ctx.st.record(p.Id, m.RecordSequence)
	if err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("%w: the patient has no record %d", ErrNotFound, m.RecordSequence)
	}
	study, err := ctx.liveStudy(m.StudyId)
	if err != nil {
		return err
	}
	perm, err := ctx.authorize(p, emrv1.Right_RIGHT_SHARE, rec.Category)
	if err != nil {
		return err
	}
	if perm == nil {
		// Only a patient owns records, and patients are not clinicians.
		return fmt.Errorf("%w: the owner does not share through this message", ErrUnauthorized)
	}
	if perm.StudyId != m.StudyId {
		return fmt.Errorf("%w: the share right is for study %q, not %q", ErrUnauthorized, perm.StudyId, m.StudyId)
	}
	if perm.Anonymise && !m.Anonymised {
		return fmt.Errorf("%w: the patient consented to sharing with %q only if anonymised", ErrUnauthorized, m.StudyId)
	}
	if err := CheckBlobSize(ctx.params, m.Size); err != nil {
		return err
	}
	if err := ctx.checkWrappedKeySize(m.WrappedStudyKey); err != nil {
		return err
	}
	p.ShareCount++
	study.ShareCount++
	share := &emrv1.Share{
		PatientId:       p.Id,
		Sequence:        p.ShareCount,
		RecordSequence:  m.RecordSequence,
		StudyId:         m.StudyId,
		Sharer:          ctx.tx.Signer,
		Anonymised:      m.Anonymised,
		SharedSha256:    m.SharedSha256,
		ObjectKey:       m.ObjectKey,
		Size:            m.Size,
		WrappedStudyKey: m.WrappedStudyKey,
		Height:          ctx.block.Height,
		Time:            timestamp(ctx.block.Time),
		TxHash:          ctx.tx.Hash,
		StudySequence:   study.ShareCount,
	}
	ctx.attrRecord(p.Id, m.RecordSequence)
	ctx.attr("study", m.StudyId)
	ctx.detailHex("sharer", ctx.tx.Signer)
	ctx.detail(CategoryAttribute, rec.Category)
	ctx.detailHex(BlobAttribute, m.SharedSha256)
	ctx.detail(BlobSizeAttribute, strconv.FormatUint(m.Size, 10))
	return firstError(
		ctx.st.put(shareKey(p.Id, share.Sequence), share),
		ctx.st.put(patientKey(p.Id), p),
		ctx.st.putStudyShare(study, share),
	)
}

// liveStudy reads study id, which a share consent or a share names: it
// must exist, and its organization must not have left the consortium (its
// members, who alone read its shares, are retired).
func (ctx *txContext) liveStudy(id string) (*emrv1.Study, error) {
	study, err := ctx.st.study(id)
	if err != nil {
		return nil, err
	}
	if study == nil {
		return nil, fmt.Errorf("%w: no study %q", ErrNotFound, id)
	}
	org, err := ctx.st.organization(study.OrganizationId)
	if err != nil {
		return nil, err
	}
	if why := OrganizationRetired(study.OrganizationId, org.GetRetiredHeight()); why != "" {
		return nil, fmt.Errorf("%w: study %q: %s", ErrUnauthorized, id, why)
	}
	return study, nil
}
