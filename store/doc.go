// Package store owns emrchain's application state: one IAVL tree
// (github.com/cosmos/iavl v1) over one cosmos-db database (goleveldb, pebble
// or memdb), its versions, pruning, ICS23 proofs and state-sync snapshots.
//
// # What it owns
//
//   - Store: the versioned tree. Working() is the mutable working tree of the
//     block being executed; Commit saves it as the next version and returns
//     the root hash, which is the AppHash. ReaderAt gives immutable views of
//     saved versions; GetWithProof gives a value (or its absence) with an
//     ics23:iavl proof op.
//   - Cache: a write-back overlay over any KV (per transaction, per block,
//     or for CheckTx on top of ReadOnly(ReaderAt(last))).
//   - The ics23:iavl proof operator, its decoder (ProofRuntime) and the
//     client-side checks VerifyMembership and VerifyAbsence.
//   - The values of the latest version, read through an in-memory cache
//     (Options.ValueCacheSize, latest.go) that Commit keeps current.
//   - State-sync snapshots: Export streams a version's IAVL nodes;
//     Snapshots is a node's snapshot directory (format SnapshotFormat,
//     chunks, metadata, pruning, what peers download); BeginRestore
//     imports a snapshot into an empty store, bounded in memory, and
//     Restore.Finish checks its root against the trusted app hash before
//     it commits. Package abci serves and applies them.
//
// The key layout of the application lives in app (app/keys.go) and is
// documented in this package's README.md; store treats keys as opaque bytes.
//
// # Contract
//
//   - Commit persists. Nothing written through Working() reaches disk before
//     Commit; Rollback discards it; a crash or Close loses it.
//   - Open reloads the latest committed version and its hash, so after a
//     crash at any point the node restarts exactly at its last Commit and
//     CometBFT replays the blocks after it. Each Commit is written as one
//     atomic database batch, so a crash never leaves a torn version.
//   - Insertion order matters. The shape of an IAVL tree, and therefore its
//     root hash, depends on the order in which keys are inserted, not only
//     on the final set of keys. Every node must apply a block's writes in
//     the same order. Cache.Write flushes in sorted key order, so state
//     machines that stage writes in a Cache (the intended use) get a root
//     that depends only on the set of writes.
//   - Values are never empty: Set rejects nil and empty values; absence is
//     expressed by Delete.
//   - One version per block: version N is the state after block N, and the
//     proof for a query at version N verifies against the AppHash in the
//     header of block N+1.
package store
