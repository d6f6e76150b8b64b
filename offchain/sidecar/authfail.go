package sidecar

import (
	"net/netip"
	"sync"
	"time"
)

// Failed authentications per client host.
//
// A request is only known to come from a member once its signer was looked
// up on the chain (an ABCI query) and its ed25519 signature verified, so a
// request that fails authentication costs those and can be charged to no
// signer. It is charged to the client's host instead: each authentication
// that fails (401) takes a token from the host's bucket, which holds
// FailedAuthPerMinute tokens and refills at that many a minute. A host with
// no token left is refused (429, with a Retry-After of the seconds until
// one is back) before its request is parsed or anything is asked of the
// chain, whatever the request carries: telling a valid signature from a bad
// one is the cost the limit saves, so a member sharing an address with a
// host that keeps failing is refused with it. Every authentication holds
// a token while it runs (a chain lookup and a signature check:
// milliseconds) and gives it back unless it failed, so requests in flight
// at once cannot fail more often than the bucket allows. A client that is
// set up right therefore meets the limit only with more than
// FailedAuthPerMinute authentications from its host at the same moment:
// a proxy or a peer sidecar forwarding many reads while the chain answers
// slowly. (The return is approximate: a token that refilled while a
// request was in flight is returned as well, so a host can fail a few
// more times than the limit while slow successes overlap its failures.)
//
// The host is the IP address of the connection (r.RemoteAddr): an IPv4
// address, or the /64 prefix of an IPv6 one, which one machine usually
// holds whole and could otherwise take a fresh address from for every
// request. Headers such as X-Forwarded-For are not read: any client can
// write them. Behind a reverse proxy every client therefore shares the
// proxy's bucket; there, raise the limit, or turn it off and limit in the
// proxy. A peer sidecar's forwards share its host's bucket too: they fail
// here only when they arrive stale, replayed or ahead of this node, but a
// member can arrange that (docs/decisions.md), and they are refused as
// well when more than the limit are in flight at once (the member then
// hears from the peer that no sidecar had the blob).
//
// What is bounded is memory, not an attacker with many addresses: at most
// maxAuthFailHosts hosts are tracked. A bucket that is full again needs no
// state, so when the table is full its full buckets are dropped (a pass over
// the table, at most once every authFailPruneEvery); if none is, the new
// host's failures are not counted. Someone failing from more addresses (or
// /64s) than that escapes the per-host limit.

// maxAuthFailHosts bounds the hosts whose failures are tracked at once (a
// map entry each, about a hundred bytes).
const maxAuthFailHosts = 10_000

// authFailPruneEvery: how often, at most, a full table is searched for
// buckets that refilled, so that a flood of new hosts does not cost a pass
// over the table per request.
const authFailPruneEvery = time.Second

// authFailLimiter is the token bucket of failed authentications per host.
// A bucket is kept as the time it is full again: it lacks one token per
// interval until then, and a host without an entry has a full bucket. Its
// methods may be called on nil (no limit): they take nothing.
type authFailLimiter struct {
	interval time.Duration // refill time of one token
	window   time.Duration // refill time of a whole bucket
	max      int           // hosts tracked at most
	now      func() time.Time

	mu     sync.Mutex
	full   map[netip.Addr]time.Time // per host, when its bucket is full again
	pruned time.Time                // the last pass over a full table
}

// newAuthFailLimiter allows perMinute failures a minute per host, with a
// burst of as many; nil (no limit) when perMinute is not positive.
func newAuthFailLimiter(perMinute int, now func() time.Time) *authFailLimiter {
	if perMinute <= 0 {
		return nil
	}
	n := min(time.Duration(perMinute), time.Minute) // a token a nanosecond: the finest the clock counts
	interval := time.Minute / n
	return &authFailLimiter{
		interval: interval, window: interval * n,
		max: maxAuthFailHosts, now: now, full: make(map[netip.Addr]time.Time),
	}
}

// take takes a token from host's bucket for an authentication about to
// run. If none is left it returns false and how long until one is back.
// Otherwise the caller calls refund unless the authentication failed: the
// token is then given back. A host the table has no room for is not
// charged (see maxAuthFailHosts).
func (l *authFailLimiter) take(host netip.Addr) (refund func(), wait time.Duration, ok bool) {
	if l == nil {
		return func() {}, 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	full, tracked := l.full[host]
	if full.Sub(now) > l.window {
		// A clock stepped back would make the bucket lack the step as
		// well: it lacks all of it at most.
		full = now.Add(l.window)
		l.full[host] = full
	}
	owed := max(full.Sub(now), 0)
	if wait := owed + l.interval - l.window; wait > 0 {
		return nil, wait, false
	}
	if !tracked && !l.roomLocked(now) {
		return func() {}, 0, true
	}
	l.full[host] = now.Add(owed + l.interval)
	return func() { l.refund(host) }, 0, true
}

// refund gives back a token take took from host.
func (l *authFailLimiter) refund(host netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	full, ok := l.full[host]
	if !ok {
		return
	}
	if full = full.Add(-l.interval); full.After(l.now()) {
		l.full[host] = full
	} else {
		delete(l.full, host)
	}
}

// roomLocked reports whether a new host can be tracked: the table is not
// full, or it was not searched within authFailPruneEvery and dropping the
// buckets that are full again makes room.
func (l *authFailLimiter) roomLocked(now time.Time) bool {
	if len(l.full) < l.max {
		return true
	}
	if since := now.Sub(l.pruned); since >= 0 && since < authFailPruneEvery {
		return false
	}
	l.pruned = now
	for h, full := range l.full {
		if !full.After(now) {
			delete(l.full, h)
		}
	}
	return len(l.full) < l.max
}

// clientHost is the bucket of a request from remoteAddr (an http.Request's
// RemoteAddr, "ip:port"): the IPv4 address, or the /64 prefix of the IPv6
// address (an IPv4-mapped IPv6 address is the IPv4 address; a zone is
// dropped). A RemoteAddr that holds no IP address (a connection that is not
// TCP) gives the zero Addr: one bucket for all such clients.
func clientHost(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// hostName names a bucket in a refusal.
func hostName(host netip.Addr) string {
	switch {
	case !host.IsValid():
		return "clients without an IP address"
	case host.Is6():
		return netip.PrefixFrom(host, 64).String()
	}
	return host.String()
}
