package app_test

import (
	"bytes"
	"testing"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestOvertakenRules: the pure rules the chain's execution check and
// emrcli's proposals listing share. A validator change is overtaken once
// its key's power or count of executed changes is not what it was
// proposed from; a reactivation once its member's status changed again (a
// suspension never); an admission once the organization exists; a
// registrar's seating once its organization has an active registrar.
func TestOvertakenRules(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	keyText := app.ValidatorKeyText(key)
	member := bytes.Repeat([]byte{0xab}, 20)
	setPower := &emrv1.SetValidatorPower{PubKey: key, Power: 12, FromPower: 10, FromChanges: 3}
	reactivate := &emrv1.SetMemberStatus{Address: member, Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE, FromStatusChanges: 2}
	suspend := &emrv1.SetMemberStatus{Address: member, Status: emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, FromStatusChanges: 2}
	admit := &emrv1.AddOrganization{Organization: &emrv1.Organization{Id: "st-mary"}}
	seat := &emrv1.AddRegistrar{OrganizationId: "st-mary"}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"validator as proposed", app.ValidatorChangeOvertaken(setPower, 10, 3), ""},
		{"validator power moved", app.ValidatorChangeOvertaken(setPower, 14, 4), "validator " + keyText + " has power 14, 10 when this was proposed"},
		{"validator removed", app.ValidatorChangeOvertaken(setPower, 0, 4), "validator " + keyText + " has power 0, 10 when this was proposed"},
		{"validator changed and changed back", app.ValidatorChangeOvertaken(setPower, 10, 5), "validator " + keyText + " was changed 2 times since this was proposed"},
		{"validator count below the one proposed from", app.ValidatorChangeOvertaken(setPower, 10, 2), "validator " + keyText + " was changed 2 times, not 3"},
		{"new validator as proposed", app.ValidatorChangeOvertaken(&emrv1.SetValidatorPower{PubKey: key, Power: 10}, 0, 0), ""},
		{"new validator added and removed since", app.ValidatorChangeOvertaken(&emrv1.SetValidatorPower{PubKey: key, Power: 10}, 0, 2), "validator " + keyText + " was changed 2 times since this was proposed"},
		{"reactivation as proposed", app.MemberStatusChangeOvertaken(reactivate, 2), ""},
		{"reactivation after another change", app.MemberStatusChangeOvertaken(reactivate, 3), "member ABABABABABABABABABABABABABABABABABABABAB's status changed 1 times since this reactivation was proposed"},
		{"suspension after another change", app.MemberStatusChangeOvertaken(suspend, 4), ""},
		{"admission while the organization does not exist", app.AddOrganizationOvertaken(admit, false), ""},
		{"admission once it exists", app.AddOrganizationOvertaken(admit, true), `organization "st-mary" exists`},
		{"seating without an active registrar", app.AddRegistrarOvertaken(seat, false), ""},
		{"seating once there is one", app.AddRegistrarOvertaken(seat, true), `"st-mary" has an active registrar, who registers its registrars`},
		{"params as proposed", app.ParamsChangeOvertaken(&emrv1.SetParams{FromChanges: 2}, 2), ""},
		{"params changed since", app.ParamsChangeOvertaken(&emrv1.SetParams{FromChanges: 2}, 4), "the params were changed 2 times since this was proposed"},
		{"organization not retired", app.OrganizationRetired("st-mary", 0), ""},
		{"organization retired", app.OrganizationRetired("st-mary", 40), `organization "st-mary" was retired at height 40`},
		{"member not retired", app.MemberRetired(&emrv1.Member{Address: member, Status: emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED}), ""},
		{"member retired", app.MemberRetired(&emrv1.Member{Address: member, OrganizationId: "st-mary", Status: emrv1.MemberStatus_MEMBER_STATUS_RETIRED}),
			`member ABABABABABABABABABABABABABABABABABABABAB is retired: its organization "st-mary" left the consortium`},
		// Nil parts (an unverified node's proposal, in emrcli) are not a panic.
		{"nil member", app.MemberRetired(nil), ""},
		{"nil validator change", app.ValidatorChangeOvertaken(nil, 0, 0), ""},
		{"nil status change", app.MemberStatusChangeOvertaken(nil, 1), ""},
		{"nil admission", app.AddOrganizationOvertaken(nil, true), `organization "" exists`},
		{"nil seating", app.AddRegistrarOvertaken(nil, true), `"" has an active registrar, who registers its registrars`},
		{"nil params change", app.ParamsChangeOvertaken(nil, 1), "the params were changed 1 times since this was proposed"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
