package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// DownloadRequest names a record to download and where to write it.
type DownloadRequest struct {
	PatientID []byte
	Record    uint64
	// Purpose of the logged read; zero means treatment.
	Purpose emrv1.Purpose
	// ReuseAccess does not log a new read: it relies on an access event of
	// the signer for this record committed within the sidecar's access
	// window (to retry a failed download without a second audit entry).
	// The patient needs none.
	ReuseAccess bool
	// KEK returns the patient KEK of a version: the patient's keyring, or
	// GranteeKEKFunc for a grantee.
	KEK KEKFunc
	// Output is the file to write (mode 0600); Overwrite replaces an
	// existing one.
	Output    string
	Overwrite bool
}

// DownloadResult says what Download did.
type DownloadResult struct {
	Record *emrv1.Record // verified
	// Access is the RecordAccess transaction (nil with ReuseAccess).
	Access *TxResult
	// Sidecar that served the intact ciphertext.
	Sidecar string
	// Size of the plaintext written to Path.
	Size int64
	Path string
}

// errRecordZero refuses a download of record 0.
var errRecordZero = errors.New("download: record 0 does not exist (records are numbered from 1)")

// checkDownload refuses a download into output that cannot be done
// whatever the chain says: no sidecar, an output that is a directory or
// (without overwrite) exists.
func checkDownload(output string, overwrite bool, opts TransferOptions) error {
	if len(opts.Sidecars) == 0 {
		return errors.New("download: no sidecar URL configured")
	}
	return CheckOutput(output, overwrite)
}

// Download logs a read of a record (RecordAccess, committed) and fetches,
// verifies and decrypts its ciphertext into req.Output. What can fail
// without the chain (the output, the data key, that a sidecar answers) is
// checked before the read is logged, and so is that s's encryption key is
// the registered one (ErrEncKeyNotRegistered). See the pipeline
// description above.
func (c *Client) Download(ctx context.Context, s Recipient, req DownloadRequest, opts TransferOptions) (*DownloadResult, error) {
	opts = opts.withMinHeight(c)
	if req.Record == 0 {
		return nil, errRecordZero
	}
	if req.KEK == nil {
		return nil, errors.New("download: no key-encryption key source")
	}
	if err := checkDownload(req.Output, req.Overwrite, opts); err != nil {
		return nil, err
	}
	purpose := req.Purpose
	if purpose == emrv1.Purpose_PURPOSE_UNSPECIFIED {
		purpose = emrv1.Purpose_PURPOSE_TREATMENT
	}
	// Before the KEK (a grantee's is opened with the same key) and the data
	// key: a key that is not the registered one would fail there, less
	// clearly.
	if _, err := c.registeredRecipient(ctx, s, sealedToYou); err != nil {
		return nil, err
	}
	rec, err := c.signedRecord(ctx, req.PatientID, req.Record)
	if err != nil {
		return nil, err
	}
	dataKey, err := unwrapRecordKey(rec, req.KEK)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	what := fmt.Sprintf("record %d", req.Record)
	var logRead func() (*TxResult, error)
	if !req.ReuseAccess {
		logRead = probedLog(ctx, opts, what, func() (*TxResult, error) { return c.logRead(ctx, s, req.PatientID, req.Record, purpose) })
	}
	saved, err := saveDecrypted(ctx, s, what, recordBlob(rec), knownKey(dataKey),
		RecordStreamAAD(req.PatientID, rec.Category), req.Output, req.Overwrite, logRead, opts)
	if err != nil {
		return nil, err
	}
	return &DownloadResult{Record: rec, Access: saved.access, Sidecar: saved.sidecar, Size: saved.size, Path: req.Output}, nil
}

// savedBlob is what saveDecrypted did: the access it logged (nil when
// none), the sidecar that served the ciphertext, the plaintext's size.
type savedBlob struct {
	access  *TxResult
	sidecar string
	size    int64
}

// blobKey yields the data key of a blob once its ciphertext is fetched
// (and its read, if any, logged). opens says whether a key decrypts the
// start of that ciphertext: a check against a faulty source, not proof
// of the key (a ciphertext chosen by its writer can decrypt under a second
// key; an emergency key is taken for its service's signature). The key
// stays the caller's: it is not cleared by saveDecrypted.
type blobKey func(opens func(key []byte) error) ([]byte, error)

// knownKey is the blobKey of a data key the caller holds before the read
// (unwrapped with a KEK, opened with a study key).
func knownKey(dataKey []byte) blobKey {
	return func(func([]byte) error) ([]byte, error) { return dataKey, nil }
}

// keyOpens checks that key decrypts the first segment of the ciphertext
// ct (size bytes) under aad: a wrong key fails the segment's
// authentication.
func keyOpens(ct io.ReaderAt, size int64, key, aad []byte) error {
	r, err := crypto.NewDecryptReader(io.NewSectionReader(ct, 0, size), key, aad)
	if err == nil {
		_, err = r.Read(make([]byte, 1))
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("it does not decrypt the ciphertext: %w", err)
	}
	return nil
}

// saveDecrypted writes the plaintext of blob, named what in errors
// ("record 3"), to output: it makes sure output can be written
// (CheckOutput, and the pending file created) and then logs the read
// (logRead; nil when the caller's access event stands: the callers'
// logRead first makes sure a sidecar answers, probedLog, or has made
// sure, findEmergencySidecar); then it fetches the
// ciphertext from a sidecar (checked against the chain's hash), takes the
// data key (dataKey: known beforehand, or released only against the
// logged read, as an emergency read's is), decrypts the ciphertext with it
// under aad, and moves it into place only once whole.
func saveDecrypted(ctx context.Context, s Recipient, what string, blob chainBlob, dataKey blobKey, aad []byte,
	output string, overwrite bool, logRead func() (*TxResult, error), opts TransferOptions) (*savedBlob, error) {
	out, err := newPending(output, overwrite)
	if err != nil {
		return nil, err
	}
	defer out.Discard()
	saved := &savedBlob{}
	if logRead != nil {
		if saved.access, err = logRead(); err != nil {
			return nil, err
		}
	}
	ct, url, err := fetchBlob(ctx, s, blob, filepath.Dir(output), opts, logRead != nil)
	if err != nil {
		if saved.access != nil {
			// The read is on chain either way: a retry within the
			// sidecars' window need not log another.
			return nil, fmt.Errorf("%s: %w (height %d): %w", what, ErrReadLoggedNotServed, saved.access.Height, err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer ct.Discard()
	key, err := dataKey(func(k []byte) error { return keyOpens(ct, int64(blob.size), k, aad) })
	if err != nil {
		if saved.access != nil {
			return nil, fmt.Errorf("%s: the read is logged (height %d) and its ciphertext fetched, but: %w", what, saved.access.Height, err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	n, err := decryptInto(ctx, ct, int64(blob.size), key, aad, out, opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("%s: decrypt: %w", what, err)
	}
	if err := out.Commit(); err != nil {
		return nil, fmt.Errorf("write %s: %w", output, err)
	}
	saved.sidecar, saved.size = url, n
	return saved, nil
}

// signedRecord is Record, refused (ErrVerification) unless its uploader
// signature verifies (CheckUploaderSignatures): the record whose data key
// Download and ShareRecord unwrap is the one its uploader signed.
func (c *Client) signedRecord(ctx context.Context, patientID []byte, seq uint64) (*emrv1.Record, error) {
	rec, err := c.Record(ctx, patientID, seq)
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", seq, err)
	}
	if err := c.CheckUploaderSignatures(ctx, []*emrv1.Record{rec}); err != nil {
		return nil, err
	}
	return rec, nil
}

// registeredRecipient returns s's member entry, verified, once it has made
// sure that s's X25519 key is the one registered for it (else an error
// matching ErrEncKeyNotRegistered): the sidecars seal what they serve,
// and an emergency service the data key it releases, to the registered
// key, so a read logged with another would be served and not open. why
// says who seals to it.
func (c *Client) registeredRecipient(ctx context.Context, s Recipient, why string) (*emrv1.Member, error) {
	me, err := c.Member(ctx, s.Address())
	if err != nil {
		return nil, fmt.Errorf("your membership (%X): %w", s.Address(), err)
	}
	enc := s.EncPrivKey()
	if enc == nil {
		return nil, fmt.Errorf("%w: you hold no encryption key (%s)", ErrEncKeyNotRegistered, why)
	}
	if pub := enc.PublicKey().Bytes(); !bytes.Equal(me.EncPubKey, pub) {
		return nil, fmt.Errorf("%w: yours is %x and the chain has %x for member %X (%s)", ErrEncKeyNotRegistered, pub, me.EncPubKey, s.Address(), why)
	}
	return me, nil
}

// sealedToYou is registeredRecipient's why for a download.
const sealedToYou = "the sidecars seal what they serve to the registered one"

// logRead submits the RecordAccess that logs a read of a record and
// waits for its block.
func (c *Client) logRead(ctx context.Context, s Signer, patientID []byte, record uint64, purpose emrv1.Purpose) (*TxResult, error) {
	what := fmt.Sprintf("read of record %d", record)
	if purpose == emrv1.Purpose_PURPOSE_RESEARCH {
		what = "research " + what
	}
	return c.logAccess(ctx, s, what, &emrv1.MsgRecordAccess{PatientId: patientID, RecordSequences: []uint64{record}, Purpose: purpose})
}

// logShareRead commits the caller's read of share (for research), which
// the sidecars require before they serve its ciphertext to the study.
func (c *Client) logShareRead(ctx context.Context, s Signer, patientID []byte, share uint64) (*TxResult, error) {
	return c.logAccess(ctx, s, fmt.Sprintf("read of share %d", share),
		&emrv1.MsgRecordAccess{PatientId: patientID, ShareSequences: []uint64{share}, Purpose: emrv1.Purpose_PURPOSE_RESEARCH})
}

// logAccess submits m, the read named what.
func (c *Client) logAccess(ctx context.Context, s Signer, what string, m *emrv1.MsgRecordAccess) (*TxResult, error) {
	res, err := c.Submit(ctx, s, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: m}})
	if err != nil {
		return nil, fmt.Errorf("log the %s: %w", what, err)
	}
	return res, nil
}

// CheckUploaderSignatures verifies that every record of recs was signed by
// its uploader: its uploader signature, over app.RecordSignBytesOf(rec),
// verifies with the signing key of the member at rec.Uploader (an address is
// derived from its key, so the key is the one the record was signed with).
// Each uploader's member entry is read once, as a verified read. The chain
// verified that signature when it took the record in, so a failure here
// means the nodes that proved the record to this client lied: it is an
// ErrVerification.
func (c *Client) CheckUploaderSignatures(ctx context.Context, recs []*emrv1.Record) error {
	keys := map[string][]byte{}
	for _, rec := range recs {
		key, known := keys[string(rec.Uploader)]
		if !known {
			m, err := c.Member(ctx, rec.Uploader)
			if err != nil {
				return fmt.Errorf("record %d: its uploader %X: %w", rec.Sequence, rec.Uploader, err)
			}
			key = m.GetSignPubKey()
			keys[string(rec.Uploader)] = key
		}
		if len(key) == 0 || !bytes.Equal(app.AddressOf(key), rec.Uploader) ||
			!ed25519.PubKey(key).VerifySignature(app.RecordSignBytesOf(rec), rec.UploaderSignature) {
			return fmt.Errorf("%w: record %d: its uploader signature does not verify with the key of member %X",
				ErrVerification, rec.Sequence, rec.Uploader)
		}
	}
	return nil
}

// unwrapRecordKey unwraps a record's data key with the KEK of its version.
func unwrapRecordKey(rec *emrv1.Record, kekOf KEKFunc) ([]byte, error) {
	kek, err := kekOf(rec.KeyVersion)
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", rec.Sequence, err)
	}
	defer clear(kek)
	dataKey, err := crypto.UnwrapKey(kek, rec.WrappedFileKey, crypto.FileKeyAAD(rec.PatientId, rec.Category, rec.KeyVersion))
	if err != nil {
		return nil, fmt.Errorf("record %d: unwrap its data key with patient key version %d: %w", rec.Sequence, rec.KeyVersion, err)
	}
	return dataKey, nil
}
