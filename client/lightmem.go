package client

import (
	dbm "github.com/cometbft/cometbft-db"
)

// copyIterDB is the in-memory light store of a Client without a Home: a
// MemDB whose iterators run over a copy of their range.
//
// cometbft-db's MemDB iterator walks the tree in a goroutine that holds the
// MemDB's read lock until it has sent the whole range (64 items ahead of
// the reader) or is closed. lightdb's Prune (light/store/db) iterates over
// every header and writes its batch of deletions before it closes the
// iterator; the batch takes the MemDB's write lock. Once the store holds
// more headers than the light client keeps (PruningSize, 1,000) plus the
// 64 the goroutine may run ahead, the first header saved after that
// deadlocks for ever, inside the light client, under lightMu. goleveldb's
// iterators hold no lock, so a Home's store never had this. Copying the
// range (its keys and values are the MemDB's own slices, which a write
// replaces and never changes) drains the goroutine before the caller
// writes anything.
type copyIterDB struct {
	dbm.DB
}

func newLightMemDB() dbm.DB { return copyIterDB{dbm.NewMemDB()} }

// Iterator implements dbm.DB.
func (d copyIterDB) Iterator(start, end []byte) (dbm.Iterator, error) {
	it, err := d.DB.Iterator(start, end)
	if err != nil {
		return nil, err
	}
	return copyIterator(it)
}

// ReverseIterator implements dbm.DB.
func (d copyIterDB) ReverseIterator(start, end []byte) (dbm.Iterator, error) {
	it, err := d.DB.ReverseIterator(start, end)
	if err != nil {
		return nil, err
	}
	return copyIterator(it)
}

// copyIterator reads it to its end, closes it, and returns an iterator
// over what it read.
func copyIterator(it dbm.Iterator) (dbm.Iterator, error) {
	defer it.Close()
	s := &copiedIterator{}
	s.start, s.end = it.Domain()
	for ; it.Valid(); it.Next() {
		s.keys = append(s.keys, it.Key())
		s.values = append(s.values, it.Value())
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return s, nil
}

// copiedIterator is a dbm.Iterator over keys and values read already.
type copiedIterator struct {
	start, end   []byte
	keys, values [][]byte
	i            int
}

func (s *copiedIterator) Domain() ([]byte, []byte) { return s.start, s.end }
func (s *copiedIterator) Valid() bool              { return s.i < len(s.keys) }
func (s *copiedIterator) Error() error             { return nil }
func (s *copiedIterator) Close() error             { s.keys, s.values = nil, nil; return nil }

func (s *copiedIterator) Next() {
	if !s.Valid() {
		panic("iterator is invalid")
	}
	s.i++
}

func (s *copiedIterator) Key() []byte {
	if !s.Valid() {
		panic("iterator is invalid")
	}
	return s.keys[s.i]
}

func (s *copiedIterator) Value() []byte {
	if !s.Valid() {
		panic("iterator is invalid")
	}
	return s.values[s.i]
}
