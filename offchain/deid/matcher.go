package deid

// matcher is an Aho–Corasick automaton over a set of needles: whether one
// of them occurs in a string costs one pass over the string, however many
// needles there are and however many share a prefix. (A list of needles
// per 4-byte prefix made a swept string that repeats one prefix cost
// needles × bytes: a record with 4,000 identifiers of one prefix and an
// 80 kB string of it took 1.5 s, and the cost grew with the square of the
// input.)
type matcher struct {
	root  [256]int32       // the root's transitions (the root itself when none)
	next  map[uint64]int32 // state<<8 | byte → the state it goes to
	edges [][]edge         // each state's transitions, for building
	fail  []int32          // the longest proper suffix that is a state
	out   []bool           // a needle ends here, or on the fail chain
	// steps counts the transitions in has made (at most twice the bytes
	// it has read; a test checks).
	steps int
}

type edge struct {
	b  byte
	to int32
}

func newMatcher(needles []string) *matcher {
	m := &matcher{next: map[uint64]int32{}, edges: [][]edge{nil}, fail: []int32{0}, out: []bool{false}}
	for _, s := range needles {
		st := int32(0)
		for i := 0; i < len(s); i++ {
			nx, ok := m.next[key(st, s[i])]
			if !ok {
				nx = int32(len(m.fail))
				m.next[key(st, s[i])] = nx
				m.edges[st] = append(m.edges[st], edge{s[i], nx})
				m.edges = append(m.edges, nil)
				m.fail = append(m.fail, 0)
				m.out = append(m.out, false)
			}
			st = nx
		}
		m.out[st] = true
	}
	// Breadth first, so that a state's fail target is done before it.
	queue := make([]int32, 0, len(m.fail))
	for _, e := range m.edges[0] {
		queue = append(queue, e.to) // fail: the root
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, e := range m.edges[u] {
			f := m.fail[u]
			for {
				if to, ok := m.next[key(f, e.b)]; ok {
					m.fail[e.to] = to
					break
				}
				if f == 0 {
					break // fail stays the root
				}
				f = m.fail[f]
			}
			m.out[e.to] = m.out[e.to] || m.out[m.fail[e.to]]
			queue = append(queue, e.to)
		}
	}
	for _, e := range m.edges[0] {
		m.root[e.b] = e.to
	}
	m.edges = nil // only for building
	return m
}

func key(state int32, b byte) uint64 { return uint64(state)<<8 | uint64(b) }

// in reports whether one of the needles occurs in s.
func (m *matcher) in(s string) bool {
	if m.out[0] {
		return true // the empty needle
	}
	st := int32(0)
	for i := 0; i < len(s); i++ {
		for {
			m.steps++
			if st == 0 {
				st = m.root[s[i]]
				break
			}
			if to, ok := m.next[key(st, s[i])]; ok {
				st = to
				break
			}
			st = m.fail[st]
		}
		if m.out[st] {
			return true
		}
	}
	return false
}
