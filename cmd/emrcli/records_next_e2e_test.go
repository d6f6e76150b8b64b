package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/client/clienttest"
)

// TestRecordsEmptyFilteredPageSaysMore: a Records page with a category
// filter may end early (after 10 pages' worth of records read) holding no
// record yet having a next page. The text output must then still say where
// to go on ("more: --after N"), not just "no records", which reads as
// "this patient has no record of that category".
func TestRecordsEmptyFilteredPageSaysMore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-cli-next", Configure: func(home string) error {
		// max_page_size 1: a filtered page reads at most 10 records.
		path := filepath.Join(home, "config", "genesis.json")
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var g map[string]any
		if err := json.Unmarshal(b, &g); err != nil {
			return err
		}
		params := g["app_state"].(map[string]any)["params"].(map[string]any)
		delete(params, "max_page_size")
		params["maxPageSize"] = 1
		if b, err = json.MarshalIndent(g, "", "  "); err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o600)
	}})
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_PASSPHRASE=correct horse battery", "EMRCLI_KEYRING_BACKEND="}
	e.ok("light", "init", "--genesis", node.Genesis)
	e.ok("keys", "add", "alice")
	pid, keyFile := e.enrollWithDataKey("alice")
	// Records 1..11 are imaging, 12 a lab result.
	for n := 1; n <= 12; n++ {
		category := "imaging"
		if n == 12 {
			category = "lab-results"
		}
		sum := sha256.Sum256([]byte(fmt.Sprint("blob ", n)))
		e.ok("add-record", "--from", "alice", "--patient", pid, "--category", category,
			"--sha256", hex.EncodeToString(sum[:]), "--size", "100", "--object-key", fmt.Sprint("k", n),
			"--data-key-file", keyFile)
	}
	var page struct {
		Records []json.RawMessage `json:"records"`
		Next    uint64            `json:"next"`
	}
	e.json(&page, "records", "--from", "alice", "--category", "lab-results", "--limit", "1")
	if len(page.Records) != 0 || page.Next == 0 {
		t.Fatalf("setup: want an empty page with a next one, got %d records, next %d", len(page.Records), page.Next)
	}
	out := e.ok("records", "--from", "alice", "--category", "lab-results", "--limit", "1")
	if !strings.Contains(out, fmt.Sprintf("more: --after %d", page.Next)) {
		t.Fatalf("an empty page with a next one (%d) prints:\n%s", page.Next, out)
	}
}
