package miniotest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/emrchain/emrchain/internal/freeport"
)

// EnvBinary names the environment variable that points at the minio binary.
const EnvBinary = "EMRCHAIN_MINIO_BIN"

// Credentials of the test server's root user.
const (
	AccessKey = "emrchain-test"
	SecretKey = "emrchain-test-secret"
)

// Server is a running MinIO server.
type Server struct {
	// Endpoint is "127.0.0.1:PORT".
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string
}

// Binary returns the minio binary: $EMRCHAIN_MINIO_BIN, else bin/minio at
// the root of the module (the directory holding go.mod).
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 32; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "minio")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%s: %w", p, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("module root (go.mod) not found")
}

// Start runs a MinIO server for the test, or skips the test when the
// binary is not installed. The server stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("MinIO server binary not available (%v); `make test` installs it into ./bin, or set %s", err, EnvBinary)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("start minio: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Server, error) {
	dir := t.TempDir()
	port, err := freeport.Block(2) // the API, then the console
	if err != nil {
		return nil, err
	}
	consolePort := port + 1
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "minio.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	endpoint := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "server", dataDir,
		"--address", endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort),
		"--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey,
		"MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
		"HOME="+dir, // minio keeps ~/.minio state; keep it in the temp dir
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	stop := func() {
		select {
		case <-done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// /minio/health/live answers before the object layer, bucket metadata
	// and IAM are up; /minio/health/cluster only once requests can succeed.
	url := "http://" + endpoint + "/minio/health/cluster"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &Server{Endpoint: endpoint, AccessKey: AccessKey, SecretKey: SecretKey, Dir: dataDir}, nil
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("minio exited during start-up:\n%s", tail(b))
		case <-ctx.Done():
			stop()
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("minio not ready at %s within 60s:\n%s", url, tail(b))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}
