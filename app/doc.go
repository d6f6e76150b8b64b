// Package app is emrchain's deterministic state machine: it decodes a
// transaction, authenticates its signer, authorizes the message against the
// patient's consents at the block's time, and executes it against one IAVL
// tree (package store).
//
// # Contract
//
// The state machine is a pure function of (committed state, block height,
// block time, transactions, and the validators whose signatures the
// block's last commit holds: BlockInfo.Signers). It never reads the clock, randomness, the
// environment or map iteration order, and it imports nothing of ABCI or the
// network; package abci adapts it to CometBFT. Concretely:
//
//   - CheckTx and FinalizeBlock run the same code (execTx) against different
//     views: CheckTx against a cache over the last committed state (advanced
//     by every accepted CheckTx and reset after Commit), FinalizeBlock
//     against the working tree. The only difference is the time: CheckTx
//     uses the last block's time (after a restart or a state-sync restore,
//     until the next block, that of the last block that changed the
//     state), a block uses its own.
//   - Every transaction executes in its own cache that is written to the
//     block's view only when it succeeds, in sorted key order (the shape of
//     an IAVL tree, and so the app hash, depends on insertion order). A
//     failed transaction changes nothing, not even its signer's sequence.
//   - FinalizeBlock stages; Commit persists. The app hash is the IAVL root.
//     A crash at any point loses at most the uncommitted block, which
//     CometBFT replays after the handshake (Info reports the last commit).
//   - Bad transactions get a result code (errors.go) and a human message;
//     an error return means a broken invariant (a storage fault) on which
//     CometBFT must halt.
//   - ed25519 signatures are verified with CometBFT's crypto/ed25519
//     (ZIP-215), once per transaction: the result is cached by transaction
//     hash between CheckTx, PrepareProposal/ProcessProposal and
//     FinalizeBlock, and a block's uncached signatures are batch-verified.
//     Verification needs no state because the body carries the signer's
//     public key and the address is derived from it.
//
// The key layout of the tree is in keys.go and store/README.md.
package app
