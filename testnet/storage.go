package testnet

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore/miniotest"
)

// storageStartWait bounds MinIO's start-up (it answers its cluster health
// check only once requests can succeed).
const storageStartWait = 60 * time.Second

// storage is the MinIO server the sidecars of a net share (Options.Blob
// "minio").
type storage struct {
	mu      sync.Mutex
	bin     string
	addr    string // 127.0.0.1:port
	console string
	dir     string
	proc    *process
	runs    int
}

// prepareStorage finds the MinIO binary and places the server on port (and
// its console on port+1). An error means the binary is not installed.
func (n *Net) prepareStorage(port int) error {
	bin, err := miniotest.Binary()
	if err != nil {
		return fmt.Errorf("MinIO server binary not available (%v); `make minio` installs it into ./bin, or set %s", err, miniotest.EnvBinary)
	}
	n.storage.bin = bin
	n.storage.addr = fmt.Sprintf("127.0.0.1:%d", port)
	n.storage.console = fmt.Sprintf("127.0.0.1:%d", port+1)
	n.storage.dir = filepath.Join(filepath.Dir(n.Dir), "minio")
	return os.MkdirAll(filepath.Join(n.storage.dir, "data"), 0o700)
}

// nodeEnv is the environment of the node processes: the MinIO credentials
// when the sidecars use MinIO.
func (n *Net) nodeEnv() []string {
	if n.storage.bin == "" {
		return nil
	}
	return []string{"MINIO_ACCESS_KEY=" + miniotest.AccessKey, "MINIO_SECRET_KEY=" + miniotest.SecretKey}
}

// StorageAddr is the MinIO server's host:port ("" without Blob "minio").
func (n *Net) StorageAddr() string { return n.storage.addr }

// StartStorage starts (or restarts, on the same address and data) the
// MinIO server and waits until it serves requests.
func (n *Net) StartStorage() {
	n.t.Helper()
	s := &n.storage
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bin == "" {
		n.t.Fatal("the net has no MinIO server (Options.Blob is not \"minio\")")
	}
	if s.proc != nil && !s.proc.exited() {
		n.t.Fatal("MinIO is already running")
	}
	s.runs++
	p, err := spawn(s.bin,
		[]string{"server", filepath.Join(s.dir, "data"), "--address", s.addr, "--console-address", s.console, "--quiet"},
		[]string{
			"MINIO_ROOT_USER=" + miniotest.AccessKey, "MINIO_ROOT_PASSWORD=" + miniotest.SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1", "HOME=" + s.dir,
		},
		filepath.Join(n.LogDir, fmt.Sprintf("minio.run%d.log", s.runs)))
	if err != nil {
		n.t.Fatalf("start minio: %v", err)
	}
	s.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), storageStartWait)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/minio/health/cluster", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			n.t.Fatalf("minio exited during start-up:\n%s", tail(p.log, logTailBytes))
		case <-ctx.Done():
			n.t.Fatalf("minio not ready within %v:\n%s", storageStartWait, tail(p.log, logTailBytes))
		case <-time.After(pollInterval):
		}
	}
}

// KillStorage kills the MinIO server (SIGKILL) and waits for it to exit.
func (n *Net) KillStorage() {
	n.t.Helper()
	n.storage.mu.Lock()
	p := n.storage.proc
	n.storage.mu.Unlock()
	if err := p.signal("minio", syscall.SIGKILL, killWait); err != nil {
		n.t.Fatal(err)
	}
}

// SidecarURL is node i's blob sidecar (http://host:port), a validator's or
// one added with AddNode (at the port InitHomeWith gave it).
func (n *Net) SidecarURL(i int) string { return n.nodes[i].sidecar }
