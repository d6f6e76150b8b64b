package app

import (
	"fmt"
	"slices"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Authorization rules, in one place. A permission grants right r on
// category c at time t exactly when
//
//	it exists, is not revoked, its grantee is active,
//	not_before <= t < not_after,
//	r is among its rights, and
//	its categories are empty (all) or contain c.
//
// The checks run in that order, so a rejection names the first reason that
// applies (an expired and revoked grant is reported as revoked).

// CheckPermission returns nil when perm grants right on category at t to
// grantee, its grantee as a member; otherwise an error that wraps the
// sentinel of the first rule that fails. The chain checks every write and
// read with it, and the blob sidecars check with it whether a grant still
// stands before they serve or take ciphertext.
func CheckPermission(perm *emrv1.Permission, grantee *emrv1.Member, right emrv1.Right, category string, t time.Time) error {
	if perm == nil {
		return fmt.Errorf("%w: the patient has granted this member nothing", ErrNoPermission)
	}
	if perm.RevokedHeight != 0 {
		return fmt.Errorf("%w at height %d", ErrPermissionRevoked, perm.RevokedHeight)
	}
	if !IsActive(grantee) {
		// GetStatus: a sidecar passes nil for a member its node does not
		// know (ShareConsentStands' sharer), which is not active either.
		return fmt.Errorf("%w: the grantee is %s", ErrGranteeSuspended, StatusName(grantee.GetStatus()))
	}
	if nb := perm.NotBefore; nb != nil && t.Before(nb.AsTime()) {
		return fmt.Errorf("%w: permission starts at %s", ErrPermissionNotYetValid, formatTime(nb.AsTime()))
	}
	if na := perm.NotAfter.AsTime(); !t.Before(na) {
		return fmt.Errorf("%w: permission expired at %s", ErrPermissionExpired, formatTime(na))
	}
	if !slices.Contains(perm.Rights, right) {
		return fmt.Errorf("%w: the permission does not include %s", ErrRightNotGranted, rightName(right))
	}
	if len(perm.Categories) > 0 && !slices.Contains(perm.Categories, category) {
		return fmt.Errorf("%w: the permission does not cover %q (it covers %v)", ErrCategoryNotGranted, category, perm.Categories)
	}
	return nil
}

// permissionStands reports whether a grant still matters at t: not revoked
// and not yet expired. Key rotation must re-wrap the KEK for exactly these.
func permissionStands(perm *emrv1.Permission, t time.Time) bool {
	return perm.RevokedHeight == 0 && t.Before(perm.NotAfter.AsTime())
}

func rightName(r emrv1.Right) string {
	switch r {
	case emrv1.Right_RIGHT_READ:
		return "read"
	case emrv1.Right_RIGHT_WRITE:
		return "write"
	case emrv1.Right_RIGHT_SHARE:
		return "share"
	case emrv1.Right_RIGHT_EMERGENCY:
		return "emergency"
	}
	return r.String()
}

// IsActive reports whether m may act: neither suspended nor retired (the
// sidecars ask the same).
func IsActive(m *emrv1.Member) bool {
	return m != nil && m.Status == emrv1.MemberStatus_MEMBER_STATUS_ACTIVE
}
