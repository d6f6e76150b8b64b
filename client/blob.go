package client

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Blob transfer: the pipelines that move encrypted files between a client
// and the blob sidecars, shared by emrcli, the demo and the tests.
//
// This file holds what the pipelines share (errors, TransferOptions, the
// stream formats, typed reads, small I/O helpers); each pipeline has its
// own: upload.go, download.go, research.go (ShareRecord, DownloadShare),
// and fetch.go, how a download asks the sidecars for a blob (rounds,
// probes, refusals and retries). The break-glass read is emergency.go's.
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
//	verified Record ─▶ uploader signature ─▶ unwrap data key (KEK of record.key_version) ─▶ encryption key registered ─▶ output checked
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
// data key is unwrapped; the reader's X25519 key must be the one the
// chain has for it (the sidecars seal what they serve to that one; else
// ErrEncKeyNotRegistered); the output must name a file that may be written
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
	return crypto.LengthPrefixed(recordStreamLabel, patientID, []byte(category))
}

// ShareStreamAAD is the associated data of a shared (re-encrypted)
// record's ciphertext stream:
//
//	"emrchain/v1/share-stream" || u32(len(patientID)) || patientID ||
//	u32(len(studyID)) || studyID || u64(recordSequence)      (big-endian)
func ShareStreamAAD(patientID []byte, studyID string, recordSequence uint64) []byte {
	return binary.BigEndian.AppendUint64(crypto.LengthPrefixed(shareStreamLabel, patientID, []byte(studyID)), recordSequence)
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
	h := sha256.Sum256(crypto.LengthPrefixed(studyKeyLabel, []byte(studyID)))
	return crypto.EnvelopeBinding{PatientID: patientID, Grantee: h[:crypto.GranteeAddressSize], KeyVersion: recordSequence}
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
