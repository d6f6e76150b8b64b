package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// transferEnv is a node whose in-process sidecar stores blobs in a real
// MinIO, and an emrcli home (test keyring, for speed) pointed at both.
type transferEnv struct {
	*cliEnv
	node   *clienttest.Node
	minio  *clienttest.MinIO
	bucket string
	dir    string // where test files live
}

const transferBucket = "emr-test-blobs"

func newTransferEnv(t *testing.T, chainID string, accessWindow time.Duration, initArgs ...string) *transferEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs emrchaind, emrcli and MinIO")
	}
	start := time.Now()
	mio := clienttest.StartMinIO(t)
	node := clienttest.StartNode(t, clienttest.NodeOptions{
		ChainID: chainID, InitArgs: initArgs, Configure: mio.ConfigureSidecar(transferBucket, accessWindow),
	})
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_KEYRING_BACKEND=test", "EMRCLI_SIDECAR=" + node.SidecarURL}
	e.ok("light", "init", "--genesis", node.Genesis)
	t.Logf("MinIO, node and binaries ready in %s", time.Since(start).Round(time.Millisecond))
	return &transferEnv{cliEnv: e, node: node, minio: mio, bucket: transferBucket, dir: t.TempDir()}
}

// file writes a test file and returns its path.
func (e *transferEnv) file(name string, content []byte) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func randomContent(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type uploadOut struct {
	Record uint64 `json:"record"`
	SHA256 string `json:"ciphertext_sha256"`
	Tx     struct {
		Code uint32 `json:"code"`
	} `json:"tx"`
}

// upload uploads content as from and returns the new record.
func (e *transferEnv) upload(from, pid, category, name string, content []byte) uploadOut {
	e.t.Helper()
	var out uploadOut
	e.json(&out, "upload", "--from", from, "--patient", pid, "--category", category, e.file(name, content))
	if out.Record == 0 || out.Tx.Code != 0 {
		e.t.Fatalf("upload %s: %+v", name, out)
	}
	return out
}

// download downloads a record as from into a fresh directory, checks the
// content and mode, and returns the path.
func (e *transferEnv) download(from, pid string, record uint64, want []byte, extra ...string) string {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "record.out")
	e.ok(append([]string{"download", "--from", from, "--patient", pid, "--record", fmt.Sprint(record), "-o", out}, extra...)...)
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, want) {
		e.t.Fatalf("download of record %d by %s: content differs (%v)", record, from, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		e.t.Fatalf("downloaded file mode %v, want 0600", fi.Mode())
	}
	return out
}

// refused runs a download that must fail with want in its error, and
// checks that nothing at all was written in the output's directory.
func (e *transferEnv) refused(want string, args ...string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	line := e.fails(1, want, append(args, "-o", filepath.Join(dir, "out"))...)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		e.t.Fatalf("a refused download left %d file(s) in the output directory", len(ents))
	}
	return line
}

func (e *transferEnv) register(from, key, role string) string {
	e.t.Helper()
	e.ok("keys", "add", key)
	e.ok("member", "register", "--from", from, "--key", key, "--role", role, "--credential", "LIC-"+key)
	return strings.TrimSpace(e.ok("keys", "show", key, "--address"))
}

// TestTransferFlow is issue 4's flow over a real node and a real MinIO,
// through the emrcli binary: a clinician with the write right uploads, a
// clinician with the read right downloads (verified, decrypted, 0600); a
// download is refused without a committed access event, outside the
// access window, to a suspended member and after revocation (whose key
// rotation re-wraps every record so the remaining grantees still read
// them); a record is shared with a study, anonymised (Safe Harbor), and
// the study's principal investigator decrypts it with no identifier left;
// non-FHIR content is refused for anonymised sharing; the patient's audit
// log lists every successful read.
func TestTransferFlow(t *testing.T) {
	const window = 5 * time.Second
	e := newTransferEnv(t, "emr-transfer-test", window,
		"--org", "dev-hospital:Development Hospital:hospital", "--org", "uni-research:University Research Institute:research",
		"--registrar", "dev-hospital:registrar", "--registrar", "uni-research:research-registrar")
	start := time.Now()
	e.ok("keys", "import-dev", e.node.RegistrarKey)
	e.ok("keys", "import-dev", filepath.Join(e.node.Home, "dev-keys", "research-registrar.json"))
	writer := e.register("registrar", "writer", "clinician")
	reader := e.register("registrar", "reader", "clinician")
	e.register("registrar", "sharer", "clinician")
	e.register("research-registrar", "pi", "researcher")
	e.ok("keys", "add", "alice")
	var enroll struct {
		PatientID string `json:"patient_id"`
	}
	e.json(&enroll, "patient", "enroll", "--from", "alice", "--name", "Zebulon Quixotic", "--birth-date", "1961-04-17")
	pid := enroll.PatientID
	until := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	e.ok("grant", "--from", "alice", "--to", "writer", "--rights", "read,write", "--until", until)
	e.ok("grant", "--from", "alice", "--to", "reader", "--rights", "read", "--until", until)

	// Upload as the writer, download as the reader.
	lab := randomContent(t, 1<<20+12345)
	up := e.upload("writer", pid, "lab-results", "cbc.bin", lab)
	if up.Record != 1 {
		t.Fatalf("first upload is record %d", up.Record)
	}
	reads := map[string][]uint64{} // successful reads: accessor -> records
	e.download("reader", pid, 1, lab)
	reads[reader] = append(reads[reader], 1)
	// Within the access window the same access event serves a retry.
	e.download("reader", pid, 1, lab, "--reuse-access")
	// A download through a sidecar that is not there fails before it logs
	// a read, and says so (it used to log the read, then fail: session 36,
	// whose TestDownloadRefusedByEverySidecarSaysRetryCannotHelp has the
	// hints of a read logged and not served).
	e.fails(1, "so no read was logged", "download", "--from", "reader", "--patient", pid, "--record", "1",
		"-o", filepath.Join(t.TempDir(), "lost.out"), "--sidecar", closedAddr(t))
	// A reader cannot upload (no write right): the sidecar refuses, no record.
	e.fails(1, "may not upload", "upload", "--from", "reader", "--patient", pid, "--category", "lab-results", e.file("r.bin", []byte("x")))
	// A category the chain does not know is refused before anything is
	// encrypted or stored (it used to leave the ciphertext on the sidecar).
	line := e.fails(1, "unknown category", "upload", "--from", "writer", "--patient", pid, "--category", "labs", e.file("labs.bin", []byte("x")))
	if !strings.Contains(line, "nothing was uploaded") || !strings.Contains(line, "lab-results") {
		t.Fatalf("upload of an unknown category: %s", line)
	}

	// Refused without a committed access event.
	note := []byte("clinical note v1")
	if up := e.upload("writer", pid, "clinical-notes", "note.txt", note); up.Record != 2 {
		t.Fatalf("second upload is record %d", up.Record)
	}
	line = e.refused("no committed access event", "download", "--from", "reader", "--patient", pid, "--record", "2", "--reuse-access")
	t.Logf("without an access event: %s", line)

	// Refused outside the access window (measured in block time).
	time.Sleep(window + 1500*time.Millisecond)
	line = e.refused("expired", "download", "--from", "reader", "--patient", pid, "--record", "1", "--reuse-access")
	t.Logf("outside the window: %s", line)

	// Refused to a suspended member: by the chain (no access event) and by
	// the sidecar (even with a fresh event from before the suspension).
	e.download("reader", pid, 2, note)
	reads[reader] = append(reads[reader], 2)
	e.ok("member", "suspend", "--from", "registrar", "reader")
	line = e.refused("suspended", "download", "--from", "reader", "--patient", pid, "--record", "2")
	t.Logf("suspended (chain): %s", line)
	line = e.refused("suspended", "download", "--from", "reader", "--patient", pid, "--record", "2", "--reuse-access")
	t.Logf("suspended (sidecar): %s", line)
	e.ok("member", "reactivate", "--from", "registrar", "reader")

	// Research sharing: a study of the research organization, led by pi
	// (the study key is pi's encryption key); a share consent that demands
	// anonymisation.
	e.ok("study", "register", "--from", "research-registrar", "--id", "cardio-2026", "--title", "Hypertension outcomes", "--pi", "pi")
	e.ok("grant", "--from", "alice", "--to", "sharer", "--rights", "share", "--study", "cardio-2026", "--anonymise", "--until", until)
	bundle, err := os.ReadFile("testdata/synthetic-fhir-bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	if up := e.upload("writer", pid, "history-and-physical", "bundle.json", bundle); up.Record != 3 {
		t.Fatalf("bundle upload is record %d", up.Record)
	}
	// Non-FHIR content cannot be anonymised: refused, nothing shared.
	line = e.fails(1, "not a FHIR R4 JSON resource", "share", "--from", "sharer", "--patient", pid, "--record", "1", "--study", "cardio-2026")
	t.Logf("non-FHIR share: %s", line)
	if !strings.Contains(line, "nothing was shared") {
		t.Fatalf("non-FHIR refusal does not say nothing was shared: %s", line)
	}
	// A share right for another study does not do.
	e.fails(1, "is for study \"cardio-2026\"", "share", "--from", "sharer", "--patient", pid, "--record", "3", "--study", "other-study")
	// Nor does no consent at all.
	e.fails(1, "has granted you nothing", "share", "--from", "pi", "--patient", pid, "--record", "3", "--study", "cardio-2026")
	var shared struct {
		Share      uint64 `json:"share"`
		Anonymised bool   `json:"anonymised"`
		SHA256     string `json:"ciphertext_sha256"`
		Deid       *struct {
			Removed int `json:"removed"`
		} `json:"deidentification"`
	}
	e.json(&shared, "share", "--from", "sharer", "--patient", pid, "--record", "3", "--study", "cardio-2026")
	if shared.Share != 1 || !shared.Anonymised || shared.Deid == nil || shared.Deid.Removed == 0 {
		t.Fatalf("share: %+v", shared)
	}
	var ps struct {
		ShareCount uint64 `json:"share_count"`
	}
	e.json(&ps, "patient", "show", "--patient", pid)
	if ps.ShareCount != 1 {
		t.Fatalf("share count %d, want 1 (the refused shares must have recorded nothing)", ps.ShareCount)
	}
	// The principal investigator finds the share by study, and the
	// patient sees it in its own list (both verified).
	type shareList struct {
		Shares []struct {
			PatientID  string `json:"patient_id"`
			Sequence   uint64 `json:"sequence"`
			Record     uint64 `json:"record"`
			StudyID    string `json:"study_id"`
			StudySeq   uint64 `json:"study_sequence"`
			Anonymised bool   `json:"anonymised"`
			Sharer     string `json:"sharer"`
		} `json:"shares"`
		Verified bool `json:"verified"`
	}
	for _, args := range [][]string{{"--study", "cardio-2026"}, {"--from", "alice"}, {"--patient", pid, "--study", "cardio-2026"}} {
		var list shareList
		e.json(&list, append([]string{"shares"}, args...)...)
		if !list.Verified || len(list.Shares) != 1 || list.Shares[0].PatientID != pid || list.Shares[0].Sequence != 1 ||
			list.Shares[0].Record != 3 || list.Shares[0].StudyID != "cardio-2026" || list.Shares[0].StudySeq != 1 || !list.Shares[0].Anonymised {
			t.Fatalf("shares %v: %+v, want share 1 of record 3 of %s, the study's first, anonymised, verified", args, list, pid)
		}
	}
	var list shareList
	if e.json(&list, "shares", "--from", "alice", "--study", "other-study"); len(list.Shares) != 0 {
		t.Fatalf("alice's shares with other-study: %+v, want none", list)
	}
	e.fails(1, `no study "other-study"`, "shares", "--study", "other-study")
	var st struct {
		Shares uint64 `json:"share_count"`
	}
	if e.json(&st, "study", "show", "cardio-2026"); st.Shares != 1 {
		t.Fatalf("study show: %d records shared, want 1", st.Shares)
	}
	e.fails(2, "--study", "shares", "--study", "Not An Id")
	e.fails(2, "say whose shares", "shares")
	// The principal investigator downloads and decrypts the share.
	sharedOut := filepath.Join(t.TempDir(), "shared.json")
	e.ok("download", "--from", "pi", "--patient", pid, "--share", "1", "-o", sharedOut)
	// Again within the access window, without logging another read.
	e.ok("download", "--from", "pi", "--patient", pid, "--share", "1", "--reuse-access", "--force", "-o", sharedOut)
	anon, err := os.ReadFile(sharedOut)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(anon, &doc); err != nil || doc["resourceType"] != "Bundle" {
		t.Fatalf("shared document is not a FHIR Bundle: %v\n%s", err, anon)
	}
	for _, keep := range []string{`"718-7"`, `"38341003"`, `13.7`, `"1961"`} {
		if !bytes.Contains(anon, []byte(keep)) {
			t.Errorf("de-identified bundle lost clinical content %s", keep)
		}
	}
	for _, id := range plantedIdentifiers {
		if bytes.Contains(bytes.ToLower(anon), bytes.ToLower([]byte(id))) {
			t.Errorf("Safe Harbor identifier %q is in what the researcher decrypted", id)
		}
	}
	// Without the study key, emrcli refuses before fetching anything; and
	// the sidecar serves the share to nobody outside the study's
	// organization (asked directly, with the reader's own key).
	e.refused("is not it", "download", "--from", "reader", "--patient", pid, "--share", "1")
	kr, err := keyring.Open(keyring.BackendTest, e.home, nil)
	if err != nil {
		t.Fatal(err)
	}
	readerKey, err := kr.Get("reader")
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := hex.DecodeString(shared.SHA256)
	pidBytes, _ := hex.DecodeString(pid)
	_, err = sidecar.NewClient(e.node.SidecarURL, readerKey, nil).Get(context.Background(), sidecar.ShareRef(pidBytes, shared.Share), [32]byte(sum), io.Discard, nil)
	var se *sidecar.Error
	if !errors.As(err, &se) || se.StatusCode != 403 || !strings.Contains(se.Reason, "neither its principal investigator nor a researcher") {
		t.Fatalf("the sidecar served a share to a clinician outside the study: %v", err)
	}

	// Revoke the reader: two rotations, and only the last re-wraps the three
	// records, straight from version 1 to 3.
	out := e.ok("revoke", "--from", "alice", "--to", "reader")
	for _, want := range []string{"rotated the patient key: version 1 -> 2", "record keys: re-wrapped by the next rotation",
		"rotated the patient key: version 2 -> 3", "record keys re-wrapped under version 3: 3 of 3 records"} {
		if !strings.Contains(out, want) {
			t.Fatalf("revoke lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "re-wrapped under version 2") {
		t.Fatalf("the rotation to version 2 re-wrapped records its successor re-wraps again:\n%s", out)
	}
	line = e.refused("revoked", "download", "--from", "reader", "--patient", pid, "--record", "1")
	t.Logf("after revocation: %s", line)
	// The writer's consent carries the new key; the re-wrapped records open.
	e.download("writer", pid, 1, lab)
	reads[writer] = append(reads[writer], 1)
	// New records are written under version 3 and read by the patient.
	v2 := []byte("written after the rotation")
	if up := e.upload("writer", pid, "lab-results", "v2.txt", v2); up.Record != 4 {
		t.Fatalf("upload after rotation is record %d", up.Record)
	}
	e.download("alice", pid, 4, v2)
	e.download("alice", pid, 3, bundle)
	alice := strings.TrimSpace(e.ok("keys", "show", "alice", "--address"))
	reads[alice] = append(reads[alice], 4, 3)

	// Revoking the sharer's consent stops the study's downloads of what it
	// shared.
	e.ok("revoke", "--from", "alice", "--to", "sharer")
	line = e.refused("the consent this share was made under no longer stands", "download", "--from", "pi", "--patient", pid, "--share", "1")
	t.Logf("a share after its consent's revocation: %s", line)
	// The sidecar refuses it too, for the consent, whatever the age of the
	// investigator's read logged before the revocation.
	piKey, err := kr.Get("pi")
	if err != nil {
		t.Fatal(err)
	}
	_, err = sidecar.NewClient(e.node.SidecarURL, piKey, nil).Get(context.Background(), sidecar.ShareRef(pidBytes, shared.Share), [32]byte(sum), io.Discard, nil)
	if !errors.As(err, &se) || se.StatusCode != 403 || !strings.Contains(se.Reason, "no longer stands") {
		t.Fatalf("the sidecar served a share whose consent was revoked: %v", err)
	}

	// The patient's audit log lists every successful read.
	var audit struct {
		Reads []struct {
			Accessor     string   `json:"accessor"`
			Purpose      string   `json:"purpose"`
			Records      []uint64 `json:"records"`
			Shares       []uint64 `json:"shares"`
			ShareRecords []uint64 `json:"share_records"`
		} `json:"reads"`
		Verified bool `json:"verified"`
	}
	e.json(&audit, "audit", "--from", "alice")
	if !audit.Verified {
		t.Fatal("audit not verified")
	}
	logged := map[string]bool{}
	for _, r := range audit.Reads {
		for _, rec := range r.Records {
			logged[fmt.Sprintf("%s/%d", r.Accessor, rec)] = true
		}
	}
	for who, recs := range reads {
		for _, rec := range recs {
			if !logged[fmt.Sprintf("%s/%d", who, rec)] {
				t.Errorf("audit log lacks the successful read of record %d by %s: %+v", rec, who, audit.Reads)
			}
		}
	}
	// The investigator's download of share 1 (of record 3) is on it too.
	pi := strings.TrimSpace(e.ok("keys", "show", "pi", "--address"))
	found := 0
	for _, r := range audit.Reads {
		if r.Accessor == pi && r.Purpose == "research" && slices.Equal(r.Shares, []uint64{1}) && slices.Equal(r.ShareRecords, []uint64{3}) {
			found++
		}
	}
	if found != 1 {
		t.Errorf("audit log has %d reads of share 1 by the investigator, want 1 (the second reused it): %+v", found, audit.Reads)
	}

	// Patients whose enrolment committed unseen (--async): bob's first
	// upload and download learn from the chain that bob owns the patient
	// (not a grantee without consent); carol's second enroll is told it is
	// done. Both keys then keep the id. dave's upload over --no-verify
	// is refused, as a member's is (the key version it would wrap under
	// is the node's word), and the unverified answer that dave owns the
	// patient is not kept.
	unseen := map[string]string{}
	for _, name := range []string{"bob", "carol", "dave"} {
		e.ok("keys", "add", name)
		var out struct {
			PatientID string `json:"patient_id"`
		}
		e.json(&out, "patient", "enroll", "--from", name, "--name", name+" Async", "--birth-date", "1970-01-01", "--async")
		unseen[name] = out.PatientID
		for i := 0; e.run("patient", "show", "--patient", out.PatientID).code != 0; i++ {
			if i == 100 {
				t.Fatalf("%s's async enrolment not committed", name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	own := []byte("bob's own record")
	e.upload("bob", unseen["bob"], "lab-results", "own.txt", own)
	e.download("bob", unseen["bob"], 1, own)
	if out := e.ok("patient", "enroll", "--from", "carol", "--name", "carol Async", "--birth-date", "1970-01-01"); !strings.Contains(out, "already enrolled") || !strings.Contains(out, unseen["carol"]) {
		t.Fatalf("enrolling again after an unseen enrolment: %s", out)
	}
	e.fails(1, "needs verified reads", "upload", "--no-verify", "--from", "dave", "--patient", unseen["dave"], "--category", "lab-results", e.file("dave.txt", own))
	for name, pid := range unseen {
		if out := e.ok("keys", "show", name); strings.Contains(out, pid) != (name != "dave") {
			t.Fatalf("keys show %s after learning its patient (dave unverified): %s; patient id %s", name, out, pid)
		}
	}
	t.Logf("transfer flow took %s", time.Since(start).Round(time.Millisecond))
}

// plantedIdentifiers are the Safe Harbor identifiers of
// testdata/synthetic-fhir-bundle.json (names, MRN, SSN, NPI, licence,
// phones, e-mail, URL, street, city, county, ZIP, full dates).
var plantedIdentifiers = []string{
	"Zebulon", "Quixotic", "Archibald", "Philippa", "Featherstonehaugh", "Brightwater", "Octavia",
	"MRN-7734129", "999-12-3456", "NPI-4455667788", "LIC-55512", "ENC-20240309-8812",
	"555-0142-7788", "555-0199-2211", "555-0177-3344", "zebulon.q@example.org", "patient-portal.example.org",
	"Elmwood", "Springfieldtown", "Hollowmere", "02134", "Wimbledonshire", "Saint Ignatius",
	"1961-04-17", "2024-03-09", "2019-11-23", "2019-11-25", "bundle-zq-4471", "zq-patient",
}

// TestStorageFaults: a storage that flips bytes is caught by the hash
// check (nothing written); MinIO stopped mid-test makes an upload fail
// cleanly with no record on chain; once restarted the same upload succeeds
// and nothing committed is lost.
func TestStorageFaults(t *testing.T) {
	e := newTransferEnv(t, "emr-faults-test", 10*time.Minute)
	start := time.Now()
	e.ok("keys", "import-dev", e.node.RegistrarKey)
	e.register("registrar", "writer", "clinician")
	e.ok("keys", "add", "alice")
	var enroll struct {
		PatientID string `json:"patient_id"`
	}
	e.json(&enroll, "patient", "enroll", "--from", "alice", "--name", "Ada Lovelace", "--birth-date", "1815-12-10")
	pid := enroll.PatientID
	e.ok("grant", "--from", "alice", "--to", "writer", "--rights", "read,write", "--until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))

	first := randomContent(t, 300<<10)
	up1 := e.upload("writer", pid, "imaging", "scan-1.bin", first)

	// MinIO goes down: the upload fails with the reason, no transaction.
	e.minio.Stop()
	second := randomContent(t, 200<<10)
	path := e.file("scan-2.bin", second)
	t0 := time.Now()
	line := e.fails(1, "no record was added", "upload", "--from", "writer", "--patient", pid, "--category", "imaging", path)
	t.Logf("upload with MinIO down failed in %s: %s", time.Since(t0).Round(time.Millisecond), line)
	var recs struct {
		Records []struct {
			Sequence uint64 `json:"sequence"`
		} `json:"records"`
	}
	e.json(&recs, "records", "--patient", pid)
	if len(recs.Records) != 1 {
		t.Fatalf("%d records on chain after the failed upload, want 1", len(recs.Records))
	}

	// MinIO is back (same data directory): the same upload succeeds and the
	// record committed before the outage is intact.
	e.minio.Start(t)
	up2 := e.upload("writer", pid, "imaging", "scan-2.bin", second)
	if up2.Record != 2 {
		t.Fatalf("upload after the restart is record %d, want 2", up2.Record)
	}
	e.download("writer", pid, 1, first)
	// Sidecars are tried in order: a dead one first is skipped.
	e.download("alice", pid, 2, second, "--sidecar", "http://127.0.0.1:1", "--sidecar", e.node.SidecarURL)

	// Memory does not grow with the file: the peak RSS of emrcli uploading
	// and downloading 1 MiB and 64 MiB (the process: Go runtime, light
	// client, copy buffers, one 64 KiB cipher segment).
	if runtime.GOOS == "linux" { // Maxrss is in KiB on Linux
		var rss [2][2]int64
		for i, n := range []int{1 << 20, 64 << 20} {
			content := randomContent(t, n)
			rss[i][0] = e.maxRSS("upload", "--from", "writer", "--patient", pid, "--category", "imaging", e.file(fmt.Sprintf("big-%d.bin", i), content))
			seq := fmt.Sprint(3 + i)
			out := filepath.Join(t.TempDir(), "big.out")
			rss[i][1] = e.maxRSS("download", "--from", "writer", "--patient", pid, "--record", seq, "-o", out)
			if got, _ := os.ReadFile(out); !bytes.Equal(got, content) {
				t.Fatalf("%d-byte round trip differs", n)
			}
		}
		t.Logf("emrcli peak RSS: upload 1 MiB %d KiB, 64 MiB %d KiB; download 1 MiB %d KiB, 64 MiB %d KiB",
			rss[0][0], rss[1][0], rss[0][1], rss[1][1])
		for j, what := range []string{"upload", "download"} {
			if growth := rss[1][j] - rss[0][j]; growth > 16<<10 {
				t.Errorf("%s: peak RSS grew by %d KiB from 1 MiB to 64 MiB: memory is not flat in file size", what, growth)
			}
		}
	}

	// Tampering in storage: flip one byte of record 1's object in MinIO.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mc := e.minio.Client(t)
	pidBytes, err := hex.DecodeString(pid)
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	if _, err := hex.Decode(sum[:], []byte(up1.SHA256)); err != nil {
		t.Fatal(err)
	}
	object := "blobs/" + sidecar.BlobKey(pidBytes, "imaging", sum).String()
	obj, err := mc.GetObject(ctx, e.bucket, object, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || len(blob) == 0 {
		t.Fatalf("read %s from MinIO: %d bytes, %v", object, len(blob), err)
	}
	blob[len(blob)/3] ^= 0x40
	if _, err := mc.PutObject(ctx, e.bucket, object, bytes.NewReader(blob), int64(len(blob)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// The sidecar cuts the transfer short and drops its copy; with no peer
	// to read an intact one from, the next round's answer is a 404, and
	// the error gives both.
	line = e.refused("the transfer was cut short",
		"download", "--from", "writer", "--patient", pid, "--record", "1")
	if !strings.Contains(line, "not stored on this sidecar") {
		t.Fatalf("tampered storage: %s; want the retry's 404 too", line)
	}
	if _, err := mc.StatObject(ctx, e.bucket, object, minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("the sidecar kept its damaged copy in MinIO: %v", err)
	}
	t.Logf("tampered storage: %s", line)
	// Record 2 is untouched.
	e.download("writer", pid, 2, second)
	t.Logf("storage faults took %s", time.Since(start).Round(time.Millisecond))
}
