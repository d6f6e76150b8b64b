package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cosmos/iavl"
)

// SnapshotFormat is the number of the state-sync snapshot format this
// package writes and reads (ABCI Snapshot.Format). A snapshot of format 1
// is the post-order stream of IAVL export nodes of one version, cut into
// chunks at node boundaries (see docs/decisions.md, "State sync"):
//
//	chunk    = node*                      (at least one node, no end marker)
//	node     = height:1 version:uvarint keylen:uvarint key [vallen:uvarint value]
//
// The value is present exactly for leaves (height 0). The metadata
// (Snapshot.Metadata) is
//
//	root:32 chunks:uvarint sha256:32 * chunks
//
// with nothing after the last hash; Snapshot.Hash is the SHA-256 of the
// metadata.
const SnapshotFormat uint32 = 1

// Bounds of the snapshot format, enforced by the writer and the decoders.
const (
	// DefaultChunkSize is the size at which the writer starts a new chunk.
	// A chunk holds whole nodes, so one may exceed it by one node.
	DefaultChunkSize = 4 << 20
	// MaxSnapshotChunks bounds a snapshot's chunk count (64 GiB of state at
	// the default chunk size; 512 KiB of metadata, within CometBFT's 4 MB
	// snapshot message).
	MaxSnapshotChunks = 16384
	// MaxSnapshotKeyLen and MaxSnapshotValueLen bound one node.
	MaxSnapshotKeyLen   = 64 << 10
	MaxSnapshotValueLen = 8 << 20
	// MaxChunkSize bounds a chunk on the wire: DefaultChunkSize plus one
	// largest node, below CometBFT's 16 MB chunk message.
	MaxChunkSize = DefaultChunkSize + MaxSnapshotKeyLen + MaxSnapshotValueLen + 64
	// maxNodeHeight is the tallest subtree an IAVL node may claim (int8).
	maxNodeHeight = 127
)

// SnapshotMetadata is what a snapshot's ABCI metadata carries.
type SnapshotMetadata struct {
	// Root is the root hash of the exported version, as the exporter saw
	// it. It is a hint for an early refusal only: the restore compares the
	// imported tree's own root with the app hash CometBFT's light client
	// verified.
	Root []byte
	// ChunkHashes holds the SHA-256 of each chunk, in order.
	ChunkHashes [][sha256.Size]byte
}

// Encode returns the metadata bytes.
func (m SnapshotMetadata) Encode() []byte {
	out := make([]byte, 0, sha256.Size+binary.MaxVarintLen64+sha256.Size*len(m.ChunkHashes))
	out = append(out, m.Root...)
	out = binary.AppendUvarint(out, uint64(len(m.ChunkHashes)))
	for _, h := range m.ChunkHashes {
		out = append(out, h[:]...)
	}
	return out
}

// Hash is the snapshot's hash (ABCI Snapshot.Hash): SHA-256 of Encode.
func (m SnapshotMetadata) Hash() []byte {
	h := sha256.Sum256(m.Encode())
	return h[:]
}

// DecodeSnapshotMetadata decodes metadata from a peer. It fails with
// ErrBadSnapshot (and a zero value) unless b is exactly the encoding of a
// root hash and 1 to MaxSnapshotChunks chunk hashes.
func DecodeSnapshotMetadata(b []byte) (SnapshotMetadata, error) {
	if len(b) < sha256.Size {
		return SnapshotMetadata{}, fmt.Errorf("%w: metadata of %d bytes", ErrBadSnapshot, len(b))
	}
	off := sha256.Size
	n, err := readUvarint(b, &off, MaxSnapshotChunks)
	if err != nil {
		return SnapshotMetadata{}, fmt.Errorf("chunk count: %w", err)
	}
	if n == 0 {
		return SnapshotMetadata{}, fmt.Errorf("%w: a snapshot of no chunks", ErrBadSnapshot)
	}
	root, rest := b[:sha256.Size], b[off:]
	if uint64(len(rest)) != n*sha256.Size {
		return SnapshotMetadata{}, fmt.Errorf("%w: %d bytes of hashes for %d chunks", ErrBadSnapshot, len(rest), n)
	}
	m := SnapshotMetadata{Root: bytes.Clone(root), ChunkHashes: make([][sha256.Size]byte, n)}
	for i := range m.ChunkHashes {
		copy(m.ChunkHashes[i][:], rest[i*sha256.Size:])
	}
	return m, nil
}

// appendNode appends the encoding of one export node.
func appendNode(out []byte, n *iavl.ExportNode) []byte {
	out = append(out, byte(n.Height))
	out = binary.AppendUvarint(out, uint64(n.Version))
	out = binary.AppendUvarint(out, uint64(len(n.Key)))
	out = append(out, n.Key...)
	if n.Height == 0 {
		out = binary.AppendUvarint(out, uint64(len(n.Value)))
		out = append(out, n.Value...)
	}
	return out
}

// EncodeChunk is the chunk of nodes, in order: DecodeChunk's inverse. The
// snapshot writer cuts its chunks with appendNode; tools and tests that
// build a chunk by hand use this.
func EncodeChunk(nodes []*iavl.ExportNode) []byte {
	var out []byte
	for _, n := range nodes {
		out = appendNode(out, n)
	}
	return out
}

// checkExportNode refuses a node the format cannot carry.
func checkExportNode(n *iavl.ExportNode) error {
	switch {
	case n.Height < 0:
		return fmt.Errorf("%w: node height %d", ErrBadSnapshot, n.Height)
	case len(n.Key) == 0 || len(n.Key) > MaxSnapshotKeyLen:
		return fmt.Errorf("%w: key of %d bytes (want 1-%d)", ErrBadSnapshot, len(n.Key), MaxSnapshotKeyLen)
	case n.Height == 0 && (len(n.Value) == 0 || len(n.Value) > MaxSnapshotValueLen):
		return fmt.Errorf("%w: value of %d bytes (want 1-%d)", ErrBadSnapshot, len(n.Value), MaxSnapshotValueLen)
	case n.Version < 1:
		return fmt.Errorf("%w: node version %d", ErrBadSnapshot, n.Version)
	}
	return nil
}

// DecodeChunk decodes the export nodes of one chunk from a peer, none of
// them of a version above maxVersion. It fails with ErrBadSnapshot (and no
// nodes) for an empty chunk, one over MaxChunkSize, a truncated node,
// trailing bytes, or a node outside the format's bounds. The nodes alias
// b.
func DecodeChunk(b []byte, maxVersion int64) ([]*iavl.ExportNode, error) {
	var nodes []*iavl.ExportNode
	err := eachNode(b, maxVersion, func(n *iavl.ExportNode) error {
		nodes = append(nodes, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return nodes, nil
}

// eachNode decodes the nodes of chunk b one at a time, as DecodeChunk
// does, and hands each to add before it decodes the next: the first node
// that does not decode, or that add refuses, ends the walk with its
// error. The nodes alias b.
func eachNode(b []byte, maxVersion int64, add func(*iavl.ExportNode) error) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty chunk", ErrBadSnapshot)
	}
	if len(b) > MaxChunkSize {
		return fmt.Errorf("%w: chunk of %d bytes (at most %d)", ErrBadSnapshot, len(b), MaxChunkSize)
	}
	if maxVersion < 1 {
		return fmt.Errorf("%w: snapshot version %d", ErrBadSnapshot, maxVersion)
	}
	for off := 0; off < len(b); {
		n, k, err := decodeNode(b[off:], maxVersion)
		if err != nil {
			return fmt.Errorf("node at byte %d: %w", off, err)
		}
		if err := add(n); err != nil {
			return err
		}
		off += k
	}
	return nil
}

// decodeNode decodes one node at the start of b and returns its length.
func decodeNode(b []byte, maxVersion int64) (*iavl.ExportNode, int, error) {
	if b[0] > maxNodeHeight {
		return nil, 0, fmt.Errorf("%w: node height %d", ErrBadSnapshot, b[0])
	}
	n := &iavl.ExportNode{Height: int8(b[0])}
	off := 1
	version, err := readUvarint(b, &off, uint64(maxVersion))
	if err != nil {
		return nil, 0, fmt.Errorf("version: %w", err)
	}
	n.Version = int64(version)
	if n.Key, err = readBytes(b, &off, MaxSnapshotKeyLen); err != nil {
		return nil, 0, fmt.Errorf("key: %w", err)
	}
	if n.Height == 0 {
		if n.Value, err = readBytes(b, &off, MaxSnapshotValueLen); err != nil {
			return nil, 0, fmt.Errorf("value: %w", err)
		}
	}
	if err := checkExportNode(n); err != nil {
		return nil, 0, err
	}
	return n, off, nil
}

// readUvarint reads a minimally encoded uvarint of at most max at b[*off:].
func readUvarint(b []byte, off *int, max uint64) (uint64, error) {
	v, k := binary.Uvarint(b[*off:])
	if k <= 0 {
		return 0, fmt.Errorf("%w: truncated or overlong varint", ErrBadSnapshot)
	}
	if len(binary.AppendUvarint(nil, v)) != k {
		return 0, fmt.Errorf("%w: varint not minimally encoded", ErrBadSnapshot)
	}
	if v > max {
		return 0, fmt.Errorf("%w: %d is above %d", ErrBadSnapshot, v, max)
	}
	*off += k
	return v, nil
}

// readBytes reads a length-prefixed byte string of at most max bytes.
func readBytes(b []byte, off *int, max int) ([]byte, error) {
	n, err := readUvarint(b, off, uint64(max))
	if err != nil {
		return nil, err
	}
	if uint64(len(b)-*off) < n {
		return nil, fmt.Errorf("%w: %d bytes announced, %d left", ErrBadSnapshot, n, len(b)-*off)
	}
	out := b[*off : *off+int(n)]
	*off += int(n)
	return out, nil
}
