package cometdb

import (
	"github.com/cockroachdb/pebble"
	dbm "github.com/cometbft/cometbft-db"
	cmtcfg "github.com/cometbft/cometbft/config"
)

// DefaultMemTableMiB is the memtable size, in MiB, Provider gives each of
// CometBFT's pebble databases unless told otherwise.
const DefaultMemTableMiB = 64

// MaxMemTableMiB bounds the memtable size: pebble refuses 4 GiB or more.
const MaxMemTableMiB = 2048

// Provider returns the DBProvider a node hands to CometBFT: pebble
// databases (config.toml db_backend "pebbledb") with memtables of
// memTableMiB MiB (0: pebble's default, 4 MiB), anything else as
// CometBFT's DefaultDBProvider opens it.
func Provider(memTableMiB int) cmtcfg.DBProvider {
	return func(ctx *cmtcfg.DBContext) (dbm.DB, error) {
		if dbm.BackendType(ctx.Config.DBBackend) != dbm.PebbleDBBackend || memTableMiB == 0 {
			return cmtcfg.DefaultDBProvider(ctx)
		}
		opts := &pebble.Options{MemTableSize: uint64(memTableMiB) << 20}
		return dbm.NewPebbleDBWithOpts(ctx.ID, ctx.Config.DBDir(), opts)
	}
}
