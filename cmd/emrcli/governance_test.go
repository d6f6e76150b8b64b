package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestParseConsensusKey: --pub-key takes the 32-byte ed25519 key in
// standard base64 (as "emrchaind show validator" prints it) or in hex,
// white space around it allowed; anything else is a usage error (exit 2).
func TestParseConsensusKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb, 0xef, 0x01}, 11)[:32] // base64 of it has '+' and '/'
	b64 := base64.StdEncoding.EncodeToString(key)
	if !strings.ContainsAny(b64, "+/") {
		t.Fatalf("test key %s has neither '+' nor '/'", b64)
	}
	hx := hex.EncodeToString(key)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"base64", b64, true},
		{"base64 with white space around", " \t" + b64 + "\n", true},
		{"hex", hx, true},
		{"upper-case hex", strings.ToUpper(hx), true},
		{"hex with 0x", "0x" + hx, true},
		{"hex with 0X and white space", " 0X" + hx + " ", true},

		{"empty", "", false},
		{"base64 of 31 bytes", base64.StdEncoding.EncodeToString(key[:31]), false},
		{"base64 of 33 bytes", base64.StdEncoding.EncodeToString(append(key[:32:32], 0)), false},
		{"base64 without padding", strings.TrimRight(b64, "="), false},
		{"URL-safe base64", base64.URLEncoding.EncodeToString(key), false},
		{"hex of 31 bytes", hx[:62], false},
		{"hex of 33 bytes", hx + "00", false},
		{"odd hex", hx[:63], false},
		{"two 0x prefixes", "0x0x" + hx, false},
		{"hex with white space inside", hx[:32] + " " + hx[32:], false},
		{"not hex", strings.Repeat("g", 64), false},
		{"a CometBFT JSON key", `{"type":"tendermint/PubKeyEd25519","value":"` + b64 + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConsensusKey(tc.in)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("parseConsensusKey(%q): %v", tc.in, err)
			case tc.ok && !bytes.Equal(got, key):
				t.Fatalf("parseConsensusKey(%q) = %x, want %x", tc.in, got, key)
			case !tc.ok && err == nil:
				t.Fatalf("parseConsensusKey(%q) = %x, want an error", tc.in, got)
			case !tc.ok && (!isUsage(err) || !strings.Contains(err.Error(), "--pub-key")):
				t.Fatalf("parseConsensusKey(%q): %v; want a usage error about --pub-key", tc.in, err)
			}
		})
	}
}

// TestViewProposal: the change of each kind in words, and the status:
// executed (even after voting ends), expired from voting_end on (the
// chain refuses approvals at voting_end exactly), open before it, and open
// when the time is unknown (zero).
func TestViewProposal(t *testing.T) {
	consensusKey := bytes.Repeat([]byte{7}, 32)
	registrarKey := bytes.Repeat([]byte{9}, 32)
	const registrarAddr = "8C0CC17A04942CC4F8E0FE0B302606D3108860C1" // app.AddressOf(registrarKey)
	member := bytes.Repeat([]byte{0xab}, 20)
	made := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	end := made.Add(14 * 24 * time.Hour)
	changes := []struct {
		name   string
		change *emrv1.ConsortiumChange
		want   string
	}{
		{"add organization", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddOrganization{AddOrganization: &emrv1.AddOrganization{
			Organization:        &emrv1.Organization{Id: "st-mary", Name: "St Mary's", Kind: emrv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL},
			RegistrarSignPubKey: registrarKey,
		}}}, `admit st-mary ("St Mary's", hospital) with registrar ` + registrarAddr},
		{"add validator", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetValidatorPower{SetValidatorPower: &emrv1.SetValidatorPower{
			PubKey: consensusKey, Power: 10,
		}}}, "set validator " + base64.StdEncoding.EncodeToString(consensusKey) + " power to 10 (from 0)"},
		{"remove validator", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetValidatorPower{SetValidatorPower: &emrv1.SetValidatorPower{
			PubKey: consensusKey, Power: 0, FromPower: 14, FromChanges: 2,
		}}}, "set validator " + base64.StdEncoding.EncodeToString(consensusKey) + " power to 0 (from 14)"},
		{"suspend member", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetMemberStatus{SetMemberStatus: &emrv1.SetMemberStatus{
			Address: member, Status: emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED,
		}}}, "suspend member " + strings.Repeat("AB", 20)},
		{"reactivate member", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetMemberStatus{SetMemberStatus: &emrv1.SetMemberStatus{
			Address: member, Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE, FromStatusChanges: 1,
		}}}, "reactivate member " + strings.Repeat("AB", 20)},
		{"add registrar", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddRegistrar{AddRegistrar: &emrv1.AddRegistrar{
			OrganizationId: "st-mary", SignPubKey: registrarKey,
		}}}, "seat registrar " + registrarAddr + " in st-mary"},
		{"set params", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{
			Params: &emrv1.Params{Categories: []string{"imaging", "genomics"}, MaxTxBytes: 2048, MaxBlobBytes: 4096, MaxRecordsPerAccess: 5,
				MaxRewrapsPerRotation: 6, MaxPageSize: 7, EmergencyAccessSeconds: 60, MaxWrappedKeyBytes: 128, ProposalSeconds: 7200, EmergencyPatientsPerDay: 20},
		}}}, "params: categories imaging, genomics; max tx bytes 2048; max blob bytes 4096; max records per access 5; " +
			"max rewraps per rotation 6; max page size 7; emergency window 1m0s; " +
			"max wrapped key bytes 128; proposals open for 2h0m0s; emergency patients per day 20"},
		{"set params, with the params they replace", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{
			Params:     &emrv1.Params{Categories: []string{"imaging", "genomics"}, MaxTxBytes: 2048, MaxPageSize: 7, ProposalSeconds: 7200},
			FromParams: &emrv1.Params{Categories: []string{"imaging"}, MaxTxBytes: 2048, MaxPageSize: 100, ProposalSeconds: 3600, EmergencyPatientsPerDay: 20},
		}}}, "params: category genomics added; max page size 7 (was 100); proposals open for 2h0m0s (was 1h0m0s); emergency patients per day no limit (was 20)"},
		{"set params, with storage organizations", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{
			Params: &emrv1.Params{Categories: []string{"imaging"}, MaxTxBytes: 2048, StorageOrganizations: []string{"st-mary", "st-luke"}},
		}}}, "params: categories imaging; max tx bytes 2048; max blob bytes 0; max records per access 0; max rewraps per rotation 0; " +
			"max page size 0; emergency window 0s; max wrapped key bytes 0; proposals open for 0s; emergency patients per day no limit; storage organizations st-mary, st-luke"},
		{"set params, naming storage organizations", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{
			Params:     &emrv1.Params{Categories: []string{"imaging"}, StorageOrganizations: []string{"st-mary", "st-luke"}},
			FromParams: &emrv1.Params{Categories: []string{"imaging"}, StorageOrganizations: []string{"st-mary", "lab-1"}},
		}}}, "params: storage organization st-luke named; storage organization lab-1 dropped"},
		{"set params, fewer copies", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{
			Params:     &emrv1.Params{Categories: []string{"imaging"}, StorageOrganizations: []string{"st-mary", "st-luke", "lab-1"}, StorageCopies: 2},
			FromParams: &emrv1.Params{Categories: []string{"imaging"}, StorageOrganizations: []string{"st-mary", "st-luke", "lab-1"}},
		}}}, "params: copies of each blob 2 (was at every storage organization)"},
		{"set params, with copies", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{
			Params: &emrv1.Params{Categories: []string{"imaging"}, MaxTxBytes: 2048, StorageOrganizations: []string{"st-mary", "st-luke"}, StorageCopies: 1},
		}}}, "params: categories imaging; max tx bytes 2048; max blob bytes 0; max records per access 0; max rewraps per rotation 0; " +
			"max page size 0; emergency window 0s; max wrapped key bytes 0; proposals open for 0s; emergency patients per day no limit; storage organizations st-mary, st-luke; copies of each blob 1"},
		{"set params, as they were", &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{
			Params: &emrv1.Params{Categories: []string{"imaging"}}, FromParams: &emrv1.Params{Categories: []string{"imaging"}},
		}}}, "params: as they were"},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			p := &emrv1.Proposal{
				Id: 3, Change: c.change, Reason: "why", Proposer: member, Approvals: []string{"dev-hospital"},
				Height: 5, Time: timestamppb.New(made), VotingEnd: timestamppb.New(end), Status: emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN,
			}
			v := viewProposal(p, made.Add(time.Hour))
			if v.Change != c.want {
				t.Errorf("change %q, want %q", v.Change, c.want)
			}
			// A params change is also there whole, for programs.
			if set := c.change.GetSetParams(); (v.Params != nil) != (set != nil) || (v.FromParams != nil) != (set.GetFromParams() != nil) ||
				(set != nil && !slices.Equal(v.Params.Categories, set.Params.Categories)) ||
				(set.GetFromParams() != nil && v.FromParams.MaxPageSize != set.FromParams.MaxPageSize) {
				t.Errorf("params %+v, from params %+v", v.Params, v.FromParams)
			}
			if v.ID != 3 || v.Reason != "why" || v.Proposer != strings.Repeat("AB", 20) || strings.Join(v.Approvals, ",") != "dev-hospital" ||
				v.Height != 5 || v.Time != "2026-03-01T12:00:00Z" || v.VotingEnd != "2026-03-15T12:00:00Z" || v.Status != "open" || v.ExecutedHeight != 0 {
				t.Errorf("view %+v", v)
			}
		})
	}

	for _, tc := range []struct {
		name     string
		status   emrv1.ProposalStatus
		executed int64
		now      time.Time
		want     string
	}{
		{"executed", emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED, 6, made, "executed"},
		{"executed, voting ended since", emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED, 6, end.Add(time.Hour), "executed"},
		{"withdrawn", emrv1.ProposalStatus_PROPOSAL_STATUS_WITHDRAWN, 0, made, "withdrawn"},
		{"withdrawn, voting ended since", emrv1.ProposalStatus_PROPOSAL_STATUS_WITHDRAWN, 0, end.Add(time.Hour), "withdrawn"},
		{"open", emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN, 0, made, "open"},
		{"open until just before voting_end", emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN, 0, end.Add(-time.Nanosecond), "open"},
		{"expired at voting_end exactly", emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN, 0, end, "expired"},
		{"expired after voting_end", emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN, 0, end.Add(time.Hour), "expired"},
		// Unknown time, whatever voting_end says (here the earliest time
		// there is, which a zero now is not before).
		{"no time known: open", emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN, 0, time.Time{}, "open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			votingEnd := end
			if tc.now.IsZero() {
				votingEnd = time.Time{}
			}
			p := &emrv1.Proposal{Id: 1, Change: changes[0].change, Time: timestamppb.New(made), VotingEnd: timestamppb.New(votingEnd), Status: tc.status, ExecutedHeight: tc.executed}
			v := viewProposal(p, tc.now)
			if v.Status != tc.want || v.ExecutedHeight != tc.executed {
				t.Fatalf("status %q, executed at %d; want %q, %d", v.Status, v.ExecutedHeight, tc.want, tc.executed)
			}
		})
	}
}

// TestViewProposalOfMalformedChange: an unverified node's proposal whose
// change is missing, or has a nil part inside its oneof, is shown, not a
// panic.
func TestViewProposalOfMalformedChange(t *testing.T) {
	for _, change := range []*emrv1.ConsortiumChange{
		nil,
		{},
		{Change: &emrv1.ConsortiumChange_AddOrganization{}},
		{Change: &emrv1.ConsortiumChange_AddOrganization{AddOrganization: &emrv1.AddOrganization{}}},
		{Change: &emrv1.ConsortiumChange_SetValidatorPower{}},
		{Change: &emrv1.ConsortiumChange_SetMemberStatus{}},
		{Change: &emrv1.ConsortiumChange_AddRegistrar{}},
	} {
		v := viewProposal(&emrv1.Proposal{Id: 1, Change: change}, time.Time{})
		if v.ID != 1 || v.Status != "open" {
			t.Errorf("change %v: view %+v", change, v)
		}
	}
}

// TestOvertakenReason: an open proposal is overtaken by the chain's rules
// applied to the state read with it (for a validator change, the key's
// power and count of executed changes: exact); what that state cannot
// tell (not read, a member or organization not found) leaves it open.
func TestOvertakenReason(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	keyText := base64.StdEncoding.EncodeToString(key)
	member := bytes.Repeat([]byte{0xab}, 20)
	const proposedAt = 50
	validatorChange := func(power, from int64) *emrv1.ConsortiumChange {
		return &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetValidatorPower{SetValidatorPower: &emrv1.SetValidatorPower{
			PubKey: key, Power: power, FromPower: from, FromChanges: 2,
		}}}
	}
	validatorKey := func(power int64, changes uint64) map[string]*emrv1.QueryValidatorKeyResponse {
		resp := &emrv1.QueryValidatorKeyResponse{Changes: changes}
		if power > 0 {
			resp.Validator = &emrv1.Validator{PubKey: key, Power: power}
		}
		return map[string]*emrv1.QueryValidatorKeyResponse{string(key): resp}
	}
	statusChange := func(status emrv1.MemberStatus) *emrv1.ConsortiumChange {
		return &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetMemberStatus{SetMemberStatus: &emrv1.SetMemberStatus{
			Address: member, Status: status, FromStatusChanges: 1,
		}}}
	}
	reactivation, suspension := statusChange(emrv1.MemberStatus_MEMBER_STATUS_ACTIVE), statusChange(emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	members := func(statusChanges uint64) map[string]*emrv1.Member {
		return map[string]*emrv1.Member{string(member): {Address: member, StatusChanges: statusChanges}}
	}
	admission := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddOrganization{AddOrganization: &emrv1.AddOrganization{
		Organization: &emrv1.Organization{Id: "st-mary"},
	}}}
	seating := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddRegistrar{AddRegistrar: &emrv1.AddRegistrar{OrganizationId: "st-mary"}}}
	organization := func(registrars ...emrv1.MemberStatus) map[string]*emrv1.QueryOrganizationResponse {
		resp := &emrv1.QueryOrganizationResponse{Organization: &emrv1.Organization{Id: "st-mary"}}
		for _, status := range registrars {
			resp.Registrars = append(resp.Registrars, &emrv1.Member{Role: emrv1.Role_ROLE_REGISTRAR, Status: status})
		}
		return map[string]*emrv1.QueryOrganizationResponse{"st-mary": resp}
	}
	retired := map[string]*emrv1.Member{string(member): {Address: member, OrganizationId: "st-mary", Status: emrv1.MemberStatus_MEMBER_STATUS_RETIRED, StatusChanges: 1}}
	retiredOrg := map[string]*emrv1.QueryOrganizationResponse{"st-mary": {Organization: &emrv1.Organization{Id: "st-mary", RetiredHeight: 40}}}
	retirement := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_RetireOrganization{RetireOrganization: &emrv1.RetireOrganization{OrganizationId: "st-mary"}}}
	paramsChange := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{Params: app.DefaultParams(), FromChanges: 2}}}
	// Naming st-mary, beside st-luke, as a storage organization.
	namingFrom := app.DefaultParams()
	namingFrom.StorageOrganizations = []string{"st-luke"}
	naming := proto.Clone(namingFrom).(*emrv1.Params)
	naming.StorageOrganizations = []string{"st-luke", "st-mary"}
	storageNaming := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{Params: naming, FromParams: namingFrom, FromChanges: 2}}}
	const active, suspended = emrv1.MemberStatus_MEMBER_STATUS_ACTIVE, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED
	for _, tc := range []struct {
		name   string
		change *emrv1.ConsortiumChange
		state  overtakingState
		want   string
	}{
		{"validator key not read", validatorChange(12, 14), overtakingState{}, ""},
		{"validator as proposed", validatorChange(12, 14), overtakingState{validatorKeys: validatorKey(14, 2)}, ""},
		{"validator power changed since", validatorChange(12, 14), overtakingState{validatorKeys: validatorKey(13, 3)},
			"validator " + keyText + " has power 13, 14 when this was proposed"},
		{"validator removed since", validatorChange(12, 14), overtakingState{validatorKeys: validatorKey(0, 3)},
			"validator " + keyText + " has power 0, 14 when this was proposed"},
		// Once told by changed_height, which missed a change in the
		// proposal's own block: the count is exact.
		{"validator changed and changed back since", validatorChange(12, 14), overtakingState{validatorKeys: validatorKey(14, 4)},
			"validator " + keyText + " was changed 2 times since this was proposed"},
		{"validator count below the proposal's (an unverified node)", validatorChange(12, 14), overtakingState{validatorKeys: validatorKey(14, 1)},
			"validator " + keyText + " was changed 1 times, not 2"},
		{"new validator not added yet", validatorChange(10, 0), overtakingState{validatorKeys: validatorKey(0, 2)}, ""},
		{"new validator added since", validatorChange(10, 0), overtakingState{validatorKeys: validatorKey(4, 3)},
			"validator " + keyText + " has power 4, 0 when this was proposed"},
		// Once left open: a removed key has no changed_height.
		{"new validator added and removed since", validatorChange(10, 0), overtakingState{validatorKeys: validatorKey(0, 4)},
			"validator " + keyText + " was changed 2 times since this was proposed"},

		{"member not read", reactivation, overtakingState{}, ""},
		{"member not found", reactivation, overtakingState{members: map[string]*emrv1.Member{string(member): nil}}, ""},
		{"reactivation as proposed", reactivation, overtakingState{members: members(1)}, ""},
		{"reactivation after another status change", reactivation, overtakingState{members: members(3)},
			"member " + strings.Repeat("AB", 20) + "'s status changed 2 times since this reactivation was proposed"},
		{"suspension after another status change", suspension, overtakingState{members: members(3)}, ""},
		{"suspension of a retired member", suspension, overtakingState{members: retired},
			"member " + strings.Repeat("AB", 20) + ` is retired: its organization "st-mary" left the consortium`},
		{"reactivation of a retired member", reactivation, overtakingState{members: retired},
			"member " + strings.Repeat("AB", 20) + ` is retired: its organization "st-mary" left the consortium`},

		{"organization not read", admission, overtakingState{}, ""},
		{"organization to admit not there", admission, overtakingState{organizations: map[string]*emrv1.QueryOrganizationResponse{"st-mary": nil}}, ""},
		{"organization to admit exists", admission, overtakingState{organizations: organization(active)}, `organization "st-mary" exists`},
		{"seating where every registrar is suspended", seating, overtakingState{organizations: organization(suspended, suspended)}, ""},
		{"seating where a registrar is active", seating, overtakingState{organizations: organization(suspended, active)},
			`"st-mary" has an active registrar, who registers its registrars`},
		{"seating in an organization not found", seating, overtakingState{organizations: map[string]*emrv1.QueryOrganizationResponse{"st-mary": nil}}, ""},
		{"seating in a retired organization", seating, overtakingState{organizations: retiredOrg}, `organization "st-mary" was retired at height 40`},
		{"retirement not read", retirement, overtakingState{}, ""},
		{"retirement as proposed", retirement, overtakingState{organizations: organization(active)}, ""},
		{"retirement of a retired organization", retirement, overtakingState{organizations: retiredOrg}, `organization "st-mary" was retired at height 40`},

		{"params changes not read", paramsChange, overtakingState{}, ""},
		{"params as proposed", paramsChange, overtakingState{paramsChanges: 2, paramsRead: true}, ""},
		{"params changed since", paramsChange, overtakingState{paramsChanges: 3, paramsRead: true}, "the params were changed 1 times since this was proposed"},
		// A retirement drops a storage organization already named (a
		// params change): one newly named that retires since overtakes
		// the proposal without changing the params.
		{"storage organization named, a member", storageNaming, overtakingState{paramsChanges: 2, paramsRead: true, organizations: organization(active)}, ""},
		{"storage organization named, not found", storageNaming, overtakingState{paramsChanges: 2, paramsRead: true, organizations: map[string]*emrv1.QueryOrganizationResponse{"st-mary": nil}}, ""},
		{"storage organization named, retired since", storageNaming, overtakingState{paramsChanges: 2, paramsRead: true, organizations: retiredOrg},
			`organization "st-mary" was retired at height 40`},
		{"storage organization named, params changed since", storageNaming, overtakingState{paramsChanges: 3, paramsRead: true, organizations: retiredOrg},
			"the params were changed 1 times since this was proposed"},

		{"no change", nil, overtakingState{validatorKeys: validatorKey(14, 4), members: members(3), organizations: organization(active), paramsChanges: 3, paramsRead: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &emrv1.Proposal{Id: 7, Change: tc.change, Height: proposedAt, Status: emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN}
			if got := tc.state.overtakenReason(p); got != tc.want {
				t.Fatalf("overtakenReason = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestParamsChangeTextShowsEveryChange: a count of seconds past a
// Duration's range (an unverified node's answer, say; the chain caps them
// at 366 days) is shown in plain seconds, not wrapped: a change by 2^55
// seconds once showed as "params: as they were".
func TestParamsChangeTextShowsEveryChange(t *testing.T) {
	from := &emrv1.Params{Categories: []string{"imaging"}, EmergencyAccessSeconds: 3600, ProposalSeconds: 3600}
	for _, tc := range []struct {
		name string
		to   uint64
		want string
	}{
		{"by 2^55 seconds", 3600 + 1<<55, "emergency window 36028797018967568s (was"},
		{"to a value past a Duration", 1 << 62, "emergency window 4611686018427387904s (was"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := &emrv1.Params{Categories: []string{"imaging"}, EmergencyAccessSeconds: tc.to, ProposalSeconds: 3600}
			got := paramsChangeText(&emrv1.SetParams{Params: to, FromParams: from})
			if !strings.Contains(got, tc.want) {
				t.Fatalf("emergency_access_seconds 3600 -> %d shown as %q; want it to contain %q", tc.to, got, tc.want)
			}
		})
	}
}

// TestViewProposalOfUnknownStatus: a status this emrcli does not know (a
// chain newer than it, as PROPOSAL_STATUS_WITHDRAWN was to every emrcli
// before it) is not shown as open, nor judged overtaken: an older emrcli
// showed a withdrawn proposal as open, one that can still be approved.
func TestViewProposalOfUnknownStatus(t *testing.T) {
	p := &emrv1.Proposal{Id: 1, Status: emrv1.ProposalStatus(4)}
	if v := viewProposal(p, time.Time{}); v.Status == "open" || v.Status == "expired" {
		t.Fatalf("a proposal of status 4 shown as %q", v.Status)
	}
}

// TestParsePossession: --possession takes the 64-byte signature in
// standard base64, as "emrchaind show validator --possession" prints it,
// white space around it allowed; anything else is a usage error.
func TestParsePossession(t *testing.T) {
	sig := bytes.Repeat([]byte{0xfb, 0xef, 0x01}, 22)[:64]
	b64 := base64.StdEncoding.EncodeToString(sig)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"base64", b64, true},
		{"base64 with white space around", " " + b64 + "\n", true},
		{"empty", "", false},
		{"base64 of 63 bytes", base64.StdEncoding.EncodeToString(sig[:63]), false},
		{"base64 of 65 bytes", base64.StdEncoding.EncodeToString(append(sig[:64:64], 0)), false},
		{"URL-safe base64", base64.URLEncoding.EncodeToString(sig), false},
		{"hex", hex.EncodeToString(sig), false},
	} {
		got, err := parsePossession(tc.in)
		switch {
		case tc.ok && (err != nil || !bytes.Equal(got, sig)):
			t.Errorf("%s: parsePossession = %x, %v; want %x", tc.name, got, err, sig)
		case !tc.ok && err == nil:
			t.Errorf("%s: parsePossession = %x, want an error", tc.name, got)
		case !tc.ok && !errors.As(err, new(usageError)):
			t.Errorf("%s: %v is not a usage error", tc.name, err)
		}
	}
}

// TestPossessionProblem: "propose validator" checks a possession as the
// chain will, against the key's power and change count read from the
// chain, before anything is signed: the right one passes; one for another
// count (named when it is an earlier one), another key's or another
// chain's is a usage error naming the count to make it for; an addition
// needs one, a change of a validator's power none, and a validator given a
// wrong one is told it may leave it out.
func TestPossessionProblem(t *testing.T) {
	const chainID = "emr-possession-unit"
	y, z := apptest.NewActor("possession-y"), apptest.NewActor("possession-z")
	key := app.ValidatorKeyText(y.SignPub())
	set := func(power int64, possession []byte) *emrv1.SetValidatorPower {
		return &emrv1.SetValidatorPower{PubKey: y.SignPub(), Power: power, Possession: possession}
	}
	notY := "the possession is not a signature by validator key " + key + ` for chain "` + chainID + `" and change count 2`
	const makeAt2 = "emrchaind show validator --possession --changes 2"
	for _, tc := range []struct {
		name          string
		set           *emrv1.SetValidatorPower
		power         int64
		changes       uint64
		want, notWant []string // nil want: no problem
	}{
		{"addition with the possession for its count", set(5, y.PossessionAt(chainID, 2)), 0, 2, nil, nil},
		{"first addition", set(5, y.Possession(chainID)), 0, 0, nil, nil},
		{"addition with the possession for an earlier count", set(5, y.Possession(chainID)), 0, 2,
			[]string{notY, makeAt2, "(this one is the key's possession for change count 0, made before the key's last 2 changes)"}, []string{"leave it out"}},
		{"addition with the possession for the count before", set(5, y.PossessionAt(chainID, 1)), 0, 2,
			[]string{notY, "for change count 1, made before the key's last change)"}, nil},
		{"addition with the possession for a later count", set(5, y.PossessionAt(chainID, 3)), 0, 2, []string{notY, makeAt2}, []string{"this one is"}},
		{"addition with another key's possession", set(5, z.PossessionAt(chainID, 2)), 0, 2, []string{notY, makeAt2}, []string{"this one is"}},
		{"addition with another chain's possession", set(5, y.PossessionAt("emr-other", 2)), 0, 2, []string{notY, "another chain's", makeAt2}, []string{"this one is"}},
		{"addition without a possession", set(5, nil), 0, 2, []string{key + " is not a validator", "for change count 2", makeAt2}, nil},
		{"raise without a possession", set(12, nil), 10, 2, nil, nil},
		{"removal without a possession", set(0, nil), 10, 2, nil, nil},
		{"raise with the possession for its count", set(12, y.PossessionAt(chainID, 2)), 10, 2, nil, nil},
		{"raise with another key's possession", set(12, z.PossessionAt(chainID, 2)), 10, 2,
			[]string{notY, "or leave it out: " + key + " is a validator (power 10), and a change of a validator's power needs none"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := possessionProblem(chainID, tc.set, tc.power, tc.changes)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("possessionProblem: %v, want none", err)
			case tc.want == nil:
				return
			case err == nil:
				t.Fatalf("possessionProblem: none, want %q", tc.want)
			case !isUsage(err) || !strings.HasPrefix(err.Error(), "--possession: "):
				t.Fatalf("possessionProblem: %v, want a usage error about --possession", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("possessionProblem: %v\nlacks %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("possessionProblem: %v\nhas %q", err, w)
				}
			}
		})
	}
	// The set given is not changed (the proposal's from_* are the chain's).
	s := set(5, y.Possession(chainID))
	_ = possessionProblem(chainID, s, 7, 2)
	if s.FromPower != 0 || s.FromChanges != 0 {
		t.Fatalf("possessionProblem changed the set: %v", s)
	}
}
