package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"

	cmtlog "github.com/cometbft/cometbft/libs/log"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/internal/freeport"
	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/blobstore/miniotest"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// testMaxBlob is max_blob_bytes of the sidecar tests' genesis.
const testMaxBlob = 64 << 10

// sidecarChain is a single-validator chain for the sidecar tests, driven
// with transactions signed by app/apptest actors.
type sidecarChain struct {
	t       *testing.T
	home    string
	chainID string
	rpcPort int
	node    *proc
	seq     map[string]uint64
}

func startSidecarChain(ctx context.Context, t *testing.T, sc sidecarConfig) *sidecarChain {
	t.Helper()
	bin := binary(t)
	home := t.TempDir()
	g := apptest.Consortium()
	g.Params.MaxBlobBytes = testMaxBlob
	appState, err := app.MarshalGenesis(g)
	if err != nil {
		t.Fatal(err)
	}
	genesisFile := filepath.Join(t.TempDir(), "app_state.json")
	if err := os.WriteFile(genesisFile, appState, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &sidecarChain{t: t, home: home, chainID: "emr-sidecar-test", rpcPort: freeport.Get(t), seq: map[string]uint64{}}
	out, err := exec.Command(bin, "init", "--home", home, "--chain-id", c.chainID,
		"--genesis-app-state", genesisFile,
		"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", c.rpcPort),
		"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", freeport.Get(t)),
		"--grpc.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--api.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--timeout-commit", "100ms", "--empty-blocks-interval", "0s").CombinedOutput()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	conf, err := loadAppConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	conf.Sidecar = sc
	if err := writeAppConfig(home, conf); err != nil {
		t.Fatal(err)
	}
	c.node = startNode(t, home, "node.log")
	waitHeight(ctx, t, c.node, c.rpcPort, 2)
	return c
}

// must commits msg signed by a and returns the height.
func (c *sidecarChain) must(ctx context.Context, a *apptest.Actor, msg *emrv1.Msg) int64 {
	c.t.Helper()
	tx := a.Tx(c.chainID, c.seq[a.Name], msg)
	var res struct {
		CheckTx struct {
			Code uint32 `json:"code"`
			Log  string `json:"log"`
		} `json:"check_tx"`
		TxResult struct {
			Code uint32 `json:"code"`
			Log  string `json:"log"`
		} `json:"tx_result"`
		Height string `json:"height"`
	}
	if err := rpc(ctx, c.rpcPort, "broadcast_tx_commit", url.Values{"tx": {"0x" + hex.EncodeToString(tx)}}, &res); err != nil {
		c.t.Fatal(err)
	}
	if res.CheckTx.Code != 0 || res.TxResult.Code != 0 {
		c.t.Fatalf("%s's tx: check %d %q, exec %d %q", a.Name, res.CheckTx.Code, res.CheckTx.Log, res.TxResult.Code, res.TxResult.Log)
	}
	c.seq[a.Name]++
	h, _ := strconv.ParseInt(res.Height, 10, 64)
	return h
}

// blockTime is the time of the latest block.
func (c *sidecarChain) blockTime(ctx context.Context) time.Time {
	c.t.Helper()
	var st struct {
		SyncInfo struct {
			Time time.Time `json:"latest_block_time"`
		} `json:"sync_info"`
	}
	if err := rpc(ctx, c.rpcPort, "status", nil, &st); err != nil {
		c.t.Fatal(err)
	}
	return st.SyncInfo.Time
}

func (c *sidecarChain) chainView() sidecar.ChainView {
	c.t.Helper()
	cl, err := rpchttp.New(fmt.Sprintf("tcp://127.0.0.1:%d", c.rpcPort))
	if err != nil {
		c.t.Fatal(err)
	}
	return sidecar.NewNodeChainView(cl)
}

// inProcessSidecar runs a sidecar in the test process against the node.
func (c *sidecarChain) inProcessSidecar(store blobstore.Store, mod func(*sidecar.Options)) *sidecar.Server {
	c.t.Helper()
	opts := sidecar.Options{Store: store, Chain: c.chainView(), SweepInterval: -1}
	if mod != nil {
		mod(&opts)
	}
	srv, err := sidecar.New(opts)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// startSidecarProc runs `emrchaind sidecar` and waits for /healthz.
func startSidecarProc(ctx context.Context, t *testing.T, home string, port int, extra ...string) string {
	t.Helper()
	logPath := filepath.Join(home, "sidecar.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"sidecar", "--home", home, "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, extra...)
	cmd := exec.Command(binary(t), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// done is closed when the process has exited (waitErr then holds why),
	// so both waitHealthy and the cleanup can wait on it.
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- tail of %s ---\n%s", logPath, b)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealthy(ctx, t, base, done, func() error { return waitErr })
	return base
}

// waitHealthy waits until base answers /healthz with 200; exited (nil for
// an in-process sidecar) is closed if the sidecar process exits first, and
// why says how it exited.
func waitHealthy(ctx context.Context, t *testing.T, base string, exited <-chan struct{}, why func() error) {
	t.Helper()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("sidecar exited during start-up: %v", why())
		case <-ctx.Done():
			t.Fatalf("sidecar at %s not healthy in time", base)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func signer(a *apptest.Actor) sidecar.KeyRecipient {
	return sidecar.KeyRecipient{KeySigner: sidecar.KeySigner{Key: a.Sign}, Enc: a.Enc}
}

func wantHTTP(t *testing.T, err error, status int, reason string) {
	t.Helper()
	var se *sidecar.Error
	if !errors.As(err, &se) || se.StatusCode != status {
		t.Fatalf("got %v, want HTTP %d", err, status)
	}
	if reason != "" && !strings.Contains(se.Reason, reason) {
		t.Fatalf("reason %q does not say %q", se.Reason, reason)
	}
}

// testCategory is the category of the sidecar tests' records and uploads.
const testCategory = "lab-results"

func addRecordMsg(pid []byte, data []byte) *emrv1.Msg {
	sum := sha256.Sum256(data)
	return apptest.AddRecordOf(pid, testCategory, sum[:], uint64(len(data)))
}

func getBlob(ctx context.Context, c *sidecar.Client, ref sidecar.BlobRef, sum [32]byte, rng *sidecar.Range) ([]byte, error) {
	var buf bytes.Buffer
	_, err := c.Get(ctx, ref, sum, &buf, rng)
	return buf.Bytes(), err
}

// rawSigned sends a GET signed with an explicit timestamp.
func rawSignedGet(t *testing.T, base, path string, a *apptest.Actor, ts string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	empty := sha256.Sum256(nil)
	bodyHex := hex.EncodeToString(empty[:])
	addr := hex.EncodeToString(a.Address)
	sig, err := a.Sign.Sign(sidecar.SigningString(http.MethodGet, path, addr, ts, bodyHex, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(sidecar.HeaderAddress, addr)
	req.Header.Set(sidecar.HeaderTimestamp, ts)
	req.Header.Set(sidecar.HeaderBodySHA256, bodyHex)
	req.Header.Set(sidecar.HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	return req
}

func statusOfRequest(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSidecarAgainstNode runs the sidecar against a real single-validator
// emrchaind: `emrchaind sidecar` (fs backend) for the whole permission
// matrix, and in-process sidecars over the same node for MinIO, a tiny
// access window and the sweep.
func TestSidecarAgainstNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	sc := defaultSidecarConfig()
	sc.Listen = fmt.Sprintf("127.0.0.1:%d", freeport.Get(t))
	chain := startSidecarChain(ctx, t, sc)

	registrar := apptest.Registrar(apptest.HospitalA)
	writer, reader := apptest.NewActor("sc-writer"), apptest.NewActor("sc-reader")
	late, susp := apptest.NewActor("sc-late"), apptest.NewActor("sc-suspended")
	patient := apptest.NewActor("sc-patient")
	pid := apptest.PatientID("sc-patient")
	for _, a := range []*apptest.Actor{writer, reader, late, susp} {
		chain.must(ctx, registrar, apptest.RegisterMember(a, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	}
	chain.must(ctx, patient, apptest.Enroll(patient))
	until := time.Now().Add(time.Hour)
	chain.must(ctx, patient, apptest.Grant(pid, writer, apptest.GrantSpec{Rights: []emrv1.Right{emrv1.Right_RIGHT_WRITE}, NotAfter: until}))
	for _, a := range []*apptest.Actor{reader, late, susp} {
		chain.must(ctx, patient, apptest.Grant(pid, a, apptest.GrantSpec{Rights: []emrv1.Right{emrv1.Right_RIGHT_READ}, NotAfter: until}))
	}

	// `emrchaind sidecar` with app.toml's settings (fs backend in
	// HOME/data/blobs) but its own reference index: the sidecar inside
	// start holds HOME/data/sidecar-refs.
	procRefs := filepath.Join(t.TempDir(), "refs")
	base := startSidecarProc(ctx, t, chain.home, freeport.Get(t), "--ref-index-dir", procRefs)
	cl := func(a *apptest.Actor) *sidecar.Client { return sidecar.NewClient(base, signer(a), nil) }

	// The sidecar inside start (app.toml enable = true).
	waitHealthy(ctx, t, "http://"+sc.Listen, nil, nil)

	data := bytes.Repeat([]byte("ciphertext-1 "), 1000)
	sum := sha256.Sum256(data)
	// A GET names the record it reads: data is record 1, data2 record 2.
	rec1, rec2 := sidecar.RecordRef(pid, 1), sidecar.RecordRef(pid, 2)
	path := fmt.Sprintf("/v1/blobs/%x?record=%x/1", sum, pid)

	// Unsigned: 401.
	if status, body := statusOfRequest(t, mustRequest(t, http.MethodGet, base+path)); status != 401 || !strings.Contains(body, "unsigned") {
		t.Fatalf("unsigned GET: %d %s", status, body)
	}
	// PUT by the writer; by the reader (no write right) 403; a wrong hash
	// 400; above max_blob_bytes 413.
	if res, err := cl(writer).Put(ctx, pid, testCategory, sum, bytes.NewReader(data), int64(len(data))); err != nil || !res.Created {
		t.Fatalf("writer PUT: %+v %v", res, err)
	}
	other := []byte("reader's upload")
	_, err := cl(reader).Put(ctx, pid, testCategory, sha256.Sum256(other), bytes.NewReader(other), int64(len(other)))
	wantHTTP(t, err, 403, "does not include write")
	_, err = cl(writer).Put(ctx, pid, testCategory, sha256.Sum256([]byte("not this")), bytes.NewReader(other), int64(len(other)))
	wantHTTP(t, err, 400, "does not hash")
	big := make([]byte, testMaxBlob+1)
	_, err = cl(writer).Put(ctx, pid, testCategory, sha256.Sum256(big), bytes.NewReader(big), int64(len(big)))
	wantHTTP(t, err, 413, "max_blob_bytes")
	// Idempotent.
	if res, err := cl(writer).Put(ctx, pid, testCategory, sum, bytes.NewReader(data), int64(len(data))); err != nil || res.Created {
		t.Fatalf("writer re-PUT: %+v %v", res, err)
	}

	// Not referenced yet: nobody reads it.
	_, err = getBlob(ctx, cl(patient), rec1, sum, nil)
	wantHTTP(t, err, 403, "no committed record")
	chain.must(ctx, writer, addRecordMsg(pid, data))
	seq1 := rec1.Sequence

	// The owner reads; the reader only after its RecordAccess is committed.
	if got, err := getBlob(ctx, cl(patient), rec1, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("owner GET: %v", err)
	}
	_, err = getBlob(ctx, cl(reader), rec1, sum, nil)
	wantHTTP(t, err, 403, "no committed access event")
	chain.must(ctx, reader, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, seq1))
	if got, err := getBlob(ctx, cl(reader), rec1, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader GET after RecordAccess: %v", err)
	}
	if got, err := getBlob(ctx, cl(reader), rec1, sum, &sidecar.Range{Start: 1000, Length: 300}); err != nil || !bytes.Equal(got, data[1000:1300]) {
		t.Fatalf("range GET: %v", err)
	}
	// The sidecar inside start shares HOME/data/blobs and the rules.
	startCl := sidecar.NewClient("http://"+sc.Listen, signer(reader), nil)
	if got, err := getBlob(ctx, startCl, rec1, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GET from the sidecar inside start: %v", err)
	}
	_, err = getBlob(ctx, sidecar.NewClient("http://"+sc.Listen, signer(late), nil), rec1, sum, nil)
	wantHTTP(t, err, 403, "no committed access event")
	// Stale and replayed requests: 401.
	stale := time.Now().Add(-5 * time.Minute).UTC().Format(time.RFC3339Nano)
	if status, body := statusOfRequest(t, rawSignedGet(t, base, path, reader, stale)); status != 401 || !strings.Contains(body, "stale") {
		t.Fatalf("stale GET: %d %s", status, body)
	}
	req := rawSignedGet(t, base, path, reader, time.Now().UTC().Format(time.RFC3339Nano))
	replay := req.Clone(context.Background())
	if status, body := statusOfRequest(t, req); status != 200 {
		t.Fatalf("fresh GET: %d %s", status, body)
	}
	if status, body := statusOfRequest(t, replay); status != 401 || !strings.Contains(body, "replayed") {
		t.Fatalf("replayed GET: %d %s", status, body)
	}

	t.Run("MinIO", func(t *testing.T) {
		srv := miniotest.Start(t)
		store, err := blobstore.OpenMinIO(ctx, blobstore.MinIOConfig{
			Endpoint: srv.Endpoint, Bucket: "emrchain-blobs", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		})
		if err != nil {
			t.Fatal(err)
		}
		side := chain.inProcessSidecar(store, nil)
		mbase := "http://" + side.Addr().String()
		mcl := func(a *apptest.Actor) *sidecar.Client { return sidecar.NewClient(mbase, signer(a), nil) }
		data2 := bytes.Repeat([]byte("ciphertext-2 in minio "), 500)
		sum2 := sha256.Sum256(data2)
		if _, err := mcl(writer).Put(ctx, pid, testCategory, sum2, bytes.NewReader(data2), int64(len(data2))); err != nil {
			t.Fatalf("PUT to MinIO: %v", err)
		}
		_, err = mcl(writer).Put(ctx, pid, testCategory, sha256.Sum256([]byte("x")), bytes.NewReader(data2), int64(len(data2)))
		wantHTTP(t, err, 400, "does not hash")
		_, err = mcl(reader).Put(ctx, pid, testCategory, sum2, bytes.NewReader(data2), int64(len(data2)))
		wantHTTP(t, err, 403, "")
		chain.must(ctx, writer, addRecordMsg(pid, data2))
		_, err = getBlob(ctx, mcl(reader), rec2, sum2, nil)
		wantHTTP(t, err, 403, "no committed access event")
		chain.must(ctx, reader, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, rec2.Sequence))
		if got, err := getBlob(ctx, mcl(reader), rec2, sum2, nil); err != nil || !bytes.Equal(got, data2) {
			t.Fatalf("GET from MinIO: %v", err)
		}
		if got, err := getBlob(ctx, mcl(reader), rec2, sum2, &sidecar.Range{Start: 7, Length: 100}); err != nil || !bytes.Equal(got, data2[7:107]) {
			t.Fatalf("range GET from MinIO: %v", err)
		}
		if got, err := getBlob(ctx, mcl(patient), rec2, sum2, nil); err != nil || !bytes.Equal(got, data2) {
			t.Fatalf("owner GET from MinIO: %v", err)
		}
	})

	t.Run("AccessWindow", func(t *testing.T) {
		// A sidecar with a 3 s window over the same blobs: an access event
		// older than the window (in block time) no longer opens the blob.
		store, err := blobstore.OpenFS(filepath.Join(chain.home, "data", "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		const window = 3 * time.Second
		side := chain.inProcessSidecar(store, func(o *sidecar.Options) { o.AccessWindow = window })
		wcl := sidecar.NewClient("http://"+side.Addr().String(), signer(late), nil)
		h := chain.must(ctx, late, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, seq1))
		if _, err := getBlob(ctx, wcl, rec1, sum, nil); err != nil {
			t.Fatalf("GET right after RecordAccess (height %d): %v", h, err)
		}
		evTime := chain.blockTime(ctx)
		for chain.blockTime(ctx).Before(evTime.Add(window + time.Second)) {
			select {
			case <-ctx.Done():
				t.Fatal("block time did not advance")
			case <-time.After(200 * time.Millisecond):
			}
		}
		_, err = getBlob(ctx, wcl, rec1, sum, nil)
		wantHTTP(t, err, 403, "expired at")
		// The long-window sidecar still serves it.
		if _, err := getBlob(ctx, cl(late), rec1, sum, nil); err != nil {
			t.Fatalf("10-minute window: %v", err)
		}
	})

	t.Run("Suspended", func(t *testing.T) {
		chain.must(ctx, susp, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, seq1))
		if _, err := getBlob(ctx, cl(susp), rec1, sum, nil); err != nil {
			t.Fatalf("GET before suspension: %v", err)
		}
		chain.must(ctx, registrar, apptest.SetStatus(susp, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
		_, err := getBlob(ctx, cl(susp), rec1, sum, nil)
		wantHTTP(t, err, 403, "suspended")
	})

	t.Run("Revoked", func(t *testing.T) {
		chain.must(ctx, patient, apptest.Revoke(pid, reader))
		_, err := getBlob(ctx, cl(reader), rec1, sum, nil)
		wantHTTP(t, err, 403, "revoked at height")
		_, err = cl(writer).Put(ctx, pid, testCategory, sum, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("the writer is not affected: %v", err)
		}
		// The patient's two key rotations, as emrcli revoke makes them:
		// records are added under version 3 from now on.
		for v := uint64(2); v <= 3; v++ {
			var envelopes []*emrv1.KeyEnvelope
			for _, a := range []*apptest.Actor{writer, late, susp} {
				envelopes = append(envelopes, &emrv1.KeyEnvelope{Grantee: a.Address, WrappedKek: bytes.Repeat([]byte{1}, 93)})
			}
			chain.must(ctx, patient, apptest.RotateKey(pid, v, envelopes, nil))
		}
	})

	t.Run("Sweep", func(t *testing.T) {
		orphan := []byte("uploaded but never added to the chain")
		osum := sha256.Sum256(orphan)
		if _, err := cl(writer).Put(ctx, pid, testCategory, osum, bytes.NewReader(orphan), int64(len(orphan))); err != nil {
			t.Fatal(err)
		}
		// The node lists a committed AddRecord's blob in its block.
		late := []byte("uploaded, then added")
		lsum := sha256.Sum256(late)
		if _, err := cl(writer).Put(ctx, pid, testCategory, lsum, bytes.NewReader(late), int64(len(late))); err != nil {
			t.Fatal(err)
		}
		added := addRecordMsg(pid, late)
		added.GetAddRecord().KeyVersion = 3 // after the revocation's rotations
		h := chain.must(ctx, writer, added)
		blocks, err := chain.chainView().BlockBlobs(ctx, h-1, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) < 2 || blocks[0].Height != h-1 || blocks[1].Height != h || len(blocks[0].Blobs) != 0 ||
			len(blocks[1].Blobs) != 1 || blocks[1].Blobs[0].Key.Sum != lsum || blocks[1].Blobs[0].Size != added.GetAddRecord().Size {
			t.Fatalf("BlockBlobs(%d, 3) = %+v, want block %d with blob %x only", h-1, blocks, h, lsum)
		}
		store, err := blobstore.OpenFS(filepath.Join(chain.home, "data", "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		// Every blob uploaded two hours ago, past the one-hour grace period
		// (the node's blocks are recent, the sweep's other bound). The
		// sweeper's reference index reads every block of the node from
		// height 1.
		ageFiles(t, filepath.Join(store.Dir(), "blobs"), 2*time.Hour)
		side := chain.inProcessSidecar(store, func(o *sidecar.Options) {
			o.RefIndexDir = t.TempDir()
		})
		rep, err := side.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Deleted != 1 || rep.Kept != 2 || rep.Errors != 0 || rep.Height < h {
			t.Fatalf("sweep = %+v, want the orphan deleted and the records' blobs kept, blocks read through %d", rep, h)
		}
		if _, err := store.Stat(ctx, sidecar.BlobKey(pid, testCategory, osum)); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("orphan survived: %v", err)
		}
		for _, s := range [][32]byte{sum, lsum} {
			if _, err := store.Stat(ctx, sidecar.BlobKey(pid, testCategory, s)); err != nil {
				t.Fatalf("referenced blob %x swept: %v", s, err)
			}
		}
		// Both sidecars of the node keep their reference index on disk.
		for _, dir := range []string{procRefs, filepath.Join(chain.home, "data", "sidecar-refs")} {
			if _, err := os.Stat(filepath.Join(dir, "blob-refs.db")); err != nil {
				t.Fatalf("reference index: %v", err)
			}
		}
	})

	// Metrics of the command's sidecar.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`route="get_blob"`, `outcome="forbidden"`, `outcome="unauthenticated"`, "emrchain_sidecar_bytes_out_total"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestSidecarConfig: app.toml's [sidecar] table round-trips, is accepted
// by loadAppConfig, rejects unknown keys, and the environment supplies the
// MinIO credentials.
func TestSidecarConfig(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(home, "config", appConfigFile)

	// No file: defaults (enabled, fs under HOME/data/blobs).
	c, err := loadSidecarConfig(home)
	if err != nil || !reflect.DeepEqual(c, defaultSidecarConfig()) {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if err := c.resolve(home); err != nil || c.Backend != "fs" || c.Dir != filepath.Join(home, "data", "blobs") ||
		c.RefIndexDir != filepath.Join(home, "data", "sidecar-refs") {
		t.Fatalf("resolve defaults: %+v %v", c, err)
	}

	want := defaultSidecarConfig()
	want.Listen = "127.0.0.1:7171"
	want.AccessWindow = duration(90 * time.Second)
	want.MinIOEndpoint = "http://127.0.0.1:9000"
	want.RefIndexDir = "/var/lib/emrchain/refs"
	want.SweepInterval = 0
	want.Peers = []string{"http://127.0.0.1:7171", "http://127.0.0.1:7272"}
	want.ReplayPerSigner = 50
	want.FailedAuthPerMinute = 600
	want.PendingBytesPerSigner = 0
	want.PendingBytesPatients = 3 << 40
	want.PendingBytesTotal = 5 << 40
	want.UploadIdleTimeout = duration(45 * time.Second)
	want.UploadMinRate = 0
	want.MaxUploads = 32
	want.MaxUploadsPerSigner = 4
	want.MaxUploadsPatients = 0
	want.MetricsFrom = []string{"10.9.0.0/16", "192.0.2.4", "::ffff:192.0.2.5", "::ffff:10.8.0.0/112"}
	got := sidecarConfigRoundTrip(t, home, want)
	if _, err := loadAppConfig(home); err != nil {
		t.Fatalf("loadAppConfig rejects the [sidecar] table: %v", err)
	}
	def := defaultSidecarConfig()
	if err := def.resolve(home); err != nil || !reflect.DeepEqual(prefixStrings(def.options().MetricsFrom), []string{"127.0.0.0/8", "::1/128"}) {
		t.Fatalf("default metrics_from %v: %v", def.MetricsFrom, err)
	}
	none := defaultSidecarConfig()
	none.MetricsFrom = []string{}
	if err := none.resolve(home); err != nil || none.options().MetricsFrom == nil || len(none.options().MetricsFrom) != 0 {
		t.Fatalf("metrics_from = [] must reach the sidecar as nobody (empty, not nil): %v %v", none.options().MetricsFrom, err)
	}
	// minio_endpoint set and no backend: minio, credentials from the environment.
	t.Setenv(envMinIOAccessKey, "")
	t.Setenv(envMinIOSecretKey, "")
	if err := got.resolve(home); err == nil || !strings.Contains(err.Error(), envMinIOAccessKey) {
		t.Fatalf("minio without credentials: %v", err)
	}
	t.Setenv(envMinIOAccessKey, "ak")
	t.Setenv(envMinIOSecretKey, "sk")
	got, _ = loadSidecarConfig(home)
	if err := got.resolve(home); err != nil || got.Backend != "minio" || got.MinIOAccessKey != "ak" || got.MinIOSecretKey != "sk" {
		t.Fatalf("minio from env: %+v %v", got, err)
	}
	if from := prefixStrings(got.options().MetricsFrom); !reflect.DeepEqual(from, []string{"10.9.0.0/16", "192.0.2.4/32", "192.0.2.5/32", "10.8.0.0/16"}) {
		t.Fatalf("metrics_from %v reached the sidecar as %v", want.MetricsFrom, from)
	}

	raw, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(raw, []byte("no_such_key = 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSidecarConfig(home); err == nil || !strings.Contains(err.Error(), "sidecar.no_such_key") {
		t.Fatalf("unknown key: %v", err)
	}
	for _, bad := range []func(*sidecarConfig){
		func(c *sidecarConfig) { c.Backend = "s3" },
		func(c *sidecarConfig) { c.Listen = "" },
		func(c *sidecarConfig) { c.AccessWindow = 0 },
		func(c *sidecarConfig) { c.Backend, c.MinIOEndpoint = "minio", "" },
		func(c *sidecarConfig) { c.ReplayPerSigner = -1 },
		func(c *sidecarConfig) { c.FailedAuthPerMinute = -1 },
		func(c *sidecarConfig) { c.PendingBytesPerSigner = -1 },
		func(c *sidecarConfig) { c.PendingBytesPatients = -1 },
		func(c *sidecarConfig) { c.PendingBytesPatients, c.PendingBytesTotal = 1<<30, 1<<30 },
		func(c *sidecarConfig) { c.PendingBytesTotal = -1 },
		func(c *sidecarConfig) { c.MaxUploads, c.MaxUploadsPerSigner = 4, 5 },
		func(c *sidecarConfig) { c.MaxUploads, c.MaxUploadsPatients = 4, 4 },
		func(c *sidecarConfig) { c.MaxUploadsPatients = -1 },
		func(c *sidecarConfig) { c.MetricsFrom = []string{"10.9.0.1/16"} },
		func(c *sidecarConfig) { c.MetricsFrom = []string{"monitoring.example"} },
		func(c *sidecarConfig) { c.MetricsFrom = []string{"::ffff:0.0.0.0/80"} },
	} {
		c := defaultSidecarConfig()
		bad(&c)
		if err := c.resolve(home); err == nil {
			t.Fatalf("bad config accepted: %+v", c)
		}
	}
}

// TestSidecarQuotaOptions: the quotas of app.toml reach the sidecar's
// Options, 0 as no bound (negative there, where 0 is the default), and the
// written defaults are the sidecar's.
func TestSidecarQuotaOptions(t *testing.T) {
	for _, tc := range []struct {
		name                                   string
		replay, authFails                      int
		perSigner, patients, total             int64
		wantReplay, wantAuthFails              int
		wantPerSigner, wantPatients, wantTotal int64
	}{
		{"defaults", sidecar.DefaultReplayPerSigner, sidecar.DefaultFailedAuthPerMinute, sidecar.DefaultPendingBytesPerSigner, sidecar.DefaultPendingBytesPatients, sidecar.DefaultPendingBytesTotal,
			sidecar.DefaultReplayPerSigner, sidecar.DefaultFailedAuthPerMinute, sidecar.DefaultPendingBytesPerSigner, sidecar.DefaultPendingBytesPatients, sidecar.DefaultPendingBytesTotal},
		{"set", 10, 5, 1 << 20, 1 << 29, 1 << 30, 10, 5, 1 << 20, 1 << 29, 1 << 30},
		{"zero is no bound", 0, 0, 0, 0, 0, -1, -1, -1, -1, -1},
	} {
		c := defaultSidecarConfig()
		c.ReplayPerSigner, c.FailedAuthPerMinute, c.PendingBytesPerSigner, c.PendingBytesPatients, c.PendingBytesTotal = tc.replay, tc.authFails, tc.perSigner, tc.patients, tc.total
		if err := c.resolve(t.TempDir()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		o := c.options()
		if o.ReplayPerSigner != tc.wantReplay || o.FailedAuthPerMinute != tc.wantAuthFails ||
			o.PendingBytesPerSigner != tc.wantPerSigner || o.PendingBytesPatients != tc.wantPatients || o.PendingBytesTotal != tc.wantTotal {
			t.Errorf("%s: options %d, %d, %d, %d, %d; want %d, %d, %d, %d, %d", tc.name,
				o.ReplayPerSigner, o.FailedAuthPerMinute, o.PendingBytesPerSigner, o.PendingBytesPatients, o.PendingBytesTotal,
				tc.wantReplay, tc.wantAuthFails, tc.wantPerSigner, tc.wantPatients, tc.wantTotal)
		}
	}
	rendered := renderSidecarConfig(defaultSidecarConfig())
	for _, want := range []string{
		fmt.Sprintf("replay_per_signer = %d\n", sidecar.DefaultReplayPerSigner),
		fmt.Sprintf("failed_auth_per_minute = %d\n", sidecar.DefaultFailedAuthPerMinute),
		fmt.Sprintf("pending_bytes_per_signer = %d\n", int64(sidecar.DefaultPendingBytesPerSigner)),
		fmt.Sprintf("pending_bytes_patients = %d\n", int64(sidecar.DefaultPendingBytesPatients)),
		fmt.Sprintf("pending_bytes_total = %d\n", int64(sidecar.DefaultPendingBytesTotal)),
		fmt.Sprintf("max_uploads_patients = %d\n", sidecar.DefaultMaxUploads/2),
		fmt.Sprintf("max_head_age = %q\n", sidecar.DefaultMaxHeadAge.String()),
	} {
		if !strings.Contains(rendered, want) {
			t.Errorf("the written [sidecar] table lacks %q", want)
		}
	}
}

// TestSidecarUploadsPatientsOption: max_uploads_patients reaches the
// sidecar, 0 as no bound; left out of app.toml, it is half of the
// max_uploads set there.
func TestSidecarUploadsPatientsOption(t *testing.T) {
	for _, tc := range []struct {
		set, want int
	}{{sidecar.DefaultMaxUploads / 2, sidecar.DefaultMaxUploads / 2}, {3, 3}, {0, -1}} {
		c := defaultSidecarConfig()
		c.MaxUploadsPatients = tc.set
		if err := c.resolve(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		if got := c.options().MaxUploadsPatients; got != tc.want {
			t.Errorf("max_uploads_patients %d: option %d, want %d", tc.set, got, tc.want)
		}
	}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte("[sidecar]\nmax_uploads = 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := loadSidecarConfig(home); err != nil || c.MaxUploadsPatients != 5 {
		t.Fatalf("max_uploads = 10, max_uploads_patients left out: %d, %v; want 5", c.MaxUploadsPatients, err)
	}
	// max_uploads set below the per-signer default alone: the per-signer
	// bound follows it down instead of refusing a key nobody wrote.
	if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte("[sidecar]\nmax_uploads = 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := loadSidecarConfig(home); err != nil || c.MaxUploadsPerSigner != 4 || c.MaxUploadsPatients != 2 {
		t.Fatalf("max_uploads = 4 alone: per signer %d, patients %d, %v; want 4 and 2", c.MaxUploadsPerSigner, c.MaxUploadsPatients, err)
	}
}

// TestSidecarReferenceIndexOnlyWithTheSweep: the sweep's reference index is
// a database in ref_index_dir, opened only when the sweep runs; with
// sweep_interval "0s" nothing is created there.
func TestSidecarReferenceIndexOnlyWithTheSweep(t *testing.T) {
	noChain := sidecar.NewQueryChainView(
		func(context.Context, string, proto.Message, proto.Message) error {
			return errors.New("no chain in this test")
		},
		func(context.Context) (sidecar.Head, error) {
			return sidecar.Head{}, errors.New("no chain in this test")
		},
		nil)
	for _, tc := range []struct {
		sweep    time.Duration
		wantDirs bool
	}{{0, false}, {time.Hour, true}} {
		home := t.TempDir()
		c := defaultSidecarConfig()
		c.SweepInterval = duration(tc.sweep)
		if err := c.resolve(home); err != nil {
			t.Fatal(err)
		}
		srv, err := newSidecarServer(context.Background(), c, noChain, cmtlog.NewNopLogger())
		if err != nil {
			t.Fatal(err)
		}
		_, statErr := os.Stat(c.RefIndexDir)
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if exists := statErr == nil; exists != tc.wantDirs {
			t.Errorf("sweep_interval %s: %s exists = %v, want %v", tc.sweep, c.RefIndexDir, exists, tc.wantDirs)
		}
	}
}

// TestSidecarRefusesBlobAliases, against a real node: the chain accepts a
// record that names any well-formed hash, so the sidecar must not serve a
// blob through a record of another patient, or of another category, than
// the one it was uploaded for. Mallory, with no grant at all, enrolls a
// patient of her own and adds a record naming the victim's ciphertext hash
// (public on chain), which as its owner she may read without an access
// event; a clinician with read and write on lab-results only adds a
// lab-results record naming the patient's imaging ciphertext and logs a
// read of it. Neither gets the bytes.
func TestSidecarRefusesBlobAliases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := defaultSidecarConfig()
	sc.Listen = fmt.Sprintf("127.0.0.1:%d", freeport.Get(t))
	chain := startSidecarChain(ctx, t, sc)
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + chain.inProcessSidecar(store, nil).Addr().String()
	cl := func(a *apptest.Actor) *sidecar.Client { return sidecar.NewClient(base, signer(a), nil) }

	registrar := apptest.Registrar(apptest.HospitalA)
	writer, labdoc := apptest.NewActor("alias-writer"), apptest.NewActor("alias-labdoc")
	victim, vpid := apptest.NewActor("alias-victim"), apptest.PatientID("alias-victim")
	chain.must(ctx, registrar, apptest.RegisterMember(writer, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	chain.must(ctx, registrar, apptest.RegisterMember(labdoc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	chain.must(ctx, victim, apptest.Enroll(victim))
	until := time.Now().Add(time.Hour)
	chain.must(ctx, victim, apptest.Grant(vpid, writer, apptest.GrantSpec{Rights: []emrv1.Right{emrv1.Right_RIGHT_WRITE}, NotAfter: until}))
	chain.must(ctx, victim, apptest.Grant(vpid, labdoc, apptest.GrantSpec{
		Rights: []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE}, Categories: []string{"lab-results"}, NotAfter: until,
	}))

	scan := bytes.Repeat([]byte("imaging ciphertext "), 100)
	sum := sha256.Sum256(scan)
	if _, err := cl(writer).Put(ctx, vpid, "imaging", sum, bytes.NewReader(scan), int64(len(scan))); err != nil {
		t.Fatal(err)
	}
	chain.must(ctx, writer, apptest.AddRecordOf(vpid, "imaging", sum[:], uint64(len(scan))))
	if got, err := getBlob(ctx, cl(victim), sidecar.RecordRef(vpid, 1), sum, nil); err != nil || !bytes.Equal(got, scan) {
		t.Fatalf("the owner reading the genuine record: %v", err)
	}

	mallory, mpid := apptest.NewActor("alias-mallory"), apptest.PatientID("alias-mallory")
	chain.must(ctx, mallory, apptest.Enroll(mallory))
	chain.must(ctx, mallory, apptest.AddRecordOf(mpid, "imaging", sum[:], uint64(len(scan))))
	_, err = getBlob(ctx, cl(mallory), sidecar.RecordRef(mpid, 1), sum, nil)
	wantHTTP(t, err, 404, "not stored on this sidecar for that record's patient and category")

	chain.must(ctx, labdoc, apptest.AddRecordOf(vpid, "lab-results", sum[:], uint64(len(scan))))
	chain.must(ctx, labdoc, apptest.Access(vpid, emrv1.Purpose_PURPOSE_TREATMENT, 2))
	_, err = getBlob(ctx, cl(labdoc), sidecar.RecordRef(vpid, 2), sum, nil)
	wantHTTP(t, err, 404, "not stored on this sidecar for that record's patient and category")
	// Uploading for a category the grant does not cover is refused too.
	_, err = cl(labdoc).Put(ctx, vpid, "imaging", sha256.Sum256([]byte("x")), bytes.NewReader([]byte("x")), 1)
	wantHTTP(t, err, 403, `does not cover "imaging"`)
}

// TestSidecarPendingQuotaAgainstNode, against a real node: self-enrolled
// patients (no grant, no organization) upload blobs that no record
// references. One signer is refused (429) once its pending bytes would
// pass its bound, whichever categories it spreads them over; a record it
// then commits frees its blob's bytes (the reference index reads the
// block's events); all signers together are refused (507) at the total.
// A sidecar started again over the same store and reference index counts
// the pending blobs again before its first upload. On the filesystem
// store and on MinIO.
func TestSidecarPendingQuotaAgainstNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := defaultSidecarConfig()
	sc.Listen = fmt.Sprintf("127.0.0.1:%d", freeport.Get(t))
	chain := startSidecarChain(ctx, t, sc)

	const size = 1000
	run := func(t *testing.T, store blobstore.Store, prefix string) {
		refDir := t.TempDir()
		start := func() *sidecar.Server {
			srv, err := sidecar.New(sidecar.Options{Store: store, Chain: chain.chainView(), SweepInterval: -1, RefIndexDir: refDir,
				PendingBytesPerSigner: 3 * size, PendingBytesTotal: 5 * size,
				PendingBytesPatients: -1}) // both signers here are patients; their share: TestPendingQuotaPatientsHTTP
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			return srv
		}
		stop := func(srv *sidecar.Server) {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			if err := srv.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
		}
		srv := start()
		mallory, mpid := apptest.NewActor(prefix+"-quota-mallory"), apptest.PatientID(prefix+"-quota-mallory")
		eve, epid := apptest.NewActor(prefix+"-quota-eve"), apptest.PatientID(prefix+"-quota-eve")
		chain.must(ctx, mallory, apptest.Enroll(mallory))
		chain.must(ctx, eve, apptest.Enroll(eve))
		put := func(a *apptest.Actor, pid []byte, category, tag string) error {
			data := bytes.Repeat([]byte(tag), size)[:size]
			cl := sidecar.NewClient("http://"+srv.Addr().String(), signer(a), nil)
			_, err := cl.Put(ctx, pid, category, sha256.Sum256(data), bytes.NewReader(data), size)
			return err
		}
		sumOf := func(tag string) []byte { s := sha256.Sum256(bytes.Repeat([]byte(tag), size)[:size]); return s[:] }
		categories := []string{"lab-results", "imaging", "prescriptions", "clinical-notes"}
		for i := range 3 {
			if err := put(mallory, mpid, categories[i], fmt.Sprintf("m%d", i)); err != nil {
				t.Fatalf("upload %d: %v", i, err)
			}
		}
		wantHTTP(t, put(mallory, mpid, categories[3], "m3"), http.StatusTooManyRequests, "pending_bytes_per_signer")
		// A record of her first blob: its bytes are no longer pending.
		chain.must(ctx, mallory, apptest.AddRecordOf(mpid, categories[0], sumOf("m0"), size))
		if err := put(mallory, mpid, categories[3], "m3"); err != nil {
			t.Fatalf("upload after a record of an earlier one: %v", err)
		}
		for i := range 2 {
			if err := put(eve, epid, testCategory, fmt.Sprintf("e%d", i)); err != nil {
				t.Fatalf("eve's upload %d: %v", i, err)
			}
		}
		wantHTTP(t, put(eve, epid, testCategory, "e2"), http.StatusInsufficientStorage, fmt.Sprintf("pending_bytes_total) of %d bytes", 5*size))

		// Started again: five blobs are pending (the recorded one is not).
		stop(srv)
		srv = start()
		defer stop(srv)
		wantHTTP(t, put(eve, epid, testCategory, "e2"), http.StatusInsufficientStorage, fmt.Sprintf("hold %d bytes", 5*size))
		chain.must(ctx, eve, apptest.AddRecordOf(epid, testCategory, sumOf("e0"), size))
		if err := put(eve, epid, testCategory, "e2"); err != nil {
			t.Fatalf("upload after the restart and a record: %v", err)
		}
	}
	t.Run("fs", func(t *testing.T) {
		store, err := blobstore.OpenFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		run(t, store, "fs")
	})
	t.Run("MinIO", func(t *testing.T) {
		srv := miniotest.Start(t)
		store, err := blobstore.OpenMinIO(ctx, blobstore.MinIOConfig{
			Endpoint: srv.Endpoint, Bucket: "emrchain-quota", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		})
		if err != nil {
			t.Fatal(err)
		}
		run(t, store, "minio")
	})
}

// TestSidecarPatientsShareFollowsTotal: an app.toml that lowers
// pending_bytes_total without naming pending_bytes_patients gets half the
// total as the patients' bound, not the 32 GiB default above the total
// (which would bound nothing); one that names it keeps it.
func TestSidecarPatientsShareFollowsTotal(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		want        int64
	}{
		{"total lowered", "[sidecar]\npending_bytes_total = 1000\n", 500},
		{"total raised", "[sidecar]\npending_bytes_total = 1099511627776\n", sidecar.DefaultPendingBytesPatients},
		{"no total bound", "[sidecar]\npending_bytes_total = 0\n", sidecar.DefaultPendingBytesPatients},
		{"named", "[sidecar]\npending_bytes_total = 1000\npending_bytes_patients = 300\n", 300},
	} {
		home := t.TempDir()
		if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte(tc.table), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadSidecarConfig(home)
		if err != nil || c.PendingBytesPatients != tc.want {
			t.Errorf("%s: pending_bytes_patients %d, %v; want %d", tc.name, c.PendingBytesPatients, err, tc.want)
		}
	}
}

// TestSidecarDoesNotGateTheNode: blob storage must not gate consensus. A
// sidecar setting that is wrong stops start before the node starts; a blob
// store that cannot open (here: its directory lies under a regular file)
// leaves the node making blocks while the sidecar's address answers 503
// with the reason, and the sidecar starts once the store can open.
func TestSidecarDoesNotGateTheNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	bin := binary(t)
	// Long enough for the retries' backoff (1, 2, 4, 8 s) to reach the
	// moment the store can open.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	home := t.TempDir()
	rpcPort, sidecarPort := freeport.Get(t), freeport.Get(t)
	out, err := exec.Command(bin, "init", "--home", home, "--chain-id", "emr-sidecar-gate",
		"--rpc.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", rpcPort),
		"--p2p.laddr", fmt.Sprintf("tcp://127.0.0.1:%d", freeport.Get(t)),
		"--grpc.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--api.address", fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		"--sidecar.listen", fmt.Sprintf("127.0.0.1:%d", sidecarPort),
		"--timeout-commit", "200ms", "--empty-blocks-interval", "0s").CombinedOutput()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	setSidecar := func(edit func(*sidecarConfig)) {
		t.Helper()
		c, err := loadAppConfig(home)
		if err != nil {
			t.Fatal(err)
		}
		edit(&c.Sidecar)
		if err := writeAppConfig(home, c); err != nil {
			t.Fatal(err)
		}
	}

	// A bad setting: refused before CometBFT starts.
	setSidecar(func(c *sidecarConfig) {
		c.Backend = sidecarBackendMinIO
		c.MinIOEndpoint = "127.0.0.1:1"
		c.MinIOBucket = "b"
	})
	cmd := exec.CommandContext(ctx, bin, "start", "--home", home)
	cmd.Env = append(os.Environ(), envMinIOAccessKey+"=", envMinIOSecretKey+"=")
	out, err = cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("needs credentials")) || bytes.Contains(out, []byte("node started")) {
		t.Fatalf("start with a minio backend and no credentials: %v\n%s\nwant a refusal before the node starts", err, out)
	}

	// A store that cannot open yet.
	blocker := filepath.Join(home, "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	setSidecar(func(c *sidecarConfig) {
		c.Backend, c.MinIOEndpoint, c.MinIOBucket, c.Dir = sidecarBackendFS, "", "", filepath.Join(blocker, "blobs")
	})
	node := startNode(t, home, "gate.log")
	h, _ := waitHeight(ctx, t, node, rpcPort, 3)
	base := fmt.Sprintf("http://127.0.0.1:%d", sidecarPort)
	var health sidecar.Health
	if status := getJSON(ctx, t, base+"/healthz", &health); status != http.StatusServiceUnavailable || health.Status != "unavailable" || !strings.Contains(health.BackendError, "not a directory") {
		t.Fatalf("healthz while the store cannot open: %d %+v, want 503 saying why", status, health)
	}
	var refused sidecar.ErrorBody
	if status := getJSON(ctx, t, base+"/v1/blobs/"+strings.Repeat("00", 32)+"?record=00/1", &refused); status != http.StatusServiceUnavailable || refused.Code != "store_unavailable" {
		t.Fatalf("a GET while the store cannot open: %d %+v, want 503 store_unavailable", status, refused)
	}
	waitHeight(ctx, t, node, rpcPort, h+3)

	// The store can open: the sidecar starts without a restart.
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	waitHealthy(ctx, t, base, nil, nil)
	waitLog(ctx, t, node, "the sidecar has started")
	if err := node.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("node did not exit cleanly on SIGTERM: %v", err)
	}
}

// getJSON GETs url and decodes its JSON body into v; it returns the status.
func getJSON(ctx context.Context, t *testing.T, url string, v any) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %d, body not JSON: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// TestNotOpenServerHandsItsSocketOver: the 503 server gives its socket to
// the sidecar without closing it: the address (here a port the kernel
// chose) stays the same and is never free, and the 503 stops.
func TestNotOpenServerHandsItsSocketOver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	waiting := &notOpenServer{backend: sidecarBackendFS}
	waiting.setWhy(errors.New("the store is not there yet"))
	waiting.serve(ln)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("GET %s: %v", addr, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := get(); status != http.StatusServiceUnavailable || !strings.Contains(body, "the store is not there yet") {
		t.Fatalf("before the handover: %d %s", status, body)
	}
	// A blob request gets 503 without Retry-After: a client moves on to
	// another sidecar rather than wait on this one.
	resp, err := http.Get("http://" + addr + "/v1/blobs/" + strings.Repeat("00", 32) + "?record=00/1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "store_unavailable") || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("a blob request before the handover: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	released, err := waiting.release()
	if err != nil {
		t.Fatal(err)
	}
	if released.Addr().String() != addr {
		t.Fatalf("released %s, served %s", released.Addr(), addr)
	}
	if _, err := net.Listen("tcp", addr); err == nil {
		t.Fatal("the address was free after the handover")
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "sidecar") })}
	go func() { _ = srv.Serve(released) }()
	defer srv.Close()
	if status, body := get(); status != http.StatusOK || body != "sidecar" {
		t.Fatalf("after the handover: %d %s, want the sidecar's answer", status, body)
	}
	waiting.close() // nothing left to close
}

// TestLoopbackNode: which --node addresses the standalone sidecar counts
// as this machine's (others get a warning that their answers are trusted).
func TestLoopbackNode(t *testing.T) {
	for node, want := range map[string]bool{
		"tcp://127.0.0.1:26657": true, "http://localhost:26657": true, "tcp://[::1]:26657": true, "127.0.0.2:26657": true,
		"unix:///var/run/emrchain/rpc.sock": true, "tcp://0.0.0.0:26657": true,
		"tcp://10.0.0.2:26657": false, "https://node.hospital.example:443": false, "": false,
	} {
		if got := loopbackNode(node); got != want {
			t.Errorf("loopbackNode(%q) = %v, want %v", node, got, want)
		}
	}
}

// TestHeadAgeAgainstEmptyBlocks: a bound on the head's age that an idle
// chain would pass (no empty blocks, or empty blocks further apart) would
// make the sidecar refuse every request whenever the chain is quiet:
// start refuses it, naming both settings.
func TestHeadAgeAgainstEmptyBlocks(t *testing.T) {
	c := defaultSidecarConfig()
	for _, tc := range []struct {
		name     string
		empty    bool
		interval time.Duration
		maxAge   time.Duration
		want     string
	}{
		{"the defaults", true, 10 * time.Second, time.Minute, ""},
		{"continuous empty blocks", true, 0, time.Minute, ""},
		{"no empty blocks", false, 0, time.Minute, "create_empty_blocks = false"},
		{"no empty blocks, no bound", false, 0, 0, ""},
		{"empty blocks too far apart", true, 2 * time.Minute, time.Minute, "create_empty_blocks_interval"},
	} {
		c.MaxHeadAge = duration(tc.maxAge)
		cons := cmtcfg.DefaultConsensusConfig()
		cons.CreateEmptyBlocks, cons.CreateEmptyBlocksInterval = tc.empty, tc.interval
		err := checkHeadAge(c, cons)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// ageFiles moves the modification time of every file under dir back by d.
func ageFiles(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		old := info.ModTime().Add(-d)
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMinIOEndpointChecked: a MinIO endpoint with a path, another scheme
// or a bad port is refused when the config is read (and by testnet's
// --minio-addr), naming the key, not when the sidecar first dials.
func TestMinIOEndpointChecked(t *testing.T) {
	t.Setenv(envMinIOAccessKey, "ak")
	t.Setenv(envMinIOSecretKey, "sk")
	for ep, ok := range map[string]bool{
		"127.0.0.1:9000":          true,
		"minio.hospital.example":  true,
		"[::1]:9000":              true,
		"http://127.0.0.1:9000":   true,
		"https://minio.example":   true,
		"ftp://127.0.0.1:9000":    false,
		"http://127.0.0.1:9000/b": false,
		"127.0.0.1:9000/bucket":   false,
		"127.0.0.1:0":             false,
		"127.0.0.1:65536":         false,
		"127.0.0.1:http":          false,
		"::1":                     false,
		"user@minio.example:9000": false,
		":9000":                   false,
	} {
		c := defaultSidecarConfig()
		c.Backend, c.MinIOEndpoint, c.MinIOBucket = sidecarBackendMinIO, ep, "emrchain"
		err := c.resolve(t.TempDir())
		if ok && err != nil {
			t.Errorf("endpoint %q refused: %v", ep, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "minio_endpoint")) {
			t.Errorf("endpoint %q: %v, want it refused naming minio_endpoint", ep, err)
		}
	}
}

// sidecarConfigRoundTrip writes want as home's app.toml [sidecar] section
// and reads it back, which must give want again.
func sidecarConfigRoundTrip(t *testing.T, home string, want sidecarConfig) sidecarConfig {
	t.Helper()
	conf := defaultAppConfig()
	conf.Sidecar = want
	if err := writeAppConfig(home, conf); err != nil {
		t.Fatal(err)
	}
	got, err := loadSidecarConfig(home)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v %v\nwant %+v", got, err, want)
	}
	return got
}
