package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/deid"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Blob transfer: the pipelines that move encrypted files between a client
// and the blob sidecars, shared by emrcli, the demo and the tests.
//
// # Upload (Upload)
//
//	plaintext ─▶ crypto.NewEncryptWriter(fresh data key, RecordStreamAAD) ─▶ scratch file
//	                                                   └─▶ SHA-256, size
//	scratch file ─▶ PUT /v1/blobs/<sha256> (first sidecar that stores it) ─▶ AddRecord
//
// The sidecar must know the body's SHA-256 before the body (it is signed
// into the request and names the blob), and the stream cipher draws a
// random salt per file, so encrypting twice (once to hash, once to send)
// would produce two different ciphertexts. The plaintext is therefore
// encrypted once into a scratch file (mode 0600, nameless on Linux:
// O_TMPFILE; elsewhere unlinked at once where possible) and that file is
// streamed to the sidecar. The trade-off: disk space for one ciphertext
// (plaintext + 16 bytes per 64 KiB) in TransferOptions.TempDir and one
// extra sequential write and read of it, against encrypting once; memory
// stays constant (one 64 KiB segment and copy buffers) whatever the size.
// Only after a sidecar answered 200/201 is AddRecord submitted, with the
// data key wrapped under the patient KEK (crypto.FileKeyAAD) and the
// object key the hex SHA-256. If no sidecar stores the ciphertext (sidecar
// down, storage down) the error wraps ErrStorageUnavailable and no
// transaction is sent.
//
// # Download (Download)
//
//	verified Record ─▶ uploader signature ─▶ unwrap data key (KEK of record.key_version) ─▶ output checked
//	─▶ a sidecar answers (GET /healthz) ─▶ RecordAccess (committed)
//	─▶ GET the record's blob from each sidecar in turn ─▶ scratch file, hashed, bounded by record.size
//	─▶ SHA-256 == record.ciphertext_sha256 ? ─▶ decrypt (authenticated) ─▶ pending file ─▶ fsync, link/rename
//
// The record (and so its hash, size, key version and wrapped key) comes
// from light-client-verified state, and its uploader signature must verify
// with the uploader's key (the member, verified likewise) over
// app.RecordSignBytesOf(record): a record the uploader did not sign is
// refused with ErrVerification even if the chain holds it, so validators
// cannot slip a file in under a clinician's name. Everything that can fail
// without the chain is checked before the read is logged, since a read
// logged for nothing is a false entry in the patient's audit trail: the
// data key is unwrapped; the output must name a file that may be written
// (CheckOutput: not a directory, not an existing file unless Overwrite,
// in a directory that exists), and the pending file is created; and at
// least one sidecar must answer (probeSidecars: one GET /healthz to each,
// all at once, at most a few seconds; if none answers, the error matches
// ErrStorageUnavailable). Whether a sidecar serves the blob to the reader
// is still decided after the read, by the sidecar. If none does, the
// error wraps ErrReadLoggedNotServed and a *NotServedError, which matches
// ErrSidecarsRefused when every sidecar refused outright (403, 404), so
// that asking them again will not help. Ciphertext is hashed while it lands in a scratch file
// beside the output; a sidecar whose bytes do not hash to the record's SHA-256 (or
// that sends more or fewer than record.size) is skipped and the next one
// tried; if none serves intact ciphertext the error wraps
// ErrCiphertextMismatch (when one lied) and nothing is written. Only then
// is the ciphertext decrypted, into a pending file that has no name until
// it is complete and authentic (O_TMPFILE on Linux; elsewhere a hidden
// ".NAME.emr-partial-*" removed on failure), then fsynced and linked under
// the output name (no overwrite unless asked) or renamed over it. No partial
// or unauthenticated plaintext is ever left under the output name.
//
// # Research sharing (ShareRecord, DownloadShare)
//
// A clinician with a standing share right for a study downloads the record
// as above (RecordAccess with purpose research, which the chain ties to the
// share right), and, when the patient's consent says anonymise, runs the
// plaintext through deid.Deidentify (FHIR R4 JSON only: anything else is
// refused with ErrCannotAnonymise and nothing is uploaded). The result is
// encrypted under a fresh data key with ShareStreamAAD, the data key is
// sealed to the study's X25519 key (Study.study_pub_key, verified) in a
// crypto envelope bound by StudyKeyBinding, the ciphertext is PUT as shared
// ciphertext (PUT /v1/shared-blobs, which needs the share right) and
// ShareRecord is submitted.
// Non-anonymised shares stream from the decrypting reader straight into the
// encrypting writer; anonymised ones hold the plaintext in memory (bounded
// by ShareRequest.MaxAnonymiseBytes) because de-identification parses the
// whole document. No plaintext of a share touches the disk.
//
// The holder of the study's private key downloads and decrypts a share
// with DownloadShare. "emrcli study register" uses the principal
// investigator's registered encryption key as the study key unless given
// another, so by default the PI decrypts with the key in their keyring; a
// study registered with a separate key needs that key's private half.

// Errors of the blob pipelines. Test with errors.Is.
var (
	// ErrCiphertextMismatch: a sidecar served bytes that do not hash to the
	// light-client-verified record's SHA-256 (or are not its size). Nothing
	// was decrypted or written.
	ErrCiphertextMismatch = errors.New("ciphertext hash mismatch: storage or sidecar returned altered data")

	// ErrStorageUnavailable: no sidecar stored (or served) the ciphertext
	// because a sidecar or its storage is down or failing. For an upload,
	// no transaction was sent; for a download (or a share) no sidecar
	// answered the check made before the read is logged, and no read was
	// logged (the error then unwraps to each sidecar's failure).
	ErrStorageUnavailable = errors.New("no sidecar could store the ciphertext (sidecar or storage unavailable)")

	// ErrSidecarsRefused: no sidecar served the ciphertext, and in the last
	// round every sidecar asked refused outright (a 4xx answer other than
	// 408 and 429: 403, the sidecar's node does not let the signer read
	// it, e.g. the consent expired or was revoked after the read was
	// logged; 404, the sidecar does not hold it). Asking the same sidecars
	// again, with or without a new read, is refused the same way until
	// that changes. The error is a *NotServedError whose Refusal says why.
	ErrSidecarsRefused = errors.New("every sidecar refused to serve the ciphertext")

	// ErrCannotAnonymise: the consent requires anonymisation and the record
	// is not content deid can de-identify (FHIR R4 JSON). Nothing was
	// uploaded or recorded.
	ErrCannotAnonymise = errors.New("cannot anonymise")

	// ErrCannotRewrap: a record's data key cannot be re-wrapped during a
	// key rotation (its KEK version is not held, or it does not unwrap).
	// The rotation leaves such records under their old version.
	ErrCannotRewrap = errors.New("cannot re-wrap the record's data key")
)

// TransferOptions configure the blob pipelines.
type TransferOptions struct {
	// Sidecars are the base URLs of blob sidecars ("http://127.0.0.1:7070"),
	// tried in order (one named twice, once): an upload goes to the first
	// that stores it, a download comes from the first that serves intact
	// ciphertext.
	Sidecars []string
	// HTTPClient talks to the sidecars; nil means a client shared by the
	// process with "Expect: 100-continue" (a refused upload is refused
	// before its body is sent) and kept-alive connections.
	HTTPClient *http.Client
	// TempDir holds the ciphertext scratch file of uploads and shares (""
	// means os.TempDir()). Downloads keep theirs beside the output file.
	TempDir string
	// Progress, when set, is called as bytes move: phase is "encrypt",
	// "upload", "download" or "decrypt", total is -1 when unknown. It is
	// called often (every few KiB); throttle in the callback.
	Progress func(phase string, done, total int64)
	// RetryDelay between rounds over the sidecars when none served a
	// download just after its access event was committed; 0 means 500ms.
	// Negative disables retries. (A sidecar told the height the client saw
	// committed waits for its node, or answers 503 with Retry-After, which
	// is waited for either way, as a 429's is: see retryLater. The rounds
	// are for a sidecar of before session 37, whose lagging node refuses.)
	RetryDelay time.Duration

	// minHeight is the height the sidecars are told the client saw
	// committed (sidecar.HeaderMinHeight), read as each request is made:
	// the Client's MinHeight, which logging a read raises. Set by the
	// Client's transfer methods (withMinHeight).
	minHeight func() int64
}

// withMinHeight is o telling the sidecars, with each request, the height
// c has verified (Client.MinHeight): a sidecar whose node lags then waits
// for it, or answers 503, rather than refusing an access event, a grant
// or a key it has not seen yet.
func (o TransferOptions) withMinHeight(c *Client) TransferOptions {
	o.minHeight = c.MinHeight
	return o
}

// distinctSidecars is Sidecars with each URL once, in the order given: a
// sidecar named twice would be asked twice in every round.
func (o TransferOptions) distinctSidecars() []string {
	var urls []string
	for _, u := range o.Sidecars {
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	return urls
}

// sidecarHTTP is the HTTP client of TransferOptions without one: shared,
// so connections to a sidecar are reused across requests.
var sidecarHTTP = sync.OnceValue(func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = 2 * time.Second
	tr.MaxIdleConnsPerHost = 8
	return &http.Client{Transport: tr}
})

// sidecarClient is the sidecar client of url for signer s.
func (o *TransferOptions) sidecarClient(url string, s Signer) *sidecar.Client {
	hc := o.HTTPClient
	if hc == nil {
		hc = sidecarHTTP()
	}
	sc := sidecar.NewClient(url, s, hc)
	if o.minHeight != nil {
		sc.MinHeight = o.minHeight()
	}
	return sc
}

// Associated-data and binding labels. These encodings are persistent
// (ciphertext lives in storage for years): they must never change.
const (
	recordStreamLabel = "emrchain/v1/record-stream"
	shareStreamLabel  = "emrchain/v1/share-stream"
	studyKeyLabel     = "emrchain/v1/study-share-key"
)

// RecordStreamAAD is the associated data of a record's ciphertext stream:
//
//	"emrchain/v1/record-stream" || u32(len(patientID)) || patientID ||
//	u32(len(category)) || category                           (big-endian)
//
// It binds the file to its patient and category, so a blob cannot be
// presented as another patient's or category's record even under the same
// data key. It holds no key version: re-wrapping a data key under a new
// KEK must not require re-encrypting the file.
func RecordStreamAAD(patientID []byte, category string) []byte {
	return lengthPrefixed(recordStreamLabel, patientID, []byte(category))
}

// ShareStreamAAD is the associated data of a shared (re-encrypted)
// record's ciphertext stream:
//
//	"emrchain/v1/share-stream" || u32(len(patientID)) || patientID ||
//	u32(len(studyID)) || studyID || u64(recordSequence)      (big-endian)
func ShareStreamAAD(patientID []byte, studyID string, recordSequence uint64) []byte {
	return binary.BigEndian.AppendUint64(lengthPrefixed(shareStreamLabel, patientID, []byte(studyID)), recordSequence)
}

// StudyKeyBinding is the binding of the envelope that seals a shared
// record's data key to the study's X25519 key. It reuses the KEK envelope
// format (crypto.SealEnvelope) with:
//
//	PatientID  = the patient id
//	Grantee    = first 20 bytes of SHA-256("emrchain/v1/study-share-key" || u32(len(studyID)) || studyID)
//	KeyVersion = the shared record's sequence number
//
// so a wrapped study key opens only for its (patient, study, source
// record) — the values the verified Share carries — and cannot be moved to
// another share. The pseudo-grantee is a hash under its own label; a
// member address is the first 20 bytes of SHA-256 of an ed25519 key, and
// making the two coincide takes a 160-bit second preimage (or, choosing
// both freely, an 80-bit collision plus the study key equal to that
// member's encryption key), so a study envelope is never mistaken for a
// member's KEK envelope.
func StudyKeyBinding(patientID []byte, studyID string, recordSequence uint64) crypto.EnvelopeBinding {
	h := sha256.Sum256(lengthPrefixed(studyKeyLabel, []byte(studyID)))
	return crypto.EnvelopeBinding{PatientID: patientID, Grantee: h[:crypto.GranteeAddressSize], KeyVersion: recordSequence}
}

// lengthPrefixed encodes label || (u32(len(f)) || f)...
func lengthPrefixed(label string, fields ...[]byte) []byte {
	n := len(label)
	for _, f := range fields {
		if uint64(len(f)) > math.MaxUint32 {
			panic("client: associated-data field longer than 2^32-1 bytes")
		}
		n += 4 + len(f)
	}
	b := make([]byte, 0, n+8)
	b = append(b, label...)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// --- typed verified reads ----------------------------------------------

// Record returns a patient's record by sequence number.
func (c *Client) Record(ctx context.Context, patientID []byte, sequence uint64) (*emrv1.Record, error) {
	var resp emrv1.QueryRecordResponse
	if err := c.Query(ctx, "Record", &emrv1.QueryRecordRequest{PatientId: hex.EncodeToString(patientID), Sequence: sequence}, &resp); err != nil {
		return nil, err
	}
	return present(c, "Record", "record", resp.Record)
}

// Share returns a patient's share by sequence number.
func (c *Client) Share(ctx context.Context, patientID []byte, sequence uint64) (*emrv1.Share, error) {
	if sequence == 0 {
		return nil, fmt.Errorf("%w: share 0 does not exist (shares are numbered from 1)", ErrNotFound)
	}
	var resp emrv1.QuerySharesResponse
	req := &emrv1.QuerySharesRequest{PatientId: hex.EncodeToString(patientID), Page: &emrv1.PageRequest{After: sequence - 1, Limit: 1}}
	if err := c.Query(ctx, "Shares", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Shares) == 0 || resp.Shares[0].Sequence != sequence {
		return nil, fmt.Errorf("%w: patient %x has no share %d (it has %d)", ErrNotFound, patientID, sequence, resp.GetPage().GetTotal())
	}
	return resp.Shares[0], nil
}

// Study returns a registered study.
func (c *Client) Study(ctx context.Context, id string) (*emrv1.Study, error) {
	var resp emrv1.QueryStudyResponse
	if err := c.Query(ctx, "Study", &emrv1.QueryStudyRequest{Id: id}, &resp); err != nil {
		return nil, err
	}
	return present(c, "Study", "study", resp.Study)
}

// Params returns the chain's parameters.
func (c *Client) Params(ctx context.Context) (*emrv1.Params, error) {
	var resp emrv1.QueryParamsResponse
	if err := c.Query(ctx, "Params", &emrv1.QueryParamsRequest{}, &resp); err != nil {
		return nil, err
	}
	return present(c, "Params", "params", resp.Params)
}

// GranteeKEKFunc is the KEKFunc of a grantee: the KEK sealed to encPriv in
// its verified permission. A grantee holds one version only, its
// permission's; asking for another one is an error that says so.
func (c *Client) GranteeKEKFunc(ctx context.Context, encPriv *ecdh.PrivateKey, patientID, grantee []byte) KEKFunc {
	return func(version uint64) ([]byte, error) {
		kek, have, err := c.GranteeKEK(ctx, encPriv, patientID, grantee)
		if err != nil {
			return nil, err
		}
		if have != version {
			clear(kek)
			return nil, fmt.Errorf("the data key is wrapped under patient key version %d but your consent carries version %d: "+
				"only the patient can unwrap it until it is re-wrapped under the current key (emrcli revoke re-wraps records when it rotates)", version, have)
		}
		return kek, nil
	}
}

// --- upload --------------------------------------------------------------

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
		return nil, fmt.Errorf("the ciphertext is stored (sha256 %x) but the record was not added: %w", sealed.sum, err)
	}
	if rec := c.recordCreatedBy(ctx, res.Tx, req.PatientID); rec != nil {
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

// recordCreatedBy finds the record a committed AddRecord created: the
// event names it, and the verified record must carry the tx's hash.
func (c *Client) recordCreatedBy(ctx context.Context, tx *TxResult, patientID []byte) *emrv1.Record {
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

// --- download ------------------------------------------------------------

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

// Download logs a read of a record (RecordAccess, committed) and fetches,
// verifies and decrypts its ciphertext into req.Output. What can fail
// without the chain (the output, the data key, that a sidecar answers) is
// checked before the read is logged. See the pipeline description above.
func (c *Client) Download(ctx context.Context, s Signer, req DownloadRequest, opts TransferOptions) (*DownloadResult, error) {
	opts = opts.withMinHeight(c)
	if req.Record == 0 {
		return nil, errors.New("download: record 0 does not exist (records are numbered from 1)")
	}
	if req.KEK == nil {
		return nil, errors.New("download: no key-encryption key source")
	}
	if len(opts.Sidecars) == 0 {
		return nil, errors.New("download: no sidecar URL configured")
	}
	if err := CheckOutput(req.Output, req.Overwrite); err != nil {
		return nil, err
	}
	purpose := req.Purpose
	if purpose == emrv1.Purpose_PURPOSE_UNSPECIFIED {
		purpose = emrv1.Purpose_PURPOSE_TREATMENT
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
func saveDecrypted(ctx context.Context, s Signer, what string, blob chainBlob, dataKey blobKey, aad []byte,
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

// chainBlob is a ciphertext blob as the chain records it: the name the
// sidecars file it under, its SHA-256 and its size.
type chainBlob struct {
	ref  sidecar.BlobRef
	sum  []byte
	size uint64
}

// recordBlob is the ciphertext of a record.
func recordBlob(rec *emrv1.Record) chainBlob {
	return chainBlob{sidecar.RecordRef(rec.PatientId, rec.Sequence), rec.CiphertextSha256, rec.Size}
}

// shareBlob is the ciphertext of a research share.
func shareBlob(sh *emrv1.Share) chainBlob {
	return chainBlob{sidecar.ShareRef(sh.PatientId, sh.Sequence), sh.SharedSha256, sh.Size}
}

// rounds is how many rounds over the sidecars a download asks them in,
// and the delay between two: three with retry (just after its read was
// committed, which a sidecar behind a node a block late has not seen) and
// a RetryDelay that is not negative, else one.
func (o TransferOptions) rounds(retry bool) (int, time.Duration) {
	delay := o.RetryDelay
	if delay == 0 {
		delay = 500 * time.Millisecond
	}
	if retry && delay > 0 {
		return 3, delay
	}
	return 1, delay
}

// fetchBlob downloads blob from the first sidecar that serves it intact,
// into a scratch file in dir positioned at its start. retry allows two more
// rounds when no sidecar served it: a sidecar behind a node a block late
// has not seen an access event committed a moment ago. A sidecar that
// served other bytes than the record's is not asked again, and its lie is
// reported (ErrCiphertextMismatch) only when no other sidecar served the
// blob either: one bad copy must not cost the read an honest sidecar would
// serve a round later.
func fetchBlob(ctx context.Context, s Signer, blob chainBlob, dir string, opts TransferOptions, retry bool) (*scratchFile, string, error) {
	if len(blob.sum) != sha256.Size {
		return nil, "", fmt.Errorf("%w: the record's hash is %d bytes", ErrCiphertextMismatch, len(blob.sum))
	}
	if blob.size > math.MaxInt64 {
		return nil, "", fmt.Errorf("record size %d out of range", blob.size)
	}
	rounds, delay := opts.rounds(retry)
	// Every distinct failure of every round, in order: a sidecar that cut
	// a damaged copy's transfer short answers 404 in the next round if no
	// peer holds the blob, and the caller needs both to know why.
	var fails sidecarErrors
	sidecars := opts.distinctSidecars()
	lies := map[string]string{} // sidecar -> how its answer was not the blob
	var last map[string]error   // each sidecar's failure in the last round
	for round := 0; round < rounds && len(lies) < len(sidecars); round++ {
		cutShort := false
		if round > 0 {
			if err := ctxtime.Sleep(ctx, delay); err != nil {
				return nil, "", err
			}
		}
		last = map[string]error{}
		for _, u := range sidecars {
			if _, lied := lies[u]; lied {
				continue
			}
			var f *scratchFile
			err := retryLater(ctx, func() error {
				var err error
				f, err = fetchFrom(ctx, s, u, blob, dir, opts)
				return err
			})
			if err == nil {
				return f, u, nil
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			var m *mismatchError
			if errors.As(err, &m) {
				lies[u] = m.detail
				continue
			}
			last[u] = err
			fails = fails.add(&sidecarFailure{URL: u, Err: err})
			cutShort = cutShort || errors.Is(err, sidecar.ErrCutShort)
		}
		if cutShort && rounds == 1 {
			// Without retries (--reuse-access), a transfer cut short is
			// still asked once more: a sidecar that found its copy damaged
			// reads the blob from a peer for the next GET.
			rounds = 2
		}
	}
	if len(lies) > 0 {
		var liars sidecarErrors
		for _, u := range sidecars {
			if detail, lied := lies[u]; lied {
				liars = append(liars, &sidecarFailure{URL: u, Err: errors.New(detail)})
			}
		}
		return nil, "", fmt.Errorf("%w (no sidecar served intact ciphertext): %w", ErrCiphertextMismatch, append(liars, fails...))
	}
	return nil, "", &NotServedError{Failures: fails, Refusal: refusal(sidecars, last)}
}

// NotServedError is why no sidecar served a blob (none lied: that is
// ErrCiphertextMismatch). errors.Is matches ErrSidecarsRefused when
// Refusal is set, and errors.As finds each failure's error (a
// *sidecar.Error for an answer, the transport's error otherwise).
type NotServedError struct {
	// Failures are the distinct failures of every round, in the order
	// they came: each says "URL: error" and unwraps to the error.
	Failures []error
	// Refusal is set when every sidecar asked in the last round refused
	// outright (ErrSidecarsRefused): the first of those refusals that is a
	// 403, else the first. Asking again will not help while it holds.
	Refusal *sidecar.Error
}

func (e *NotServedError) Error() string {
	return "no sidecar served the ciphertext: " + sidecarErrors(e.Failures).Error()
}

// Is matches ErrSidecarsRefused when every sidecar refused outright.
func (e *NotServedError) Is(target error) bool {
	return target == ErrSidecarsRefused && e.Refusal != nil
}

func (e *NotServedError) Unwrap() []error { return e.Failures }

// refusal is the refusal of the sidecars in last (their failures in the
// last round) when every one refused outright (refusedOutright), else nil.
func refusal(sidecars []string, last map[string]error) *sidecar.Error {
	var first *sidecar.Error
	for _, u := range sidecars {
		err, asked := last[u]
		if !asked {
			continue
		}
		var se *sidecar.Error
		if !errors.As(err, &se) || !refusedOutright(se.StatusCode) {
			return nil
		}
		if first == nil || (se.StatusCode == http.StatusForbidden && first.StatusCode != http.StatusForbidden) {
			first = se
		}
	}
	return first
}

// refusedOutright says whether a sidecar's answer status is a refusal
// that asking again does not change (a 4xx but 408 and 429): not a
// failure of the sidecar, its storage or the transfer.
func refusedOutright(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// sidecarFailure is what went wrong at one sidecar.
type sidecarFailure struct {
	URL string
	Err error
}

func (f *sidecarFailure) Error() string { return f.URL + ": " + f.Err.Error() }
func (f *sidecarFailure) Unwrap() error { return f.Err }

// sidecarErrors are the failures of several sidecars, on one line:
// "URL: error; URL: error". errors.Is and errors.As look into each.
type sidecarErrors []error

func (e sidecarErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e sidecarErrors) Unwrap() []error { return e }

// add is e with err appended, unless a failure of the same message is
// already in it.
func (e sidecarErrors) add(err error) sidecarErrors {
	msg := err.Error()
	for _, have := range e {
		if have.Error() == msg {
			return e
		}
	}
	return append(e, err)
}

// sidecarProbeTimeout bounds probeSidecars: how long a sidecar has to
// answer its /healthz before a read is logged.
var sidecarProbeTimeout = 5 * time.Second

// probedLog is log preceded by probeSidecars (its failure said of what):
// a read logged for nothing is a false entry in the patient's audit
// trail, so first make sure a sidecar answers at all.
func probedLog(ctx context.Context, opts TransferOptions, what string, log func() (*TxResult, error)) func() (*TxResult, error) {
	return func() (*TxResult, error) {
		if err := probeSidecars(ctx, opts); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return log()
	}
}

// probeSidecars makes sure, before a read is logged, that at least one of
// the sidecars answers: one GET /healthz to each (no signature), all at
// once, each bounded by sidecarProbeTimeout and ctx. It returns nil as
// soon as one answers 200, or any 4xx (something answered that does not
// serve /healthz, a proxy perhaps: the download decides). If none does
// (nothing listens, no answer in time, 5xx: a 503 says the sidecar's store
// or node is down), the error matches ErrStorageUnavailable and names each
// sidecar's failure. Whether the sidecars will serve the blob to the
// signer is decided after the read is logged, by the sidecars.
func probeSidecars(ctx context.Context, opts TransferOptions) error {
	urls, answers, cancel := askHealth(ctx, opts)
	defer cancel()
	p := newProbe(urls)
	for range urls {
		if p.answered(ctx, <-answers) {
			return nil
		}
	}
	return p.err(ctx)
}

// probe judges askHealth's answers as probeSidecars does: a sidecar
// answered with a 200 or any 4xx; every other answer is its failure.
type probe struct {
	urls  []string
	fails sidecarErrors
	ok    bool
}

func newProbe(urls []string) *probe {
	return &probe{urls: urls, fails: make(sidecarErrors, len(urls))}
}

// answered notes a and reports whether it is an answer.
func (p *probe) answered(ctx context.Context, a healthAnswer) bool {
	var se *sidecar.Error
	if a.err == nil || (errors.As(a.err, &se) && se.StatusCode >= 400 && se.StatusCode < 500) {
		p.ok = true
		return true
	}
	if errors.Is(a.err, context.DeadlineExceeded) && ctx.Err() == nil {
		a.err = fmt.Errorf("no answer within %s: %w", sidecarProbeTimeout, a.err)
	}
	p.fails[a.i] = &sidecarFailure{URL: p.urls[a.i], Err: a.err}
	return false
}

// err is nil once a sidecar answered; else ctx's error, or the
// unreachableError naming each sidecar's failure.
func (p *probe) err(ctx context.Context) error {
	if p.ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return &unreachableError{p.fails}
}

// healthAnswer is sidecar i's answer to GET /healthz (askHealth).
type healthAnswer struct {
	i      int
	health *sidecar.Health
	err    error
}

// askHealth sends one unsigned GET /healthz to each distinct sidecar, all
// at once, each bounded by sidecarProbeTimeout and ctx: it returns the
// sidecars, a channel that gets one answer per sidecar as it comes (none
// blocks once the caller stops listening), and the cancel that ends the
// requests still out.
func askHealth(ctx context.Context, opts TransferOptions) ([]string, <-chan healthAnswer, context.CancelFunc) {
	urls := opts.distinctSidecars()
	pctx, cancel := context.WithTimeout(ctx, sidecarProbeTimeout)
	answers := make(chan healthAnswer, len(urls))
	for i, u := range urls {
		go func() {
			h, err := opts.sidecarClient(u, nil).Health(pctx)
			answers <- healthAnswer{i, h, err}
		}()
	}
	return urls, answers, cancel
}

// unreachableError: no sidecar answered probeSidecars, and no read was
// logged. It matches ErrStorageUnavailable, and unwraps to each sidecar's
// failure.
type unreachableError struct{ fails sidecarErrors }

func (e *unreachableError) Error() string {
	return "no sidecar answered (sidecar or storage unavailable), so no read was logged: " + e.fails.Error()
}

func (e *unreachableError) Is(target error) bool { return target == ErrStorageUnavailable }
func (e *unreachableError) Unwrap() []error      { return e.fails }

// A sidecar answers 429 with Retry-After when the signer's share of its
// replay cache or of its uploads in flight is used up (many requests
// within the skew window, many uploads at once), and 503 with Retry-After
// when all its upload slots are taken: the transfer waits that long, at
// most maxRetryAfter, and asks again, up to maxRetriesAfter times, rather
// than fail part-way through a bulk transfer.
const (
	maxRetryAfter   = 2 * time.Minute
	maxRetriesAfter = 3
)

// retryLater runs attempt, and again after the wait a sidecar's 429 or
// 503 asks for (see maxRetryAfter). Not after a 503 chain_behind: that
// sidecar already waited for its node, and the next sidecar may have the
// height (a download's later round asks this one again).
func retryLater(ctx context.Context, attempt func() error) error {
	for i := 0; ; i++ {
		err := attempt()
		var se *sidecar.Error
		if err == nil || i == maxRetriesAfter || !errors.As(err, &se) ||
			(se.StatusCode != http.StatusTooManyRequests && se.StatusCode != http.StatusServiceUnavailable) ||
			se.Code == sidecar.CodeChainBehind ||
			se.RetryAfter <= 0 || se.RetryAfter > maxRetryAfter {
			return err
		}
		if err := ctxtime.Sleep(ctx, se.RetryAfter); err != nil {
			return err
		}
	}
}

// mismatchError is a sidecar's answer that is not the verified blob.
type mismatchError struct{ detail string }

func (m *mismatchError) Error() string { return ErrCiphertextMismatch.Error() + ": " + m.detail }
func (m *mismatchError) Unwrap() error { return ErrCiphertextMismatch }

// errTooLong: the sidecar sent more bytes than the record says the blob has.
var errTooLong = errors.New("more bytes than the record's size")

// fetchFrom downloads blob (whose hash and size fetchBlob checked) from the
// sidecar at url into a scratch file in dir positioned at its start.
func fetchFrom(ctx context.Context, s Signer, url string, blob chainBlob, dir string, opts TransferOptions) (*scratchFile, error) {
	sum, size := [32]byte(blob.sum), int64(blob.size)
	f, err := newScratch(dir)
	if err != nil {
		return nil, fmt.Errorf("scratch file for the ciphertext: %w", err)
	}
	sc := opts.sidecarClient(url, s)
	ctx, watch, stop := watchStalls(ctx, size, sidecarStallWait)
	defer stop()
	w := &boundedWriter{w: watchedWriter{f, watch}, limit: size, progress: opts.Progress}
	n, err := sc.Get(ctx, blob.ref, sum, w, nil)
	err = stalled(ctx, err)
	switch {
	case errors.Is(err, sidecar.ErrHashMismatch):
		err = &mismatchError{err.Error()}
	case errors.Is(err, errTooLong):
		err = &mismatchError{fmt.Sprintf("the sidecar sent more than the record's %d bytes", size)}
	case err == nil && n != size:
		err = &mismatchError{fmt.Sprintf("%d bytes served, the record says %d", n, size)}
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Discard()
		return nil, err
	}
	return f, nil
}

// decryptInto decrypts the ciphertext stream src (ctSize bytes) into dst.
// It returns only after the final segment authenticated and EOF followed.
func decryptInto(ctx context.Context, src io.Reader, ctSize int64, dataKey, aad []byte, dst io.Writer, progress func(string, int64, int64)) (int64, error) {
	r, err := decryptReader(ctx, src, ctSize, dataKey, aad, progress)
	if err != nil {
		return 0, err
	}
	return io.Copy(onlyWriter{dst}, r)
}

// decryptReader decrypts the ciphertext stream src (ctSize bytes),
// reporting progress as "decrypt".
func decryptReader(ctx context.Context, src io.Reader, ctSize int64, dataKey, aad []byte, progress func(string, int64, int64)) (io.Reader, error) {
	return crypto.NewDecryptReader(&progressReader{ctx: ctx, r: src, phase: "decrypt", total: ctSize, progress: progress}, dataKey, aad)
}

// --- research sharing ----------------------------------------------------

// DefaultMaxAnonymiseBytes bounds the plaintext ShareRecord holds in
// memory to de-identify it.
const DefaultMaxAnonymiseBytes = 64 << 20

// ShareRequest is a record to share with a study.
type ShareRequest struct {
	PatientID []byte
	Record    uint64
	StudyID   string
	// EncKey is the sharer's X25519 key: it opens the KEK envelope of the
	// sharer's consent.
	EncKey *ecdh.PrivateKey
	// ReuseAccess: see DownloadRequest (here the purpose is research).
	ReuseAccess bool
	// Deid tunes de-identification when the consent requires it.
	Deid deid.Options
	// MaxAnonymiseBytes bounds the plaintext held in memory for
	// de-identification; 0 means DefaultMaxAnonymiseBytes.
	MaxAnonymiseBytes int64
}

// ShareResult says what ShareRecord did.
type ShareResult struct {
	// Share is the verified share (nil if it could not be looked up after
	// the transaction committed; the transaction is in Tx either way).
	Share      *emrv1.Share
	Anonymised bool
	// Report of the de-identification (nil when not anonymised). It names
	// paths of the input, never values; it is for the sharer only.
	Report *deid.Report
	SHA256 [32]byte
	Size   int64
	// Access is the RecordAccess (purpose research); nil with ReuseAccess.
	Access  *TxResult
	Sidecar string
	Tx      *TxResult
}

// ShareRecord shares a record with a study (see the pipeline description
// above): download and decrypt it (as Download does, only once a sidecar
// answers is the read logged), de-identify it if the consent says
// anonymise, re-encrypt it to the study key, upload it and submit
// ShareRecord.
func (c *Client) ShareRecord(ctx context.Context, s Signer, req ShareRequest, opts TransferOptions) (*ShareResult, error) {
	opts = opts.withMinHeight(c)
	if len(opts.Sidecars) == 0 {
		return nil, errors.New("share: no sidecar URL configured")
	}
	if err := c.SealVerified("a share seals the record to the study's key"); err != nil {
		return nil, err
	}
	perm, err := c.shareConsent(ctx, s.Address(), req.PatientID, req.StudyID)
	if err != nil {
		return nil, err
	}
	study, err := c.Study(ctx, req.StudyID)
	if err != nil {
		return nil, fmt.Errorf("study %q: %w", req.StudyID, err)
	}
	studyPub, err := crypto.ParseEncryptionPublicKey(study.StudyPubKey)
	if err != nil {
		return nil, fmt.Errorf("study %q key: %w", req.StudyID, err)
	}
	// As Download does: what goes to a study is what its uploader signed.
	rec, err := c.signedRecord(ctx, req.PatientID, req.Record)
	if err != nil {
		return nil, err
	}
	if rec.KeyVersion != perm.KeyVersion {
		return nil, fmt.Errorf("record %d: its data key is wrapped under patient key version %d but your consent carries version %d: "+
			"only the patient can unwrap it until it is re-wrapped", rec.Sequence, rec.KeyVersion, perm.KeyVersion)
	}
	dataKey, err := unwrapRecordKey(rec, func(uint64) ([]byte, error) {
		kek, err := OpenKEK(req.EncKey, perm)
		if err != nil {
			return nil, fmt.Errorf("open the patient key envelope of your consent: %w", err)
		}
		return kek, nil
	})
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	res := &ShareResult{Anonymised: perm.Anonymise}
	if !req.ReuseAccess {
		if err := probeSidecars(ctx, opts); err != nil {
			return nil, fmt.Errorf("record %d: %w", req.Record, err)
		}
		if res.Access, err = c.logRead(ctx, s, req.PatientID, req.Record, emrv1.Purpose_PURPOSE_RESEARCH); err != nil {
			return nil, err
		}
	}
	ct, _, err := fetchBlob(ctx, s, recordBlob(rec), opts.TempDir, opts, !req.ReuseAccess)
	if err != nil {
		if res.Access != nil {
			// As for a download: a retry within the window need not log
			// another read.
			return nil, fmt.Errorf("record %d: %w (height %d): %w", req.Record, ErrReadLoggedNotServed, res.Access.Height, err)
		}
		return nil, fmt.Errorf("record %d: %w", req.Record, err)
	}
	defer ct.Discard()
	plain, err := decryptReader(ctx, ct, int64(rec.Size), dataKey, RecordStreamAAD(req.PatientID, rec.Category), opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("record %d: decrypt: %w", req.Record, err)
	}
	src, plainSize := plain, int64(-1)
	if perm.Anonymise {
		out, report, err := anonymise(plain, rec, req)
		if err != nil {
			return nil, err
		}
		res.Report = report
		src, plainSize = bytes.NewReader(out), int64(len(out))
	}
	shareKey, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	defer clear(shareKey)
	sl, err := sealToScratch(ctx, opts.TempDir, src, plainSize, shareKey, ShareStreamAAD(req.PatientID, req.StudyID, rec.Sequence), opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("record %d: re-encrypt for study %q: %w", req.Record, req.StudyID, err)
	}
	defer sl.file.Discard()
	wrapped, err := crypto.SealEnvelope(studyPub, shareKey, StudyKeyBinding(req.PatientID, req.StudyID, rec.Sequence))
	if err != nil {
		return nil, err
	}
	url, _, err := putBlob(ctx, s, req.PatientID, rec.Category, true, sl, opts)
	if err != nil {
		return nil, fmt.Errorf("upload failed, nothing was shared: %w", err)
	}
	res.SHA256, res.Size, res.Sidecar = sl.sum, sl.size, url
	msg := &emrv1.Msg{Sum: &emrv1.Msg_ShareRecord{ShareRecord: &emrv1.MsgShareRecord{
		PatientId: req.PatientID, RecordSequence: rec.Sequence, StudyId: req.StudyID, Anonymised: perm.Anonymise,
		SharedSha256: sl.sum[:], ObjectKey: hex.EncodeToString(sl.sum[:]), Size: uint64(sl.size), WrappedStudyKey: wrapped,
	}}}
	if res.Tx, err = c.Submit(ctx, s, msg); err != nil {
		return nil, fmt.Errorf("the shared ciphertext is stored (sha256 %x) but the share was not recorded: %w", sl.sum, err)
	}
	res.Share = c.shareCreatedBy(ctx, res.Tx, req.PatientID)
	return res, nil
}

// shareConsent returns the signer's verified permission if it stands and
// carries the share right for the study; otherwise an error that says why.
func (c *Client) shareConsent(ctx context.Context, grantee, patientID []byte, studyID string) (*emrv1.Permission, error) {
	p, info, err := c.Permission(ctx, patientID, grantee)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("patient %x has granted you nothing: %w", patientID, err)
	case err != nil:
		return nil, fmt.Errorf("your consent from patient %x: %w", patientID, err)
	}
	now := info.timeOrNow()
	switch {
	case p.RevokedHeight != 0:
		return nil, fmt.Errorf("your consent from patient %x was revoked at height %d", patientID, p.RevokedHeight)
	case p.NotBefore != nil && now.Before(p.NotBefore.AsTime()):
		return nil, fmt.Errorf("your consent from patient %x starts at %s", patientID, p.NotBefore.AsTime().UTC().Format(time.RFC3339))
	case !now.Before(p.GetNotAfter().AsTime()):
		return nil, fmt.Errorf("your consent from patient %x expired at %s", patientID, p.GetNotAfter().AsTime().UTC().Format(time.RFC3339))
	case !slices.Contains(p.Rights, emrv1.Right_RIGHT_SHARE):
		return nil, fmt.Errorf("your consent from patient %x does not include the share right", patientID)
	case p.StudyId != studyID:
		return nil, fmt.Errorf("your share consent from patient %x is for study %q, not %q", patientID, p.StudyId, studyID)
	}
	return p, nil
}

// anonymise reads the whole plaintext (bounded) and de-identifies it.
func anonymise(plain io.Reader, rec *emrv1.Record, req ShareRequest) ([]byte, *deid.Report, error) {
	limit := req.MaxAnonymiseBytes
	if limit <= 0 {
		limit = DefaultMaxAnonymiseBytes
	}
	limit = min(limit, math.MaxInt64-1) // limit+1 below must not wrap
	in, err := io.ReadAll(io.LimitReader(plain, limit+1))
	defer clear(in)
	if err != nil {
		return nil, nil, fmt.Errorf("record %d: decrypt: %w", rec.Sequence, err)
	}
	if int64(len(in)) > limit {
		return nil, nil, fmt.Errorf("%w: record %d is larger than %d bytes, the most this client de-identifies in memory: nothing was shared",
			ErrCannotAnonymise, rec.Sequence, limit)
	}
	out, report, err := deid.Deidentify(in, req.Deid)
	switch {
	case errors.Is(err, deid.ErrNotFHIR):
		return nil, nil, fmt.Errorf("%w: record %d (%s) is not a FHIR R4 JSON resource, and the patient's consent for study %q requires anonymisation, "+
			"which only FHIR JSON supports: nothing was shared", ErrCannotAnonymise, rec.Sequence, rec.Category, req.StudyID)
	case errors.Is(err, deid.ErrUnsupported):
		return nil, nil, fmt.Errorf("%w: record %d (%s): %v: nothing was shared", ErrCannotAnonymise, rec.Sequence, rec.Category, err)
	case err != nil:
		return nil, nil, fmt.Errorf("%w: record %d: %v: nothing was shared", ErrCannotAnonymise, rec.Sequence, err)
	}
	return out, report, nil
}

// shareCreatedBy finds the share a committed ShareRecord created: the
// newest shares are searched for one carrying the tx's hash.
func (c *Client) shareCreatedBy(ctx context.Context, tx *TxResult, patientID []byte) *emrv1.Share {
	p, err := c.Patient(ctx, patientID)
	if err != nil || p.ShareCount == 0 {
		return nil
	}
	after := uint64(0)
	if p.ShareCount > 20 {
		after = p.ShareCount - 20
	}
	var resp emrv1.QuerySharesResponse
	req := &emrv1.QuerySharesRequest{PatientId: hex.EncodeToString(patientID), Page: &emrv1.PageRequest{After: after}}
	if c.Query(ctx, "Shares", req, &resp) != nil {
		return nil
	}
	for i := len(resp.Shares) - 1; i >= 0; i-- {
		if bytes.Equal(resp.Shares[i].TxHash, tx.Hash) {
			return resp.Shares[i]
		}
	}
	return nil
}

// ShareDownloadRequest names a share to download and decrypt.
type ShareDownloadRequest struct {
	PatientID []byte
	Share     uint64
	// StudyKey is the private half of the study's registered key (by
	// default the principal investigator's encryption key).
	StudyKey  *ecdh.PrivateKey
	Output    string
	Overwrite bool
	// ReuseAccess skips logging a read: the caller's read of the share
	// committed within the sidecars' access window serves again.
	ReuseAccess bool
}

// ShareDownloadResult says what DownloadShare did.
type ShareDownloadResult struct {
	Share   *emrv1.Share // verified
	Access  *TxResult    // the committed read of the share (nil with ReuseAccess)
	Sidecar string
	Size    int64
	Path    string
}

// DownloadShare commits the caller's read of a shared record (an access
// event on the patient's audit trail, which the chain allows the study's
// principal investigator and the researchers of its organization while
// the consent the share was made under stands), fetches it (the sidecar
// serves it after that event), checks it against the verified Share, and
// decrypts it with the study key into req.Output (atomically, and with
// the same checks before the read is logged, as Download).
func (c *Client) DownloadShare(ctx context.Context, s Signer, req ShareDownloadRequest, opts TransferOptions) (*ShareDownloadResult, error) {
	opts = opts.withMinHeight(c)
	if len(opts.Sidecars) == 0 {
		return nil, errors.New("download: no sidecar URL configured")
	}
	if err := CheckOutput(req.Output, req.Overwrite); err != nil {
		return nil, err
	}
	if req.StudyKey == nil {
		return nil, errors.New("download: no study key")
	}
	sh, err := c.Share(ctx, req.PatientID, req.Share)
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", req.Share, err)
	}
	study, err := c.Study(ctx, sh.StudyId)
	if err != nil {
		return nil, fmt.Errorf("study %q: %w", sh.StudyId, err)
	}
	if !bytes.Equal(study.StudyPubKey, req.StudyKey.PublicKey().Bytes()) {
		return nil, fmt.Errorf("share %d is encrypted to the key of study %q (%x), and the key you hold (%x) is not it: "+
			"by default the study key is the principal investigator's encryption key; a study registered with its own key needs that key",
			req.Share, sh.StudyId, study.StudyPubKey, req.StudyKey.PublicKey().Bytes())
	}
	dataKey, err := crypto.OpenEnvelope(req.StudyKey, sh.WrappedStudyKey, StudyKeyBinding(req.PatientID, sh.StudyId, sh.RecordSequence))
	if err != nil {
		return nil, fmt.Errorf("share %d: open its study key envelope: %w", req.Share, err)
	}
	defer clear(dataKey)
	what := fmt.Sprintf("share %d", req.Share)
	var logRead func() (*TxResult, error)
	if !req.ReuseAccess {
		logRead = probedLog(ctx, opts, what, func() (*TxResult, error) { return c.logShareRead(ctx, s, req.PatientID, req.Share) })
	}
	saved, err := saveDecrypted(ctx, s, what, shareBlob(sh), knownKey(dataKey),
		ShareStreamAAD(req.PatientID, sh.StudyId, sh.RecordSequence), req.Output, req.Overwrite, logRead, opts)
	if err != nil {
		return nil, err
	}
	return &ShareDownloadResult{Share: sh, Access: saved.access, Sidecar: saved.sidecar, Size: saved.size, Path: req.Output}, nil
}

// --- key rotation: re-wrapping file keys -------------------------------

// FileKeyRewrapper is the Rewrapper of a key rotation run by the patient:
// it unwraps each record's data key with the KEK of the record's version
// (kek: the patient's keyring holds every version) and wraps it under the
// new KEK, bound to (patient, category, new version). A record whose KEK
// version is not held, or whose wrapped key does not unwrap (a writer may
// have recorded garbage), yields an error wrapping ErrCannotRewrap: the
// rotation leaves it under its old version and says so, rather than
// failing (a revocation must always be able to rotate).
func FileKeyRewrapper(patientID []byte, kek KEKFunc) Rewrapper {
	return func(_ context.Context, rec *emrv1.Record, newVersion uint64, newKEK []byte) ([]byte, error) {
		old, err := kek(rec.KeyVersion)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCannotRewrap, err)
		}
		defer clear(old)
		dk, err := crypto.UnwrapKey(old, rec.WrappedFileKey, crypto.FileKeyAAD(patientID, rec.Category, rec.KeyVersion))
		if err != nil {
			return nil, fmt.Errorf("%w: its wrapped key does not open with key version %d: %v", ErrCannotRewrap, rec.KeyVersion, err)
		}
		defer clear(dk)
		return crypto.WrapKey(newKEK, dk, crypto.FileKeyAAD(patientID, rec.Category, newVersion))
	}
}

// --- small I/O helpers -----------------------------------------------

// progressReader reports progress and stops when ctx ends.
type progressReader struct {
	ctx      context.Context
	r        io.Reader
	phase    string
	n, total int64
	progress func(string, int64, int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.progress != nil && n > 0 {
		p.progress(p.phase, p.n, p.total)
	}
	return n, err
}

// boundedWriter refuses to write past limit bytes and reports progress
// (of limit bytes in all).
type boundedWriter struct {
	w        io.Writer
	n, limit int64
	progress func(string, int64, int64)
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > b.limit-b.n {
		return 0, errTooLong
	}
	n, err := b.w.Write(p)
	b.n += int64(n)
	if b.progress != nil && n > 0 {
		b.progress("download", b.n, b.limit)
	}
	return n, err
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// onlyWriter hides a writer's ReadFrom, so io.Copy pulls from the reader
// through one buffer instead of asking the file to read from it.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }
