package keyring

import (
	"bytes"
	"context"
	"crypto/ecdh"
	stded25519 "crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/internal/durable"
	"github.com/emrchain/emrchain/internal/filelock"
	"github.com/emrchain/emrchain/offchain/crypto"
)

// Backends.
const (
	// BackendFile encrypts every key at rest (argon2id + AES-256-GCM).
	BackendFile = "file"
	// BackendTest stores keys UNENCRYPTED, for scripts and tests only.
	BackendTest = "test"
)

// Errors. Test with errors.Is.
var (
	ErrNotFound        = errors.New("keyring: no such key")
	ErrExists          = errors.New("keyring: a key with this name already exists")
	ErrWrongPassphrase = errors.New("keyring: wrong passphrase (or the key file was modified)")
	ErrBadName         = errors.New("keyring: invalid key name")
	ErrCorrupt         = errors.New("keyring: key file is corrupt")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckName reports whether name can name a key (and a file).
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadName, name)
	}
	return nil
}

// Key is one keyring entry: a member's ed25519 signing key and X25519
// encryption key, the patient secret its pseudonymous id derives from, and
// (once enrolled as a patient) the patient id and every version of its
// KEK, so records under old versions stay readable.
type Key struct {
	Name          string
	Created       time.Time
	PatientSecret []byte
	PatientID     []byte
	KEKs          map[uint64][]byte

	sign ed25519.PrivKey
	enc  *ecdh.PrivateKey
}

var _ client.Signer = (*Key)(nil)

// Generate makes a key with fresh random keys and patient secret.
func Generate(name string) (*Key, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	enc, err := crypto.GenerateEncryptionKey()
	if err != nil {
		return nil, err
	}
	secret, err := newSecret()
	if err != nil {
		return nil, err
	}
	return &Key{Name: name, Created: time.Now().UTC().Truncate(time.Second), PatientSecret: secret, sign: ed25519.GenPrivKey(), enc: enc}, nil
}

// FromKeys makes a key from existing key material (e.g. a dev key file).
// A nil secret gets a fresh random one.
func FromKeys(name string, signPriv, encPriv, secret []byte) (*Key, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if len(signPriv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 private key is %d bytes, want %d", len(signPriv), ed25519.PrivateKeySize)
	}
	sign := ed25519.PrivKey(bytes.Clone(signPriv))
	// An ed25519 private key is seed || public key: check the halves agree.
	if !bytes.Equal(stded25519.NewKeyFromSeed(signPriv[:32])[32:], signPriv[32:]) {
		return nil, errors.New("ed25519 private key: public half does not match the seed")
	}
	enc, err := crypto.ParseEncryptionPrivateKey(encPriv)
	if err != nil {
		return nil, err
	}
	if secret == nil {
		if secret, err = newSecret(); err != nil {
			return nil, err
		}
	}
	if len(secret) != client.PatientSecretSize {
		return nil, fmt.Errorf("patient secret is %d bytes, want %d", len(secret), client.PatientSecretSize)
	}
	return &Key{Name: name, Created: time.Now().UTC().Truncate(time.Second), PatientSecret: bytes.Clone(secret), sign: sign, enc: enc}, nil
}

// newSecret is a fresh random patient secret.
func newSecret() ([]byte, error) {
	secret := make([]byte, client.PatientSecretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return secret, nil
}

// PubKey is the ed25519 public key.
func (k *Key) PubKey() []byte { return k.sign.PubKey().Bytes() }

// Address is the member address derived from the signing key.
func (k *Key) Address() []byte { return app.AddressOf(k.PubKey()) }

// Sign signs msg with the ed25519 key.
func (k *Key) Sign(msg []byte) ([]byte, error) { return k.sign.Sign(msg) }

// EncPrivKey is the X25519 private key KEK envelopes are opened with.
func (k *Key) EncPrivKey() *ecdh.PrivateKey { return k.enc }

// EncPubKey is the X25519 public key registered on chain.
func (k *Key) EncPubKey() []byte { return k.enc.PublicKey().Bytes() }

// KEK returns a copy of the patient KEK of a version: the caller may
// clear it (the client clears a KEK once it has unwrapped with it) without
// touching the key's own.
func (k *Key) KEK(version uint64) ([]byte, bool) {
	kek, ok := k.KEKs[version]
	return bytes.Clone(kek), ok
}

// KEKVersions lists the versions held, ascending.
func (k *Key) KEKVersions() []uint64 {
	out := make([]uint64, 0, len(k.KEKs))
	for v := range k.KEKs {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// Info is the public part of the key.
func (k *Key) Info(backend string) Info {
	return Info{Name: k.Name, Backend: backend, Address: k.Address(), SignPubKey: k.PubKey(), EncPubKey: k.EncPubKey(),
		PatientID: k.PatientID, Created: k.Created}
}

// Info is what the keyring shows without a passphrase.
type Info struct {
	Name       string
	Backend    string
	Address    []byte
	SignPubKey []byte
	EncPubKey  []byte
	// PatientID is set once the key enrolled as a patient.
	PatientID []byte
	Created   time.Time
}

// Purpose says why a passphrase is asked for.
type Purpose int

const (
	// Unlock an existing key.
	Unlock Purpose = iota
	// NewKey protects a key being created or imported: ask twice.
	NewKey
	// ExportKey protects an export file: ask twice.
	ExportKey
	// ImportKey opens an export file.
	ImportKey
	// ChangeKey is the new passphrase of an existing key
	// (ChangePassphrase): ask twice.
	ChangeKey
)

// PassphraseFunc supplies a passphrase (from a prompt or the environment).
// The keyring clears the returned slice once it is done with it, so each
// call must return a fresh one.
type PassphraseFunc func(p Purpose, keyName string) ([]byte, error)

// MinPassphraseLen is the shortest passphrase accepted for a new key (and
// for a key's new passphrase), in characters.
const MinPassphraseLen = 8

// Keyring is a directory of key files, one per name: HOME/keyring-file or
// HOME/keyring-test (mode 0700, files 0600).
type Keyring struct {
	backend string
	dir     string
	pass    PassphraseFunc
	kdf     KDFParams
	// derived caches the file key of each unlocked entry, so saving it
	// back (new KEK, patient id) does not ask again.
	derived map[string]*derivedKey
}

// Option configures Open.
type Option func(*Keyring)

// WithKDF sets the argon2id cost for keys written from now on (tests use
// a cheap one; files record their own parameters).
func WithKDF(p KDFParams) Option { return func(k *Keyring) { k.kdf = p } }

// Open opens (creating it if needed) the keyring of backend under home.
func Open(backend, home string, pass PassphraseFunc, opts ...Option) (*Keyring, error) {
	switch backend {
	case BackendFile, BackendTest:
	default:
		return nil, fmt.Errorf("keyring backend %q: want %q or %q", backend, BackendFile, BackendTest)
	}
	if home == "" {
		return nil, errors.New("keyring: empty home directory")
	}
	kr := &Keyring{backend: backend, dir: filepath.Join(home, "keyring-"+backend), pass: pass, kdf: DefaultKDF, derived: map[string]*derivedKey{}}
	for _, o := range opts {
		o(kr)
	}
	// Synced into its parent: a key written there (and fsynced) must not
	// vanish with a directory entry that never reached the disk.
	if err := durable.MkdirAll(kr.dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if err := os.Chmod(kr.dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return kr, nil
}

// Backend is "file" or "test".
func (kr *Keyring) Backend() string { return kr.backend }

// Dir is the directory of the key files.
func (kr *Keyring) Dir() string { return kr.dir }

// Path is the file of key name.
func (kr *Keyring) Path(name string) string { return filepath.Join(kr.dir, name+".json") }

// List returns the public part of every key, by name. A key file that
// cannot be read does not hide the others: they are returned with an
// error that names each unreadable one (errors.Join).
func (kr *Keyring) List() ([]Info, error) {
	entries, err := os.ReadDir(kr.dir)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var out []Info
	var bad []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || CheckName(name) != nil {
			continue
		}
		info, err := kr.Info(name)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(bad...)
}

// Info returns the public part of a key (no passphrase needed).
func (kr *Keyring) Info(name string) (Info, error) {
	f, err := kr.read(name)
	if err != nil {
		return Info{}, err
	}
	return f.info()
}

// Has reports whether a key named name exists.
func (kr *Keyring) Has(name string) bool {
	if CheckName(name) != nil {
		return false
	}
	_, err := os.Stat(kr.Path(name))
	return err == nil
}

// Get loads and (file backend) decrypts a key.
func (kr *Keyring) Get(name string) (*Key, error) {
	f, err := kr.read(name)
	if err != nil {
		return nil, err
	}
	if kr.backend == BackendTest {
		return f.openClear()
	}
	pass, err := kr.askPass(Unlock, name)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	k, dk, err := f.open(pass)
	if err != nil {
		return nil, err
	}
	kr.derived[name] = dk
	return k, nil
}

// Add generates a new key and stores it.
func (kr *Keyring) Add(name string) (*Key, error) {
	k, err := Generate(name)
	if err != nil {
		return nil, err
	}
	return k, kr.Create(k)
}

// Create stores a new key, refusing to overwrite one (also one another
// emrcli run creates at the same moment: the check and the write hold the
// key's lock).
func (kr *Keyring) Create(k *Key) error {
	if err := CheckName(k.Name); err != nil {
		return err
	}
	unlock, err := kr.lock(k.Name)
	if err != nil {
		return err
	}
	defer unlock()
	if kr.Has(k.Name) {
		return fmt.Errorf("%w: %q (in %s)", ErrExists, k.Name, kr.dir)
	}
	return kr.store(k, true)
}

// ErrConflict: the stored key changed since it was loaded in a way Save
// cannot merge.
var ErrConflict = errors.New("keyring: the key changed since it was loaded")

// Save writes back a key loaded with Get (after a change: patient id, a
// new KEK). It never asks for the passphrase again.
//
// Another emrcli run may have saved the same key since this one loaded it
// (a patient revoking two clinicians at once: each rotation adds a KEK
// version). Written back as loaded, the key would lose that run's version,
// and with it every record re-wrapped under it. So under the key's lock
// Save reads the stored key again and merges it into k: every KEK version
// either holds is kept, and a version stored with other bytes, another
// patient id or another identity is refused (ErrConflict), never
// overwritten.
func (kr *Keyring) Save(k *Key) error {
	unlock, err := kr.lock(k.Name)
	if err != nil {
		return err
	}
	defer unlock()
	if !kr.Has(k.Name) {
		return fmt.Errorf("%w: %q", ErrNotFound, k.Name)
	}
	if err := kr.mergeStored(k); err != nil {
		return err
	}
	return kr.store(k, false)
}

// Refresh adds to k (a key loaded with Get) what another run has saved of
// it since, such as a KEK version made by a rotation in another emrcli run,
// without asking for the passphrase again. It refuses what Save would
// (ErrConflict).
func (kr *Keyring) Refresh(k *Key) error {
	unlock, err := kr.lock(k.Name)
	if err != nil {
		return err
	}
	defer unlock()
	return kr.mergeStored(k)
}

// mergeStored adds to k what the stored key has and k lacks (see Save).
func (kr *Keyring) mergeStored(k *Key) error {
	f, err := kr.read(k.Name)
	if err != nil {
		return err
	}
	var cur *Key
	if kr.backend == BackendTest {
		cur, err = f.openClear()
	} else if dk := kr.derived[k.Name]; dk != nil && f.KDF != nil && bytes.Equal(dk.salt, f.KDF.Salt) {
		cur, err = f.openWith(dk)
	} else {
		return fmt.Errorf("%w: %q was written anew (another passphrase or an import) since it was loaded; run the command again", ErrConflict, k.Name)
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(cur.PubKey(), k.PubKey()) {
		return fmt.Errorf("%w: %q now holds another signing key", ErrConflict, k.Name)
	}
	switch {
	case len(k.PatientID) == 0:
		k.PatientID = cur.PatientID
	case len(cur.PatientID) != 0 && !bytes.Equal(cur.PatientID, k.PatientID):
		return fmt.Errorf("%w: %q now belongs to patient %x, not %x", ErrConflict, k.Name, cur.PatientID, k.PatientID)
	}
	for v, kek := range cur.KEKs {
		mine, ok := k.KEKs[v]
		switch {
		case !ok:
			if k.KEKs == nil {
				k.KEKs = map[uint64][]byte{}
			}
			k.KEKs[v] = kek
		case !bytes.Equal(mine, kek):
			return fmt.Errorf("%w: %q holds another key for version %d (two runs rotated the patient key at once?)", ErrConflict, k.Name, v)
		}
	}
	return nil
}

// lock takes the exclusive lock on key name (a file next to it) and
// returns its release. emrcli runs are separate processes, so the lock is
// the kernel's (internal/filelock); it goes with the process if that dies.
// It is waited for as long as it takes: another run holds it only while
// it saves the key. Where flock is missing, two runs that save the same
// key at once are not kept apart (see Save).
func (kr *Keyring) lock(name string) (func(), error) {
	release, err := filelock.Lock(context.Background(), filepath.Join(kr.dir, "."+name+".lock"))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return release, nil
}

// Delete removes a key file, under the key's lock: a Save in progress in
// another run (a rotation writing a new KEK) would otherwise write the
// deleted key back after Delete said it was gone.
func (kr *Keyring) Delete(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if _, err := os.Lstat(kr.Path(name)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %q", ErrNotFound, name) // and no lock file made for it
	}
	unlock, err := kr.lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(kr.Path(name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		return err
	}
	delete(kr.derived, name)
	return nil
}

// ErrNoPassphrase: the test backend keeps keys in the clear, so there is
// no passphrase to change.
var ErrNoPassphrase = errors.New("keyring: the test keyring keeps keys UNENCRYPTED, without a passphrase")

// ChangePassphrase re-encrypts key name under a new passphrase. It reads
// the key file, asks for the current passphrase (purpose Unlock) and opens
// it: a wrong one fails as Get does (ErrWrongPassphrase) and nothing is
// written. It then asks for the new one (purpose ChangeKey; at least
// MinPassphraseLen characters) and derives the file key from it with a
// fresh salt, at the keyring's KDF cost or the file's where that is higher
// in a parameter: an old key moves up to the current cost (giving the same
// passphrase again does only that), and no change lowers a key's cost.
//
// The prompts are not made under the key's lock, which another run waits
// for without end (lock): it is taken only to read the file again and
// replace it, as Save takes it. What the file holds then (a KEK another
// run saved while the passphrases were typed) is what is sealed again; if
// it was written anew meanwhile (another passphrase, an import: another
// salt), the change fails with ErrConflict and writes nothing. The file is
// replaced durably, as Save replaces it, and this keyring keeps the new
// derived key, so a key it loaded saves without asking again.
//
// Another run that loaded the key before the change and then saves it
// (Save, Refresh) fails with ErrConflict, the salt having changed: it never
// writes the key back under the old passphrase. The test backend has no
// passphrase (ErrNoPassphrase). A copy of the old file (a backup, an
// export: exports have passphrases of their own) still opens as it did.
func (kr *Keyring) ChangePassphrase(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if kr.backend == BackendTest {
		return fmt.Errorf("%w: key %q (in %s)", ErrNoPassphrase, name, kr.dir)
	}
	// Ask and derive outside the lock: it is held only while the key is
	// re-read and written, as Save holds it.
	k, err := kr.Get(name)
	if err != nil {
		return err
	}
	old := kr.derived[name]
	dk, err := kr.newFileKey(name, ChangeKey, kr.kdf.atLeast(old.kdf))
	if err != nil {
		return err
	}
	unlock, err := kr.lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	// What the key holds now (a KEK another run saved while the user
	// typed) is what is sealed again; a file written anew meanwhile is
	// ErrConflict.
	if err := kr.mergeStored(k); err != nil {
		return err
	}
	nf, err := seal(formatKey, kr.backend, k, dk)
	if err != nil {
		return err
	}
	err = kr.write(name, nf)
	if err == nil || errors.Is(err, durable.ErrNotSynced) {
		// The file holds the key under the new passphrase.
		kr.derived[name] = dk
		clear(old.key)
	}
	return err
}

// Export returns the key encrypted under an export passphrase (asked with
// purpose ExportKey), whatever the backend.
func (kr *Keyring) Export(name string) ([]byte, error) {
	k, err := kr.Get(name)
	if err != nil {
		return nil, err
	}
	dk, err := kr.newFileKey(name, ExportKey, kr.kdf)
	if err != nil {
		return nil, err
	}
	defer clear(dk.key)
	f, err := seal(formatExport, BackendFile, k, dk)
	if err != nil {
		return nil, err
	}
	return f.encode()
}

// Import decrypts an export (passphrase asked with purpose ImportKey) and
// stores it as name ("" = the exported name).
func (kr *Keyring) Import(name string, data []byte) (*Key, error) {
	f, err := decodeFile(data)
	if err != nil {
		return nil, err
	}
	if f.Format != formatExport {
		return nil, fmt.Errorf("%w: not an emrcli key export (format %q)", ErrCorrupt, f.Format)
	}
	pass, err := kr.askPass(ImportKey, f.Name)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	k, _, err := f.open(pass)
	if err != nil {
		return nil, err
	}
	if name != "" {
		k.Name = name
	}
	return k, kr.Create(k)
}

func (kr *Keyring) askPass(p Purpose, name string) ([]byte, error) {
	if kr.pass == nil {
		return nil, errors.New("keyring: a passphrase is needed and there is no way to ask for one")
	}
	return kr.pass(p, name)
}

func (kr *Keyring) read(name string) (*keyFile, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(kr.Path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q (in %s)", ErrNotFound, name, kr.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	f, err := decodeFile(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kr.Path(name), err)
	}
	if f.Format != formatKey || f.Backend != kr.backend {
		return nil, fmt.Errorf("%w: %s is a %q file of backend %q", ErrCorrupt, kr.Path(name), f.Format, f.Backend)
	}
	if f.Name != name {
		return nil, fmt.Errorf("%w: %s holds key %q", ErrCorrupt, kr.Path(name), f.Name)
	}
	return f, nil
}

// store writes k: a new key (isNew) under a passphrase asked for with
// purpose NewKey, else (a Save) under the file key derived when it was
// loaded, which keeps the file's salt and KDF cost.
func (kr *Keyring) store(k *Key, isNew bool) error {
	var f *keyFile
	var err error
	if kr.backend == BackendTest {
		f = sealClear(k)
	} else {
		dk := kr.derived[k.Name]
		if dk == nil || isNew {
			if dk, err = kr.newFileKey(k.Name, NewKey, kr.kdf); err != nil {
				return err
			}
		}
		if f, err = seal(formatKey, kr.backend, k, dk); err != nil {
			return err
		}
		kr.derived[k.Name] = dk
	}
	return kr.write(k.Name, f)
}

// newFileKey asks for the passphrase that is to protect key name from now
// on (purpose NewKey, ChangeKey, or ExportKey for an export file), checks
// its length, and derives a file key from it with a fresh 16-byte salt at
// KDF cost params.
func (kr *Keyring) newFileKey(name string, p Purpose, params KDFParams) (*derivedKey, error) {
	pass, err := kr.askPass(p, name)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	if utf8.RuneCount(pass) < MinPassphraseLen {
		what := "passphrase"
		if p == ExportKey {
			what = "export passphrase"
		}
		return nil, fmt.Errorf("keyring: %s must have at least %d characters", what, MinPassphraseLen)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return &derivedKey{salt: salt, kdf: params, key: derive(pass, salt, params)}, nil
}

// write replaces the file of key name with f, through a temporary file, a
// rename and a sync of the directory: a crash leaves the old key file or
// the new one, and a key (or a new KEK a rotation is about to use) the
// caller was told is stored is.
func (kr *Keyring) write(name string, f *keyFile) error {
	raw, err := f.encode()
	if err != nil {
		return err
	}
	if err := durable.ReplaceFile(kr.Path(name), raw, 0o600); err != nil {
		return fmt.Errorf("keyring: store key %q: %w", name, err)
	}
	return nil
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
