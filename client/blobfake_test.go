package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// ownerView is a sidecar.ChainView for the blob pipeline tests and the
// transfer benchmark: one active member who owns one patient, and the
// blobs registered with addBlob as that patient's records. The sidecar
// authorizes the owner (PUT: owner; GET: owner of a patient whose record
// has the hash) with two or three lookups per request, all from memory, so
// what is measured through it is the data path.
type ownerView struct {
	mu      sync.Mutex
	member  *emrv1.Member
	patient *emrv1.Patient
	records map[[32]byte]*emrv1.Record
}

func newOwnerView(s sidecar.KeyRecipient, patientID []byte) *ownerView {
	return &ownerView{
		member: &emrv1.Member{Address: s.Address(), SignPubKey: s.PubKey(), EncPubKey: s.Enc.PublicKey().Bytes(), Role: emrv1.Role_ROLE_PATIENT,
			Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE},
		patient: &emrv1.Patient{Id: patientID, Owner: s.Address(), KeyVersion: 1},
		records: map[[32]byte]*emrv1.Record{},
	}
}

// newTestRecipient is a member's keys in the tests, the same each time
// for a name: its signing key and the X25519 key a sidecar seals its
// answers to.
func newTestRecipient(name string) sidecar.KeyRecipient {
	seed := sha256.Sum256([]byte("client-test-enc/" + name))
	enc, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		panic(err)
	}
	return sidecar.KeyRecipient{KeySigner: sidecar.KeySigner{Key: ed25519.GenPrivKeyFromSecret([]byte(name))}, Enc: enc}
}

// sealAnswer is what a sidecar sends as the whole blob body in answer to
// r, sealed to to (the sidecar package's "Sealed answers", built from its
// exported parts): it sets the answer's headers on h and returns the body.
func sealAnswer(h http.Header, r *http.Request, to sidecar.KeyRecipient, body []byte) []byte {
	context := sidecar.BlobAnswerContext(r.URL.RequestURI(), "")
	dataKey, envelope, err := crypto.SealTransferKey(to.Enc.PublicKey(), context)
	if err != nil {
		panic(err)
	}
	var sealed bytes.Buffer
	enc, err := crypto.NewEncryptWriter(&sealed, dataKey, context)
	if err != nil {
		panic(err)
	}
	enc.Write(body)
	if err := enc.Close(); err != nil {
		panic(err)
	}
	h.Set(sidecar.HeaderSealedEnvelope, base64.StdEncoding.EncodeToString(envelope))
	h.Set(sidecar.HeaderSealedSize, strconv.Itoa(len(body)))
	h.Set("Content-Length", strconv.Itoa(sealed.Len()))
	return sealed.Bytes()
}

// testCategory is the category of the records of the blob tests.
const testCategory = "lab-results"

func (v *ownerView) addBlob(sum [32]byte, size int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.records[sum] = &emrv1.Record{PatientId: v.patient.Id, Sequence: uint64(len(v.records) + 1), Category: testCategory, CiphertextSha256: sum[:], Size: uint64(size)}
}

// ref names the record addBlob registered for sum.
func (v *ownerView) ref(sum [32]byte) sidecar.BlobRef {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.records[sum]
	return sidecar.RecordRef(r.PatientId, r.Sequence)
}

func (v *ownerView) Head(context.Context) (sidecar.Head, error) {
	return sidecar.Head{Height: 10, Time: time.Now()}, nil
}

func (v *ownerView) Params(context.Context) (*emrv1.Params, error) {
	return &emrv1.Params{MaxBlobBytes: 4 << 30}, nil
}

func (v *ownerView) Member(_ context.Context, addr []byte) (*emrv1.Member, error) {
	if !bytes.Equal(addr, v.member.Address) {
		return nil, fmt.Errorf("%w: member", sidecar.ErrNotFound)
	}
	return v.member, nil
}

func (v *ownerView) Patient(_ context.Context, id []byte) (*emrv1.Patient, error) {
	if !bytes.Equal(id, v.patient.Id) {
		return nil, fmt.Errorf("%w: patient", sidecar.ErrNotFound)
	}
	return v.patient, nil
}

func (v *ownerView) Permission(context.Context, []byte, []byte) (*emrv1.Permission, error) {
	return nil, fmt.Errorf("%w: permission", sidecar.ErrNotFound)
}

func (v *ownerView) Record(_ context.Context, id []byte, seq uint64) (*emrv1.Record, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range v.records {
		if bytes.Equal(r.PatientId, id) && r.Sequence == seq {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: record", sidecar.ErrNotFound)
}

func (v *ownerView) Share(context.Context, []byte, uint64) (*emrv1.Share, error) {
	return nil, fmt.Errorf("%w: share", sidecar.ErrNotFound)
}

func (v *ownerView) BlockBlobs(context.Context, int64, int) ([]sidecar.BlockBlobs, error) {
	return nil, nil
}

func (v *ownerView) StateBlobs(context.Context, string) (sidecar.StateBlobs, error) {
	return sidecar.StateBlobs{}, errors.New("ownerView lists no state")
}

func (v *ownerView) LastAccess(context.Context, []byte, uint64, []byte) (*emrv1.AccessEvent, error) {
	return nil, fmt.Errorf("%w: access", sidecar.ErrNotFound)
}

func (v *ownerView) LastShareRead(context.Context, []byte, uint64, []byte) (*emrv1.AccessEvent, error) {
	return nil, fmt.Errorf("%w: access", sidecar.ErrNotFound)
}

func (v *ownerView) Study(context.Context, string) (*emrv1.Study, error) {
	return nil, fmt.Errorf("%w: study", sidecar.ErrNotFound)
}

func (v *ownerView) Organization(context.Context, string) (*emrv1.Organization, error) {
	return nil, fmt.Errorf("%w: organization", sidecar.ErrNotFound)
}

// blobEnv is a patient-owner signer and sidecars over fs stores.
type blobEnv struct {
	signer    sidecar.KeyRecipient
	patientID []byte
	view      *ownerView
	urls      []string
	stores    []*blobstore.FS
}

func newBlobEnv(t testing.TB, sidecars int) *blobEnv {
	t.Helper()
	return newBlobEnvWith(t, sidecars, func(*sidecar.Options) {})
}

// newBlobEnvWith is newBlobEnv with the sidecars' options changed by edit.
func newBlobEnvWith(t testing.TB, sidecars int, edit func(*sidecar.Options)) *blobEnv {
	t.Helper()
	e := &blobEnv{signer: newTestRecipient("blob-test"), patientID: bytes.Repeat([]byte{0x5b}, 32)}
	e.view = newOwnerView(e.signer, e.patientID)
	for range sidecars {
		st, err := blobstore.OpenFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		opts := sidecar.Options{Store: st, Chain: e.view, SweepInterval: -1, Registry: prometheus.NewRegistry()}
		edit(&opts)
		srv, err := sidecar.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		e.urls = append(e.urls, ts.URL)
		e.stores = append(e.stores, st)
	}
	return e
}
