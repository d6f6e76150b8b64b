package app

import (
	"bytes"
	"fmt"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// EmergencyServiceAttribute (indexed, lowercase hex) names the emergency
// service an emergency read went through: an organization's auditors find
// every break-glass read of their service by it.
const EmergencyServiceAttribute = "emergency_service"

// breakGlass is an emergency read's standing: the emergency service it goes
// through, and the patient's opt-in to that service.
type breakGlass struct {
	service *emrv1.Member
	optIn   *emrv1.Permission
}

// breakGlass: an active clinician reads a patient's records in an
// emergency, without a consent of its own, through the emergency service of
// its organization that the patient opted in to (a grant of the emergency
// right to it). Each record's category must be covered by the opt-in at
// block time (covers). The read is an access event of purpose emergency
// that names the service, on the patient's audit trail like every read.
func (ctx *txContext) breakGlass(p *emrv1.Patient, via []byte) (*breakGlass, error) {
	if err := MayBreakGlass(ctx.signer); err != nil {
		return nil, err
	}
	service, err := ctx.st.member(via)
	if err != nil {
		return nil, err
	}
	if service == nil || service.Role != emrv1.Role_ROLE_EMERGENCY_SERVICE {
		return nil, fmt.Errorf("%w: %X is not an emergency service", ErrNotFound, via)
	}
	if service.OrganizationId != ctx.signer.OrganizationId {
		return nil, fmt.Errorf("%w: emergency service %X is %q's, the signer is a clinician of %q", ErrUnauthorized, via, service.OrganizationId, ctx.signer.OrganizationId)
	}
	optIn, err := ctx.st.permission(p.Id, via)
	if err != nil {
		return nil, err
	}
	if optIn == nil {
		return nil, fmt.Errorf("%w: the patient has not opted in to break-glass reads through %q's emergency service %X", ErrNoPermission, service.OrganizationId, via)
	}
	return &breakGlass{service: service, optIn: optIn}, nil
}

// MayBreakGlass returns nil when member m may read in an emergency at all,
// whatever the patient and its count: only an active clinician breaks the
// glass. Else the error matches ErrUnauthorized (another role) or
// ErrSignerSuspended (a clinician not active, which signs nothing).
func MayBreakGlass(m *emrv1.Member) error {
	switch {
	case m.GetRole() != emrv1.Role_ROLE_CLINICIAN:
		return fmt.Errorf("%w: member %X's role is %s: only a clinician reads in emergencies", ErrUnauthorized, m.GetAddress(), RoleName(m.GetRole()))
	case !IsActive(m):
		return fmt.Errorf("%w: clinician %X is %s and can sign nothing", ErrSignerSuspended, m.GetAddress(), StatusName(m.GetStatus()))
	}
	return nil
}

// covers returns nil when the opt-in lets the service's clinicians read a
// record of category at t: EmergencyOptInStands.
func (g *breakGlass) covers(category string, t time.Time) error {
	return EmergencyOptInStands(g.optIn, g.service, category, t)
}

// EmergencyOptInStands returns nil when optIn, the patient's grant to
// emergency service service, lets the clinicians of the service's
// organization read a record of category at t: the grant has the emergency
// right on the category, is not revoked and within its window, and the
// service is active. The chain checks every emergency read with it; the
// sidecars check it again before they serve the record's ciphertext or its
// data key, so a revocation ends an emergency read's window.
func EmergencyOptInStands(optIn *emrv1.Permission, service *emrv1.Member, category string, t time.Time) error {
	if service.GetRole() != emrv1.Role_ROLE_EMERGENCY_SERVICE {
		return fmt.Errorf("%w: %X is not an emergency service", ErrUnauthorized, service.GetAddress())
	}
	if optIn != nil && !bytes.Equal(optIn.Grantee, service.Address) {
		return fmt.Errorf("%w: the opt-in is to %X, not to %X", ErrInternal, optIn.Grantee, service.Address)
	}
	if err := CheckPermission(optIn, service, emrv1.Right_RIGHT_EMERGENCY, category, t); err != nil {
		return fmt.Errorf("the patient's opt-in to emergency service %X: %w", service.Address, err)
	}
	return nil
}

// EmergencyWindow is how long an emergency access event lets its clinician
// fetch the record's ciphertext and data key, in block time
// (emergency_access_seconds).
func EmergencyWindow(p *emrv1.Params) time.Duration {
	return time.Duration(p.GetEmergencyAccessSeconds()) * time.Second
}

// EmergencyCountWindow is how long a patient read in an emergency counts
// against its clinician's params.emergency_patients_per_day.
const EmergencyCountWindow = 24 * time.Hour

// countEmergencyRead counts the signer's emergency read of patient at block
// time against params.emergency_patients_per_day (0: no limit; nothing is
// read or written, and what was counted before stays as it was), and
// refuses it (ErrEmergencyLimit) when the clinician has already read that
// many other patients in emergencies within EmergencyCountWindow.
//
// The block's time is never earlier than the last block's, at which
// CheckTx runs, and a read only leaves the count as time passes. So what
// CheckTx admits, the block admits, but for one edge, as a consent's
// window has one: after the limit was lowered below the patients a
// clinician has counted, a read of a counted patient whose counting read
// turns 24 hours old between the last block and the next is admitted by
// CheckTx and refused by the block (the patient counts anew, and the
// others still exceed the limit); PrepareProposal leaves it out and the
// recheck drops it.
func (ctx *txContext) countEmergencyRead(patient []byte) error {
	limit := ctx.params.GetEmergencyPatientsPerDay()
	if limit == 0 {
		return nil
	}
	key := emergencyReadsKey(ctx.tx.Signer)
	var reads emrv1.EmergencyReads
	if _, err := ctx.st.get(key, &reads); err != nil {
		return err
	}
	next, changed, err := admitEmergencyRead(reads.Reads, patient, ctx.block.Time, limit)
	if err != nil {
		return fmt.Errorf("clinician %X: %w", ctx.tx.Signer, err)
	}
	if !changed {
		return nil
	}
	return ctx.st.put(key, &emrv1.EmergencyReads{Reads: next}) // never empty: it holds patient
}

// admitEmergencyRead decides an emergency read of patient at now, given the
// reads that counted before it (oldest first): those older than
// EmergencyCountWindow are dropped; a patient among the rest is read again
// without counting; another is counted (appended) while fewer than limit
// remain, else refused with ErrEmergencyLimit, naming when the count next
// falls below limit. changed says whether next differs from reads.
func admitEmergencyRead(reads []*emrv1.EmergencyRead, patient []byte, now time.Time, limit uint32) (next []*emrv1.EmergencyRead, changed bool, err error) {
	live := CountingEmergencyReads(reads, now)
	changed = len(live) != len(reads)
	for _, r := range live {
		if bytes.Equal(r.PatientId, patient) {
			return live, changed, nil
		}
	}
	if n := uint64(len(live)); n >= uint64(limit) {
		patients := "patients"
		if n == 1 {
			patients = "patient"
		}
		return nil, false, fmt.Errorf("%w: %d %s read in emergencies in the last 24 hours, and params.emergency_patients_per_day is %d; "+
			"the patients already read may be read again, another from %s",
			ErrEmergencyLimit, n, patients, limit, formatTime(EmergencyLimitFrees(live, limit)))
	}
	next = append(live[:len(live):len(live)], &emrv1.EmergencyRead{PatientId: bytes.Clone(patient), Time: timestamp(now)})
	return next, true, nil
}

// CountingEmergencyReads returns the reads of a clinician's count (as the
// chain keeps them, oldest first) that still count at now: a read counts
// for EmergencyCountWindow from its time.
func CountingEmergencyReads(reads []*emrv1.EmergencyRead, now time.Time) []*emrv1.EmergencyRead {
	for len(reads) > 0 && !now.Before(reads[0].GetTime().AsTime().Add(EmergencyCountWindow)) {
		reads = reads[1:]
	}
	return reads
}

// EmergencyLimitFrees is when a clinician whose counting reads (oldest
// first) have reached limit (1 <= limit <= len(live)) may read another
// patient in an emergency: once the read at len(live)-limit (the oldest,
// unless the limit was lowered since) no longer counts
// (EmergencyReadEnds). The zero time for a limit outside that range: one
// that is not reached, or none.
func EmergencyLimitFrees(live []*emrv1.EmergencyRead, limit uint32) time.Time {
	if limit == 0 || int(limit) > len(live) {
		return time.Time{}
	}
	return EmergencyReadEnds(live[len(live)-int(limit)])
}

// EmergencyReadEnds is when an emergency read stops counting:
// EmergencyCountWindow after it, named in whole seconds, rounded up, so
// that at the time named it no longer counts.
func EmergencyReadEnds(r *emrv1.EmergencyRead) time.Time {
	ends := r.GetTime().AsTime().Add(EmergencyCountWindow)
	if whole := ends.Truncate(time.Second); whole.Before(ends) {
		ends = whole.Add(time.Second)
	}
	return ends
}
