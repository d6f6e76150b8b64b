package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/emrchain/emrchain/app"
)

// File formats.
const (
	formatKey    = "emrcli-key/1"
	formatExport = "emrcli-key-export/1"
	kdfArgon2id  = "argon2id"
	cipherGCM    = "aes-256-gcm"
	testWarning  = "UNENCRYPTED test keyring: these private keys are in the clear; never use them for real data"
)

// KDFParams are argon2id's parameters.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// atLeast is p with each parameter raised to floor's where floor's is
// higher. Both valid (memory at least 8 KiB per thread), so is the result.
func (p KDFParams) atLeast(floor KDFParams) KDFParams {
	return KDFParams{Time: max(p.Time, floor.Time), MemoryKiB: max(p.MemoryKiB, floor.MemoryKiB), Threads: max(p.Threads, floor.Threads)}
}

// DefaultKDF is RFC 9106's second recommended argon2id setting
// (t=3, m=64 MiB, p=4).
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// Bounds on parameters read from a file, so a crafted file cannot make
// unlocking take forever or exhaust memory.
const (
	maxKDFTime   = 64
	maxKDFMemory = 4 << 20 // KiB = 4 GiB
)

// keyFile is the JSON of a key file or an export. Public fields are in the
// clear (List needs no passphrase) and bound into the AEAD as associated
// data; the secrets are AES-256-GCM encrypted (file backend, exports) or
// in the clear (test backend).
type keyFile struct {
	Format     string `json:"format"`
	Backend    string `json:"backend"`
	Warning    string `json:"warning,omitempty"`
	Name       string `json:"name"`
	Address    string `json:"address"`
	SignPubKey string `json:"sign_pub_key"`
	EncPubKey  string `json:"enc_pub_key"`
	// PatientID is informational; the authoritative copy is in the secrets.
	PatientID string    `json:"patient_id,omitempty"`
	Created   time.Time `json:"created"`

	KDF        *kdfBlock `json:"kdf,omitempty"`
	Cipher     string    `json:"cipher,omitempty"`
	Nonce      []byte    `json:"nonce,omitempty"`
	Ciphertext []byte    `json:"ciphertext,omitempty"`

	Secrets *secrets `json:"secrets,omitempty"` // test backend only
}

type kdfBlock struct {
	Alg  string `json:"alg"`
	Salt []byte `json:"salt"`
	KDFParams
}

type secrets struct {
	SignPrivKey   []byte    `json:"sign_priv_key"`
	EncPrivKey    []byte    `json:"enc_priv_key"`
	PatientSecret []byte    `json:"patient_secret"`
	PatientID     []byte    `json:"patient_id,omitempty"`
	KEKs          []kekJSON `json:"keks,omitempty"`
}

type kekJSON struct {
	Version uint64 `json:"version"`
	Key     []byte `json:"key"`
}

type derivedKey struct {
	salt []byte
	key  []byte
	kdf  KDFParams
}

func decodeFile(raw []byte) (*keyFile, error) {
	var f keyFile
	if err := decodeJSONStrict(raw, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &f, nil
}

// decodeJSONStrict decodes raw, one JSON object and nothing after it but
// white space, into v, refusing fields v lacks: a key file followed by
// anything else (a second object, a torn write's leftovers) is not one.
func decodeJSONStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func (f *keyFile) encode() ([]byte, error) {
	raw, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

func (f *keyFile) info() (Info, error) {
	addr, err1 := hex.DecodeString(f.Address)
	sign, err2 := hex.DecodeString(f.SignPubKey)
	enc, err3 := hex.DecodeString(f.EncPubKey)
	pid, err4 := hex.DecodeString(f.PatientID)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Info{}, fmt.Errorf("%w: %q: %v", ErrCorrupt, f.Name, err)
	}
	if !bytes.Equal(app.AddressOf(sign), addr) {
		return Info{}, fmt.Errorf("%w: %q: address does not match the public key", ErrCorrupt, f.Name)
	}
	if len(pid) == 0 {
		pid = nil
	}
	return Info{Name: f.Name, Backend: f.Backend, Address: addr, SignPubKey: sign, EncPubKey: enc, PatientID: pid, Created: f.Created}, nil
}

// header fills the public fields from k.
func header(format, backend string, k *Key) *keyFile {
	return &keyFile{
		Format: format, Backend: backend, Name: k.Name,
		Address: hexOf(k.Address()), SignPubKey: hexOf(k.PubKey()), EncPubKey: hexOf(k.EncPubKey()),
		PatientID: hexOf(k.PatientID), Created: k.Created,
	}
}

func secretsOf(k *Key) *secrets {
	s := &secrets{SignPrivKey: k.sign.Bytes(), EncPrivKey: k.enc.Bytes(), PatientSecret: k.PatientSecret, PatientID: k.PatientID}
	for _, v := range k.KEKVersions() { // ascending
		s.KEKs = append(s.KEKs, kekJSON{Version: v, Key: k.KEKs[v]})
	}
	return s
}

// keyFrom rebuilds a key from its secrets and checks it against the
// public header.
func (f *keyFile) keyFrom(s *secrets) (*Key, error) {
	k, err := FromKeys(f.Name, s.SignPrivKey, s.EncPrivKey, s.PatientSecret)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrCorrupt, f.Name, err)
	}
	if hexOf(k.Address()) != f.Address || hexOf(k.PubKey()) != f.SignPubKey || hexOf(k.EncPubKey()) != f.EncPubKey {
		return nil, fmt.Errorf("%w: %q: public keys do not match the private keys", ErrCorrupt, f.Name)
	}
	// The patient id in the clear (for commands that need no passphrase)
	// is not in the associated data (aad); it must be the encrypted one.
	if f.PatientID != hexOf(s.PatientID) {
		return nil, fmt.Errorf("%w: %q: the patient id in the clear (%s) is not the key's (%s)", ErrCorrupt, f.Name, f.PatientID, hexOf(s.PatientID))
	}
	k.Created = f.Created
	k.PatientID = s.PatientID
	k.KEKs = map[uint64][]byte{}
	for _, e := range s.KEKs {
		if len(e.Key) != 32 {
			return nil, fmt.Errorf("%w: %q: KEK version %d is %d bytes", ErrCorrupt, f.Name, e.Version, len(e.Key))
		}
		k.KEKs[e.Version] = e.Key
	}
	return k, nil
}

func sealClear(k *Key) *keyFile {
	f := header(formatKey, BackendTest, k)
	f.Warning = testWarning
	f.Secrets = secretsOf(k)
	return f
}

func (f *keyFile) openClear() (*Key, error) {
	if f.Secrets == nil {
		return nil, fmt.Errorf("%w: %q has no secrets", ErrCorrupt, f.Name)
	}
	return f.keyFrom(f.Secrets)
}

// aad is the associated data binding the public header to the secrets:
// renaming a file, swapping public keys or weakening the KDF parameters
// makes decryption fail.
func (f *keyFile) aad() []byte {
	b, _ := json.Marshal(struct {
		Format, Name, Address, SignPubKey, EncPubKey string
		Created                                      time.Time
		KDF                                          *kdfBlock
		Cipher                                       string
	}{f.Format, f.Name, f.Address, f.SignPubKey, f.EncPubKey, f.Created, f.KDF, f.Cipher})
	return b
}

// seal encrypts k's secrets with file key dk, recording dk's salt and KDF
// cost in the file.
func seal(format, backend string, k *Key, dk *derivedKey) (*keyFile, error) {
	f := header(format, backend, k)
	f.KDF = &kdfBlock{Alg: kdfArgon2id, Salt: dk.salt, KDFParams: dk.kdf}
	f.Cipher = cipherGCM
	plain, err := json.Marshal(secretsOf(k))
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	aead, err := newGCM(dk.key)
	if err != nil {
		return nil, err
	}
	f.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(f.Nonce); err != nil {
		return nil, err
	}
	f.Ciphertext = aead.Seal(nil, f.Nonce, plain, f.aad())
	return f, nil
}

// open decrypts the secrets with pass.
func (f *keyFile) open(pass []byte) (*Key, *derivedKey, error) {
	if f.KDF == nil || f.KDF.Alg != kdfArgon2id || f.Cipher != cipherGCM {
		return nil, nil, fmt.Errorf("%w: %q: unsupported encryption", ErrCorrupt, f.Name)
	}
	p := f.KDF.KDFParams
	if p.Time == 0 || p.Time > maxKDFTime || p.MemoryKiB < 8*uint32(max(p.Threads, 1)) || p.MemoryKiB > maxKDFMemory || p.Threads == 0 || len(f.KDF.Salt) < 16 {
		return nil, nil, fmt.Errorf("%w: %q: argon2id parameters out of range", ErrCorrupt, f.Name)
	}
	dk := &derivedKey{salt: f.KDF.Salt, kdf: p, key: derive(pass, f.KDF.Salt, p)}
	k, err := f.openWith(dk)
	if err != nil {
		return nil, nil, err
	}
	return k, dk, nil
}

// openWith decrypts the secrets with an already derived key (the one a
// Get derived from the passphrase): it fits as long as the file keeps the
// salt it was derived with, which every Save does.
func (f *keyFile) openWith(dk *derivedKey) (*Key, error) {
	if f.KDF == nil || f.KDF.Alg != kdfArgon2id || f.Cipher != cipherGCM {
		return nil, fmt.Errorf("%w: %q: unsupported encryption", ErrCorrupt, f.Name)
	}
	aead, err := newGCM(dk.key)
	if err != nil {
		return nil, err
	}
	if len(f.Nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("%w: %q: bad nonce", ErrCorrupt, f.Name)
	}
	plain, err := aead.Open(nil, f.Nonce, f.Ciphertext, f.aad())
	if err != nil {
		return nil, fmt.Errorf("%w: key %q", ErrWrongPassphrase, f.Name)
	}
	defer clear(plain)
	var s secrets
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrCorrupt, f.Name, err)
	}
	return f.keyFrom(&s)
}

func derive(pass, salt []byte, p KDFParams) []byte {
	return argon2.IDKey(pass, salt, p.Time, p.MemoryKiB, p.Threads, 32)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
