package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadHexKeyFile: a key file holds the key in hex, white space and a
// 0x around it allowed; anything else — not hex, another length, empty, a
// large file given by mistake (read no further than maxKeyFileSize), a
// missing file — is refused with an error naming the flag, and bad content
// as a usage error.
func TestReadHexKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name, content string
		ok, usage     bool
	}{
		{"plain", key, true, false},
		{"with white space and 0x", "  0x" + key + "\n", true, false},
		{"not hex", strings.Repeat("zz", 32), false, true},
		{"too short", key[:62], false, true},
		{"too long", key + "ab", false, true},
		{"empty", "", false, true},
		{"a large file", key + strings.Repeat(" ", maxKeyFileSize), false, true},
		{"missing", "", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if c.name != "missing" {
				if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readHexKeyFile("--data-key-file", path, 32, "the data key")
			if c.ok {
				if err != nil || len(got) != 32 || got[0] != 0xab {
					t.Fatalf("got %x, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "--data-key-file") || isUsage(err) != c.usage {
				t.Fatalf("err = %v (usage %v), want a refusal naming the flag (usage %v)", err, isUsage(err), c.usage)
			}
		})
	}
}
