package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"unicode"

	"github.com/emrchain/emrchain/app"
)

// defaultAllowedHosts is [app] allowed_hosts unless app.toml says otherwise.
var defaultAllowedHosts = []string{"localhost"}

// allowAnyHost in [app] allowed_hosts turns the Host check off.
const allowAnyHost = "*"

// hostFilter is the defence of the node's HTTP servers (CometBFT's RPC,
// rpcService, and the REST gateway) against DNS rebinding. A web
// page on a name its author controls can point that name at a node's
// address once the page has loaded (a short TTL, then a private or
// loopback address): the browser then sends the page's requests to the
// node as same-origin, past CORS and past the firewall that keeps the
// node's REST port off the internet, and hands the page the answers. What
// the browser cannot change is the Host header: it still names the
// attacker's name. So the servers answer a request only when its Host is
// an IP address (no DNS involved) or one of the names the operator listed
// ([app] allowed_hosts, "localhost" by default), as geth's --http.vhosts
// does. Writes gain nothing from this (a transaction is signed by its
// member's key); reads do, since the chain's state, blocks and audit trail
// are meant for the consortium's members, not for any web page a member's
// browser opens.
type hostFilter struct {
	any   bool
	names map[string]bool // lower case, without a trailing dot
}

func newHostFilter(allowed []string) hostFilter {
	f := hostFilter{names: map[string]bool{}}
	for _, h := range allowed {
		if h == allowAnyHost {
			f.any = true
		}
		f.names[normalHost(h)] = true
	}
	return f
}

// normalHost is a host name as the filter compares it: DNS names are case
// insensitive, and "name." is "name".
func normalHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// allows reports whether a request whose Host header is hostport is
// answered. An HTTP/1.0 request may carry no Host; a browser always sends
// one.
func (f hostFilter) allows(hostport string) bool {
	if f.any || hostport == "" {
		return true
	}
	host := hostOf(hostport)
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return f.names[normalHost(host)]
}

// hostOf is the host of a Host header, without the port.
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]") // "[::1]" without a port
}

// wrap hands next the requests to a host the filter allows; refuse answers
// the others (403, saying why: refusal).
func (f hostFilter) wrap(next http.Handler, refuse func(w http.ResponseWriter, why string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.allows(r.Host) {
			refuse(w, refusal(r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refusal says why a request whose Host header is hostport is refused, and
// what the client and the node's operator can do.
func refusal(hostport string) string {
	host := app.QuoteInput(normalHost(hostOf(hostport)))
	return fmt.Sprintf("host %s (Host: %s) is not in this node's app.toml [app] allowed_hosts, a defence against DNS rebinding: "+
		"call the node by its IP address or a listed name, or have its operator add %s to allowed_hosts and restart it",
		host, app.QuoteInput(hostport), host)
}

// checkAllowedHosts refuses an [app] allowed_hosts entry no Host header
// could match: a port, a scheme or a path, white space or an empty name.
func checkAllowedHosts(hosts []string) error {
	for _, h := range hosts {
		if h == allowAnyHost {
			continue
		}
		if h == "" || strings.ContainsAny(h, " \t\r\n,:/[]*@") {
			return fmt.Errorf("app.allowed_hosts: bad host %q (want a name without port, e.g. \"node0.hospital.example\", or \"*\" for any)", h)
		}
		for _, r := range h {
			if r > unicode.MaxASCII {
				// Clients send an internationalised name in its ASCII
				// (punycode) form, which such an entry would never match.
				return fmt.Errorf("app.allowed_hosts: host %q is not ASCII: give its punycode form (xn--...), as clients send it", h)
			}
		}
	}
	return nil
}
