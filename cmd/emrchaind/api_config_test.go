package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/freeport"
)

// TestGRPCCodes: every result code app/errors.go registers has a gRPC code,
// and errors keep their text.
func TestGRPCCodes(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "app", "errors.go"))
	if err != nil {
		t.Fatal(err)
	}
	registered := regexp.MustCompile(`register\((\d+),`).FindAllSubmatch(src, -1)
	if len(registered) < 25 {
		t.Fatalf("found only %d registered codes in app/errors.go", len(registered))
	}
	for _, m := range registered {
		code, _ := strconv.ParseUint(string(m[1]), 10, 32)
		if _, ok := grpcCodes[uint32(code)]; !ok {
			t.Errorf("result code %d has no gRPC code in grpcCodes", code)
		}
	}
	if len(grpcCodes) != len(registered) {
		t.Errorf("grpcCodes has %d entries, app/errors.go registers %d codes", len(grpcCodes), len(registered))
	}
	for _, c := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("%w: no patient abcd", app.ErrNotFound), codes.NotFound},
		{fmt.Errorf("%w: page size 9999 is above the maximum 100", app.ErrInvalidQuery), codes.InvalidArgument},
		{app.ErrUnauthorized, codes.PermissionDenied},
		{app.ErrAlreadyExists, codes.AlreadyExists},
		{fmt.Errorf("disk on fire"), codes.Internal},
		{grpcstatus.Error(codes.Unavailable, "as is"), codes.Unavailable},
	} {
		got := grpcstatus.Convert(grpcError(c.err))
		if got.Code() != c.code || got.Message() != grpcstatus.Convert(c.err).Message() {
			t.Errorf("grpcError(%v) = %v %q, want %v with the error's text", c.err, got.Code(), got.Message(), c.code)
		}
	}
	if grpcError(nil) != nil || grpcCodeOf(0) != codes.OK || grpcCodeOf(9999) != codes.Internal {
		t.Error("grpcError(nil), grpcCodeOf(0) or grpcCodeOf(unknown) is wrong")
	}
}

// TestAppConfigServers: the [grpc] and [api] sections round-trip through
// app.toml and bad values are refused.
func TestAppConfigServers(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	def := defaultAppConfig()
	if def.GRPC.Address != "127.0.0.1:9090" || def.API.Address != "127.0.0.1:1317" || !def.GRPC.Enable || !def.API.Enable ||
		def.GRPC.BroadcastTimeout != 30*time.Second || len(def.API.CORSAllowedOrigins) != 0 {
		t.Fatalf("defaults: [grpc] %+v [api] %+v", def.GRPC, def.API)
	}
	c := def
	c.GRPC = grpcConfig{Enable: false, Address: "0.0.0.0:19090", BroadcastTimeout: 5 * time.Second}
	c.API = apiConfig{Enable: true, Address: "[::1]:11317", CORSAllowedOrigins: []string{"https://app.example.org", "*"}}
	c.App.AllowedHosts = []string{"localhost", "node0.hospital.example"}
	if err := writeAppConfig(home, c); err != nil {
		t.Fatal(err)
	}
	if got, err := loadAppConfig(home); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("app.toml = %+v, %v; want %+v", got, err, c)
	}

	write := func(body string) error {
		if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := loadAppConfig(home)
		return err
	}
	for name, body := range map[string]string{
		"no port":            "[grpc]\naddress = \"127.0.0.1\"\n",
		"port out of range":  "[api]\naddress = \"127.0.0.1:99999\"\n",
		"port zero":          "[api]\naddress = \"127.0.0.1:0\"\n",
		"url, not host:port": "[grpc]\naddress = \"tcp://127.0.0.1:9090\"\n",
		"empty and enabled":  "[api]\naddress = \"\"\n",
		"zero timeout":       "[grpc]\nbroadcast_timeout = \"0s\"\n",
		"bad duration":       "[grpc]\nbroadcast_timeout = \"soon\"\n",
		"bad origin":         "[api]\ncors_allowed_origins = [\"a b\"]\n",
		"host with port":     "[app]\nallowed_hosts = [\"node0:1317\"]\n",
		"unknown key":        "[api]\nport = 1317\n",
	} {
		if err := write(body); err == nil {
			t.Errorf("%s: loadAppConfig accepted %q", name, body)
		}
	}
	if err := write("[grpc]\nenable = false\naddress = \"\"\n[api]\nenable = false\n"); err != nil {
		t.Errorf("disabled servers without addresses: %v", err)
	}

	// An unknown section is an error too: one parser reads all of app.toml.
	if err := write("[testsection]\nanything = 1\n"); err == nil {
		t.Error("loadAppConfig accepted an unknown section")
	}
}

// TestInitServerAddresses: init writes --grpc.address and --api.address
// into app.toml and refuses bad ones.
func TestInitServerAddresses(t *testing.T) {
	home := t.TempDir()
	out, err := run(t, "init", "--home", home, "--chain-id", "emr-addr", "--grpc.address", "127.0.0.1:19190", "--api.address", "127.0.0.1:11417", "--sidecar.listen", "127.0.0.1:17070")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	c, err := loadAppConfig(home)
	if err != nil || c.GRPC.Address != "127.0.0.1:19190" || c.API.Address != "127.0.0.1:11417" || !c.GRPC.Enable || !c.API.Enable {
		t.Fatalf("app.toml [grpc] %+v [api] %+v, %v", c.GRPC, c.API, err)
	}
	if c.Sidecar.Listen != "127.0.0.1:17070" || !c.Sidecar.Enable {
		t.Fatalf("app.toml [sidecar] %+v", c.Sidecar)
	}
	if _, err := run(t, "init", "--home", t.TempDir(), "--chain-id", "emr-addr", "--grpc.address", "localhost"); err == nil {
		t.Fatal("init accepted --grpc.address without a port")
	}
}

// TestHealthHeadAgeConfig: [grpc] max_head_age is written with init's
// bound (a minute, or room for two empty-block intervals), follows
// [sidecar] max_head_age when app.toml leaves it out, is never negative,
// and start refuses a bound an idle chain's head would pass, naming it.
func TestHealthHeadAgeConfig(t *testing.T) {
	if def := defaultAppConfig(); def.GRPC.MaxHeadAge != time.Minute || time.Duration(def.Sidecar.MaxHeadAge) != time.Minute {
		t.Fatalf("default max_head_age: [grpc] %s [sidecar] %s, want 1m", def.GRPC.MaxHeadAge, time.Duration(def.Sidecar.MaxHeadAge))
	}
	home := t.TempDir()
	// Loopback addresses: should start not refuse, the node it runs
	// listens on 127.0.0.1 only.
	args := append([]string{"init", "--home", home, "--chain-id", "emr-age", "--empty-blocks-interval", "1h"}, loopbackFlags(t, freeport.Get(t))...)
	if out, err := run(t, args...); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(home, "config", appConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	// app.toml may hold minio_secret_key: its owner's alone.
	if info, err := os.Stat(filepath.Join(home, "config", appConfigFile)); err != nil {
		t.Fatal(err)
	} else if info.Mode().Perm() != 0o600 {
		t.Fatalf("app.toml has mode %v; want 0600", info.Mode().Perm())
	}
	_, grpcTable, _ := strings.Cut(string(raw), "\n[grpc]\n")
	grpcTable, _, _ = strings.Cut(grpcTable, "\n[")
	if !strings.Contains(grpcTable, "\nmax_head_age = \"2h0m10s\"\n") {
		t.Fatalf("init --empty-blocks-interval 1h wrote\n%s\nwant [grpc] max_head_age = \"2h0m10s\"", raw)
	}

	write := func(body string) (appConfig, error) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return loadAppConfig(home)
	}
	for _, tc := range []struct {
		body string
		want time.Duration
	}{
		{"", time.Minute},
		{"[sidecar]\nmax_head_age = \"10m10s\"\n", 10*time.Minute + 10*time.Second},
		{"[sidecar]\nmax_head_age = \"0s\"\n", 0},
		{"[grpc]\nmax_head_age = \"30s\"\n[sidecar]\nmax_head_age = \"10m\"\n", 30 * time.Second},
		{"[grpc]\nmax_head_age = \"0s\"\n", 0},
	} {
		if c, err := write(tc.body); err != nil || c.GRPC.MaxHeadAge != tc.want {
			t.Errorf("%q: [grpc] max_head_age %s, %v; want %s", tc.body, c.GRPC.MaxHeadAge, err, tc.want)
		}
	}
	if _, err := write("[grpc]\nmax_head_age = \"-1s\"\n"); err == nil || !strings.Contains(err.Error(), "grpc.max_head_age") {
		t.Errorf("negative max_head_age: %v", err)
	}

	for _, tc := range []struct {
		name     string
		empty    bool
		interval time.Duration
		maxAge   time.Duration
		want     string
	}{
		{"the defaults", true, 10 * time.Second, time.Minute, ""},
		{"continuous empty blocks", true, 0, time.Minute, ""},
		{"no empty blocks", false, 0, time.Minute, "create_empty_blocks = false"},
		{"no empty blocks, no bound", false, 0, 0, ""},
		{"empty blocks too far apart", true, 2 * time.Minute, time.Minute, "create_empty_blocks_interval"},
		{"empty blocks as far apart as the bound", true, time.Minute, time.Minute, "create_empty_blocks_interval"},
	} {
		cons := cmtcfg.DefaultConsensusConfig()
		cons.CreateEmptyBlocks, cons.CreateEmptyBlocksInterval = tc.empty, tc.interval
		err := checkHealthHeadAge(grpcConfig{MaxHeadAge: tc.maxAge}, cons)
		if (tc.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "grpc.max_head_age"))) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}

	// start refuses a bound below init's empty-block interval before the
	// node starts, whatever the sidecar's bound is (run as its own
	// process: a start that did not refuse runs a node until ctx ends).
	if testing.Short() {
		return
	}
	if _, err := write("[grpc]\nmax_head_age = \"30m\"\n[sidecar]\nmax_head_age = \"2h0m10s\"\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "start", "--home", home).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "grpc.max_head_age 30m0s is not above consensus.create_empty_blocks_interval 1h0m0s") ||
		strings.Contains(string(out), "node started") {
		t.Fatalf("start with grpc.max_head_age below the empty-block interval: %v\n%s", err, out)
	}
}
