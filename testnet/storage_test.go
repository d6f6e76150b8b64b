package testnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet"
)

// TestSidecarStorageKilled: the object store under the sidecars dies. The
// chain does not notice — blocks and transactions go on, consensus never
// waits on storage — while every sidecar answers uploads and downloads
// with a clear server error (and /healthz says the backend is down), never
// with wrong bytes. Restarted on its data, the store serves the blob it
// held again, through any sidecar.
func TestSidecarStorageKilled(t *testing.T) {
	ctx, net := setupWith(t, testnet.Options{Validators: 4, Blob: "minio"})
	tr := testnet.Transport{Net: net}
	clinician, _, id := careTeam(t, tr, apptest.HospitalA, "storage")

	// Upload through node0's sidecar, record it, log the read, download
	// through node2's: one shared store.
	blob := make([]byte, 8<<10)
	rand.Read(blob)
	sum := sha256.Sum256(blob)
	sc := func(i int) *sidecar.Client {
		return sidecar.NewClient(net.SidecarURL(i), sidecar.KeyRecipient{KeySigner: sidecar.KeySigner{Key: clinician.Sign}, Enc: clinician.Enc}, nil)
	}
	// A transaction is committed on the node the transport asked; another
	// node's sidecar answers from its own node, which may be a block behind.
	caughtUp := func(i int) {
		if err := net.WaitHeight(ctx, i, net.MaxHeight()); err != nil {
			t.Fatalf("node%d catching up: %v", i, err)
		}
	}
	caughtUp(0) // the grant
	if _, err := sc(0).Put(ctx, id, "lab-results", sum, bytes.NewReader(blob), int64(len(blob))); err != nil {
		t.Fatalf("upload: %v", err)
	}
	mustSubmit(t, tr, "add record", clinician, addRecord(id, sum, len(blob)))
	mustSubmit(t, tr, "log the read", clinician, apptest.Access(id, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	caughtUp(2) // the access event
	download := func(i int) ([]byte, error) {
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		defer ccancel()
		var buf bytes.Buffer
		_, err := sc(i).Get(cctx, sidecar.RecordRef(id, 1), sum, &buf, nil)
		return buf.Bytes(), err
	}
	if got, err := download(2); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("download through node2: %v (%d bytes)", err, len(got))
	}

	net.KillStorage()
	h := net.MaxHeight()
	for i := range net.Len() {
		if err := net.WaitHeight(ctx, i, h+3); err != nil {
			t.Fatalf("blocks stopped with the storage down: %v", err)
		}
	}
	other := sha256.Sum256([]byte("stored later"))
	mustSubmit(t, tr, "add a record while the storage is down", clinician, addRecord(id, other, 12))
	t.Logf("storage killed: the chain went on from %d to %d and committed a record", h, net.MaxHeight())

	// Every sidecar at once (the store client's retries make each answer
	// take seconds): downloads, an upload and the health check.
	type answer struct {
		what string
		err  error
		n    int
	}
	answers := make(chan answer, net.Len()+1)
	for i := range net.Len() {
		go func() {
			got, err := download(i)
			answers <- answer{fmt.Sprintf("node%d download", i), err, len(got)}
		}()
	}
	go func() {
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		defer ccancel()
		_, err := sc(1).Put(cctx, id, "lab-results", other, bytes.NewReader([]byte("stored later")), 12)
		answers <- answer{"node1 upload", err, 0}
	}()
	// /healthz answers from a check up to a second old.
	waitFor(ctx, t, "/healthz to report the storage down", func() bool {
		status, backendErr := health(ctx, t, net.SidecarURL(3))
		return status == "unavailable" && backendErr != ""
	})
	var reason string
	for range net.Len() + 1 {
		a := <-answers
		var se *sidecar.Error
		if !errors.As(a.err, &se) || se.StatusCode < 500 || a.n != 0 {
			t.Fatalf("%s with the storage down: %v, %d bytes; want a 5xx and no bytes", a.what, a.err, a.n)
		}
		reason = se.Reason
	}
	t.Logf("storage down: every sidecar refuses with a server error (e.g. %q) and reports the backend down", reason)

	net.StartStorage()
	var got []byte
	waitFor(ctx, t, "the sidecars to reach the restarted storage", func() bool {
		var err error
		got, err = download(3)
		return err == nil
	})
	if !bytes.Equal(got, blob) {
		t.Fatal("the blob downloaded after the restart differs")
	}
	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	defer ccancel()
	if _, err := sc(1).Put(cctx, id, "lab-results", other, bytes.NewReader([]byte("stored later")), 12); err != nil {
		t.Fatalf("upload after the restart: %v", err)
	}
	waitFor(ctx, t, "/healthz to report the storage back", func() bool {
		status, _ := health(ctx, t, net.SidecarURL(3))
		return status == "ok"
	})
	agree(ctx, t, net)
}

// TestBlobsReplicateOnTestnet: with every sidecar signing as a storage
// service (emrchaind testnet's default), a blob uploaded to one hospital's
// sidecar is copied to every other once its record commits, so a lost disk
// loses no ciphertext; and a copy found damaged by a read is dropped and
// copied back from a peer without anyone asking for it again.
func TestBlobsReplicateOnTestnet(t *testing.T) {
	ctx, net := setupWith(t, testnet.Options{Validators: 4, Replicate: true})
	tr := testnet.Transport{Net: net}
	clinician, _, id := careTeam(t, tr, apptest.HospitalA, "replica")
	blob := make([]byte, 300<<10)
	rand.Read(blob)
	sum := sha256.Sum256(blob)
	if err := net.WaitHeight(ctx, 0, net.MaxHeight()); err != nil {
		t.Fatal(err)
	}
	if _, err := sidecar.NewClient(net.SidecarURL(0), sidecar.KeyRecipient{KeySigner: sidecar.KeySigner{Key: clinician.Sign}, Enc: clinician.Enc}, nil).Put(ctx, id, "lab-results", sum, bytes.NewReader(blob), int64(len(blob))); err != nil {
		t.Fatalf("upload: %v", err)
	}
	mustSubmit(t, tr, "add record", clinician, addRecord(id, sum, len(blob)))
	key := sidecar.BlobKey(id, "lab-results", sum)
	// Where the fs store of node i's sidecar (HOME/data/blobs) keeps it
	// (blobstore.FS.Path).
	path := func(i int) string {
		o := key.Owner.String()
		return filepath.Join(net.Home(i), "data", "blobs", "blobs", o[:2], o, key.Sum.String())
	}
	stored := func(i int) []byte {
		b, _ := os.ReadFile(path(i))
		return b
	}
	if stored(0) == nil {
		t.Fatal("the blob is not where the fs store keeps it on node0: the test reads the wrong path")
	}
	start := time.Now()
	for i := 1; i < net.Len(); i++ {
		waitFor(ctx, t, fmt.Sprintf("node%d's sidecar to copy the blob", i), func() bool { return bytes.Equal(stored(i), blob) })
	}
	t.Logf("the blob reached every sidecar %v after its record committed", time.Since(start).Round(time.Millisecond))

	// A flipped bit on node2's disk: the next read there is cut short and
	// the copy dropped; node2's storage service copies it back.
	p := path(2)
	damaged := bytes.Clone(blob)
	damaged[len(damaged)/2] ^= 1
	if err := os.WriteFile(p, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	mustSubmit(t, tr, "log the read", clinician, apptest.Access(id, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	if err := net.WaitHeight(ctx, 2, net.MaxHeight()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err := sidecar.NewClient(net.SidecarURL(2), sidecar.KeyRecipient{KeySigner: sidecar.KeySigner{Key: clinician.Sign}, Enc: clinician.Enc}, nil).Get(ctx, sidecar.RecordRef(id, 1), sum, &buf, nil)
	if !errors.Is(err, sidecar.ErrCutShort) {
		t.Fatalf("a read of the damaged copy: %v; want a transfer cut short", err)
	}
	waitFor(ctx, t, "node2's sidecar to copy back the blob it dropped", func() bool { return bytes.Equal(stored(2), blob) })
}

// addRecord is the AddRecord message for a blob of size bytes with SHA-256
// sum (its signer is the uploader).
func addRecord(id []byte, sum [32]byte, size int) *emrv1.Msg {
	return apptest.AddRecordOf(id, "lab-results", sum[:], uint64(size))
}

// health reads a sidecar's /healthz.
func health(ctx context.Context, t *testing.T, base string) (status, backendErr string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, base+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	defer resp.Body.Close()
	var h struct {
		Status       string `json:"status"`
		BackendError string `json:"backend_error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("healthz: %v", err)
	}
	return h.Status, h.BackendError
}
