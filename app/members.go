package app

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// requireRegistrarOf insists the signer is an active registrar of org (the
// signer is active, or authenticate would have refused it).
func (ctx *txContext) requireRegistrarOf(org string) error {
	if err := ctx.requireRegistrar(); err != nil {
		return err
	}
	if ctx.signer.OrganizationId != org {
		return fmt.Errorf("%w: the signer is a registrar of %q, not of %q", ErrUnauthorized, ctx.signer.OrganizationId, org)
	}
	return nil
}

// registerMember: an active registrar of organization X registers a
// clinician, researcher, auditor or registrar of X.
func (ctx *txContext) registerMember(m *emrv1.MsgRegisterMember) error {
	if err := ctx.requireRegistrarOf(m.OrganizationId); err != nil {
		return err
	}
	org, err := ctx.st.organization(m.OrganizationId)
	if err != nil {
		return err
	}
	if org == nil {
		return fmt.Errorf("%w: no organization %q", ErrNotFound, m.OrganizationId)
	}
	if err := storageServiceAllowed(ctx.params, m.Role, m.OrganizationId); err != nil {
		return fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	addr, err := ctx.newMemberAddress(m.SignPubKey)
	if err != nil {
		return err
	}
	return ctx.putNewMember(addr, m, ctx.tx.Signer)
}

// putNewMember stores the active member at addr that m describes,
// registered by registeredBy (none: seated by a consortium proposal).
func (ctx *txContext) putNewMember(addr []byte, m *emrv1.MsgRegisterMember, registeredBy []byte) error {
	ctx.attrHex("member", addr)
	return ctx.st.putMember(&emrv1.Member{
		Address:          addr,
		SignPubKey:       m.SignPubKey,
		EncPubKey:        m.EncPubKey,
		Role:             m.Role,
		OrganizationId:   m.OrganizationId,
		CredentialRef:    m.CredentialRef,
		Status:           emrv1.MemberStatus_MEMBER_STATUS_ACTIVE,
		RegisteredBy:     registeredBy,
		RegisteredHeight: ctx.block.Height,
	})
}

// newMemberAddress is the address of signPubKey, which no member (patients
// included) may have yet.
func (ctx *txContext) newMemberAddress(signPubKey []byte) ([]byte, error) {
	addr := AddressOf(signPubKey)
	existing, err := ctx.st.member(addr)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return nil, fmt.Errorf("%w: %X is already a %s", ErrAlreadyExists, addr, RoleName(existing.Role))
	}
	return addr, nil
}

// setMemberStatus: a registrar of X suspends or reactivates a member of X.
func (ctx *txContext) setMemberStatus(m *emrv1.MsgSetMemberStatus) error {
	target, err := ctx.organizationMember(m.Address)
	if err != nil {
		return err
	}
	if err := ctx.requireRegistrarOf(target.OrganizationId); err != nil {
		return err
	}
	if bytes.Equal(target.Address, ctx.tx.Signer) {
		return fmt.Errorf("%w: a registrar cannot change its own status", ErrInvalidMsg)
	}
	if err := checkStatusChange(target, m.Status, false); err != nil {
		return err
	}
	return ctx.putMemberStatus(target, m.Status, false)
}

// organizationMember loads a member of an organization (not a patient).
func (ctx *txContext) organizationMember(addr []byte) (*emrv1.Member, error) {
	target, err := ctx.st.member(addr)
	if err != nil {
		return nil, err
	}
	if target == nil {
		return nil, fmt.Errorf("%w: no member %X", ErrNotFound, addr)
	}
	if target.Role == emrv1.Role_ROLE_PATIENT {
		return nil, fmt.Errorf("%w: patients are not members of an organization", ErrUnauthorized)
	}
	return target, nil
}

// checkStatusChange checks that target's status may become status, by a
// consortium proposal (byConsortium) or by its organization: a change must
// change something, and a suspension the consortium made is lifted only by
// a proposal. The consortium suspending a member its organization
// suspended is a change: it makes the suspension stick.
func checkStatusChange(target *emrv1.Member, status emrv1.MemberStatus, byConsortium bool) error {
	suspended := emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED
	switch {
	case byConsortium && status == suspended && target.Status == suspended && !target.SuspendedByConsortium:
		return nil
	case target.Status == status:
		return fmt.Errorf("%w: member %X is already %s", ErrInvalidMsg, target.Address, StatusName(status))
	case !byConsortium && target.SuspendedByConsortium:
		return fmt.Errorf("%w: the consortium suspended member %X by proposal; only a proposal reactivates it", ErrUnauthorized, target.Address)
	}
	return nil
}

// MemberRetired says why m's status can no longer change: its
// organization was retired ("" while it was not). A suspension or
// reactivation of it is overtaken then.
func MemberRetired(m *emrv1.Member) string {
	if m.GetStatus() != emrv1.MemberStatus_MEMBER_STATUS_RETIRED {
		return ""
	}
	return fmt.Sprintf("member %X is retired: its organization %q left the consortium", m.GetAddress(), m.GetOrganizationId())
}

// putMemberStatus gives target status; byConsortium marks a suspension a
// proposal made.
func (ctx *txContext) putMemberStatus(target *emrv1.Member, status emrv1.MemberStatus, byConsortium bool) error {
	target.Status = status
	target.SuspendedByConsortium = byConsortium && status == emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED
	target.StatusChanges++
	ctx.attrHex("member", target.Address)
	return ctx.st.putMember(target)
}

// enrollPatient: a new account enrolls itself with a pseudonymous id bound
// to its key (BoundPatientID), so the id cannot be taken from a mempool.
func (ctx *txContext) enrollPatient(m *emrv1.MsgEnrollPatient) error {
	if err := checkSigningKey("the signer's key", ctx.tx.Body.SignerPubKey); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMsg, err)
	}
	if !bytes.Equal(m.PatientId, BoundPatientID(ctx.tx.Body.SignerPubKey, m.IdSeed)) {
		return fmt.Errorf("%w: patient id %x is not bound to the signer's key and the id seed", ErrInvalidMsg, m.PatientId)
	}
	existing, err := ctx.st.patient(m.PatientId)
	if err != nil {
		return err
	}
	if existing != nil { // only the key that enrolled it can name this id, and it is a patient already; never overwrite
		return fmt.Errorf("%w: patient id %x is already enrolled", ErrAlreadyExists, m.PatientId)
	}
	owner := ctx.tx.Signer
	if err := ctx.st.putMember(&emrv1.Member{
		Address:          owner,
		SignPubKey:       ctx.tx.Body.SignerPubKey,
		EncPubKey:        m.EncPubKey,
		Role:             emrv1.Role_ROLE_PATIENT,
		Status:           emrv1.MemberStatus_MEMBER_STATUS_ACTIVE,
		RegisteredHeight: ctx.block.Height,
	}); err != nil {
		return err
	}
	if err := ctx.st.put(patientKey(m.PatientId), &emrv1.Patient{
		Id:             m.PatientId,
		Owner:          owner,
		KeyVersion:     1,
		KekCheck:       m.KekCheck,
		EnrolledHeight: ctx.block.Height,
	}); err != nil {
		return err
	}
	ctx.attrHex(PatientAttribute, m.PatientId)
	return ctx.st.kv.Set(ownerKey(owner), m.PatientId)
}

// StatusName is how errors, the chain's and the sidecars', name a member
// status.
func StatusName(s emrv1.MemberStatus) string {
	switch s {
	case emrv1.MemberStatus_MEMBER_STATUS_ACTIVE:
		return "active"
	case emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED:
		return "suspended"
	case emrv1.MemberStatus_MEMBER_STATUS_RETIRED:
		return "retired (its organization left the consortium)"
	}
	return s.String()
}

// StorageOrganization reports whether params name org among the
// organizations whose storage services keep copies of every blob.
func StorageOrganization(p *emrv1.Params, org string) bool {
	return slices.Contains(p.GetStorageOrganizations(), org)
}

// storageServiceAllowed refuses a storage service of an organization the
// consortium has not named in params.storage_organizations: a copy of
// every patient's ciphertext is the consortium's decision, not one
// registrar's.
func storageServiceAllowed(p *emrv1.Params, role emrv1.Role, org string) error {
	if role == emrv1.Role_ROLE_STORAGE_SERVICE && !StorageOrganization(p, org) {
		return fmt.Errorf("organization %q may not have a storage service: the consortium names the organizations that keep copies of every blob in params.storage_organizations (now: %s), by proposal", org, StorageOrganizationsText(p))
	}
	return nil
}

// StorageOrganizationsText names params.storage_organizations for
// messages: "hospital-a, hospital-b", or "none".
func StorageOrganizationsText(p *emrv1.Params) string {
	if len(p.GetStorageOrganizations()) == 0 {
		return "none"
	}
	return strings.Join(p.GetStorageOrganizations(), ", ")
}
