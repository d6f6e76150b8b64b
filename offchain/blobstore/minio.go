package blobstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIOConfig locates a bucket on a MinIO (or other S3-compatible) server.
type MinIOConfig struct {
	// Endpoint is "host:port", or a URL "http://host:port" /
	// "https://host:port" (the scheme then decides Secure).
	Endpoint string
	// Bucket is created if it does not exist.
	Bucket    string
	AccessKey string
	SecretKey string
	// Secure uses TLS (for a bare host:port endpoint).
	Secure bool
	// Region of the bucket; empty lets the server decide.
	Region string
	// Prefix is prepended to every object name (e.g. "node0/"), so several
	// stores can share a bucket.
	Prefix string
}

// MinIO is the Store on an S3-compatible server: objects PREFIX/blobs/<owner hex>/<sum hex>
// in one bucket, temporary uploads in PREFIX/tmp/.
type MinIO struct {
	c      *minio.Client
	bucket string
	prefix string
	// suspended: the bucket's versioning is suspended, so a removal
	// deletes the object's null version instead of leaving a delete
	// marker behind (remove).
	suspended bool
}

var _ Store = (*MinIO)(nil)

// maxCopySize is the largest object a single server-side CopyObject may
// copy (S3's limit); larger ones are copied with ComposeObject (multipart).
const maxCopySize = 5 << 30

// Multipart limits of S3: a part (but the last) has at least
// minioMinPartSize bytes, and an upload at most minioMaxParts parts.
const (
	minioMinPartSize = 5 << 20
	minioMaxParts    = 10_000
)

// minioPartSize is the part size of a MinIO Put of size bytes, which is
// also the buffer minio-go allocates for it, before the first byte of the
// body arrives: S3's minimum of 5 MiB for blobs up to 10,000 of those
// (48.8 GiB), else the smallest whole MiB that fits the blob in 10,000
// parts. A blob of at most one part is uploaded in a single streaming PUT,
// with no buffer of its size.
func minioPartSize(size int64) uint64 {
	const mib = 1 << 20
	part := (size + minioMaxParts - 1) / minioMaxParts
	part = (part + mib - 1) / mib * mib
	return uint64(max(part, minioMinPartSize))
}

// CheckMinIOEndpoint refuses an endpoint (MinIOConfig.Endpoint) that
// OpenMinIO would refuse, without connecting: for a config's checks, made
// before anything starts.
func CheckMinIOEndpoint(endpoint string) error {
	_, _, err := minioEndpoint(endpoint, false)
	return err
}

// minioEndpoint is the host:port minio-go dials for endpoint, and whether
// it uses TLS: a URL's scheme decides, secure does for a bare host:port.
func minioEndpoint(endpoint string, secure bool) (string, bool, error) {
	hostport := endpoint
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return "", false, fmt.Errorf("blobstore: minio endpoint %q: %w", endpoint, err)
		}
		switch u.Scheme {
		case "http":
			secure = false
		case "https":
			secure = true
		default:
			return "", false, fmt.Errorf("blobstore: minio endpoint %q: scheme must be http or https", endpoint)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", false, fmt.Errorf("blobstore: minio endpoint %q must be a server's address, without a path, query or user", endpoint)
		}
		hostport = u.Host
	}
	if hostport == "" {
		return "", false, errors.New("blobstore: minio endpoint is empty")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil && !strings.Contains(hostport, ":") {
		host, port, err = hostport, "", nil // a host alone: the scheme's port
	}
	if err == nil && port != "" {
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || n == 0 {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err == nil && (host == "" || strings.ContainsAny(host, "/?#@ \t")) {
		err = errors.New("bad host")
	}
	if err != nil {
		return "", false, fmt.Errorf("blobstore: minio endpoint %q: want host:port (or http:// or https:// and host:port): %w", endpoint, err)
	}
	return hostport, secure, nil
}

// OpenMinIO connects to the server and creates the bucket if it is missing.
func OpenMinIO(ctx context.Context, cfg MinIOConfig) (*MinIO, error) {
	endpoint, secure, err := minioEndpoint(cfg.Endpoint, cfg.Secure)
	if err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		return nil, errors.New("blobstore: minio bucket is empty")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("blobstore: minio credentials are missing (access key and secret key)")
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("blobstore: minio client: %w", err)
	}
	s := &MinIO{c: c, bucket: cfg.Bucket, prefix: cfg.Prefix}
	var exists bool
	// A server that is still starting answers "not initialized": wait for
	// it a little (bounded), as a sidecar started beside MinIO must.
	for attempt := 0; ; attempt++ {
		exists, err = c.BucketExists(ctx, cfg.Bucket)
		if err == nil || errorCode(err) != "XMinioServerNotInitialized" || attempt >= 40 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("blobstore: minio %s: %w", endpoint, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: minio %s: bucket %q: %w", endpoint, cfg.Bucket, err)
	}
	if !exists {
		err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if err != nil {
			if code := errorCode(err); code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
				return nil, fmt.Errorf("blobstore: minio %s: create bucket %q: %w", endpoint, cfg.Bucket, err)
			}
		}
	}
	if s.suspended, err = checkUnversioned(ctx, c, cfg.Bucket); err != nil {
		return nil, fmt.Errorf("blobstore: minio %s: %w", endpoint, err)
	}
	return s, nil
}

// remove deletes object name. In a bucket whose versioning is suspended a
// plain removal leaves a delete marker for every blob and temporary
// upload ever removed; there the object's null version (the only one an
// object written since the suspension has) is deleted, which leaves
// nothing. Should an older version then be the object (one written while
// versioning was enabled), a plain removal hides it as before.
func (s *MinIO) remove(ctx context.Context, name string) error {
	if err := s.removeNew(ctx, name); err != nil || !s.suspended {
		return err
	}
	_, err := s.c.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	switch {
	case err == nil:
		return s.c.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
	case isNoSuchKey(err):
		return nil
	default:
		return err
	}
}

// removeNew deletes object name, written since this store opened (a
// Put's temporary upload, under a random name): in a suspended bucket its
// null version is all it has, so no older version needs looking for.
func (s *MinIO) removeNew(ctx context.Context, name string) error {
	opts := minio.RemoveObjectOptions{}
	if s.suspended {
		opts.VersionID = "null"
	}
	return s.c.RemoveObject(ctx, s.bucket, name, opts)
}

// checkUnversioned refuses a bucket with versioning enabled. There every
// Delete (a patient's erasure, the sweep of an upload no record names)
// only hides the ciphertext behind a delete marker, and every Put and
// touch keeps another copy, readable by anyone with the bucket's
// credentials and never removed by emrchain. A suspended bucket is
// accepted: new objects get no versions there (versions kept from before
// the suspension stay, and are the operator's to remove). A server that
// does not implement the versioning API has none. It reports whether
// versioning is suspended.
func checkUnversioned(ctx context.Context, c *minio.Client, bucket string) (suspended bool, err error) {
	vc, err := c.GetBucketVersioning(ctx, bucket)
	switch code := errorCode(err); {
	case err == nil:
	case code == "NotImplemented" || code == "XMinioNotImplemented":
		return false, nil
	case code == "AccessDenied":
		return false, fmt.Errorf("bucket %q: reading its versioning needs s3:GetBucketVersioning for these credentials: %w", bucket, err)
	default:
		return false, fmt.Errorf("bucket %q versioning: %w", bucket, err)
	}
	if vc.Enabled() {
		return false, fmt.Errorf("bucket %q: %w: deleted blobs would stay readable as old versions; "+
			"use a bucket without versioning, or suspend it (mc version suspend)", bucket, ErrBucketVersioned)
	}
	return vc.Suspended(), nil
}

// Name implements Store.
func (s *MinIO) Name() string { return "minio" }

func (s *MinIO) name(key Key) string { return s.prefix + "blobs/" + key.String() }

func (s *MinIO) tmpPrefix() string { return s.prefix + "tmp/" }

func errorCode(err error) string {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.Code
	}
	return ""
}

func isNoSuchKey(err error) bool {
	code := errorCode(err)
	return code == "NoSuchKey" || code == "NotFound"
}

// Put implements Store: upload to a temporary object while hashing, then
// server-side copy to the final name only if the hash matches.
func (s *MinIO) Put(ctx context.Context, key Key, r io.Reader, size int64) (err error) {
	if err := validPut(size); err != nil {
		return err
	}
	final := s.name(key)
	// A stored copy of another size is damaged (the hash fixes the size):
	// the upload below replaces it.
	if info, err := s.Stat(ctx, key); err == nil && info.Size == size {
		if err := drainVerify(ctx, r, key.Sum, size); err != nil {
			return err
		}
		return s.touch(ctx, final, info.Size)
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}

	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := s.tmpPrefix() + key.Sum.String() + "." + hex.EncodeToString(rnd[:])
	v := newVerifier(ctx, r, size)
	_, perr := s.c.PutObject(ctx, s.bucket, tmp, v, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    minioPartSize(size),
	})
	defer func() {
		// The temporary object goes in every case, even if ctx ended.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = s.removeNew(rctx, tmp)
	}()
	if perr != nil {
		if v.short || errors.Is(perr, ErrSizeMismatch) {
			return fmt.Errorf("%w: body ended after %d of %d bytes", ErrSizeMismatch, v.n, size)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("blobstore: minio upload of %s: %w", key, perr)
	}
	if err := v.finish(key.Sum); err != nil {
		return err
	}
	if err := s.copy(ctx, tmp, final, size, false); err != nil {
		return fmt.Errorf("blobstore: minio commit of %s: %w", key, err)
	}
	return nil
}

// copy copies src to dst server-side; with replace the metadata is
// replaced (which S3 requires to copy an object onto itself).
func (s *MinIO) copy(ctx context.Context, src, dst string, size int64, replace bool) error {
	dstOpts := minio.CopyDestOptions{Bucket: s.bucket, Object: dst}
	if replace {
		dstOpts.ReplaceMetadata = true
		dstOpts.UserMetadata = map[string]string{"Emr-Touched": time.Now().UTC().Format(time.RFC3339Nano)}
	}
	srcOpts := minio.CopySrcOptions{Bucket: s.bucket, Object: src}
	var err error
	if size > maxCopySize {
		_, err = s.c.ComposeObject(ctx, dstOpts, srcOpts)
	} else {
		_, err = s.c.CopyObject(ctx, dstOpts, srcOpts)
	}
	return err
}

// touch refreshes an object's modification time by copying it onto itself.
func (s *MinIO) touch(ctx context.Context, key string, size int64) error {
	if err := s.copy(ctx, key, key, size, true); err != nil {
		if isNoSuchKey(err) {
			return fmt.Errorf("blobstore: %s was deleted while it was being re-put: %w", key, ErrNotFound)
		}
		return fmt.Errorf("blobstore: minio touch %s: %w", key, err)
	}
	return nil
}

// Get implements Store.
func (s *MinIO) Get(ctx context.Context, key Key, offset, length int64) (io.ReadCloser, int64, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	n, err := checkRange(offset, length, info.Size)
	if err != nil {
		return nil, 0, err
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), info.Size, nil
	}
	var opts minio.GetObjectOptions
	if offset != 0 || n != info.Size {
		if err := opts.SetRange(offset, offset+n-1); err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrInvalidRange, err)
		}
	}
	obj, err := s.c.GetObject(ctx, s.bucket, s.name(key), opts)
	if err != nil {
		if isNoSuchKey(err) {
			return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		return nil, 0, fmt.Errorf("blobstore: minio get %s: %w", key, err)
	}
	// Never hand out more than n bytes, whatever the server sends.
	return &limitedCloser{Reader: io.LimitReader(&objectReader{obj: obj, key: key}, n), c: obj}, info.Size, nil
}

// objectReader reads an object whose request minio-go makes at the first
// Read: an object deleted since the Stat (by a sweep) then fails with
// NoSuchKey, which is ErrNotFound, as for the fs store's Get.
type objectReader struct {
	obj *minio.Object
	key Key
}

func (r *objectReader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF && isNoSuchKey(err) {
		err = fmt.Errorf("%w: %s (deleted before it was read)", ErrNotFound, r.key)
	}
	return n, err
}

type limitedCloser struct {
	io.Reader
	c io.Closer
}

func (l *limitedCloser) Close() error { return l.c.Close() }

// Stat implements Store.
func (s *MinIO) Stat(ctx context.Context, key Key) (Info, error) {
	oi, err := s.c.StatObject(ctx, s.bucket, s.name(key), minio.StatObjectOptions{})
	if err != nil {
		if isNoSuchKey(err) {
			return Info{}, fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		return Info{}, fmt.Errorf("blobstore: minio stat %s: %w", key, err)
	}
	return Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Delete implements Store.
func (s *MinIO) Delete(ctx context.Context, key Key) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	if err := s.remove(ctx, s.name(key)); err != nil {
		return fmt.Errorf("blobstore: minio delete %s: %w", key, err)
	}
	return nil
}

// List implements Store. Objects are listed page by page (S3 returns keys
// in ascending order), so memory does not grow with the bucket.
func (s *MinIO) List(ctx context.Context, fn func(Info) bool) error {
	return s.list(ctx, "", fn)
}

// ListAfter implements Store: S3 starts the listing after the key's name
// (fixed-length hex, so the names' order is the keys').
func (s *MinIO) ListAfter(ctx context.Context, after Key, fn func(Info) bool) error {
	return s.list(ctx, s.prefix+"blobs/"+after.String(), fn)
}

// list lists the blobs whose object names are above startAfter.
func (s *MinIO) list(ctx context.Context, startAfter string, fn func(Info) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn stops early
	prefix := s.prefix + "blobs/"
	for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, StartAfter: startAfter}) {
		if oi.Err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("blobstore: minio list: %w", oi.Err)
		}
		key, err := ParseKey(strings.TrimPrefix(oi.Key, prefix))
		if err != nil {
			continue // not a blob of this layout
		}
		if !fn(Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}) {
			return nil
		}
	}
	return ctx.Err()
}

// CleanTemp implements Store.
func (s *MinIO) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.tmpPrefix(), Recursive: true}) {
		if oi.Err != nil {
			return removed, fmt.Errorf("blobstore: minio list: %w", oi.Err)
		}
		if !oi.LastModified.Before(cutoff) {
			continue
		}
		if err := s.remove(ctx, oi.Key); err == nil {
			removed++
		}
	}
	return removed, ctx.Err()
}

// Ping implements Store: the bucket exists and is reachable.
func (s *MinIO) Ping(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blobstore: minio: %w", err)
	}
	if !ok {
		return fmt.Errorf("blobstore: minio bucket %q is gone", s.bucket)
	}
	return nil
}
