package cometdb

import (
	"errors"
	"fmt"
	"os"
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

// TestMemTableSizeOfNewest: a database reopened with another memtable
// reads back the new size, and of several OPTIONS files (pebble leaves
// older ones behind when an open is cut short) the one with the highest
// file number counts, also where that number has grown past six digits
// and its name sorts first.
func TestMemTableSizeOfNewest(t *testing.T) {
	conf := cmtcfg.DefaultConfig()
	conf.SetRoot(t.TempDir())
	conf.DBBackend = "pebbledb"
	dir := filepath.Join(conf.DBDir(), "state.db")
	for _, mib := range []int{16, 32} {
		db, err := Provider(mib)(&cmtcfg.DBContext{ID: "state", Config: conf})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := MemTableSizeOf(dir); err != nil || got != uint64(mib)<<20 {
			t.Fatalf("reopened with %d MiB: %d, %v", mib, got, err)
		}
	}

	planted := t.TempDir()
	options := func(name string, size uint64) {
		t.Helper()
		body := fmt.Sprintf("[Version]\n  pebble_version=0.1\n\n[Options]\n  mem_table_size=%d\n", size)
		if err := os.WriteFile(filepath.Join(planted, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	options("OPTIONS-000007", 4<<20)
	options("OPTIONS-999999", 8<<20)
	options("OPTIONS-not-a-number", 1<<20)
	if got, err := MemTableSizeOf(planted); err != nil || got != 8<<20 {
		t.Fatalf("newest of six digits: %d, %v; want %d", got, err, 8<<20)
	}
	options("OPTIONS-1000000", 64<<20)
	if got, err := MemTableSizeOf(planted); err != nil || got != 64<<20 {
		t.Fatalf("newest past six digits: %d, %v; want %d", got, err, 64<<20)
	}

	if _, err := MemTableSizeOf(t.TempDir()); !errors.Is(err, ErrNoOptions) {
		t.Fatalf("an empty directory: %v, want ErrNoOptions", err)
	}
}
