//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's controller and its terminal side.
func openPTY(t *testing.T) (ctl, term *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	if err := unix.IoctlSetPointerInt(int(ctl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ctl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	return ctl, term
}

// TestPassphrasePromptInterrupted: an interrupt (the run's context
// cancelled, as Ctrl-C does) ends a passphrase prompt on a terminal, which
// a terminal read alone would not notice, and leaves the echo on; a typed
// line is read without echo.
func TestPassphrasePromptInterrupted(t *testing.T) {
	ctl, term := openPTY(t)
	echoing := func() bool {
		tio, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO != 0
	}
	if !echoing() {
		t.Fatal("the terminal does not echo to begin with")
	}
	go io.Copy(io.Discard, ctl) // whatever the terminal shows

	ctx, cancel := context.WithCancel(context.Background())
	a := &cli{ctx: ctx, stdin: term, stderr: io.Discard}
	done := make(chan error, 1)
	go func() {
		_, err := a.readSecret("Passphrase: ", envPassphrase)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if echoing() {
		t.Fatal("the prompt left the echo on")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
			t.Fatalf("interrupted prompt: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the prompt ignored the interrupt")
	}
	if !echoing() {
		t.Fatal("the echo stayed off after the interrupt")
	}

	// A typed line, on a terminal of its own: the interrupted prompt's
	// reader is still waiting on the first one (emrcli exits instead).
	ctl2, term2 := openPTY(t)
	b := &cli{ctx: context.Background(), stdin: term2, stderr: io.Discard}
	go func() {
		time.Sleep(100 * time.Millisecond)
		ctl2.Write([]byte("correct horse\n"))
	}()
	got, err := b.readSecret("Passphrase: ", envPassphrase)
	if err != nil || string(got) != "correct horse" {
		t.Fatalf("typed passphrase: %q %v", got, err)
	}
	if tio, err := unix.IoctlGetTermios(int(term2.Fd()), unix.TCGETS); err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Fatal("the echo stayed off after the prompt")
	}
}
