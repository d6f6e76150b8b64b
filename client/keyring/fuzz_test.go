package keyring

import (
	"bytes"
	stded25519 "crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
)

// fuzzPass and fuzzSalt derive the file key the FuzzDecodeFile seeds are
// sealed with (with the cheap parameters), so that the committed corpus
// keeps opening; fuzzWrong is another passphrase's key.
var (
	fuzzPass = []byte("fuzz passphrase")
	fuzzSalt = bytes.Repeat([]byte{0x5a}, 16)
)

func fuzzKeys() (right, wrong *derivedKey) {
	right = &derivedKey{salt: fuzzSalt, kdf: cheap, key: derive(fuzzPass, fuzzSalt, cheap)}
	wrong = &derivedKey{salt: fuzzSalt, kdf: cheap, key: derive([]byte("another passphrase"), fuzzSalt, cheap)}
	return right, wrong
}

// fuzzKey is a fixed key (fixed key material, patient id and KEKs), so
// the seeds are the same on every run.
func fuzzKey(t testing.TB, name string) *Key {
	t.Helper()
	sign := stded25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	k, err := FromKeys(name, sign, bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	k.Created = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k.PatientID = bytes.Repeat([]byte{4}, 32)
	k.KEKs = map[uint64][]byte{1: bytes.Repeat([]byte{5}, 32), 7: bytes.Repeat([]byte{6}, 32)}
	return k
}

// decodeFileSeeds are files as the keyring writes them (test backend,
// file backend, export) and a few damaged ones.
func decodeFileSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	dk, _ := fuzzKeys()
	k := fuzzKey(t, "alice")
	sealed := func(format string) []byte {
		f, err := seal(format, BackendFile, k, dk)
		if err != nil {
			t.Fatal(err)
		}
		return mustEncode(t, f)
	}
	clearFile := mustEncode(t, sealClear(k))
	shortKEK := fuzzKey(t, "alice")
	shortKEK.KEKs[9] = []byte{9}
	fileKey := sealed(formatKey)
	return map[string][]byte{
		"test-backend":    clearFile,
		"file-backend":    fileKey,
		"export":          sealed(formatExport),
		"truncated":       fileKey[:len(fileKey)/2],
		"kdf-weakened":    bytes.Replace(fileKey, []byte(`"time": 1`), []byte(`"time": 2`), 1),
		"renamed":         bytes.Replace(fileKey, []byte(`"name": "alice"`), []byte(`"name": "bob"`), 1),
		"unknown-field":   bytes.Replace(clearFile, []byte(`"format"`), []byte(`"extra": 1, "format"`), 1),
		"short-kek":       mustEncode(t, sealClear(shortKEK)),
		"empty":           nil,
		"null":            []byte("null"),
		"empty-object":    []byte("{}"),
		"bad-created":     []byte(`{"created": "yesterday"}`),
		"secrets-no-keys": []byte(`{"format":"emrcli-key/1","backend":"test","name":"a","secrets":{}}`),
	}
}

// sameKey reports whether two keys hold the same material.
func sameKey(a, b *Key) bool {
	if a.Name != b.Name || !a.Created.Equal(b.Created) || !bytes.Equal(a.PatientSecret, b.PatientSecret) ||
		!bytes.Equal(a.PatientID, b.PatientID) || !bytes.Equal(a.sign.Bytes(), b.sign.Bytes()) ||
		!bytes.Equal(a.enc.Bytes(), b.enc.Bytes()) || len(a.KEKs) != len(b.KEKs) {
		return false
	}
	for v, kek := range a.KEKs {
		if other, ok := b.KEKs[v]; !ok || !bytes.Equal(kek, other) {
			return false
		}
	}
	return true
}

// checkOpened checks what a key file yielded: a valid name, the public
// keys of the header, 32-byte KEKs.
func checkOpened(t *testing.T, f *keyFile, k *Key) {
	t.Helper()
	if err := CheckName(k.Name); err != nil || k.Name != f.Name {
		t.Fatalf("opened key named %q (file %q): %v", k.Name, f.Name, err)
	}
	if hexOf(k.Address()) != f.Address || hexOf(k.PubKey()) != f.SignPubKey || hexOf(k.EncPubKey()) != f.EncPubKey {
		t.Fatal("opened key does not match the file's public keys")
	}
	if len(k.PatientSecret) != 32 || !bytes.Equal(stded25519.PrivateKey(k.sign.Bytes()).Public().(stded25519.PublicKey), k.PubKey()) {
		t.Fatal("opened key has a bad patient secret or signing key")
	}
	for v, kek := range k.KEKs {
		if len(kek) != 32 {
			t.Fatalf("opened key has a KEK of version %d of %d bytes", v, len(kek))
		}
	}
}

// FuzzDecodeFile: a key file, however damaged or crafted, is refused with
// ErrCorrupt or ErrWrongPassphrase, never a panic. What decodes re-encodes
// to itself (with the same authenticated header); a key it opens to
// matches its public header and survives a round trip through the writer;
// a wrong passphrase's file key never opens it, and opening it with the
// right one means the KDF parameters are the ones it was sealed with. The
// KDF runs once, outside the loop: this fuzzes everything after it.
func FuzzDecodeFile(f *testing.F) {
	for _, raw := range decodeFileSeeds(f) {
		f.Add(raw)
	}
	dk, wrong := fuzzKeys()
	f.Fuzz(func(t *testing.T, raw []byte) {
		kf, err := decodeFile(raw)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || kf != nil {
				t.Fatalf("decodeFile = %v, %v; want ErrCorrupt", kf, err)
			}
			return
		}
		enc, err := kf.encode()
		if err != nil {
			t.Fatalf("a decoded file does not encode: %v", err)
		}
		again, err := decodeFile(enc)
		if err != nil {
			t.Fatalf("an encoded file does not decode: %v\n%s", err, enc)
		}
		if enc2, err := again.encode(); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %v\n%s\n%s", err, enc, enc2)
		}
		if !bytes.Equal(kf.aad(), again.aad()) {
			t.Fatalf("re-encoding changed the authenticated header:\n%s\n%s", kf.aad(), again.aad())
		}

		if info, err := kf.info(); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("info: %v, want ErrCorrupt", err)
			}
		} else if !bytes.Equal(info.Address, app.AddressOf(info.SignPubKey)) || info.Name != kf.Name {
			t.Fatalf("info %+v does not match its key", info)
		}

		if k, err := kf.openClear(); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("openClear: %v, want ErrCorrupt", err)
			}
		} else {
			checkOpened(t, kf, k)
			back, err := decodeFile(mustEncode(t, sealClear(k)))
			if err != nil {
				t.Fatal(err)
			}
			if k2, err := back.openClear(); err != nil || !sameKey(k, k2) {
				t.Fatalf("a test-backend key does not survive a round trip: %v", err)
			}
		}

		if k, err := kf.openWith(wrong); err == nil || k != nil {
			t.Fatal("a wrong passphrase opened the file")
		} else if !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("openWith a wrong key: %v, want ErrWrongPassphrase or ErrCorrupt", err)
		}
		k, err := kf.openWith(dk)
		if err != nil {
			if !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("openWith: %v, want ErrWrongPassphrase or ErrCorrupt", err)
			}
			return
		}
		checkOpened(t, kf, k)
		if !bytes.Equal(kf.KDF.Salt, dk.salt) || kf.KDF.KDFParams != dk.kdf {
			t.Fatalf("opened with KDF parameters %+v it was not sealed with", kf.KDF)
		}
		sealed, err := seal(kf.Format, kf.Backend, k, dk)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeFile(mustEncode(t, sealed))
		if err != nil {
			t.Fatal(err)
		}
		if k2, err := back.openWith(dk); err != nil || !sameKey(k, k2) {
			t.Fatalf("a file-backend key does not survive a round trip: %v", err)
		}
	})
}

func mustEncode(t testing.TB, f *keyFile) []byte {
	t.Helper()
	raw, err := f.encode()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// devKeySeed is a dev key file as emrchaind init writes it
// (json.MarshalIndent of a DevKey).
func devKeySeed(t testing.TB) []byte {
	t.Helper()
	k := fuzzKey(t, "registrar")
	raw, err := json.MarshalIndent(DevKey{
		Name: "registrar", Address: hexOf(k.Address()), SignPrivKey: k.sign.Bytes(), SignPubKey: k.PubKey(),
		EncPrivKey: k.enc.Bytes(), EncPubKey: k.EncPubKey(), Role: "registrar", OrganizationID: "dev-hospital",
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(raw, '\n')
}

// FuzzParseDevKey: ParseDevKey never panics; a dev key it accepts has
// private keys that make its public keys and its address, and writes back
// (as emrchaind init writes it) to a file that parses to the same key.
func FuzzParseDevKey(f *testing.F) {
	seed := devKeySeed(f)
	f.Add(seed)
	f.Add(bytes.Replace(seed, []byte(`"address": "`), []byte(`"address": "X`), 1))
	f.Add([]byte(strings.ToUpper(string(seed[:len(seed)/3])) + string(seed[len(seed)/3:])))
	f.Add(bytes.Replace(seed, []byte(`"role"`), []byte(`"rolle"`), 1))
	f.Add([]byte(`{"sign_priv_key": null}`))
	f.Add([]byte("{}"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := ParseDevKey(raw)
		if err != nil {
			if d != nil {
				t.Fatalf("ParseDevKey returned a key and an error: %v", err)
			}
			return
		}
		k, err := FromKeys("dev", d.SignPrivKey, d.EncPrivKey, nil)
		if err != nil {
			t.Fatalf("accepted private keys FromKeys refuses: %v", err)
		}
		if !bytes.Equal(k.PubKey(), d.SignPubKey) || !bytes.Equal(k.EncPubKey(), d.EncPubKey) {
			t.Fatal("accepted public keys that do not match the private keys")
		}
		if addr, err := hex.DecodeString(d.Address); err != nil || !bytes.Equal(addr, k.Address()) {
			t.Fatalf("accepted address %q for %X", d.Address, k.Address())
		}
		out, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDevKey(out)
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("a dev key does not survive a round trip: %v\n%+v\n%+v", err, d, d2)
		}
	})
}
