package store

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/google/btree"
)

// Cache is a write-back overlay over a parent KV. Reads see the overlay's
// own writes first; iteration merges overlay and parent in key order, with
// overlay deletes hiding parent keys; Write flushes the overlay to the parent
// in sorted key order; Discard drops it.
//
// Sorted flushing matters: the shape of an IAVL tree, and so its root hash,
// depends on the order of insertion. Flushing in key order makes the root
// depend only on the set of writes, never on the order (or map iteration
// order) in which the state machine made them.
//
// A Cache is safe for concurrent use; iterators are not synchronised with
// writes to the same Cache (iterators take a snapshot of the overlay, the
// parent's contract applies to the parent part).
type Cache struct {
	parent KV

	mu    sync.RWMutex
	items *btree.BTreeG[*cacheItem]
}

// cacheItem is one overlay entry: a value, or a tombstone.
type cacheItem struct {
	key     []byte
	value   []byte
	deleted bool
}

func lessItem(a, b *cacheItem) bool { return bytes.Compare(a.key, b.key) < 0 }

const cacheDegree = 32

// cacheNodes recycles btree nodes between caches: the state machine makes a
// Cache per transaction, and a free list of its own for each was a
// measurable share of a block's allocations. A FreeListG is safe for
// concurrent use.
var cacheNodes = btree.NewFreeListG[*cacheItem](btree.DefaultFreeListSize)

var _ KV = (*Cache)(nil)

// NewCache returns an empty overlay over parent. Caches nest: a Cache is a KV.
func NewCache(parent KV) *Cache {
	return &Cache{parent: parent, items: btree.NewWithFreeListG(cacheDegree, lessItem, cacheNodes)}
}

// Get returns the overlay's value (nil for a tombstone) or the parent's.
func (c *Cache) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, nil
	}
	c.mu.RLock()
	it, ok := c.items.Get(&cacheItem{key: key})
	c.mu.RUnlock()
	if ok {
		if it.deleted {
			return nil, nil
		}
		return bytes.Clone(it.value), nil
	}
	return c.parent.Get(key)
}

// Has reports whether Get would return a value.
func (c *Cache) Has(key []byte) (bool, error) {
	if len(key) == 0 {
		return false, nil
	}
	c.mu.RLock()
	it, ok := c.items.Get(&cacheItem{key: key})
	c.mu.RUnlock()
	if ok {
		return !it.deleted, nil
	}
	return c.parent.Has(key)
}

// Set stages value at key. Key and value are copied.
func (c *Cache) Set(key, value []byte) error {
	if err := checkKV(key, value); err != nil {
		return err
	}
	c.mu.Lock()
	c.items.ReplaceOrInsert(&cacheItem{key: bytes.Clone(key), value: bytes.Clone(value)})
	c.mu.Unlock()
	return nil
}

// Delete stages a tombstone at key.
func (c *Cache) Delete(key []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	c.mu.Lock()
	c.items.ReplaceOrInsert(&cacheItem{key: bytes.Clone(key), deleted: true})
	c.mu.Unlock()
	return nil
}

// Write flushes the overlay to the parent in ascending key order and empties
// the overlay. If the parent fails part-way, the error is returned, the
// overlay is kept, and the parent may hold part of the writes: discard the
// parent's changes too (e.g. Store.Rollback) — a failed Write is a failed
// block, not a state to continue from.
func (c *Cache) Write() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.parent.(*Cache); ok {
		// Into another overlay (a transaction's into its block's): hand
		// the entries over as they are. They are never modified once
		// staged, and this overlay lets go of them below.
		p.mu.Lock()
		c.items.Ascend(func(it *cacheItem) bool {
			p.items.ReplaceOrInsert(it)
			return true
		})
		p.mu.Unlock()
		c.items.Clear(true)
		return nil
	}
	var err error
	c.items.Ascend(func(it *cacheItem) bool {
		if it.deleted {
			err = c.parent.Delete(it.key)
		} else {
			err = c.parent.Set(it.key, it.value)
		}
		if err != nil {
			err = fmt.Errorf("store: cache write of key %X: %w", it.key, err)
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	c.items.Clear(true)
	return nil
}

// Discard drops every staged write.
func (c *Cache) Discard() {
	c.mu.Lock()
	c.items.Clear(true)
	c.mu.Unlock()
}

// Len returns the number of staged entries (writes and tombstones).
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.items.Len()
}

// Iterator merges the overlay and the parent over [start, end).
func (c *Cache) Iterator(start, end []byte, ascending bool) (Iterator, error) {
	start, end = openBound(start), openBound(end)
	c.mu.RLock()
	overlay := c.snapshot(start, end, ascending)
	c.mu.RUnlock()
	parent, err := c.parent.Iterator(start, end, ascending)
	if err != nil {
		return nil, err
	}
	m := &mergeIterator{parent: parent, overlay: overlay, ascending: ascending}
	m.settle()
	return m, nil
}

// snapshot copies the overlay entries in [start, end) in iteration order.
// Called with c.mu held.
func (c *Cache) snapshot(start, end []byte, ascending bool) []*cacheItem {
	if start != nil && end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	var out []*cacheItem
	collect := func(it *cacheItem) bool {
		out = append(out, it)
		return true
	}
	if ascending {
		switch {
		case start == nil && end == nil:
			c.items.Ascend(collect)
		case start == nil:
			c.items.AscendLessThan(&cacheItem{key: end}, collect)
		case end == nil:
			c.items.AscendGreaterOrEqual(&cacheItem{key: start}, collect)
		default:
			c.items.AscendRange(&cacheItem{key: start}, &cacheItem{key: end}, collect)
		}
		return out
	}
	// Descending over [start, end): DescendLessOrEqual would include end,
	// so filter it out.
	within := func(it *cacheItem) bool {
		if start != nil && bytes.Compare(it.key, start) < 0 {
			return false
		}
		if end != nil && bytes.Equal(it.key, end) {
			return true // skip end itself, keep going
		}
		out = append(out, it)
		return true
	}
	if end == nil {
		c.items.Descend(within)
	} else {
		c.items.DescendLessOrEqual(&cacheItem{key: end}, within)
	}
	return out
}

// mergeIterator merges a parent iterator with a sorted overlay snapshot.
// On equal keys the overlay wins; overlay tombstones hide the parent key.
type mergeIterator struct {
	parent    Iterator
	overlay   []*cacheItem
	pos       int
	ascending bool

	// current element, valid when valid is true
	valid     bool
	key       []byte
	value     []byte
	fromCache bool
}

// before reports whether key a comes before key b in iteration order.
func (m *mergeIterator) before(a, b []byte) bool {
	if m.ascending {
		return bytes.Compare(a, b) < 0
	}
	return bytes.Compare(a, b) > 0
}

// settle positions the iterator on the next visible element (or invalid),
// without advancing past a visible one.
func (m *mergeIterator) settle() {
	for {
		pValid := m.parent.Valid()
		oValid := m.pos < len(m.overlay)
		switch {
		case !pValid && !oValid:
			m.valid = false
			return
		case !oValid:
			m.valid, m.key, m.value, m.fromCache = true, m.parent.Key(), m.parent.Value(), false
			return
		}
		it := m.overlay[m.pos]
		if pValid {
			pk := m.parent.Key()
			if m.before(pk, it.key) {
				m.valid, m.key, m.value, m.fromCache = true, pk, m.parent.Value(), false
				return
			}
			if bytes.Equal(pk, it.key) {
				// The overlay shadows the parent's entry for this key.
				m.parent.Next()
			}
		}
		if it.deleted {
			m.pos++
			continue
		}
		m.valid, m.key, m.value, m.fromCache = true, it.key, it.value, true
		return
	}
}

func (m *mergeIterator) Valid() bool { return m.valid }

func (m *mergeIterator) Next() {
	if !m.valid {
		panic("store: Next on an invalid iterator")
	}
	if m.fromCache {
		m.pos++
	} else {
		m.parent.Next()
	}
	m.settle()
}

func (m *mergeIterator) Key() []byte {
	if !m.valid {
		panic("store: Key on an invalid iterator")
	}
	return m.key
}

func (m *mergeIterator) Value() []byte {
	if !m.valid {
		panic("store: Value on an invalid iterator")
	}
	return m.value
}

func (m *mergeIterator) Error() error { return m.parent.Error() }
func (m *mergeIterator) Close() error { return m.parent.Close() }

// sliceIterator iterates over an in-memory list (used for empty views).
type sliceIterator struct {
	keys, values [][]byte
	pos          int
}

func (s *sliceIterator) Valid() bool   { return s.pos < len(s.keys) }
func (s *sliceIterator) Next()         { s.pos++ }
func (s *sliceIterator) Key() []byte   { return s.keys[s.pos] }
func (s *sliceIterator) Value() []byte { return s.values[s.pos] }
func (s *sliceIterator) Error() error  { return nil }
func (s *sliceIterator) Close() error  { return nil }

// ReadOnly wraps a Reader as a KV whose Set and Delete fail with
// ErrReadOnly, so a Cache can sit on an immutable snapshot (e.g. the CheckTx
// state on top of ReaderAt(last committed version)). Such a Cache works as
// a scratch pad; its Write fails.
func ReadOnly(r Reader) KV { return readOnly{r} }

type readOnly struct{ Reader }

func (readOnly) Set(key, _ []byte) error {
	return fmt.Errorf("%w: set %X", ErrReadOnly, key)
}

func (readOnly) Delete(key []byte) error {
	return fmt.Errorf("%w: delete %X", ErrReadOnly, key)
}
