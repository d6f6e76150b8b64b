// Package load is emrchain's load generator and its measurement: what
// `emrchaind load` runs against a consortium, and what `make bench-chain`
// uses to compare emrchain with CometBFT's kvstore on the same machine.
//
// # What a run does
//
// Setup registers clinicians (signed by the registrars' development keys of
// the testnet), enrolls patients who grant their clinician read and write,
// and adds one record per patient; every step waits until its transactions
// are in blocks. Then the measured phase sends, for a fixed duration and
// bounded by a fixed number of transactions signed before it starts,
// a realistic mix (by default 60% AddRecord, 30% RecordAccess and 10%
// consent changes: Grant, Revoke and two RotateKeys in turn by patients of
// their own) either at a target rate or as fast as the nodes take them in.
//
// Every signer has its own sequence stream and is pinned to one validator,
// and a signer's transactions are sent in order by one worker, so a
// transaction never reaches its node before its predecessor. Each worker
// streams its transactions, in batches of up to 10, to its node's gRPC
// TxService.BroadcastTxs, which runs CheckTx on them in order and answers
// each (Config.Submit "grpc", the default when the nodes' gRPC servers are
// known): protobuf on one HTTP/2 stream per worker, so the nodes parse no
// JSON for the load. With "jsonrpc" they go as broadcast_tx_sync in JSON-RPC
// batches of up to 10 (CometBFT's default rpc.max_request_batch_size), which
// the node also runs in order, one HTTP request per batch. Either way the
// generator's own CPU, taken from the two cores the nodes share, stays near
// that of CometBFT's loadtime. A full
// mempool is retried after a short pause, a rejection with a code is
// counted by code and ends that signer's stream (its later transactions
// would have a sequence gap).
//
// # What it measures
//
// Commits are counted from the blocks, never from sends: an observer polls
// one node's RPC for every block and its results, hashes every transaction
// and matches it to its send time. Submit-to-commit latency runs to the
// moment the observer first sees the block that holds a transaction; it
// starts, at a target rate, when the transaction was due by the schedule
// (the i-th of the plan i/rate after the start), so time spent waiting in
// the sender behind a stalled node or a full mempool counts (no coordinated
// omission); at saturation, where there is no schedule, at its first
// broadcast attempt (a retry does not restart it). The summary says which
// (latency_from). At a rate, a transaction due in the phase that a sender
// still held at its end is sent after it, within the drain
// (sent_after_end), so its latency is measured, not cut off; and the rate
// goes on after the end with the plan's spare transactions (a tenth of
// the duration; trailing_accepted, in no figure), so that the phase's
// last transactions commit under the same load as the others. A transaction
// whose clock started in the window but that was not committed when the
// observation ended (never sent, sent and never taken, or accepted and
// never committed, by the end of the drain) is censored: it counts with the
// time from its start to the end of the observation, a lower bound, and a
// percentile at or above the rank of the lowest such bound is marked as a
// lower bound too (latency_ms.censored and at_least; "≥" in the text). Leaving those out would show a chain that fell behind with
// the latency of only the transactions it did commit. A transaction in a
// block whose results never came is
// booked as outcome unknown, neither a success nor a failure. Throughput is
// counted over whole block intervals: the successful transactions of the
// blocks observed after the last block before the window (the warm-up's
// end) up to the last block of the window, divided by the time between
// those two blocks. Block time is the difference of consecutive block
// header times; block size is the number of transactions and their bytes.
// With --cpu-pids, the CPU time of the nodes over the same window is
// reported, also per committed transaction (per second of the window over
// the committed tx/s).
//
// Watch measures load sent by someone else — CometBFT's loadtime `load`
// against kvstore — in exactly the same way; latency then runs from the
// timestamp loadtime puts in each payload.
//
// Results are a JSON summary, a CSV time series (per second: committed tx/s
// and latency percentiles) and a CSV of blocks; Plot draws the time series
// of one or more runs into a PNG without any plotting library.
package load
