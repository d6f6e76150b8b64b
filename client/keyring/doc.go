// Package keyring keeps emrcli's keys: for each name, an ed25519 signing
// key (the member's account), an X25519 encryption key (grants are sealed
// to it), a 32-byte patient secret (the seed of the pseudonymous patient id
// is an HMAC under it; the id hashes that seed with the signing key) and,
// once the key enrolled as a patient, the patient id and
// every version of the patient's key-encryption key (KEK).
//
// # Backends
//
// "file" (the default) keeps one JSON file per key in HOME/keyring-file
// (directory 0700, files 0600, written through a temporary file and a
// rename). The public part (name, address, public keys, patient id) is in
// the clear so that listing needs no passphrase; the secrets are encrypted
// with AES-256-GCM under a key derived from the passphrase with argon2id
// (RFC 9106, t=3, m=64 MiB, p=4; the parameters and a 16-byte random salt
// are stored in the file and bounded when read). The public part and the
// KDF parameters are the GCM associated data, so renaming a file, swapping
// its public keys or weakening its KDF makes it fail to open, and so does a
// wrong passphrase (ErrWrongPassphrase: the two are indistinguishable). The
// patient id in the clear must equal the encrypted one (ErrCorrupt). What
// is read without a passphrase (Info, List: emrcli's listing, and the
// patient a query names by key) is not authenticated: whoever can write
// the keyring directory can change it, as they could replace the files.
//
// "test" keeps the same files in HOME/keyring-test with the secrets in the
// clear and a warning in every file. It exists for scripts and tests and
// must never hold real keys.
//
// # Changing a passphrase
//
// ChangePassphrase opens a file-backend key with its current passphrase
// and rewrites it under a new one, with a fresh salt at the keyring's KDF
// cost or the file's where higher (so it moves an old file up to the
// current cost and never lowers one). The passphrases are asked for
// outside the key's lock, which is held only to read the file again and
// replace it. A run that loaded the key before and saves it after gets
// ErrConflict (the salt changed) and writes nothing: a key is never written
// back under its old passphrase. Exports and other copies of the old file
// keep the passphrase they were made with. Test-backend keys have none
// (ErrNoPassphrase).
//
// # Export and import
//
// Export writes the whole entry (keys, secret, patient id, every KEK)
// encrypted like a file-backend key but under a separate export
// passphrase, whatever the backend; Import reverses it, so an exported key
// re-imports with the same address and can still open old records.
// ImportDev reads the unencrypted development key files of emrchaind init.
//
// What this package does not protect against: malware on the machine that
// reads the passphrase or the process memory (Go cannot reliably erase
// secrets), and weak passphrases (argon2id slows guessing, it cannot stop
// it).
package keyring
