package sidecar

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// glassEnv is an env set up for break-glass reads: hospital-a's emergency
// service, whose key the sidecar holds (unless a test's options say
// otherwise), the patient's opt-in to it sealing the patient's real KEK, a
// doctor of hospital-a whom the patient granted nothing, and a record
// whose data key is wrapped under that KEK.
type glassEnv struct {
	*env
	service    *actor
	serviceKey *ecdh.PrivateKey
	optIn      *emrv1.Permission
	doctor     *actor
	doctorKey  *ecdh.PrivateKey
	kek        []byte
	dataKey    []byte
	rec        *emrv1.Record
	data       []byte
	sum        [32]byte
}

// glassServiceName names the actor of the sidecar's emergency service.
const glassServiceName = "emergency-service"

// glassEmergencyWindow is the chain's emergency_access_seconds in a
// glassEnv; its sidecar's access window is longer unless a test sets it.
const glassEmergencyWindow = time.Hour

func newGlassEnv(t *testing.T, mod func(*Options)) *glassEnv {
	t.Helper()
	serviceKey := mustEncKey(t)
	e := newEnv(t, func(o *Options) {
		o.AccessWindow = 2 * glassEmergencyWindow
		o.Emergency = &EmergencyService{Signer: KeySigner{Key: newKey(glassServiceName)}, Key: serviceKey}
		if mod != nil {
			mod(o)
		}
	})
	g := &glassEnv{env: e, serviceKey: serviceKey, doctorKey: mustEncKey(t)}
	g.service = e.chain.addMember(glassServiceName, emrv1.Role_ROLE_EMERGENCY_SERVICE, "hospital-a")
	g.doctor = e.chain.addMember("er-doctor", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	g.kek, g.dataKey = mustKey(t), mustKey(t)
	g.data = []byte("ciphertext of an allergy list")
	g.sum = sha256.Sum256(g.data)
	if _, err := e.put(e.writer, g.data); err != nil {
		t.Fatal(err)
	}
	g.rec = e.chain.addRecord(e.pid, g.sum, e.writer)
	wrapped, err := crypto.WrapKey(g.kek, g.dataKey, crypto.FileKeyAAD(e.pid, testCategory, 1))
	if err != nil {
		t.Fatal(err)
	}
	g.optIn = e.chain.grant(e.pid, g.service, e.chain.head.Time.Add(24*time.Hour), emrv1.Right_RIGHT_EMERGENCY)
	envelope := g.seal(t, serviceKey.PublicKey(), g.kek, 1)
	e.chain.edit(func() {
		e.chain.params.EmergencyAccessSeconds = uint64(glassEmergencyWindow / time.Second)
		g.service.member.EncPubKey = serviceKey.PublicKey().Bytes()
		g.doctor.member.EncPubKey = g.doctorKey.PublicKey().Bytes()
		g.doctor.Enc = g.doctorKey // which opens its sealed answers too
		p := e.chain.patients[string(e.pid)]
		p.KekCheck = crypto.KEKCheck(g.kek, e.pid, p.KeyVersion)
		g.rec.KeyVersion, g.rec.WrappedFileKey = 1, wrapped
		g.optIn.KeyVersion, g.optIn.WrappedKek = 1, envelope
	})
	return g
}

// seal seals kek of version to the service's address for g's patient, as
// a patient's client seals an opt-in.
func (g *glassEnv) seal(t *testing.T, to *ecdh.PublicKey, kek []byte, version uint64) []byte {
	t.Helper()
	env, err := crypto.SealEnvelope(to, kek, crypto.EnvelopeBinding{PatientID: g.pid, Grantee: g.service.Address(), KeyVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// breakGlass commits the doctor's emergency read of the record through
// the service.
func (g *glassEnv) breakGlass() { g.chain.emergencyAccess(g.rec, g.doctor, g.service) }

func (g *glassEnv) readRecord(a *actor) error {
	got, err := g.get(a, RecordRef(g.pid, g.rec.Sequence), g.sum, nil)
	if err == nil && !bytes.Equal(got, g.data) {
		return errors.New("served other bytes than the record's ciphertext")
	}
	return err
}

func (g *glassEnv) emergencyKey(a *actor) (*EmergencyKey, error) {
	return g.client(a).EmergencyKey(context.Background(), g.pid, g.rec.Sequence)
}

func mustEncKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKey(t *testing.T) []byte {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEmergencyReadServing: a clinician's emergency read serves the
// record's ciphertext, without a consent of the clinician's, while the
// patient's opt-in to the emergency service of the clinician's
// organization stands and the event is within the shorter of the
// emergency window and the sidecar's access window; a revocation, a closed
// opt-in, a suspended service, another organization or an expired window
// ends it. A treatment read still needs a consent.
func TestEmergencyReadServing(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(*Options)
		// read commits a read and returns who reads (nil: the doctor's
		// emergency read).
		read   func(g *glassEnv) *actor
		change func(g *glassEnv)
		want   string // "": served; else part of the 403's reason
	}{
		{name: "standing opt-in"},
		{name: "within the emergency window", change: func(g *glassEnv) { g.chain.advance(glassEmergencyWindow - time.Minute) }},
		{name: "opt-in revoked", change: func(g *glassEnv) { g.chain.revoke(g.optIn) }, want: "revoked at height"},
		{name: "opt-in window closed", change: func(g *glassEnv) {
			g.chain.edit(func() { g.optIn.NotAfter = timestamppb.New(g.chain.head.Time) })
		}, want: "permission expired at"},
		{name: "opt-in not covering the category", change: func(g *glassEnv) {
			g.chain.edit(func() { g.optIn.Categories = []string{"imaging"} })
		}, want: "does not cover"},
		{name: "emergency window passed", change: func(g *glassEnv) { g.chain.advance(glassEmergencyWindow + time.Second) },
			want: "emergency window 1h0m0s"},
		{name: "access window shorter", opts: func(o *Options) { o.AccessWindow = 10 * time.Minute },
			change: func(g *glassEnv) { g.chain.advance(11 * time.Minute) }, want: "this sidecar's access window 10m0s"},
		{name: "service suspended", change: func(g *glassEnv) { g.chain.setStatus(g.service, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED) },
			want: "grantee is suspended"},
		{name: "clinician of another organization", read: func(g *glassEnv) *actor {
			other := g.chain.addMember("other-doctor", emrv1.Role_ROLE_CLINICIAN, "hospital-b")
			g.chain.emergencyAccess(g.rec, other, g.service)
			return other
		}, want: `is "hospital-a"'s, and you are a clinician of "hospital-b"`},
		{name: "researcher", read: func(g *glassEnv) *actor {
			r := g.chain.addMember("researcher", emrv1.Role_ROLE_RESEARCHER, "hospital-a")
			g.chain.emergencyAccess(g.rec, r, g.service)
			return r
		}, want: "only an active clinician"},
		{name: "through a member that is no emergency service", read: func(g *glassEnv) *actor {
			g.chain.emergencyAccess(g.rec, g.doctor, g.writer)
			return g.doctor
		}, want: "is not an emergency service"},
		{name: "treatment read without consent", read: func(g *glassEnv) *actor {
			g.chain.recordAccess(g.rec, g.doctor, emrv1.Purpose_PURPOSE_TREATMENT)
			return g.doctor
		}, want: "granted this member nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGlassEnv(t, tc.opts)
			reader := g.doctor
			if tc.read != nil {
				reader = tc.read(g)
			} else {
				g.breakGlass()
			}
			if tc.change != nil {
				tc.change(g)
			}
			err := g.readRecord(reader)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("not served: %v", err)
				}
				return
			}
			wantStatus(t, err, http.StatusForbidden, tc.want)
		})
	}
}

// TestEmergencyKeyRelease: the emergency service releases the record's
// data key sealed to the clinician, bound to (patient, clinician, record):
// it opens to exactly the data key with the clinician's key and that
// binding, and with no other. The answer never holds the KEK; the release
// is logged and counted.
func TestEmergencyKeyRelease(t *testing.T) {
	log := &lines{}
	g := newGlassEnv(t, func(o *Options) { o.Logger = log })
	g.breakGlass()
	k, err := g.emergencyKey(g.doctor)
	if err != nil {
		t.Fatal(err)
	}
	if k.Record != RecordRef(g.pid, g.rec.Sequence).value() || k.Service != hex.EncodeToString(g.service.Address()) || k.KeyVersion != 1 {
		t.Fatalf("answer %+v", k)
	}
	binding := crypto.EmergencyKeyBinding(g.pid, g.doctor.Address(), g.rec.Sequence)
	dk, err := crypto.OpenEnvelope(g.doctorKey, k.Envelope, binding)
	if err != nil || !bytes.Equal(dk, g.dataKey) {
		t.Fatalf("the envelope opens to %x (%v), want the record's data key %x", dk, err, g.dataKey)
	}
	for name, b := range map[string]crypto.EnvelopeBinding{
		"another record":    crypto.EmergencyKeyBinding(g.pid, g.doctor.Address(), g.rec.Sequence+1),
		"another clinician": crypto.EmergencyKeyBinding(g.pid, g.writer.Address(), g.rec.Sequence),
		"a KEK envelope":    {PatientID: g.pid, Grantee: g.doctor.Address(), KeyVersion: 1},
	} {
		if _, err := crypto.OpenEnvelope(g.doctorKey, k.Envelope, b); err == nil {
			t.Errorf("the envelope opens with the binding of %s", name)
		}
	}
	if _, err := crypto.OpenEnvelope(g.serviceKey, k.Envelope, binding); err == nil {
		t.Error("the envelope opens with the service's key")
	}
	// Signed by the service's key on chain, for this clinician only.
	if err := VerifyEmergencyKey(k, g.doctor.Address(), g.service.PubKey()); err != nil {
		t.Errorf("the release's signature: %v", err)
	}
	for name, check := range map[string]func() error{
		"another clinician":   func() error { return VerifyEmergencyKey(k, g.writer.Address(), g.service.PubKey()) },
		"another signing key": func() error { return VerifyEmergencyKey(k, g.doctor.Address(), g.doctor.PubKey()) },
		"another envelope": func() error {
			other := *k
			other.Envelope = bytes.Clone(k.Envelope)
			other.Envelope[len(other.Envelope)-1] ^= 1
			return VerifyEmergencyKey(&other, g.doctor.Address(), g.service.PubKey())
		},
		"a short signing key": func() error { return VerifyEmergencyKey(k, g.doctor.Address(), g.service.PubKey()[:31]) },
	} {
		if err := check(); !errors.Is(err, ErrEmergencyKeyNotSigned) {
			t.Errorf("the release's signature checked with %s: %v, want ErrEmergencyKeyNotSigned", name, err)
		}
	}
	if got := testutil.ToFloat64(g.srv.metrics.emergencyKeys); got != 1 {
		t.Errorf("emergency_keys_released_total is %v, want 1", got)
	}
	released := log.with("emergency data key released")
	if len(released) != 1 || !strings.Contains(released[0], hex.EncodeToString(g.doctor.Address())) ||
		!strings.Contains(released[0], k.Service) || !strings.Contains(released[0], hex.EncodeToString(g.pid)) ||
		!strings.Contains(released[0], "event_height") || !strings.Contains(released[0], "immediate-threat") {
		t.Errorf("release log lines %q", released)
	}

	// The raw answer: JSON, not cached, and nothing of the KEK in it.
	req := g.signed(g.doctor, http.MethodGet, EmergencyKeyPath+"?"+RecordRef(g.pid, g.rec.Sequence).query(), nil, false)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("raw answer %d %v", resp.StatusCode, resp.Header)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || len(raw) != 5 {
		t.Fatalf("raw answer %s: %v", body, err)
	}
	for _, secret := range [][]byte{g.kek, g.dataKey} {
		for _, enc := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)} {
			if bytes.Contains(body, []byte(enc)) {
				t.Fatalf("the answer holds a key in the clear: %s", body)
			}
		}
	}
}

// TestEmergencyKeyRefusals: the key endpoint's refusals, each with its
// status and code.
func TestEmergencyKeyRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   func(*Options)
		setup  func(g *glassEnv) // default: the doctor's emergency read
		status int
		code   string
		reason string
	}{
		{name: "no emergency service", opts: func(o *Options) { o.Emergency = nil },
			status: http.StatusNotFound, code: CodeNoEmergencyService},
		{name: "another emergency service", setup: func(g *glassEnv) {
			other := g.chain.addMember("emergency-service-b", emrv1.Role_ROLE_EMERGENCY_SERVICE, "hospital-a")
			g.chain.grant(g.pid, other, g.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_EMERGENCY)
			g.chain.emergencyAccess(g.rec, g.doctor, other)
		}, status: http.StatusNotFound, code: CodeOtherEmergencyService},
		{name: "no access event", setup: func(*glassEnv) {},
			status: http.StatusForbidden, code: "forbidden", reason: "an emergency read must be logged first"},
		{name: "treatment event", setup: func(g *glassEnv) {
			g.chain.grant(g.pid, g.doctor, g.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_READ)
			g.chain.recordAccess(g.rec, g.doctor, emrv1.Purpose_PURPOSE_TREATMENT)
		}, status: http.StatusForbidden, code: "forbidden", reason: "an emergency read must be logged first"},
		{name: "opt-in revoked", setup: func(g *glassEnv) {
			g.breakGlass()
			g.chain.revoke(g.optIn)
		}, status: http.StatusForbidden, code: "forbidden", reason: "revoked at height"},
		{name: "emergency window passed", setup: func(g *glassEnv) {
			g.breakGlass()
			g.chain.advance(glassEmergencyWindow + time.Second)
		}, status: http.StatusForbidden, code: "forbidden", reason: "expired at"},
		{name: "record under another key version", setup: func(g *glassEnv) {
			g.breakGlass()
			g.chain.edit(func() { g.rec.KeyVersion = 2 })
		}, status: http.StatusConflict, code: codeKeyVersion, reason: "wrapped under the patient's key version 2"},
		{name: "opt-in sealing another key", setup: func(g *glassEnv) {
			g.breakGlass()
			env := g.seal(t, g.serviceKey.PublicKey(), mustKey(t), 1)
			g.chain.edit(func() { g.optIn.WrappedKek = env })
		}, status: http.StatusInternalServerError, code: codeOptInUnusable, reason: "does not hold the patient's key of version 1"},
		{name: "the chain has another key for the service", opts: func(o *Options) { o.Emergency.Key = mustEncKey(t) },
			status: http.StatusInternalServerError, code: codeEmergencyKeyMismatch, reason: "configure the service's current key"},
		{name: "the chain has another signing key for the service", setup: func(g *glassEnv) {
			g.breakGlass()
			g.chain.edit(func() { g.service.member.SignPubKey = g.doctor.PubKey() })
		}, status: http.StatusInternalServerError, code: codeEmergencyKeyMismatch, reason: "the chain has signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGlassEnv(t, tc.opts)
			if tc.setup != nil {
				tc.setup(g)
			} else {
				g.breakGlass()
			}
			k, err := g.emergencyKey(g.doctor)
			var se *Error
			if !errors.As(err, &se) || se.StatusCode != tc.status || se.Code != tc.code || !strings.Contains(se.Reason, tc.reason) {
				t.Fatalf("got %+v, %v; want %d %s saying %q", k, err, tc.status, tc.code, tc.reason)
			}
		})
	}
}

// TestEmergencyKeyRequestChecks: the key endpoint authenticates and waits
// for the client's height like a blob GET, takes no share, and a HEAD
// releases nothing.
func TestEmergencyKeyRequestChecks(t *testing.T) {
	g := newGlassEnv(t, func(o *Options) { o.MaxHeightWait = -1 })
	g.breakGlass()
	path := EmergencyKeyPath + "?" + RecordRef(g.pid, g.rec.Sequence).query()

	unsigned, err := http.NewRequest(http.MethodGet, g.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := doJSON(t, unsigned); status != http.StatusUnauthorized || body.Code != "unauthenticated" {
		t.Fatalf("unsigned: %d %+v", status, body)
	}
	c := g.client(g.doctor)
	c.MinHeight = g.chain.head.Height + 1
	_, err = c.EmergencyKey(context.Background(), g.pid, g.rec.Sequence)
	if se := (*Error)(nil); !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || se.Code != CodeChainBehind {
		t.Fatalf("above the node's height: %v", err)
	}
	share := g.signed(g.doctor, http.MethodGet, EmergencyKeyPath+"?"+ShareRef(g.pid, 1).query(), nil, false)
	if status, body := doJSON(t, share); status != http.StatusBadRequest || !strings.Contains(body.Error, "not a share's") {
		t.Fatalf("share: %d %+v", status, body)
	}
	head := g.signed(g.doctor, http.MethodHead, path, nil, false)
	if resp := do(t, head); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	if got := testutil.ToFloat64(g.srv.metrics.emergencyKeys); got != 0 {
		t.Fatalf("%v releases counted", got)
	}
}

// TestCheckEmergencyService: the start-up check of the service's key
// against the chain.
func TestCheckEmergencyService(t *testing.T) {
	g := newGlassEnv(t, nil)
	ctx := context.Background()
	if err := g.srv.CheckEmergencyService(ctx); err != nil {
		t.Fatalf("the service's own key: %v", err)
	}
	g.chain.setStatus(g.service, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	if err := g.srv.CheckEmergencyService(ctx); err == nil || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("suspended service: %v", err)
	}
	g.chain.setStatus(g.service, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE)
	g.chain.edit(func() { g.service.member.EncPubKey = mustEncKey(t).PublicKey().Bytes() })
	if err := g.srv.CheckEmergencyService(ctx); err == nil || !strings.Contains(err.Error(), "configure the service's current key") {
		t.Fatalf("a key rotated on chain: %v", err)
	}
	g.chain.edit(func() { g.service.member.Role = emrv1.Role_ROLE_CLINICIAN })
	if err := g.srv.CheckEmergencyService(ctx); err == nil || !strings.Contains(err.Error(), "not registered as an emergency service") {
		t.Fatalf("a clinician's address: %v", err)
	}
	plain := newEnv(t, nil)
	if err := plain.srv.CheckEmergencyService(ctx); err != nil {
		t.Fatalf("no emergency service: %v", err)
	}
}

// TestEmergencyServiceOptionChecked: New refuses an emergency service
// without its signing key or its X25519 key.
func TestEmergencyServiceOptionChecked(t *testing.T) {
	key, signer := mustEncKey(t), KeySigner{Key: newKey(glassServiceName)}
	p256, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range map[string]*EmergencyService{
		"no signing key": {Key: key},
		"no key":         {Signer: signer},
		"not X25519":     {Signer: signer, Key: p256},
	} {
		store := newEnv(t, nil).store
		if _, err := New(Options{Store: store, Chain: newFakeChain(time.Now()), Emergency: svc}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
