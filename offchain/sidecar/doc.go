// Package sidecar is the blob sidecar: an HTTP server that moves encrypted
// medical records (ciphertext only) in and out of a blobstore.Store — MinIO
// or the embedded filesystem store — and serves them only to members the
// chain allows. It also holds the client side: SignRequest and Client.
//
// # API
//
//	PUT /v1/blobs            (or PUT /v1/blobs/{sha256}; a share's
//	                          ciphertext: PUT /v1/shared-blobs/{sha256})
//	    X-Emr-Patient: <patient id hex>   X-Emr-Category: <data category>
//	    X-Emr-Body-SHA256: <sum hex>      Content-Length: <size>
//	    body: the ciphertext
//	  201 {"sha256","size","created":true}, or 200 with created=false if the
//	  blob was already stored (idempotent). 400 hash_mismatch / size_mismatch
//	  (nothing is stored), 403 (not allowed for this patient or category), 411 (no
//	  Content-Length), 413 (above the chain's params.max_blob_bytes), 429
//	  signer_pending_quota / 507 pending_quota (the upload would pass a bound
//	  on pending uploads, below; refused before the body is read), 429
//	  signer_uploads / 503 uploads_busy or patients_uploads_busy (too many
//	  uploads in flight: of the signer, in all, of all
//	  patients; with Retry-After; before the body is read), 408
//	  upload_timeout (the body
//	  came too slowly, below).
//	GET /v1/blobs/{sha256}?record=<patient id hex>/<seq>
//	GET /v1/blobs/{sha256}?share=<patient id hex>/<seq>
//	  names the committed record (or share) whose ciphertext it reads; 400
//	  without exactly one of the two. The answer (200, or 206 +
//	  Content-Range for a single range; 416 when unsatisfiable) is sealed to
//	  the caller's registered X25519 key (Sealed answers, below). 404 when
//	  neither this sidecar nor a peer has it (every peer answered); 503
//	  chain_behind (Retry-After) when a peer's node has not reached
//	  X-Emr-Min-Height, 503 peers_unavailable when a peer did not answer or
//	  failed. A blob this sidecar does not hold is relayed from the first
//	  peer that serves it (peers.go), and so is one whose stored copy has
//	  another size than the record says (not dropped on that word: the
//	  scrub judges the copy); a whole
//	  blob is hashed as it streams, its last chunk held back, and a
//	  copy whose bytes are not the blob is cut short (the connection is
//	  aborted before the sealed stream's final segment) and dropped, so that
//	  the next GET is answered from a peer. A range is served only from a copy
//	  read whole and found intact within the last 10 minutes (the first
//	  range of a blob waits for that read; rangecheck.go): a damaged one
//	  is dropped and the range relayed from a peer (500 store_error
//	  if it cannot be dropped). A scrub (Scrub,
//	  every ScrubInterval) reads every stored blob and drops the damaged
//	  ones the same way; a storage service copies a dropped blob back. A
//	  relay waits for a peer's bytes at most peerIdle at a time and, in
//	  all, 5 minutes plus its size at 64 KiB/s.
//	  A blob GET that waited (the whole-copy check before a range, a peer's
//	  answer) is judged again before its first byte, on a fresh head
//	  and membership: 401/403 as above if the authority lapsed meanwhile,
//	  503 chain_behind if the node's head went back.
//	GET /v1/emergency-key?record=<patient id hex>/<seq>
//	  an emergency service's release of one record's data key (below,
//	  Break-glass): 200 JSON EmergencyKey, signed by the service
//	  (VerifyEmergencyKey), Cache-Control: no-store; 404
//	  no_emergency_service (this sidecar holds no emergency key) or
//	  other_emergency_service (the caller's emergency read went through
//	  another service); 403 without a standing emergency read; 409
//	  key_version (the record's key is wrapped under another key version
//	  than the opt-in holds); 500 emergency_key_mismatch (the chain has
//	  other keys for the service) or opt_in_unusable (the opt-in does not
//	  open to the record's key). Signed, authenticated and height-waited
//	  like a blob GET.
//	GET /healthz             200/503 JSON: the store and the chain reachable
//	  (checked at most once a second; which failed, the error in the log),
//	  and the emergency service it runs (emergency_service), if any.
//	GET /metrics             Prometheus (to hosts of Options.MetricsFrom only,
//	  loopback by default; 403 otherwise): emrchain_sidecar_bytes_in_total,
//	  bytes_out_total, requests_total{route,outcome},
//	  request_duration_seconds{route}, sweep_* counters,
//	  quota_refusals_total{reason}, pending_bytes, damaged_copies_total,
//	  emergency_keys_released_total.
//
// Every error is JSON {"error": reason, "code": code}; the reason says what
// is missing ("no committed access event for this record", "your access
// event at height 12 expired at ...", "permission revoked at height 40",
// ...). A grant is judged by the chain's own rule, app.CheckPermission, at
// the newest block's time.
//
// # Authentication
//
// Each request is signed with the member's ed25519 signing key (verified
// with CometBFT's crypto/ed25519, like every signature in emrchain) over
// SigningString: a domain tag, the method, the request URI, and the
// X-Emr-Address, X-Emr-Timestamp, X-Emr-Body-SHA256, X-Emr-Patient and
// X-Emr-Category headers. The sidecar looks the address up on chain (Member) and verifies
// with the registered key. A timestamp further than MaxClockSkew (60 s) from
// the sidecar's clock is refused (401), and so is a request seen before
// within that window (401: a bounded replay cache keyed by the hash of
// address and signed string — not by signature bytes, which ZIP-215 lets an
// attacker re-encode). A request is judged by its own window, timestamp
// plus skew, when it reaches the cache: one held up past it (a wait for
// the node's height) is refused, since its first copy may be forgotten.
// One signer may hold ReplayPerSigner (1,000) entries of that cache:
// beyond, its requests are refused with 429 and a Retry-After of the
// seconds until its oldest entry leaves the window,
// and the other signers are served; a cache full of everyone's entries
// refuses every new request (503), forgetting none. The body hash is signed, and for PUT the body is
// hashed while it streams into the store, so a tampered body is refused.
// A suspended member is refused (403) even with a valid signature.
//
// A request that fails authentication (401) costs the chain lookup and the
// signature check and proves no signer, so it is charged to the client's
// host: its IPv4 address or IPv6 /64, from the connection, never from a
// header such as X-Forwarded-For. A host may fail FailedAuthPerMinute (60)
// times a minute, with a burst of as many; beyond, every request from it,
// validly signed or not, is refused before the lookup (429 auth_failures,
// with a Retry-After of the seconds until it may fail again). Successful
// requests keep nothing from that (each holds a token only while it is
// authenticated, so no more may be in flight at once: the same 429 refuses
// a host with 60 authentications under way). Behind a reverse proxy every
// client shares the proxy's address. At most 10,000 hosts are tracked: the
// bound is on memory, and an attacker with more addresses escapes the
// limit (authfail.go).
//
// # Sealed answers
//
// A signed request names no sidecar, so whoever sees one (a proxy that
// logs headers, a plain-HTTP hop) could send it on to another sidecar
// that holds the blob within the clock skew, which keeps its own replay
// cache. So every blob answer goes sealed to the member that signed the
// request (seal.go): the bytes are encrypted once more with
// crypto.NewEncryptWriter under a fresh data key, sent in a
// crypto.SealTransferKey envelope (header X-Emr-Sealed-Envelope, base64)
// to the X25519 key the chain has for the member, both bound to
// BlobAnswerContext(request URI, Content-Range); X-Emr-Sealed-Size is the
// size of what the body holds, and the body is crypto.CiphertextSize of
// it. Only that member's private key opens it (Client.Get does, as it
// streams). A sidecar that relays a member's request to a peer passes the
// peer's sealed answer on, and keeps no copy; a storage service's replica
// is sealed to it the same way.
//
// # Authorization (asked of the chain on every request; nothing cached)
//
// PUT: the patient's owner, or a member whose permission for the patient
// stands at the latest block time (not revoked, not_before <= t < not_after,
// covering the category) with the write right; for ciphertext re-encrypted
// to a study (PUT /v1/shared-blobs), a member whose permission stands with
// the share right. The upload precedes AddRecord, so there is no record to
// check: the blob is filed under the patient and category it was uploaded
// for, records' and shares' apart (owner.go), and only a record, or a
// share, of both serves it.
//
// GET: the named record (Record) or share (Share) must exist and have
// exactly this blob, or the answer is 403 — the chain keeps no index from a
// hash to what references it (see BlobRef) — and the blob is read from
// those uploaded for the record's patient and category (a share's: the
// shared ciphertext uploaded for those of the record it shares), or the
// answer is 404. Served to the owner of the
// record's patient; to a member whose last access event (LastAccess) for the
// record is committed and at most AccessWindow (10 min) old in
// block time, and whose permission still stands and covers the record's
// category (so revocation or a narrower grant ends the window early); for
// shared blobs, to the study's principal investigator and active
// researchers of the study's organization whose read of the share
// (LastShareRead, an access event of the share) is committed and at most
// AccessWindow old, while the consent the share was made under stands
// (app.ShareConsentStands: the sharer's permission not revoked, the sharer
// active, in its window, the share right for the category and the study,
// and not narrowed to anonymised sharing for a share that is not
// anonymised). Everything else is 403.
//
// # Break-glass
//
// A clinician's emergency read (an access event of purpose emergency,
// naming an emergency service of the clinician's organization) takes no
// consent of the clinician's: its record's ciphertext is served while the
// event is at most the chain's emergency window (emergency_access_seconds)
// old, and at most AccessWindow, whichever is shorter; the caller is an
// active clinician of the service's organization; and the patient's opt-in
// to the service (a grant of the emergency right) still covers the
// record's category at the newest block (app.EmergencyOptInStands: not
// revoked, in its window, the service active). A sidecar configured as
// that service (Options.Emergency, its member signing and X25519 keys)
// also releases the record's data key on the same rule
// (GET /v1/emergency-key): it opens the opt-in's envelope (the patient's
// KEK of the opt-in's key version, checked against the patient's check
// value when that version is current), unwraps the record's data key,
// clears the KEK, and seals the data key to the clinician's registered
// encryption key with crypto.EmergencyKeyBinding(patient, clinician,
// record), and signs the answer with the service's signing key
// (EmergencyKeySignBytes): the client takes a released key only with that
// signature, never because it decrypts the record (a ciphertext chosen by
// its uploader can decrypt under two keys). The KEK never leaves the
// sidecar; every release is logged ("emergency data key released":
// patient, record, clinician, service, event height) and counted. Each
// release first checks that the chain has the service's keys as the ones
// the sidecar holds (CheckEmergencyService checks them at start).
//
// # Replication
//
// A sidecar given its organization's storage service key (Options.Storage:
// a member registered with ROLE_STORAGE_SERVICE) copies from its Peers the
// ciphertext of every blob a committed record or share references and it
// does not hold: as blocks commit, when it drops a copy as damaged (the
// repair), and in a pass every ReplicaInterval (ReplicatePass). Peers serve
// GET ReplicaPath(key) to active storage services of the organizations
// params.storage_organizations names (the consortium's custodians) only,
// and only blobs their own reference index has, sealed to the X25519 key
// the chain has for the service that asked (crypto.SealTransferKey: a
// peer that relays the signed request gets nothing it can read); every
// copy is checked against its SHA-256 as it is written (replica.go). With
// params.storage_copies = k, a new blob is copied only by the k storage
// organizations app.CopyHolders places it at (rendezvous hashing over its
// SHA-256, from the params alone); a damaged copy is repaired wherever it
// was held.
//
// # Trust
//
// NewNodeChainView trusts the co-located node (same operator, same trust
// domain; see its documentation), but not to be current: a node still
// catching up, or one whose latest block is older than MaxHeadAge by the
// sidecar's clock (cut off from the other validators, it keeps answering
// with its last block and would never see a revocation), authorizes
// nothing (503). Nor to be as far as the client: a client that says which
// height it saw committed (X-Emr-Min-Height: the access event it just
// logged, the key it just rotated) is answered only once the node has
// that height. The request waits up to MaxHeightWait (3 s) for it, then
// gets 503 chain_behind with Retry-After, so that a 403 always means
// "no", never "not yet". The header is not signed: a wrong one only
// delays its own request. Clients never trust the sidecar: they
// check the SHA-256 of what they download against a record proven with the
// light client before decrypting. NewQueryChainView lets a verifying client
// back the sidecar instead.
//
// # Garbage collection
//
// Sweep (every SweepInterval) deletes blobs older than SweepGrace (1 h) that
// no committed record or share references, a bounded number per pass, each
// deletion logged and counted. It never waits for an upload: a blob being
// uploaded (whose lock the upload holds) is passed over until a later pass
// (SweepReport.Busy). Each pass first removes the leftovers of interrupted
// uploads older than SweepGrace, whatever the rest of it does; they are also
// removed at start, and every DefaultSweepInterval with the sweep disabled.
//
// The chain keeps no index from a blob's hash to what references it, so the
// sidecar keeps its own reference index: the key (patient and category
// digest, and SHA-256) of every blob named by a successful transaction of a
// committed block (the event attributes emrchain.blob, emrchain.patient and
// emrchain.category of AddRecord and ShareRecord, read from block results;
// ChainView.BlockBlobs, ResultBlobs), with the largest size a record or
// share gives the blob (emrchain.blob_size), and the height and block time
// it is complete through. It lives in a pebble database under
// Options.RefIndexDir, or in memory (read again at each start); each page
// of blocks is one synced batch with the new cursor, so a crash never
// leaves the cursor ahead of its sums.
//
// On a node that holds no blocks from height 1 (Head.Earliest above 1: a
// node restored from a state-sync snapshot, or one that prunes blocks) an
// empty index starts from the state instead: the blobs of every record and
// share in it (ChainView.StateBlobs, the Query service's BlobRefs), with
// the cursor at the lowest height the pages were read at. Records and
// shares are never removed, so this holds every blob the blocks up to that
// height referenced. A seed cut short goes on from its last page. An index
// whose cursor is below the node's earliest block but one (kept while the
// node rejoined from a snapshot, or pruned past) is read again from the
// state the same way, keeping its keys; one whose cursor is just below the
// earliest block reads on from there.
//
// Each pass first reads every block after the cursor up to the chain's
// head. If it cannot — the node is down or discards ABCI responses; or the
// block at the cursor is not the one the index read (another chain under
// the same directory) — the pass deletes nothing and returns the error. A blob is deleted only if the
// index, complete up to the head, does not have it, and if it is older
// than the grace period before the earlier of the pass's clock and the
// head block's time. A reference committed after the catch-up read the
// head is covered by the first (the clock is read before the catch-up and
// the upload comes before the transaction); a reference the node never saw
// because it stopped following the chain by the second: a node cut off
// answers with its last block, and the pass then checks only blobs older
// than that block by the grace period (SweepReport.HeadBehind, logged as
// an error when past MaxHeadAge).
//
// # Quotas on pending uploads
//
// A blob is pending from its upload until the reference index reads a
// committed record or share of it, or the sweep deletes it. The bytes of
// pending blobs are bounded per signer of the upload
// (PendingBytesPerSigner, 16 GiB: 429), of all patients' uploads
// (PendingBytesPatients, 32 GiB: 507; patients enroll themselves, so a few
// accounts could otherwise take the total from the registered members) and
// in all (PendingBytesTotal, 64 GiB: 507); the check and the reservation are one step, before the
// body is read, and a second upload of a stored blob adds nothing. The
// count is kept in memory and rebuilt at start from the store's listing
// and the reference index (pending.go); before it refuses, an upload has
// the index read the blocks committed since its last read.
//
// # Uploads in flight
//
// A store's Put holds a buffer from its start, however slowly the body
// comes: with MinIO one part (5 MiB for blobs up to 48.8 GiB; see the
// blobstore package), with the filesystem 256 KiB. Each read of a
// body must come within UploadIdleTimeout (30 s), and after a first idle
// timeout the body must keep up UploadMinRate (64 KiB/s) on average, or
// the upload ends with 408 and its connection is closed; at most
// MaxUploads (64) uploads are in flight, at most
// MaxUploadsPerSigner (8) of one signer and MaxUploadsPatients (32) of
// all patients together, who enroll themselves. So the sidecar's upload buffers
// take at most MaxUploads × 5 MiB (320 MiB) with MinIO (uploads.go).
package sidecar
