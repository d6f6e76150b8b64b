package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client/clienttest"
)

// TestNoEmergencyReadLoggedForNothing: the physician's configured sidecar
// does not run the organization's emergency service (its operator never
// set emergency_key, or EMRCLI_SIDECAR points at another sidecar). An
// emergency read logged then would disclose nothing and stand in the
// patient's audit all the same: "download --purpose emergency" must find
// out before it logs anything (the sidecars' /healthz names the service
// each runs), and say so.
func TestNoEmergencyReadLoggedForNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_KEYRING_BACKEND=test", "EMRCLI_SIDECAR="}
	// A node whose sidecar is no emergency service.
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-emergency-none"})
	e.env = append(e.env, "EMRCLI_NODE="+node.RPC)
	e.ok("light", "init", "--genesis", node.Genesis, "--sidecar", node.SidecarURL)
	e.ok("keys", "import-dev", node.RegistrarKey)
	for key, role := range map[string]string{"er-service": "emergency-service", "dr-er": "clinician"} {
		e.ok("keys", "add", key)
		e.ok("member", "register", "--from", "registrar", "--key", key, "--role", role, "--credential", "LIC-"+key)
	}
	e.ok("keys", "add", "alice")
	var enroll struct {
		PatientID string `json:"patient_id"`
	}
	e.json(&enroll, "patient", "enroll", "--from", "alice", "--name", "Zebulon Quixotic", "--birth-date", "1961-04-17")
	in := filepath.Join(t.TempDir(), "rx.json")
	if err := os.WriteFile(in, []byte(`{"resourceType":"MedicationRequest"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var up uploadOut
	e.json(&up, "upload", "--from", "alice", "--category", "prescriptions", in)
	e.ok("grant", "--from", "alice", "--to", "er-service", "--rights", "emergency", "--until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))

	outFile := filepath.Join(t.TempDir(), "rx.out")
	line := e.fails(1, "", "download", "--from", "dr-er", "--patient", enroll.PatientID, "--record", fmt.Sprint(up.Record), "-o", outFile, "--purpose", "emergency", "--reason", "immediate-threat")
	if !strings.Contains(line, "no read was logged") || !strings.Contains(line, "runs no emergency service") {
		t.Errorf("the physician was told: %s", line)
	}
	if _, err := os.Stat(outFile); err == nil {
		t.Fatalf("a file was left at %s", outFile)
	}
	var audit struct {
		Reads []auditRow `json:"reads"`
	}
	e.json(&audit, "audit", "--from", "alice")
	if len(audit.Reads) != 0 {
		t.Fatalf("the failed break-glass read (no sidecar can release the key; knowable before logging) is in the patient's audit: %+v\nthe physician was told: %s",
			audit.Reads, strings.TrimSpace(line))
	}
}
