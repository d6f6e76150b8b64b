package app_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Rules at their edges: each test here fails when the rule it names is
// changed (a comparison made strict, a check dropped).

// TestRevocationFloorOnlyRises: a revocation raises the patient's
// min_key_version to two past the revoked grant's envelope only when that
// is above both the floor and the key version. Revoking an older grant
// after a newer one must not lower the floor the newer one set (records
// would then be added under a KEK the newer grantee may hold), and
// revoking a grant whose envelope the rotations have already passed sets
// no floor.
func TestRevocationFloorOnlyRises(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	doc3 := w.member("review-floor-doc", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	read := func(notAfter time.Time) apptest.GrantSpec {
		return apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: notAfter}
	}
	envelopes := func(grantees ...*apptest.Actor) []*emrv1.KeyEnvelope {
		var out []*emrv1.KeyEnvelope
		for _, g := range grantees {
			out = append(out, &emrv1.KeyEnvelope{Grantee: g.Address, WrappedKek: []byte("kek-" + g.Name)})
		}
		return out
	}
	// doc2's grant ends before the rotation to 2, doc3's before the
	// rotation to 3; w.doc's stands. Their envelopes are then of versions
	// 1, 2 and 3.
	first, second := c.Now.Add(2*time.Second), c.Now.Add(5*time.Second)
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, read(w.year)),
		apptest.Grant(w.pid, w.doc2, read(first)),
		apptest.Grant(w.pid, doc3, read(second)),
	)...))
	for !c.Now.After(first) {
		c.Block()
	}
	c.Must(w.pat, apptest.RotateKey(w.pid, 2, envelopes(w.doc, doc3), nil))
	for !c.Now.After(second) {
		c.Block()
	}
	c.Must(w.pat, apptest.RotateKey(w.pid, 3, envelopes(w.doc), nil))
	floor := func(when string, want uint64) {
		t.Helper()
		if p := rulePatient(c, w.pid); p.KeyVersion != 3 || p.MinKeyVersion != want {
			t.Fatalf("%s: key version %d, floor %d; want 3 and %d", when, p.KeyVersion, p.MinKeyVersion, want)
		}
	}
	floor("before the revocations", 0)
	c.Must(w.pat, apptest.Revoke(w.pid, w.doc2)) // envelope 1: 3, the key's version already
	floor("after revoking the grant sealed at version 1", 0)
	c.Must(w.pat, apptest.Revoke(w.pid, w.doc)) // envelope 3: 5
	floor("after revoking the grant sealed at version 3", 5)
	c.Must(w.pat, apptest.Revoke(w.pid, doc3)) // envelope 2: 4, below 5
	floor("after revoking the grant sealed at version 2", 5)

	// So the KEK of version 4, which w.doc may hold, wraps no record.
	c.Must(w.pat, apptest.RotateKey(w.pid, 4, nil, nil))
	ruleRun(t, c, c.Now, []ruleCase{
		{"a record under version 4", w.pat, apptest.AddRecordAt(w.pid, ruleLab, "review-v4", 4), app.ErrKeyVersion,
			[]string{"no record is added below version 5"}},
	})
}

// TestBreakGlassRulesStandAlone: MayBreakGlass and EmergencyOptInStands
// are exported for the sidecars and the client, which call them without
// the chain's checks before them (authenticate refuses an inactive signer;
// breakGlass looks the opt-in up under the service's address and checks
// its role). Each must refuse on its own.
func TestBreakGlassRulesStandAlone(t *testing.T) {
	now := apptest.GenesisTime.Add(24 * time.Hour)
	clinician := func(status emrv1.MemberStatus) *emrv1.Member {
		return &emrv1.Member{Address: bytes.Repeat([]byte{1}, app.AddressSize), Role: emrv1.Role_ROLE_CLINICIAN, Status: status}
	}
	for _, tc := range []struct {
		name   string
		member *emrv1.Member
		want   *app.CodedError
	}{
		{"an active clinician", clinician(emrv1.MemberStatus_MEMBER_STATUS_ACTIVE), nil},
		{"a suspended clinician", clinician(emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED), app.ErrSignerSuspended},
		{"a retired clinician", clinician(emrv1.MemberStatus_MEMBER_STATUS_RETIRED), app.ErrSignerSuspended},
		{"a researcher", &emrv1.Member{Role: emrv1.Role_ROLE_RESEARCHER, Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE}, app.ErrUnauthorized},
		{"no member", nil, app.ErrUnauthorized},
	} {
		if got := app.CodeOf(app.MayBreakGlass(tc.member)); got != reviewCode(tc.want) {
			t.Errorf("MayBreakGlass(%s): code %d, want %d (%v)", tc.name, got, reviewCode(tc.want), tc.want)
		}
	}

	service := &emrv1.Member{Address: bytes.Repeat([]byte{2}, app.AddressSize), Role: emrv1.Role_ROLE_EMERGENCY_SERVICE, Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE}
	notAService := &emrv1.Member{Address: service.Address, Role: emrv1.Role_ROLE_CLINICIAN, Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(time.Hour)
	optIn := func(grantee []byte, rights ...emrv1.Right) *emrv1.Permission {
		return &emrv1.Permission{Grantee: grantee, Rights: rights, Categories: []string{ruleLab},
			NotBefore: timestamppb.New(notBefore), NotAfter: timestamppb.New(notAfter)}
	}
	standing := optIn(service.Address, rEmergency)
	for _, tc := range []struct {
		name     string
		optIn    *emrv1.Permission
		service  *emrv1.Member
		category string
		at       time.Time
		want     *app.CodedError
		log      string
	}{
		{"a standing opt-in", standing, service, ruleLab, now, nil, ""},
		{"at its not_before", standing, service, ruleLab, notBefore, nil, ""},
		{"at its not_after", standing, service, ruleLab, notAfter, app.ErrPermissionExpired, "permission expired"},
		{"another category", standing, service, ruleImaging, now, app.ErrCategoryNotGranted, ""},
		{"no opt-in", nil, service, ruleLab, now, app.ErrNoPermission, ""},
		{"a read grant, not an opt-in", optIn(service.Address, rRead), service, ruleLab, now, app.ErrRightNotGranted, ""},
		{"the service is a clinician", optIn(service.Address, rEmergency), notAService, ruleLab, now, app.ErrUnauthorized, "is not an emergency service"},
		{"the opt-in is another service's", optIn(bytes.Repeat([]byte{3}, app.AddressSize), rEmergency), service, ruleLab, now, app.ErrInternal,
			"the opt-in is to 030303"},
	} {
		err := app.EmergencyOptInStands(tc.optIn, tc.service, tc.category, tc.at)
		if got := app.CodeOf(err); got != reviewCode(tc.want) {
			t.Errorf("EmergencyOptInStands(%s): code %d (%v), want %d (%v)", tc.name, got, err, reviewCode(tc.want), tc.want)
			continue
		}
		if tc.log != "" && !strings.Contains(err.Error(), tc.log) {
			t.Errorf("EmergencyOptInStands(%s): %q does not say %q", tc.name, err, tc.log)
		}
	}
}

// TestStatelessLimitsAreInclusive: a text, an object key, a wrapped key
// and a validator's power may be as large as their limit, not larger.
func TestStatelessLimitsAreInclusive(t *testing.T) {
	member := func(credential string) *emrv1.Msg {
		m := apptest.RegisterMember(apptest.NewActor("review-limits"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
		m.GetRegisterMember().CredentialRef = credential
		return m
	}
	record := func(change func(*emrv1.MsgAddRecord)) *emrv1.Msg {
		m := apptest.AddRecord(apptest.PatientID("review-limits"), ruleLab, "review-limits")
		change(m.GetAddRecord())
		return m
	}
	power := func(p int64) *emrv1.Msg { return apptest.SetValidatorPower(apptest.Validator(0).SignPub(), p) }
	for _, tc := range []struct {
		name string
		msg  *emrv1.Msg
		want string // "": valid
	}{
		{"a credential reference of 256 bytes", member(strings.Repeat("c", 256)), ""},
		{"a credential reference of 257 bytes", member(strings.Repeat("c", 257)), "credential reference is longer than 256 bytes"},
		{"an object key of 512 bytes", record(func(m *emrv1.MsgAddRecord) { m.ObjectKey = strings.Repeat("k", 512) }), ""},
		{"an object key of 513 bytes", record(func(m *emrv1.MsgAddRecord) { m.ObjectKey = strings.Repeat("k", 513) }), "object key is longer than 512 bytes"},
		{"a wrapped file key of 4096 bytes", record(func(m *emrv1.MsgAddRecord) { m.WrappedFileKey = make([]byte, 4096) }), ""},
		{"a wrapped file key of 4097 bytes", record(func(m *emrv1.MsgAddRecord) { m.WrappedFileKey = make([]byte, 4097) }),
			"wrapped file key is 4097 bytes, more than 4096"},
		{"a validator power of MaxValidatorPower", power(app.MaxValidatorPower), ""},
		{"a validator power above it", power(app.MaxValidatorPower + 1), "outside 0..1000000"},
	} {
		err := app.ValidateMsg(tc.msg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.want != "" && (app.CodeOf(err) != app.ErrInvalidMsg.Code() || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an invalid message saying %q", tc.name, err, tc.want)
		}
	}
}

// reviewCode is want's result code, 0 for nil (success).
func reviewCode(want *app.CodedError) uint32 {
	if want == nil {
		return 0
	}
	return want.Code()
}

// TestCheckPermissionWithoutItsGranteeMember: a permission judged without
// its grantee's member entry (nil, as the sidecar passes a sharer its node
// does not know to ShareConsentStands) is refused as the grantee not being
// active, not by a nil dereference.
func TestCheckPermissionWithoutItsGranteeMember(t *testing.T) {
	now := apptest.GenesisTime.Add(24 * time.Hour)
	perm := &emrv1.Permission{Grantee: bytes.Repeat([]byte{4}, app.AddressSize), Rights: []emrv1.Right{rShare}, StudyId: ruleStudy,
		NotAfter: timestamppb.New(now.Add(time.Hour))}
	err := app.CheckPermission(perm, nil, rShare, ruleLab, now)
	if app.CodeOf(err) != app.ErrGranteeSuspended.Code() {
		t.Fatalf("CheckPermission without the grantee: %v, want %v", err, app.ErrGranteeSuspended)
	}
	sh := &emrv1.Share{Sharer: perm.Grantee, StudyId: ruleStudy}
	if err := app.ShareConsentStands(perm, nil, sh, ruleLab, now); app.CodeOf(err) != app.ErrGranteeSuspended.Code() {
		t.Fatalf("ShareConsentStands without the sharer: %v, want %v", err, app.ErrGranteeSuspended)
	}
}
