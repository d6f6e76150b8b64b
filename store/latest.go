package store

import "bytes"

// latestValues is a bounded, read-through cache of the values of the latest
// committed version, by key: a hit costs one map lookup instead of a walk
// down the IAVL tree through its node cache. It is what every CheckTx,
// recheck and block execution reads (their views are the latest version,
// or the working tree while nothing in it has changed).
//
// Commit applies the block's writes to it, so it never holds a stale
// value; reads at older versions and iterators go to the tree. It changes
// nothing a reader sees, only how fast: the state machine stays
// deterministic whatever it evicts. Eviction is FIFO.
//
// Guarded by Store.valuesMu; its version only moves under Store.mu held
// for writing, so a reader holding Store.mu for reading sees one version.
type latestValues struct {
	version int64
	entries map[string][]byte // nil: known absent
	order   []string          // ring of inserted keys
	next    int
}

func newLatestValues(size int) *latestValues {
	return &latestValues{entries: make(map[string][]byte, size), order: make([]string, size)}
}

// get returns the value of key at version and whether the cache knew it.
func (c *latestValues) get(version int64, key []byte) ([]byte, bool) {
	if c == nil || version != c.version {
		return nil, false
	}
	v, ok := c.entries[string(key)]
	return v, ok
}

// put remembers key's value (nil: absent) at version, if version is the
// cache's.
func (c *latestValues) put(version int64, key, value []byte) {
	if c == nil || version != c.version {
		return
	}
	c.set(string(key), value)
}

func (c *latestValues) set(key string, value []byte) {
	if _, ok := c.entries[key]; !ok {
		if old := c.order[c.next]; old != "" {
			delete(c.entries, old)
		}
		c.order[c.next] = key
		c.next = (c.next + 1) % len(c.order)
	}
	c.entries[key] = value
}

// advance moves the cache to version, applying the writes committed in it
// (nil value: deleted).
func (c *latestValues) advance(version int64, writes map[string][]byte) {
	if c == nil {
		return
	}
	for k, v := range writes { // order is irrelevant: one value per key
		c.set(k, v)
	}
	c.version = version
}

// reset forgets everything (after a rollback of the store's versions).
func (c *latestValues) reset(version int64) {
	if c == nil {
		return
	}
	clear(c.entries)
	clear(c.order)
	c.next = 0
	c.version = version
}

// cloneValue returns a copy callers may keep and modify (nil stays nil).
func cloneValue(v []byte) []byte {
	if v == nil {
		return nil
	}
	return bytes.Clone(v)
}
