// Package client is emrchain's client library, shared by emrcli and the
// tests (the node and its sidecar use only client/keyring, for the
// sidecar's service keys): it signs and submits transactions, and it reads
// the chain through CometBFT RPC without trusting the node it talks to.
// It never links the node (no abci/ or cmd/ imports); it reuses the state
// machine's own query code (app.NewQuerier) to check answers.
//
// # Verified queries: re-execute over proven state
//
// With Config.Verify, Query (and every typed helper built on it) does:
//
//  1. The CometBFT light client (github.com/cometbft/cometbft/light)
//     verifies the node's newest header, H+1, from the root of trust
//     (TrustOptions, or the store under Config.Home: see "The light
//     store"), cross-checking it
//     with the witnesses (see Freshness for how H is chosen).
//  2. abci_query with prove=true at that explicit height H. The answer
//     carries one StoreProof (key, value, ICS23 proof) per state key the
//     node's query code read, including proofs of absence for keys it
//     found empty. An answer for another height is refused.
//  3. Every StoreProof is verified against that header's AppHash
//     (store.VerifyMembership, or store.VerifyAbsence for an empty value).
//  4. The request is run again, here, by app.NewQuerier over a store.Reader
//     holding exactly the proven key/values: reading a key without a proof
//     is a verification failure, and iteration yields only proven keys.
//  5. The node's answer, without its height and proofs, must be
//     proto.Equal to the local one (unknown fields included).
//  6. Lists must be complete (below).
//
// Every answer of the node's RPC is bounded in size as it is read (64
// MiB; a whole block or its results, 400 MiB): CometBFT's RPC client reads
// an answer whole before decoding it, and a node could otherwise make the
// client hold whatever it sends. A longer answer is ErrVerification.
//
// Any failure wraps ErrVerification and the answer is not returned. A
// failure the node reports (a "not found", an invalid request) is verified
// too: the query is re-run over keys fetched one by one with proofs
// (/store/key at one height); the error stands only if the proven state
// fails the same way, and its message is then the locally computed one.
// An honest "no" that would need a range to be proven (a node claiming a
// list query fails after the list's anchor exists) is a verification
// failure, never an answer.
//
// # Freshness
//
// Proofs show what a state held, not that it is recent: the client, not
// the node, chooses the height. Client.MinHeight only goes up: to the
// height of every verified read, and to every verified header less one
// (so to the block of every transaction seen committed); at start, and
// after every light-client operation, to the newest header in the light
// store less one (a Home keeps it between runs, and shares it between
// runs at once: see below). A read is made at the state under the node's
// newest header, never below MinHeight: a node claiming an older head is
// waited for, then refused. An answer for an older height than asked is
// refused. Both wrap ErrStale. With a Home, a read whose verification finds that another run
// verified a newer header meanwhile chooses its height again, once, so it
// is never older than what any run of the Home had verified when it
// began. So reads are monotonic and see the client's own transactions:
// RevokeAndRotate's rotation reads the state after its revocation, an
// audit log read after a RecordAccess holds it. Nor can a node withhold
// blocks its witnesses have: every witness is asked for its head at once
// (one that lags or stalls holds up no other), and when one reports a head
// more than two blocks past the node's, or past it and more than
// lightMaxBlockLag newer (an idle chain), the client fetches that header
// from the witness (each such witness at once, within its own timeout) and
// verifies it from the node's head; if it is more than lightMaxBlockLag
// (2 s) newer, the node must reach it within the timeout or the read
// fails with ErrStale. A head older than the trusting period fails the
// read (set a new trust root), as any newer one would. What is left is a
// node and every witness withholding together, or a client without
// witnesses; there is no bound on header age within the trusting period
// (QueryInfo.Time says how old an answer is). See docs/decisions.md.
//
// # The light store: one Home, many runs
//
// Without Config.Home the light client's store is in memory, the
// Client's alone. With one, it is HOME/light.db (goleveldb) and
// HOME/trust.json, shared by every Client of the Home, in this process or
// another (emrcli commands in two terminals, a script's parallel
// uploads). No Client keeps the store open: each light-client operation
// (a verification; LatestTrusted) takes the lock file HOME.lock (beside
// the directory, which emrcli light init --force swaps), checks that
// trust.json is still the root the Client started from, opens the store,
// builds a light client from its newest header (from the root when it is
// empty: a store deleted while trust.json stayed is made again), runs,
// closes it and releases the lock. A run waits at most for one operation
// of another (bounded by Config.Timeout); an open, check and close costs
// 8 to 9 ms (docs/decisions.md). A root replaced or removed meanwhile
// makes the next operation fail with ErrTrustRootReplaced, unless the new
// root is the Client's own; a new command then uses the new root. New
// settles a new root, and writes trust.json, under the same lock: of two
// Clients given two roots for one new Home at once, one is refused.
//
// # Completeness of lists
//
// A proof shows that a key holds a value; on its own it cannot show that a
// list left nothing out. So:
//
//   - Records, AccessEvents and Shares are numbered by sequence, a
//     study's shares (StudyShares) by study_sequence, and an emergency
//     service's break-glass log (BreakGlassLog) by its entries' sequence.
//     The items must be consecutive and reach the end that the proven
//     counters (the Patient's record_count, access_count and share_count,
//     the Study's share_count, the log's length) say the list has;
//     for Records every record the query walked (also under a category
//     filter) must have been proven. A node cannot hide a record or a read.
//   - Permissions and Grants have no counter.
//     For them the client proves every range the query walked complete
//     with ICS23 non-existence proofs of its gaps: for each gap between
//     two listed keys (and before the first, and after the last when the
//     query walked to the end), a proof that the gap's first key is absent
//     whose authenticated right neighbour is the next listed key. This
//     costs one extra round trip per listed item; the client asks for
//     eight of them at a time. (The design first
//     accepted "item by item, not complete" for these lists; the gap
//     proofs close that hole. The chain enforces the rest anyway: a
//     RotateKey built from a list missing a standing grant is refused.)
//     Where one consent is needed (GranteeKEK, RevokeAndRotate),
//     Permission reads it by its key instead: one proof, however many
//     grantees the patient has.
//   - Organization lists the organization's registrars, proven complete
//     the same way: the query walks the registrar index, so the gaps cost
//     one proof per registrar, not per member.
//
// # Transactions
//
// SignTx/Submit sign with a Signer (ed25519) over the deterministic body
// (app.EncodeTx), with the account's next sequence and a timeout height
// TxTimeoutBlocks past the head. In verified mode the sequence is proven: a
// node that reported a later one could have the signer sign a transaction
// the node holds back, valid once the signer's sequence reaches it; and
// the timeout height bounds how long a node that keeps any transaction
// instead of passing it on can release it (blocks past it refuse it,
// app.ErrTxExpired). Submit signs a message again after a "wrong sequence"
// refusal (the node's word) only when verified state proves the first
// transaction did not execute and never can (see Submit). Broadcast uses
// broadcast_tx_sync (a CheckTx refusal is a *ChainError matching
// ErrTxRejected and the app's coded error, e.g. errors.Is(err,
// app.ErrPermissionRevoked)), then polls until the transaction is
// committed. In verified mode TxStatus (and so every wait)
// checks the transaction's inclusion proof against the verified header's
// DataHash and its result code against the next header's LastResultsHash;
// the codespace is then the app's own, and the log message and events are
// not covered by any hash and are informational.
//
// # Consent flows
//
// GrantMsg seals the patient's current KEK to the grantee's verified
// encryption key, bound to (patient, grantee, key version), and only to a
// member the chain would grant to (app.MayBeGranted): an envelope in a
// refused grant has still reached a node. RevokeAndRotate
// revokes and then rotates the KEK, sealing the new one to every standing
// grantee (from verified state at or after the revocation), until the key
// version is two past the revoked grantee's envelope: the KEK of the next
// version may come from an earlier attempt that never committed but sealed
// it to the grantee, the one after it cannot. It is idempotent, so a run
// interrupted between its transactions is completed by running it again.
// A rotation refused as invalid is rebuilt once, from a fresh verified
// read. KEKFunc must store a new KEK durably before returning it, and
// returns that same KEK to every later attempt at its version.
// FileKeyRewrapper
// re-wraps existing records' data keys under the new KEK (the newest
// params.max_rewraps_per_rotation of them; RotationResult.Skipped lists
// the rest, which stay readable by the patient only); of a revocation's
// rotations, only the last re-wraps (RotationResult.RewrapDeferred).
//
// # Blob transfer
//
// Upload (encrypt → PUT to a sidecar → AddRecord), Download (verified
// record → output and sidecars checked → RecordAccess → GET from any
// sidecar → SHA-256 check → decrypt → atomic write), ShareRecord (download, de-identify if the consent says
// anonymise, re-encrypt to the study key, PUT, ShareRecord) and
// DownloadShare are the pipelines emrcli's upload, download and share
// commands run; blob.go describes each step and the formats
// (RecordStreamAAD, ShareStreamAAD, StudyKeyBinding), tempfile.go the
// temporary files. EmergencyDownload is Download for a clinician's break-glass read
// (RecordAccess of purpose emergency through an emergency service the
// patient opted in to, found with EmergencyServices, giving the
// clinician's reason, EmergencyDownloadRequest.Reason): the data key is
// released by the service's sidecar after the read, sealed to the
// clinician (emergency.go).
//
// # What is trusted
//
// The root of trust (a header the operator vouches for, or the genesis
// validator set, TrustFromGenesis) and, within the trusting period, that
// more than a third of that validator set's power is honest (CometBFT's
// light client assumption); the local clock, for the trusting period and
// clock drift checks. With no witness configured, the node is its own
// witness: header verification still holds, but a fork that fooled the
// whole validator set would not be cross-checked; configure one witness
// per other validator. Nothing a full node says is trusted.
package client
