//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPassphraseFileSwappedToAFIFOIsNotWaitedOn: a FIFO put in the
// passphrase file's place must not hold the sidecar's start until someone
// writes to it. readPassphraseFile opens without blocking and checks the
// open file; the session-47 re-review found it checked the path first
// and then opened it again, blocking, so a FIFO swapped in between hung
// it. The race is forced by swapping the name between a regular 0600 file
// and a FIFO as fast as rename allows, for 3 s; with the old code a call
// blocked within about a hundred tries.
func TestPassphraseFileSwappedToAFIFOIsNotWaitedOn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passphrase")
	reg, fifo := filepath.Join(dir, "reg-keep"), filepath.Join(dir, "fifo-keep")
	if err := os.WriteFile(reg, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.Link(reg, path); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		tmp := filepath.Join(dir, "tmp")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			src := reg
			if i%2 == 0 {
				src = fifo
			}
			_ = os.Remove(tmp)
			if os.Link(src, tmp) == nil {
				_ = os.Rename(tmp, path)
			}
		}
	}()
	defer func() { close(stop); <-swapped }()

	deadline := time.Now().Add(3 * time.Second)
	for tries := 0; time.Now().Before(deadline); tries++ {
		done := make(chan error, 1)
		go func() {
			raw, err := readPassphraseFile(path)
			clear(raw)
			done <- err
		}()
		select {
		case <-done:
			continue
		case <-time.After(2 * time.Second):
		}
		// Blocked in open(2) on the FIFO: a writer lets it go.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			w.Close()
		}
		err = <-done
		t.Fatalf("try %d: readPassphraseFile blocked opening a FIFO swapped in after its Stat (it returned %v once a writer came): a sidecar start hangs", tries, err)
	}
}

// TestRootOwnedGroupReadablePassphraseFile: Kubernetes writes a Secret
// volume's files owned by root and, when the pod sets fsGroup, adds group
// read whatever defaultMode says (0440, root:fsGroup; kubernetes/kubernetes
// #57923). Such a file is accepted, by PostgreSQL's rule for its key files:
// owned by the process's user, 0600 or less; owned by root, 0640 or less.
// (Run as root: the temp file is root's.)
func TestRootOwnedGroupReadablePassphraseFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs a root-owned file")
	}
	path := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(path, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o440); err != nil {
		t.Fatal(err)
	}
	raw, err := readPassphraseFile(path)
	if err != nil {
		t.Fatalf("a root-owned 0440 passphrase file (a Kubernetes Secret with fsGroup) is refused: %v", err)
	}
	clear(raw)
}

// TestPassphraseFileOfAnotherUserIsRefused: a passphrase file owned by a
// user who is neither the sidecar's nor root is refused whatever its mode:
// that user may read or change it. (Run as root, to give the file away.)
func TestPassphraseFileOfAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	path := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(path, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Skipf("chown: %v", err)
	}
	if raw, err := readPassphraseFile(path); err == nil || !strings.Contains(err.Error(), "owned by user 65534") {
		clear(raw)
		t.Fatalf("a 0600 passphrase file of user 65534: %v; want it refused, naming its owner", err)
	}
}
