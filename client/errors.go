package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Sentinel errors. Test for them with errors.Is: the errors this package
// returns wrap them with the detail a user needs.
var (
	// ErrVerification means a node's answer did not verify: a proof that
	// does not reach the light-client-verified AppHash, a response that the
	// proven state does not produce, a list with a hole in it, a header the
	// light client refuses. The answer is never returned.
	ErrVerification = errors.New("verification failed")

	// ErrTxRejected means the chain refused a transaction, in CheckTx or in
	// its block. The error is a *ChainError carrying the code and log.
	ErrTxRejected = errors.New("transaction rejected")

	// ErrNotFound means the chain answered "not found" (app.ErrNotFound),
	// or that a transaction hash is unknown to the node.
	ErrNotFound = errors.New("not found")

	// ErrStale means a verified read could not be had at a fresh enough
	// height: the node answered for an older state than the one asked for
	// (that error also wraps ErrVerification: an honest node answers at
	// the height asked), or the node is behind a state the client has
	// already seen (Client.MinHeight) and did not catch up within the
	// timeout. The answer is never returned.
	ErrStale = errors.New("stale state")

	// ErrReadLoggedNotServed means a download (or a share) logged its read
	// on chain (the access event is committed, and in the patient's audit
	// log) but no sidecar served the ciphertext. A retry within the
	// sidecars' access window can reuse that read
	// (DownloadRequest.ReuseAccess) instead of logging another, unless
	// every sidecar refused outright (the error then also matches
	// ErrSidecarsRefused, and its *NotServedError says why): asking them
	// again is refused the same way. Nothing that can fail without the
	// chain (the output, a sidecar that does not answer) fails after the
	// read is logged: those are checked first.
	ErrReadLoggedNotServed = errors.New("the read is logged but no sidecar served the ciphertext")

	// ErrWrongKEK means a copy of the patient's key-encryption key is not
	// the one the chain committed for its version (Patient.kek_check): a
	// rotation begun on another copy of the patient's key that never
	// committed, or an envelope a patient's client sealed from such a copy.
	// Nothing is wrapped or sealed under it.
	ErrWrongKEK = errors.New("not the patient's committed key-encryption key")

	// ErrSealUnverified means a client that does not verify its reads was
	// asked to seal a key to, or wrap one under, key material read from
	// the node: a grantee's or a study's encryption key, or the KEK a
	// member's envelope carries. A node that answered with a key of its
	// own would then learn the patient's key or a record's.
	ErrSealUnverified = errors.New("sealing a key needs verified reads")

	// ErrTrustRootReplaced means the root of trust in the client's Home
	// was replaced (emrcli light init --force in another terminal) or
	// removed after the client started: its next light-client operation
	// refuses to go on from the old root with the new root's store. Nothing
	// was verified; a new client (the command run again) uses the new
	// root.
	ErrTrustRootReplaced = errors.New("the root of trust was replaced while this command ran")

	// ErrTrustExpired means a read needed the light client to verify from
	// its newest trusted header, and that header is older than the
	// trusting period: nothing can be verified until a new root of trust
	// is set (emrcli light init --force). It also matches ErrVerification.
	ErrTrustExpired = errors.New("the newest trusted header expired")

	// ErrEncKeyNotRegistered means the caller's X25519 key is not the
	// encryption key the chain has for its member: every sidecar seals what
	// it serves to the registered key, so nothing it served would open. A
	// download refuses this before it logs a read (a keyring that pairs a
	// member's signing key with another encryption key, a program's
	// Recipient that does).
	ErrEncKeyNotRegistered = errors.New("not the encryption key registered for you")
)

// SealVerified refuses, with ErrSealUnverified, what seals a key to (or
// wraps one under) key material read from the node, when the client does
// not verify its reads. what says what the caller does with which key
// ("a grant seals the patient key to the grantee's encryption key").
func (c *Client) SealVerified(what string) error {
	if c.cfg.Verify {
		return nil
	}
	return fmt.Errorf("%w: %s, which an unverified read takes on the node's word (a node that lied would learn the key); run it with verification", ErrSealUnverified, what)
}

// CheckKEK refuses kek as the KEK of version of patient p (read from the
// chain) with ErrWrongKEK when the chain holds a check value for that
// version (the current one) and kek does not match it. GrantMsg, Upload
// and GranteeKEK check the KEKs they use; a caller that wraps keys itself
// (AddRecordMsg) checks first. Older versions have no check value left on chain; a patient
// enrolled before check values existed has none.
func CheckKEK(p *emrv1.Patient, version uint64, kek []byte) error {
	if version != p.GetKeyVersion() || len(p.GetKekCheck()) == 0 {
		return nil
	}
	if !crypto.KEKMatches(kek, p.Id, version, p.KekCheck) {
		return fmt.Errorf("%w: this copy's key version %d of patient %x does not match the check value on chain "+
			"(was the key rotated from another copy of the patient's key? take the key from that copy: emrcli keys export/import)",
			ErrWrongKEK, version, p.Id)
	}
	return nil
}

// ChainError is a failure reported by the chain: a query or a transaction
// with a non-zero result code. errors.Is matches it against ErrTxRejected
// (for transactions), ErrNotFound (code app.ErrNotFound) and against the
// app's coded sentinels, e.g. errors.Is(err, app.ErrPermissionRevoked).
type ChainError struct {
	Code      uint32
	Codespace string
	// Log is the chain's human-readable reason, e.g. "record 1: permission
	// revoked at height 42".
	Log string
	// Tx is set for transaction failures; Hash and Height (0 when it failed
	// in CheckTx) identify it.
	Tx     bool
	Hash   []byte
	Height int64
}

func (e *ChainError) Error() string {
	reason := strings.TrimSpace(e.Log)
	if reason == "" {
		reason = "no reason given"
	}
	where := e.Codespace
	if where == "" {
		where = "chain"
	}
	if e.Tx {
		if e.Height > 0 {
			return fmt.Sprintf("transaction %X failed in block %d: %s (%s code %d)", e.Hash, e.Height, reason, where, e.Code)
		}
		return fmt.Sprintf("transaction rejected: %s (%s code %d)", reason, where, e.Code)
	}
	return fmt.Sprintf("%s (%s code %d)", reason, where, e.Code)
}

// Is reports whether e matches target (see ChainError).
func (e *ChainError) Is(target error) bool {
	switch target {
	case ErrTxRejected:
		return e.Tx
	case ErrNotFound:
		return e.Codespace == app.Codespace && e.Code == app.ErrNotFound.Code()
	}
	var coded *app.CodedError
	if errors.As(target, &coded) {
		return e.Codespace == app.Codespace && e.Code == coded.Code()
	}
	return false
}

// verificationError wraps ErrVerification with a formatted reason.
func verificationError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrVerification, app.OneLine(fmt.Sprintf(format, args...)))
}

// staleError wraps ErrVerification and ErrStale with a formatted reason.
func staleError(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrVerification, ErrStale, app.OneLine(fmt.Sprintf(format, args...)))
}

// wrongHeight is the error for an answer about what at height got when
// height asked was asked for: stale when older, a plain verification
// failure otherwise.
func wrongHeight(what string, asked, got int64) error {
	if got < asked {
		return staleError("%s answered for height %d, asked at %d", what, got, asked)
	}
	return verificationError("%s answered for height %d, asked at %d", what, got, asked)
}
