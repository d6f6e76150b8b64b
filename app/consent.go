package app

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// grant: the patient's owner grants (or replaces) a permission.
func (ctx *txContext) grant(m *emrv1.MsgGrant) error {
	p, err := ctx.ownedPatient(m.PatientId)
	if err != nil {
		return err
	}
	grantee, err := ctx.st.member(m.Grantee)
	if err != nil {
		return err
	}
	if grantee == nil {
		return fmt.Errorf("%w: no member %X", ErrNotFound, m.Grantee)
	}
	if err := MayBeGranted(grantee, m.Rights); err != nil {
		return err
	}
	categories := slices.Clone(m.Categories)
	slices.Sort(categories)
	categories = slices.Compact(categories)
	for _, c := range categories {
		if err := ctx.knownCategory(c); err != nil {
			return err
		}
	}
	rights := slices.Clone(m.Rights)
	slices.Sort(rights)
	rights = slices.Compact(rights)
	if !ctx.block.Time.Before(m.NotAfter.AsTime()) {
		return fmt.Errorf("%w: not_after %s is not after the block time %s", ErrInvalidMsg, formatTime(m.NotAfter.AsTime()), formatTime(ctx.block.Time))
	}
	if uint64(len(m.WrappedKek)) > uint64(ctx.params.MaxWrappedKeyBytes) {
		return fmt.Errorf("%w: wrapped key is %d bytes, the limit is %d", ErrTooLarge, len(m.WrappedKek), ctx.params.MaxWrappedKeyBytes)
	}
	if m.KeyVersion != p.KeyVersion {
		// Sealed before a rotation (or for a later one): stored, the grant
		// would claim the current version while holding another key.
		return fmt.Errorf("%w: the grant carries key version %d, the patient's key is at version %d", ErrKeyVersion, m.KeyVersion, p.KeyVersion)
	}
	if slices.Contains(rights, emrv1.Right_RIGHT_SHARE) {
		if _, err := ctx.liveStudy(m.StudyId); err != nil {
			return err
		}
	}
	if p.KeyVersion < p.MinKeyVersion {
		// A revocation's rotations are unfinished. Replacing a revoked
		// permission now would leave the patient no revocation to finish
		// them by (emrcli revoke --to that member again).
		old, err := ctx.st.permission(p.Id, m.Grantee)
		if err != nil {
			return err
		}
		if old != nil && old.RevokedHeight != 0 {
			return fmt.Errorf("%w: %X was revoked at height %d and the key rotations after it are unfinished (the patient's key is at version %d, records need %d): finish them first (emrcli revoke --to that member again)",
				ErrKeyVersion, m.Grantee, old.RevokedHeight, p.KeyVersion, p.MinKeyVersion)
		}
	}
	notBefore := m.NotBefore
	if notBefore == nil {
		notBefore = timestamp(ctx.block.Time)
	}
	ctx.attrHex("grantee", m.Grantee)
	if err := ctx.st.put(permissionKey(p.Id, m.Grantee), &emrv1.Permission{
		PatientId:     p.Id,
		Grantee:       m.Grantee,
		Rights:        rights,
		Categories:    categories,
		NotBefore:     notBefore,
		NotAfter:      m.NotAfter,
		WrappedKek:    m.WrappedKek,
		KeyVersion:    p.KeyVersion,
		StudyId:       m.StudyId,
		Anonymise:     m.Anonymise,
		GrantedHeight: ctx.block.Height,
	}); err != nil {
		return err
	}
	return ctx.st.mark(grantKey(m.Grantee, p.Id))
}

// MayBeGranted says why grantee, as the state has it, may not be granted
// rights (nil when it may): its role may not hold them (granteeMayHold),
// or it is not active (ErrGranteeSuspended). It is the chain's rule for a
// grant, and the client's before it seals the patient's KEK to the
// grantee: an envelope is a disclosure as soon as a node sees the
// transaction, committed or refused, so a grant the chain must refuse is
// never sealed.
func MayBeGranted(grantee *emrv1.Member, rights []emrv1.Right) error {
	if err := granteeMayHold(grantee, rights); err != nil {
		return err
	}
	if !IsActive(grantee) {
		return fmt.Errorf("%w: %X is %s", ErrGranteeSuspended, grantee.GetAddress(), StatusName(grantee.GetStatus()))
	}
	return nil
}

// granteeMayHold refuses a grant of rights to grantee's role: clinicians
// and researchers are granted read, write and share; an emergency service
// only the emergency right (a patient's opt-in to break-glass reads by its
// organization's clinicians), which no one else is granted. rights is
// valid (validateGrant): the emergency right comes alone.
func granteeMayHold(grantee *emrv1.Member, rights []emrv1.Right) error {
	optIn := slices.Contains(rights, emrv1.Right_RIGHT_EMERGENCY)
	switch {
	case optIn && grantee.Role != emrv1.Role_ROLE_EMERGENCY_SERVICE:
		return fmt.Errorf("%w: the emergency right is granted to an organization's emergency service, %X is a %s", ErrUnauthorized, grantee.Address, RoleName(grantee.Role))
	case !optIn && grantee.Role == emrv1.Role_ROLE_EMERGENCY_SERVICE:
		return fmt.Errorf("%w: an emergency service is granted only the emergency right (an opt-in to break-glass reads by its organization's clinicians), not %v", ErrUnauthorized, rights)
	case !optIn && grantee.Role != emrv1.Role_ROLE_CLINICIAN && grantee.Role != emrv1.Role_ROLE_RESEARCHER:
		return fmt.Errorf("%w: consent can be given to clinicians and researchers, %X is a %s", ErrUnauthorized, grantee.Address, RoleName(grantee.Role))
	}
	return nil
}

// revoke: the owner revokes a grant; it stops at this block.
func (ctx *txContext) revoke(m *emrv1.MsgRevoke) error {
	p, err := ctx.ownedPatient(m.PatientId)
	if err != nil {
		return err
	}
	perm, err := ctx.st.permission(p.Id, m.Grantee)
	if err != nil {
		return err
	}
	if perm == nil {
		return fmt.Errorf("%w: the patient has granted %X nothing", ErrNoPermission, m.Grantee)
	}
	if perm.RevokedHeight != 0 {
		return fmt.Errorf("%w: already revoked at height %d", ErrPermissionRevoked, perm.RevokedHeight)
	}
	perm.RevokedHeight = ctx.block.Height
	perm.RevokedTime = timestamp(ctx.block.Time)
	ctx.attrHex("grantee", m.Grantee)
	if err := ctx.st.put(permissionKey(p.Id, m.Grantee), perm); err != nil {
		return err
	}
	// The grantee may hold the KEK of its envelope's version, and of the
	// next (an attempt at that rotation built before the revocation may
	// have sealed it to the grantee): no record is added until the
	// patient's rotations have gone past both (client.RevokeAndRotate).
	if len(perm.WrappedKek) == 0 {
		return nil
	}
	if floor := perm.KeyVersion + 2; floor > p.MinKeyVersion && floor > p.KeyVersion {
		p.MinKeyVersion = floor
		return ctx.st.put(patientKey(p.Id), p)
	}
	return nil
}

// rotateKey: the owner moves to KEK version current+1. It must hand the new
// KEK to exactly the grantees whose grant still stands (any right: writers
// wrap file keys under the KEK), and
// may re-wrap the data keys of existing records (records it does not
// re-wrap keep the key version they were wrapped under).
func (ctx *txContext) rotateKey(m *emrv1.MsgRotateKey) error {
	p, err := ctx.ownedPatient(m.PatientId)
	if err != nil {
		return err
	}
	if m.NewKeyVersion != p.KeyVersion+1 {
		return fmt.Errorf("%w: the current key version is %d, the new one must be %d, not %d", ErrKeyVersion, p.KeyVersion, p.KeyVersion+1, m.NewKeyVersion)
	}
	if uint64(len(m.Rewrapped)) > uint64(ctx.params.MaxRewrapsPerRotation) {
		return fmt.Errorf("%w: %d re-wrapped keys, the limit is %d", ErrTooLarge, len(m.Rewrapped), ctx.params.MaxRewrapsPerRotation)
	}
	envelopes := make(map[string][]byte, len(m.Envelopes))
	for _, e := range m.Envelopes {
		if _, dup := envelopes[string(e.Grantee)]; dup {
			return fmt.Errorf("%w: two envelopes for %X", ErrInvalidMsg, e.Grantee)
		}
		if err := ctx.checkWrappedKeySize(e.WrappedKek); err != nil {
			return err
		}
		envelopes[string(e.Grantee)] = e.WrappedKek
	}
	var missing []string
	err = ctx.forEachPermission(p.Id, func(perm *emrv1.Permission) error {
		needs := permissionStands(perm, ctx.block.Time)
		if needs {
			// A retired grantee never acts again: the new key is not
			// sealed to it. A suspended one may be reactivated, so it
			// needs the new key as an active one does: then every
			// standing grantee that is not retired holds an envelope of
			// the current version in every state, which is what lets
			// client.RevokeAndRotate stop two versions past a revoked
			// grantee's last envelope (the KEK of k+2 is made from a
			// state at k+1, whose rotation left out no one who could
			// stand again). Leaving suspended grantees out would break
			// that.
			grantee, err := ctx.st.member(perm.Grantee)
			if err != nil {
				return err
			}
			needs = grantee.GetStatus() != emrv1.MemberStatus_MEMBER_STATUS_RETIRED
		}
		env, has := envelopes[string(perm.Grantee)]
		switch {
		case needs && !has:
			missing = append(missing, fmt.Sprintf("%X", perm.Grantee))
			return nil
		case !needs:
			return nil
		}
		delete(envelopes, string(perm.Grantee))
		perm.WrappedKek = env
		perm.KeyVersion = m.NewKeyVersion
		return ctx.st.put(permissionKey(p.Id, perm.Grantee), perm)
	})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: no new key envelope for standing grantee(s) %s", ErrInvalidMsg, strings.Join(missing, ", "))
	}
	if len(envelopes) > 0 {
		return fmt.Errorf("%w: %d envelope(s) for members without a standing grant (or retired)", ErrInvalidMsg, len(envelopes))
	}
	seen := make(map[uint64]bool, len(m.Rewrapped))
	for _, r := range m.Rewrapped {
		if seen[r.RecordSequence] {
			return fmt.Errorf("%w: record %d re-wrapped twice", ErrInvalidMsg, r.RecordSequence)
		}
		seen[r.RecordSequence] = true
		if err := ctx.checkWrappedKeySize(r.WrappedFileKey); err != nil {
			return err
		}
		rec, err := ctx.st.record(p.Id, r.RecordSequence)
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("%w: the patient has no record %d", ErrNotFound, r.RecordSequence)
		}
		rec.WrappedFileKey = r.WrappedFileKey
		rec.KeyVersion = m.NewKeyVersion
		if err := ctx.st.put(recordKey(p.Id, rec.Sequence), rec); err != nil {
			return err
		}
	}
	// The floor a revocation set binds re-wrapped keys as it binds new
	// records (addRecord): a revoked grantee may hold the KEK of a version
	// below it, and a record's key re-wrapped under that KEK would be its
	// to open, whatever version the record was under before.
	if len(m.Rewrapped) > 0 && m.NewKeyVersion < p.MinKeyVersion {
		return fmt.Errorf("%w: no record key is re-wrapped under version %d: a revoked grantee may hold it; re-wrap them in the rotation to version %d (the revocation's last)",
			ErrKeyVersion, m.NewKeyVersion, p.MinKeyVersion)
	}
	p.KeyVersion = m.NewKeyVersion
	p.KekCheck = m.KekCheck
	ctx.detail("key_version", fmt.Sprint(p.KeyVersion))
	return ctx.st.put(patientKey(p.Id), p)
}

// forEachPermission visits a patient's permissions in grantee order.
func (ctx *txContext) forEachPermission(patient []byte, visit func(*emrv1.Permission) error) error {
	prefix := permissionPrefix(patient)
	it, err := ctx.st.kv.Iterator(prefix, prefixEnd(prefix), true)
	if err != nil {
		return fmt.Errorf("iterate permissions: %w", err)
	}
	// Collect first: visit writes, and writing under an open iterator is
	// not allowed by every store.
	var perms []*emrv1.Permission
	for ; it.Valid(); it.Next() {
		perm := &emrv1.Permission{}
		if err := unmarshalAt(it.Key(), it.Value(), perm); err != nil {
			it.Close()
			return err
		}
		perms = append(perms, perm)
	}
	if err := firstError(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("iterate permissions: %w", err)
	}
	for _, perm := range perms {
		if !bytes.Equal(perm.PatientId, patient) {
			return fmt.Errorf("permission under %x names patient %x", patient, perm.PatientId)
		}
		if err := visit(perm); err != nil {
			return err
		}
	}
	return nil
}

func (ctx *txContext) checkWrappedKeySize(b []byte) error {
	if uint64(len(b)) > uint64(ctx.params.MaxWrappedKeyBytes) {
		return fmt.Errorf("%w: wrapped key is %d bytes, the limit is %d", ErrTooLarge, len(b), ctx.params.MaxWrappedKeyBytes)
	}
	return nil
}
