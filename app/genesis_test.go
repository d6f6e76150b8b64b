package app_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestGenesisMembersAreCheckedLikeRegistrations: a genesis member passes
// the checks a MsgRegisterMember of the same member must pass, so genesis
// cannot seat a member the chain would refuse to register: one whose
// encryption key no envelope can be opened with, or whose credential
// reference is past the text limit.
func TestGenesisMembersAreCheckedLikeRegistrations(t *testing.T) {
	doc := apptest.NewActor("genesis-doc")
	for name, spoil := range map[string]func(m *emrv1.GenesisMember){
		// 0xff..ff: top bit set, not a canonical X25519 key.
		"non-canonical encryption key":  func(m *emrv1.GenesisMember) { m.EncPubKey = bytes.Repeat([]byte{0xff}, 32) },
		"small-order encryption key":    func(m *emrv1.GenesisMember) { m.EncPubKey = make([]byte, 32) },
		"credential reference too long": func(m *emrv1.GenesisMember) { m.CredentialRef = strings.Repeat("x", 10_000) },
	} {
		t.Run(name, func(t *testing.T) {
			m := doc.GenesisMember(emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
			spoil(m)
			reg := &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
				SignPubKey: m.SignPubKey, EncPubKey: m.EncPubKey, Role: m.Role,
				OrganizationId: m.OrganizationId, CredentialRef: m.CredentialRef,
			}}}
			if err := app.ValidateMsg(reg); err == nil {
				t.Fatal("the chain registers this member: the case tests nothing")
			}
			g := apptest.Consortium()
			g.Members = append(g.Members, m)
			if err := app.ValidateGenesis(g); app.CodeOf(err) != app.ErrInvalidGenesis.Code() {
				t.Fatalf("genesis with this member: %v, want an invalid genesis", err)
			}
		})
	}
}

// TestGenesisParamsHaveCeilings: each limit of the params is refused past
// its ceiling and accepted at it, so a genesis cannot make one query answer
// or one transaction unbounded work, nor a proposal's voting last more than
// 366 days.
func TestGenesisParamsHaveCeilings(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(p *emrv1.Params, over bool)
	}{
		{"max_tx_bytes", func(p *emrv1.Params, over bool) { p.MaxTxBytes = 100<<20 + b2u(over) }},
		{"max_records_per_access", func(p *emrv1.Params, over bool) { p.MaxRecordsPerAccess = 10_000 + uint32(b2u(over)) }},
		{"max_rewraps_per_rotation", func(p *emrv1.Params, over bool) { p.MaxRewrapsPerRotation = 100_000 + uint32(b2u(over)) }},
		{"max_page_size", func(p *emrv1.Params, over bool) { p.MaxPageSize = 1_000 + uint32(b2u(over)) }},
		{"max_wrapped_key_bytes", func(p *emrv1.Params, over bool) { p.MaxWrappedKeyBytes = 4096 + uint32(b2u(over)) }},
		{"proposal_seconds", func(p *emrv1.Params, over bool) { p.ProposalSeconds = 366*24*3600 + b2u(over) }},
		{"emergency_access_seconds", func(p *emrv1.Params, over bool) { p.EmergencyAccessSeconds = 366*24*3600 + b2u(over) }},
		{"emergency_patients_per_day", func(p *emrv1.Params, over bool) { p.EmergencyPatientsPerDay = 1_000 + uint32(b2u(over)) }},
		{"categories", func(p *emrv1.Params, over bool) {
			for len(p.Categories) < 256+int(b2u(over)) {
				p.Categories = append(p.Categories, fmt.Sprintf("c%03d-%s", len(p.Categories), strings.Repeat("x", 59)))
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := apptest.Consortium()
			c.set(g.Params, false)
			if err := app.ValidateGenesis(g); err != nil {
				t.Fatalf("at the ceiling: %v", err)
			}
			c.set(g.Params, true)
			if err := app.ValidateGenesis(g); app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), c.name) {
				t.Fatalf("past the ceiling: %v, want an invalid genesis naming %s", err, c.name)
			}
		})
	}
}

// TestGenesisParamsHaveFloors: each limit of the params below its floor
// is refused by its name, and accepted at it (proposal_seconds: voting
// lasts at least an hour).
func TestGenesisParamsHaveFloors(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(p *emrv1.Params, under bool)
	}{
		{"max_tx_bytes", func(p *emrv1.Params, under bool) { p.MaxTxBytes = 1024 - b2u(under) }},
		{"max_blob_bytes", func(p *emrv1.Params, under bool) { p.MaxBlobBytes = 1 - b2u(under) }},
		{"max_records_per_access", func(p *emrv1.Params, under bool) { p.MaxRecordsPerAccess = 1 - uint32(b2u(under)) }},
		{"max_rewraps_per_rotation", func(p *emrv1.Params, under bool) { p.MaxRewrapsPerRotation = 1 - uint32(b2u(under)) }},
		{"max_page_size", func(p *emrv1.Params, under bool) { p.MaxPageSize = 1 - uint32(b2u(under)) }},
		{"max_wrapped_key_bytes", func(p *emrv1.Params, under bool) { p.MaxWrappedKeyBytes = 93 - uint32(b2u(under)) }},
		{"proposal_seconds", func(p *emrv1.Params, under bool) { p.ProposalSeconds = 3600 - b2u(under) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := apptest.Consortium()
			c.set(g.Params, false)
			if err := app.ValidateGenesis(g); err != nil {
				t.Fatalf("at the floor: %v", err)
			}
			c.set(g.Params, true)
			if err := app.ValidateGenesis(g); app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), c.name) {
				t.Fatalf("under the floor: %v, want an invalid genesis naming %s", err, c.name)
			}
		})
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// TestGenesisOrganizationNotRetired: only a RetireOrganization proposal
// retires an organization; a genesis that names one retired is refused
// (it would vote with an active registrar yet refuse every change made to
// it as overtaken).
func TestGenesisOrganizationNotRetired(t *testing.T) {
	g := apptest.Consortium()
	g.Organizations[1].RetiredHeight = 5
	if err := app.ValidateGenesis(g); app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), "retired_height is the chain's to set") {
		t.Fatalf("genesis with a retired organization: %v, want an invalid genesis", err)
	}
}
