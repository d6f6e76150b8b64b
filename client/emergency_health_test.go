package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// downStore is a blob store whose Ping fails: a sidecar's S3 bucket or
// NFS mount is down.
type downStore struct{ blobstore.Store }

func (downStore) Ping(context.Context) error { return errors.New("bucket unreachable") }

// TestEmergencySidecarWithStoreDownIsFound: the organization's emergency
// sidecar is up, its node current, its key held; only its blob store is
// down, so its /healthz is 503. Releasing a data key touches the chain
// only, and the ciphertext can come from another sidecar: the break-glass
// read must not be refused before it is logged.
func TestEmergencySidecarWithStoreDownIsFound(t *testing.T) {
	st, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svcKey, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	service := testService.Address()
	srv, err := sidecar.New(sidecar.Options{Store: downStore{st}, Chain: newOwnerView(testSigner, bytes.Repeat([]byte{0x6c}, 32)),
		SweepInterval: -1, Registry: prometheus.NewRegistry(), Emergency: &sidecar.EmergencyService{Signer: testService, Key: svcKey}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	// What the sidecar says: 503, and which service it runs.
	resp, err := http.Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/healthz = %d, want 503 (store down)", resp.StatusCode)
	}

	// Another sidecar, whose store is up, can serve the ciphertext.
	blobs, err := sidecar.New(sidecar.Options{Store: st, Chain: newOwnerView(testSigner, bytes.Repeat([]byte{0x6c}, 32)),
		SweepInterval: -1, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	other := httptest.NewServer(blobs.Handler())
	t.Cleanup(other.Close)
	if _, err := findEmergencySidecar(context.Background(), TransferOptions{Sidecars: []string{ts.URL, other.URL}}, service); err != nil {
		t.Fatalf("the sidecar that runs emergency service %s (store down, node and key fine) was not found, "+
			"and the break-glass read is refused before it is logged: %v", hex.EncodeToString(service), err)
	}
	// Alone, it answers nothing that says a sidecar can serve the
	// ciphertext: refused before the read is logged, as probeSidecars does.
	_, err = findEmergencySidecar(context.Background(), TransferOptions{Sidecars: []string{ts.URL}}, service)
	if !errors.Is(err, ErrStorageUnavailable) || errors.Is(err, ErrNoEmergencyRelease) {
		t.Fatalf("the only sidecar's store is down: %v; want ErrStorageUnavailable (no read logged)", err)
	}
}

// TestEmergencySidecarBehindAProxyIsFound: a sidecar behind a reverse
// proxy that routes /v1/ only cannot say on /healthz which service it runs
// (probeSidecars lets a 4xx /healthz through: "the download decides"); it
// may be the service, so the read is not refused before it is logged.
func TestEmergencySidecarBehindAProxyIsFound(t *testing.T) {
	service := bytes.Repeat([]byte{0xE5}, 20)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r) // /healthz is not routed; /v1/... would be
	}))
	t.Cleanup(proxy.Close)
	opts := TransferOptions{Sidecars: []string{proxy.URL}}
	if err := probeSidecars(context.Background(), opts); err != nil {
		t.Fatalf("probeSidecars: %v", err)
	}
	if _, err := findEmergencySidecar(context.Background(), opts, service); err != nil {
		t.Fatalf("probeSidecars lets a sidecar whose /healthz is not routed through, findEmergencySidecar refuses the read: %v", err)
	}
}
