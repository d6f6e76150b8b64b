package cometdb

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	cmtcfg "github.com/cometbft/cometbft/config"
)

// memTableSizeOnDisk opens database id through p in a fresh home with
// backend, writes and reads back one key, closes it and returns the
// mem_table_size pebble recorded in the database's OPTIONS file ("" if the
// database has none, as goleveldb's do not).
func memTableSizeOnDisk(t *testing.T, p cmtcfg.DBProvider, backend, id string) string {
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
	files, err := filepath.Glob(filepath.Join(conf.DBDir(), id+".db", "OPTIONS-*"))
	if err != nil || len(files) == 0 {
		return ""
	}
	b, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*mem_table_size=(\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no mem_table_size in %s:\n%s", files[len(files)-1], b)
	}
	return string(m[1])
}

// TestProviderMemTable: CometBFT's pebble databases open with the memtable
// asked for (64 MiB by default), 0 leaves pebble's 4 MiB, and goleveldb
// databases open as CometBFT's own provider opens them.
func TestProviderMemTable(t *testing.T) {
	for _, c := range []struct {
		name, backend string
		mib           int
		want          string
	}{
		{"default", "pebbledb", DefaultMemTableMiB, "67108864"},
		{"larger", "pebbledb", 256, "268435456"},
		{"pebble's own", "pebbledb", 0, "4194304"},
		{"goleveldb", "goleveldb", DefaultMemTableMiB, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, id := range []string{"blockstore", "state", "tx_index", "evidence"} {
				if got := memTableSizeOnDisk(t, Provider(c.mib), c.backend, id); got != c.want {
					t.Errorf("%s: mem_table_size %q, want %q", id, got, c.want)
				}
			}
		})
	}
}
