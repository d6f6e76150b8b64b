package client

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/emrchain/emrchain/internal/durable"
)

// Temporary files of the blob pipelines (blob.go, upload.go, download.go,
// fetch.go, research.go).
//
// Two kinds, both mode 0600 and both in a directory the caller picks:
//
//   - scratch files hold ciphertext on its way up (encrypted once, hashed,
//     then streamed to the sidecar) or down (fetched and hashed before
//     anything is decrypted). They never need a name: on Linux they are
//     opened with O_TMPFILE, elsewhere created and unlinked at once where
//     the system allows it, so nothing is left behind even if the process
//     is killed.
//   - pending files hold decrypted plaintext until it is complete and
//     authentic. On Linux they too are nameless (O_TMPFILE) until Commit
//     links them into place, so no partial plaintext is ever visible under
//     any name, whatever happens to the process. Elsewhere they are
//     ".NAME.emr-partial-RANDOM" beside the target, removed on Discard.

// openAnon opens nameless files; tests replace it to exercise the
// fallback to named temporary files.
var openAnon = openAnonymous

// scratchFile is a read-write temporary file that disappears on Discard
// (and, where the system allows, has no name at all).
type scratchFile struct {
	*os.File
	name string // still linked under this name ("" when nameless)
}

// newScratch creates a scratch file in dir ("" means os.TempDir()).
func newScratch(dir string) (*scratchFile, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if f, err := openAnon(dir); err == nil {
		return &scratchFile{File: f}, nil
	}
	f, err := os.CreateTemp(dir, ".emr-scratch-*")
	if err != nil {
		return nil, err
	}
	s := &scratchFile{File: f, name: f.Name()}
	if os.Remove(f.Name()) == nil { // POSIX: the open file lives on, nameless
		s.name = ""
	}
	return s, nil
}

// Discard closes and removes the file.
func (s *scratchFile) Discard() {
	if s == nil || s.File == nil {
		return
	}
	_ = s.File.Close()
	if s.name != "" {
		_ = os.Remove(s.name)
	}
	s.File = nil
}

// pendingFile is plaintext being written for target; it becomes visible
// under target only through Commit.
type pendingFile struct {
	*os.File
	target    string
	overwrite bool   // Commit may replace an existing target
	name      string // the partial file's name ("" when nameless)
	done      bool
}

// ErrOutputExists is returned when the output file exists and overwriting
// was not asked for.
var ErrOutputExists = errors.New("output file exists (use --force to replace it)")

// ErrOutputNotAFile is returned when the output names something a file
// cannot replace: a directory (or a path ending in a separator, which
// names one), a device, a pipe or a socket. Overwriting does not help.
var ErrOutputNotAFile = errors.New("not a file")

// CheckOutput says whether a decrypted file can be written to target
// (overwrite: replacing a file there), before anything is logged, fetched
// or decrypted: target must name a file, not a directory (one that exists,
// or a path ending in a separator), nor a device, pipe or socket; it must
// not exist unless overwrite (ErrOutputExists); and its directory must
// exist. Download and DownloadShare check it first (newPending), and a
// caller may check it even sooner (emrcli, before it asks for a
// passphrase). It does not create anything; whether the directory can be
// written is found out by creating the pending file, still before the read
// is logged.
func CheckOutput(target string, overwrite bool) error {
	if target == "" {
		return errors.New("no output file named")
	}
	if os.IsPathSeparator(target[len(target)-1]) {
		return fmt.Errorf("%s names a directory (it ends in %c), %w: name a file, e.g. %s",
			target, target[len(target)-1], ErrOutputNotAFile, filepath.Join(target, "NAME"))
	}
	lfi, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return checkOutputDir(target)
	case err != nil:
		if derr := checkOutputDir(target); derr != nil {
			return derr // a clearer reason: its directory is a file
		}
		return fmt.Errorf("output %s: %w", target, err)
	}
	fi := lfi
	if lfi.Mode()&fs.ModeSymlink != 0 {
		// A link to a directory is taken for the directory: a file
		// linked in its place is surely not what was meant.
		if st, err := os.Stat(target); err == nil {
			fi = st
		}
	}
	switch {
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, %w: name a file, e.g. %s", target, ErrOutputNotAFile, filepath.Join(target, "NAME"))
	case fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
		return fmt.Errorf("%s is a device, pipe or socket, %w: name a file", target, ErrOutputNotAFile)
	case !overwrite:
		return fmt.Errorf("%s: %w", target, ErrOutputExists)
	}
	return nil
}

// checkOutputDir refuses a target whose directory does not exist, or is
// not a directory.
func checkOutputDir(target string) error {
	dir := filepath.Dir(target)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cannot write %s: the directory %s does not exist (create it first)", target, dir)
	case err != nil:
		return fmt.Errorf("cannot write %s: %w", target, err)
	case !fi.IsDir():
		return fmt.Errorf("cannot write %s: %s is not a directory", target, dir)
	}
	return nil
}

// newPending prepares to write target (mode 0600). It refuses at once
// what CheckOutput refuses.
func newPending(target string, overwrite bool) (*pendingFile, error) {
	if err := CheckOutput(target, overwrite); err != nil {
		return nil, err
	}
	dir := filepath.Dir(target)
	if f, err := openAnon(dir); err == nil {
		return &pendingFile{File: f, target: target, overwrite: overwrite}, nil
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(target)+".emr-partial-*")
	if err != nil {
		return nil, err
	}
	return &pendingFile{File: f, target: target, overwrite: overwrite, name: f.Name()}, nil
}

// Commit makes the complete file visible under target: fsync, then an
// atomic link (no overwrite) or rename (overwrite, as given to
// newPending), then fsync of the directory. After an error the pending
// file is discarded.
func (p *pendingFile) Commit() error {
	err := p.commit()
	if err != nil {
		p.Discard()
	}
	return err
}

// syncOutput makes Commit fsync the file (and its directory). Only the
// transfer benchmark turns it off, to show what durability costs.
var syncOutput = true

func (p *pendingFile) commit() error {
	if syncOutput {
		if err := p.File.Sync(); err != nil {
			return err
		}
	}
	dir := filepath.Dir(p.target)
	if p.name == "" {
		if err := linkAnonymous(p.File, p.target, p.overwrite); err != nil {
			return err
		}
		p.done = true
	}
	// A named file is closed before it moves: Windows renames and
	// removes no open file.
	err := p.File.Close()
	p.File = nil
	if err != nil {
		return err
	}
	if !p.done {
		if err := moveInto(p.name, p.target, p.overwrite); err != nil {
			return err
		}
		p.name = ""
		p.done = true
	}
	if !syncOutput {
		return nil
	}
	_ = durable.SyncDir(dir) // best effort: the file is complete either way
	return nil
}

// Discard closes and removes the pending file (a no-op after Commit).
func (p *pendingFile) Discard() {
	if p == nil || p.done {
		return
	}
	if p.File != nil {
		_ = p.File.Close()
		p.File = nil
	}
	if p.name != "" {
		_ = os.Remove(p.name)
		p.name = ""
	}
}

// moveInto gives the complete file tmp the name target: replacing target
// with overwrite, else only if it does not exist (renameNoReplace).
func moveInto(tmp, target string, overwrite bool) error {
	if overwrite {
		return os.Rename(tmp, target)
	}
	return renameNoReplace(tmp, target)
}

// renameNoReplace renames tmp to target unless target exists
// (ErrOutputExists), atomically: renameExclusive, or where that is not
// available linkNoReplace.
func renameNoReplace(tmp, target string) error {
	err := renameExclusive(tmp, target)
	if errors.Is(err, errors.ErrUnsupported) {
		err = linkNoReplace(tmp, target)
	}
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s: %w", target, ErrOutputExists)
	}
	return err
}

// linkNoReplace is renameNoReplace without renameExclusive (every system
// but Linux, and Linux file systems without RENAME_NOREPLACE): a hard link
// (which fails on an existing name too) and the removal of tmp, or where
// hard links are not available either, a check and a rename (which a file
// created in between would lose to). An existing target is an error
// matching os.ErrExist.
func linkNoReplace(tmp, target string) error {
	err := os.Link(tmp, target)
	switch {
	case err == nil:
		if err := os.Remove(tmp); err != nil {
			return fmt.Errorf("%s is written, but its temporary name %s is left: %w", target, tmp, err)
		}
		return nil
	case errors.Is(err, os.ErrExist):
		return err
	}
	if _, err := os.Lstat(target); err == nil {
		return os.ErrExist
	}
	return os.Rename(tmp, target)
}

// tempName is a fresh name beside target.
func tempName(target string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".emr-"+hex.EncodeToString(b[:]))
}
