// Package crypto is emrchain's client-side cryptography: it encrypts medical
// records before they leave the client, wraps their keys, and hands the
// patient's key-encryption key to grantees. It uses only the Go standard
// library (crypto/aes, crypto/cipher GCM, crypto/hkdf, crypto/sha256,
// crypto/ecdh X25519, crypto/rand); it defines formats, not primitives.
//
// # Key hierarchy
//
//	patient KEK (32 bytes, versioned) ── wraps ──▶ per-file data key (32 bytes) ── encrypts ──▶ file
//	     │
//	     └── sealed to each grantee's X25519 key in a KEK envelope (carried by the grant)
//
// Each file gets a fresh data key (GenerateKey). The data key is wrapped under
// the current KEK (WrapKey, with FileKeyAAD as associated data) and the
// wrapped key is stored in the on-chain record. A grant carries the KEK in an
// envelope to the grantee's registered X25519 key (SealEnvelope). Revoking a
// grantee rotates the KEK: a new version, new envelopes for the remaining
// grantees, new files under the new version, and the data keys of old files
// unwrapped and re-wrapped under the new KEK (the files themselves need not be
// re-encrypted, see the threat model). An envelope is a disclosure as soon as
// anyone sees it, committed or not, so the KEK left current by a revocation
// must be one that no rotation attempt from before the revocation could
// have sealed to the revoked grantee (client.RevokeAndRotate rotates to two
// versions past the grantee's last envelope).
//
// All integers below are big-endian. "||" is concatenation. Labels are ASCII
// without a terminator; each is followed by fixed-length or length-prefixed
// fields, so every encoding is injective.
//
// # Streaming file format (NewEncryptWriter / NewDecryptReader)
//
// A STREAM-style segmented AEAD (Hoang, Reyhanitabar, Rogaway, Vizár 2015;
// the same shape as Tink's AES-GCM-HKDF streaming AEAD):
//
//	offset  size  field
//	0       4     magic "EMR1" (0x45 0x4d 0x52 0x31)
//	4       1     version = 0x01
//	5       4     segment size S (uint32, plaintext bytes per segment;
//	              writers use 65536; readers accept 16..1048576)
//	9       16    salt (random per file)
//	25      ...   segments 0, 1, ..., n-1
//
// The header is 25 bytes. Segment i is AES-256-GCM(K, N_i, P_i, A_i) =
// ciphertext || 16-byte tag, where
//
//	K || NP = HKDF-SHA256(ikm = data key, salt = salt,
//	                      info = "emrchain/v1/stream-segment-key", L = 36)
//	          (K: 32-byte AES-256 key, NP: 4-byte nonce prefix)
//	N_i     = NP || uint64(i)                                      (12 bytes)
//	A_i     = header (25 bytes) || uint64(i) || final_i || aad
//	final_i = 0x01 for the last segment, 0x00 for all others
//	aad     = the caller's associated data (not stored in the file)
//
// Every segment but the last holds exactly S plaintext bytes (S+16 bytes on
// the wire); the last holds 1..S bytes, or 0 bytes only when the whole file is
// empty (an empty file is header || one 16-byte tag). So a plaintext of L
// bytes gives ciphertext 25 + L + 16·max(1, ceil(L/S)) bytes (CiphertextSize).
//
// What each piece defends against: the segment index in nonce and associated
// data makes reordering, dropping or duplicating segments fail; the final
// flag makes truncation at a segment boundary fail (the new last segment was
// sealed as non-final) and, together with the reader's check that EOF
// follows the final segment, makes extension fail; the header in every A_i
// makes header tampering fail (a changed segment size or salt also changes
// framing or keys); the per-file salt derives a per-file key, so segments
// cannot be spliced between files even if a data key were ever reused, and
// (key, nonce) pairs never repeat unless two 128-bit salts collide. The
// reader releases a segment's plaintext only after its tag verified, holds
// one segment in memory, and treats a zero-length final segment after
// segment 0 as corrupt (writers never produce it), so every plaintext has
// exactly one valid encoding per (key, salt, S, aad).
//
// # Wrapped data key (WrapKey / UnwrapKey), 61 bytes
//
//	offset  size  field
//	0       1     version = 0x01
//	1       12    nonce (random)
//	13      32    AES-256-GCM ciphertext of the 32-byte data key, under the KEK
//	45      16    GCM tag
//
// GCM associated data: "emrchain/v1/wrapped-key" || 0x01 || aad, where aad is
// normally FileKeyAAD(patientID, category, keyVersion) =
//
//	"emrchain/v1/file-key-aad" || uint32(len(patientID)) || patientID ||
//	uint32(len(category)) || category || uint64(keyVersion)
//
// Random 96-bit nonces limit one KEK to about 2^32 wraps (NIST SP 800-38D);
// a patient's KEK wraps one key per file and is rotated on every revocation.
//
// # KEK envelope (SealEnvelope / OpenEnvelope), 93 bytes
//
// ECIES with X25519, HKDF-SHA256 and AES-256-GCM, in the style of HPKE's
// DHKEM (both public keys are bound into the key derivation):
//
//	offset  size  field
//	0       1     version = 0x01
//	1       32    ephemeral X25519 public key E = X25519(e, 9), e fresh per envelope
//	33      12    nonce (random)
//	45      32    AES-256-GCM ciphertext of the 32-byte KEK
//	77      16    GCM tag
//
//	shared = X25519(e, R) = X25519(r, E)   (all-zero result rejected)
//	key    = HKDF-SHA256(ikm = shared, salt = none (32 zero bytes),
//	                     info = "emrchain/v1/kek-envelope" || E || R, L = 32)
//	aad    = "emrchain/v1/kek-envelope" || 0x01 || uint32(len(PatientID)) ||
//	         PatientID || Grantee (20 bytes) || uint64(KeyVersion)
//
// where R is the recipient's 32-byte public key. The binding makes an
// envelope useless outside its (patient, grantee, key version): it cannot be
// replayed into another grant, and an old-version envelope cannot be passed
// off as the current one. The envelope authenticates the KEK to whoever holds
// r, not the sender: anyone can seal some KEK to a public key. Who granted
// what is established by the signed grant transaction on chain, not here.
//
// # Transfer-key envelope (SealTransferKey / OpenTransferKey), 93 bytes
//
// The KEK envelope's layout and construction under the label
// "emrchain/v1/transfer-key", sealing a fresh data key for one transfer
// (every blob answer of a sidecar, to a member or to a storage service's
// replica request, encrypted with NewEncryptWriter under that key) to the
// recipient's registered X25519 key:
//
//	key = HKDF-SHA256(ikm = shared, salt = none,
//	                  info = "emrchain/v1/transfer-key" || E || R, L = 32)
//	aad = "emrchain/v1/transfer-key" || 0x01 || uint32(len(context)) || context
//
// context names the transfer (not empty); the stream is encrypted with the
// same context as its associated data. The distinct label keeps the two
// kinds apart: neither opens as the other. Whoever relays or records a
// transfer holds bytes only the recipient can read.
//
// # Emergency data-key envelope and KEK check value
//
// An emergency service hands one record's data key to a clinician in a KEK
// envelope bound by EmergencyKeyBinding (emergency.go: the grantee field
// is a hash of the clinician's address under its own label, the key
// version the record's sequence). A patient commits KEKCheck, a 16-byte
// HMAC under the KEK of its patient id and version, on chain with each KEK
// version (kekcheck.go), so a KEK can be checked before anything is
// wrapped or sealed under it.
//
// X25519 public keys are 32 bytes (MarshalEncryptionPublicKey);
// ParseEncryptionPublicKey rejects small-order points.
//
// # Threat model
//
// Protected: the confidentiality and integrity of record contents and keys
// against the storage operator, the blob sidecar, full nodes, the network,
// and any consortium member that never held the patient's KEK. A member
// that held it (a grantee of any right, standing or not) is kept from the
// ciphertext by the sidecar, which serves it only to standing readers, not
// by cryptography: see the first point below. Ciphertext that is
// modified, truncated, extended, reordered, spliced from another file, or
// presented with the wrong key or binding is rejected with an error
// (ErrCorrupt / ErrDecrypt), never returned as wrong plaintext. Together with
// the on-chain SHA-256 of the ciphertext (checked by the client before
// decryption) this makes every lie by storage a clear error. That holds
// against anyone but the ciphertext's writer: AES-GCM does not commit to
// its key, so a writer who chooses the ciphertext can make it decrypt, in
// full, under a second key of its choosing as well. No key is therefore
// ever taken because it decrypts: a data key is unwrapped from the chain
// (under the KEK, bound to patient, category and version), or comes in an
// emergency release signed by the service that unwrapped it.
//
// Not protected, stated plainly:
//
//   - A grantee keeps what it saw. Nothing cryptographic can take back
//     plaintext, or a data key or KEK that a grantee already held.
//     Revocation stops future reads: the chain refuses to log new access
//     events for the revoked grantee (so the sidecar serves no more
//     ciphertext), and the KEK rotation means the revoked grantee receives
//     no envelope for the new KEK and cannot unwrap data keys of files
//     written afterwards. But old files keep their data keys (only the
//     wrapping changes), and the old wrappings stay readable in the chain's
//     history (and in its state for records a rotation left under an older
//     version): a revoked grantee that obtains the ciphertext of any file
//     written before the revocation, from the storage or a copy, can read
//     it with the KEK it held. Re-encrypting a file with a new data key is
//     the only remedy.
//   - Expiry does not rotate the KEK; only a revocation does. A member whose
//     grant expired still holds the current KEK, and files written after
//     the expiry are wrapped under it until the patient's next rotation:
//     the sidecar refuses that member their ciphertext, but whoever can
//     read the storage and once held the grant could decrypt them. A
//     patient who wants expiry to count as revocation revokes the expired
//     grant (emrcli revoke accepts one), which rotates.
//   - Metadata: the ciphertext size reveals the exact plaintext size; record
//     categories, key versions, timing and access patterns are visible to the
//     chain and the storage.
//   - A compromised client device: keys in its memory or key store are
//     exposed. Go cannot reliably erase secrets from memory; this package
//     clears derived keys it owns but cannot promise more.
//   - The envelope does not authenticate its sender (see above), and
//     X25519 is not post-quantum: recorded envelopes would be opened by a
//     future quantum adversary.
//   - A plaintext prefix returned by the stream reader before an error is
//     authentic but incomplete; callers must not use a file before Read has
//     returned io.EOF.
package crypto
