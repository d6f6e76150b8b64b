package apptest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func hexOf(b []byte) string { return hex.EncodeToString(b) }

// RegisterMember is the message registering a as role of org.
func RegisterMember(a *Actor, role emrv1.Role, org string) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
		SignPubKey: a.SignPub(), EncPubKey: a.EncPub(), Role: role, OrganizationId: org, CredentialRef: "licence:" + a.Name,
	}}}
}

// SetStatus is the message setting a member's status.
func SetStatus(member *Actor, status emrv1.MemberStatus) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_SetMemberStatus{SetMemberStatus: &emrv1.MsgSetMemberStatus{Address: member.Address, Status: status}}}
}

// Enroll is the message by which patient enrolls as PatientID(patient.Name).
func Enroll(patient *Actor) *emrv1.Msg { return EnrollSeed(patient, PatientSeed(patient.Name)) }

// EnrollAs is the message by which patient claims the id and seed the
// actor named victim enrolls with: what a squatter who read victim's
// EnrollPatient in a mempool would send. The chain refuses it (the id is
// not bound to patient's key).
func EnrollAs(patient *Actor, victim string) *emrv1.Msg {
	m := Enroll(NewActor(victim))
	m.GetEnrollPatient().EncPubKey = patient.EncPub()
	return m
}

// EnrollSeed is the message by which patient enrolls with the id its key
// and seed give (app.BoundPatientID).
func EnrollSeed(patient *Actor, seed []byte) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_EnrollPatient{EnrollPatient: &emrv1.MsgEnrollPatient{
		PatientId: app.BoundPatientID(patient.SignPub(), seed), IdSeed: seed, EncPubKey: patient.EncPub(), KekCheck: KEKCheck(1)}}}
}

// GrantSpec is a grant in test-friendly form.
type GrantSpec struct {
	Rights     []emrv1.Right
	Categories []string
	NotBefore  time.Time // zero: the block time
	NotAfter   time.Time
	Study      string
	Anonymise  bool
	// KeyVersion is the patient's key version the grant is sealed under
	// (0: 1, a patient who never rotated).
	KeyVersion uint64
}

// Grant is the message granting spec over patient id to grantee. The
// wrapped KEK is an opaque placeholder: the chain never opens it.
func Grant(id []byte, grantee *Actor, spec GrantSpec) *emrv1.Msg {
	m := &emrv1.MsgGrant{
		PatientId: id, Grantee: grantee.Address, Rights: spec.Rights, Categories: spec.Categories,
		NotAfter: timestamppb.New(spec.NotAfter), StudyId: spec.Study, Anonymise: spec.Anonymise,
		WrappedKek: []byte("kek-for-" + grantee.Name), KeyVersion: max(spec.KeyVersion, 1),
	}
	if !spec.NotBefore.IsZero() {
		m.NotBefore = timestamppb.New(spec.NotBefore)
	}
	return &emrv1.Msg{Sum: &emrv1.Msg_Grant{Grant: m}}
}

// Revoke is the message revoking grantee's permission over patient id.
func Revoke(id []byte, grantee *Actor) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Revoke{Revoke: &emrv1.MsgRevoke{PatientId: id, Grantee: grantee.Address}}}
}

// Blob is a deterministic fake ciphertext hash for test records.
func Blob(name string) []byte {
	sum := sha256.Sum256([]byte("emrchain/apptest/blob/" + name))
	return sum[:]
}

// AddRecord is the message adding a record of category to patient id at key
// version 1 (see AddRecordAt); whoever signs its transaction is the
// uploader.
func AddRecord(id []byte, category, name string) *emrv1.Msg {
	return AddRecordAt(id, category, name, 1)
}

// AddRecordAt is AddRecord at a given key version.
func AddRecordAt(id []byte, category, name string, keyVersion uint64) *emrv1.Msg {
	return addRecord(id, category, Blob(name), 1024, keyVersion, "file-key-"+name)
}

// AddRecordOf is the message adding a record of category to patient id for
// an actual blob: the SHA-256 and size of its bytes, at key version 1.
func AddRecordOf(id []byte, category string, sum []byte, size uint64) *emrv1.Msg {
	return addRecord(id, category, sum, size, 1, "file-key")
}

func addRecord(id []byte, category string, sum []byte, size, keyVersion uint64, wrappedKey string) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_AddRecord{AddRecord: &emrv1.MsgAddRecord{
		PatientId: id, Category: category, ObjectKey: fmt.Sprintf("blobs/%x", sum), CiphertextSha256: sum,
		Size: size, KeyVersion: keyVersion, WrappedFileKey: []byte(wrappedKey),
	}}}
}

// Access is the message logging a read of records of patient id.
func Access(id []byte, purpose emrv1.Purpose, records ...uint64) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{PatientId: id, RecordSequences: records, Purpose: purpose}}}
}

// EmergencyAccess is the message logging an emergency read of records of
// patient id through emergency service via, for reason
// EmergencyReasonInTests.
func EmergencyAccess(id []byte, via *Actor, records ...uint64) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: id, RecordSequences: records, Purpose: emrv1.Purpose_PURPOSE_EMERGENCY, EmergencyService: via.Address,
		EmergencyReason: EmergencyReasonInTests}}}
}

// EmergencyReasonInTests is the reason EmergencyAccess's reads give.
const EmergencyReasonInTests = emrv1.EmergencyReason_EMERGENCY_REASON_PATIENT_INCAPACITATED

// ShareAccess logs reads, for research, of shares of patient id.
func ShareAccess(id []byte, shares ...uint64) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: id, ShareSequences: shares, Purpose: emrv1.Purpose_PURPOSE_RESEARCH,
	}}}
}

// RegisterStudy is the message registering study id led by pi.
func RegisterStudy(id string, pi *Actor) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_RegisterStudy{RegisterStudy: &emrv1.MsgRegisterStudy{
		StudyId: id, Title: "Study " + id, PrincipalInvestigator: pi.Address, StudyPubKey: pi.EncPub(),
	}}}
}

// Share is the message recording that record seq of patient id was shared
// with study.
func Share(id []byte, seq uint64, study string, anonymised bool) *emrv1.Msg {
	sum := Blob(fmt.Sprintf("share-%x-%d-%s", id, seq, study))
	return &emrv1.Msg{Sum: &emrv1.Msg_ShareRecord{ShareRecord: &emrv1.MsgShareRecord{
		PatientId: id, RecordSequence: seq, StudyId: study, Anonymised: anonymised, SharedSha256: sum,
		ObjectKey: fmt.Sprintf("blobs/%x", sum), Size: 2048, WrappedStudyKey: []byte("study-key"),
	}}}
}

// RotateKey is the message moving patient id to newVersion.
func RotateKey(id []byte, newVersion uint64, envelopes []*emrv1.KeyEnvelope, rewrapped []*emrv1.RewrappedKey) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_RotateKey{RotateKey: &emrv1.MsgRotateKey{PatientId: id, NewKeyVersion: newVersion, Envelopes: envelopes, Rewrapped: rewrapped,
		KekCheck: KEKCheck(newVersion)}}}
}

// KEKCheck is the check value tests commit for a patient's KEK of
// version: 16 bytes that tell versions apart (the state machine only
// stores it).
func KEKCheck(version uint64) []byte {
	sum := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("apptest/kek-check"), version))
	return sum[:16]
}

// AddOrganization proposes to admit organization id (a hospital), with
// registrar as its first registrar.
func AddOrganization(id string, registrar *Actor) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{
		Reason: "admit " + id,
		Change: &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddOrganization{AddOrganization: &emrv1.AddOrganization{
			Organization:           &emrv1.Organization{Id: id, Name: "Organization " + id, Kind: emrv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL},
			RegistrarSignPubKey:    registrar.SignPub(),
			RegistrarEncPubKey:     registrar.EncPub(),
			RegistrarCredentialRef: "licence:" + registrar.Name,
		}}},
	}}}
}

// SetValidatorPower proposes to give the consensus key pubKey power,
// without a proof of possession: a change of an existing validator's power
// (or a proposal the chain refuses). AddValidator adds one.
func SetValidatorPower(pubKey []byte, power int64) *emrv1.Msg {
	return SetValidatorPowerWith(pubKey, power, nil)
}

// SetValidatorPowerWith is SetValidatorPower with possession as the
// key's proof of possession.
func SetValidatorPowerWith(pubKey []byte, power int64, possession []byte) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{
		Reason: "validator change",
		Change: &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetValidatorPower{SetValidatorPower: &emrv1.SetValidatorPower{
			PubKey: pubKey, Power: power, Possession: possession,
		}}},
	}}}
}

// AddValidator proposes to give v's key (as a consensus key) power, with
// its proof of possession for the test chain, which adding a key needs,
// made for a key never changed (change count 0); AddValidatorAt, for one
// that was (a re-addition).
func AddValidator(v *Actor, power int64) *emrv1.Msg {
	return AddValidatorAt(v, power, 0)
}

// AddValidatorAt is AddValidator with the possession for change count
// changes: the number of executed proposals that changed the key's power
// (Chain.ValidatorChanges), which the possession must be for.
func AddValidatorAt(v *Actor, power int64, changes uint64) *emrv1.Msg {
	return SetValidatorPowerWith(v.SignPub(), power, v.PossessionAt(ChainID, changes))
}

// Approve approves proposal id.
func Approve(id uint64) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Approve{Approve: &emrv1.MsgApprove{ProposalId: id}}}
}

// Withdraw withdraws proposal id.
func Withdraw(id uint64) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Withdraw{Withdraw: &emrv1.MsgWithdraw{ProposalId: id}}}
}

// ConsortiumSetStatus proposes to give member status, whatever its
// organization.
func ConsortiumSetStatus(member *Actor, status emrv1.MemberStatus) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{
		Reason: "status of " + member.Name,
		Change: &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetMemberStatus{SetMemberStatus: &emrv1.SetMemberStatus{
			Address: member.Address, Status: status,
		}}},
	}}}
}

// AddRegistrar proposes to seat registrar in org.
func AddRegistrar(org string, registrar *Actor) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{
		Reason: "a registrar for " + org,
		Change: &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddRegistrar{AddRegistrar: &emrv1.AddRegistrar{
			OrganizationId: org, SignPubKey: registrar.SignPub(), EncPubKey: registrar.EncPub(), CredentialRef: "licence:" + registrar.Name,
		}}},
	}}}
}

// RetireOrganization proposes to retire org.
func RetireOrganization(org string) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{
		Reason: org + " leaves",
		Change: &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_RetireOrganization{RetireOrganization: &emrv1.RetireOrganization{OrganizationId: org}}},
	}}}
}

// SetParams proposes to replace the consortium's params with p, built
// from the params of fromChanges changes (the Params answer's changes).
func SetParams(p *emrv1.Params, fromChanges uint64) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{
		Reason: "new params",
		Change: &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{Params: p, FromChanges: fromChanges}}},
	}}}
}
