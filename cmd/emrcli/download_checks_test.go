package main

// A download checks what can fail without the chain before it logs the
// read, and says whether retrying can help once the read is logged
// (session 36; the first two tests are a reviewer's, who used emrcli as a
// patient and a clinician). The end-to-end tests run the built emrcli
// against a real single-validator emrchaind with its embedded (filesystem)
// blob sidecar; no MinIO needed.

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// adaEnv is a node, an emrcli home (test keyring) trusting it with the
// node's sidecar as default, and a patient "ada" who owns record 1.
type adaEnv struct {
	*cliEnv
	node *clienttest.Node
	dir  string
}

func newAdaEnv(t *testing.T, chainID string) *adaEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: chainID})
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_KEYRING_BACKEND=test", "EMRCLI_SIDECAR="}
	e.ok("light", "init", "--genesis", node.Genesis, "--sidecar", node.SidecarURL)
	return &adaEnv{cliEnv: e, node: node, dir: t.TempDir()}
}

// patientWithRecord enrolls ada and uploads one record as ada (the owner).
func (e *adaEnv) patientWithRecord() {
	e.t.Helper()
	e.ok("keys", "add", "ada")
	e.ok("patient", "enroll", "--from", "ada", "--name", "Ada Lovelace", "--birth-date", "1815-12-10")
	e.ok("upload", "--from", "ada", "--category", "lab-results", e.labFile())
}

// labFile writes a small lab result into the env's directory and returns
// its path.
func (e *adaEnv) labFile() string {
	e.t.Helper()
	src := filepath.Join(e.dir, "cbc.txt")
	if err := os.WriteFile(src, []byte("CBC: Hb 13.2 g/dL\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return src
}

// waitRecords waits until ada's verified record list holds n records, and
// fails the test if it does not within 30 s.
func (e *adaEnv) waitRecords(n int) {
	e.t.Helper()
	var recs struct {
		Records []struct {
			Sequence uint64 `json:"sequence"`
		} `json:"records"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		e.json(&recs, "records", "--from", "ada")
		if len(recs.Records) == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ada holds %d record(s) after 30 s, want %d", len(recs.Records), n)
		}
	}
}

// reads is the number of reads in ada's verified audit log.
func (e *adaEnv) reads() int {
	e.t.Helper()
	var audit struct {
		Reads []struct {
			Height int64 `json:"height"`
		} `json:"reads"`
	}
	e.json(&audit, "audit", "--from", "ada")
	return len(audit.Reads)
}

// TestDownloadIntoADirectoryLogsNoRead: "download -o DIR" where DIR is an
// existing directory said "output file exists (use --force to replace
// it)", and following that advice logged a read on the patient's audit
// trail, fetched and decrypted the whole record, and only then failed
// ("rename .DIR.emr-… DIR: file exists"). A directory is never replaced:
// both runs fail before anything is logged, and neither advises --force.
// So do "-o newdir/" (a directory that does not exist) and a file in a
// directory that does not exist, which failed late naming a temporary
// file.
func TestDownloadIntoADirectoryLogsNoRead(t *testing.T) {
	e := newAdaEnv(t, "emr-download-dir")
	e.patientWithRecord()
	target := filepath.Join(e.dir, "my-records")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	before := e.reads()

	for _, force := range [][]string{nil, {"--force"}} {
		args := append([]string{"download", "--from", "ada", "--record", "1", "-o", target}, force...)
		line := e.fails(1, target+" is a directory", args...)
		t.Logf("into a directory (%v): %s", force, line)
		if strings.Contains(line, "--force") || !strings.Contains(line, "name a file, e.g. "+filepath.Join(target, "NAME")) {
			t.Errorf("download into a directory (%v): %s; want it to ask for a file, and not to advise --force", force, line)
		}
	}
	newDir := filepath.Join(e.dir, "newdir") + string(filepath.Separator)
	e.fails(1, newDir+" names a directory", "download", "--from", "ada", "--record", "1", "-o", newDir)
	missing := filepath.Join(e.dir, "no-such-dir", "cbc.txt")
	line := e.fails(1, filepath.Join(e.dir, "no-such-dir")+" does not exist", "download", "--from", "ada", "--record", "1", "-o", missing)
	t.Logf("into a missing directory: %s", line)
	if strings.Contains(line, ".emr-") {
		t.Errorf("download into a missing directory names a temporary file: %s", line)
	}
	if after := e.reads(); after != before {
		t.Errorf("downloads to outputs that cannot be written failed, but logged %d read(s) on the patient's audit trail first", after-before)
	}
	// The record is still downloadable into the directory, by a file name.
	e.ok("download", "--from", "ada", "--record", "1", "-o", filepath.Join(target, "cbc.txt"))
	if after := e.reads(); after != before+1 {
		t.Errorf("a download logged %d reads, want 1", after-before)
	}
}

// TestDownloadWithNoReachableSidecarLogsNoRead: a download whose sidecars
// are all unreachable (the one light init recorded is down; a typo in
// --sidecar) logged a read on chain first, then failed: the patient's
// audit showed a read that delivered nothing, and each plain retry logged
// one more. Nothing listens at the sidecar address here: the download
// fails before it signs anything, and says so.
func TestDownloadWithNoReachableSidecarLogsNoRead(t *testing.T) {
	e := newAdaEnv(t, "emr-download-dead")
	e.patientWithRecord()
	before := e.reads()
	dead := "http://127.0.0.1:1" // nothing listens
	line := e.fails(1, "no read was logged", "download", "--from", "ada", "--record", "1", "-o", filepath.Join(e.dir, "out.txt"), "--sidecar", dead)
	t.Logf("no sidecar reachable: %s", line)
	if !strings.Contains(line, dead) || !strings.Contains(line, "connection refused") || !strings.Contains(line, "Hint: nothing listens at that address") ||
		strings.Contains(line, "--reuse-access") {
		t.Errorf("no sidecar reachable: %s; want the sidecar and its failure named, and the hint for an address nothing listens at", line)
	}
	if after := e.reads(); after != before {
		t.Errorf("no sidecar reachable (%s), yet %d read(s) were logged on the patient's audit trail", line, after-before)
	}
	if names, _ := os.ReadDir(e.dir); len(names) != 1 { // cbc.txt, the upload's source
		t.Errorf("a download that logged nothing left files: %v", names)
	}
}

// TestDownloadRefusedByEverySidecarSaysRetryCannotHelp: once the read is
// logged, a sidecar that refuses it outright (403: the permission expired
// or was revoked between the block the read was logged in and the
// sidecar's newer one) is refused again on a retry with --reuse-access:
// the hint says why and that retrying will not help. A failure a retry
// may mend (a 5xx) keeps the hint to retry with --reuse-access.
func TestDownloadRefusedByEverySidecarSaysRetryCannotHelp(t *testing.T) {
	e := newAdaEnv(t, "emr-download-refused")
	e.patientWithRecord()
	var status atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = w.Write([]byte(`{"status":"ok","backend":"fs"}`))
			return
		}
		w.WriteHeader(int(status.Load()))
		_, _ = fmt.Fprintf(w, `{"code":"x","error":"answer %d of the test's sidecar"}`, status.Load())
	}))
	defer fake.Close()
	download := func(code int) string {
		t.Helper()
		status.Store(int32(code))
		before := e.reads()
		line := e.fails(1, "the read is logged but no sidecar served the ciphertext", "download", "--from", "ada", "--record", "1",
			"-o", filepath.Join(t.TempDir(), "out"), "--sidecar", fake.URL)
		if after := e.reads(); after != before+1 {
			t.Errorf("a download the sidecar answered %d logged %d reads, want 1", code, after-before)
		}
		t.Logf("sidecar answering %d: %s", code, line)
		return line
	}
	line := download(http.StatusForbidden)
	if !strings.Contains(line, "Hint: the read is on chain, but the sidecars refuse to serve it (403 Forbidden: answer 403 of the test's sidecar)") ||
		!strings.Contains(line, "will not help") || strings.Contains(line, "retry with --reuse-access") {
		t.Errorf("every sidecar refused (403): %s; want the refusal's reason and that retrying will not help", line)
	}
	line = download(http.StatusNotFound)
	if !strings.Contains(line, "Hint: the read is on chain, but none of these sidecars holds the ciphertext (404 Not Found: answer 404 of the test's sidecar)") ||
		!strings.Contains(line, "asking them again will not help") {
		t.Errorf("every sidecar answered 404: %s", line)
	}
	line = download(http.StatusBadGateway)
	if !strings.Contains(line, "Hint: the read is on chain; retry with --reuse-access") {
		t.Errorf("a sidecar failing (502): %s; want the hint to retry with --reuse-access", line)
	}
}

// TestHintForAReadLoggedNotServed: the hint of ErrReadLoggedNotServed
// says to retry with --reuse-access unless every sidecar refused outright,
// when it gives the refusal's reason and says retrying will not help.
func TestHintForAReadLoggedNotServed(t *testing.T) {
	logged := func(ns *client.NotServedError) error {
		return fmt.Errorf("record 1: %w (height 7): %w", client.ErrReadLoggedNotServed, ns)
	}
	revoked := &sidecar.Error{StatusCode: http.StatusForbidden, Code: "forbidden", Reason: "record 1: permission revoked at height 6"}
	failures := []error{errors.New("http://a: sidecar: 403 Forbidden: record 1: permission revoked at height 6")}
	for _, tc := range []struct {
		name       string
		err        error
		want, lack string
	}{
		{"refused", logged(&client.NotServedError{Failures: failures, Refusal: revoked}),
			"the sidecars refuse to serve it (403 Forbidden: record 1: permission revoked at height 6); retrying, with --reuse-access or without, will not help", "retry with --reuse-access"},
		{"not held", logged(&client.NotServedError{Failures: failures, Refusal: &sidecar.Error{StatusCode: http.StatusNotFound, Reason: "blob 0a is not stored on this sidecar"}}),
			"none of these sidecars holds the ciphertext (404 Not Found: blob 0a is not stored on this sidecar); asking them again will not help", ""},
		{"transient", logged(&client.NotServedError{Failures: failures}), "retry with --reuse-access (and the right --sidecar)", "will not help"},
	} {
		h := hint(tc.err)
		if !strings.Contains(h, tc.want) || (tc.lack != "" && strings.Contains(h, tc.lack)) {
			t.Errorf("%s: hint %q; want %q (and not %q)", tc.name, h, tc.want, tc.lack)
		}
	}
}
