package clienttest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/emrchain/emrchain/internal/freeport"
	"github.com/emrchain/emrchain/offchain/blobstore/miniotest"
)

// MinIO is a MinIO server a test can stop and start again on the same
// address and data directory (miniotest.Start's servers run until the test
// ends): for storage-outage tests.
type MinIO struct {
	// Endpoint is "127.0.0.1:PORT".
	Endpoint  string
	AccessKey string
	SecretKey string
	// Dir is the data directory, kept across restarts.
	Dir string

	bin, home, logPath string
	consolePort        int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartMinIO runs a MinIO server for the test (binary as miniotest.Binary:
// $EMRCHAIN_MINIO_BIN or ./bin/minio at the module root), or skips the test
// when none is installed. It is stopped when the test ends.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin, err := miniotest.Binary()
	if err != nil {
		t.Skipf("MinIO server binary not available (%v); `make test` installs it into ./bin, or set %s", err, miniotest.EnvBinary)
	}
	home := t.TempDir()
	m := &MinIO{
		Endpoint: fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)), AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey,
		Dir: filepath.Join(home, "data"), bin: bin, home: home, logPath: filepath.Join(home, "minio.log"), consolePort: freeport.Get(t),
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	m.Start(t)
	return m
}

// Start (re)starts the server and waits until it serves requests.
func (m *MinIO) Start(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		select {
		case <-m.done:
		default:
			return // running
		}
	}
	logFile, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(m.bin, "server", m.Dir, "--address", m.Endpoint,
		"--console-address", "127.0.0.1:"+strconv.Itoa(m.consolePort), "--quiet")
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1", "HOME="+m.home)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	m.cmd, m.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := "http://" + m.Endpoint + "/minio/health/cluster"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(m.logPath)
			t.Fatalf("minio exited during start-up:\n%s", lastLines(string(b), 30))
		case <-ctx.Done():
			b, _ := os.ReadFile(m.logPath)
			t.Fatalf("minio not ready at %s within 60s:\n%s", url, lastLines(string(b), 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10s) and waits for it.
func (m *MinIO) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// Client is a minio-go client of the server (for tests that reach into
// storage directly, e.g. to tamper with an object).
func (m *MinIO) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ConfigureSidecar returns a NodeOptions.Configure that points the node's
// in-process sidecar at this server (backend minio, bucket, credentials in
// app.toml: test servers only) and sets its access window.
func (m *MinIO) ConfigureSidecar(bucket string, accessWindow time.Duration) func(home string) error {
	return func(home string) error {
		return SetConfig(filepath.Join(home, "config", "app.toml"), "sidecar", map[string]string{
			"backend": `"minio"`, "minio_endpoint": strconv.Quote(m.Endpoint), "minio_bucket": strconv.Quote(bucket),
			"minio_access_key": strconv.Quote(m.AccessKey), "minio_secret_key": strconv.Quote(m.SecretKey),
			"access_window": strconv.Quote(accessWindow.String()),
		})
	}
}
