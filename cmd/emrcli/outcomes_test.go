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
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client/clienttest"
)

// TestGrantRefusesEmptyCategories: "--categories" names the
// record categories a consent covers, all of them only when the flag is
// left out ("record categories (default: all)"). Given explicitly empty
// (--categories "", "--categories $CATS" with CATS unset in a script, or
// "--categories ,"), grant drops the empty words (splitList) and sends a
// grant with no category at all, which the chain reads as every category:
// the patient meant a narrow consent and gave the widest one, without a
// word. It must be refused as a usage error before anything is signed or
// sent (as --rights "" is).
func TestGrantRefusesEmptyCategories(t *testing.T) {
	e := newAdaEnv(t, "emr-empty-cats")
	e.ok("keys", "import-dev", e.node.RegistrarKey)
	e.ok("keys", "add", "ada")
	e.ok("patient", "enroll", "--from", "ada", "--name", "Ada Lovelace", "--birth-date", "1815-12-10")
	e.ok("keys", "add", "dr-who")
	e.ok("member", "register", "--from", "registrar", "--key", "dr-who", "--role", "clinician", "--credential", "GMC-1")

	for _, cats := range []string{"", ","} {
		r := e.run("grant", "--from", "ada", "--to", "dr-who", "--rights", "read", "--categories", cats, "--until", "2030-01-01", "--replace")
		if r.code == exitUsage {
			continue
		}
		var perms struct {
			Permissions []struct {
				Categories []string `json:"categories"`
				State      string   `json:"state"`
			} `json:"permissions"`
		}
		e.json(&perms, "permissions", "--from", "ada")
		t.Errorf("grant --categories %q: exit %d (want %d, refused), stdout %q; the chain now holds consents %+v "+
			"(no category: every category)", cats, r.code, exitUsage, strings.TrimSpace(r.stdout), perms.Permissions)
	}
}

// TestInterruptedUploadSaysTheRecordMayBeAdded: upload submits
// AddRecord once the ciphertext is stored, and waits for it to commit. When
// that wait ends early (Ctrl-C, or --timeout while the node is slow to
// index), the transaction may well be (and here is) committed, but the
// error says, before anything else, "the ciphertext is stored ... but the
// record was not added", and only then that the transaction "may still be
// committed". A clinician who believes the first words uploads the file
// again, and the patient's records hold it twice (a new ciphertext each
// time, so not even flagged as an alias by "emrcli records").
//
// A proxy in front of the node passes everything on but answers the
// client's "tx" look-ups with "not found" (as a node whose tx index lags
// does), so the upload is still waiting when Ctrl-C comes; the
// transaction itself reaches the chain and commits.
func TestInterruptedUploadSaysTheRecordMayBeAdded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-upload-outcome"})
	proxy := clienttest.NewProxy(t, node.RPC)
	var once sync.Once
	waiting := make(chan struct{})

	bin := clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli")
	e := &cliEnv{t: t, bin: bin, home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + proxy.URL, "EMRCLI_KEYRING_BACKEND=test", "EMRCLI_SIDECAR="}
	e.ok("light", "init", "--genesis", node.Genesis, "--sidecar", node.SidecarURL)
	e.ok("keys", "add", "ada")
	e.ok("patient", "enroll", "--from", "ada", "--name", "Ada Lovelace", "--birth-date", "1815-12-10")
	src := filepath.Join(t.TempDir(), "cbc.txt")
	if err := os.WriteFile(src, []byte("CBC: Hb 13.2 g/dL\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	proxy.SetAnswer(func(c clienttest.Call) string { // a node whose tx index lags
		if c.Method != "tx" {
			return ""
		}
		once.Do(func() { close(waiting) })
		return `"error":{"code":-32603,"message":"Internal error","data":"tx (AB) not found"}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "upload", "--from", "ada", "--category", "lab-results", src)
	cmd.Env = append(os.Environ(), e.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waiting: // AddRecord is broadcast; upload waits for it
	case <-ctx.Done():
		t.Fatalf("upload never waited for its transaction: %s", stderr.String())
	}
	node.WaitHeight(t, ctx, node.Height(ctx)+2) // it is in a block by now
	_ = cmd.Process.Signal(os.Interrupt)        // Ctrl-C
	_ = cmd.Wait()
	proxy.Honest()

	var recs struct {
		Records []struct {
			Sequence uint64 `json:"sequence"`
		} `json:"records"`
	}
	e.json(&recs, "records", "--from", "ada")
	msg := strings.TrimSpace(stderr.String())
	if len(recs.Records) == 1 && strings.Contains(msg, "the record was not added") {
		t.Fatalf("upload interrupted while waiting for its AddRecord says the record was not added, but record %d is on chain:\n%s",
			recs.Records[0].Sequence, msg)
	}
	if len(recs.Records) != 1 {
		t.Fatalf("records after the interrupted upload: %+v (stderr %q)", recs.Records, msg)
	}
	if !strings.Contains(msg, "the record may have been added") || !strings.Contains(msg, "emrcli records") {
		t.Errorf("interrupted upload: %q; want it to say the record may have been added, and where to look", msg)
	}
}

// fullDisk is a standard output whose every write fails, as a file on a
// full disk (or a closed pipe) does.
type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) {
	return 0, fmt.Errorf("write /dev/stdout: no space left on device")
}

// TestUnwritableOutputFails: emit prints text through
// fmt.Fprint* and drops their errors, so a command whose output could
// not be written at all exits 0: "emrcli audit --from ada > audit.txt"
// on a full disk leaves an empty audit.txt and reports success (seen by
// hand: "emrcli audit --from ada > /dev/full" exits 0; with --json it
// exits 1 with "Error: write /dev/stdout: no space left on device"). Here
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

// TestLightInitRefusesANonPositiveTrustPeriod: "--trust-period" is "how long
// a trusted header may verify the next". light init takes any duration and
// checks nothing: with --genesis, 0s is silently replaced by the default
// (14 days, which the output then shows), and a negative period is sent to
// the node and fails as "the node's newest header, N, is from T, older than
// the trusting period (-1h0m0s): the node is behind or the chain has
// stopped; ask another node (--node)" (exit 1), which sends the user after
// a healthy node. With --height/--hash both fail as "verification failed:
// light client: invalid TrustOptions: negative or zero period". A period
// that is not positive is a wrong command line: exit 2, naming the flag,
// before anything is fetched.
func TestLightInitRefusesANonPositiveTrustPeriod(t *testing.T) {
	e := newAdaEnv(t, "emr-trust-period")
	for _, period := range []string{"0s", "-1h"} {
		home := t.TempDir()
		r := e.run("--home", home, "light", "init", "--genesis", e.node.Genesis, "--node", e.node.RPC, "--trust-period", period)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--trust-period") {
			t.Errorf("light init --genesis --trust-period %s: exit %d, stdout %q, stderr %q; want exit %d naming --trust-period",
				period, r.code, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr), exitUsage)
		}
	}
}

// TestUploadRefusedByANodeMayYetBeAdded: upload says "the record was not
// added" only when that is proven (never sent, or failed in a block). A
// re-review found it said so of every refusal (ErrTxRejected). But a
// refusal is only the node's word (Submit's own doc, decisions.md): a
// node that keeps the AddRecord and answers "wrong account sequence"
// makes Submit return the refusal wrapped with "(not signed again:
// sequence N is still unused ..., so the transaction may yet be
// committed, until height T ...)", which still matches ErrTxRejected. The
// one error line then says both "the record was not added" and "may yet
// be committed", and the first words send the clinician to upload again.
// Here the node releases the kept transaction afterwards (as it may, until
// T): the record is on chain.
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

			src := filepath.Join(t.TempDir(), "cbc.txt")
			if err := os.WriteFile(src, []byte("CBC: Hb 13.2 g/dL\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := e.run("upload", "--from", "ada", "--category", "lab-results", src)
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

			var recs struct {
				Records []struct {
					Sequence uint64 `json:"sequence"`
				} `json:"records"`
			}
			for deadline := time.Now().Add(30 * time.Second); len(recs.Records) == 0; time.Sleep(200 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the released transaction added no record within 30 s")
				}
				e.json(&recs, "records", "--from", "ada")
			}
			if len(recs.Records) != 1 || strings.Contains(msg, "was not added") || !strings.Contains(msg, "emrcli records") {
				t.Fatalf("upload's error, of a transaction %X (kept by the node) that then committed %d record(s): %s\nwant it to say where to look (emrcli records), not that the record was not added",
					app.TxHash(held[0]), len(recs.Records), msg)
			}
		})
	}
}

// TestLostOutputOfAnAsyncTxClaimsNothing: when standard output fails, run
// replaces the command's outcome with "writing the standard output: ...",
// which a re-review found ending "a transaction it sent before stands".
// With --async the transaction was only accepted into one node's mempool
// (CheckTx): it may never be committed (a node
// restart empties its mempool, a node may not pass it on), and its hash,
// the one way to check (emrcli tx status), was in the output that was
// lost. "stands" was then not true. Here the node accepts the enrollment
// and never passes it on: nothing is enrolled.
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
	t.Logf("exit %d: %s", code, msg)

	time.Sleep(2 * time.Second)
	shown := e.run("patient", "show", "--from", "bob")
	enrolled := shown.code == 0
	if strings.Contains(msg, "stands") && !enrolled {
		t.Fatalf("enroll --async with a failed standard output says %q, but the transaction never committed (patient show: exit %d, %s)",
			msg, shown.code, strings.TrimSpace(shown.stderr))
	}
}
