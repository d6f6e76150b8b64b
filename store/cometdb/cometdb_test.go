package cometdb

import (
	"errors"
	"path/filepath"
	"testing"

	cmtcfg "github.com/cometbft/cometbft/config"
)

// memTableSizeOnDisk opens database id through p in a fresh home with
// backend, writes and reads back one key, closes it and returns the
// memtable size pebble recorded for it (0 if the database has no OPTIONS
// file, as goleveldb's do not).
func memTableSizeOnDisk(t *testing.T, p cmtcfg.DBProvider, backend, id string) uint64 {
	t.Helper()
	conf := cmtcfg.DefaultConfig()
	conf.SetRoot(t.TempDir())
	conf.DBBackend = backend
	db, err := p(&cmtcfg.DBContext{ID: id, Config: conf})
	if err != nil {
		t.Fatalf("open %s (%s): %v", id, backend, err)
	}
	if err := db.SetSync([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("get back: %q, %v", v, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := MemTableSizeOf(filepath.Join(conf.DBDir(), id+".db"))
	if errors.Is(err, ErrNoOptions) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestProviderMemTable: CometBFT's pebble databases open with the memtable
// asked for (64 MiB by default), 0 leaves pebble's 4 MiB, and goleveldb
// databases open as CometBFT's own provider opens them.
func TestProviderMemTable(t *testing.T) {
	for _, c := range []struct {
		name, backend string
		mib           int
		want          uint64
	}{
		{"default", "pebbledb", DefaultMemTableMiB, 64 << 20},
		{"larger", "pebbledb", 256, 256 << 20},
		{"pebble's own", "pebbledb", 0, 4 << 20},
		{"goleveldb", "goleveldb", DefaultMemTableMiB, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, id := range []string{"blockstore", "state", "tx_index", "evidence"} {
				if got := memTableSizeOnDisk(t, Provider(c.mib), c.backend, id); got != c.want {
					t.Errorf("%s: mem_table_size %d, want %d", id, got, c.want)
				}
			}
		})
	}
}
