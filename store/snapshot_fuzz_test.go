package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cosmos/iavl"
)

// FuzzDecodeSnapshotMetadata: metadata from a peer either decodes to a
// root and 1 to MaxSnapshotChunks hashes that encode back to exactly the
// input, or is refused with ErrBadSnapshot and a zero value.
func FuzzDecodeSnapshotMetadata(f *testing.F) {
	good := SnapshotMetadata{Root: bytes.Repeat([]byte{7}, sha256.Size), ChunkHashes: [][sha256.Size]byte{{1}, {2}}}
	f.Add(good.Encode())
	f.Add(good.Encode()[:sha256.Size+1])
	f.Add(append(good.Encode(), 0))
	f.Add(append(bytes.Repeat([]byte{0}, sha256.Size), 0x80, 0x00)) // overlong count
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeSnapshotMetadata(b)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) || m.Root != nil || m.ChunkHashes != nil {
				t.Fatalf("refusal %v with value %+v", err, m)
			}
			return
		}
		if n := len(m.ChunkHashes); n < 1 || n > MaxSnapshotChunks || len(m.Root) != sha256.Size {
			t.Fatalf("accepted %d chunks, root of %d bytes", n, len(m.Root))
		}
		if !bytes.Equal(m.Encode(), b) {
			t.Fatalf("metadata does not encode back to its input")
		}
	})
}

// FuzzDecodeChunk: a chunk from a peer either decodes to nodes within the
// format's bounds that encode back to exactly the input, or is refused
// with ErrBadSnapshot and no nodes.
func FuzzDecodeChunk(f *testing.F) {
	var chunk []byte
	for _, n := range []*iavl.ExportNode{
		{Key: []byte("a"), Value: []byte("1"), Version: 1},
		{Key: []byte("b"), Value: []byte("2"), Version: 2},
		{Key: []byte("b"), Version: 2, Height: 1},
	} {
		chunk = appendNode(chunk, n)
	}
	f.Add(chunk, int64(2))
	f.Add(chunk, int64(1))
	f.Add(chunk[:len(chunk)-1], int64(2))
	f.Add([]byte{0x80}, int64(5))
	f.Add([]byte{0, 1, 0x81, 0x00}, int64(5))
	f.Fuzz(func(t *testing.T, b []byte, maxVersion int64) {
		nodes, err := DecodeChunk(b, maxVersion)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) || nodes != nil {
				t.Fatalf("refusal %v with %d nodes", err, len(nodes))
			}
			return
		}
		for _, n := range nodes {
			if n.Version < 1 || n.Version > maxVersion || n.Height < 0 || len(n.Key) == 0 || len(n.Key) > MaxSnapshotKeyLen ||
				(n.Height == 0) != (n.Value != nil) || len(n.Value) > MaxSnapshotValueLen {
				t.Fatalf("accepted node %+v (max version %d)", n, maxVersion)
			}
		}
		if again := EncodeChunk(nodes); len(nodes) == 0 || !bytes.Equal(again, b) {
			t.Fatalf("%d nodes do not encode back to the chunk", len(nodes))
		}
	})
}

// FuzzParseSnapshotName: a directory name in the snapshots directory is
// read as a snapshot exactly when it is a height of at least 1 and a format,
// both in decimal without leading zeros and in range, joined by "-" (the
// one name they are written under), and then as those numbers.
func FuzzParseSnapshotName(f *testing.F) {
	for _, seed := range []string{snapshotName(12, SnapshotFormat), "12-1", "012-1", "12-01", "0-1", "-1-1", "12-", "12-1-x", "12-4294967296", "9223372036854775808-1", "+12-1", ".tmp-12-1-123", ""} {
		f.Add(seed)
	}
	wellFormed := regexp.MustCompile(`^[1-9][0-9]*-(0|[1-9][0-9]*)$`)
	f.Fuzz(func(t *testing.T, name string) {
		height, format, ok := parseSnapshotName(name)
		h, fm, _ := strings.Cut(name, "-")
		wantHeight, errH := strconv.ParseInt(h, 10, 64)
		wantFormat, errF := strconv.ParseUint(fm, 10, 32)
		want := wellFormed.MatchString(name) && errH == nil && errF == nil
		switch {
		case ok != want:
			t.Fatalf("%q: read %v, want %v", name, ok, want)
		case !ok && (height != 0 || format != 0):
			t.Fatalf("%q refused with height %d, format %d", name, height, format)
		case ok && (height != wantHeight || uint64(format) != wantFormat):
			t.Fatalf("%q read as height %d, format %d", name, height, format)
		}
	})
}
