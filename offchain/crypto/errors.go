package crypto

import "errors"

// Sentinel errors. Functions in this package wrap them with detail, so test
// with errors.Is, never with ==. One failure may match several sentinels:
// every failure of the stream reader's ciphertext matches ErrCorrupt (a
// failure of its source or a bad key does not), and a malformed stream
// header additionally matches ErrBadFormat or ErrUnsupportedVersion.
var (
	// ErrCorrupt reports that an encrypted file (the streaming format) is not
	// what the writer produced: it was truncated, extended, reordered,
	// spliced, tampered with, or it is being read with the wrong data key or
	// the wrong associated data. These cases are deliberately
	// indistinguishable. Errors from the underlying io.Reader are passed
	// through (wrapped) and do not match ErrCorrupt.
	ErrCorrupt = errors.New("crypto: ciphertext corrupt or not authentic")

	// ErrDecrypt reports an AES-GCM authentication failure: wrong key, wrong
	// associated data (patient, category, key version, grantee, ...) or a
	// modified ciphertext. AEADs cannot tell these apart and neither can we.
	ErrDecrypt = errors.New("crypto: message authentication failed (wrong key, wrong binding or tampered data)")

	// ErrBadFormat reports an encoding that cannot be parsed: wrong length,
	// bad magic, out-of-range field.
	ErrBadFormat = errors.New("crypto: malformed encoding")

	// ErrUnsupportedVersion reports a well-formed encoding whose version byte
	// this build does not implement.
	ErrUnsupportedVersion = errors.New("crypto: unsupported format version")

	// ErrInvalidKey reports a caller-supplied key of the wrong length or of
	// the wrong curve, or an X25519 public key of small order.
	ErrInvalidKey = errors.New("crypto: invalid key")
)
