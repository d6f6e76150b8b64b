// Package blobstore stores ciphertext blobs under their owner and SHA-256.
//
// A Store is content-addressed within a namespace per owner: the key of a
// blob is its owner (32 bytes; the sidecar uses the patient the blob was
// uploaded for) and the SHA-256 of its bytes, and Put verifies the hash while
// it streams. The same bytes put for two owners are two blobs. A body that does not hash to the
// claimed sum (or is not exactly the declared size) is refused with
// ErrHashMismatch (or ErrSizeMismatch) and nothing is stored: Put writes to a
// temporary object first and commits it under its final name only after the
// last byte has been hashed and compared. Putting a blob that is already
// stored is idempotent: the body is still hashed (and refused if it does not
// match), nothing is rewritten, and the blob's modification time is refreshed
// so that a garbage collector with a grace period keeps it.
//
// Two backends implement Store:
//
//   - FS, an embedded store in a local directory. Blobs live in sharded
//     directories (DIR/blobs/<owner, first 2 hex>/<owner hex>/<sum hex>); a
//     Put writes DIR/tmp/put-*, fsyncs it, renames it into place and fsyncs
//     the directory (and, the first time a process puts for an owner, the
//     two above it, even if they exist), so a crash at any moment leaves
//     either the whole blob or none of it (plus, at worst, a temporary file
//     that CleanTemp removes).
//   - MinIO, any S3-compatible server through minio-go/v7. Blobs are objects
//     PREFIX/blobs/<owner hex>/<sum hex> in one bucket (created if missing);
//     a Put uploads PREFIX/tmp/<random> with a known size (streaming,
//     multipart above 5 MiB; minio-go allocates one part:
//     5 MiB up to 48.8 GiB blobs, before the body's first byte arrives, so
//     each Put in flight holds that much memory, whatever its pace), then
//     copies it server-side to its final name and deletes the temporary
//     object. A bucket with versioning enabled is refused at open
//     (ErrBucketVersioned): there a deleted blob would stay readable as an
//     old version. In a bucket whose versioning is suspended, removals
//     delete the object's null version, so neither erased blobs nor
//     temporary uploads leave delete markers behind (an object written
//     while versioning was on is hidden by one, as S3 does). A Put that dies during a multipart upload leaves its
//     parts as an unfinished upload, which CleanTemp does not see: MinIO
//     aborts those itself (api stale_uploads_expiry, 24 h by default) and
//     lists them only object by object, so a prefix listing here would
//     find none of them; on other S3 servers give the bucket a lifecycle
//     rule that aborts incomplete multipart uploads.
//
// Reads stream: Get returns a reader over [offset, offset+length) of the
// blob, never a buffer of the whole of it.
//
// The store knows nothing about who may read or write a blob: that is the
// sidecar's job (package offchain/sidecar), decided against the chain.
package blobstore
