package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BinaryEnv names a prebuilt emrchaind to use instead of building one.
const BinaryEnv = "EMRCHAIND_BIN"

// buildTimeout bounds the build of emrchaind (a cold build on a busy
// machine takes a few minutes; a cached one seconds).
const buildTimeout = 8 * time.Minute

var builder struct {
	once sync.Once
	dir  string // temporary directory of a built binary
	path string
	err  error
}

// Binary returns the emrchaind to run: $EMRCHAIND_BIN if set, else one built
// from this module, once per test binary.
func Binary(t testing.TB) string {
	t.Helper()
	builder.once.Do(func() {
		if p := os.Getenv(BinaryEnv); p != "" {
			builder.path, builder.err = filepath.Abs(p)
			return
		}
		dir, err := os.MkdirTemp("", "emrchaind-testnet-bin")
		if err != nil {
			builder.err = err
			return
		}
		builder.dir = dir
		builder.path = filepath.Join(dir, "emrchaind")
		cmd := exec.Command("go", "build", "-o", builder.path, "github.com/emrchain/emrchain/cmd/emrchaind")
		done := make(chan struct{})
		timer := time.AfterFunc(buildTimeout, func() {
			select {
			case <-done:
			default:
				if cmd.Process != nil {
					_ = cmd.Process.Kill()
				}
			}
		})
		out, err := cmd.CombinedOutput()
		close(done)
		timer.Stop()
		if err != nil {
			builder.err = fmt.Errorf("go build emrchaind: %v\n%s", err, out)
		}
	})
	if builder.err != nil {
		t.Fatal(builder.err)
	}
	return builder.path
}

// Main runs the tests of m and removes the binary Binary built. Use it from
// TestMain: os.Exit(testnet.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if builder.dir != "" {
		os.RemoveAll(builder.dir)
	}
	return code
}
