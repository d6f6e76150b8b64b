package sidecar

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// EmergencyService is the emergency ("break-glass") service a sidecar acts
// as (Options.Emergency): a member registered with ROLE_EMERGENCY_SERVICE,
// whose encryption key is its organization's emergency key. Patients who
// opt in to break-glass reads by the organization's clinicians seal their
// KEK to it (a grant of RIGHT_EMERGENCY). The sidecar then answers
// GET EmergencyKeyPath: it unwraps one record's data key for a clinician of
// the organization whose emergency read of the record is committed and
// still stands, and seals it to that clinician (crypto.EmergencyKeyBinding).
// It never hands out the KEK.
type EmergencyService struct {
	// Signer is the service's member key: its address is the service's,
	// and it signs every release (EmergencyKeySignBytes), which a client
	// takes only with a signature by the key the chain has for the
	// service. The sidecar refuses to release anything while the chain
	// has another signing key for the service (CheckEmergencyService).
	Signer Signer
	// Key is the private half of the encryption key registered for the
	// service (its member's enc_pub_key): the key the opt-ins are sealed
	// to. The sidecar refuses to release anything while the chain has
	// another public key for the service.
	Key *ecdh.PrivateKey
}

// Address is the service's member address.
func (e *EmergencyService) Address() []byte { return e.Signer.Address() }

// validate checks the shape of the service's settings.
func (e *EmergencyService) validate() error {
	if e.Signer == nil || len(e.Signer.PubKey()) != ed25519.PubKeySize {
		return errors.New("sidecar: the emergency service needs its ed25519 signing key: it signs every data key it releases")
	}
	if len(e.Address()) != app.AddressSize {
		return fmt.Errorf("sidecar: emergency service address is %d bytes, want %d", len(e.Address()), app.AddressSize)
	}
	if e.Key == nil || e.Key.Curve() != ecdh.X25519() {
		return errors.New("sidecar: the emergency service needs its X25519 encryption key")
	}
	return nil
}

// holdsKeyOf explains why member, as the chain has it, is not the service
// whose keys e holds (nil when it is): another address, not an emergency
// service, or another signing or encryption key registered for it (a key
// replaced on chain, or the wrong key file given to the sidecar).
func (e *EmergencyService) holdsKeyOf(member *emrv1.Member) error {
	switch {
	case !bytes.Equal(member.GetAddress(), e.Address()):
		return fmt.Errorf("member %X is not this sidecar's emergency service %X", member.GetAddress(), e.Address())
	case member.Role != emrv1.Role_ROLE_EMERGENCY_SERVICE:
		return fmt.Errorf("member %X, which this sidecar's emergency key is configured for, is not registered as an emergency service", e.Address())
	case !bytes.Equal(member.SignPubKey, e.Signer.PubKey()):
		return fmt.Errorf("the chain has signing key %x for emergency service %X, and this sidecar holds the private half of %x: configure the service's current key",
			member.SignPubKey, e.Address(), e.Signer.PubKey())
	case !bytes.Equal(member.EncPubKey, crypto.MarshalEncryptionPublicKey(e.Key.PublicKey())):
		return fmt.Errorf("the chain has encryption key %x for emergency service %X, and the key this sidecar holds is the private half of %x: configure the service's current key",
			member.EncPubKey, e.Address(), crypto.MarshalEncryptionPublicKey(e.Key.PublicKey()))
	}
	return nil
}

// dataKey opens the patient's opt-in envelope (the KEK of optIn's key
// version), checks the KEK against the patient's check value when that
// version is the patient's current one, and unwraps rec's data key with
// it. The KEK is cleared before dataKey returns; the caller clears the
// data key.
func (e *EmergencyService) dataKey(patient *emrv1.Patient, optIn *emrv1.Permission, rec *emrv1.Record) ([]byte, error) {
	kek, err := crypto.OpenEnvelope(e.Key, optIn.WrappedKek, crypto.EnvelopeBinding{PatientID: patient.Id, Grantee: e.Address(), KeyVersion: optIn.KeyVersion})
	if err != nil {
		return nil, fmt.Errorf("the patient's opt-in envelope (key version %d) does not open with this service's key: %w", optIn.KeyVersion, err)
	}
	defer clear(kek)
	if optIn.KeyVersion == patient.KeyVersion && !crypto.KEKMatches(kek, patient.Id, patient.KeyVersion, patient.KekCheck) {
		return nil, fmt.Errorf("the patient's opt-in envelope does not hold the patient's key of version %d (it does not match the check value on chain)", patient.KeyVersion)
	}
	dk, err := crypto.UnwrapKey(kek, rec.WrappedFileKey, crypto.FileKeyAAD(patient.Id, rec.Category, rec.KeyVersion))
	if err != nil {
		return nil, fmt.Errorf("record %d's wrapped data key does not open under the key the opt-in holds (version %d): %w", rec.Sequence, optIn.KeyVersion, err)
	}
	return dk, nil
}

// emergencyRead is what a clinician's committed emergency read of a
// record rests on while it stands: the event, the emergency service it
// went through and the patient's opt-in to that service.
type emergencyRead struct {
	rec     *emrv1.Record
	ev      *emrv1.AccessEvent
	service *emrv1.Member
	optIn   *emrv1.Permission
}

// emergencyReadStands explains why the caller's emergency access event ev
// of rec no longer lets it fetch the record's ciphertext or data key (""
// when it does, with what the read rests on). The caller must be an active
// clinician; the event no older than the emergency window
// (emergency_access_seconds), nor than this sidecar's access window; the
// service it names an emergency service of the caller's organization; and
// the patient's opt-in to that service must still cover the record's
// category at the latest block (app.EmergencyOptInStands): a revocation, a
// suspended service or a closed opt-in window ends the read, as the chain
// would refuse it now.
func (a *authState) emergencyReadStands(ctx context.Context, rec *emrv1.Record, ev *emrv1.AccessEvent) (*emergencyRead, string, error) {
	if a.caller.Role != emrv1.Role_ROLE_CLINICIAN || !app.IsActive(a.caller) {
		return nil, "only an active clinician reads in an emergency", nil
	}
	params, err := a.chain.Params(ctx)
	if err != nil {
		return nil, "", err
	}
	window, what := a.emergencyWindow(params)
	if why := a.expiredAfter(ev, window, what); why != "" {
		return nil, why, nil
	}
	service, err := a.chain.Member(ctx, ev.EmergencyService)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Sprintf("the emergency service %X your read names is not a member", ev.EmergencyService), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("emergency service %X: %w", ev.EmergencyService, err)
	}
	if service.OrganizationId != a.caller.OrganizationId {
		return nil, fmt.Sprintf("emergency service %X is %q's, and you are a clinician of %q", service.Address, service.OrganizationId, a.caller.OrganizationId), nil
	}
	optIn, err := a.chain.Permission(ctx, rec.PatientId, service.Address)
	if errors.Is(err, ErrNotFound) {
		optIn, err = nil, nil // no opt-in: EmergencyOptInStands says so
	}
	if err != nil {
		return nil, "", err
	}
	if err := app.EmergencyOptInStands(optIn, service, rec.Category, a.head.Time); err != nil {
		return nil, err.Error(), nil
	}
	return &emergencyRead{rec: rec, ev: ev, service: service, optIn: optIn}, "", nil
}

// emergencyWindow is how long an emergency access event lets its clinician
// fetch, and how expiredAfter describes it: the chain's
// emergency_access_seconds, or this sidecar's access window when shorter.
func (a *authState) emergencyWindow(params *emrv1.Params) (time.Duration, string) {
	chain := app.EmergencyWindow(params)
	if a.window < chain {
		return a.window, fmt.Sprintf("this sidecar's access window %s, shorter than the chain's emergency window %s", a.window, chain)
	}
	return chain, fmt.Sprintf("emergency window %s", chain)
}

// authorizeEmergencyKey: the data key of the record ref names is released
// to a caller whose latest committed access event of it is an emergency
// read through service (this sidecar's) that still stands
// (emergencyReadStands). An event through another service is a 404
// (CodeOtherEmergencyService): the client asks that service's sidecar.
func (a *authState) authorizeEmergencyKey(ctx context.Context, ref BlobRef, service []byte) (*emergencyRead, *apiError) {
	rec, err := a.chain.Record(ctx, ref.PatientID, ref.Sequence)
	if errors.Is(err, ErrNotFound) {
		return nil, forbidden("no committed %s", ref)
	}
	if err != nil {
		return nil, chainError(err)
	}
	const logFirst = "an emergency read must be logged first (RecordAccess with purpose emergency, naming your organization's emergency service)"
	ev, err := a.chain.LastAccess(ctx, rec.PatientId, rec.Sequence, a.caller.Address)
	if errors.Is(err, ErrNotFound) {
		return nil, forbidden("%s: you have no committed access event of it: %s", ref, logFirst)
	}
	if err != nil {
		return nil, chainError(err)
	}
	if ev.Purpose != emrv1.Purpose_PURPOSE_EMERGENCY {
		return nil, forbidden("%s: your latest access event of it (height %d) is of purpose %s, not an emergency read: %s", ref, ev.Height, ev.Purpose, logFirst)
	}
	if !bytes.Equal(ev.EmergencyService, service) {
		return nil, errf(http.StatusNotFound, CodeOtherEmergencyService,
			"%s: your emergency read (height %d) went through emergency service %X, and this sidecar is emergency service %X: ask that service's sidecar", ref, ev.Height, ev.EmergencyService, service)
	}
	read, why, err := a.emergencyReadStands(ctx, rec, ev)
	switch {
	case err != nil:
		return nil, chainError(err)
	case why != "":
		return nil, forbidden("%s: %s", ref, why)
	}
	return read, nil
}

// Codes of the emergency key endpoint's own refusals.
const (
	// codeKeyVersion: the record's data key is wrapped under another key
	// version than the one the opt-in holds (409).
	codeKeyVersion = "key_version"
	// codeEmergencyKeyMismatch: the chain has another encryption key for
	// the service than the one the sidecar holds (500).
	codeEmergencyKeyMismatch = "emergency_key_mismatch"
	// codeOptInUnusable: the patient's opt-in does not open to the key of
	// the record (500).
	codeOptInUnusable = "opt_in_unusable"
)

// handleEmergencyKey answers GET EmergencyKeyPath?record=<patient>/<seq>:
// a sidecar configured as an emergency service (Options.Emergency)
// releases the record's data key, sealed to the calling clinician, against
// the clinician's committed emergency read through it (authorizeEmergencyKey).
// Authentication, the height wait and the failed-authentication charges
// are a blob GET's. A sidecar that is no emergency service answers 404
// CodeNoEmergencyService at once: nothing a request says changes that, so
// it costs no lookup, wait or replay entry.
func (s *Server) handleEmergencyKey(w http.ResponseWriter, r *http.Request) {
	if s.opts.Emergency == nil {
		writeError(w, errf(http.StatusNotFound, CodeNoEmergencyService, "this sidecar is no emergency service: it holds no emergency key"))
		return
	}
	if r.Method != http.MethodGet { // HEAD: a release nobody receives
		writeError(w, errf(http.StatusMethodNotAllowed, "method_not_allowed", "an emergency key is asked for with GET"))
		return
	}
	var ref BlobRef
	caller, head, ok := s.getPrologue(w, r, func() (err error) {
		ref, err = parseBlobRef(r.URL.Query())
		if err == nil && ref.Share {
			err = fmt.Errorf("an emergency service releases a record's data key, not a share's: ?%s=<patient id hex>/<sequence>", queryRecord)
		}
		return err
	})
	if !ok {
		return
	}
	ctx := r.Context()
	a := newAuthState(s.chain, caller, head, s.opts.AccessWindow)
	read, aerr := a.authorizeEmergencyKey(ctx, ref, s.opts.Emergency.Address())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	key, aerr := s.releaseKey(ctx, a, read)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	s.metrics.emergencyKeys.Inc()
	s.log.Info("emergency data key released", "patient", hex.EncodeToString(read.rec.PatientId), "record", read.rec.Sequence,
		"category", read.rec.Category, "clinician", hex.EncodeToString(caller.Address), "organization", caller.OrganizationId,
		"service", key.Service, "reason", app.EmergencyReasonName(read.ev.EmergencyReason),
		"event_height", read.ev.Height, "event_tx", hex.EncodeToString(read.ev.TxHash),
		"key_version", key.KeyVersion, "height", head.Height)
	writeJSON(w, http.StatusOK, key) // Cache-Control: no-store
}

// releaseKey unwraps read's record's data key with the patient's opt-in
// to this sidecar's emergency service and seals it to the caller's
// registered encryption key, bound to (patient, caller, record).
func (s *Server) releaseKey(ctx context.Context, a *authState, read *emergencyRead) (*EmergencyKey, *apiError) {
	svc, rec := s.opts.Emergency, read.rec
	if err := svc.holdsKeyOf(read.service); err != nil {
		s.log.Error("emergency key not released: this sidecar's emergency key is not the service's", "err", err)
		return nil, errf(http.StatusInternalServerError, codeEmergencyKeyMismatch, "this emergency service cannot release keys: %v", err)
	}
	if rec.KeyVersion != read.optIn.KeyVersion {
		return nil, errf(http.StatusConflict, codeKeyVersion,
			"record %d's data key is wrapped under the patient's key version %d, and the patient's opt-in to emergency service %X holds version %d: this service can release only keys wrapped under the version it holds",
			rec.Sequence, rec.KeyVersion, svc.Address(), read.optIn.KeyVersion)
	}
	patient, err := a.patient(ctx, rec.PatientId)
	if err != nil {
		return nil, chainError(err)
	}
	clinician, err := crypto.ParseEncryptionPublicKey(a.caller.EncPubKey)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "chain_error", "the encryption key registered for %X: %v", a.caller.Address, err)
	}
	dataKey, err := svc.dataKey(patient, read.optIn, rec)
	if err != nil {
		s.log.Error("emergency key not released: the patient's opt-in is unusable", "patient", hex.EncodeToString(rec.PatientId), "record", rec.Sequence, "err", err)
		return nil, errf(http.StatusInternalServerError, codeOptInUnusable, "%v", err)
	}
	defer clear(dataKey)
	env, err := crypto.SealEnvelope(clinician, dataKey, crypto.EmergencyKeyBinding(rec.PatientId, a.caller.Address, rec.Sequence))
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "seal_error", "sealing the data key to the encryption key registered for %X: %v", a.caller.Address, err)
	}
	k := &EmergencyKey{
		Record:     RecordRef(rec.PatientId, rec.Sequence).value(),
		Service:    hex.EncodeToString(svc.Address()),
		KeyVersion: rec.KeyVersion,
		Envelope:   env,
	}
	if k.Signature, err = svc.Signer.Sign(EmergencyKeySignBytes(k, a.caller.Address)); err != nil {
		return nil, errf(http.StatusInternalServerError, "sign_error", "signing the release: %v", err)
	}
	return k, nil
}

// CheckEmergencyService checks that the emergency service this sidecar is
// configured as (Options.Emergency) is registered on the chain as an
// emergency service, active, with the encryption key the sidecar holds;
// nil for a sidecar that is no emergency service. Every release checks
// the key again; this lets an operator learn of a wrong key at start.
func (s *Server) CheckEmergencyService(ctx context.Context) error {
	svc := s.opts.Emergency
	if svc == nil {
		return nil
	}
	m, err := s.chain.Member(ctx, svc.Address())
	if err != nil {
		return fmt.Errorf("sidecar: emergency service %X: %w", svc.Address(), err)
	}
	if err := svc.holdsKeyOf(m); err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	if !app.IsActive(m) {
		return fmt.Errorf("sidecar: emergency service %X is %s: no emergency read goes through it", svc.Address(), app.StatusName(m.Status))
	}
	return nil
}
