// Package cometdb opens CometBFT's own databases — the block store, the
// consensus state with every block's ABCI results, the tx index and the
// evidence pool — the way an emrchain node runs them.
//
// CometBFT opens them through a DBProvider; its default (cometbft-db) gives
// pebble its 4 MiB default memtable. Under a validator's load, those
// databases take every block's transactions, results and index entries,
// and a 4 MiB memtable flushes them to disk in small files that pebble
// then compacts again and again: in profiles of a validator at a fixed
// rate, compaction of CometBFT's databases grew from 11 % to 25 % of its
// CPU within a minute (BENCHMARKS.md). Provider opens them with larger
// memtables (64 MiB by default, app.toml [store] cometbft_memtable_mib),
// as RocksDB and CockroachDB size theirs: fewer, larger flushes and far
// less compaction. The app's own app.db is opened by package store.
//
// A memtable starts small and grows to its full size as writes come; each
// database holds at most two full ones (pebble's
// MemTableStopWritesThreshold), so the bound on memory is four databases ×
// two memtables. goleveldb databases are opened as CometBFT opens them.
// MemTableSizeOf reads back, from pebble's OPTIONS file, what a database
// was last opened with.
package cometdb
