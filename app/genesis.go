package app

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// DefaultCategories are the record categories of a new chain.
var DefaultCategories = []string{
	"history-and-physical",
	"lab-results",
	"radiation-dose",
	"imaging",
	"prescriptions",
	"clinical-notes",
}

// DefaultParams are the parameters of a new chain.
func DefaultParams() *emrv1.Params {
	return &emrv1.Params{
		Categories:             slices.Clone(DefaultCategories),
		MaxTxBytes:             1 << 20,
		MaxBlobBytes:           4 << 30,
		MaxRecordsPerAccess:    100,
		MaxRewrapsPerRotation:  5000,
		MaxPageSize:            100,
		EmergencyAccessSeconds: 3600,
		MaxWrappedKeyBytes:     512,
		ProposalSeconds:        14 * 24 * 3600,
		// A default, for the consortium to set: room for a busy shift of
		// emergencies, not for browsing.
		EmergencyPatientsPerDay: 20,
	}
}

// Ceilings of the params: past them, one transaction or one query answer
// (max_page_size bounds every unpaged default and the records a filtered
// page reads) would no longer be small work.
const (
	maxParamTxBytes            = 100 << 20 // CometBFT's largest block (types.MaxBlockSizeBytes)
	maxParamRecordsPerAccess   = 10_000
	maxParamRewrapsPerRotation = 100_000
	maxParamPageSize           = 1_000
	maxParamProposalSeconds    = 366 * 24 * 3600
	maxParamEmergencySeconds   = 366 * 24 * 3600
	// maxParamEmergencyPatients bounds emergency_patients_per_day, and so
	// a clinician's EmergencyReads, rewritten by each emergency read (about
	// 50 bytes a patient).
	maxParamEmergencyPatients = 1_000
	// maxParamCategories bounds the record categories: a params proposal
	// carries them all and is stored with the ones it replaces, so 256 of
	// at most 64 characters keep it a small transaction, a small value in
	// a state snapshot (8 MiB at most) and linear work to check.
	maxParamCategories = 256
	// maxParamStorageOrganizations bounds params.storage_organizations.
	maxParamStorageOrganizations = 64
	// setParamsTxOverhead bounds what a SetParams transaction adds to its
	// params: envelope, signature, key, a chain id of 50 bytes, a reason
	// of 256, the field tags and lengths (457 bytes at most).
	setParamsTxOverhead = 512
)

// DefaultGenesis has default params and no organizations.
func DefaultGenesis() *emrv1.GenesisState {
	return &emrv1.GenesisState{Params: DefaultParams()}
}

// ParseGenesis decodes the app_state of a CometBFT genesis document
// (protojson of GenesisState) and validates it.
func ParseGenesis(appState []byte) (*emrv1.GenesisState, error) {
	if len(appState) == 0 {
		return nil, fmt.Errorf("%w: empty app_state", ErrInvalidGenesis)
	}
	var g emrv1.GenesisState
	if err := (protojson.UnmarshalOptions{}).Unmarshal(appState, &g); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidGenesis, err)
	}
	if err := ValidateGenesis(&g); err != nil {
		return nil, err
	}
	return &g, nil
}

// MarshalGenesis is the app_state JSON for g.
func MarshalGenesis(g *emrv1.GenesisState) ([]byte, error) {
	return protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(g)
}

// ValidateParams checks the consortium's parameters, at genesis and in a
// proposal to change them: categories, floors and ceilings, and CometBFT's
// limits when given.
func ValidateParams(p *emrv1.Params) error {
	if p == nil {
		return errors.New("params missing")
	}
	if len(p.Categories) == 0 {
		return errors.New("no record categories")
	}
	if err := checkIDList("categories", "category", p.Categories, maxParamCategories); err != nil {
		return err
	}
	if err := checkIDList("storage_organizations", "storage organization", p.StorageOrganizations, maxParamStorageOrganizations); err != nil {
		return err
	}
	if uint64(p.StorageCopies) > uint64(len(p.StorageOrganizations)) { // as uint64: no int overflow on any platform
		return fmt.Errorf("params.storage_copies is %d, more than the %d storage organizations named (0: every one keeps a copy)", p.StorageCopies, len(p.StorageOrganizations))
	}
	for _, c := range []struct {
		name       string
		value, min uint64
	}{
		{"max_tx_bytes", p.MaxTxBytes, 1024},
		{"max_blob_bytes", p.MaxBlobBytes, 1},
		{"max_records_per_access", uint64(p.MaxRecordsPerAccess), 1},
		{"max_rewraps_per_rotation", uint64(p.MaxRewrapsPerRotation), 1},
		{"max_page_size", uint64(p.MaxPageSize), 1},
		// Every KEK envelope a client seals is this long (a wrapped file
		// key is shorter): below it no grant is possible.
		{"max_wrapped_key_bytes", uint64(p.MaxWrappedKeyBytes), crypto.EnvelopeSize},
		{"proposal_seconds", p.ProposalSeconds, 3600},
	} {
		if c.value < c.min {
			return fmt.Errorf("params.%s is %d: want at least %d", c.name, c.value, c.min)
		}
	}
	for _, c := range []struct {
		name       string
		value, max uint64
	}{
		{"max_tx_bytes", p.MaxTxBytes, maxParamTxBytes},
		{"max_records_per_access", uint64(p.MaxRecordsPerAccess), maxParamRecordsPerAccess},
		{"max_rewraps_per_rotation", uint64(p.MaxRewrapsPerRotation), maxParamRewrapsPerRotation},
		{"max_page_size", uint64(p.MaxPageSize), maxParamPageSize},
		{"max_wrapped_key_bytes", uint64(p.MaxWrappedKeyBytes), maxStaticWrappedKey},
		{"proposal_seconds", p.ProposalSeconds, maxParamProposalSeconds},
		{"emergency_access_seconds", p.EmergencyAccessSeconds, maxParamEmergencySeconds},
		{"emergency_patients_per_day", uint64(p.EmergencyPatientsPerDay), maxParamEmergencyPatients},
	} {
		if c.value > c.max {
			return fmt.Errorf("params.%s is %d, more than %d", c.name, c.value, c.max)
		}
	}
	// Categories are never removed, and every change of the params is a
	// SetParams carrying them all: under params whose own proposal does
	// not fit in max_tx_bytes, the params could never change again.
	if need := uint64(proto.Size(p)) + setParamsTxOverhead; need > p.MaxTxBytes {
		return fmt.Errorf("params.max_tx_bytes is %d: a proposal to change these params (%d categories) needs up to %d", p.MaxTxBytes, len(p.Categories), need)
	}
	// Left out at genesis (taken from consensus_params) and in a proposal
	// (the chain's are kept).
	if p.Consensus != nil {
		return validateConsensusLimits(p.Consensus, p.MaxTxBytes)
	}
	return nil
}

// checkIDList checks params.<field>: at most max ids, each well-formed
// (what names one in errors) and listed once.
func checkIDList(field, what string, ids []string, max int) error {
	if len(ids) > max {
		return fmt.Errorf("params.%s lists %d, more than %d", field, len(ids), max)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := checkID(what, id); err != nil {
			return err
		}
		if seen[id] {
			return fmt.Errorf("%s %q listed twice", what, id)
		}
		seen[id] = true
	}
	return nil
}

// ValidateGenesis checks params, organizations and genesis members.
func ValidateGenesis(g *emrv1.GenesisState) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidGenesis, fmt.Sprintf(format, args...))
	}
	if err := ValidateParams(g.GetParams()); err != nil {
		return bad("%v", err)
	}
	orgs := map[string]*emrv1.Organization{}
	for _, o := range g.Organizations {
		if err := validateOrganization(o); err != nil {
			return bad("%v", err)
		}
		if orgs[o.Id] != nil {
			return bad("organization %q listed twice", o.Id)
		}
		orgs[o.Id] = o
	}
	for _, id := range g.Params.StorageOrganizations {
		if orgs[id] == nil {
			return bad("params.storage_organizations names %q, not one of the genesis organizations", id)
		}
	}
	addrs := map[string]bool{}
	for i, m := range g.Members {
		// The checks of validateRegisterMember: genesis may not seat a
		// member a registrar could not register.
		if err := firstError(checkSigningKey("signing key", m.SignPubKey), checkX25519Key("encryption key", m.EncPubKey),
			checkText("credential reference", m.CredentialRef, false)); err != nil {
			return bad("member %d: %v", i, err)
		}
		if !RegistrableRole(m.Role) {
			return bad("member %d: a genesis member's role is %s, not %s", i, registrableRoles, m.Role)
		}
		if orgs[m.OrganizationId] == nil {
			return bad("member %d: unknown organization %q", i, m.OrganizationId)
		}
		if err := storageServiceAllowed(g.Params, m.Role, m.OrganizationId); err != nil {
			return bad("member %d: %v", i, err)
		}
		addr := string(AddressOf(m.SignPubKey))
		if addrs[addr] {
			return bad("member %d: signing key listed twice", i)
		}
		addrs[addr] = true
	}
	return nil
}

// initGenesis writes a validated genesis, its validators and the chain id
// into st.
func initGenesis(st state, chainID string, g *emrv1.GenesisState, validators []*emrv1.Validator) error {
	if err := st.kv.Set(keyChainID, []byte(chainID)); err != nil {
		return err
	}
	for _, v := range validators {
		if err := st.setValidator(v); err != nil {
			return err
		}
	}
	if err := st.put(keyParams, g.Params); err != nil {
		return err
	}
	for _, o := range g.Organizations {
		if err := st.put(organizationKey(o.Id), o); err != nil {
			return err
		}
	}
	for _, m := range g.Members {
		if err := st.putMember(&emrv1.Member{
			Address:        AddressOf(m.SignPubKey),
			SignPubKey:     m.SignPubKey,
			EncPubKey:      m.EncPubKey,
			Role:           m.Role,
			OrganizationId: m.OrganizationId,
			CredentialRef:  m.CredentialRef,
			Status:         emrv1.MemberStatus_MEMBER_STATUS_ACTIVE,
		}); err != nil {
			return err
		}
	}
	return nil
}
