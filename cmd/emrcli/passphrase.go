package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emrchain/emrchain/client/keyring"
)

// passphrase answers the keyring: EMRCLI_PASSPHRASE (EMRCLI_EXPORT_PASSPHRASE
// for export files, EMRCLI_NEW_PASSPHRASE for the new passphrase of keys
// change-passphrase) when set and not empty (as emrchaind reads its
// passphrase variables), else a prompt on the terminal (without echo),
// else one line of standard input. A passphrase that protects something
// from now on (a new key, a key's new passphrase, an export) is asked
// twice.
func (a *cli) passphrase(p keyring.Purpose, name string) (pass []byte, err error) {
	if p == keyring.ChangeKey {
		defer func() {
			old := os.Getenv(envPassphrase)
			a.envPassphraseStale = err == nil && old != "" && !bytes.Equal(pass, []byte(old))
		}()
	}
	env, what := envPassphrase, fmt.Sprintf("Passphrase for key %q", name)
	switch p {
	case keyring.NewKey, keyring.ChangeKey:
		what = fmt.Sprintf("New passphrase for key %q (at least %d characters)", name, keyring.MinPassphraseLen)
		if p == keyring.ChangeKey {
			env = envNewPassphrase // EMRCLI_PASSPHRASE is the current one, asked first
		}
	case keyring.ExportKey:
		env, what = envExportPassphrase, fmt.Sprintf("Passphrase to protect the export of %q", name)
	case keyring.ImportKey:
		env, what = envExportPassphrase, fmt.Sprintf("Passphrase of the export file (key %q)", name)
	}
	if v := os.Getenv(env); v != "" {
		return []byte(v), nil
	}
	first, err := a.readSecret(what+": ", env)
	if err != nil {
		return nil, err
	}
	if p == keyring.NewKey || p == keyring.ChangeKey || p == keyring.ExportKey {
		again, err := a.readSecret("Repeat it: ", env)
		if err != nil {
			clear(first)
			return nil, err
		}
		same := bytes.Equal(first, again)
		clear(again)
		if !same {
			clear(first)
			return nil, errors.New("the passphrases do not match")
		}
	}
	return first, nil
}

// readLine reads one line of standard input. Every reader of stdin in a
// run (passphrases, confirmations) shares one buffer, so none loses what
// another read ahead.
func (a *cli) readLine() (string, error) {
	if a.stdinLines == nil {
		a.stdinLines = bufio.NewReader(a.stdin)
	}
	return a.stdinLines.ReadString('\n')
}

// readSecret prompts for a secret on the terminal, else reads a line of
// standard input; env is the variable that would have provided it. Ctrl-C
// at the prompt ends the command (the run's context is cancelled by the
// interrupt, which the terminal read alone would not notice), with the
// terminal's echo back on.
func (a *cli) readSecret(prompt, env string) ([]byte, error) {
	if f, ok := a.stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprint(a.stderr, prompt)
		restore, err := echoOff(f)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		defer func() {
			restore()
			fmt.Fprintln(a.stderr)
		}()
		type answer struct {
			line string
			err  error
		}
		read := make(chan answer, 1)
		go func() {
			line, err := a.readLine()
			read <- answer{line, err}
		}()
		select {
		case r := <-read:
			if r.err != nil && r.line == "" {
				return nil, fmt.Errorf("read passphrase: %w", r.err)
			}
			return []byte(strings.TrimRight(r.line, "\r\n")), nil
		case <-a.ctx.Done():
			return nil, fmt.Errorf("interrupted at the passphrase prompt: %w", a.ctx.Err())
		}
	}
	line, err := a.readLine()
	if err != nil && (err != io.EOF || line == "") {
		return nil, fmt.Errorf("a passphrase is needed: set %s or type it (stdin: %v)", env, err)
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}
