package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clienttest.Cleanup()
	os.Exit(code)
}

// cliEnv runs the built emrcli against one home.
type cliEnv struct {
	t    *testing.T
	bin  string
	home string
	env  []string
}

type result struct {
	stdout, stderr string
	code           int
}

func (e *cliEnv) run(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), e.env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("emrcli %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errOut.String(), code}
}

// ok runs a command that must succeed and returns its stdout.
func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("emrcli %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with code, printing one "Error:"
// line that contains want, and nothing on stdout.
func (e *cliEnv) fails(code int, want string, args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	stderr := strings.TrimRight(r.stderr, "\n")
	if r.code != code || !strings.Contains(stderr, want) {
		e.t.Fatalf("emrcli %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), r.code, r.stderr, code, want)
	}
	lines := strings.Split(stderr, "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "Error: ") || strings.Contains(last, "\n") {
		e.t.Fatalf("emrcli %s: error is not one \"Error:\" line: %q", strings.Join(args, " "), r.stderr)
	}
	if strings.TrimSpace(r.stdout) != "" {
		e.t.Fatalf("emrcli %s failed but printed output: %q", strings.Join(args, " "), r.stdout)
	}
	return last
}

func (e *cliEnv) json(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("emrcli %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// getenv is the value of the environment variable name in e's commands.
func (e *cliEnv) getenv(name string) string {
	for _, kv := range e.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// enrollWithDataKey enrolls key name as a patient (Ada Lovelace) and
// writes a data key file for add-record: the patient id and the file.
func (e *cliEnv) enrollWithDataKey(name string) (pid, keyFile string) {
	e.t.Helper()
	var enroll struct {
		PatientID string `json:"patient_id"`
	}
	e.json(&enroll, "patient", "enroll", "--from", name, "--name", "Ada Lovelace", "--birth-date", "1815-12-10")
	keyFile = filepath.Join(e.home, name+"-data.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("a5", 32)), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return enroll.PatientID, keyFile
}

// unwrapDataKey is the data key of a patient's record, unwrapped with the
// KEK the patient's key (name, in the emrcli home) holds for the record's
// key version.
func (e *cliEnv) unwrapDataKey(name, pidHex string, seq uint64) []byte {
	e.t.Helper()
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Node: e.getenv("EMRCLI_NODE")})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	pid, _ := hex.DecodeString(pidHex)
	rec, err := c.Record(ctx, pid, seq)
	if err != nil {
		e.t.Fatal(err)
	}
	kr, err := keyring.Open(keyring.BackendFile, e.home, func(keyring.Purpose, string) ([]byte, error) {
		return []byte(e.getenv("EMRCLI_PASSPHRASE")), nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	k, err := kr.Get(name)
	if err != nil {
		e.t.Fatal(err)
	}
	kek, ok := k.KEK(rec.KeyVersion)
	if !ok {
		e.t.Fatalf("key %s holds no KEK version %d", name, rec.KeyVersion)
	}
	dk, err := crypto.UnwrapKey(kek, rec.WrappedFileKey, crypto.FileKeyAAD(pid, rec.Category, rec.KeyVersion))
	if err != nil {
		e.t.Fatalf("unwrap record %d's data key: %v", seq, err)
	}
	return dk
}

// TestFlow runs the whole consent flow through the emrcli binary against
// a real single-validator emrchaind: a registrar registers a clinician; a
// patient enrolls and grants read+write on lab-results until a date; the
// clinician adds a record and reads it; the patient sees the read in the
// audit log, revokes, and the clinician's next read is refused.
func TestFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	start := time.Now()
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-cli-test"})
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_PASSPHRASE=correct horse battery", "EMRCLI_KEYRING_BACKEND="}
	t.Logf("node and binaries ready in %s", time.Since(start).Round(time.Millisecond))

	// Before a root of trust exists, queries refuse to run unverified.
	e.fails(1, "light init", "params")
	out := e.ok("light", "init", "--genesis", node.Genesis, "--sidecar", "127.0.0.1:7171")
	if !strings.Contains(out, "Trusting emr-cli-test at height 1,") || !strings.Contains(out, "Blob sidecars: http://127.0.0.1:7171") {
		t.Fatalf("light init: %s", out)
	}
	if conf, err := os.ReadFile(filepath.Join(e.home, "config.json")); err != nil || !strings.Contains(string(conf), `"sidecars": [`) {
		t.Fatalf("config.json after light init --sidecar: %s (%v)", conf, err)
	}
	e.fails(1, "already trusts", "light", "init", "--genesis", node.Genesis)
	// A new root that does not verify leaves the old one in place.
	before := e.ok("light", "status", "--json")
	e.fails(1, "", "light", "init", "--force", "--height", "1", "--hash", strings.Repeat("ab", 32))
	var was, is struct {
		Height int64  `json:"trusted_height"`
		Hash   string `json:"trusted_hash"`
	}
	if err := json.Unmarshal([]byte(before), &was); err != nil || json.Unmarshal([]byte(e.ok("light", "status", "--json")), &is) != nil || is != was || was.Height != 1 {
		t.Fatalf("the root of trust after a failed --force: %+v, before %+v (%v)", is, was, err)
	}
	// A root of trust that no longer reads is not replaced without --force.
	trustFile := filepath.Join(e.home, "light", "trust.json")
	trusted, err := os.ReadFile(trustFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trustFile, bytes.Replace(trusted, []byte(`"hash"`), []byte(`"hash": "not hex", "old_hash"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	e.fails(1, "pass --force", "light", "init", "--genesis", node.Genesis)
	if err := os.WriteFile(trustFile, trusted, 0o600); err != nil {
		t.Fatal(err)
	}
	// Moving to another chain's genesis drops the witnesses config.json
	// keeps for the old one (here unreachable: keeping them would fail).
	configFile := filepath.Join(e.home, "config.json")
	config, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(configFile, []byte(`{"chain_id": "emr-old-chain", "witnesses": ["http://127.0.0.1:1"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("light", "init", "--force", "--genesis", node.Genesis); !strings.Contains(out, "Dropped the witnesses of emr-old-chain (http://127.0.0.1:1)") {
		t.Fatalf("light init onto another chain: %s", out)
	}
	if now, err := os.ReadFile(configFile); err != nil || strings.Contains(string(now), "127.0.0.1:1") {
		t.Fatalf("config.json after the move: %s (%v): the old witnesses stay", now, err)
	}
	if err := os.WriteFile(configFile, config, 0o600); err != nil {
		t.Fatal(err)
	}

	// Keys. A dev key file given to import, or a node's own key given to
	// import-dev, is told where it belongs.
	e.fails(2, "import it with emrcli keys import-dev", "keys", "import", "registrar", node.RegistrarKey)
	e.fails(2, "CometBFT key of a node", "keys", "import-dev", filepath.Join(node.Home, "config", "node_key.json"))
	e.ok("keys", "import-dev", node.RegistrarKey)
	e.ok("keys", "add", "clinician")
	e.ok("keys", "add", "alice")
	clinician := strings.TrimSpace(e.ok("keys", "show", "clinician", "--address"))
	// A copy of alice's key from before it held a KEK, for a second device.
	aliceCopy := filepath.Join(t.TempDir(), "alice.key")
	exporter := &cliEnv{t: t, bin: e.bin, home: e.home, env: append(slices.Clone(e.env), "EMRCLI_EXPORT_PASSPHRASE=copy of alice")}
	exporter.ok("keys", "export", "alice", "--output", aliceCopy)

	// The registrar registers the clinician.
	var reg struct {
		Address string `json:"address"`
		Tx      struct {
			Hash     string `json:"hash"`
			Height   int64  `json:"height"`
			Code     uint32 `json:"code"`
			Verified bool   `json:"verified"`
		} `json:"tx"`
	}
	e.json(&reg, "member", "register", "--from", "registrar", "--key", "clinician", "--role", "clinician", "--credential", "GMC-1234")
	if reg.Address != clinician || reg.Tx.Height <= 0 || reg.Tx.Code != 0 || !reg.Tx.Verified {
		t.Fatalf("member register: %+v", reg)
	}
	out = e.ok("tx", "status", reg.Tx.Hash)
	if !strings.Contains(out, fmt.Sprintf("height %d, code 0 (verified)", reg.Tx.Height)) {
		t.Fatalf("tx status: %s", out)
	}
	out = e.ok("member", "show", "clinician")
	for _, want := range []string{clinician, "clinician", "dev-hospital", "GMC-1234", "active", "verified against"} {
		if !strings.Contains(out, want) {
			t.Fatalf("member show lacks %q:\n%s", want, out)
		}
	}

	// The patient enrolls and grants.
	var enroll struct {
		PatientID string `json:"patient_id"`
	}
	e.json(&enroll, "patient", "enroll", "--from", "alice", "--name", "Ada  LOVELACE", "--birth-date", "1815-12-10")
	pid := enroll.PatientID
	if len(pid) != 64 {
		t.Fatalf("patient id %q", pid)
	}
	until := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	// A right named twice is granted, and shown, once.
	out = e.ok("grant", "--from", "alice", "--to", "clinician", "--rights", "read,write,read", "--categories", "lab-results", "--until", until)
	if !strings.Contains(out, "granted "+clinician+" read+write on lab-results until "+until) {
		t.Fatalf("grant: %s", out)
	}
	// A grant replaces the consent whole: one that would take a right
	// away is refused, saying what, unless --replace; one that only adds
	// (here: time) goes through and says what it replaced.
	e.fails(2, "would take away the write right", "grant", "--from", "alice", "--to", "clinician", "--rights", "read", "--categories", "lab-results", "--until", until)
	later := time.Now().AddDate(1, 1, 0).Format("2006-01-02")
	out = e.ok("grant", "--from", "alice", "--to", "clinician", "--rights", "read,write", "--categories", "lab-results", "--until", later)
	if !regexp.MustCompile(`it replaces: read\+write on lab-results (from \S+ )?until ` + until).MatchString(out) {
		t.Fatalf("grant extending the consent: %s", out)
	}
	out = e.ok("grant", "--from", "alice", "--to", "clinician", "--rights", "read,write", "--categories", "lab-results", "--until", until, "--replace")
	if !regexp.MustCompile(`it replaces: read\+write on lab-results (from \S+ )?until ` + later).MatchString(out) {
		t.Fatalf("grant --replace: %s", out)
	}
	// The clinician sees the consent it holds, all pages or one.
	if out = e.ok("grants", "clinician"); !strings.Contains(out, pid) || !strings.Contains(out, "read,write") {
		t.Fatalf("grants: %s", out)
	}
	var held struct {
		Permissions []struct {
			PatientID string `json:"patient_id"`
		} `json:"permissions"`
		Next     string `json:"next"`
		Verified bool   `json:"verified"`
	}
	e.json(&held, "grants", "clinician", "--limit", "1")
	if len(held.Permissions) != 1 || held.Permissions[0].PatientID != pid || held.Next != "" || !held.Verified {
		t.Fatalf("grants --limit 1 --json: %+v", held)
	}
	e.json(&held, "grants", "clinician", "--after", pid)
	if len(held.Permissions) != 0 {
		t.Fatalf("grants --after the only patient: %+v", held)
	}

	// The clinician adds a record and reads it.
	sum := sha256.Sum256([]byte("ciphertext of a lab report"))
	var added struct {
		Record uint64 `json:"record"`
	}
	dataKey := bytes.Repeat([]byte{0x5a}, 32) // what the ciphertext was encrypted with
	keyFile := filepath.Join(e.home, "lab-1.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(dataKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.fails(2, "--data-key-file", "add-record", "--from", "clinician", "--patient", pid, "--category", "lab-results",
		"--sha256", hex.EncodeToString(sum[:]), "--size", "4096", "--object-key", "blobs/lab-1")
	// Unverified, a member wraps nothing under the key its consent
	// carries: the envelope would come on the node's word.
	e.fails(1, "needs verified reads", "add-record", "--no-verify", "--from", "clinician", "--patient", pid, "--category", "lab-results",
		"--sha256", hex.EncodeToString(sum[:]), "--size", "4096", "--object-key", "blobs/lab-1", "--data-key-file", keyFile)
	e.json(&added, "add-record", "--from", "clinician", "--patient", pid, "--category", "lab-results",
		"--sha256", hex.EncodeToString(sum[:]), "--size", "4096", "--object-key", "blobs/lab-1", "--data-key-file", keyFile)
	if added.Record != 1 {
		t.Fatalf("add-record: record %d", added.Record)
	}
	// The record wraps the data key given, under the patient's KEK: the
	// patient unwraps it.
	if got := e.unwrapDataKey("alice", pid, 1); !bytes.Equal(got, dataKey) {
		t.Fatalf("record 1 wraps the data key %x, not the one the ciphertext was encrypted with (%x)", got, dataKey)
	}
	out = e.ok("read", "--from", "clinician", "--patient", pid, "--record", "1")
	for _, want := range []string{"read logged (treatment)", hex.EncodeToString(sum[:]), "blobs/lab-1", "lab-results"} {
		if !strings.Contains(out, want) {
			t.Fatalf("read lacks %q:\n%s", want, out)
		}
	}
	// A category the grant does not cover is refused by the chain.
	e.fails(1, "not granted", "add-record", "--from", "clinician", "--patient", pid, "--category", "imaging",
		"--sha256", hex.EncodeToString(sum[:]), "--size", "1", "--object-key", "x", "--data-key-file", keyFile)

	// The patient sees the read in the audit log.
	out = e.ok("audit", "--from", "alice")
	auditLine := regexp.MustCompile(clinician + ` \(clinician\)\s+dev-hospital\s+clinician\s+treatment\s+1\s+\d+`)
	if !strings.Contains(out, "WHEN") || !auditLine.MatchString(out) {
		t.Fatalf("audit does not show the clinician's read:\n%s", out)
	}
	// It says which state it shows: a node may serve an older one.
	if !regexp.MustCompile(`\(state at height \d+, verified against the light-client-verified header \d+\)`).MatchString(out) {
		t.Fatalf("audit does not say the height it read:\n%s", out)
	}
	var audit struct {
		Reads []struct {
			Accessor, Organization, Role, Purpose string
			Records                               []uint64
		} `json:"reads"`
		Verified bool   `json:"verified"`
		Height   int64  `json:"height"`
		Header   string `json:"verified_header_time"`
	}
	e.json(&audit, "audit", "--patient", pid)
	if len(audit.Reads) != 1 || audit.Reads[0].Accessor != clinician || audit.Reads[0].Role != "clinician" || !audit.Verified ||
		audit.Height < 1 || audit.Header == "" {
		t.Fatalf("audit --json: %+v", audit)
	}
	testAuditFollow(t, e, pid, clinician)
	// A second record naming the same ciphertext (an alias) is flagged.
	e.ok("add-record", "--from", "clinician", "--patient", pid, "--category", "lab-results",
		"--sha256", hex.EncodeToString(sum[:]), "--size", "4096", "--object-key", "blobs/lab-1-again", "--data-key-file", keyFile)
	out = e.ok("records", "--from", "alice")
	if !strings.Contains(out, "lab-results") || !strings.Contains(out, "note: record 2 names the ciphertext of record 1") {
		t.Fatalf("records: %s", out)
	}
	// A second device with a copy of alice's key makes its own KEK of
	// version 1 (an enrolment it finds already done), which is not the
	// committed one: it may not wrap a record's key under it.
	dev2 := &cliEnv{t: t, bin: e.bin, home: t.TempDir()}
	dev2.env = []string{"EMRCLI_HOME=" + dev2.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_PASSPHRASE=device two",
		"EMRCLI_EXPORT_PASSPHRASE=copy of alice", "EMRCLI_KEYRING_BACKEND="}
	dev2.ok("light", "init", "--genesis", node.Genesis)
	dev2.ok("keys", "import", "alice", aliceCopy)
	if out := dev2.ok("patient", "enroll", "--from", "alice", "--name", "Ada  LOVELACE", "--birth-date", "1815-12-10"); !strings.Contains(out, "already enrolled") {
		t.Fatalf("second device's enrolment: %s", out)
	}
	dev2.fails(1, "does not match the check value on chain", "add-record", "--from", "alice", "--category", "lab-results",
		"--sha256", hex.EncodeToString(sum[:]), "--size", "4096", "--object-key", "blobs/lab-1-dev2", "--data-key-file", keyFile)

	// The listing checked each record's uploader signature; --json shows
	// the signature and the body hash it covers.
	var listed struct {
		Records []struct {
			Uploader          string `json:"uploader"`
			BodySHA256        string `json:"body_sha256"`
			UploaderSignature string `json:"uploader_signature"`
			SameCiphertextAs  uint64 `json:"same_ciphertext_as"`
		} `json:"records"`
	}
	e.json(&listed, "records", "--from", "alice")
	if len(listed.Records) != 2 || listed.Records[0].SameCiphertextAs != 0 || listed.Records[1].SameCiphertextAs != 1 {
		t.Fatalf("records --json: %+v; want two records, the second an alias of the first", listed.Records)
	}
	for _, r := range listed.Records {
		if len(r.BodySHA256) != 64 || len(r.UploaderSignature) != 128 {
			t.Fatalf("records --json: body_sha256 %q, uploader_signature %q; want 32 and 64 bytes in hex", r.BodySHA256, r.UploaderSignature)
		}
	}

	// The registrar suspends the clinician: nothing it signs is accepted.
	// The patient's listing and the clinician's say the consent, still in
	// its window, lets it do nothing while it is suspended.
	e.ok("member", "suspend", "--from", "registrar", "clinician")
	e.fails(1, "suspended", "read", "--from", "clinician", "--patient", pid, "--record", "1")
	if out := e.ok("permissions", "--from", "alice"); !strings.Contains(out, "active, but grantee suspended") {
		t.Fatalf("permissions with the grantee suspended: %s", out)
	}
	var standing struct {
		Permissions []struct {
			State         string `json:"state"`
			GranteeStatus string `json:"grantee_status"`
		} `json:"permissions"`
	}
	e.json(&standing, "grants", "clinician")
	if len(standing.Permissions) != 1 || standing.Permissions[0].GranteeStatus != "suspended" || standing.Permissions[0].State != "active, but grantee suspended" {
		t.Fatalf("grants --json with the grantee suspended: %+v", standing)
	}
	e.ok("member", "reactivate", "--from", "registrar", "clinician")
	e.json(&standing, "grants", "clinician")
	if len(standing.Permissions) != 1 || standing.Permissions[0].GranteeStatus != "active" || standing.Permissions[0].State != "active" {
		t.Fatalf("grants --json after the reactivation: %+v", standing)
	}
	e.fails(1, "no study", "study", "show", "no-such-study")

	// Revoke: three transactions, the key rotates twice.
	out = e.ok("revoke", "--from", "alice", "--to", "clinician")
	for _, want := range []string{"revoked " + clinician + " at height", "rotated the patient key: version 1 -> 2",
		"rotated the patient key: version 2 -> 3", "sealed to: nobody"} {
		if !strings.Contains(out, want) {
			t.Fatalf("revoke lacks %q:\n%s", want, out)
		}
	}
	// Run again: nothing is left to do, and --json says so (no revoke_tx,
	// no rotations, and rotation, the last of them, null).
	var again map[string]json.RawMessage
	e.json(&again, "revoke", "--from", "alice", "--to", "clinician")
	if string(again["revoke_tx"]) != "null" || string(again["rotations"]) != "[]" || string(again["rotation"]) != "null" ||
		string(again["revoked_height"]) == "0" {
		t.Fatalf("revoke again --json: %s", again)
	}
	out = e.ok("permissions", "--from", "alice")
	if !strings.Contains(out, "revoked at height") {
		t.Fatalf("permissions after revoke: %s", out)
	}
	out = e.ok("patient", "show", "--from", "alice")
	if !regexp.MustCompile(`key version:\s+3`).MatchString(out) {
		t.Fatalf("patient show: %s", out)
	}

	// The clinician's next read is refused with the chain's reason.
	line := e.fails(1, "permission revoked at height", "read", "--from", "clinician", "--patient", pid, "--record", "1")
	t.Logf("refused read: %s", line)

	// A grant to a member the chain refuses one to (here a registrar)
	// seals nothing: it is refused before the key is sealed to it.
	line = e.fails(1, "nothing was sealed", "grant", "--from", "alice", "--to", "registrar", "--rights", "read", "--until", until)
	if strings.Contains(line, "rotate-key") {
		t.Fatalf("a grant refused before sealing asks for a rotation: %s", line)
	}
	// A grant the chain refuses (an end already past) says its key
	// envelope went out, and rotate-key moves the key on once,
	// re-wrapping every record.
	line = e.fails(1, "emrcli rotate-key", "grant", "--from", "alice", "--to", "clinician", "--rights", "read", "--until", "2020-01-01T00:00:00Z")
	t.Logf("refused grant: %s", line)
	var rotated struct {
		PatientID string   `json:"patient_id"`
		Old       uint64   `json:"old_key_version"`
		New       uint64   `json:"new_key_version"`
		Rewrapped []uint64 `json:"rewrapped_records"`
		Deferred  bool     `json:"rewrap_deferred"`
	}
	e.json(&rotated, "rotate-key", "--from", "alice")
	if rotated.PatientID != pid || rotated.Old != 3 || rotated.New != 4 || rotated.Deferred || len(rotated.Rewrapped) == 0 {
		t.Fatalf("rotate-key --json: %+v; want patient %s from version 3 to 4, its records re-wrapped", rotated, pid)
	}
	if out := e.ok("patient", "show", "--from", "alice"); !regexp.MustCompile(`key version:\s+4`).MatchString(out) {
		t.Fatalf("patient show after rotate-key: %s", out)
	}

	// A consent that expires leaves its grantee the key new records are
	// still encrypted under: permissions says so, and a revocation rotates
	// past it.
	soon := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339)
	e.ok("grant", "--from", "alice", "--to", "clinician", "--rights", "read", "--until", soon)
	var ended struct {
		Permissions []struct {
			State           string `json:"state"`
			HoldsCurrentKey bool   `json:"holds_current_key"`
		} `json:"permissions"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		ended.Permissions = nil
		e.json(&ended, "permissions", "--from", "alice")
		if len(ended.Permissions) == 1 && ended.Permissions[0].State != "active" || time.Now().After(deadline) {
			break
		}
	}
	if len(ended.Permissions) != 1 || !ended.Permissions[0].HoldsCurrentKey || ended.Permissions[0].State != "expired, holds the current key" {
		t.Fatalf("permissions --json after the consent expired: %+v", ended)
	}
	if out := e.ok("permissions", "--from", "alice"); !strings.Contains(out, "1 ended consent(s) hold the key new records are encrypted under") {
		t.Fatalf("permissions after the consent expired: %s", out)
	}
	e.ok("revoke", "--from", "alice", "--to", "clinician")
	ended.Permissions = nil
	e.json(&ended, "permissions", "--from", "alice")
	if len(ended.Permissions) != 1 || ended.Permissions[0].HoldsCurrentKey {
		t.Fatalf("permissions --json after revoking the expired consent: %+v", ended)
	}

	// Usage errors exit 2; --no-verify says so.
	e.fails(2, "unknown right", "grant", "--from", "alice", "--to", "clinician", "--rights", "admin", "--until", until)
	e.fails(2, "unknown flag", "audit", "--bogus")
	r := e.run("params", "--no-verify")
	if r.code != 0 || !strings.Contains(r.stdout, "NOT VERIFIED") || !strings.Contains(r.stderr, "NOT verified") {
		t.Fatalf("--no-verify: %+v", r)
	}
	var params struct {
		Verified bool `json:"verified"`
	}
	e.json(&params, "params", "--no-verify")
	if params.Verified {
		t.Fatal("--no-verify --json claims verified")
	}
	e.json(&params, "params")
	if !params.Verified {
		t.Fatal("params not verified")
	}

	// A lying node: the answer is altered on the way; emrcli prints nothing
	// and fails.
	proxy := clienttest.NewProxy(t, node.RPC)
	proxy.SetRewrite(alterMember)
	line = e.fails(1, "verification failed", "member", "show", "clinician", "--node", proxy.URL)
	t.Logf("lying node: %s", line)
	proxy.SetRewrite(dropProofs)
	e.fails(1, "verification failed", "audit", "--from", "alice", "--node", proxy.URL)
	t.Logf("whole flow took %s", time.Since(start).Round(time.Millisecond))
}

// alterMember makes every Member answer say "registrar".
func alterMember(call clienttest.Call, result json.RawMessage) json.RawMessage {
	return rewriteQuery(call, result, "Member", func(raw []byte) []byte {
		var m emrv1.QueryMemberResponse
		if proto.Unmarshal(raw, &m) != nil || m.Member == nil {
			return raw
		}
		m.Member.Role = emrv1.Role_ROLE_REGISTRAR
		out, _ := proto.Marshal(&m)
		return out
	})
}

// dropProofs drops the newest access event and its proof.
func dropProofs(call clienttest.Call, result json.RawMessage) json.RawMessage {
	return rewriteQuery(call, result, "AccessEvents", func(raw []byte) []byte {
		var m emrv1.QueryAccessEventsResponse
		if proto.Unmarshal(raw, &m) != nil || len(m.Events) == 0 {
			return raw
		}
		m.Events = m.Events[1:]
		m.Proofs = m.Proofs[:len(m.Proofs)-1]
		out, _ := proto.Marshal(&m)
		return out
	})
}

func rewriteQuery(call clienttest.Call, result json.RawMessage, method string, fn func([]byte) []byte) json.RawMessage {
	var params struct {
		Path string `json:"path"`
	}
	_ = json.Unmarshal(call.Params, &params)
	if call.Method != "abci_query" || params.Path != app.QueryPathPrefix+method {
		return result
	}
	var res struct {
		Response map[string]any `json:"response"`
	}
	if json.Unmarshal(result, &res) != nil {
		return result
	}
	s, _ := res.Response["value"].(string)
	raw, _ := base64.StdEncoding.DecodeString(s)
	res.Response["value"] = base64.StdEncoding.EncodeToString(fn(raw))
	b, _ := json.Marshal(res)
	return b
}

// TestKeysThroughBinary: wrong passphrase fails cleanly, files are 0600,
// an exported key re-imports to the same address.
func TestKeysThroughBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds emrcli")
	}
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_PASSPHRASE=first passphrase", "EMRCLI_EXPORT_PASSPHRASE=export passphrase", "EMRCLI_KEYRING_BACKEND="}
	e.ok("keys", "add", "bob")
	addr := strings.TrimSpace(e.ok("keys", "show", "bob", "--address"))
	fi, err := os.Stat(filepath.Join(e.home, "keyring-file", "bob.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	exportFile := filepath.Join(t.TempDir(), "bob.key")
	e.ok("keys", "export", "bob", "--output", exportFile)
	if fi, err := os.Stat(exportFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v", err)
	}

	wrong := &cliEnv{t: t, bin: e.bin, home: e.home, env: []string{"EMRCLI_HOME=" + e.home, "EMRCLI_PASSPHRASE=not the passphrase", "EMRCLI_EXPORT_PASSPHRASE=x"}}
	wrong.fails(1, "wrong passphrase", "keys", "export", "bob")

	other := &cliEnv{t: t, bin: e.bin, home: t.TempDir()}
	other.env = []string{"EMRCLI_HOME=" + other.home, "EMRCLI_PASSPHRASE=second passphrase", "EMRCLI_EXPORT_PASSPHRASE=export passphrase"}
	other.ok("keys", "import", "bob-copy", exportFile)
	if got := strings.TrimSpace(other.ok("keys", "show", "bob-copy", "--address")); got != addr {
		t.Fatalf("re-imported address %s, want %s", got, addr)
	}
	// A second copy of the same account in one keyring is accepted, with a
	// warning: the two copies' key-encryption keys drift apart.
	if r := other.run("keys", "import", "bob-phone", exportFile); r.code != 0 || !strings.Contains(r.stderr, `key "bob-copy" holds the same account`) {
		t.Fatalf("second copy of one account: exit %d, stderr %q", r.code, r.stderr)
	}
	bad := &cliEnv{t: t, bin: e.bin, home: t.TempDir()}
	bad.env = []string{"EMRCLI_HOME=" + bad.home, "EMRCLI_PASSPHRASE=second passphrase", "EMRCLI_EXPORT_PASSPHRASE=wrong export pass"}
	// The export's passphrase is wrong, not the keyring's: the error says which.
	bad.fails(1, "the export passphrase (EMRCLI_EXPORT_PASSPHRASE, or the one asked for) does not open it: keyring: wrong passphrase", "keys", "import", "bob", exportFile)

	// The test keyring is separate and says it is unencrypted.
	e.ok("keys", "add", "script", "--keyring-backend", "test")
	raw, _ := os.ReadFile(filepath.Join(e.home, "keyring-test", "script.json"))
	if !bytes.Contains(raw, []byte("UNENCRYPTED")) {
		t.Fatal("test keyring file does not warn")
	}
	e.fails(1, "no such key", "keys", "show", "script")
	e.fails(2, "exactly one key NAME", "keys", "show")
	// Help has examples everywhere.
	out := e.ok("grant", "--help")
	if !strings.Contains(out, "Examples:") {
		t.Fatalf("grant --help has no examples:\n%s", out)
	}
	if out := e.ok("completion", "bash"); !strings.Contains(out, "emrcli") {
		t.Fatal("no bash completion")
	}
}

// TestRefusedNodeIsSaid: a node or witness that refuses this client (its
// Host check: here a node whose [app] allowed_hosts lists no name, asked
// by "localhost") is reported with the node's reason. light init refuses a
// witness that does not answer instead of letting the light client drop it
// without a word, a refused node is not retried and called "no commit",
// and a read whose witnesses all refuse names them instead of CometBFT's
// "no witnesses connected. please reset light client".
func TestRefusedNodeIsSaid(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-refused", Configure: func(home string) error {
		return clienttest.SetConfig(filepath.Join(home, "config", "app.toml"), "app", map[string]string{"allowed_hosts": "[]"})
	}})
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_PASSPHRASE=correct horse battery", "EMRCLI_KEYRING_BACKEND="}
	byName := strings.Replace(node.RPC, "127.0.0.1", "localhost", 1)

	out := e.fails(1, "allowed_hosts", "light", "init", "--genesis", node.Genesis, "--witness", byName)
	t.Logf("light init --witness %s: %s", byName, out)
	if !strings.Contains(out, "witness "+byName) {
		t.Errorf("light init with a refusing witness does not name it: %s", out)
	}
	if out := e.fails(1, "allowed_hosts", "light", "init", "--genesis", node.Genesis, "--node", byName); strings.Contains(out, "no commit") {
		t.Errorf("a refusing node is reported as having no commit: %s", out)
	}
	e.ok("light", "init", "--genesis", node.Genesis)
	if out := e.fails(1, "no witness is left", "params", "--witness", byName); !strings.Contains(out, "witness "+byName) || !strings.Contains(out, "allowed_hosts") {
		t.Errorf("a read whose only witness refuses: %s", out)
	}
}
