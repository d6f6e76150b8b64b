package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	p := &progressLine{w: &buf}
	p.update("upload", 512<<10, 1<<20)
	p.update("upload", 600<<10, 1<<20) // throttled: same phase, too soon
	p.update("upload", 1<<20, 1<<20)   // the end is always drawn
	p.finish()
	out := buf.String()
	for _, want := range []string{"\rupload", "512.0 KiB / 1.0 MiB", "[###############...............]  50%", "100%", "\r\x1b[K"} {
		if !strings.Contains(out, want) {
			t.Fatalf("progress output lacks %q: %q", want, out)
		}
	}
	if strings.Contains(out, "600.0 KiB") {
		t.Fatalf("not throttled: %q", out)
	}
	// Not a terminal (a buffer), or --json: no progress line at all.
	if (&cli{stderr: &buf}).newProgress() != nil {
		t.Fatal("progress on a non-terminal")
	}
	var nilLine *progressLine
	if nilLine.callback() != nil {
		t.Fatal("nil progress line has a callback")
	}
	nilLine.finish()
	if humanBytes(1023) != "1023 B" || humanBytes(64<<20) != "64.0 MiB" {
		t.Fatalf("humanBytes: %s %s", humanBytes(1023), humanBytes(64<<20))
	}
}

func TestSidecarURLs(t *testing.T) {
	home := t.TempDir()
	a := &cli{home: home}
	t.Setenv(envSidecar, "")
	urls, err := a.sidecarURLs(nil)
	if err != nil || len(urls) != 1 || urls[0] != defaultSidecar {
		t.Fatalf("default: %v %v", urls, err)
	}
	if err := os.WriteFile(filepath.Join(home, configFileName), []byte(`{"sidecars":["http://10.0.0.5:7070/"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if urls, _ := a.sidecarURLs(nil); len(urls) != 1 || urls[0] != "http://10.0.0.5:7070" {
		t.Fatalf("config: %v", urls)
	}
	t.Setenv(envSidecar, "127.0.0.1:7070, https://s2:7443")
	if urls, _ := a.sidecarURLs(nil); len(urls) != 2 || urls[0] != "http://127.0.0.1:7070" || urls[1] != "https://s2:7443" {
		t.Fatalf("env: %v", urls)
	}
	if urls, _ := a.sidecarURLs([]string{"http://a:1", "http://b:2"}); len(urls) != 2 || urls[1] != "http://b:2" {
		t.Fatalf("flag: %v", urls)
	}
	if _, err := a.sidecarURLs([]string{"ftp://x"}); !isUsage(err) {
		t.Fatalf("ftp URL: %v", err)
	}
}

func TestTransferUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"upload", "--from", "a", "--patient", "b", "--category", "lab-results"},
		{"upload", "--from", "a", "--patient", "b", "x", "y"},
		{"upload", "--from", "a", "--patient", "b", "file.bin"},
		{"download", "--from", "a", "--patient", "b", "-o", "out"},
		{"download", "--from", "a", "--patient", "b", "--record", "1", "--share", "1", "-o", "out"},
		{"download", "--from", "a", "--patient", "b", "--record", "1"},
		{"download", "--from", "a", "--patient", "b", "--record", "1", "-o", "x", "--purpose", "gossip"},
		{"share", "--from", "a", "--patient", "b", "--record", "1"},
		{"study", "keygen"},
	} {
		out, errOut, code := runCLI(t, args...)
		if code != exitUsage || out != "" || !strings.HasPrefix(errOut, "Error: ") {
			t.Errorf("emrcli %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}
