// Package abci adapts the emrchain state machine (package app) to CometBFT's
// ABCI 2.0 interface, github.com/cometbft/cometbft/abci/types.Application.
//
// The adapter is deliberately thin: it converts requests into the app's
// plain Go types, converts results back, and decides which failures halt the
// chain. All rules live in package app; nothing here reads the clock, the
// network or randomness, so the adapter adds no non-determinism.
//
// # Flow
//
// One file per ABCI step:
//
//	info.go             Info: the last committed height and app hash
//	init_chain.go       InitChain: genesis app_state -> first app hash
//	check_tx.go         CheckTx: mempool admission against the check state
//	prepare_proposal.go PrepareProposal: the proposer drops invalid txs
//	process_proposal.go ProcessProposal: validators reject blocks with invalid txs
//	vote_extension.go   ExtendVote / VerifyVoteExtension: unused, accept
//	finalize_block.go   FinalizeBlock: execute the decided block, stage state
//	commit.go           Commit: persist the staged state, report retain height
//	query.go            Query: state reads, with ICS23 proofs on request
//	snapshots.go        state sync: snapshots made in the background after
//	                    Commit and served; a verified restore into an empty app
//
// A node starts with Info. CometBFT compares the app's last committed height
// with its own block store and replays the missing blocks through
// FinalizeBlock and Commit (or calls InitChain at height 0). Because the app
// persists only in Commit, a crash at any point — mid-block, between
// FinalizeBlock and Commit, during Commit — leaves the app at a height
// CometBFT can replay from; nothing is ever half-applied.
//
// # Errors and halting
//
// A bad transaction is never an error of the ABCI method: it gets a non-zero
// code and a log in CheckTx or in its ExecTxResult, and the block goes on.
// A bad query gets a non-zero code and a log in the QueryResponse.
//
// An error returned from InitChain, FinalizeBlock or Commit halts the node on
// purpose. InitChain fails only for a genesis the app cannot accept; the node
// must not start on it. FinalizeBlock and Commit fail only when an invariant
// of the state machine or the store is broken (a storage fault, a state that
// no longer decodes, a height out of order): executing further blocks on top
// of such a state would commit a wrong app hash that the other validators do
// not share, so the right thing is to stop and let the operator look. CometBFT
// reports such an error as a consensus failure and stops making progress,
// but keeps the process and its RPC up; Options.OnHalt lets emrchaind stop
// the process instead, so a supervisor sees the failure and a restart
// replays the block once the fault is fixed.
//
// Every method that changes or checks state (InitChain, CheckTx, the block
// calls, Commit) takes one mutex, so those calls are serialised even though
// emrchaind serves the adapter with one ABCI client mutex per connection
// (proxy.NewConnSyncLocalClientCreator). Info and Query read committed
// versions only, which the store serves beside a block in progress, so they
// take a read lock of their own instead: a proven read never waits for a
// block, and a flood of them cannot hold one up. Close takes both, so after
// it returns no call is in flight and every later call fails; the store can
// then be closed safely. Vote extensions are answered without state, so
// they take neither; ListSnapshots and LoadSnapshotChunk read the snapshot
// directory under the read lock, and OfferSnapshot and ApplySnapshotChunk,
// which restore the state, take the mutex.
package abci
