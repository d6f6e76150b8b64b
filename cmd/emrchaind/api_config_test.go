package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/emrchain/emrchain/app"
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
