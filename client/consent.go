package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Typed, verified reads used by the flows below and by emrcli.

// present is v, the part of a query's answer that names what was asked
// for, or an error when the answer lacks it: the app always sets it (a
// missing thing is a "not found" error, not an empty answer), so a
// verified answer has it, and one without it is a verification failure.
// One read with Verify off need not have it; then the node answered
// wrongly, but nothing was verified, and the error says so. Either way the
// flows that use it must not dereference a nil.
func present[T any](c *Client, method, what string, v *T) (*T, error) {
	switch {
	case v != nil:
		return v, nil
	case c.Verified():
		return nil, verificationError("%s: an answer without the %s", method, what)
	default:
		return nil, fmt.Errorf("%s: the node answered without the %s (unverified: nothing it answers is checked)", method, what)
	}
}

// Member returns the member with address addr.
func (c *Client) Member(ctx context.Context, addr []byte) (*emrv1.Member, error) {
	var resp emrv1.QueryMemberResponse
	if err := c.Query(ctx, "Member", &emrv1.QueryMemberRequest{Address: hex.EncodeToString(addr)}, &resp); err != nil {
		return nil, err
	}
	return present(c, "Member", "member", resp.Member)
}

// AllOrganizations pages through the consortium's organizations, by id,
// retired ones too (see AllGrants).
func (c *Client) AllOrganizations(ctx context.Context) ([]*emrv1.Organization, *QueryInfo, error) {
	return allPagesAt(ctx, c, "organizations", "Organizations", func(after string) (*emrv1.QueryOrganizationsRequest, *emrv1.QueryOrganizationsResponse) {
		return &emrv1.QueryOrganizationsRequest{After: after}, &emrv1.QueryOrganizationsResponse{}
	}, func(resp *emrv1.QueryOrganizationsResponse) ([]*emrv1.Organization, string) {
		return resp.Organizations, resp.Next
	})
}

// AllMembers pages through the members of organization org, by address,
// of every status; of role only, unless it is ROLE_UNSPECIFIED (see
// AllGrants).
func (c *Client) AllMembers(ctx context.Context, org string, role emrv1.Role) ([]*emrv1.Member, *QueryInfo, error) {
	return allPagesAt(ctx, c, "members", "Members", func(after string) (*emrv1.QueryMembersRequest, *emrv1.QueryMembersResponse) {
		return &emrv1.QueryMembersRequest{Organization: org, Role: role, After: after}, &emrv1.QueryMembersResponse{}
	}, func(resp *emrv1.QueryMembersResponse) ([]*emrv1.Member, string) {
		return resp.Members, resp.Next
	})
}

// Patient returns the patient with pseudonymous id.
func (c *Client) Patient(ctx context.Context, id []byte) (*emrv1.Patient, error) {
	var resp emrv1.QueryPatientResponse
	if err := c.Query(ctx, "Patient", &emrv1.QueryPatientRequest{PatientId: hex.EncodeToString(id)}, &resp); err != nil {
		return nil, err
	}
	return present(c, "Patient", "patient", resp.Patient)
}

// PatientByOwner returns the patient an account owns.
func (c *Client) PatientByOwner(ctx context.Context, owner []byte) (*emrv1.Patient, error) {
	var resp emrv1.QueryPatientResponse
	if err := c.Query(ctx, "PatientByOwner", &emrv1.QueryPatientByOwnerRequest{Owner: hex.EncodeToString(owner)}, &resp); err != nil {
		return nil, err
	}
	return present(c, "PatientByOwner", "patient", resp.Patient)
}

// Permissions returns a patient's permissions (each one proven; see the
// package documentation on completeness) and the query's provenance.
func (c *Client) Permissions(ctx context.Context, patientID []byte) ([]*emrv1.Permission, *QueryInfo, error) {
	var resp emrv1.QueryPermissionsResponse
	info, err := c.QueryInfo(ctx, "Permissions", &emrv1.QueryPermissionsRequest{PatientId: hex.EncodeToString(patientID)}, &resp)
	if err != nil {
		return nil, nil, err
	}
	return resp.Permissions, info, nil
}

// Permission returns the consent a patient has given grantee (active or
// revoked), proven by its one key, and the query's provenance. None, or no
// such patient, is an error wrapping ErrNotFound (verified too).
func (c *Client) Permission(ctx context.Context, patientID, grantee []byte) (*emrv1.Permission, *QueryInfo, error) {
	var resp emrv1.QueryPermissionResponse
	req := &emrv1.QueryPermissionRequest{PatientId: hex.EncodeToString(patientID), Grantee: hex.EncodeToString(grantee)}
	info, err := c.QueryInfo(ctx, "Permission", req, &resp)
	if err != nil {
		return nil, nil, err
	}
	perm, err := present(c, "Permission", "permission", resp.Permission)
	if err != nil {
		return nil, nil, err
	}
	return perm, info, nil
}

// AllGrants pages through the consents grantee holds (ordered by patient
// id), every page a verified query of one state, the first page's, whose
// provenance it returns.
func (c *Client) AllGrants(ctx context.Context, grantee []byte) ([]*emrv1.Permission, *QueryInfo, error) {
	return allPagesAt(ctx, c, "grants", "Grants", func(after string) (*emrv1.QueryGrantsRequest, *emrv1.QueryGrantsResponse) {
		return &emrv1.QueryGrantsRequest{Grantee: hex.EncodeToString(grantee), After: after}, &emrv1.QueryGrantsResponse{}
	}, func(resp *emrv1.QueryGrantsResponse) ([]*emrv1.Permission, string) {
		return resp.Permissions, resp.Next
	})
}

// maxPages bounds the paging loops: far more than any page size allows.
const maxPages = 100_000

// AllRecords pages through a patient's records (oldest first), optionally
// of one category, all of one state (see AllGrants).
func (c *Client) AllRecords(ctx context.Context, patientID []byte, category string) ([]*emrv1.Record, *QueryInfo, error) {
	return allPagesAt(ctx, c, "records", "Records", func(after uint64) (*emrv1.QueryRecordsRequest, *emrv1.QueryRecordsResponse) {
		return &emrv1.QueryRecordsRequest{PatientId: hex.EncodeToString(patientID), Category: category, Page: &emrv1.PageRequest{After: after}}, &emrv1.QueryRecordsResponse{}
	}, func(resp *emrv1.QueryRecordsResponse) ([]*emrv1.Record, uint64) {
		return resp.Records, resp.Page.GetNext()
	})
}

// AllAccessEvents pages through a patient's access log (newest first), all
// of one state (see AllGrants).
func (c *Client) AllAccessEvents(ctx context.Context, patientID []byte) ([]*emrv1.AccessEvent, *QueryInfo, error) {
	return c.AccessEventsAfter(ctx, patientID, 0)
}

// AccessEventsAfter returns the events of a patient's access log numbered
// after seen (the log's events are numbered from 1), newest first, all of
// one state as AllAccessEvents: it reads pages from the newest until one
// reaches event seen+1. A watcher of the log passes the newest event it
// has shown; the proofs that every page is complete make the events it
// gets the whole of what was logged since.
func (c *Client) AccessEventsAfter(ctx context.Context, patientID []byte, seen uint64) ([]*emrv1.AccessEvent, *QueryInfo, error) {
	return allPagesAt(ctx, c, "access events", "AccessEvents", func(after uint64) (*emrv1.QueryAccessEventsRequest, *emrv1.QueryAccessEventsResponse) {
		return &emrv1.QueryAccessEventsRequest{PatientId: hex.EncodeToString(patientID), Page: &emrv1.PageRequest{After: after}}, &emrv1.QueryAccessEventsResponse{}
	}, func(resp *emrv1.QueryAccessEventsResponse) ([]*emrv1.AccessEvent, uint64) {
		return accessEventsAfter(resp, seen)
	})
}

// accessEventsAfter takes from a page of an access log (newest first) its
// events numbered after seen, and the cursor of the next page to read: 0
// when the log has none, or none after seen.
func accessEventsAfter(resp *emrv1.QueryAccessEventsResponse, seen uint64) ([]*emrv1.AccessEvent, uint64) {
	events := resp.Events
	for i, ev := range events {
		if ev.Sequence <= seen {
			return events[:i], 0
		}
	}
	next := resp.Page.GetNext() // the next page holds the events before it
	if next <= seen+1 {
		next = 0
	}
	return events, next
}

// allPagesAt reads every page of a list query, method, one after another
// from the first (after the zero cursor) until a page names no next one
// (the zero cursor): the first page at the newest height the client can
// read, every later one at that same height, so the list is one state's
// (pages read at successive heights could miss an item that moved between
// them, or show a state no block ever had). page builds the request and
// an empty response for a cursor; items takes the page's items and next
// cursor out of a response. It returns the items and the first page's
// provenance.
func allPagesAt[Req, Resp proto.Message, T any, C comparable](ctx context.Context, c *Client, what, method string,
	page func(after C) (Req, Resp), items func(Resp) ([]T, C)) ([]T, *QueryInfo, error) {
	return allPagesFrom(ctx, c, 0, what, method, page, items)
}

// allPagesFrom is allPagesAt with every page read at height, one an
// earlier answer was read from (QueryInfoAt), or, when height is 0, at the
// newest the client can read.
func allPagesFrom[Req, Resp proto.Message, T any, C comparable](ctx context.Context, c *Client, height int64, what, method string,
	page func(after C) (Req, Resp), items func(Resp) ([]T, C)) ([]T, *QueryInfo, error) {
	var info *QueryInfo
	list, err := allPages(what, func(after C) ([]T, C, error) {
		req, resp := page(after)
		var err error
		switch {
		case info != nil:
			_, err = c.QueryInfoAt(ctx, info.Height, method, req, resp)
		case height > 0:
			info, err = c.QueryInfoAt(ctx, height, method, req, resp)
		default:
			info, err = c.QueryInfo(ctx, method, req, resp)
		}
		var none C
		if err != nil {
			return nil, none, err
		}
		got, next := items(resp)
		return got, next, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return list, info, nil
}

// allPages calls query for one page after another, from the first (after
// the zero cursor), until a page has no next one (the zero cursor), and
// returns every item.
func allPages[T any, C comparable](what string, query func(after C) ([]T, C, error)) ([]T, error) {
	var out []T
	var after, none C
	for range maxPages {
		items, next, err := query(after)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == none {
			return out, nil
		}
		after = next
	}
	return nil, fmt.Errorf("%s: too many pages", what)
}

// KEK envelopes.

// SealKEK wraps a patient KEK of the given version to grantee's registered
// X25519 key, bound to (patient, grantee address, version).
func SealKEK(grantee *emrv1.Member, patientID []byte, version uint64, kek []byte) ([]byte, error) {
	pub, err := crypto.ParseEncryptionPublicKey(grantee.GetEncPubKey())
	if err != nil {
		return nil, fmt.Errorf("encryption key of %X: %w", grantee.GetAddress(), err)
	}
	return crypto.SealEnvelope(pub, kek, crypto.EnvelopeBinding{PatientID: patientID, Grantee: grantee.Address, KeyVersion: version})
}

// OpenKEK opens the KEK envelope of a permission with the grantee's
// X25519 private key.
func OpenKEK(encPriv *ecdh.PrivateKey, perm *emrv1.Permission) ([]byte, error) {
	if len(perm.GetWrappedKek()) == 0 {
		return nil, errors.New("the permission carries no key envelope")
	}
	return crypto.OpenEnvelope(encPriv, perm.WrappedKek, crypto.EnvelopeBinding{
		PatientID: perm.PatientId, Grantee: perm.Grantee, KeyVersion: perm.KeyVersion,
	})
}

// KEKFunc returns a patient's KEK of a version. For a new version it must
// create the KEK and store it durably before returning, so that a crash
// after the transaction that uses it never loses it. The returned slice is
// the caller's, which may clear it when done: return a copy of a KEK kept
// elsewhere.
type KEKFunc func(version uint64) ([]byte, error)

// GrantSpec is a consent in client terms.
type GrantSpec struct {
	Grantee    []byte
	Rights     []emrv1.Right
	Categories []string
	// NotBefore zero means "from the grant's block".
	NotBefore time.Time
	NotAfter  time.Time
	StudyID   string
	Anonymise bool
}

// GrantMsg builds a Grant: the patient's current KEK (by the verified
// patient's key version) sealed to the grantee's verified encryption key.
func (c *Client) GrantMsg(ctx context.Context, patientID []byte, spec GrantSpec, kek KEKFunc) (*emrv1.Msg, error) {
	if err := c.SealVerified("a grant seals the patient key to the grantee's encryption key"); err != nil {
		return nil, err
	}
	p, err := c.Patient(ctx, patientID)
	if err != nil {
		return nil, fmt.Errorf("patient %x: %w", patientID, err)
	}
	m, err := c.Member(ctx, spec.Grantee)
	if err != nil {
		return nil, fmt.Errorf("grantee %X: %w", spec.Grantee, err)
	}
	// Before the KEK is sealed: a grant the chain refuses has still shown
	// its envelope to the node it went to, and a suspended member (a lost
	// key), a storage service (which holds every blob) or a registrar must
	// not hold the patient's key for a grant that can never stand.
	if err := app.MayBeGranted(m, spec.Rights); err != nil {
		return nil, fmt.Errorf("grantee %X: %w (nothing was sealed to it)", spec.Grantee, err)
	}
	key, err := kek(p.KeyVersion)
	if err != nil {
		return nil, fmt.Errorf("patient key version %d: %w", p.KeyVersion, err)
	}
	defer clear(key)
	if err := CheckKEK(p, p.KeyVersion, key); err != nil {
		return nil, err
	}
	env, err := SealKEK(m, patientID, p.KeyVersion, key)
	if err != nil {
		return nil, err
	}
	g := &emrv1.MsgGrant{
		PatientId: patientID, Grantee: spec.Grantee, Rights: spec.Rights, Categories: spec.Categories,
		NotAfter: timestamppb.New(spec.NotAfter), WrappedKek: env, StudyId: spec.StudyID, Anonymise: spec.Anonymise,
		KeyVersion: p.KeyVersion,
	}
	if !spec.NotBefore.IsZero() {
		g.NotBefore = timestamppb.New(spec.NotBefore)
	}
	msg := &emrv1.Msg{Sum: &emrv1.Msg_Grant{Grant: g}}
	if err := c.grantCanStand(ctx, msg); err != nil {
		return nil, fmt.Errorf("%w (the grant was not sent)", err)
	}
	return msg, nil
}

// grantCanStand refuses a grant the chain would refuse for what the client
// can see in verified state: its form (app.ValidateMsg), a category the
// params do not list, a share's study that does not exist. Its envelope is
// a disclosure as soon as a node sees it, committed or refused, so a grant
// with a typo in a category must not leave the client. (What it cannot
// see, such as an end already past at the block's time, still reaches
// the chain.)
func (c *Client) grantCanStand(ctx context.Context, msg *emrv1.Msg) error {
	if err := app.ValidateMsg(msg); err != nil {
		return err
	}
	g := msg.GetGrant()
	if len(g.Categories) > 0 {
		params, err := c.Params(ctx)
		if err != nil {
			return fmt.Errorf("params: %w", err)
		}
		for _, cat := range g.Categories {
			if err := app.KnownCategory(params, cat); err != nil {
				return err
			}
		}
	}
	if slices.Contains(g.Rights, emrv1.Right_RIGHT_SHARE) {
		if _, err := c.Study(ctx, g.StudyId); err != nil {
			return fmt.Errorf("study %q: %w", g.StudyId, err)
		}
	}
	return nil
}

// needsEnvelope mirrors the chain's rule for RotateKey: a grant that is
// not revoked and not expired at t, whatever its rights (writers wrap file
// keys under the KEK too), to a grantee that is not retired (Rotate reads
// the grantee to tell).
func needsEnvelope(perm *emrv1.Permission, t time.Time) bool {
	return perm.RevokedHeight == 0 && t.Before(perm.GetNotAfter().AsTime())
}

// Rewrapper re-wraps the data key of an existing record under the new KEK
// during a rotation: it returns the new wrapped key, or nil to leave the
// record under its old key version. FileKeyRewrapper is the implementation
// (unwrap with the record's old KEK version, wrap with crypto.WrapKey under
// newKEK and crypto.FileKeyAAD(patient, category, newVersion)); a nil
// Rewrapper re-wraps nothing. An error wrapping ErrCannotRewrap leaves the
// record under its old version (RotationResult.Skipped says why); any other
// error aborts the rotation. The rotation clears newKEK once it is done
// with it: a Rewrapper must not keep it.
type Rewrapper func(ctx context.Context, rec *emrv1.Record, newVersion uint64, newKEK []byte) ([]byte, error)

// SkippedRecord is a record a rotation left under its old key version.
type SkippedRecord struct {
	Sequence   uint64
	KeyVersion uint64
	// Reason: over the chain's per-rotation limit, or why its key could
	// not be re-wrapped.
	Reason string
}

// RotationResult says what a key rotation did.
type RotationResult struct {
	OldVersion, NewVersion uint64
	// Grantees that received an envelope of the new KEK.
	Grantees [][]byte
	// Retired grantees whose consent stands but who got no envelope: their
	// organization left the consortium (the chain refuses one).
	Retired [][]byte
	// Records whose data keys were re-wrapped under the new KEK, ascending.
	Rewrapped []uint64
	// Skipped lists the records (ascending) left under their old key
	// version: the patient can still read them (its keyring holds every
	// version), grantees cannot until they are re-wrapped. A rotation
	// re-wraps at most params.max_rewraps_per_rotation (RewrapLimit)
	// records, the newest first; the chain has no follow-up message to
	// re-wrap the rest.
	Skipped     []SkippedRecord
	RewrapLimit uint32
	// RewrapDeferred: this rotation re-wrapped nothing because a later
	// rotation of the same revocation re-wraps every record straight
	// under its own, newer KEK (RevokeAndRotate).
	RewrapDeferred bool
	Tx             *TxResult
}

// RotateKey moves a patient to KEK version current+1: envelopes of the new
// KEK for every standing grant (from verified state, at or after every
// height the client has seen: Client.MinHeight), data keys re-wrapped by
// rewrap (may be nil).
//
// If the rotation is refused as invalid (app.ErrInvalidMsg: the set of
// standing grants changed before the block, e.g. an expiry), it is built
// again and submitted once more, but only from a fresh verified read:
// the refusal may come from CheckTx, which is only the node's word, and
// a lying node may have kept the first transaction. Re-reading verified
// state means the retry seals the new KEK (the same one: KEKFunc stores
// it) only to members holding a standing grant at a verified height at or
// after the first attempt's reads, so the retry exposes it to no one the
// first attempt did not, or who should not have it now. If the fresh read
// shows the key version already moved, the first transaction was
// committed after all: its verified result is returned, and nothing is
// sent again. What a retry cannot undo: a member whose grant ended
// between the two reads was sealed the new KEK in the first transaction,
// which a lying node may pass on; rotate again if that matters.
func (c *Client) RotateKey(ctx context.Context, s Signer, patientID []byte, newKEK KEKFunc, rewrap Rewrapper) (*RotationResult, error) {
	return c.rotateKey(ctx, s, patientID, newKEK, rewrap, rotationOpts{})
}

// rotationOpts constrain the state a rotation is built from.
type rotationOpts struct {
	// after is the lowest height the reads may be at (a revocation's).
	after int64
	// revoked, when set, must show as revoked in the permissions read.
	revoked []byte
	// version, when non-zero, is the key version the patient must still
	// be at; otherwise the rotation is not built (and no KEK is made).
	version uint64
}

// errKeyMoved: the patient's key version is no longer the one a rotation
// was built for.
var errKeyMoved = errors.New("the patient's key version moved")

func (c *Client) rotateKey(ctx context.Context, s Signer, patientID []byte, newKEK KEKFunc, rewrap Rewrapper, opts rotationOpts) (*RotationResult, error) {
	res, msg, err := c.rotationMsg(ctx, patientID, newKEK, rewrap, opts)
	if err != nil {
		return nil, err
	}
	res.Tx, err = c.Submit(ctx, s, msg)
	switch {
	case err == nil:
		return res, nil
	case !errors.Is(err, app.ErrInvalidMsg):
		return nil, err
	}
	first := err
	opts.version = res.OldVersion
	opts.after = max(opts.after, c.MinHeight())
	again, msg, err := c.rotationMsg(ctx, patientID, newKEK, rewrap, opts)
	if errors.Is(err, errKeyMoved) {
		// The refused transaction may have been committed all the same.
		var cerr *ChainError
		if errors.As(first, &cerr) && len(cerr.Hash) > 0 {
			if st, serr := c.TxStatus(ctx, cerr.Hash); serr == nil && st.Verified && st.Code == 0 {
				res.Tx = st
				return res, nil
			}
		}
		return nil, fmt.Errorf("rotation to key version %d refused (%w), and then %w", res.NewVersion, first, err)
	}
	if err != nil {
		return nil, fmt.Errorf("rotation to key version %d refused (%w); rebuilding it: %w", res.NewVersion, first, err)
	}
	again.Tx, err = c.Submit(ctx, s, msg)
	if err != nil {
		return nil, err
	}
	return again, nil
}

func (c *Client) rotationMsg(ctx context.Context, patientID []byte, newKEK KEKFunc, rewrap Rewrapper, opts rotationOpts) (*RotationResult, *emrv1.Msg, error) {
	if err := c.SealVerified("a key rotation seals the new patient key to the grantees' encryption keys"); err != nil {
		return nil, nil, err
	}
	var presp emrv1.QueryPatientResponse
	pinfo, err := c.QueryInfo(ctx, "Patient", &emrv1.QueryPatientRequest{PatientId: hex.EncodeToString(patientID)}, &presp)
	if err != nil {
		return nil, nil, fmt.Errorf("patient %x: %w", patientID, err)
	}
	p := presp.Patient
	perms, info, err := c.Permissions(ctx, patientID)
	if err != nil {
		return nil, nil, fmt.Errorf("permissions of %x: %w", patientID, err)
	}
	if h := min(pinfo.Height, info.Height); h < opts.after {
		// Reads never go below MinHeight, which the revocation raised:
		// this is a safety net, not a path an honest run takes.
		return nil, nil, fmt.Errorf("%w: the rotation's state is of height %d, before height %d", ErrStale, h, opts.after)
	}
	if opts.revoked != nil {
		if perm := permissionOf(perms, opts.revoked); perm != nil && perm.RevokedHeight == 0 {
			return nil, nil, fmt.Errorf("%w: %X is not revoked in the state at height %d", ErrStale, opts.revoked, info.Height)
		}
	}
	if opts.version != 0 && p.KeyVersion != opts.version {
		return nil, nil, fmt.Errorf("%w: it is %d at height %d, not %d", errKeyMoved, p.KeyVersion, pinfo.Height, opts.version)
	}
	now := info.timeOrNow()
	next := p.KeyVersion + 1
	kek, err := newKEK(next)
	if err != nil {
		return nil, nil, fmt.Errorf("new key version %d: %w", next, err)
	}
	defer clear(kek)
	res := &RotationResult{OldVersion: p.KeyVersion, NewVersion: next}
	if rewrap != nil && next < p.MinKeyVersion {
		// Below the floor a revocation set, the chain takes no re-wrapped
		// key (a revoked grantee may hold that version's KEK). A
		// revocation's own rotations read the state at or after it
		// (opts.after), where its floor is already raised; the version
		// read decides, not the one expected: another device may have
		// rotated.
		rewrap, res.RewrapDeferred = nil, true
	}
	rot := &emrv1.MsgRotateKey{PatientId: patientID, NewKeyVersion: next, KekCheck: crypto.KEKCheck(kek, patientID, next)}
	for _, perm := range perms {
		if !needsEnvelope(perm, now) {
			continue
		}
		m, err := c.Member(ctx, perm.Grantee)
		if err != nil {
			return nil, nil, fmt.Errorf("grantee %X: %w", perm.Grantee, err)
		}
		if m.Status == emrv1.MemberStatus_MEMBER_STATUS_RETIRED {
			res.Retired = append(res.Retired, perm.Grantee) // the chain refuses an envelope for it
			continue
		}
		env, err := SealKEK(m, patientID, next, kek)
		if err != nil {
			return nil, nil, err
		}
		rot.Envelopes = append(rot.Envelopes, &emrv1.KeyEnvelope{Grantee: perm.Grantee, WrappedKek: env})
		res.Grantees = append(res.Grantees, perm.Grantee)
	}
	if rewrap != nil {
		if err := c.rewrapAll(ctx, patientID, next, kek, rewrap, res, rot); err != nil {
			return nil, nil, err
		}
	}
	return res, &emrv1.Msg{Sum: &emrv1.Msg_RotateKey{RotateKey: rot}}, nil
}

// rewrapAll re-wraps the data keys of a patient's records (verified,
// every page) into rot, up to the chain's limit per rotation (see
// rewrapRecords).
func (c *Client) rewrapAll(ctx context.Context, patientID []byte, next uint64, kek []byte, rewrap Rewrapper, res *RotationResult, rot *emrv1.MsgRotateKey) error {
	params, err := c.Params(ctx)
	if err != nil {
		return fmt.Errorf("params: %w", err)
	}
	res.RewrapLimit = params.MaxRewrapsPerRotation
	recs, _, err := c.AllRecords(ctx, patientID, "")
	if err != nil {
		return err
	}
	rot.Rewrapped, res.Skipped, err = rewrapRecords(ctx, recs, params.MaxRewrapsPerRotation, next, kek, rewrap)
	if err != nil {
		return err
	}
	for _, r := range rot.Rewrapped {
		res.Rewrapped = append(res.Rewrapped, r.RecordSequence)
	}
	return nil
}

// rewrapRecords re-wraps recs (ascending) the newest first, at most limit
// of them; the older ones beyond the limit, and those rewrap cannot handle
// (ErrCannotRewrap), are returned as skipped. Both lists are ascending.
func rewrapRecords(ctx context.Context, recs []*emrv1.Record, limit uint32, next uint64, kek []byte, rewrap Rewrapper) ([]*emrv1.RewrappedKey, []SkippedRecord, error) {
	var done []*emrv1.RewrappedKey
	var skipped []SkippedRecord
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		if uint64(len(done)) >= uint64(limit) {
			skipped = append(skipped, SkippedRecord{Sequence: rec.Sequence, KeyVersion: rec.KeyVersion,
				Reason: fmt.Sprintf("over the chain's limit of %d re-wrapped keys per rotation (params.max_rewraps_per_rotation)", limit)})
			continue
		}
		wrapped, err := rewrap(ctx, rec, next, kek)
		if errors.Is(err, ErrCannotRewrap) {
			skipped = append(skipped, SkippedRecord{Sequence: rec.Sequence, KeyVersion: rec.KeyVersion, Reason: err.Error()})
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("re-wrap record %d: %w", rec.Sequence, err)
		}
		if wrapped != nil {
			done = append(done, &emrv1.RewrappedKey{RecordSequence: rec.Sequence, WrappedFileKey: wrapped})
		}
	}
	slices.Reverse(done)
	slices.Reverse(skipped)
	return done, skipped, nil
}

// RevokeResult says what RevokeAndRotate did.
type RevokeResult struct {
	Grantee []byte
	// Revoke is the revocation; nil when the grant was already revoked
	// (an earlier run stopped before its rotation).
	Revoke        *TxResult
	RevokedHeight int64
	// Rotations are the key rotations this call made, oldest first: none
	// when the grantee never held a KEK or an earlier run already made
	// them, else up to two (see RevokeAndRotate).
	Rotations []*RotationResult
}

// LastRotation is the last rotation of r (the patient's key version now),
// nil when it made none.
func (r *RevokeResult) LastRotation() *RotationResult {
	if len(r.Rotations) == 0 {
		return nil
	}
	return r.Rotations[len(r.Rotations)-1]
}

// RevokeAndRotate revokes grantee's permission and then rotates the
// patient's KEK so the revoked grantee holds no key for anything written
// from now on. Both steps are idempotent: run again after a failure, it
// completes what is missing.
//
// It rotates until the patient's key version is two past the version of
// the grantee's last envelope, k: one rotation is not enough. KEKFunc makes
// the KEK of a version once and returns it to every later attempt at that
// version (a crash must never lose a KEK that may be on chain), and an
// attempt at version k+1 built before the revocation sealed that KEK to the
// grantee; if a node saw it and it never committed (dropped, or gone
// invalid in the mempool), the grantee has the envelope all the same, and a
// rotation to k+1 after the revocation would make that KEK current. The
// KEK of version k+2 is only ever made from a state at version k+1, which
// was committed without an envelope for the grantee (else k would be k+1),
// so with the grantee no longer standing: no attempt sealed it to the
// grantee.
//
// Only the last rotation re-wraps the records' data keys (with rewrap),
// from whatever version each is under straight to the newest KEK: a
// re-wrap under the version in between would be written to the chain and
// replaced a block later, and would keep nothing from the revoked grantee
// (who may hold that KEK, as above). Until the last rotation commits, the
// remaining grantees hold the in-between KEK and records stay under older
// versions, which they cannot open: run again, it completes.
func (c *Client) RevokeAndRotate(ctx context.Context, s Signer, patientID, grantee []byte, newKEK KEKFunc, rewrap Rewrapper) (*RevokeResult, error) {
	perm, _, err := c.Permission(ctx, patientID, grantee)
	if err != nil {
		return nil, err
	}
	if len(perm.WrappedKek) > 0 {
		// Refused before the revocation, not between it and its rotations.
		if err := c.SealVerified("a revocation's key rotations seal the new patient keys to the other grantees' encryption keys"); err != nil {
			return nil, err
		}
	}
	res := &RevokeResult{Grantee: grantee, RevokedHeight: perm.RevokedHeight}
	if perm.RevokedHeight == 0 {
		msg := &emrv1.Msg{Sum: &emrv1.Msg_Revoke{Revoke: &emrv1.MsgRevoke{PatientId: patientID, Grantee: grantee}}}
		res.Revoke, err = c.Submit(ctx, s, msg)
		if err != nil {
			return nil, err
		}
		res.RevokedHeight = res.Revoke.Height
		// Read again after the revocation: the grantee's envelope version
		// is final only in a state where it is revoked (as the first read
		// already was when an earlier run revoked).
		var info *QueryInfo
		perm, info, err = c.Permission(ctx, patientID, grantee)
		if err != nil {
			return res, fmt.Errorf("revoked at height %d, but reading the permission for the key rotation failed (run revoke again to finish it): %w", res.RevokedHeight, err)
		}
		if perm.RevokedHeight == 0 {
			return res, fmt.Errorf("%w: %X is not revoked in the state at height %d (run revoke again to finish it)", ErrStale, grantee, info.Height)
		}
	}
	if len(perm.WrappedKek) == 0 {
		return res, nil // the grantee holds no KEK
	}
	p, err := c.Patient(ctx, patientID)
	if err != nil {
		return res, fmt.Errorf("revoked at height %d, but reading the patient for the key rotation failed (run revoke again to finish it): %w", res.RevokedHeight, err)
	}
	// Each rotation reads the state again, at or after the revocation
	// (MinHeight was raised by it; opts.after and opts.revoked check it
	// again), so no attempt seals the new KEK to the revoked grantee.
	// Two past the grantee's envelope, and at least the chain's floor for
	// new records (an earlier revocation's rotations may be unfinished).
	for v, target := p.KeyVersion, max(perm.KeyVersion+2, p.MinKeyVersion); v < target; {
		rot, err := c.rotateKey(ctx, s, patientID, newKEK, rewrap, rotationOpts{after: res.RevokedHeight, revoked: grantee})
		if err != nil {
			lockedOut := ""
			if last := res.LastRotation(); last != nil && last.RewrapDeferred {
				lockedOut = "; until then the other grantees cannot open the existing records"
			}
			return res, fmt.Errorf("revoked at height %d, but the key rotation failed (run revoke again to finish it%s): %w", res.RevokedHeight, lockedOut, err)
		}
		res.Rotations = append(res.Rotations, rot)
		v = rot.NewVersion
	}
	return res, nil
}

// GranteeKEK opens the KEK a member holds for a patient, from the member's
// verified permission. It returns the KEK and its version.
func (c *Client) GranteeKEK(ctx context.Context, encPriv *ecdh.PrivateKey, patientID, grantee []byte) ([]byte, uint64, error) {
	perm, _, err := c.Permission(ctx, patientID, grantee)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, 0, fmt.Errorf("%w: %w", app.ErrNoPermission, err)
	case err != nil:
		return nil, 0, err
	case perm.RevokedHeight != 0:
		return nil, 0, fmt.Errorf("%w at height %d", app.ErrPermissionRevoked, perm.RevokedHeight)
	}
	kek, err := OpenKEK(encPriv, perm)
	if err != nil {
		return nil, 0, fmt.Errorf("open the patient key envelope: %w", err)
	}
	p, err := c.Patient(ctx, patientID)
	if err == nil {
		err = CheckKEK(p, perm.KeyVersion, kek)
	}
	if err != nil {
		clear(kek)
		return nil, 0, fmt.Errorf("the patient key in your consent: %w", err)
	}
	return kek, perm.KeyVersion, nil
}

// permissionOf returns grantee's permission among perms (the chain keeps
// one per patient and grantee), or nil.
func permissionOf(perms []*emrv1.Permission, grantee []byte) *emrv1.Permission {
	for _, p := range perms {
		if bytes.Equal(p.Grantee, grantee) {
			return p
		}
	}
	return nil
}

// RecordSpec is the metadata of an uploaded (encrypted) file.
type RecordSpec struct {
	Category  string
	ObjectKey string
	SHA256    []byte
	Size      uint64
}

// AddRecordMsg builds an AddRecord: dataKey wrapped under the patient's
// KEK of version (bound to patient, category and version). Whoever signs its
// transaction is the uploader: that signature, over app.SignBytes, is the
// record's uploader signature.
func AddRecordMsg(patientID []byte, spec RecordSpec, kek []byte, version uint64, dataKey []byte) (*emrv1.Msg, error) {
	wrapped, err := crypto.WrapKey(kek, dataKey, crypto.FileKeyAAD(patientID, spec.Category, version))
	if err != nil {
		return nil, err
	}
	return &emrv1.Msg{Sum: &emrv1.Msg_AddRecord{AddRecord: &emrv1.MsgAddRecord{
		PatientId: patientID, Category: spec.Category, ObjectKey: spec.ObjectKey, CiphertextSha256: spec.SHA256,
		Size: spec.Size, KeyVersion: version, WrappedFileKey: wrapped,
	}}}, nil
}
