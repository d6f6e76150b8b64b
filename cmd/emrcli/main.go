package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (chain refusal, verification, I/O)
	exitUsage   = 2 // the command line is wrong
)

// run executes one emrcli command line and returns the exit code. Every
// failure is one line on stderr: "Error: <reason>".
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &outputWriter{w: stdout, failed: cancel}
	a := &cli{ctx: ctx, stdin: stdin, stdout: out, stderr: stderr}
	defer a.close()
	root := newRootCmd(a)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if out.err != nil {
		// What the command did may have succeeded, but its answer was
		// lost (a full disk): a script must not take it for a success.
		err = fmt.Errorf("writing the standard output: %w (the command stopped there, and what it did before, a transaction sent, say, is not undone: look before running it again)", out.err)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "Error: "+app.OneLine(err.Error())+hint(err))
	if isUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// outputWriter is the standard output of a command, which remembers its
// first write error and then refuses every later write. A command whose
// output cannot be written (a full disk, a closed file) is stopped, as by
// Ctrl-C (failed), and exits 1: text output is printed with fmt.Fprint*,
// whose errors its callers do not check.
type outputWriter struct {
	w      io.Writer
	err    error
	failed func()
}

func (o *outputWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = err
		o.failed()
	}
	return n, err
}

// hint is what to do about err, when the error alone does not say:
// appended to its line.
func hint(err error) string {
	switch {
	case errors.Is(err, client.ErrReadLoggedNotServed):
		var ns *client.NotServedError
		if errors.As(err, &ns) && ns.Refusal != nil {
			return refusedHint(ns.Refusal)
		}
		return ". Hint: the read is on chain; retry with --reuse-access (and the right --sidecar) within the sidecars' access window, which logs no second read"
	case errors.Is(err, client.ErrEmergencyKeyNotReleased):
		var kn *client.KeyNotReleasedError
		if errors.As(err, &kn) && kn.Refusal != nil {
			r := kn.Refusal
			return fmt.Sprintf(". Hint: the emergency read is on chain, but the emergency service refuses to release the record's key (%d %s: %s); retrying, with --reuse-access or without, will not help while that holds",
				r.StatusCode, http.StatusText(r.StatusCode), r.Reason)
		}
		return ". Hint: the emergency read is on chain; retry with --reuse-access and a --sidecar that runs the emergency service, within the emergency window (emrcli params), which logs no second read"
	case errors.Is(err, syscall.ECONNREFUSED):
		return ". Hint: nothing listens at that address. Is the node (or sidecar) running there? --node and --sidecar say where to look; emrcli light init records both"
	}
	return ""
}

// refusedHint is the hint of a download whose read is logged and that
// every sidecar refused outright (r, the refusal that says why): unlike a
// sidecar that is down or a transfer cut short, asking the same sidecars
// again is refused the same way.
func refusedHint(r *sidecar.Error) string {
	why := fmt.Sprintf("%d %s: %s", r.StatusCode, http.StatusText(r.StatusCode), r.Reason)
	if r.StatusCode == http.StatusNotFound {
		return ". Hint: the read is on chain, but none of these sidecars holds the ciphertext (" + why + "); asking them again will not help. " +
			"If another sidecar holds it, retry with --reuse-access --sidecar URL within the access window (no second read is logged); if none does, its uploader must upload it again"
	}
	return ". Hint: the read is on chain, but the sidecars refuse to serve it (" + why + "); retrying, with --reuse-access or without, will not help while that holds"
}

// usageError is a wrong command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// noArgs is cobra.NoArgs for emrcli's commands, which take flags only. A
// word left over is a value with a space that was not quoted ("--name Ada
// Lovelace"), not the unknown command cobra would call it.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %s: %s takes flags only (quote a value that holds spaces, e.g. --name \"Ada Lovelace\")",
			app.QuoteInput(args[0]), cmd.CommandPath())
	}
	return nil
}

// isUsage recognises usage errors: ours, a key name the keyring refuses, a
// passphrase change asked of the test keyring (which has none),
// cobra's flag and argument errors (markUsageErrors makes those
// usageErrors), and the three cobra
// returns as plain errors, known by how they start: an unknown command,
// a required flag left out, flags of a group given apart.
func isUsage(err error) bool {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, keyring.ErrBadName) || errors.Is(err, keyring.ErrNoPassphrase) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"unknown command ", "required flag(s) ", "if any flags in the group "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
