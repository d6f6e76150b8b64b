package store

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"testing"

	dbm "github.com/cosmos/cosmos-db"
)

// diskBackends are the persistent backends every durability test runs on.
var diskBackends = []string{BackendGoLevelDB, BackendPebble}

func openTest(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q, %+v): %v", dir, opts, err)
	}
	return s
}

func memStore(t testing.TB) *Store {
	t.Helper()
	s := openTest(t, "", Options{Backend: BackendMemDB, CacheSize: 10_000})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// memStoreOver is a store over db (a test's faulty or measuring
// database), closed when the test ends.
func memStoreOver(t testing.TB, db dbm.DB) *Store {
	t.Helper()
	s, err := openWithDB(db, Options{Backend: BackendMemDB, CacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustSet(t testing.TB, kv KV, key, value string) {
	t.Helper()
	if err := kv.Set([]byte(key), []byte(value)); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustDelete(t testing.TB, kv KV, key string) {
	t.Helper()
	if err := kv.Delete([]byte(key)); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
}

func mustGet(t testing.TB, r Reader, key string) []byte {
	t.Helper()
	v, err := r.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func wantValue(t testing.TB, r Reader, key, want string) {
	t.Helper()
	got := mustGet(t, r, key)
	if want == "" {
		if got != nil {
			t.Fatalf("Get(%q) = %q, want absent", key, got)
		}
		has, err := r.Has([]byte(key))
		if err != nil || has {
			t.Fatalf("Has(%q) = %v, %v; want false", key, has, err)
		}
		return
	}
	if string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
	has, err := r.Has([]byte(key))
	if err != nil || !has {
		t.Fatalf("Has(%q) = %v, %v; want true", key, has, err)
	}
}

func mustCommit(t testing.TB, s *Store) ([]byte, int64) {
	t.Helper()
	h, v, err := s.Commit()
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return h, v
}

type kvPair struct{ k, v string }

// collect drains an iterator into pairs.
func collect(t testing.TB, r Reader, start, end []byte, ascending bool) []kvPair {
	t.Helper()
	it, err := r.Iterator(start, end, ascending)
	if err != nil {
		t.Fatalf("Iterator(%q, %q, %v): %v", start, end, ascending, err)
	}
	defer it.Close()
	var out []kvPair
	for ; it.Valid(); it.Next() {
		out = append(out, kvPair{string(it.Key()), string(it.Value())})
	}
	if err := it.Error(); err != nil {
		t.Fatalf("iterator error: %v", err)
	}
	return out
}

// expectRange computes the expected iteration over a model map.
func expectRange(model map[string]string, start, end []byte, ascending bool) []kvPair {
	var out []kvPair
	for k, v := range model {
		if len(start) > 0 && bytes.Compare([]byte(k), start) < 0 {
			continue
		}
		if len(end) > 0 && bytes.Compare([]byte(k), end) >= 0 {
			continue
		}
		out = append(out, kvPair{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if ascending {
			return out[i].k < out[j].k
		}
		return out[i].k > out[j].k
	})
	return out
}

func samePairs(a, b []kvPair) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func isNotFound(err error) bool { return errors.Is(err, ErrVersionNotFound) }

func keyN(i int) string { return fmt.Sprintf("k%05d", i) }
