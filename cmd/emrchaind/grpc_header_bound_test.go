package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/cometbft/cometbft/libs/log"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
)

// TestGRPCHeaderListIsBounded (a session-54 review): a client without any key opens streams
// on the node's gRPC port whose HEADERS carry one "-bin" metadata entry of
// ~4 KB once (HPACK literal with indexing) and then thousands of one-byte
// HPACK references to it. grpc-go's default header list limit is 16 MiB
// per stream, and it base64-decodes every "-bin" value into a fresh
// allocation, so each stream costs the server ~12 MB of heap for ~4 KB on
// the wire, held as long as the stream stays open (no DATA is ever sent; the
// connection is not idle while the stream is open, and lives 30 minutes).
// 100 streams per connection, 512 connections: a handful of connections
// exhaust a validator's memory. The node bounds the header list
// (grpcMaxHeaderListBytes) to what its API needs (the height header).
func TestGRPCHeaderListIsBounded(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpcServerOptions(4 << 20)...)
	registerAPIServices(srv, newQueryServerOver(app.NewQueryService(c.App), log.NewNopLogger(), queriesPerCPU), nil)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const streams = 40
	sent := sendHeaderBomb(t, lis.Addr().String(), streams)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("sent %d bytes in %d streams; server heap grew by %d MB", sent, streams, grown>>20)
	if grown > 64<<20 {
		t.Fatalf("%d KB sent without any key held %d MB of the node's heap (%d streams open): "+
			"the gRPC header list is not bounded (grpc-go's default 16 MiB per stream, -bin values decoded)",
			sent>>10, grown>>20, streams)
	}
}

// sendHeaderBomb opens one HTTP/2 connection to a gRPC server at addr and
// starts streams calls to Query/Params whose headers hold just under 16
// MiB of "-bin" metadata made of one-byte HPACK references to one ~4 KB
// entry; no DATA is sent, so each call waits for its request. It returns
// the bytes written once the server has read every HEADERS frame (a PING
// sent after them is answered); the connection stays open until the test
// ends.
func sendHeaderBomb(t *testing.T, addr string, streams int) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	counter := &countingWriter{w: conn}
	if _, err := counter.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(counter, bufio.NewReader(conn))
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	pong := make(chan struct{}, 1)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.PingFrame:
				if f.IsAck() {
					pong <- struct{}{}
				}
			}
		}
	}()

	value := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xA5}, 2990)) // 3988 chars
	entry := hpack.HeaderField{Name: "x-pad-bin", Value: value}
	refs := int((16<<20)/entry.Size()) - 10 // just under grpc-go's 16 MiB default

	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for i := range streams {
		block.Reset()
		for _, hf := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/emrchain.v1.Query/Params"}, {Name: ":authority", Value: "127.0.0.1"},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		} {
			_ = enc.WriteField(hf)
		}
		for range refs {
			_ = enc.WriteField(entry) // one byte each after the first: a dynamic table reference
		}
		// HEADERS without END_STREAM and no DATA: the call waits for its
		// request, holding its metadata.
		if err := writeHeaderBlock(fr, uint32(2*i+1), block.Bytes()); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	// Frames are read in order: once the ping is answered, every HEADERS
	// frame has been decoded.
	if err := fr.WritePing(false, [8]byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pong:
	case <-time.After(30 * time.Second):
		t.Fatal("no PING ack")
	}
	return counter.n
}

type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

// writeHeaderBlock sends block as HEADERS and CONTINUATION frames of at
// most 16 KB.
func writeHeaderBlock(fr *http2.Framer, id uint32, block []byte) error {
	const maxFrame = 16 << 10
	first := block
	if len(first) > maxFrame {
		first = block[:maxFrame]
	}
	rest := block[len(first):]
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(rest) == 0}); err != nil {
		return err
	}
	for len(rest) > 0 {
		n := min(len(rest), maxFrame)
		if err := fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}
