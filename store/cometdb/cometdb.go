package cometdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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

// ErrNoOptions: a directory holds no pebble OPTIONS file (a goleveldb
// database, or none at all).
var ErrNoOptions = errors.New("cometdb: no pebble OPTIONS file")

// MemTableSizeOf is the memtable size, in bytes, that the pebble database
// in dir was last opened with, as pebble recorded it in its newest OPTIONS
// file (read back with pebble's own parser): how an operator or a test
// sees what a node's databases run with.
func MemTableSizeOf(dir string) (uint64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "OPTIONS-*"))
	if err != nil {
		return 0, fmt.Errorf("cometdb: %w", err)
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("%w in %s", ErrNoOptions, dir)
	}
	newest := files[len(files)-1] // OPTIONS-<file number>, zero-padded
	b, err := os.ReadFile(newest)
	if err != nil {
		return 0, fmt.Errorf("cometdb: %w", err)
	}
	var opts pebble.Options
	if err := opts.Parse(string(b), &pebble.ParseHooks{SkipUnknown: func(string, string) bool { return true }}); err != nil {
		return 0, fmt.Errorf("cometdb: %s: %w", newest, err)
	}
	if opts.MemTableSize == 0 {
		return 0, fmt.Errorf("cometdb: no mem_table_size in %s", newest)
	}
	return opts.MemTableSize, nil
}
