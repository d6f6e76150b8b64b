package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Emergency ("break-glass") reads.
//
// A patient opts in to break-glass reads by an organization by granting
// the emergency right (alone) to the organization's emergency service, a
// member of role emergency service whose encryption key is the
// organization's emergency key: the grant seals the patient's KEK to it
// like any grant. An active clinician of that organization may then log an
// emergency read of a record whose category the opt-in covers
// (MsgRecordAccess of purpose emergency naming the service), without a
// consent of its own. Against that committed event, within the chain's
// emergency window (app.EmergencyWindow) and while the opt-in stands, the
// sidecars serve the record's ciphertext to the clinician, and the sidecar
// that runs the service releases the record's data key, sealed to the
// clinician's registered X25519 key (crypto.EmergencyKeyBinding) and
// signed by the service's key on chain (sidecar.VerifyEmergencyKey): never
// the patient's KEK.
//
// EmergencyDownload is Download's pipeline with that key source: the
// same checks before the read is logged, the same fetch (hash and size
// checked against the verified, uploader-signed record) and the same
// authenticated decryption into a file that has no name until it is
// whole. Only the data key differs: it is asked of the sidecars, in order,
// once the ciphertext is fetched (emergencyKey).

// Errors of emergency reads. Test with errors.Is.
var (
	// ErrNoEmergencyOptIn: the patient has no standing opt-in (a grant of
	// the emergency right that is not revoked, within its window, to an
	// active emergency service) to break-glass reads by the organization,
	// or none that covers the category asked for. Nothing was logged.
	ErrNoEmergencyOptIn = errors.New("the patient has not opted in to break-glass reads")

	// ErrEmergencyKeyNotReleased: the emergency read is logged and the
	// ciphertext was fetched, but no sidecar released the record's data key
	// (none runs the emergency service the read names, the service is
	// down, or it refused: the opt-in was revoked or the emergency window
	// ended meanwhile). Nothing was written. A retry within the emergency
	// window, against a sidecar that runs the service, can reuse the read
	// (EmergencyDownloadRequest.ReuseAccess).
	ErrEmergencyKeyNotReleased = errors.New("no sidecar released the record's data key")

	// ErrNoEmergencyRelease: before the read was logged, the client found
	// that no emergency service could release the record's data key: none
	// of the configured sidecars runs the service the read would go
	// through, or the record is wrapped under another key version than the
	// patient's opt-in to the service holds. Nothing was logged.
	ErrNoEmergencyRelease = errors.New("no emergency service can release the record's data key")
)

// EmergencyServices returns the emergency services of organization org
// that the patient has a standing opt-in to for every one of categories
// (none, or "": any category the opt-in names), ordered by address, and the
// provenance of the state they were read from (emergencyOptIns). None is
// an error wrapping ErrNoEmergencyOptIn.
func (c *Client) EmergencyServices(ctx context.Context, patientID []byte, org string, categories ...string) ([]*emrv1.Member, *QueryInfo, error) {
	optIns, info, err := c.emergencyOptIns(ctx, patientID, org, categories)
	if err != nil {
		return nil, nil, err
	}
	services := make([]*emrv1.Member, len(optIns))
	for i, o := range optIns {
		services[i] = o.service
	}
	return services, info, nil
}

// emergencyOptIn is a patient's standing opt-in to an emergency service:
// the grant of the emergency right and the service it was granted to.
type emergencyOptIn struct {
	service *emrv1.Member
	grant   *emrv1.Permission
}

// emergencyOptIns returns the patient's standing opt-ins to emergency
// services of organization org for every one of categories (none: any
// category the opt-in names), ordered by the service's address, and the provenance of
// the state they were read from. The patient's permissions are read in one
// verified, complete listing and each grantee's membership from the same
// state; an opt-in stands by app.EmergencyOptInStands at that state's
// header time. None is an error wrapping ErrNoEmergencyOptIn.
func (c *Client) emergencyOptIns(ctx context.Context, patientID []byte, org string, categories []string) ([]emergencyOptIn, *QueryInfo, error) {
	perms, info, err := c.Permissions(ctx, patientID)
	if err != nil {
		return nil, nil, fmt.Errorf("patient %x's permissions: %w", patientID, err)
	}
	now := info.timeOrNow()
	var found []emergencyOptIn
	for _, p := range perms {
		if !slices.Contains(p.Rights, emrv1.Right_RIGHT_EMERGENCY) {
			continue
		}
		var resp emrv1.QueryMemberResponse
		if _, err := c.QueryInfoAt(ctx, info.Height, "Member", &emrv1.QueryMemberRequest{Address: hex.EncodeToString(p.Grantee)}, &resp); err != nil {
			return nil, nil, fmt.Errorf("opt-in grantee %X: %w", p.Grantee, err)
		}
		m, err := present(c, "Member", "member", resp.Member)
		if err != nil {
			return nil, nil, err
		}
		if m.OrganizationId == org && optInStands(p, m, categories, now) {
			found = append(found, emergencyOptIn{service: m, grant: p})
		}
	}
	if len(found) == 0 {
		what := "break-glass reads"
		if named := slices.DeleteFunc(slices.Clone(categories), func(c string) bool { return c == "" }); len(named) > 0 {
			what = fmt.Sprintf("break-glass reads of its %s records", strings.Join(named, " and "))
		}
		return nil, nil, fmt.Errorf("%w: patient %x has no standing opt-in to %s by %q (a grant of the emergency right to one of its emergency services)",
			ErrNoEmergencyOptIn, patientID, what, org)
	}
	slices.SortFunc(found, func(a, b emergencyOptIn) int { return bytes.Compare(a.service.Address, b.service.Address) })
	return found, info, nil
}

// optInStands says whether the opt-in of service m stands at now for
// every one of categories (app.EmergencyOptInStands); "", or none given,
// is any category: one the opt-in covers.
func optInStands(optIn *emrv1.Permission, m *emrv1.Member, categories []string, now time.Time) bool {
	if len(categories) == 0 {
		categories = []string{""}
	}
	for _, category := range categories {
		if category == "" && len(optIn.Categories) > 0 {
			category = optIn.Categories[0]
		}
		if app.EmergencyOptInStands(optIn, m, category, now) != nil {
			return false
		}
	}
	return true
}

// EmergencyDownloadRequest names a record a clinician reads in an
// emergency and where to write it.
type EmergencyDownloadRequest struct {
	PatientID []byte
	Record    uint64
	// Service is the emergency service the read goes through, an
	// organization's member of role emergency service. Nil: the one of the
	// clinician's organization that the patient opted in to for the
	// record's category (EmergencyServices; the first by address if there
	// are several), or with ReuseAccess the one the standing read names.
	Service []byte
	// ReuseAccess does not log a new read: it relies on the signer's
	// latest access event of the record being an emergency read committed
	// within the emergency window (to retry without a second audit entry).
	ReuseAccess bool
	// Reason is why the clinician breaks the glass, written to the audit
	// log with the read: required unless ReuseAccess.
	Reason emrv1.EmergencyReason
	// Output is the file to write (mode 0600); Overwrite replaces an
	// existing one.
	Output    string
	Overwrite bool
}

// EmergencyDownloadResult says what EmergencyDownload did.
type EmergencyDownloadResult struct {
	DownloadResult
	// Service is the emergency service the read went through.
	Service []byte
	// KeySidecar is the sidecar that released the data key.
	KeySidecar string
}

// EmergencyDownload logs an emergency (break-glass) read of a record by
// the clinician s (RecordAccess of purpose emergency through req.Service,
// committed: the patient and the organization's auditors see it), fetches
// and verifies its ciphertext as Download does, asks the sidecars in
// order for the record's data key (released by the one that runs the
// service), opens it with s's encryption key and decrypts the ciphertext into
// req.Output. What can fail without the chain (the output, the
// clinician's encryption key, that the patient opted in, that the record's
// key version is the opt-in's, that a sidecar runs the service, that a
// sidecar answers) is checked before the read is logged, and a released
// key is taken only with the service's signature, and once it decrypts
// the ciphertext. The chain refuses the
// read unless s is an active clinician of the service's organization and
// the patient's opt-in to the service covers the record's category.
func (c *Client) EmergencyDownload(ctx context.Context, s Recipient, req EmergencyDownloadRequest, opts TransferOptions) (*EmergencyDownloadResult, error) {
	opts = opts.withMinHeight(c)
	if req.Record == 0 {
		return nil, errRecordZero
	}
	switch {
	case req.ReuseAccess && req.Reason != 0:
		return nil, errors.New("download: a reused emergency read gives no new reason (its own stands): leave Reason unset with ReuseAccess")
	case !req.ReuseAccess:
		if err := app.CheckEmergencyReason(req.Reason); err != nil {
			return nil, fmt.Errorf("download: %w", err)
		}
	}
	if err := checkDownload(req.Output, req.Overwrite, opts); err != nil {
		return nil, err
	}
	rec, err := c.signedRecord(ctx, req.PatientID, req.Record)
	if err != nil {
		return nil, err
	}
	me, err := c.registeredRecipient(ctx, s, "the emergency service seals the data key to the registered one")
	if err != nil {
		return nil, err
	}
	via, err := c.emergencyVia(ctx, s, me, rec, req)
	if err != nil {
		return nil, err
	}
	service := via.service.Address
	// A read logged for nothing is a false entry in the patient's audit
	// trail: first make sure the service can release the key, and that a
	// configured sidecar runs it.
	if err := c.releasable(ctx, rec, service, via.grant); err != nil {
		return nil, err
	}
	named, err := findEmergencySidecar(ctx, opts, service)
	if err != nil {
		return nil, err
	}
	var logRead func() (*TxResult, error)
	if !req.ReuseAccess {
		logRead = func() (*TxResult, error) {
			return c.logAccess(ctx, s, fmt.Sprintf("emergency read of record %d through emergency service %X", req.Record, service),
				&emrv1.MsgRecordAccess{PatientId: req.PatientID, RecordSequences: []uint64{req.Record},
					Purpose: emrv1.Purpose_PURPOSE_EMERGENCY, EmergencyService: service, EmergencyReason: req.Reason})
		}
	}
	var dataKey []byte
	defer func() { clear(dataKey) }()
	var keySidecar string
	released := func(opens func([]byte) error) ([]byte, error) {
		var kerr error
		dataKey, keySidecar, kerr = emergencyKey(ctx, s, s.EncPrivKey(), rec, via.service, named, opens, opts, logRead != nil)
		return dataKey, kerr
	}
	saved, err := saveDecrypted(ctx, s, fmt.Sprintf("record %d", req.Record), recordBlob(rec), released,
		RecordStreamAAD(req.PatientID, rec.Category), req.Output, req.Overwrite, logRead, opts)
	if err != nil {
		return nil, err
	}
	return &EmergencyDownloadResult{
		DownloadResult: DownloadResult{Record: rec, Access: saved.access, Sidecar: saved.sidecar, Size: saved.size, Path: req.Output},
		Service:        service, KeySidecar: keySidecar,
	}, nil
}

// emergencyVia is the emergency service an emergency read of rec by
// clinician me goes through: req.Service; else with ReuseAccess the one
// the clinician's standing read of the record names (which must be an
// emergency read); else the first service of me's organization that the
// patient opted in to for rec's category, and then also that opt-in (nil
// otherwise), as the listing that found the service read it. The service
// comes with its member record: every key it releases must carry the
// signature of the signing key the chain has for it.
func (c *Client) emergencyVia(ctx context.Context, s Signer, me *emrv1.Member, rec *emrv1.Record, req EmergencyDownloadRequest) (emergencyOptIn, error) {
	named := req.Service
	if req.ReuseAccess {
		var resp emrv1.QueryLastAccessResponse
		q := &emrv1.QueryLastAccessRequest{PatientId: hex.EncodeToString(req.PatientID), Sequence: req.Record, Accessor: hex.EncodeToString(s.Address())}
		err := c.Query(ctx, "LastAccess", q, &resp)
		switch {
		case errors.Is(err, ErrNotFound):
			return emergencyOptIn{}, fmt.Errorf("record %d: you have no read of it to reuse: %w", req.Record, err)
		case err != nil:
			return emergencyOptIn{}, fmt.Errorf("record %d: your last read of it: %w", req.Record, err)
		}
		ev, err := present(c, "LastAccess", "access event", resp.Event)
		if err != nil {
			return emergencyOptIn{}, err
		}
		if ev.Purpose != emrv1.Purpose_PURPOSE_EMERGENCY {
			return emergencyOptIn{}, fmt.Errorf("record %d: your last read of it (height %d) is not an emergency read: log a new one", req.Record, ev.Height)
		}
		if req.Service != nil && !bytes.Equal(req.Service, ev.EmergencyService) {
			return emergencyOptIn{}, fmt.Errorf("record %d: your emergency read of it (height %d) went through emergency service %X, not %X",
				req.Record, ev.Height, ev.EmergencyService, req.Service)
		}
		named = ev.EmergencyService
	}
	if named != nil {
		// Named: the chain judges the opt-in (and says why it does not
		// stand) when the read is logged.
		m, err := c.Member(ctx, named)
		if err != nil {
			return emergencyOptIn{}, fmt.Errorf("emergency service %X: %w", named, err)
		}
		if err := releasesKeys(m); err != nil {
			return emergencyOptIn{}, fmt.Errorf("record %d: %w", req.Record, err)
		}
		return emergencyOptIn{service: m}, nil
	}
	o, err := c.emergencyOptInFor(ctx, me, req.PatientID, rec.Category)
	if err != nil {
		return emergencyOptIn{}, fmt.Errorf("record %d: %w", req.Record, err)
	}
	return o, nil
}

// releasable refuses (ErrNoEmergencyRelease) a read of rec through
// service whose data key the service could not release: the record is
// wrapped under another key version than the patient's opt-in to the
// service holds (a rotation that did not re-wrap it). The opt-in is
// listed, a standing one emergencyVia found, or nil: then it is read here.
// Without an opt-in, or with one revoked or ended, the chain refuses the
// read itself, and says why.
func (c *Client) releasable(ctx context.Context, rec *emrv1.Record, service []byte, listed *emrv1.Permission) error {
	optIn, ended := listed, false
	if optIn == nil {
		p, info, err := c.Permission(ctx, rec.PatientId, service)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the patient's opt-in to emergency service %X: %w", service, err)
		}
		optIn, ended = p, p.RevokedHeight != 0 || !info.timeOrNow().Before(p.GetNotAfter().AsTime())
	}
	if !ended && optIn.KeyVersion != rec.KeyVersion {
		return fmt.Errorf("%w, so no read was logged: record %d's data key is wrapped under the patient's key version %d, and the opt-in to emergency service %X holds version %d (a key rotation did not re-wrap the record)",
			ErrNoEmergencyRelease, rec.Sequence, rec.KeyVersion, service, optIn.KeyVersion)
	}
	return nil
}

// findEmergencySidecar makes sure, before an emergency read is logged,
// that one of the sidecars may run service, and that one answers at all
// (probeSidecars, from the same GET /healthz to each: askHealth). It
// returns the sidecars whose /healthz names the service. Only when every
// sidecar's /healthz says it runs no emergency service or another one is
// the read refused (an error matching ErrNoEmergencyRelease, with what
// each said); a sidecar whose /healthz cannot say (a 503 while its blob
// store is down, a proxy that does not route it, no answer) may still be
// the service, and the key request decides. When no sidecar answers, the
// error is probeSidecars'.
func findEmergencySidecar(ctx context.Context, opts TransferOptions, service []byte) (map[string]bool, error) {
	urls, answers, cancel := askHealth(ctx, opts)
	defer cancel()
	want := hex.EncodeToString(service)
	named := map[string]bool{}
	unknown := false
	says := make([]string, len(urls))
	p := newProbe(urls)
	for range urls {
		a := <-answers
		p.answered(ctx, a)
		switch {
		case a.err != nil:
			unknown = true
		case a.health.EmergencyService == want:
			named[urls[a.i]] = true
		case a.health.EmergencyService == "":
			says[a.i] = urls[a.i] + " runs no emergency service"
		default:
			says[a.i] = fmt.Sprintf("%s runs emergency service %s", urls[a.i], a.health.EmergencyService)
		}
	}
	if err := p.err(ctx); err != nil {
		return nil, err
	}
	if len(named) > 0 || unknown {
		return named, nil
	}
	return nil, fmt.Errorf("%w, so no read was logged: none of the sidecars runs emergency service %X (give the sidecar of that service with --sidecar): %s",
		ErrNoEmergencyRelease, service, strings.Join(says, "; "))
}

// EmergencyServiceFor is the emergency service a break-glass read by
// clinician of the patient's records of categories (those of the records
// the read names; none: any category) goes through when the clinician
// names none: the first, by address, of the clinician's organization that
// the patient has a standing opt-in to for every one of them
// (EmergencyServices). None is an error wrapping ErrNoEmergencyOptIn.
func (c *Client) EmergencyServiceFor(ctx context.Context, clinician *emrv1.Member, patientID []byte, categories ...string) ([]byte, error) {
	o, err := c.emergencyOptInFor(ctx, clinician, patientID, categories...)
	if err != nil {
		return nil, err
	}
	return o.service.Address, nil
}

// emergencyOptInFor is EmergencyServiceFor's service with the patient's
// opt-in to it.
func (c *Client) emergencyOptInFor(ctx context.Context, clinician *emrv1.Member, patientID []byte, categories ...string) (emergencyOptIn, error) {
	if clinician.OrganizationId == "" {
		return emergencyOptIn{}, fmt.Errorf("member %X belongs to no organization: a clinician reads in an emergency through its organization's emergency service", clinician.Address)
	}
	optIns, _, err := c.emergencyOptIns(ctx, patientID, clinician.OrganizationId, categories)
	if err != nil {
		return emergencyOptIn{}, err
	}
	return optIns[0], nil
}

// emergencyKey asks the sidecars, in order, for the data key of rec, which
// the signer read in an emergency through service, and opens it with
// encPriv. A sidecar that does not run the service (404
// no_emergency_service or other_emergency_service) is not asked again,
// nor is one whose answer is not signed by the service's key on chain,
// does not open, or names another record, service or key version; one
// that is not there yet (its node behind the read: chain_behind, a 503)
// is asked again in a later round, as fetchBlob asks for the ciphertext
// (retry: the read was logged just now); one that refuses for good
// (finalKeyRefusal) is not asked again, and when it is among named (the
// sidecars whose /healthz names the service) its refusal is the error's
// Refusal. A signed key that does not decrypt the ciphertext (opens) is
// passed over too. If none releases the key the error is a
// *KeyNotReleasedError; so it is at once, asking none, when service is not
// an active emergency service (releasesKeys).
func emergencyKey(ctx context.Context, s Signer, encPriv *ecdh.PrivateKey, rec *emrv1.Record, service *emrv1.Member, named map[string]bool,
	opens func([]byte) error, opts TransferOptions, retry bool) ([]byte, string, error) {
	if err := releasesKeys(service); err != nil {
		// No sidecar is asked: whatever one answered would be signed with
		// the key of a service out of use.
		return nil, "", &KeyNotReleasedError{Service: service.Address, Failures: []error{err}}
	}
	rounds, delay := opts.rounds(retry)
	sidecars := opts.distinctSidecars()
	done := map[string]bool{} // sidecars not to ask again
	var fails sidecarErrors
	var refused *sidecar.Error // the first refusal for good
	for round := 0; round < rounds && len(done) < len(sidecars); round++ {
		if round > 0 {
			if err := ctxtime.Sleep(ctx, delay); err != nil {
				return nil, "", err
			}
		}
		for _, u := range sidecars {
			if done[u] {
				continue
			}
			var k *sidecar.EmergencyKey
			err := retryLater(ctx, func() error {
				var err error
				k, err = opts.sidecarClient(u, s).EmergencyKey(ctx, rec.PatientId, rec.Sequence)
				return err
			})
			if err == nil {
				var key []byte
				if key, err = openEmergencyKey(k, encPriv, s.Address(), rec, service); err == nil {
					// The service's signature says the key is the one it
					// unwrapped from the chain; a key that then does not
					// decrypt the ciphertext is a fault of the service's.
					if err = opens(key); err == nil {
						return key, u, nil
					}
					clear(key)
					err = fmt.Errorf("the data key released: %w", err)
				}
				done[u] = true
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			var se *sidecar.Error
			switch {
			case notTheService(err):
				done[u] = true
			case errors.As(err, &se) && finalKeyRefusal(se):
				done[u] = true
				if refused == nil && named[u] {
					refused = se
				}
			}
			fails = fails.add(&sidecarFailure{URL: u, Err: err})
		}
	}
	return nil, "", &KeyNotReleasedError{Service: service.Address, Failures: fails, Refusal: refused}
}

// finalKeyRefusal says whether an emergency service's answer refuses the
// release for good, so that asking it again will not help while that
// holds: a 4xx (but 408 and 429) that is not "not this service" (the read
// no longer stands, the record's key version), or a 500 that says its key
// or the patient's opt-in is unusable.
func finalKeyRefusal(se *sidecar.Error) bool {
	return refusedOutright(se.StatusCode) ||
		(se.StatusCode == http.StatusInternalServerError && (se.Code == "emergency_key_mismatch" || se.Code == "opt_in_unusable"))
}

// KeyNotReleasedError is why no sidecar released an emergency read's data
// key. It matches ErrEmergencyKeyNotReleased, and errors.As finds each
// sidecar's failure.
type KeyNotReleasedError struct {
	// Service is the emergency service the read went through.
	Service []byte
	// Failures are the distinct failures, in the order they came.
	Failures []error
	// Refusal is set when the service refused the release for good (the
	// first such answer of a sidecar whose /healthz names the service: any
	// other sidecar's refusal is not the service's word): asking again
	// will not help while it holds.
	Refusal *sidecar.Error
}

func (e *KeyNotReleasedError) Error() string {
	return fmt.Sprintf("%v (emergency service %X): %v", ErrEmergencyKeyNotReleased, e.Service, sidecarErrors(e.Failures))
}

// Is matches ErrEmergencyKeyNotReleased.
func (e *KeyNotReleasedError) Is(target error) bool { return target == ErrEmergencyKeyNotReleased }

func (e *KeyNotReleasedError) Unwrap() []error { return e.Failures }

// notTheService says whether err is a sidecar's answer that it does not
// run the emergency service a read names.
func notTheService(err error) bool {
	var se *sidecar.Error
	return errors.As(err, &se) && se.StatusCode == http.StatusNotFound &&
		(se.Code == sidecar.CodeNoEmergencyService || se.Code == sidecar.CodeOtherEmergencyService)
}

// releasesKeys says why service, as the chain has it, releases no data
// key (nil when it does): it is not an emergency service, or not active.
// Its sidecar refuses every release then, so a release signed with its key
// could only come from whoever kept the key of a service taken out of use.
func releasesKeys(service *emrv1.Member) error {
	switch {
	case service.Role != emrv1.Role_ROLE_EMERGENCY_SERVICE:
		return fmt.Errorf("member %X is not an emergency service", service.Address)
	case !app.IsActive(service):
		return fmt.Errorf("emergency service %X is %s: it releases no data keys", service.Address, app.StatusName(service.Status))
	}
	return nil
}

// openEmergencyKey checks an emergency service's answer against the read
// (sidecar.Client.EmergencyKey checked the record it names; its service
// must be the read's, its signature by the service's signing key on
// chain, its key version the record's) and opens the data key it seals to
// the clinician's X25519 key. Anyone can seal a key to a clinician, and a
// ciphertext chosen by its writer can decrypt under a second key (AES-GCM
// does not commit to its key): only the signature shows the key is the
// one the service unwrapped from the chain, which every other reader of
// the record gets.
func openEmergencyKey(k *sidecar.EmergencyKey, encPriv *ecdh.PrivateKey, clinician []byte, rec *emrv1.Record, service *emrv1.Member) ([]byte, error) {
	if got, err := hex.DecodeString(k.Service); err != nil || !bytes.Equal(got, service.Address) {
		return nil, fmt.Errorf("the data key was released by emergency service %q, the read went through %X", k.Service, service.Address)
	}
	if err := sidecar.VerifyEmergencyKey(k, clinician, service.SignPubKey); err != nil {
		return nil, fmt.Errorf("the data key released for emergency service %X: %w", service.Address, err)
	}
	if k.KeyVersion != rec.KeyVersion {
		return nil, fmt.Errorf("the data key released is of patient key version %d, the record's is %d", k.KeyVersion, rec.KeyVersion)
	}
	key, err := crypto.OpenEnvelope(encPriv, k.Envelope, crypto.EmergencyKeyBinding(rec.PatientId, clinician, rec.Sequence))
	if err != nil {
		return nil, fmt.Errorf("the released data key does not open with your encryption key: %w", err)
	}
	if len(key) != crypto.KeySize {
		clear(key)
		return nil, fmt.Errorf("the released data key is %d bytes, want %d", len(key), crypto.KeySize)
	}
	return key, nil
}

// EmergencyAllowance is how a clinician stands against the chain's limit
// on patients read in emergencies (params.emergency_patients_per_day),
// judged at one time.
type EmergencyAllowance struct {
	// Limit is params.emergency_patients_per_day; 0 is no limit.
	Limit uint32
	// Counted are the patients read in emergencies that count at At,
	// oldest first; each counts for app.EmergencyCountWindow from its
	// time. They may be read again without counting anew.
	Counted []*emrv1.EmergencyRead
	// At is the time they were judged at: the verified header's, or the
	// local clock's when the answer was not verified.
	At time.Time
	// Member is the member asked about, as the same state has it.
	Member *emrv1.Member
}

// Barred says why the member may read no patient in an emergency at all,
// whatever its count (nil when it may): the chain's rule,
// app.MayBreakGlass.
func (a *EmergencyAllowance) Barred() error { return app.MayBreakGlass(a.Member) }

// Left is how many patients besides those counted the clinician may read
// in emergencies at At, by its count (Barred says whether it may read any);
// -1 when there is no limit.
func (a *EmergencyAllowance) Left() int {
	if a.Limit == 0 {
		return -1
	}
	return max(int(a.Limit)-len(a.Counted), 0)
}

// NextAt is when the clinician's count lets it read another patient in
// an emergency, if it does not at At (Left is 0); the zero time otherwise.
func (a *EmergencyAllowance) NextAt() time.Time {
	if a.Left() != 0 {
		return time.Time{}
	}
	return app.EmergencyLimitFrees(a.Counted, a.Limit)
}

// EmergencyReads returns how the member at addr stands against the
// chain's limit on patients read in emergencies, at the time of the state
// read (QueryInfo.Time; the local clock unverified), and where that state
// is. The chain rewrites a clinician's reads only at its emergency reads,
// so those kept may include reads that no longer count: this judges them
// at the header time, which the next block's time is after.
func (c *Client) EmergencyReads(ctx context.Context, addr []byte) (*EmergencyAllowance, *QueryInfo, error) {
	var resp emrv1.QueryEmergencyReadsResponse
	info, err := c.QueryInfo(ctx, "EmergencyReads", &emrv1.QueryEmergencyReadsRequest{Address: hex.EncodeToString(addr)}, &resp)
	if err != nil {
		return nil, nil, err
	}
	m, err := present(c, "EmergencyReads", "member", resp.Member)
	if err != nil {
		return nil, nil, err
	}
	at := info.timeOrNow()
	a := &EmergencyAllowance{Limit: resp.PatientsPerDay, At: at, Member: m}
	if a.Limit != 0 {
		// With no limit nothing is counted, and what was kept from before
		// is stale.
		a.Counted = app.CountingEmergencyReads(resp.Reads, at)
	}
	return a, info, nil
}
