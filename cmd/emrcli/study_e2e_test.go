package main

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestClosedStudy: once a study's organization leaves the consortium, a
// patient's share consent for the study reads nothing more, and the
// patient's listing, the grantee's and the study's say so.
func TestClosedStudy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	_, e := registrarEnv(t, "emr-closed-study")
	for _, k := range []string{"lab-reg", "pi", "doc", "alice"} {
		e.ok("keys", "add", k)
	}
	e.ok("propose", "add-organization", "--from", "registrar", "--id", "lab", "--name", "Lab",
		"--kind", "research", "--registrar-key", "lab-reg", "--credential", "REG-9", "--reason", "joins")
	e.ok("member", "register", "--from", "lab-reg", "--key", "pi", "--role", "researcher", "--credential", "R-1")
	e.ok("study", "register", "--from", "lab-reg", "--id", "s1", "--title", "Study one", "--pi", "pi")
	e.ok("member", "register", "--from", "registrar", "--key", "doc", "--role", "clinician", "--credential", "GMC-1")
	pid, keyFile := e.enrollWithDataKey("alice")
	sum := sha256.Sum256([]byte("blob"))
	e.ok("add-record", "--from", "alice", "--patient", pid, "--category", "lab-results",
		"--sha256", hex.EncodeToString(sum[:]), "--size", "100", "--object-key", "k1", "--data-key-file", keyFile)
	e.ok("grant", "--from", "alice", "--to", "doc", "--rights", "share", "--study", "s1", "--until", "2099-01-01")
	e.ok("read", "--from", "doc", "--patient", pid, "--record", "1", "--purpose", "research")

	// The lab leaves the consortium: proposal 2, approved by both.
	e.ok("propose", "retire-organization", "--from", "registrar", "--org", "lab", "--reason", "closed")
	e.ok("approve", "--from", "lab-reg", "2")

	if out := e.ok("permissions", "--from", "alice"); !strings.Contains(out, "active, but study closed") {
		t.Errorf("the patient's listing of a share consent for the closed study:\n%s", out)
	}
	var held struct {
		Permissions []struct {
			State       string `json:"state"`
			StudyClosed string `json:"study_closed"`
		} `json:"permissions"`
	}
	e.json(&held, "grants", "doc")
	if len(held.Permissions) != 1 || held.Permissions[0].State != "active, but study closed" ||
		!strings.Contains(held.Permissions[0].StudyClosed, `organization "lab" was retired at height`) {
		t.Errorf("grants --json of the closed study's consent: %+v", held)
	}
	if out := e.ok("study", "show", "s1"); !strings.Contains(out, `organization "lab" was retired at height`) {
		t.Errorf("study show of the closed study:\n%s", out)
	}
	e.fails(1, `study "s1": organization "lab" was retired at height`,
		"read", "--from", "doc", "--patient", pid, "--record", "1", "--purpose", "research")
}
