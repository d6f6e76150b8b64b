package cometdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	newest, err := newestOptions(dir)
	if err != nil {
		return 0, err
	}
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

// newestOptions is the path of dir's OPTIONS file with the highest file
// number. Pebble names them OPTIONS-<number>, zero-padded to six digits
// and longer past 999999, so the names do not sort as the numbers do;
// names whose suffix is not a number are not pebble's.
func newestOptions(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cometdb: %w", err)
	}
	newest, found := "", false
	var highest uint64
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), "OPTIONS-")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		n, err := strconv.ParseUint(suffix, 10, 64)
		if err != nil {
			continue
		}
		if !found || n > highest {
			newest, highest, found = e.Name(), n, true
		}
	}
	if !found {
		return "", fmt.Errorf("%w in %s", ErrNoOptions, dir)
	}
	return filepath.Join(dir, newest), nil
}
