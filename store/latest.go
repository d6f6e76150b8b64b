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
// Guarded by Store.valuesMu. It holds the version Store.lastVersion names:
// both move together in Commit, under Store.mu held for writing, so a
// reader holding Store.mu for reading sees one version.
type latestValues struct {
	entries map[string][]byte // nil: known absent
	order   []string          // ring of inserted keys
	next    int
}

func newLatestValues(size int) *latestValues {
	return &latestValues{entries: make(map[string][]byte, size), order: make([]string, size)}
}

// get returns the value of key and whether the cache knew it.
func (c *latestValues) get(key []byte) ([]byte, bool) {
	v, ok := c.entries[string(key)]
	return v, ok
}

// put remembers key's value (nil: absent).
func (c *latestValues) put(key string, value []byte) {
	if _, ok := c.entries[key]; !ok {
		if old := c.order[c.next]; old != "" {
			delete(c.entries, old)
		}
		c.order[c.next] = key
		c.next = (c.next + 1) % len(c.order)
	}
	c.entries[key] = value
}

// apply applies the writes of a newly committed version (nil value:
// deleted).
func (c *latestValues) apply(writes map[string][]byte) {
	if c == nil {
		return
	}
	for k, v := range writes { // order is irrelevant: one value per key
		c.put(k, v)
	}
}

// cloneValue returns a copy callers may keep and modify (nil stays nil).
func cloneValue(v []byte) []byte {
	if v == nil {
		return nil
	}
	return bytes.Clone(v)
}
