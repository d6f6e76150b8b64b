package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// runCLI runs emrcli in-process.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"--home", t.TempDir()}, args...), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	root := newRootCmd(&cli{})
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		n++
		if c.Example == "" {
			t.Errorf("%q has no examples in --help", c.CommandPath())
		}
		if c.Short == "" {
			t.Errorf("%q has no short description", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 30 {
		t.Fatalf("only %d commands", n)
	}
	// Every command has --json (a persistent flag of the root).
	if root.PersistentFlags().Lookup("json") == nil || root.PersistentFlags().Lookup("no-verify") == nil {
		t.Fatal("no --json/--no-verify")
	}
}

func TestUsageErrorsExit2OnOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"no-such-command"},
		{"audit", "--bogus"},
		{"audit", "--follow", "--interval", "0s"},
		{"audit", "--interval", "1s"},
		{"grant", "--from", "a", "--to", "b", "--rights", "fly", "--until", "2027-01-01"},
		{"grant", "--from", "a", "--to", "b", "--rights", "read", "--until", "soon"},
		{"keys", "show"},
		{"tx", "status", "nothex"},
		{"read", "--from", "a", "--patient", "b", "--record", "x"},
		{"member", "register", "--from", "r", "--role", "patient", "--key", "k"},
		{"light", "init"},
		{"--keyring-backend", "os", "keys", "list"},
		{"records", "--hieght", "3"},
		{"light", "init", "--height", "x"},
		{"keys", "show", "a", "b"},
		{"keys", "add"},
		{"keys", "add", "Dr Alice"},
		{"keys", "change-passphrase"},
		{"keys", "change-passphrase", "a", "b"},
		{"keys", "change-passphrase", "Dr Alice"},
		// The test keyring's keys have no passphrase to change.
		{"--keyring-backend", "test", "keys", "change-passphrase", "a"},
		{"grant", "--from"},
		{"grant", "--from", "a", "--to", "b", "--rights", "read", "--from-time", "2027-02-01", "--until", "2027-01-01"},
		{"grant", "--from", "a", "--to", "b", "--rights", "share", "--until", "2027-01-01"},
		{"grant", "--from", "a", "--to", "b", "--rights", "read", "--study", "s", "--until", "2027-01-01"},
		{"grant", "--from", "a", "--to", "b", "--rights", "read", "--anonymise", "--until", "2027-01-01"},
		{"member", "register", "--from", "r", "--role", "clinician", "--key", "k"},
		{"download", "--from", "a", "--patient", "b", "--record", "0", "-o", "x"},
		// Break-glass reads: a record, with --via only then; the emergency
		// right alone; the role spelt as roleName writes it.
		{"download", "--from", "a", "--patient", "b", "--share", "1", "--purpose", "emergency", "-o", "x"},
		{"download", "--from", "a", "--patient", "b", "--record", "1", "--via", "s", "-o", "x"},
		{"read", "--from", "a", "--patient", "b", "--record", "1", "--via", "s"},
		// A new break-glass read says why, in one of the reasons'
		// words; nothing else does.
		{"read", "--from", "a", "--patient", "b", "--record", "1", "--purpose", "emergency"},
		{"read", "--from", "a", "--patient", "b", "--record", "1", "--reason", "immediate-threat"},
		{"read", "--from", "a", "--patient", "b", "--record", "1", "--purpose", "emergency", "--reason", "immediate_threat"},
		{"download", "--from", "a", "--patient", "b", "--record", "1", "--purpose", "emergency", "-o", "x"},
		{"download", "--from", "a", "--patient", "b", "--record", "1", "--purpose", "emergency", "--reason", "bored", "-o", "x"},
		{"download", "--from", "a", "--patient", "b", "--record", "1", "--purpose", "emergency", "--reuse-access", "--reason", "patient-request", "-o", "x"},
		{"grant", "--from", "a", "--to", "b", "--rights", "emergency,read", "--until", "2027-01-01"},
		{"member", "register", "--from", "r", "--role", "emergency_service", "--key", "k", "--credential", "c"},
		{"patient", "enroll", "--from", "ada", "--name", "Ada", "Lovelace", "--birth-date", "1815-12-10"},
	} {
		out, errOut, code := runCLI(t, args...)
		if code != exitUsage || out != "" || !strings.HasPrefix(errOut, "Error: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("emrcli %v: exit %d, stdout %q, stderr %q; want exit 2 and one Error line", args, code, out, errOut)
		}
	}
}

// TestUnquotedValueIsNotAnUnknownCommand: a word left over by a value
// with a space is reported as such, not as an unknown command.
func TestUnquotedValueIsNotAnUnknownCommand(t *testing.T) {
	_, errOut, code := runCLI(t, "patient", "enroll", "--from", "ada", "--name", "Ada", "Lovelace", "--birth-date", "1815-12-10")
	if code != exitUsage || !strings.Contains(errOut, `unexpected argument "Lovelace"`) || !strings.Contains(errOut, "quote") {
		t.Fatalf("exit %d, %q", code, errOut)
	}
}

func TestFailuresExit1(t *testing.T) {
	// No root of trust yet: queries refuse to run unverified.
	_, errOut, code := runCLI(t, "params", "--node", "http://127.0.0.1:1")
	if code != exitFailure || !strings.Contains(errOut, "light init") {
		t.Fatalf("params without trust root: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, "keys", "show", "nobody")
	if code != exitFailure || !strings.Contains(errOut, "no such key") {
		t.Fatalf("unknown key: %d %q", code, errOut)
	}
}

func TestRecordRowsShortHash(t *testing.T) {
	rows := recordRows([]recordView{
		{Sequence: 1, CiphertextSHA256: strings.Repeat("ab", 32)},
		{Sequence: 2, CiphertextSHA256: "abcd"}, // an unverified node's answer: shown, not a panic
	})
	if got := rows[0][5]; got != strings.Repeat("ab", 8)+"…" {
		t.Fatalf("full hash shown as %q", got)
	}
	if got := rows[1][5]; got != "abcd" {
		t.Fatalf("short hash shown as %q", got)
	}
}

// TestOtherPeoplesTextCannotDriveTheTerminal: a value from the chain
// (written by another member, or by a chain older than the rule that
// refuses control characters) is printed on its line with its escapes
// escaped: it can neither add a line nor send the terminal a command.
func TestOtherPeoplesTextCannotDriveTheTerminal(t *testing.T) {
	evil := "blobs/x\x1b[1A\x1b[2K\ruploader: FAKE\n\x1b]52;c;aGk=\a\u202e"
	var b strings.Builder
	viewRecord(&emrv1.Record{Sequence: 1, ObjectKey: evil, Category: "lab-results"}).text(&b)
	table(&b, []string{"study"}, [][]string{{evil}})
	out := b.String()
	if strings.ContainsAny(out, "\x1b\r\a\u202e") {
		t.Fatalf("raw control characters reach the terminal: %q", out)
	}
	if strings.Contains(out, "\nuploader: FAKE") {
		t.Fatalf("the value starts a line of its own: %q", out)
	}
	if !strings.Contains(out, `\x1b[1A`) && !strings.Contains(out, `\u001b[1A`) {
		t.Fatalf("the escape is not shown escaped: %q", out)
	}
}

func TestExactArgs(t *testing.T) {
	check := exactArgs(2, "NAME FILE")
	if err := check(nil, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	err := check(nil, []string{"a"})
	if !isUsage(err) || err.Error() != "want NAME FILE, got 1 arguments" {
		t.Fatalf("one argument: %v", err)
	}
}

func TestReadSecretReadsThisRunsStdin(t *testing.T) {
	for _, want := range []string{"first secret", "second secret"} {
		a := &cli{stdin: strings.NewReader(want + "\n")}
		if got, err := a.readSecret("passphrase: ", envPassphrase); err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	// No input: the error names the variable that would have given it.
	_, err := (&cli{stdin: strings.NewReader("")}).readSecret("passphrase: ", envExportPassphrase)
	if err == nil || !strings.Contains(err.Error(), envExportPassphrase) {
		t.Fatalf("no input: %v", err)
	}
}

// TestJSONSaysUnverified: with --no-verify, a JSON object on standard
// output says "verified": false (the text has a banner); verified, or when
// the object already says, nothing is added.
func TestJSONSaysUnverified(t *testing.T) {
	type result struct {
		Record uint64 `json:"record"`
	}
	for _, tc := range []struct {
		noVerify bool
		v        any
		want     string
	}{
		{true, result{7}, `"verified": false`},
		{false, result{7}, ""},
		{true, map[string]any{"verified": true}, `"verified": true`},
		{true, []int{1}, ""},
	} {
		var buf bytes.Buffer
		a := &cli{jsonOut: true, noVerify: tc.noVerify, stdout: &buf}
		if err := a.emit(tc.v, nil); err != nil {
			t.Fatal(err)
		}
		got := buf.String()
		if tc.want != "" && !strings.Contains(got, tc.want) || tc.want == "" && strings.Contains(got, "verified") {
			t.Errorf("emit(%#v, no-verify=%v) = %s, want %q", tc.v, tc.noVerify, got, tc.want)
		}
	}
}

// TestUsageOrFailure: cobra's flag errors are usage errors (exit 2); an OS
// error that happens to say "invalid argument" (EINVAL) is a failure.
func TestUsageOrFailure(t *testing.T) {
	for msg, usage := range map[string]bool{
		`unknown command "fly" for "emrcli"`:          true,
		`required flag(s) "until" not set`:            true,
		"write /tmp/out.json: invalid argument":       false,
		"record 1: decrypt: ciphertext hash mismatch": false,
		// A failure whose words happen to be cobra's is still a failure.
		"the chain accepts no such record":         false,
		"study x requires at least one researcher": false,
	} {
		if got := isUsage(errors.New(msg)); got != usage {
			t.Errorf("isUsage(%q) = %v, want %v", msg, got, usage)
		}
	}
}

// TestLightInitKeepsTheRootWithoutForce: light init refuses to replace a
// root of trust, readable or not, unless forced; forced, it gets as far as
// the node (none listens here).
func TestLightInitKeepsTheRootWithoutForce(t *testing.T) {
	home := t.TempDir()
	trust := filepath.Join(home, "light", "trust.json")
	if err := os.MkdirAll(filepath.Dir(trust), 0o700); err != nil {
		t.Fatal(err)
	}
	initArgs := []string{"--home", home, "--node", "http://127.0.0.1:1", "--timeout", "1s", "--chain-id", "emr-x",
		"light", "init", "--height", "5", "--hash", strings.Repeat("ab", 32)}
	for _, c := range []struct {
		file, force, want string
	}{
		{`{"chain_id":"emr-x","height":3,"hash":"` + strings.Repeat("CD", 32) + `","period_ns":1000000000}`, "", "already trusts height 3 of emr-x"},
		{"{", "", "pass --force"},
		{"{", "--force", ""},
	} {
		if err := os.WriteFile(trust, []byte(c.file), 0o600); err != nil {
			t.Fatal(err)
		}
		args := initArgs
		if c.force != "" {
			args = append(args[:len(args):len(args)], c.force)
		}
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
		switch {
		case code != exitFailure:
			t.Errorf("%s %s: exit %d, stderr %q; want a failure", c.file, c.force, code, errOut.String())
		case c.want != "" && !strings.Contains(errOut.String(), c.want):
			t.Errorf("%s: stderr %q; want %q", c.file, errOut.String(), c.want)
		case c.want == "" && strings.Contains(errOut.String(), "--force"):
			t.Errorf("forced: stderr %q; want it past the root of trust", errOut.String())
		}
	}
}

// TestNothingListening: a node address without a scheme is read as
// http://, like --sidecar's, and an address nothing listens at is told
// with a hint where to look, not only with the dialer's words.
func TestNothingListening(t *testing.T) {
	addr := closedAddr(t)
	_, errOut, code := runCLI(t, "params", "--no-verify", "--node", addr)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	last := lines[len(lines)-1] // after --no-verify's warning: one Error line, hint included
	if code != exitFailure || !strings.HasPrefix(last, "Error: ") || !strings.Contains(last, "http://"+addr) || !strings.Contains(last, "Hint: nothing listens at that address") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// keyringWith is a test keyring (in a directory of the test's) holding a
// new key named name.
func keyringWith(t *testing.T, name string) (*keyring.Keyring, *keyring.Key) {
	t.Helper()
	kr, err := keyring.Open(keyring.BackendTest, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Add(name)
	if err != nil {
		t.Fatal(err)
	}
	return kr, k
}

// closedAddr is a loopback address nothing listens at.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestDeleteCorruptKey: a key file that no longer reads (keys list warns
// about it) can still be deleted; nothing else would remove it.
func TestDeleteCorruptKey(t *testing.T) {
	home := t.TempDir()
	cli := func(args ...string) (string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"--home", home, "--keyring-backend", "test"}, args...), strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), code
	}
	if out, code := cli("keys", "add", "ada"); code != exitOK {
		t.Fatalf("keys add: %d %s", code, out)
	}
	file := filepath.Join(home, "keyring-test", "ada.json")
	if err := os.WriteFile(file, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := cli("keys", "delete", "ada", "--yes"); code != exitOK || !strings.Contains(out, `Deleted key "ada"`) {
		t.Fatalf("keys delete of a corrupt key: exit %d: %s", code, out)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the corrupt key file is still there: %v", err)
	}
	if out, code := cli("keys", "delete", "ada", "--yes"); code != exitFailure || !strings.Contains(out, "no such key") {
		t.Fatalf("keys delete of a missing key: exit %d: %s", code, out)
	}
}

// TestSidecarURLsOneForm: a sidecar named as host:port, or with a trailing
// slash, gets the same URL as when named in full, so the client, which asks
// each URL once per round (TestSidecarNamedTwiceIsAskedOnce), sees it as
// one sidecar.
func TestSidecarURLsOneForm(t *testing.T) {
	a := &cli{home: t.TempDir()}
	got, err := a.sidecarURLs([]string{"127.0.0.1:7070", "http://127.0.0.1:7071/", "http://127.0.0.1:7070"})
	if err != nil || !slices.Equal(got, []string{"http://127.0.0.1:7070", "http://127.0.0.1:7071", "http://127.0.0.1:7070"}) {
		t.Fatalf("%q, %v", got, err)
	}
}

// TestViewPatientRotationPending: patient show says when no record can be
// added because a revocation's key rotations are unfinished, and what to
// do; it says nothing once they are done.
func TestViewPatientRotationPending(t *testing.T) {
	pending := &emrv1.Patient{Id: []byte{1}, KeyVersion: 1, MinKeyVersion: 3}
	var out bytes.Buffer
	viewPatient(pending).text(&out)
	if !strings.Contains(out.String(), "no record is added below key version 3: run emrcli revoke again") {
		t.Fatalf("patient show with the rotations unfinished:\n%s", out.String())
	}
	done := &emrv1.Patient{Id: []byte{1}, KeyVersion: 3, MinKeyVersion: 3}
	if v := viewPatient(done); v.RotationPending != "" {
		t.Fatalf("patient show after the rotations: %q", v.RotationPending)
	}
}
