package app

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// QueryPathPrefix prefixes the ABCI query paths of the Query service:
// "/emrchain.v1.Query/Member" and so on. RawKeyPath reads one raw key.
const (
	QueryPathPrefix = "/emrchain.v1.Query/"
	RawKeyPath      = "/store/key"
)

// Query answers an ABCI query at height (0 = the last commit). For the
// Query service paths, data is the request and the value the response
// protobuf; with prove, the response carries a StoreProof for every key it
// was built from, against the AppHash in header height+1.
func (a *App) Query(path string, data []byte, height int64, prove bool) ([]byte, int64, error) {
	if path == RawKeyPath {
		value, _, h, err := a.QueryKey(data, height, false)
		return value, h, err
	}
	method, ok := strings.CutPrefix(path, QueryPathPrefix)
	if !ok {
		return nil, 0, fmt.Errorf("%w: unknown path %s", ErrInvalidQuery, QuoteInput(path))
	}
	var handler func(srv any, ctx context.Context, dec func(any) error, _ any) (any, error)
	for _, m := range emrv1.Query_ServiceDesc.Methods {
		if m.MethodName == method {
			h := m.Handler
			handler = func(srv any, ctx context.Context, dec func(any) error, _ any) (any, error) {
				return h(srv, ctx, dec, nil)
			}
			break
		}
	}
	if handler == nil {
		return nil, 0, fmt.Errorf("%w: unknown query method %s", ErrInvalidQuery, QuoteInput(method))
	}
	h, reader, err := a.readerAt(height)
	if err != nil {
		return nil, 0, err
	}
	rec := &recordingReader{Reader: reader, seen: map[string]bool{}}
	q := &Querier{r: rec}
	out, err := handler(q, context.Background(), func(in any) error {
		if err := proto.Unmarshal(data, in.(proto.Message)); err != nil {
			return fmt.Errorf("%w: decode request: %v", ErrInvalidQuery, err)
		}
		return nil
	}, nil)
	if errors.Is(err, store.ErrVersionNotFound) {
		// The height was pruned during the read (a Commit between two of
		// its steps): one this node no longer keeps.
		return nil, h, a.heightError(h, err)
	}
	if err != nil {
		return nil, h, err
	}
	resp := out.(proto.Message)
	var proofs []*emrv1.StoreProof
	if prove {
		for _, key := range rec.keys {
			value, ops, _, err := a.QueryKey(key, h, true)
			if err != nil {
				return nil, h, err
			}
			proofs = append(proofs, &emrv1.StoreProof{Key: key, Value: value, Ops: toProofOps(ops)})
		}
	}
	setHeightAndProofs(resp, h, proofs)
	bz, err := deterministic.Marshal(resp)
	if err != nil {
		return nil, h, fmt.Errorf("%w: encode response: %v", ErrInternal, err)
	}
	return bz, h, nil
}

// QueryKey reads one raw key at height (0 = last commit), with a
// membership or absence proof when prove is set.
func (a *App) QueryKey(key []byte, height int64, prove bool) ([]byte, *cmtcrypto.ProofOps, int64, error) {
	if len(key) == 0 {
		return nil, nil, 0, fmt.Errorf("%w: empty key", ErrInvalidQuery)
	}
	h, reader, err := a.readerAt(height)
	if err != nil {
		return nil, nil, 0, err
	}
	if !prove {
		v, err := reader.Get(key)
		return v, nil, h, err
	}
	v, ops, err := a.store.GetWithProof(key, h)
	if err != nil {
		return nil, nil, h, fmt.Errorf("proof of %x: %w", key, a.heightError(h, err))
	}
	return v, ops, h, nil
}

func (a *App) readerAt(height int64) (int64, store.Reader, error) {
	last, _ := a.store.LastCommit()
	if height < 0 {
		return 0, nil, fmt.Errorf("%w: height %d: want a block height, 0 for the latest", ErrInvalidQuery, height)
	}
	if height == 0 {
		height = last
	}
	if last == 0 {
		return 0, nil, fmt.Errorf("%w: this node has committed nothing yet", ErrHeightNotCommitted)
	}
	if height > last {
		return 0, nil, fmt.Errorf("%w: height %d (this node's last is %d)", ErrHeightNotCommitted, height, last)
	}
	r, err := a.store.ReaderAt(height)
	if err != nil {
		return 0, nil, a.heightError(height, err)
	}
	return height, r, nil
}

// heightError is the answer to a read of height that failed with err: a
// height pruned away, or before this node's state-sync snapshot, is one
// it no longer keeps.
func (a *App) heightError(height int64, err error) error {
	if !errors.Is(err, store.ErrVersionNotFound) {
		return fmt.Errorf("%w: read height %d: %v", ErrInternal, height, err)
	}
	if first := a.store.FirstVersion(); first > height {
		return fmt.Errorf("%w: height %d (the earliest this node keeps is %d)", ErrHeightNotKept, height, first)
	}
	return fmt.Errorf("%w: height %d", ErrHeightNotKept, height)
}

func toProofOps(ops *cmtcrypto.ProofOps) []*emrv1.ProofOp {
	if ops == nil {
		return nil
	}
	out := make([]*emrv1.ProofOp, len(ops.Ops))
	for i, op := range ops.Ops {
		out[i] = &emrv1.ProofOp{Type: op.Type, Key: op.Key, Data: op.Data}
	}
	return out
}

// FromProofOps converts a StoreProof's ops back to CometBFT's type.
func FromProofOps(ops []*emrv1.ProofOp) *cmtcrypto.ProofOps {
	out := &cmtcrypto.ProofOps{Ops: make([]cmtcrypto.ProofOp, len(ops))}
	for i, op := range ops {
		out.Ops[i] = cmtcrypto.ProofOp{Type: op.Type, Key: op.Key, Data: op.Data}
	}
	return out
}

// setHeightAndProofs fills the "height" and "proofs" fields every Query
// response has.
func setHeightAndProofs(resp proto.Message, height int64, proofs []*emrv1.StoreProof) {
	m := resp.ProtoReflect()
	fields := m.Descriptor().Fields()
	if f := fields.ByName("height"); f != nil {
		m.Set(f, protoreflect.ValueOfInt64(height))
	}
	if f := fields.ByName("proofs"); f != nil && len(proofs) > 0 {
		list := m.Mutable(f).List()
		for _, p := range proofs {
			list.Append(protoreflect.ValueOfMessage(p.ProtoReflect()))
		}
	}
}

// recordingReader remembers every key a query read or iterated over, in
// first-read order, so that each can be proven.
type recordingReader struct {
	store.Reader
	seen map[string]bool
	keys [][]byte
}

func (r *recordingReader) note(key []byte) {
	if !r.seen[string(key)] {
		r.seen[string(key)] = true
		r.keys = append(r.keys, append([]byte(nil), key...))
	}
}

func (r *recordingReader) Get(key []byte) ([]byte, error) {
	r.note(key)
	return r.Reader.Get(key)
}

func (r *recordingReader) Iterator(start, end []byte, ascending bool) (store.Iterator, error) {
	it, err := r.Reader.Iterator(start, end, ascending)
	if err != nil {
		return nil, err
	}
	return &recordingIterator{Iterator: it, r: r}, nil
}

type recordingIterator struct {
	store.Iterator
	r *recordingReader
}

func (it *recordingIterator) Key() []byte {
	k := it.Iterator.Key()
	it.r.note(k)
	return k
}

// Querier answers the Query service from one view of the state. It is what
// both the ABCI query paths and the gRPC server call.
type Querier struct {
	emrv1.UnimplementedQueryServer
	r store.Reader
}

// NewQuerier answers queries from r (e.g. a store.ReaderAt view).
func NewQuerier(r store.Reader) *Querier { return &Querier{r: r} }

var _ emrv1.QueryServer = (*Querier)(nil)

func (q *Querier) st() state { return state{store.ReadOnly(q.r)} }

func (q *Querier) Params(context.Context, *emrv1.QueryParamsRequest) (*emrv1.QueryParamsResponse, error) {
	p, err := q.st().params()
	if err != nil {
		return nil, err
	}
	changes, err := q.st().paramsChanges()
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryParamsResponse{Params: p, Changes: changes}, nil
}

func (q *Querier) Organization(_ context.Context, req *emrv1.QueryOrganizationRequest) (*emrv1.QueryOrganizationResponse, error) {
	if err := checkID("organization id", req.Id); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidQuery, err)
	}
	org, err := q.st().organization(req.Id)
	if err != nil {
		return nil, err
	}
	if org == nil {
		return nil, fmt.Errorf("%w: no organization %s", ErrNotFound, QuoteInput(req.Id))
	}
	resp := &emrv1.QueryOrganizationResponse{Organization: org}
	// The registrar index (0x17), not every member of the organization:
	// a verified read's proofs do not grow with the staff. Active
	// registrars come first.
	prefix := registrarPrefix(req.Id)
	err = scan(q.r, prefix, prefixEnd(prefix), true, func(key, _ []byte) (bool, error) {
		_, _, addr, err := parseRegistrarKey(key)
		if err != nil {
			return false, err
		}
		m, err := q.st().member(addr)
		if err != nil || m == nil {
			return false, fmt.Errorf("registrar index %x without member: %v", key, err)
		}
		resp.Registrars = append(resp.Registrars, m)
		return true, nil
	})
	return resp, err
}

func (q *Querier) Organizations(_ context.Context, req *emrv1.QueryOrganizationsRequest) (*emrv1.QueryOrganizationsResponse, error) {
	limit, err := q.limit(&emrv1.PageRequest{Limit: req.Limit})
	if err != nil {
		return nil, err
	}
	prefix := []byte{prefixOrganization}
	start := prefix
	if req.After != "" {
		if err := checkID("after", req.After); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidQuery, err)
		}
		start = append(organizationKey(req.After), 0) // the first key after it
	}
	resp := &emrv1.QueryOrganizationsResponse{}
	err = scan(q.r, start, prefixEnd(prefix), true, func(key, value []byte) (bool, error) {
		if uint32(len(resp.Organizations)) == limit {
			resp.Next = resp.Organizations[limit-1].Id
			return false, nil
		}
		org := &emrv1.Organization{}
		if err := unmarshalAt(key, value, org); err != nil {
			return false, err
		}
		resp.Organizations = append(resp.Organizations, org)
		return true, nil
	})
	return resp, err
}

// Members pages through an organization's member index (0x04), whose
// value is each member's role, so a role filter reads only the members it
// returns. A filtered page reads at most memberScanFactor pages' worth of
// the index, then ends early (as Records does with a category): a
// registrar looking for the two storage services among ten thousand
// clinicians costs bounded work per page.
func (q *Querier) Members(_ context.Context, req *emrv1.QueryMembersRequest) (*emrv1.QueryMembersResponse, error) {
	if err := checkID("organization id", req.Organization); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidQuery, err)
	}
	switch {
	case req.Role == emrv1.Role_ROLE_PATIENT:
		return nil, fmt.Errorf("%w: patients belong to no organization", ErrInvalidQuery)
	case emrv1.Role_name[int32(req.Role)] == "":
		return nil, fmt.Errorf("%w: role %d is not a role", ErrInvalidQuery, req.Role)
	}
	org, err := q.st().organization(req.Organization)
	if err != nil {
		return nil, err
	}
	if org == nil {
		return nil, fmt.Errorf("%w: no organization %s", ErrNotFound, QuoteInput(req.Organization))
	}
	limit, params, err := q.limitAndParams(&emrv1.PageRequest{Limit: req.Limit})
	if err != nil {
		return nil, err
	}
	budget := uint64(math.MaxUint64)
	if req.Role != emrv1.Role_ROLE_UNSPECIFIED {
		budget = memberScanFactor * uint64(params.MaxPageSize)
	}
	prefix := orgMemberPrefix(req.Organization)
	start := prefix
	if req.After != "" {
		after, err := parseHex("after", req.After, AddressSize)
		if err != nil {
			return nil, err
		}
		start = append(orgMemberKey(req.Organization, after), 0) // the first key after it
	}
	resp := &emrv1.QueryMembersResponse{}
	var scanned uint64
	var last []byte
	err = scan(q.r, start, prefixEnd(prefix), true, func(key, value []byte) (bool, error) {
		addr := key[len(prefix):]
		if uint32(len(resp.Members)) == limit {
			// Full: this entry, read past the page, says there is more.
			resp.Next = hex.EncodeToString(last)
			return false, nil
		}
		scanned++
		last = addr
		if len(value) != 1 {
			return false, fmt.Errorf("%w: organization member index %x holds %d bytes, not a role", ErrInternal, key, len(value))
		}
		if req.Role == emrv1.Role_ROLE_UNSPECIFIED || emrv1.Role(value[0]) == req.Role {
			m, err := q.st().member(addr)
			if err != nil || m == nil {
				return false, fmt.Errorf("%w: organization member index %x without member: %v", ErrInternal, key, err)
			}
			resp.Members = append(resp.Members, m)
		}
		if scanned == budget {
			// The budget spent: end here, without reading past it, even
			// if this was the last entry (the next page is then empty).
			resp.Next = hex.EncodeToString(addr)
			return false, nil
		}
		return true, nil
	})
	return resp, err
}

// memberScanFactor times params.max_page_size is how many index entries
// one filtered Members page may read before it ends early (see Members).
const memberScanFactor = recordScanFactor

func (q *Querier) Member(_ context.Context, req *emrv1.QueryMemberRequest) (*emrv1.QueryMemberResponse, error) {
	m, err := q.memberHex(req.Address)
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryMemberResponse{Member: m}, nil
}

// EmergencyReads returns the reads the chain keeps for a member's count
// of patients read in emergencies (countEmergencyRead), as kept, the
// limit they count against, and the member.
func (q *Querier) EmergencyReads(_ context.Context, req *emrv1.QueryEmergencyReadsRequest) (*emrv1.QueryEmergencyReadsResponse, error) {
	m, err := q.memberHex(req.Address)
	if err != nil {
		return nil, err
	}
	var reads emrv1.EmergencyReads
	if _, err := q.st().get(emergencyReadsKey(m.Address), &reads); err != nil {
		return nil, err
	}
	params, err := q.st().params()
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryEmergencyReadsResponse{Reads: reads.Reads, PatientsPerDay: params.GetEmergencyPatientsPerDay(), Member: m}, nil
}

// BreakGlassLog lists an emergency service's break-glass log: its
// emergency reads in the order they were logged, each with its access
// event, from entry page.after+1 on.
func (q *Querier) BreakGlassLog(_ context.Context, req *emrv1.QueryBreakGlassLogRequest) (*emrv1.QueryBreakGlassLogResponse, error) {
	service, err := q.memberHex(req.Service)
	if err != nil {
		return nil, err
	}
	if service.Role != emrv1.Role_ROLE_EMERGENCY_SERVICE {
		return nil, fmt.Errorf("%w: member %X is a %s, not an emergency service", ErrNotFound, service.Address, RoleName(service.Role))
	}
	limit, err := q.limit(req.Page)
	if err != nil {
		return nil, err
	}
	st := q.st()
	count, err := st.breakGlassLen(service.Address)
	if err != nil {
		return nil, err
	}
	resp := &emrv1.QueryBreakGlassLogResponse{Service: service, Page: &emrv1.PageResponse{Total: count}}
	resp.Page.Next, err = numberedPage(q.r, breakGlassPrefix(service.Address), count, req.GetPage().GetAfter(), limit, func(seq uint64, key, value []byte) error {
		ev, err := st.breakGlassAt(service.Address, key, value)
		if err != nil {
			return err
		}
		resp.Entries = append(resp.Entries, &emrv1.BreakGlassEntry{Sequence: seq, Event: ev})
		return nil
	})
	return resp, err
}

// numberedPage reads a page of a list numbered 1 to count under prefix
// (its keys: prefix | number, 8 bytes), ascending: the entries after
// number after, at most limit of them, each handed to add with its
// number. It returns where the next page starts (0: the list ends here).
func numberedPage(r store.Reader, prefix []byte, count, after uint64, limit uint32, add func(seq uint64, key, value []byte) error) (next uint64, err error) {
	if after >= count {
		return 0, nil // past the end (and no overflow below)
	}
	var n uint32
	err = scan(r, join(prefix, u64(after+1)), prefixEnd(prefix), true, func(key, value []byte) (bool, error) {
		seq := binary.BigEndian.Uint64(key[len(key)-8:])
		if err := add(seq, key, value); err != nil {
			return false, err
		}
		if n++; n == limit {
			if seq < count {
				next = seq
			}
			return false, nil
		}
		return true, nil
	})
	return next, err
}

func (q *Querier) Account(_ context.Context, req *emrv1.QueryAccountRequest) (*emrv1.QueryAccountResponse, error) {
	addr, err := parseHex("address", req.Address, AddressSize)
	if err != nil {
		return nil, err
	}
	next, err := q.st().nextSequence(addr)
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryAccountResponse{Account: &emrv1.Account{Address: addr, NextSequence: next}}, nil
}

func (q *Querier) Patient(_ context.Context, req *emrv1.QueryPatientRequest) (*emrv1.QueryPatientResponse, error) {
	p, err := q.patient(req.PatientId)
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryPatientResponse{Patient: p}, nil
}

func (q *Querier) PatientByOwner(_ context.Context, req *emrv1.QueryPatientByOwnerRequest) (*emrv1.QueryPatientResponse, error) {
	owner, err := parseHex("owner", req.Owner, AddressSize)
	if err != nil {
		return nil, err
	}
	id, err := q.r.Get(ownerKey(owner))
	if err != nil {
		return nil, err
	}
	if id == nil {
		return nil, fmt.Errorf("%w: account %X owns no patient", ErrNotFound, owner)
	}
	p, err := q.patient(hex.EncodeToString(id))
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryPatientResponse{Patient: p}, nil
}

func (q *Querier) Permissions(_ context.Context, req *emrv1.QueryPermissionsRequest) (*emrv1.QueryPermissionsResponse, error) {
	p, err := q.patient(req.PatientId)
	if err != nil {
		return nil, err
	}
	resp := &emrv1.QueryPermissionsResponse{}
	prefix := permissionPrefix(p.Id)
	err = scan(q.r, prefix, prefixEnd(prefix), true, func(key, value []byte) (bool, error) {
		perm := &emrv1.Permission{}
		if err := unmarshalAt(key, value, perm); err != nil {
			return false, err
		}
		resp.Permissions = append(resp.Permissions, perm)
		return true, nil
	})
	return resp, err
}

func (q *Querier) Permission(_ context.Context, req *emrv1.QueryPermissionRequest) (*emrv1.QueryPermissionResponse, error) {
	// One key: a consent is never without its patient (patients are not
	// deleted), so the patient is not read.
	id, err := parseHex("patient id", req.PatientId, PatientIDSize)
	if err != nil {
		return nil, err
	}
	grantee, err := parseHex("grantee", req.Grantee, AddressSize)
	if err != nil {
		return nil, err
	}
	perm, err := q.st().permission(id, grantee)
	if err != nil {
		return nil, err
	}
	if perm == nil {
		return nil, fmt.Errorf("%w: patient %x is not enrolled or has given %X no consent", ErrNotFound, id, grantee)
	}
	return &emrv1.QueryPermissionResponse{Permission: perm}, nil
}

func (q *Querier) Grants(_ context.Context, req *emrv1.QueryGrantsRequest) (*emrv1.QueryGrantsResponse, error) {
	grantee, err := parseHex("grantee", req.Grantee, AddressSize)
	if err != nil {
		return nil, err
	}
	// The grants of an address that is no member are not found, as the
	// lists of an unknown patient are: a mistyped clinician is not "holds
	// no consent". (Consent is given to members only, and members are never
	// deleted.)
	if _, err := q.member(grantee); err != nil {
		return nil, err
	}
	limit, err := q.limit(&emrv1.PageRequest{Limit: req.Limit})
	if err != nil {
		return nil, err
	}
	prefix := grantPrefix(grantee)
	start := prefix
	if req.After != "" {
		after, err := parseHex("after", req.After, PatientIDSize)
		if err != nil {
			return nil, err
		}
		start = append(grantKey(grantee, after), 0) // the first key after it
	}
	resp := &emrv1.QueryGrantsResponse{}
	err = scan(q.r, start, prefixEnd(prefix), true, func(key, _ []byte) (bool, error) {
		if uint32(len(resp.Permissions)) == limit {
			resp.Next = hex.EncodeToString(resp.Permissions[limit-1].PatientId)
			return false, nil
		}
		perm, err := q.st().permission(key[len(prefix):], grantee)
		if err != nil || perm == nil {
			return false, fmt.Errorf("grant index %x without permission: %v", key, err)
		}
		resp.Permissions = append(resp.Permissions, perm)
		return true, nil
	})
	return resp, err
}

func (q *Querier) Records(_ context.Context, req *emrv1.QueryRecordsRequest) (*emrv1.QueryRecordsResponse, error) {
	p, err := q.patient(req.PatientId)
	if err != nil {
		return nil, err
	}
	limit, params, err := q.limitAndParams(req.Page)
	if err != nil {
		return nil, err
	}
	// A category filter skips records: the page reads at most budget of
	// them (recordScanFactor pages' worth), then ends early, with Next at the
	// last one read, so one query's work (and, with prove, its proofs) stays
	// bounded however few records match. Such a page may hold fewer than
	// limit records, or none, and still have a next page.
	budget, scanned := uint64(math.MaxUint64), uint64(0) // unfiltered, a page reads limit+1 at most
	if req.Category != "" {
		// A category the params do not list (a misspelling) is the
		// caller's mistake, not "no such records": categories are only
		// ever added, so none of this height's records has it.
		if !slices.Contains(params.Categories, req.Category) {
			return nil, fmt.Errorf("%w: category %s is not one of params.categories", ErrInvalidQuery, QuoteInput(req.Category))
		}
		budget = recordScanFactor * uint64(params.MaxPageSize)
	}
	resp := &emrv1.QueryRecordsResponse{Page: &emrv1.PageResponse{Total: p.RecordCount}}
	if req.GetPage().GetAfter() >= p.RecordCount {
		return resp, nil // past the end (and no overflow below)
	}
	start := recordKey(p.Id, req.GetPage().GetAfter()+1)
	err = scan(q.r, start, prefixEnd(recordPrefix(p.Id)), true, func(key, value []byte) (bool, error) {
		rec := &emrv1.Record{}
		if err := unmarshalAt(key, value, rec); err != nil {
			return false, err
		}
		scanned++
		if req.Category == "" || rec.Category == req.Category {
			if uint32(len(resp.Records)) == limit {
				resp.Page.Next = resp.Records[len(resp.Records)-1].Sequence
				return false, nil
			}
			resp.Records = append(resp.Records, rec)
		}
		if scanned >= budget && rec.Sequence < p.RecordCount {
			resp.Page.Next = rec.Sequence
			return false, nil
		}
		return true, nil
	})
	return resp, err
}

// recordScanFactor times params.max_page_size is how many records one
// Records page may read before it ends early (see Records).
const recordScanFactor = 10

func (q *Querier) Record(_ context.Context, req *emrv1.QueryRecordRequest) (*emrv1.QueryRecordResponse, error) {
	id, err := parseHex("patient id", req.PatientId, PatientIDSize)
	if err != nil {
		return nil, err
	}
	rec, err := q.st().record(id, req.Sequence)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: patient %x has no record %d", ErrNotFound, id, req.Sequence)
	}
	return &emrv1.QueryRecordResponse{Record: rec}, nil
}

func (q *Querier) Share(_ context.Context, req *emrv1.QueryShareRequest) (*emrv1.QueryShareResponse, error) {
	id, err := parseHex("patient id", req.PatientId, PatientIDSize)
	if err != nil {
		return nil, err
	}
	sh, err := getTyped[emrv1.Share](q.st(), shareKey(id, req.Sequence))
	if err != nil {
		return nil, err
	}
	if sh == nil {
		return nil, fmt.Errorf("%w: patient %x has no share %d", ErrNotFound, id, req.Sequence)
	}
	return &emrv1.QueryShareResponse{Share: sh}, nil
}

func (q *Querier) AccessEvents(_ context.Context, req *emrv1.QueryAccessEventsRequest) (*emrv1.QueryAccessEventsResponse, error) {
	p, limit, err := q.patientPage(req.PatientId, req.Page)
	if err != nil {
		return nil, err
	}
	resp := &emrv1.QueryAccessEventsResponse{Page: &emrv1.PageResponse{Total: p.AccessCount}}
	prefix := accessPrefix(p.Id)
	end := prefixEnd(prefix)
	if after := req.GetPage().GetAfter(); after > 0 {
		end = accessKey(p.Id, after) // newest first: strictly older than after
	}
	err = scan(q.r, prefix, end, false, func(key, value []byte) (bool, error) {
		ev := &emrv1.AccessEvent{}
		if err := unmarshalAt(key, value, ev); err != nil {
			return false, err
		}
		resp.Events = append(resp.Events, ev)
		if uint32(len(resp.Events)) == limit {
			if ev.Sequence > 1 {
				resp.Page.Next = ev.Sequence
			}
			return false, nil
		}
		return true, nil
	})
	return resp, err
}

func (q *Querier) Shares(_ context.Context, req *emrv1.QuerySharesRequest) (*emrv1.QuerySharesResponse, error) {
	p, limit, err := q.patientPage(req.PatientId, req.Page)
	if err != nil {
		return nil, err
	}
	resp := &emrv1.QuerySharesResponse{Page: &emrv1.PageResponse{Total: p.ShareCount}}
	resp.Page.Next, err = numberedPage(q.r, sharePrefix(p.Id), p.ShareCount, req.GetPage().GetAfter(), limit, func(_ uint64, key, value []byte) error {
		s := &emrv1.Share{}
		if err := unmarshalAt(key, value, s); err != nil {
			return err
		}
		resp.Shares = append(resp.Shares, s)
		return nil
	})
	return resp, err
}

func (q *Querier) Study(_ context.Context, req *emrv1.QueryStudyRequest) (*emrv1.QueryStudyResponse, error) {
	if err := checkID("study id", req.Id); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidQuery, err)
	}
	s, err := q.st().study(req.Id)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%w: no study %q", ErrNotFound, req.Id)
	}
	return &emrv1.QueryStudyResponse{Study: s}, nil
}

// StudyShares lists a study's shares in the order they were made, from
// the study's index (0x11), each followed to the share under its patient.
func (q *Querier) StudyShares(ctx context.Context, req *emrv1.QueryStudySharesRequest) (*emrv1.QueryStudySharesResponse, error) {
	study, err := q.Study(ctx, &emrv1.QueryStudyRequest{Id: req.StudyId})
	if err != nil {
		return nil, err
	}
	limit, err := q.limit(req.Page)
	if err != nil {
		return nil, err
	}
	count := study.Study.ShareCount
	resp := &emrv1.QueryStudySharesResponse{Page: &emrv1.PageResponse{Total: count}}
	st := q.st()
	resp.Page.Next, err = numberedPage(q.r, studySharePrefix(req.StudyId), count, req.GetPage().GetAfter(), limit, func(seq uint64, key, value []byte) error {
		s, err := st.studyShareAt(key, value)
		if err != nil {
			return err
		}
		if s.StudyId != req.StudyId || s.StudySequence != seq {
			return fmt.Errorf("%w: study share entry %x names a share of study %q number %d", ErrInternal, key, s.StudyId, s.StudySequence)
		}
		resp.Shares = append(resp.Shares, s)
		return nil
	})
	return resp, err
}

// BlobRefs lists the ciphertext of every record, then of every share, each
// with the patient and category it is filed under (a share's: the category
// of the record it shares). A page decodes at most limit records or shares
// (and the records of the shares), and sees the key of one more.
func (q *Querier) BlobRefs(_ context.Context, req *emrv1.QueryBlobRefsRequest) (*emrv1.QueryBlobRefsResponse, error) {
	limit, err := q.limit(&emrv1.PageRequest{Limit: req.Limit})
	if err != nil {
		return nil, err
	}
	records, shares := []byte{prefixRecord}, []byte{prefixShare}
	if req.After != "" {
		kind, id, seq, err := ParseBlobRef(req.After)
		if err != nil {
			return nil, fmt.Errorf("%w: after: %v", ErrInvalidQuery, err)
		}
		if kind == BlobRefRecord {
			records = append(recordKey(id, seq), 0) // the first key after it
		} else {
			records, shares = nil, append(shareKey(id, seq), 0)
		}
	}
	resp := &emrv1.QueryBlobRefsResponse{}
	// full ends the page, before the item after its last is decoded: that
	// item is only proof that there is a next page.
	full := func() bool {
		if uint32(len(resp.Refs)) < limit {
			return false
		}
		resp.Next = resp.Refs[limit-1].Ref
		return true
	}
	if records != nil {
		err = scan(q.r, records, prefixEnd([]byte{prefixRecord}), true, func(key, value []byte) (bool, error) {
			if full() {
				return false, nil
			}
			rec := &emrv1.Record{}
			if err := unmarshalAt(key, value, rec); err != nil {
				return false, err
			}
			resp.Refs = append(resp.Refs, &emrv1.BlobRef{
				Ref:       BlobRefName(BlobRefRecord, rec.PatientId, rec.Sequence),
				PatientId: rec.PatientId, Category: rec.Category, Sha256: rec.CiphertextSha256, Size: rec.Size,
			})
			return true, nil
		})
		if err != nil || resp.Next != "" {
			return resp, err
		}
	}
	err = scan(q.r, shares, prefixEnd([]byte{prefixShare}), true, func(key, value []byte) (bool, error) {
		if full() {
			return false, nil
		}
		sh := &emrv1.Share{}
		if err := unmarshalAt(key, value, sh); err != nil {
			return false, err
		}
		rec, err := q.st().record(sh.PatientId, sh.RecordSequence)
		if err != nil {
			return false, fmt.Errorf("reading record %d of share %x/%d: %w", sh.RecordSequence, sh.PatientId, sh.Sequence, err)
		}
		if rec == nil {
			return false, fmt.Errorf("%w: share %x/%d names record %d, which is missing", ErrInternal, sh.PatientId, sh.Sequence, sh.RecordSequence)
		}
		resp.Refs = append(resp.Refs, &emrv1.BlobRef{
			Ref:       BlobRefName(BlobRefShare, sh.PatientId, sh.Sequence),
			PatientId: sh.PatientId, Category: rec.Category, Sha256: sh.SharedSha256, Size: sh.Size,
		})
		return true, nil
	})
	return resp, err
}

// The kinds of object a BlobRef names.
const (
	BlobRefRecord = "record"
	BlobRefShare  = "share"
)

// BlobRefName names a record or share in a BlobRef: "<kind>/<patient id in
// lowercase hex>/<sequence>".
func BlobRefName(kind string, patientID []byte, seq uint64) string {
	return fmt.Sprintf("%s/%x/%d", kind, patientID, seq)
}

// ParseBlobRef reads a BlobRefName.
func ParseBlobRef(s string) (kind string, patientID []byte, seq uint64, err error) {
	kind, rest, ok := strings.Cut(s, "/")
	idHex, seqText, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || (kind != BlobRefRecord && kind != BlobRefShare) {
		return "", nil, 0, fmt.Errorf("%s is not record/<patient id>/<sequence> or share/<patient id>/<sequence>", QuoteInput(s))
	}
	if len(idHex) != 2*PatientIDSize || strings.ToLower(idHex) != idHex {
		return "", nil, 0, fmt.Errorf("%s: the patient id must be %d lowercase hex characters", QuoteInput(s), 2*PatientIDSize)
	}
	if patientID, err = hex.DecodeString(idHex); err != nil {
		return "", nil, 0, fmt.Errorf("%s: the patient id is not hex", QuoteInput(s))
	}
	if seq, err = strconv.ParseUint(seqText, 10, 64); err != nil || seq == 0 || seqText != strconv.FormatUint(seq, 10) {
		return "", nil, 0, fmt.Errorf("%s: the sequence must be a decimal number from 1", QuoteInput(s))
	}
	return kind, patientID, seq, nil
}

// memberHex is the member at the address s names (hex), or ErrNotFound.
func (q *Querier) memberHex(s string) (*emrv1.Member, error) {
	addr, err := parseHex("address", s, AddressSize)
	if err != nil {
		return nil, err
	}
	return q.member(addr)
}

// member is the member at addr, or ErrNotFound.
func (q *Querier) member(addr []byte) (*emrv1.Member, error) {
	m, err := q.st().member(addr)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("%w: no member %X", ErrNotFound, addr)
	}
	return m, nil
}

func (q *Querier) patient(idHex string) (*emrv1.Patient, error) {
	id, err := parseHex("patient id", idHex, PatientIDSize)
	if err != nil {
		return nil, err
	}
	p, err := q.st().patient(id)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%w: no patient %x", ErrNotFound, id)
	}
	return p, nil
}

// patientPage loads the patient a paged list belongs to, and the page size.
func (q *Querier) patientPage(idHex string, page *emrv1.PageRequest) (*emrv1.Patient, uint32, error) {
	p, err := q.patient(idHex)
	if err != nil {
		return nil, 0, err
	}
	limit, err := q.limit(page)
	return p, limit, err
}

// limit is the page size a request may have: the default is the maximum.
func (q *Querier) limit(page *emrv1.PageRequest) (uint32, error) {
	limit, _, err := q.limitAndParams(page)
	return limit, err
}

// limitAndParams is limit and the params it was read from.
func (q *Querier) limitAndParams(page *emrv1.PageRequest) (uint32, *emrv1.Params, error) {
	params, err := q.st().params()
	if err != nil {
		return 0, nil, err
	}
	limit := page.GetLimit()
	if limit == 0 {
		return params.MaxPageSize, params, nil
	}
	if limit > params.MaxPageSize {
		return 0, nil, fmt.Errorf("%w: page size %d is above the maximum %d", ErrInvalidQuery, limit, params.MaxPageSize)
	}
	return limit, params, nil
}

// parseHex decodes a fixed-size hex id (an optional 0x prefix, any case).
func parseHex(what, s string, size int) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("%w: %s must be %d hex characters, got %s", ErrInvalidQuery, what, 2*size, QuoteInput(s))
	}
	return b, nil
}

func (q *Querier) LastAccess(_ context.Context, req *emrv1.QueryLastAccessRequest) (*emrv1.QueryLastAccessResponse, error) {
	id, err := parseHex("patient id", req.PatientId, PatientIDSize)
	if err != nil {
		return nil, err
	}
	accessor, err := parseHex("accessor", req.Accessor, AddressSize)
	if err != nil {
		return nil, err
	}
	key, what := lastAccessKey(id, req.Sequence, accessor), "record"
	if req.Share {
		key, what = lastShareReadKey(id, req.Sequence, accessor), "share"
	}
	bz, err := q.r.Get(key)
	if err != nil {
		return nil, err
	}
	if bz == nil {
		return nil, fmt.Errorf("%w: %X has no access to %s %d of patient %x", ErrNotFound, accessor, what, req.Sequence, id)
	}
	seq, err := decodeU64(bz)
	if err != nil {
		return nil, err
	}
	ev, err := getTyped[emrv1.AccessEvent](q.st(), accessKey(id, seq))
	if err != nil || ev == nil {
		return nil, fmt.Errorf("last-access index without event %d: %v", seq, err)
	}
	return &emrv1.QueryLastAccessResponse{Event: ev}, nil
}

func (q *Querier) Validators(context.Context, *emrv1.QueryValidatorsRequest) (*emrv1.QueryValidatorsResponse, error) {
	// Proposals keep the set at MaxValidators: one answer holds it.
	validators, err := q.st().validators()
	if err != nil {
		return nil, err
	}
	resp := &emrv1.QueryValidatorsResponse{Validators: validators}
	unseen, err := q.st().unseen()
	if err != nil {
		return nil, err
	}
	for _, v := range resp.Validators {
		resp.UnseenPower = append(resp.UnseenPower, unseen[string(v.PubKey)])
	}
	return resp, nil
}

// ValidatorKey reads one consensus key's entries: its validator, its unseen
// power and its change count, three keys each proven present or absent. A
// key the chain never heard of is an answer (count 0, no validator), not
// NOT_FOUND: that count is the one its first possession is for.
func (q *Querier) ValidatorKey(_ context.Context, req *emrv1.QueryValidatorKeyRequest) (*emrv1.QueryValidatorKeyResponse, error) {
	// Its length only: a key that is no ed25519 point was never proposed,
	// and its answer is that (count 0, no validator).
	if err := checkKey("pub_key (an ed25519 consensus key)", req.PubKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidQuery, err)
	}
	st := q.st()
	v, err := st.validator(req.PubKey)
	if err != nil {
		return nil, err
	}
	unseen, err := st.unseenPower(req.PubKey)
	if err != nil {
		return nil, err
	}
	changes, err := st.keyChanges(req.PubKey)
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryValidatorKeyResponse{Validator: v, Changes: changes, UnseenPower: unseen}, nil
}

func (q *Querier) Proposal(_ context.Context, req *emrv1.QueryProposalRequest) (*emrv1.QueryProposalResponse, error) {
	p, err := q.st().proposal(req.Id)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%w: no proposal %d", ErrNotFound, req.Id)
	}
	voting, err := q.st().votingOrganizations()
	if err != nil {
		return nil, err
	}
	return &emrv1.QueryProposalResponse{Proposal: p, Organizations: uint32(len(voting))}, nil
}

func (q *Querier) Proposals(_ context.Context, req *emrv1.QueryProposalsRequest) (*emrv1.QueryProposalsResponse, error) {
	limit, err := q.limit(&emrv1.PageRequest{Limit: req.Limit})
	if err != nil {
		return nil, err
	}
	prefix := []byte{prefixProposal}
	start := prefix
	if req.After > 0 {
		start = append(proposalKey(req.After), 0) // the first key after it
	}
	resp := &emrv1.QueryProposalsResponse{}
	err = scan(q.r, start, prefixEnd(prefix), true, func(key, value []byte) (bool, error) {
		if uint32(len(resp.Proposals)) == limit {
			resp.Next = resp.Proposals[limit-1].Id
			return false, nil
		}
		p := &emrv1.Proposal{}
		if err := proto.Unmarshal(value, p); err != nil {
			return false, fmt.Errorf("%w: decode proposal at %x: %v", ErrInternal, key, err)
		}
		resp.Proposals = append(resp.Proposals, p)
		return true, nil
	})
	return resp, err
}
