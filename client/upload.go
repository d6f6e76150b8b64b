package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// UploadRequest is a file to encrypt, upload and record.
type UploadRequest struct {
	PatientID []byte
	Category  string
	// Source is the plaintext; Size its length for progress (-1: unknown).
	Source io.Reader
	Size   int64
	// KEK is the patient's current key-encryption key and KeyVersion its
	// version (the patient's keyring, or the uploader's consent: GranteeKEK).
	KEK        []byte
	KeyVersion uint64
}

// UploadResult says what Upload did.
type UploadResult struct {
	// Sequence of the new record (0 if it could not be looked up after the
	// transaction committed; the transaction is in Tx either way).
	Sequence       uint64
	Record         *emrv1.Record // verified; nil when Sequence is 0
	SHA256         [32]byte      // of the ciphertext
	CiphertextSize int64
	PlaintextSize  int64
	// Sidecar that stored the ciphertext, and whether it was new there.
	Sidecar string
	Created bool
	Tx      *TxResult
}

// Upload encrypts req.Source under a fresh data key, uploads the
// ciphertext to a sidecar and, only once it is stored, submits AddRecord
// signed by s. See the pipeline description above.
func (c *Client) Upload(ctx context.Context, s Signer, req UploadRequest, opts TransferOptions) (*UploadResult, error) {
	opts = opts.withMinHeight(c)
	if req.Category == "" {
		return nil, errors.New("upload: no category")
	}
	if req.Source == nil {
		return nil, errors.New("upload: no source to read the file from")
	}
	if len(opts.Sidecars) == 0 {
		return nil, errors.New("upload: no sidecar URL configured")
	}
	// The key version the data key is wrapped under, and the check value
	// that vouches for its KEK, come from the patient as the node reads
	// it. Unverified, a node can name an older version with its check
	// value (every one is public in its RotateKey) and a floor below it:
	// the owner's keyring holds that KEK too, and a revoked grantee who
	// holds it would open the new record's key, which the node has as
	// soon as the AddRecord reaches it.
	if err := c.SealVerified("an upload wraps the record's data key under the patient key version the chain names"); err != nil {
		return nil, err
	}
	dataKey, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	// A KEK the chain did not commit fails first: before the file is
	// encrypted, uploaded or a record wrapped under it.
	p, err := c.Patient(ctx, req.PatientID)
	if err != nil {
		return nil, fmt.Errorf("patient %x: %w", req.PatientID, err)
	}
	if err := CheckKEK(p, req.KeyVersion, req.KEK); err != nil {
		return nil, err
	}
	if err := app.KeyRotationPending(p); err != nil {
		return nil, err
	}
	// So do a category and a size the chain would refuse: before a large
	// file is encrypted, and before a ciphertext no record will reference
	// is left on a sidecar.
	if err := c.checkUploadable(ctx, req.Category, req.Size); err != nil {
		return nil, err
	}
	sealed, err := sealToScratch(ctx, opts.TempDir, req.Source, req.Size, dataKey, RecordStreamAAD(req.PatientID, req.Category), opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	defer sealed.file.Discard()
	// Build the transaction before uploading: nothing is sent if it fails.
	msg, err := AddRecordMsg(req.PatientID, RecordSpec{
		Category: req.Category, ObjectKey: hex.EncodeToString(sealed.sum[:]), SHA256: sealed.sum[:], Size: uint64(sealed.size),
	}, req.KEK, req.KeyVersion, dataKey)
	if err != nil {
		return nil, err
	}
	url, put, err := putBlob(ctx, s, req.PatientID, req.Category, false, sealed, opts)
	if err != nil {
		return nil, fmt.Errorf("upload failed, no record was added: %w", err)
	}
	res := &UploadResult{
		SHA256: sealed.sum, CiphertextSize: sealed.size, PlaintextSize: sealed.plainSize,
		Sidecar: url, Created: put.Created,
	}
	res.Tx, err = c.Submit(ctx, s, msg)
	if err != nil {
		return nil, storedButFailed(err, fmt.Sprintf("the ciphertext is stored (sha256 %x)", sealed.sum),
			"the record", "added", "emrcli records", "the patient holds it twice")
	}
	if rec := c.RecordCreatedBy(ctx, res.Tx, req.PatientID); rec != nil {
		res.Sequence, res.Record = rec.Sequence, rec
	}
	return res, nil
}

// checkUploadable refuses, by the chain's verified params, a record of a
// category the chain does not know, or a plaintext of size bytes (-1:
// unknown, not checked) whose ciphertext would pass max_blob_bytes.
func (c *Client) checkUploadable(ctx context.Context, category string, size int64) error {
	params, err := c.Params(ctx)
	if err != nil {
		return fmt.Errorf("params: %w", err)
	}
	if err := app.KnownCategory(params, category); err != nil {
		return fmt.Errorf("%w; nothing was uploaded", err)
	}
	if size >= 0 {
		n := crypto.CiphertextSize(size)
		if n < 0 {
			return fmt.Errorf("%w: a file of %d bytes is past any limit; nothing was uploaded", app.ErrTooLarge, size)
		}
		if err := app.CheckBlobSize(params, uint64(n)); err != nil {
			return fmt.Errorf("%w (%d bytes before encryption); nothing was uploaded", err, size)
		}
	}
	return nil
}

// RecordCreatedBy finds the record a committed AddRecord tx created (nil
// when none is found): the event names it, and the verified record must
// carry the tx's hash.
func (c *Client) RecordCreatedBy(ctx context.Context, tx *TxResult, patientID []byte) *emrv1.Record {
	for _, ref := range tx.Attribute(app.EventType, app.RecordAttribute) {
		_, seqStr, ok := strings.Cut(ref, "/")
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		if err != nil {
			continue
		}
		if rec, err := c.Record(ctx, patientID, seq); err == nil && bytes.Equal(rec.TxHash, tx.Hash) {
			return rec
		}
	}
	return nil
}

// sealed is ciphertext in a scratch file.
type sealed struct {
	file      *scratchFile
	sum       [32]byte
	size      int64
	plainSize int64
}

// sealToScratch encrypts src into a scratch file in dir, hashing the
// ciphertext on the way.
func sealToScratch(ctx context.Context, dir string, src io.Reader, plainSize int64, dataKey, aad []byte, progress func(string, int64, int64)) (*sealed, error) {
	f, err := newScratch(dir)
	if err != nil {
		return nil, fmt.Errorf("scratch file for the ciphertext: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Discard()
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	enc, err := crypto.NewEncryptWriter(cw, dataKey, aad)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(enc, &progressReader{ctx: ctx, r: src, phase: "encrypt", total: plainSize, progress: progress})
	if err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if want := crypto.CiphertextSize(n); cw.n != want {
		return nil, fmt.Errorf("internal error: %d bytes of ciphertext for %d of plaintext, want %d", cw.n, n, want)
	}
	s := &sealed{file: f, size: cw.n, plainSize: n}
	h.Sum(s.sum[:0])
	ok = true
	return s, nil
}

// putBlob uploads the sealed ciphertext for category of patientID (the
// record's, or, shared, that of the record a share re-encrypts: the
// sidecars serve it only through a record, or a share, of that patient and
// category) to the first sidecar that stores it. A refusal (4xx: not authorized, too large)
// is final; a sidecar that cannot be reached or fails (5xx) is skipped for
// the next one.
func putBlob(ctx context.Context, s Signer, patientID []byte, category string, shared bool, b *sealed, opts TransferOptions) (string, *sidecar.PutResult, error) {
	var fails []string
	for _, u := range opts.distinctSidecars() {
		sc := opts.sidecarClient(u, s)
		var res *sidecar.PutResult
		err := retryLater(ctx, func() error {
			ctx, watch, stop := watchStalls(ctx, b.size, sidecarUploadStallWait) // waiting for "100 Continue", or for the body to be sent anyway
			defer stop()
			body := watchedReader{&progressReader{ctx: ctx, r: io.NewSectionReader(b.file, 0, b.size), phase: "upload", total: b.size, progress: opts.Progress}, watch}
			var err error
			put := sc.Put
			if shared {
				put = sc.PutShared
			}
			res, err = put(ctx, patientID, category, b.sum, body, b.size)
			return stalled(ctx, err)
		})
		if err == nil {
			return u, res, nil
		}
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		var se *sidecar.Error
		if errors.As(err, &se) && se.StatusCode >= 400 && se.StatusCode < 500 &&
			se.StatusCode != http.StatusRequestTimeout && se.StatusCode != http.StatusTooManyRequests {
			return "", nil, fmt.Errorf("sidecar %s refused the upload: %w", u, err)
		}
		fails = append(fails, fmt.Sprintf("%s: %v", u, err))
	}
	return "", nil, fmt.Errorf("%w: %s", ErrStorageUnavailable, strings.Join(fails, "; "))
}
