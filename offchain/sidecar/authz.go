package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// apiError is an HTTP error answer: status, a machine-readable code and a
// human-readable reason, sent as JSON {"error": reason, "code": code}.
type apiError struct {
	status int
	code   string
	reason string
	// retryAfter, when positive, is sent as Retry-After (whole seconds).
	retryAfter time.Duration
	// charged: the answer counts against the client's host as a failed
	// authentication (every 401 does: unauthenticated; see authenticate).
	charged bool
}

func (e *apiError) Error() string { return e.reason }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, reason: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) *apiError {
	return errf(http.StatusForbidden, "forbidden", format, args...)
}

// chainError turns a ChainView failure into an answer: 503 when the chain
// cannot be asked, 500 otherwise. Nothing is ever served on an error.
func chainError(err error) *apiError {
	if errors.Is(err, ErrChainUnavailable) {
		return errf(http.StatusServiceUnavailable, "chain_unavailable", "cannot reach the chain to authorize the request: %v", err)
	}
	return errf(http.StatusInternalServerError, "chain_error", "chain query failed: %v", err)
}

// head is the chain's latest block to authorize a request by: refused
// (503 chain_stale) when it is older than MaxHeadAge by the sidecar's
// clock, since a node that stopped advancing would judge grants and
// windows at a time long past and miss every revocation since.
func (s *Server) head(ctx context.Context) (Head, *apiError) {
	head, err := s.chain.Head(ctx)
	if err != nil {
		return Head{}, chainError(err)
	}
	if age, stale := s.staleHead(head); stale {
		return Head{}, errf(http.StatusServiceUnavailable, "chain_stale",
			"the node's latest block (height %d, %s) is %s old, more than the %s this sidecar authorizes by: the node may have stopped following the chain and not seen the latest revocations",
			head.Height, formatTime(head.Time), age.Round(time.Second), s.opts.MaxHeadAge)
	}
	return head, nil
}

// CodeChainBehind is the code of the 503 a request gets when the
// sidecar's node has not reached the height its client saw committed
// (HeaderMinHeight) within MaxHeightWait.
const CodeChainBehind = "chain_behind"

// heightPoll is how often reachHeight asks the node for its height.
const heightPoll = 50 * time.Millisecond

// reachHeight waits, up to MaxHeightWait, until the node has the height
// the request says its client saw committed (HeaderMinHeight; nothing to
// wait for without it), and answers 503 chain_behind, with Retry-After, if
// it does not get there: a lagging node must say "not yet", not refuse
// what it has not seen.
func (s *Server) reachHeight(r *http.Request) *apiError {
	raw := r.Header.Get(HeaderMinHeight)
	if raw == "" {
		return nil
	}
	want, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || want < 0 {
		return errf(http.StatusBadRequest, "bad_request", "%s %q: want a height, a decimal number not below 0", HeaderMinHeight, raw)
	}
	ctx := r.Context()
	wait, cancel := context.WithTimeout(ctx, max(s.opts.MaxHeightWait, 0))
	defer cancel()
	for {
		head, aerr := s.head(ctx) // a node that stopped is stale, not behind: no wait
		if aerr != nil {
			return aerr
		}
		have := head.Height
		if have >= want {
			// The node saves a block before its app executes and commits
			// it: the state its lookups read may still be a block older.
			if have, err = stateHeight(ctx, s.chain, head); err != nil {
				return chainError(err)
			}
		}
		if have >= want {
			return nil
		}
		if ctxtime.Sleep(wait, heightPoll) != nil {
			return retryLater(http.StatusServiceUnavailable, CodeChainBehind, time.Second,
				"this sidecar's node has state %d, below height %d, which the client saw committed (%s): it has not caught up yet",
				have, want, HeaderMinHeight)
		}
	}
}

// staleHead is how old head is by the sidecar's clock, and whether that
// is past MaxHeadAge: requests are then refused, and /healthz says so.
func (s *Server) staleHead(head Head) (time.Duration, bool) {
	age := s.opts.Now().Sub(head.Time)
	return age, s.opts.MaxHeadAge > 0 && age > s.opts.MaxHeadAge
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// authState answers the questions of one request against the chain. Its
// memo lives only as long as the request.
type authState struct {
	chain  ChainView
	caller *emrv1.Member
	head   Head
	window time.Duration

	patients map[string]*emrv1.Patient
	perms    map[string]*emrv1.Permission // the caller's permission per patient (nil: none)
}

func newAuthState(chain ChainView, caller *emrv1.Member, head Head, window time.Duration) *authState {
	return &authState{
		chain: chain, caller: caller, head: head, window: window,
		patients: map[string]*emrv1.Patient{}, perms: map[string]*emrv1.Permission{},
	}
}

func (a *authState) patient(ctx context.Context, id []byte) (*emrv1.Patient, error) {
	if p, ok := a.patients[string(id)]; ok {
		return p, nil
	}
	p, err := a.chain.Patient(ctx, id)
	if err != nil {
		return nil, err
	}
	a.patients[string(id)] = p
	return p, nil
}

func (a *authState) owns(ctx context.Context, patientID []byte) (bool, error) {
	p, err := a.patient(ctx, patientID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(p.Owner, a.caller.Address), nil
}

func (a *authState) permission(ctx context.Context, patientID []byte) (*emrv1.Permission, error) {
	if p, ok := a.perms[string(patientID)]; ok {
		return p, nil
	}
	mine, err := a.chain.Permission(ctx, patientID, a.caller.Address)
	if errors.Is(err, ErrNotFound) {
		mine, err = nil, nil // no consent: app.CheckPermission says so
	}
	if err != nil {
		return nil, err
	}
	a.perms[string(patientID)] = mine
	return mine, nil
}

// authorizePut: the patient's owner, or a member whose permission stands at
// the latest block time with the write right for category, may upload
// ciphertext for that category of the patient. Shared ciphertext (a record
// re-encrypted to a study key, uploaded before ShareRecord is committed)
// needs the share right for category instead, which only a clinician's
// consent can carry; the owner shares nothing. The upload comes before
// AddRecord or ShareRecord, so there is no record to check yet; the blob
// is filed under the patient and category (BlobKey, SharedBlobKey), and
// only a record, or a share, of both will serve it (a blob none references
// is swept later).
func (a *authState) authorizePut(ctx context.Context, patientID []byte, category string, shared bool) *apiError {
	p, err := a.patient(ctx, patientID)
	if errors.Is(err, ErrNotFound) {
		return forbidden("patient %x is not enrolled on the chain", patientID)
	}
	if err != nil {
		return chainError(err)
	}
	if bytes.Equal(p.Owner, a.caller.Address) {
		if shared {
			return forbidden("a patient's key uploads no shared ciphertext for patient %x: a clinician with the share right shares records with studies", patientID)
		}
		return nil
	}
	perm, err := a.permission(ctx, patientID)
	if err != nil {
		return chainError(err)
	}
	right, what := emrv1.Right_RIGHT_WRITE, ""
	if shared {
		right, what = emrv1.Right_RIGHT_SHARE, "shared "
	}
	if err := app.CheckPermission(perm, a.caller, right, category, a.head.Time); err != nil {
		return forbidden("you may not upload %s%q for patient %x: %v (block time %s)", what, category, patientID, err, formatTime(a.head.Time))
	}
	return nil
}

// authorizeGet: a GET names the committed record or share whose
// ciphertext it wants (ref), and the blob must be that record's or share's.
// A record's blob is served to the patient's owner and to a member whose
// access event for that record is committed, no older than the access
// window (measured in block time) and whose permission still stands; a
// share's blob to the owner, the study's principal investigator and the
// researchers of the study's organization. It returns what is served: the
// blob uploaded for the record's patient and category (for a share, the
// shared blob uploaded for those of the record it shares), of the size the
// chain has for it.
func (a *authState) authorizeGet(ctx context.Context, ref BlobRef, sum [32]byte) (servedBlob, *apiError) {
	b, why, err := a.mayRead(ctx, ref, sum)
	switch {
	case errors.Is(err, ErrNotFound):
		return b, forbidden("no committed %s", ref)
	case err != nil:
		return b, chainError(err)
	case why != "":
		return b, forbidden("%s: %s", ref, why)
	}
	return b, nil
}

// servedBlob is the blob a GET may be served: its store key and its size
// as the chain records it.
type servedBlob struct {
	key  blobstore.Key
	size uint64
}

// mayRead explains why the caller may not read blob sum as the ciphertext
// of ref ("" when it may), and returns the blob ref serves.
func (a *authState) mayRead(ctx context.Context, ref BlobRef, sum [32]byte) (b servedBlob, why string, err error) {
	if ref.Share {
		sh, err := a.chain.Share(ctx, ref.PatientID, ref.Sequence)
		if err != nil {
			return b, "", err
		}
		if !bytes.Equal(sh.SharedSha256, sum[:]) {
			return b, fmt.Sprintf("it is blob %x, not %x", sh.SharedSha256, sum), nil
		}
		rec, err := a.chain.Record(ctx, sh.PatientId, sh.RecordSequence)
		if err != nil {
			return b, "", fmt.Errorf("the record share %d shares: %w", sh.Sequence, err)
		}
		why, err := a.mayReadShare(ctx, sh, rec.Category)
		if why != "" {
			why = fmt.Sprintf("shared with study %q: %s", sh.StudyId, why)
		}
		return servedBlob{SharedBlobKey(ref.PatientID, rec.Category, sum), sh.Size}, why, err
	}
	rec, err := a.chain.Record(ctx, ref.PatientID, ref.Sequence)
	if err != nil {
		return b, "", err
	}
	if !bytes.Equal(rec.CiphertextSha256, sum[:]) {
		return b, fmt.Sprintf("it is blob %x, not %x", rec.CiphertextSha256, sum), nil
	}
	why, err = a.mayReadRecord(ctx, rec)
	return servedBlob{BlobKey(ref.PatientID, rec.Category, sum), rec.Size}, why, err
}

// mayReadRecord explains why the caller may not read rec's ciphertext now
// ("" when it may).
func (a *authState) mayReadRecord(ctx context.Context, rec *emrv1.Record) (string, error) {
	owner, err := a.owns(ctx, rec.PatientId)
	if err != nil || owner {
		return "", err
	}
	ev, err := a.chain.LastAccess(ctx, rec.PatientId, rec.Sequence, a.caller.Address)
	if errors.Is(err, ErrNotFound) {
		return "no committed access event for this record (submit RecordAccess first)", nil
	}
	if err != nil {
		return "", err
	}
	if ev.Purpose == emrv1.Purpose_PURPOSE_EMERGENCY {
		// No consent of the caller's: the patient's opt-in to the
		// emergency service the read went through must stand instead.
		_, why, err := a.emergencyReadStands(ctx, rec, ev)
		return why, err
	}
	if why := a.expired(ev); why != "" {
		return why, nil
	}
	// The event proves the read was allowed when it was committed; the
	// permission must also still stand, so a revocation ends the window.
	perm, err := a.permission(ctx, rec.PatientId)
	if err != nil {
		return "", err
	}
	right := emrv1.Right_RIGHT_READ
	if ev.Purpose == emrv1.Purpose_PURPOSE_RESEARCH {
		right = emrv1.Right_RIGHT_SHARE
	}
	if err := app.CheckPermission(perm, a.caller, right, rec.Category, a.head.Time); err != nil {
		return err.Error(), nil
	}
	// The chain refuses a research read of a consent that asks for
	// anonymisation unless a clinician makes it (app recordAccess): a
	// researcher's event from before the patient narrowed the consent so
	// must not keep the record's raw ciphertext coming.
	if ev.Purpose == emrv1.Purpose_PURPOSE_RESEARCH && perm.Anonymise && a.caller.Role != emrv1.Role_ROLE_CLINICIAN {
		return fmt.Sprintf("the patient now consents to study %q only anonymised: read the anonymised share a clinician made", perm.StudyId), nil
	}
	// Nor once the study has closed (its organization left the
	// consortium): the chain refuses research reads for it now.
	if ev.Purpose == emrv1.Purpose_PURPOSE_RESEARCH {
		return a.studyClosed(ctx, perm.StudyId)
	}
	return "", nil
}

// studyClosed explains why study id takes no research read now: it is not
// registered, or its organization has left the consortium ("" when open;
// the chain's rule, app liveStudy).
func (a *authState) studyClosed(ctx context.Context, id string) (string, error) {
	study, err := a.chain.Study(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return fmt.Sprintf("study %q is not registered", id), nil
	}
	if err != nil {
		return "", err
	}
	org, err := a.chain.Organization(ctx, study.OrganizationId)
	if err != nil {
		return "", fmt.Errorf("study %q: %w", id, err)
	}
	if why := app.OrganizationRetired(org.Id, org.RetiredHeight); why != "" {
		return fmt.Sprintf("study %q: %s", id, why), nil
	}
	return "", nil
}

// mayReadShare explains why the caller may not read the blob of share sh
// of a record of category.
func (a *authState) mayReadShare(ctx context.Context, sh *emrv1.Share, category string) (string, error) {
	owner, err := a.owns(ctx, sh.PatientId)
	if err != nil || owner {
		return "", err
	}
	study, err := a.chain.Study(ctx, sh.StudyId)
	if errors.Is(err, ErrNotFound) {
		return "the study is not registered", nil
	}
	if err != nil {
		return "", err
	}
	if !bytes.Equal(study.PrincipalInvestigator, a.caller.Address) &&
		(a.caller.Role != emrv1.Role_ROLE_RESEARCHER || a.caller.OrganizationId != study.OrganizationId) {
		return fmt.Sprintf("you are neither its principal investigator nor a researcher of %q", study.OrganizationId), nil
	}
	// The consent first: a share it no longer allows is refused for that,
	// whatever the age of the caller's read.
	if why, err := a.shareConsentStands(ctx, sh, category); why != "" || err != nil {
		return why, err
	}
	// The read is on the patient's audit trail first (app shareRead), as
	// a record's is.
	ev, err := a.chain.LastShareRead(ctx, sh.PatientId, sh.Sequence, a.caller.Address)
	if errors.Is(err, ErrNotFound) {
		return "no committed read of this share (submit RecordAccess naming the share first)", nil
	}
	if err != nil {
		return "", err
	}
	return a.expired(ev), nil
}

// expired explains why access event ev no longer lets its reader fetch
// ciphertext ("" when it does): it is older than the access window in
// block time.
func (a *authState) expired(ev *emrv1.AccessEvent) string {
	return a.expiredAfter(ev, a.window, fmt.Sprintf("access window %s", a.window))
}

// expiredAfter explains why access event ev, which lets its reader fetch
// for window after it in block time (the window described by what), no
// longer does ("" while it does).
func (a *authState) expiredAfter(ev *emrv1.AccessEvent, window time.Duration, what string) string {
	if expires := ev.Time.AsTime().Add(window); a.head.Time.After(expires) {
		return fmt.Sprintf("your access event at height %d expired at %s (%s, block time %s)",
			ev.Height, formatTime(expires), what, formatTime(a.head.Time))
	}
	return ""
}

// shareConsentStands explains why the consent share sh was made under no
// longer lets the study have it ("" when it does): the study's
// researchers download a share only while the patient's consent to it
// stands, as a grantee reads a record only while its permission does. A
// revocation, the consent's end, the sharer's suspension, a change of
// study or, for a share that is not anonymised, a narrowing to anonymised
// sharing stops the downloads (copies already made are beyond recall).
// The rule is the chain's (app.ShareConsentStands), which refuses the
// study's reads of the share from then on.
func (a *authState) shareConsentStands(ctx context.Context, sh *emrv1.Share, category string) (string, error) {
	consent, err := a.chain.Permission(ctx, sh.PatientId, sh.Sharer)
	if errors.Is(err, ErrNotFound) {
		consent, err = nil, nil
	}
	if err != nil {
		return "", err
	}
	sharer, err := a.chain.Member(ctx, sh.Sharer)
	if errors.Is(err, ErrNotFound) {
		sharer, err = nil, nil
	}
	if err != nil {
		return "", err
	}
	if err := app.ShareConsentStands(consent, sharer, sh, category, a.head.Time); err != nil {
		return err.Error(), nil
	}
	return "", nil
}
