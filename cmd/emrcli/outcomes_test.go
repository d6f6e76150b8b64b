package main

// What the session-54 reviews of emrcli found: an empty --categories that
// widened a consent to all, an interrupted or refused upload that said "not
// added" of a record that was or may yet be, output lost on a full disk
// with exit 0 (and a claim that a transaction stood), and a trust period of
// zero or less taken.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client/clienttest"
)

// TestGrantRefusesEmptyCategories: "--categories" names the record
// categories a consent covers, all of them only when the flag is left out
// ("record categories (default: all)"). Given explicitly empty
// (--categories "", "--categories $CATS" with CATS unset in a script, or
// "--categories ,"), it is refused as a usage error before anything is
// signed or sent (as --rights "" is). Before session 54, grant dropped the
// empty words and sent a grant with no category, which the chain reads as
// every category: the patient meant a narrow consent and gave the widest.
func TestGrantRefusesEmptyCategories(t *testing.T) {
	e := newAdaEnv(t, "emr-empty-cats")
	e.ok("keys", "import-dev", e.node.RegistrarKey)
	e.ok("keys", "add", "ada")
	e.ok("patient", "enroll", "--from", "ada", "--name", "Ada Lovelace", "--birth-date", "1815-12-10")
	e.ok("keys", "add", "dr-who")
	e.ok("member", "register", "--from", "registrar", "--key", "dr-who", "--role", "clinician", "--credential", "GMC-1")
	for _, cats := range []string{"", ","} {
		e.fails(exitUsage, "--categories is empty",
			"grant", "--from", "ada", "--to", "dr-who", "--rights", "read", "--categories", cats, "--until", "2030-01-01", "--replace")
	}
}

// TestInterruptedUploadSaysTheRecordMayBeAdded: upload submits AddRecord
// once the ciphertext is stored, and waits for it to commit. When that wait
// ends early (Ctrl-C, or --timeout while the node is slow to index), the
// transaction may well be (and here is) committed: the error says the
// record may have been added, and where to look before uploading again.
// Before session 54 it began "the ciphertext is stored ... but the record
// was not added", and a clinician who believed it uploaded the file again
// (a new ciphertext each time, so not even flagged as an alias by "emrcli
// records").
//
// A proxy in front of the node passes everything on but answers the
// client's "tx" look-ups with "not found" (as a node whose tx index lags
// does), so the upload is still waiting when Ctrl-C comes; the
// transaction itself reaches the chain and commits.
func TestInterruptedUploadSaysTheRecordMayBeAdded(t *testing.T) {
	e := newAdaEnv(t, "emr-upload-outcome")
	proxy := clienttest.NewProxy(t, e.node.RPC)
	e.env = append(e.env, "EMRCLI_NODE="+proxy.URL)
	e.ok("keys", "add", "ada")
	e.ok("patient", "enroll", "--from", "ada", "--name", "Ada Lovelace", "--birth-date", "1815-12-10")
	src := e.labFile()

	var once sync.Once
	waiting := make(chan struct{})
	proxy.SetAnswer(func(c clienttest.Call) string { // a node whose tx index lags
		if c.Method != "tx" {
			return ""
		}
		once.Do(func() { close(waiting) })
		return `"error":{"code":-32603,"message":"Internal error","data":"tx (AB) not found"}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, "upload", "--from", "ada", "--category", "lab-results", src)
	cmd.Env = append(os.Environ(), e.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waiting: // AddRecord is broadcast; upload waits for it
	case <-ctx.Done():
		t.Fatalf("upload never waited for its transaction: %s", stderr.String())
	}
	_ = cmd.Process.Signal(os.Interrupt) // Ctrl-C
	_ = cmd.Wait()
	proxy.Honest()

	e.waitRecords(1) // the transaction commits all the same
	msg := strings.TrimSpace(stderr.String())
	if strings.Contains(msg, "the record was not added") || !strings.Contains(msg, "the record may have been added") || !strings.Contains(msg, "emrcli records") {
		t.Errorf("interrupted upload, whose record is on chain: %q; want it to say the record may have been added, and where to look", msg)
	}
}

// fullDisk is a standard output whose every write fails, as a file on a
// full disk (or a closed pipe) does.
type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) {
	return 0, fmt.Errorf("write /dev/stdout: no space left on device")
}

// TestUnwritableOutputFails: a command whose output cannot be written at
// all fails. Before session 54, emit printed text through fmt.Fprint* and
// dropped their errors, so "emrcli audit --from ada > audit.txt" on a full
// disk left an empty audit.txt and exited 0 (--json already failed). Here
// with keys show and keys list, which need no node.
func TestUnwritableOutputFails(t *testing.T) {
	home := t.TempDir()
	cli := func(stdout io.Writer, args ...string) (int, string) {
		var errOut bytes.Buffer
		code := run(context.Background(), append([]string{"--home", home, "--keyring-backend", "test"}, args...), strings.NewReader(""), stdout, &errOut)
		return code, errOut.String()
	}
	if code, errOut := cli(io.Discard, "keys", "add", "ada"); code != exitOK {
		t.Fatalf("keys add: %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"keys", "show", "ada", "--json"}, // fails, as it must
		{"keys", "show", "ada"},
		{"keys", "show", "ada", "--address"},
		{"keys", "list"},
	} {
		if code, errOut := cli(fullDisk{}, args...); code == exitOK {
			t.Errorf("emrcli %s with a standard output that takes nothing: exit 0 (stderr %q); want a failure", strings.Join(args, " "), errOut)
		}
	}
}

// TestLightInitRefusesANonPositiveTrustPeriod: a --trust-period that is
// not positive is a wrong command line: exit 2, naming the flag, before
// anything is fetched. Before session 54, with --genesis, 0s silently
// became the default, and a negative period failed later as "the node is
// behind or the chain has stopped; ask another node (--node)", which sent
// the user after a healthy node.
func TestLightInitRefusesANonPositiveTrustPeriod(t *testing.T) {
	e := newAdaEnv(t, "emr-trust-period")
	for _, period := range []string{"0s", "-1h"} {
		e.fails(exitUsage, "want a positive duration",
			"--home", t.TempDir(), "light", "init", "--genesis", e.node.Genesis, "--node", e.node.RPC, "--trust-period", period)
	}
}

// TestUploadRefusedByANodeMayYetBeAdded: upload says "the record was not
// added" only when that is proven (never sent, or failed in a block). A
// refusal in CheckTx is only the node's word (Submit's own doc,
// decisions.md): a node that keeps the AddRecord and answers "wrong
// account sequence" (or any refusal) may release it later, until its
// timeout height. A re-review of session 54's first mend found it still
// saying "not added" of every refusal, which sent the clinician to upload
// again. Here the node releases the kept transaction afterwards: the
// record is on chain.
func TestUploadRefusedByANodeMayYetBeAdded(t *testing.T) {
	for _, tc := range []struct {
		name string
		code uint32
		log  string
	}{
		{"WrongSequence", app.ErrBadSequence.Code(), "wrong account sequence"},
		{"OtherCheckTxRefusal", app.ErrUnauthorized.Code(), "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAdaEnv(t, "emr-refused-keep")
			proxy := clienttest.NewProxy(t, e.node.RPC)
			e.env = append(e.env, "EMRCLI_NODE="+proxy.URL)
			e.ok("keys", "add", "ada")
			e.ok("patient", "enroll", "--from", "ada", "--name", "Ada Lovelace", "--birth-date", "1815-12-10")

			keeper := clienttest.NewTxKeeper(tc.code, app.Codespace, tc.log) // keeps the tx and refuses it
			proxy.SetAnswer(keeper.Answer)

			r := e.run("upload", "--from", "ada", "--category", "lab-results", e.labFile())
			msg := strings.TrimSpace(r.stderr)
			t.Logf("upload: exit %d: %s", r.code, msg)
			held := keeper.Kept()
			if len(held) != 1 {
				t.Fatalf("%d transactions kept, want 1", len(held))
			}

			// The node releases what it kept (within the timeout height).
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"broadcast_tx_sync","params":{"tx":%q}}`, base64.StdEncoding.EncodeToString(held[0]))
			resp, err := http.Post(e.node.RPC, "application/json", bytes.NewBufferString(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			proxy.Honest()

			e.waitRecords(1)
			if strings.Contains(msg, "was not added") || !strings.Contains(msg, "emrcli records") {
				t.Fatalf("upload's error, of a transaction %X (kept by the node) that then committed: %s\nwant it to say where to look (emrcli records), not that the record was not added",
					app.TxHash(held[0]), msg)
			}
		})
	}
}

// TestLostOutputOfAnAsyncTxClaimsNothing: when standard output fails, the
// command exits 1 with "writing the standard output: ...", and claims
// nothing of what it sent: with --async the transaction was only accepted
// into one node's mempool and may never be committed (a node restart
// empties its mempool, a node may not pass it on), and its hash, the one
// way to check (emrcli tx status), was in the output that was lost. A
// re-review found the first mend saying "a transaction it sent before
// stands". Here the node accepts the enrollment and never passes it on.
func TestLostOutputOfAnAsyncTxClaimsNothing(t *testing.T) {
	e := newAdaEnv(t, "emr-async-out")
	e.ok("keys", "add", "bob")
	proxy := clienttest.NewProxy(t, e.node.RPC)
	proxy.SetAnswer(clienttest.SwallowTxs)

	var errOut bytes.Buffer
	code := run(context.Background(), []string{"--home", e.home, "--keyring-backend", "test", "--node", proxy.URL,
		"patient", "enroll", "--from", "bob", "--name", "Bob Smith", "--birth-date", "1990-01-01", "--async"},
		strings.NewReader(""), fullDisk{}, &errOut)
	msg := strings.TrimSpace(errOut.String())
	if code != exitFailure || !strings.Contains(msg, "writing the standard output") || strings.Contains(msg, "stands") {
		t.Fatalf("enroll --async with a failed standard output, its transaction swallowed: exit %d, %q; "+
			"want exit %d saying the output was not written, and not that the transaction stands", code, msg, exitFailure)
	}
}
