package app

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/oasisprotocol/curve25519-voi/curve"

	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Stateless limits. Limits that a consortium may want to tune are in Params.
const (
	maxIDLength         = 64
	maxTextLength       = 256
	maxObjectKeyLength  = 512
	maxStaticWrappedKey = 4096 // hard ceiling; params.max_wrapped_key_bytes is the enforced one
)

// idPattern is the form of organization and study ids.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ValidateMsg checks what needs no state: presence, sizes, enum values,
// id formats. Errors wrap ErrInvalidMsg (or ErrTxDecode for a missing msg).
func ValidateMsg(msg *emrv1.Msg) error {
	if msg == nil || msg.Sum == nil {
		return fmt.Errorf("%w: transaction carries no message", ErrTxDecode)
	}
	var err error
	switch m := msg.Sum.(type) {
	case *emrv1.Msg_RegisterMember:
		err = validateRegisterMember(m.RegisterMember)
	case *emrv1.Msg_SetMemberStatus:
		err = validateSetMemberStatus(m.SetMemberStatus.GetAddress(), m.SetMemberStatus.GetStatus())
	case *emrv1.Msg_EnrollPatient:
		err = validateEnrollPatient(m.EnrollPatient)
	case *emrv1.Msg_Grant:
		err = validateGrant(m.Grant)
	case *emrv1.Msg_Revoke:
		err = firstError(checkPatientID(m.Revoke.GetPatientId()), checkAddress("grantee", m.Revoke.GetGrantee()))
	case *emrv1.Msg_RotateKey:
		err = validateRotateKey(m.RotateKey)
	case *emrv1.Msg_AddRecord:
		err = validateAddRecord(m.AddRecord)
	case *emrv1.Msg_RecordAccess:
		err = validateRecordAccess(m.RecordAccess)
	case *emrv1.Msg_RegisterStudy:
		err = validateRegisterStudy(m.RegisterStudy)
	case *emrv1.Msg_ShareRecord:
		err = validateShareRecord(m.ShareRecord)
	case *emrv1.Msg_Propose:
		err = validatePropose(m.Propose)
	case *emrv1.Msg_Approve:
		err = checkProposalID(m.Approve.GetProposalId())
	case *emrv1.Msg_Withdraw:
		err = checkProposalID(m.Withdraw.GetProposalId())
	default:
		return fmt.Errorf("%w: unknown message type %T", ErrTxDecode, msg.Sum)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidMsg, MsgName(msg), err)
	}
	return nil
}

// MsgName is the short name of a message, used in logs and events.
func MsgName(msg *emrv1.Msg) string {
	switch msg.GetSum().(type) {
	case *emrv1.Msg_RegisterMember:
		return "register_member"
	case *emrv1.Msg_SetMemberStatus:
		return "set_member_status"
	case *emrv1.Msg_EnrollPatient:
		return "enroll_patient"
	case *emrv1.Msg_Grant:
		return "grant"
	case *emrv1.Msg_Revoke:
		return "revoke"
	case *emrv1.Msg_RotateKey:
		return "rotate_key"
	case *emrv1.Msg_AddRecord:
		return "add_record"
	case *emrv1.Msg_RecordAccess:
		return "record_access"
	case *emrv1.Msg_RegisterStudy:
		return "register_study"
	case *emrv1.Msg_ShareRecord:
		return "share_record"
	case *emrv1.Msg_Propose:
		return "propose"
	case *emrv1.Msg_Approve:
		return "approve"
	case *emrv1.Msg_Withdraw:
		return "withdraw"
	}
	return "unknown"
}

// checkProposalID refuses proposal 0: proposals are numbered from 1.
func checkProposalID(id uint64) error {
	if id == 0 {
		return fmt.Errorf("proposal 0 does not exist")
	}
	return nil
}

// RegistrableRole reports whether a registrar may register a member with
// role r (and genesis seat one): every role but the patient's, which a
// patient takes by enrolling itself.
func RegistrableRole(r emrv1.Role) bool {
	switch r {
	case emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER, emrv1.Role_ROLE_AUDITOR, emrv1.Role_ROLE_REGISTRAR,
		emrv1.Role_ROLE_EMERGENCY_SERVICE, emrv1.Role_ROLE_STORAGE_SERVICE:
		return true
	}
	return false
}

// registrableRoles names them for errors.
const registrableRoles = "clinician, researcher, auditor, registrar, emergency service or storage service"

func validateRegisterMember(m *emrv1.MsgRegisterMember) error {
	if !RegistrableRole(m.Role) {
		return fmt.Errorf("role must be %s, got %s", registrableRoles, m.Role)
	}
	return firstError(
		checkSigningKey("signing key", m.SignPubKey),
		checkX25519Key("encryption key", m.EncPubKey),
		checkID("organization id", m.OrganizationId),
		checkText("credential reference", m.CredentialRef, true),
	)
}

func validateSetMemberStatus(address []byte, status emrv1.MemberStatus) error {
	if status != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE && status != emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED {
		return fmt.Errorf("status must be active or suspended, got %s", status)
	}
	return checkAddress("address", address)
}

func validateEnrollPatient(m *emrv1.MsgEnrollPatient) error {
	return firstError(checkPatientID(m.PatientId), checkFixed("id seed", m.IdSeed, PatientIDSeedSize),
		checkX25519Key("encryption key", m.EncPubKey), checkFixed("KEK check value", m.KekCheck, crypto.KEKCheckSize))
}

func validateGrant(m *emrv1.MsgGrant) error {
	if err := firstError(checkPatientID(m.PatientId), checkAddress("grantee", m.Grantee)); err != nil {
		return err
	}
	if len(m.Rights) == 0 {
		return fmt.Errorf("no rights given")
	}
	if m.KeyVersion == 0 {
		return fmt.Errorf("key version must be at least 1")
	}
	for _, r := range m.Rights {
		switch r {
		case emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE, emrv1.Right_RIGHT_SHARE:
		case emrv1.Right_RIGHT_EMERGENCY:
			// An opt-in to an organization's emergency service is a grant
			// of its own: the service reads, writes and shares nothing.
			if slices.ContainsFunc(m.Rights, func(o emrv1.Right) bool { return o != r }) {
				return fmt.Errorf("the emergency right is granted alone (to an emergency service), not with %v", m.Rights)
			}
		default:
			return fmt.Errorf("unknown right %s", r)
		}
	}
	for _, c := range m.Categories {
		if err := checkID("category", c); err != nil {
			return err
		}
	}
	if m.NotAfter == nil {
		return fmt.Errorf("not_after is required")
	}
	if err := m.NotAfter.CheckValid(); err != nil {
		return fmt.Errorf("not_after: %v", err)
	}
	if m.NotBefore != nil {
		if err := m.NotBefore.CheckValid(); err != nil {
			return fmt.Errorf("not_before: %v", err)
		}
		if !m.NotBefore.AsTime().Before(m.NotAfter.AsTime()) {
			return fmt.Errorf("not_before (%s) must be before not_after (%s)", formatTime(m.NotBefore.AsTime()), formatTime(m.NotAfter.AsTime()))
		}
	}
	// Every right needs the patient's KEK: readers and sharers unwrap file
	// keys with it, writers wrap new file keys under it. Holding the KEK
	// does not let a writer read: ciphertext is served only after a
	// committed RecordAccess, which needs the read (or share) right.
	if len(m.WrappedKek) == 0 {
		return fmt.Errorf("a grant needs the patient key wrapped to the grantee")
	}
	if len(m.WrappedKek) > maxStaticWrappedKey {
		return fmt.Errorf("wrapped key is %d bytes, more than %d", len(m.WrappedKek), maxStaticWrappedKey)
	}
	if slices.Contains(m.Rights, emrv1.Right_RIGHT_SHARE) {
		if err := checkID("study id", m.StudyId); err != nil {
			return fmt.Errorf("share right: %v", err)
		}
	} else if m.StudyId != "" || m.Anonymise {
		return fmt.Errorf("study id and anonymise belong to the share right")
	}
	return nil
}

func validateRotateKey(m *emrv1.MsgRotateKey) error {
	if err := checkPatientID(m.PatientId); err != nil {
		return err
	}
	if m.NewKeyVersion < 2 {
		return fmt.Errorf("new key version must be at least 2")
	}
	if err := checkFixed("KEK check value", m.KekCheck, crypto.KEKCheckSize); err != nil {
		return err
	}
	for _, e := range m.Envelopes {
		if err := firstError(checkAddress("envelope grantee", e.GetGrantee()), checkWrappedKey("envelope", e.GetWrappedKek())); err != nil {
			return err
		}
	}
	for _, r := range m.Rewrapped {
		if r.GetRecordSequence() == 0 {
			return fmt.Errorf("record sequence 0 does not exist")
		}
		if err := checkWrappedKey("re-wrapped file key", r.GetWrappedFileKey()); err != nil {
			return err
		}
	}
	return nil
}

func validateAddRecord(m *emrv1.MsgAddRecord) error {
	if m.Size == 0 {
		return fmt.Errorf("size must be positive")
	}
	if m.KeyVersion == 0 {
		return fmt.Errorf("key version must be at least 1")
	}
	return firstError(
		checkPatientID(m.PatientId),
		checkID("category", m.Category),
		checkText("object key", m.ObjectKey, true),
		checkHash("ciphertext hash", m.CiphertextSha256),
		checkWrappedKey("wrapped file key", m.WrappedFileKey),
	)
}

func validateRecordAccess(m *emrv1.MsgRecordAccess) error {
	if err := checkPatientID(m.PatientId); err != nil {
		return err
	}
	switch m.Purpose {
	case emrv1.Purpose_PURPOSE_TREATMENT, emrv1.Purpose_PURPOSE_RESEARCH, emrv1.Purpose_PURPOSE_EMERGENCY:
	default:
		return fmt.Errorf("purpose must be treatment, research or emergency, got %s", m.Purpose)
	}
	if len(m.RecordSequences) == 0 && len(m.ShareSequences) == 0 {
		return fmt.Errorf("no records or shares named")
	}
	if len(m.ShareSequences) > 0 && m.Purpose != emrv1.Purpose_PURPOSE_RESEARCH {
		return fmt.Errorf("a share is read for research, not %s", purposeName(m.Purpose))
	}
	if m.Purpose == emrv1.Purpose_PURPOSE_EMERGENCY {
		if err := checkAddress("emergency service", m.EmergencyService); err != nil {
			return fmt.Errorf("an emergency read names the emergency service the patient opted in to: %v", err)
		}
		if err := CheckEmergencyReason(m.EmergencyReason); err != nil {
			return err
		}
	} else {
		if len(m.EmergencyService) != 0 {
			return fmt.Errorf("an emergency service is named only by an emergency read, not one for %s", purposeName(m.Purpose))
		}
		if m.EmergencyReason != emrv1.EmergencyReason_EMERGENCY_REASON_UNSPECIFIED {
			return fmt.Errorf("a reason to break the glass is given only by an emergency read, not one for %s", purposeName(m.Purpose))
		}
	}
	if err := checkSequences("record", m.RecordSequences); err != nil {
		return err
	}
	return checkSequences("share", m.ShareSequences)
}

// checkSequences refuses a sequence 0 (they start at 1) and one named twice.
func checkSequences(what string, seqs []uint64) error {
	seen := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		if s == 0 {
			return fmt.Errorf("%s sequence 0 does not exist", what)
		}
		if seen[s] {
			return fmt.Errorf("%s %d named twice", what, s)
		}
		seen[s] = true
	}
	return nil
}

func validateRegisterStudy(m *emrv1.MsgRegisterStudy) error {
	return firstError(
		checkID("study id", m.StudyId),
		checkText("title", m.Title, true),
		checkAddress("principal investigator", m.PrincipalInvestigator),
		checkX25519Key("study key", m.StudyPubKey),
	)
}

func validateShareRecord(m *emrv1.MsgShareRecord) error {
	if m.RecordSequence == 0 {
		return fmt.Errorf("record sequence 0 does not exist")
	}
	if m.Size == 0 {
		return fmt.Errorf("size must be positive")
	}
	return firstError(
		checkPatientID(m.PatientId),
		checkID("study id", m.StudyId),
		checkHash("shared ciphertext hash", m.SharedSha256),
		checkText("object key", m.ObjectKey, true),
		checkWrappedKey("wrapped study key", m.WrappedStudyKey),
	)
}

func validatePropose(m *emrv1.MsgPropose) error {
	if err := checkText("reason", m.GetReason(), true); err != nil {
		return err
	}
	// Getters throughout: a Go caller may leave a message of the oneof nil.
	switch c := m.GetChange().GetChange().(type) {
	case *emrv1.ConsortiumChange_AddOrganization:
		add := c.AddOrganization
		if err := validateOrganization(add.GetOrganization()); err != nil {
			return err
		}
		return validateRegistrarKeys(add.GetRegistrarSignPubKey(), add.GetRegistrarEncPubKey(), add.GetRegistrarCredentialRef())
	case *emrv1.ConsortiumChange_SetMemberStatus:
		if c.SetMemberStatus.GetFromStatusChanges() != 0 {
			return fmt.Errorf("from_status_changes is the chain's to set: leave it 0")
		}
		return validateSetMemberStatus(c.SetMemberStatus.GetAddress(), c.SetMemberStatus.GetStatus())
	case *emrv1.ConsortiumChange_AddRegistrar:
		add := c.AddRegistrar
		return firstError(
			checkID("organization id", add.GetOrganizationId()),
			validateRegistrarKeys(add.GetSignPubKey(), add.GetEncPubKey(), add.GetCredentialRef()),
		)
	case *emrv1.ConsortiumChange_SetValidatorPower:
		set := c.SetValidatorPower
		if set.GetFromPower() != 0 || set.GetFromChanges() != 0 {
			return fmt.Errorf("from_power and from_changes are the chain's to set: leave them 0")
		}
		// The possession is verified where the chain id and the key's
		// change count are known (checkPossession); here only its shape.
		if p := set.GetPossession(); len(p) != 0 {
			if err := checkFixed("validator possession (an ed25519 signature)", p, SignatureSize); err != nil {
				return err
			}
		}
		return checkValidatorPower(set.GetPubKey(), set.GetPower())
	case *emrv1.ConsortiumChange_SetParams:
		// from_changes is the proposer's: the count of the params it read.
		if c.SetParams.GetFromParams() != nil {
			return fmt.Errorf("from_params is the chain's to set: leave it unset")
		}
		return ValidateParams(c.SetParams.GetParams())
	case *emrv1.ConsortiumChange_RetireOrganization:
		return checkID("organization id", c.RetireOrganization.GetOrganizationId())
	}
	return fmt.Errorf("the proposal changes nothing: it needs add_organization, set_validator_power, set_member_status, add_registrar, set_params or retire_organization")
}

// validateRegistrarKeys checks a registrar seated by proposal: its keys as
// validateRegisterMember does; the credential is optional, as for a
// genesis member.
func validateRegistrarKeys(sign, enc []byte, credential string) error {
	return firstError(
		checkSigningKey("registrar signing key", sign),
		checkX25519Key("registrar encryption key", enc),
		checkText("registrar credential reference", credential, false),
	)
}

// validateOrganization checks an organization's id, name and kind.
func validateOrganization(o *emrv1.Organization) error {
	if o == nil {
		return fmt.Errorf("organization missing")
	}
	if err := checkID("organization id", o.Id); err != nil {
		return err
	}
	if err := checkText("organization name", o.Name, true); err != nil {
		return fmt.Errorf("organization %q: %w", o.Id, err)
	}
	if o.Kind == emrv1.OrganizationKind_ORGANIZATION_KIND_UNSPECIFIED || emrv1.OrganizationKind_name[int32(o.Kind)] == "" {
		return fmt.Errorf("organization %q: kind must be hospital, lab, pharmacy or research", o.Id)
	}
	if o.RetiredHeight != 0 {
		return fmt.Errorf("organization %q: retired_height is the chain's to set (RetireOrganization): leave it 0", o.Id)
	}
	return nil
}

// checkValidatorPower checks a validator's consensus key (ed25519, as
// checkSigningKey) and a power from 0 (removed) to MaxValidatorPower.
func checkValidatorPower(pubKey []byte, power int64) error {
	if err := checkSigningKey("validator key", pubKey); err != nil {
		return err
	}
	if power < 0 || power > MaxValidatorPower {
		return fmt.Errorf("validator power %d is outside 0..%d", power, MaxValidatorPower)
	}
	return nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkFixed(what string, b []byte, size int) error {
	if len(b) != size {
		return fmt.Errorf("%s must be %d bytes, got %d", what, size, len(b))
	}
	return nil
}

func checkPatientID(b []byte) error            { return checkFixed("patient id", b, PatientIDSize) }
func checkAddress(what string, b []byte) error { return checkFixed(what, b, AddressSize) }
func checkKey(what string, b []byte) error     { return checkFixed(what, b, PubKeySize) }
func checkHash(what string, b []byte) error    { return checkFixed(what, b, HashSize) }

// checkSigningKey also refuses an ed25519 key that is not the canonical
// encoding of a point of the prime-order subgroup, as every key made from
// a private scalar is. CometBFT verifies signatures by ZIP-215, under
// which a key of small order (the identity, say) accepts one fixed
// signature on every message: anyone could sign as its member, and what
// it signed would prove nothing. The check (a point decompression and a
// scalar multiplication, the same on every node) runs when a key is
// registered or enrolls a patient, not per transaction: a signer is known
// by its registered key.
func checkSigningKey(what string, b []byte) error {
	if err := checkKey(what, b); err != nil {
		return err
	}
	var enc, back curve.CompressedEdwardsY
	var p curve.EdwardsPoint
	if _, err := enc.SetBytes(b); err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	if _, err := p.SetCompressedY(&enc); err != nil || !bytes.Equal(back.SetEdwardsPoint(&p)[:], b) {
		return fmt.Errorf("%s is not the canonical encoding of an ed25519 point", what)
	}
	if p.IsSmallOrder() || !p.IsTorsionFree() {
		return fmt.Errorf("%s is not an ed25519 key of prime order: anyone could sign for a key of small order", what)
	}
	return nil
}

// checkX25519Key also refuses a non-canonical X25519 key, as envelopes to
// it would bind other bytes than its owner's private key derives and could
// never be opened, and a point of small order, whose shared secret with
// any sender is one of eight values anyone can try: clients refuse to seal
// to such a key (crypto.ParseEncryptionPublicKey), so its owner could be
// granted nothing. The check is one fixed X25519 multiplication, the same
// on every node.
func checkX25519Key(what string, b []byte) error {
	if err := checkKey(what, b); err != nil {
		return err
	}
	if !crypto.CanonicalX25519(b) {
		return fmt.Errorf("%s is not a canonical X25519 key (top bit set, or not below 2^255-19)", what)
	}
	if _, err := crypto.ParseEncryptionPublicKey(b); err != nil {
		return fmt.Errorf("%s is an X25519 point of small order: no envelope to it would be secret", what)
	}
	return nil
}

func checkWrappedKey(what string, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%s is empty", what)
	}
	if len(b) > maxStaticWrappedKey {
		return fmt.Errorf("%s is %d bytes, more than %d", what, len(b), maxStaticWrappedKey)
	}
	return nil
}

// CheckID checks an organization or study id (what names it in the
// error) as the chain does: 1 to 64 lowercase letters, digits, '.', '_'
// or '-'.
func CheckID(what, id string) error { return checkID(what, id) }

func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(id) > maxIDLength {
		return fmt.Errorf("%s is longer than %d characters", what, maxIDLength)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%s %q must be lowercase letters, digits, '.', '_' or '-'", what, id)
	}
	return nil
}

func checkText(what, s string, required bool) error {
	if required && s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	limit := maxTextLength
	if what == "object key" {
		limit = maxObjectKeyLength
	}
	if len(s) > limit {
		return fmt.Errorf("%s is longer than %d bytes", what, limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) || isHiddenControl(r) {
			return fmt.Errorf("%s holds the control character U+%04X: text is shown to people as it is stored", what, r)
		}
	}
	return nil
}

// isHiddenControl reports the characters that reorder the text around them
// (marks, embeddings, overrides, isolates) or hide in it (line and
// paragraph separators, the zero-width space, word joiner, invisible
// operators and byte-order mark): in a name or an object key they can make
// what a reader sees differ from what is stored. The list is fixed here,
// not taken from Unicode tables, which change with Go releases: a rule of
// the state machine must not. (The zero-width non-joiner and joiner stay:
// Persian and emoji need them.)
func isHiddenControl(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200b, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029, r == 0xfeff:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2060 && r <= 0x2064, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
