// Package freeport hands tests loopback ports for the servers they start
// (emrchaind nodes, MinIO, sidecars) when the port must be known before the
// server binds it, e.g. to write it into a config file.
//
// The ports come from below Linux's default ephemeral range (32768-60999,
// net.ipv4.ip_local_port_range). A port
// found free there by listening on 127.0.0.1:0 and closing can be taken a
// moment later as the local port of any outgoing connection on the
// machine, and the server then fails with "address already in use"; no
// outgoing connection takes a port below the range. Within one process a
// port is handed out once, and each process starts its search at an
// offset of its own, so test binaries that go test runs side by side
// rarely try the same ports; every port is also checked free when handed
// out.
package freeport
