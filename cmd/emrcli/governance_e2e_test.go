package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client/clienttest"
)

// TestGovernanceFlow: on a real node of a one-organization consortium, a
// registrar's proposal executes when made (one of one is more than two
// thirds): it admits an organization, whose new registrar then registers
// its staff. With two organizations, raising the node's voting power waits
// for the second one's approval; `validators` reads the change back
// verified, CometBFT's set has it from two blocks later and not before, and
// the light client goes on verifying headers of the new set. An executed
// proposal takes no approval, an organization approves once, power not yet
// seen signing stays below a third, and the only validator cannot be
// removed. New params, a withdrawn proposal, and an organization retired.
func TestGovernanceFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	node, e := registrarEnv(t, "emr-gov-test")
	e.ok("keys", "add", "st-mary-registrar")
	e.ok("keys", "add", "st-mary-doc")

	e.fails(2, "--kind", "propose", "add-organization", "--from", "registrar", "--id", "st-mary", "--name", "St Mary's",
		"--kind", "castle", "--registrar-key", "st-mary-registrar", "--reason", "joins")
	out := e.ok("propose", "add-organization", "--from", "registrar", "--id", "st-mary", "--name", "St Mary's",
		"--kind", "hospital", "--registrar-key", "st-mary-registrar", "--credential", "REG-1", "--reason", "joins the network")
	for _, want := range []string{`proposal 1: admit st-mary ("St Mary's", hospital) with registrar`, "executed at height", "(approved by dev-hospital)", "verified against"} {
		if !strings.Contains(out, want) {
			t.Fatalf("propose add-organization lacks %q:\n%s", want, out)
		}
	}
	e.ok("member", "register", "--from", "st-mary-registrar", "--key", "st-mary-doc", "--role", "clinician", "--credential", "GMC-9")
	if out := e.ok("member", "show", "st-mary-doc"); !strings.Contains(out, "st-mary") {
		t.Fatalf("member show: %s", out)
	}
	e.fails(1, "proposal closed", "approve", "--from", "registrar", "1")

	// Who is in the consortium, verified: its organizations, one's
	// registrars, and its members, all or of one role.
	out = e.ok("organizations")
	for _, want := range []string{"dev-hospital", "st-mary", "St Mary's", "hospital", "member", "verified against"} {
		if !strings.Contains(out, want) {
			t.Fatalf("organizations lacks %q:\n%s", want, out)
		}
	}
	if out := e.ok("organizations", "st-mary"); !strings.Contains(out, "(st-mary-registrar)") || strings.Contains(out, "st-mary-doc") {
		t.Fatalf("organizations st-mary (its registrars only):\n%s", out)
	}
	if out := e.ok("member", "list", "--org", "st-mary"); !strings.Contains(out, "(st-mary-doc)") || !strings.Contains(out, "(st-mary-registrar)") || strings.Contains(out, "(dev-doc)") {
		t.Fatalf("member list --org st-mary:\n%s", out)
	}
	var staff struct {
		Organization string `json:"organization"`
		Members      []struct {
			Address string `json:"address"`
			Role    string `json:"role"`
		} `json:"members"`
		Verified bool `json:"verified"`
	}
	e.json(&staff, "member", "list", "--org", "st-mary", "--role", "clinician")
	if len(staff.Members) != 1 || staff.Members[0].Role != "clinician" || staff.Members[0].Address != strings.ToUpper(strings.TrimSpace(e.ok("keys", "show", "st-mary-doc", "--address"))) || !staff.Verified {
		t.Fatalf("member list --org st-mary --role clinician: %+v", staff)
	}
	e.fails(2, "--org is required", "member", "list")
	e.fails(2, "--role", "member", "list", "--org", "st-mary", "--role", "patient")
	e.fails(1, `no organization "st-luke"`, "member", "list", "--org", "st-luke")

	var vs struct {
		Validators []struct {
			PubKey string `json:"pub_key"`
			Power  int64  `json:"power"`
		} `json:"validators"`
		Verified bool `json:"verified"`
	}
	e.json(&vs, "validators")
	if len(vs.Validators) != 1 || vs.Validators[0].Power != 10 || !vs.Verified {
		t.Fatalf("validators: %+v", vs)
	}
	key := vs.Validators[0].PubKey
	e.fails(1, "only validator", "propose", "validator", "--from", "registrar", "--pub-key", key, "--power", "0", "--reason", "leave")
	var decided struct {
		Proposal struct {
			ID             uint64 `json:"id"`
			Status         string `json:"status"`
			ExecutedHeight int64  `json:"executed_height"`
		} `json:"proposal"`
	}
	// Power not yet seen signing is kept below a third of the total: 10
	// more of 20 is refused, 4 more of 14 is not.
	e.fails(1, "10 of the 20 voting power would be in validators not yet seen signing", "propose", "validator", "--from", "registrar", "--pub-key", key, "--power", "20", "--reason", "double")
	// Two organizations now: the proposal waits for St Mary's.
	e.json(&decided, "propose", "validator", "--from", "registrar", "--pub-key", key, "--power", "14", "--reason", "more")
	if decided.Proposal.ID != 2 || decided.Proposal.Status != "open" {
		t.Fatalf("propose validator: %+v", decided)
	}
	e.fails(1, "has approved proposal 2 already", "approve", "--from", "registrar", "2")
	e.json(&decided, "approve", "--from", "st-mary-registrar", "2")
	if decided.Proposal.ID != 2 || decided.Proposal.Status != "executed" {
		t.Fatalf("approve: %+v", decided)
	}
	e.json(&vs, "validators")
	if len(vs.Validators) != 1 || vs.Validators[0].Power != 14 {
		t.Fatalf("validators after the change: %+v", vs)
	}
	// CometBFT's set changes at executed_height+2, not before; the light
	// client then verifies headers signed under the new set.
	cometPower := func(height int64) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var cv struct {
				Result struct {
					Validators []struct {
						VotingPower string `json:"voting_power"`
					} `json:"validators"`
				} `json:"result"`
			}
			resp, err := http.Get(node.RPC + "/validators?height=" + strconv.FormatInt(height, 10))
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&cv)
			resp.Body.Close()
			if err == nil && len(cv.Result.Validators) == 1 {
				return cv.Result.Validators[0].VotingPower
			}
			if time.Now().After(deadline) {
				t.Fatalf("no validator set at height %d: %v %+v", height, err, cv)
			}
			time.Sleep(200 * time.Millisecond) // the height is not there yet
		}
	}
	if before, after := cometPower(decided.Proposal.ExecutedHeight+1), cometPower(decided.Proposal.ExecutedHeight+2); before != "10" || after != "14" {
		t.Fatalf("CometBFT's power at executed+1 and +2: %s and %s, want 10 and 14", before, after)
	}
	e.ok("keys", "add", "bob")
	e.ok("patient", "enroll", "--from", "bob", "--name", "Bob", "--birth-date", "1990-01-01")
	// The consortium suspends a member of St Mary's: both organizations.
	e.json(&decided, "propose", "suspend-member", "--from", "registrar", "st-mary-doc", "--reason", "credential withdrawn")
	if decided.Proposal.Status != "open" {
		t.Fatalf("propose suspend-member: %+v", decided)
	}
	e.json(&decided, "approve", "--from", "st-mary-registrar", strconv.FormatUint(decided.Proposal.ID, 10))
	if decided.Proposal.Status != "executed" {
		t.Fatalf("approve the suspension: %+v", decided)
	}
	if out := e.ok("member", "show", "st-mary-doc"); !strings.Contains(out, "suspended") {
		t.Fatalf("member show after the suspension: %s", out)
	}
	out = e.ok("proposals")
	for _, want := range []string{"executed", "admit st-mary", "power to 14 (from 10)", "suspend member", "verified against"} {
		if !strings.Contains(out, want) {
			t.Fatalf("proposals lacks %q:\n%s", want, out)
		}
	}

	// Reading the proposal back is for show: through a node that answers
	// no Proposal query, a propose or approve that committed succeeds,
	// says so (height, proposal id; --json well-formed) and warns on stderr
	// where to look.
	proxy := clienttest.NewProxy(t, node.RPC)
	proxy.SetRoute(func(call clienttest.Call) string {
		if isQueryCall(call, "Proposal") {
			return "http://127.0.0.1:1" // nobody listens
		}
		return ""
	})
	r := e.run("propose", "reactivate-member", "--from", "registrar", "st-mary-doc", "--reason", "credential restored", "--node", proxy.URL, "--json")
	var committed struct {
		ProposalID uint64          `json:"proposal_id"`
		Proposal   json.RawMessage `json:"proposal"`
		Tx         struct {
			Height    int64 `json:"height"`
			Committed bool  `json:"committed"`
		} `json:"tx"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &committed); r.code != 0 || err != nil || committed.ProposalID != 4 || committed.Proposal != nil ||
		!committed.Tx.Committed || committed.Tx.Height == 0 ||
		!strings.Contains(r.stderr, "warning: the transaction is committed") || !strings.Contains(r.stderr, "see it with: emrcli proposals 4") {
		t.Fatalf("propose with a failed read-back: exit %d, %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	t.Logf("propose with a failed read-back warns: %s", r.stderr)
	// A second reactivation of the same member, approved (text output).
	e.json(&decided, "propose", "reactivate-member", "--from", "registrar", "st-mary-doc", "--reason", "credential restored at last")
	if decided.Proposal.ID != 5 || decided.Proposal.Status != "open" {
		t.Fatalf("the second reactivation: %+v", decided)
	}
	r = e.run("approve", "--from", "st-mary-registrar", "5", "--node", proxy.URL)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "proposal 5\n") || !strings.Contains(r.stdout, "committed: height") ||
		!strings.Contains(r.stderr, "see it with: emrcli proposals 5") {
		t.Fatalf("approve with a failed read-back: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if out := e.ok("member", "show", "st-mary-doc"); !strings.Contains(out, "active") {
		t.Fatalf("member show after the reactivation: %s", out)
	}

	// Overtaken proposals: open, but another change overtook them, by the
	// chain's rules applied to verified state of the listing's height.
	type listed struct {
		Status    string `json:"status"`
		Overtaken string `json:"overtaken"`
	}
	proposals := func(args ...string) map[uint64]listed {
		t.Helper()
		var list struct {
			Proposals []struct {
				ID uint64 `json:"id"`
				listed
			} `json:"proposals"`
			Verified bool `json:"verified"`
		}
		e.json(&list, append([]string{"proposals"}, args...)...)
		if !list.Verified {
			t.Fatalf("proposals %v: not verified", args)
		}
		out := map[uint64]listed{}
		for _, p := range list.Proposals {
			out[p.ID] = p.listed
		}
		return out
	}
	wantListed := func(got map[uint64]listed, id uint64, status, overtaken string) {
		t.Helper()
		if p := got[id]; p.Status != status || !strings.Contains(p.Overtaken, overtaken) || (overtaken == "") != (p.Overtaken == "") {
			t.Fatalf("proposal %d: %+v, want %s %q", id, p, status, overtaken)
		}
	}
	e.ok("keys", "add", "st-luke-a")
	e.ok("keys", "add", "st-luke-b")
	propose := func(wantID uint64, args ...string) {
		t.Helper()
		e.json(&decided, append([]string{"propose"}, args...)...)
		if decided.Proposal.ID != wantID || decided.Proposal.Status != "open" {
			t.Fatalf("propose %v: %+v, want proposal %d open", args, decided, wantID)
		}
	}
	propose(6, "validator", "--from", "registrar", "--pub-key", key, "--power", "12", "--reason", "less")
	propose(7, "add-organization", "--from", "registrar", "--id", "st-luke", "--name", "St Luke's", "--kind", "hospital", "--registrar-key", "st-luke-a", "--reason", "joins")
	propose(8, "add-organization", "--from", "registrar", "--id", "st-luke", "--name", "St Luke's", "--kind", "hospital", "--registrar-key", "st-luke-b", "--reason", "joins, another key")
	got := proposals()
	wantListed(got, 4, "overtaken", "status changed 1 times since this reactivation was proposed")
	wantListed(got, 5, "executed", "")
	for _, id := range []uint64{6, 7, 8} {
		wantListed(got, id, "open", "")
	}
	e.fails(1, "proposal closed", "approve", "--from", "st-mary-registrar", "4")
	// The validator's power changes under proposal 6: 14 to 13...
	propose(9, "validator", "--from", "registrar", "--pub-key", key, "--power", "13", "--reason", "a little less")
	e.json(&decided, "approve", "--from", "st-mary-registrar", "9")
	if decided.Proposal.Status != "executed" {
		t.Fatalf("approve 9: %+v", decided)
	}
	wantListed(proposals("6"), 6, "overtaken", "has power 13, 14 when this was proposed")
	// ...and back to 14: the power proposal 6 was made from, but changed.
	propose(10, "validator", "--from", "registrar", "--pub-key", key, "--power", "14", "--reason", "as it was")
	e.json(&decided, "approve", "--from", "st-mary-registrar", "10")
	if decided.Proposal.Status != "executed" {
		t.Fatalf("approve 10: %+v", decided)
	}
	// St Luke's is admitted by proposal 8, which overtakes proposal 7.
	e.json(&decided, "approve", "--from", "st-mary-registrar", "8")
	if decided.Proposal.Status != "executed" {
		t.Fatalf("approve 8: %+v", decided)
	}
	got = proposals()
	wantListed(got, 6, "overtaken", "was changed 2 times since this was proposed")
	wantListed(got, 7, "overtaken", `organization "st-luke" exists`)
	wantListed(got, 4, "overtaken", "status changed 1 times")
	out = e.ok("proposals")
	for _, want := range []string{"proposal 6 is overtaken, it can no longer execute: validator", `proposal 7 is overtaken, it can no longer execute: organization "st-luke" exists`} {
		if !strings.Contains(out, want) {
			t.Fatalf("proposals lacks %q:\n%s", want, out)
		}
	}
	// An approval that does not carry an overtaken proposal is taken (two
	// of three organizations), and its read-back says it is overtaken; the
	// one that would execute it is refused.
	out = e.ok("approve", "--from", "st-luke-b", "6")
	if !strings.Contains(out, "overtaken; approved by dev-hospital, st-luke") || !strings.Contains(out, "it can no longer execute: validator") {
		t.Fatalf("approve of an overtaken proposal:\n%s", out)
	}
	e.fails(1, "proposal closed", "approve", "--from", "st-mary-registrar", "6")
	e.json(&decided, "approve", "--from", "st-mary-registrar", "7")
	if decided.Proposal.Status != "overtaken" {
		t.Fatalf("approve 7: %+v", decided)
	}
	e.fails(1, `organization "st-luke" exists`, "approve", "--from", "st-luke-b", "7")

	// New params: the current ones with the flags' values, checked before
	// anything is signed; a second params proposal made before the first
	// executes is overtaken by it.
	e.fails(2, "the params would not change", "propose", "params", "--from", "registrar", "--reason", "nothing")
	e.fails(2, "the chain has that category", "propose", "params", "--from", "registrar", "--add-category", "imaging", "--reason", "again")
	e.fails(2, "--add-category genomics: given twice", "propose", "params", "--from", "registrar", "--add-category", "genomics", "--add-category", "genomics", "--reason", "twice")
	e.fails(2, "max_page_size is 1001, more than 1000", "propose", "params", "--from", "registrar", "--max-page-size", "1001", "--reason", "big pages")
	propose(11, "params", "--from", "registrar", "--add-category", "genomics", "--max-page-size", "50", "--reason", "sequencing")
	propose(12, "params", "--from", "registrar", "--max-blob-bytes", "8589934592", "--reason", "large images")
	e.ok("approve", "--from", "st-mary-registrar", "11")
	e.json(&decided, "approve", "--from", "st-luke-b", "11")
	if decided.Proposal.Status != "executed" {
		t.Fatalf("approve 11: %+v", decided)
	}
	var params struct {
		Categories      []string `json:"categories"`
		MaxPageSize     uint32   `json:"max_page_size"`
		MaxBlobBytes    uint64   `json:"max_blob_bytes"`
		ProposalSeconds uint64   `json:"proposal_seconds"`
		Changes         uint64   `json:"changes"`
		Verified        bool     `json:"verified"`
	}
	e.json(&params, "params")
	if !slices.Contains(params.Categories, "genomics") || params.MaxPageSize != 50 || params.MaxBlobBytes != 4<<30 ||
		params.ProposalSeconds != 14*24*3600 || params.Changes != 1 || !params.Verified {
		t.Fatalf("params after proposal 11: %+v", params)
	}
	wantListed(proposals(), 12, "overtaken", "the params were changed 1 times since this was proposed")
	if out := e.ok("proposals", "11"); !strings.Contains(out, "params: category genomics added; max page size 50 (was 100)") {
		t.Fatalf("proposals 11:\n%s", out)
	}
	type paramsJSON struct {
		Categories  []string `json:"categories"`
		MaxPageSize uint32   `json:"max_page_size"`
	}
	var p11 struct {
		Proposals []struct {
			Params     paramsJSON `json:"params"`
			FromParams paramsJSON `json:"from_params"`
		} `json:"proposals"`
	}
	e.json(&p11, "proposals", "11")
	if got := p11.Proposals; len(got) != 1 || !slices.Contains(got[0].Params.Categories, "genomics") || got[0].Params.MaxPageSize != 50 ||
		slices.Contains(got[0].FromParams.Categories, "genomics") || got[0].FromParams.MaxPageSize != 100 {
		t.Fatalf("proposals 11 --json: %+v", got)
	}
	e.ok("approve", "--from", "st-mary-registrar", "12")
	e.fails(1, "the params were changed 1 times since this was proposed", "approve", "--from", "st-luke-b", "12")

	// A proposal made by mistake is withdrawn by its proposer, and only
	// by its proposer; it then takes no approval.
	propose(13, "suspend-member", "--from", "registrar", "st-mary-doc", "--reason", "the wrong doctor")
	e.fails(1, "only its proposer", "withdraw", "--from", "st-mary-registrar", "13")
	if out := e.ok("withdraw", "--from", "registrar", "13"); !strings.Contains(out, "withdrawn at height") {
		t.Fatalf("withdraw:\n%s", out)
	}
	e.fails(1, "proposal 13 was withdrawn at height", "approve", "--from", "st-mary-registrar", "13")
	wantListed(proposals("13"), 13, "withdrawn", "")

	// St Mary's leaves: retired by all three organizations, its own
	// included, its members are retired for good, and a second
	// retirement of it is overtaken.
	// Bob consents to St Mary's doctor and to one of the dev hospital.
	e.ok("keys", "add", "dev-doc")
	e.ok("member", "register", "--from", "registrar", "--key", "dev-doc", "--role", "clinician", "--credential", "GMC-11")
	for _, to := range []string{"st-mary-doc", "dev-doc"} {
		e.ok("grant", "--from", "bob", "--to", to, "--rights", "read", "--categories", "lab-results", "--until", "2099-01-01")
	}
	propose(14, "retire-organization", "--from", "registrar", "--org", "st-mary", "--reason", "merged into St Luke's")
	propose(15, "retire-organization", "--from", "registrar", "--org", "st-mary", "--reason", "the same, twice")
	propose(16, "suspend-member", "--from", "registrar", "st-mary-doc", "--reason", "open when St Mary's leaves")
	e.ok("approve", "--from", "st-luke-b", "14")
	if out := e.ok("approve", "--from", "st-mary-registrar", "14"); !strings.Contains(out, "retire st-mary (all its members, for good)") || !strings.Contains(out, "executed at height") {
		t.Fatalf("approve 14:\n%s", out)
	}
	after := proposals()
	wantListed(after, 15, "overtaken", `organization "st-mary" was retired at height`)
	wantListed(after, 16, "overtaken", `is retired: its organization "st-mary" left the consortium`)
	e.fails(1, `organization "st-mary" was retired at height`, "approve", "--from", "st-luke-b", "15")
	if out := e.ok("member", "show", "st-mary-doc"); !strings.Contains(out, "status:         retired") {
		t.Fatalf("member show st-mary-doc after the retirement:\n%s", out)
	}
	if out := e.ok("organizations"); !regexp.MustCompile(`st-mary +St Mary's +hospital +retired at height \d+`).MatchString(out) {
		t.Fatalf("organizations after the retirement:\n%s", out)
	}
	// Bob's revocation of the dev doctor rotates his key: the new key is
	// sealed to his standing grantees, not to the retired doctor (the
	// chain refuses an envelope for it).
	if out := e.ok("revoke", "--from", "bob", "--to", "dev-doc"); !strings.Contains(out, "rotated the patient key: version 1 -> 2") || !strings.Contains(out, "new key sealed to: nobody") || !strings.Contains(out, "not sealed to (retired") {
		t.Fatalf("revoke after the retirement:\n%s", out)
	}
	if out := e.ok("permissions", "--from", "bob"); !strings.Contains(out, "but grantee retired") {
		t.Fatalf("bob's consents after the retirement:\n%s", out)
	}
	e.ok("keys", "add", "st-mary-late")
	e.fails(1, "signer suspended", "member", "register", "--from", "st-mary-registrar", "--key", "st-mary-late", "--role", "clinician", "--credential", "GMC-10")
}

// isQueryCall reports whether call is an ABCI query of the Query service
// method.
func isQueryCall(call clienttest.Call, method string) bool {
	var params struct {
		Path string `json:"path"`
	}
	_ = json.Unmarshal(call.Params, &params)
	return call.Method == "abci_query" && params.Path == app.QueryPathPrefix+method
}

// TestConsensusLimitsByProposal: on a real node, a params proposal changes
// CometBFT's block and evidence limits, which the node's CometBFT applies
// from the block after the one that executed it (its own
// /consensus_params), and the chain goes on making blocks. Limits that
// leave no room in a block for a transaction of max_tx_bytes are refused
// before anything is signed.
func TestConsensusLimitsByProposal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	node, e := registrarEnv(t, "emr-limits-test")

	e.fails(2, "params.max_tx_bytes is 1048576: a block of 2097152 bytes", "propose", "params", "--from", "registrar", "--block-max-bytes", "2097152", "--reason", "small")
	e.fails(2, "evidence.MaxAgeNumBlocks must be greater than 0", "propose", "params", "--from", "registrar", "--evidence-max-age-blocks", "0", "--reason", "none")
	e.fails(2, "invalid argument", "propose", "params", "--from", "registrar", "--evidence-max-age", "two days", "--reason", "typo")
	var decided struct {
		Proposal struct {
			Status         string `json:"status"`
			ExecutedHeight int64  `json:"executed_height"`
			Change         string `json:"change"`
		} `json:"proposal"`
	}
	e.json(&decided, "propose", "params", "--from", "registrar", "--block-max-bytes", "3145728", "--evidence-max-age", "96h", "--reason", "smaller blocks")
	if p := decided.Proposal; p.Status != "executed" || !strings.Contains(p.Change, "block max bytes 3145728 (was 4194304); evidence max age 96h0m0s (was 48h0m0s)") {
		t.Fatalf("propose params: %+v", p)
	}
	executed := decided.Proposal.ExecutedHeight
	rpc, err := rpchttp.New(node.RPC)
	if err != nil {
		t.Fatal(err)
	}
	blockMaxBytes := func(height int64) int64 {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			res, err := rpc.ConsensusParams(context.Background(), &height)
			if err == nil {
				return res.ConsensusParams.Block.MaxBytes
			}
			if time.Now().After(deadline) {
				t.Fatalf("consensus params at %d: %v", height, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if got := blockMaxBytes(executed); got != 4<<20 {
		t.Fatalf("CometBFT's block.max_bytes at height %d, which executed the change: %d, want 4194304 still", executed, got)
	}
	// A block after the change: the chain goes on under the new limits.
	e.ok("keys", "add", "after-doc")
	e.ok("member", "register", "--from", "registrar", "--key", "after-doc", "--role", "clinician", "--credential", "GMC-2")
	if got := blockMaxBytes(executed + 1); got != 3<<20 {
		t.Fatalf("CometBFT's block.max_bytes at height %d: %d, want 3145728", executed+1, got)
	}
	var params struct {
		Consensus struct {
			BlockMaxBytes  int64   `json:"block_max_bytes"`
			EvidenceMaxAge float64 `json:"evidence_max_age_seconds"`
		} `json:"consensus"`
		Verified bool `json:"verified"`
	}
	e.json(&params, "params")
	if params.Consensus.BlockMaxBytes != 3<<20 || params.Consensus.EvidenceMaxAge != 96*3600 || !params.Verified {
		t.Fatalf("params after the change: %+v", params)
	}
}

// registrarEnv starts a node of chain id and an emrcli that trusts it and
// holds its dev registrar's key ("registrar").
func registrarEnv(t *testing.T, chainID string) (*clienttest.Node, *cliEnv) {
	t.Helper()
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: chainID})
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_KEYRING_BACKEND=test"}
	e.ok("light", "init", "--genesis", node.Genesis)
	e.ok("keys", "import-dev", node.RegistrarKey)
	return node, e
}

// TestProposeValidatorPossession: a new node's operator prints its key's
// proof of possession with "emrchaind show validator --possession", and
// the registrar's "propose validator --possession" adds it. emrcli checks
// it before anything is signed (exit 2), against the key's change count
// read verified from the chain: one that is not base64 of 64 bytes, one
// made before the node had this chain's genesis (another chain id),
// another node's, or none are refused, saying where to get the right one;
// a validator given a wrong one is told it needs none. Once the key is
// removed, re-running the command that added it is refused, naming the
// change count and the count the possession was made for, and a
// possession made with --changes of that count adds it again.
func TestProposeValidatorPossession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	const chainID = "emr-possession-test"
	node, e := registrarEnv(t, chainID)
	joiner := t.TempDir()
	emrchaind := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(clienttest.NodeBinary(t), args...).Output()
		if err != nil {
			t.Fatalf("emrchaind %v: %v", args, err)
		}
		return out
	}
	// The joining node, with the genesis init made for it: not this chain's.
	emrchaind("init", "--home", joiner, "--chain-id", "st-mary-own", "--moniker", "st-mary")
	possessionOf := func(changes uint64) (key, possession string) {
		t.Helper()
		var shown struct {
			ChainID    string `json:"chain_id"`
			PubKey     string `json:"pub_key"`
			Changes    uint64 `json:"changes"`
			Possession string `json:"possession"`
		}
		if err := json.Unmarshal(emrchaind("show", "validator", "--possession", "--json", "--changes", strconv.FormatUint(changes, 10), "--home", joiner), &shown); err != nil {
			t.Fatal(err)
		}
		if shown.Changes != changes {
			t.Fatalf("show validator --possession --changes %d --json: changes %d", changes, shown.Changes)
		}
		return shown.PubKey, shown.Possession
	}
	key, wrongChain := possessionOf(0)
	propose := func(args ...string) []string {
		return append([]string{"propose", "validator", "--from", "registrar", "--pub-key", key, "--power", "1", "--reason", "St Mary's node"}, args...)
	}
	e.fails(2, `--possession: the possession is not a signature by validator key `+key+` for chain "`+chainID+`" and change count 0`, propose("--possession", wrongChain)...)
	e.fails(2, "--possession: want the 64-byte signature in base64", propose("--possession", wrongChain[:40])...)
	e.fails(2, "emrchaind show validator --possession --changes 0", propose()...)

	// With this chain's genesis in place, its possession adds the key (one
	// organization: executed when made).
	genesis, err := os.ReadFile(node.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(joiner, "config", "genesis.json"), genesis, 0o600); err != nil {
		t.Fatal(err)
	}
	again, possession := possessionOf(0)
	if again != key || possession == wrongChain {
		t.Fatalf("after the genesis changed: key %s, possession %s (was %s)", again, possession, wrongChain)
	}
	// Another node's possession, with this chain's genesis, is not this
	// key's.
	other := t.TempDir()
	emrchaind("init", "--home", other, "--chain-id", "st-luke-own", "--moniker", "st-luke")
	if err := os.WriteFile(filepath.Join(other, "config", "genesis.json"), genesis, 0o600); err != nil {
		t.Fatal(err)
	}
	var otherNode struct {
		Possession string `json:"possession"`
	}
	if err := json.Unmarshal(emrchaind("show", "validator", "--possession", "--json", "--home", other), &otherNode); err != nil {
		t.Fatal(err)
	}
	e.fails(2, "the possession is not a signature by validator key "+key, propose("--possession", otherNode.Possession)...)
	var decided struct {
		Proposal struct {
			Status string `json:"status"`
		} `json:"proposal"`
	}
	e.json(&decided, propose("--possession", possession)...)
	if decided.Proposal.Status != "executed" {
		t.Fatalf("propose validator with its possession: %+v", decided)
	}
	type validator struct {
		PubKey string `json:"pub_key"`
		Power  int64  `json:"power"`
	}
	var vs struct {
		Validators []validator `json:"validators"`
	}
	e.json(&vs, "validators")
	if len(vs.Validators) != 2 || !slices.Contains(vs.Validators, validator{key, 1}) {
		t.Fatalf("validators after the addition: %+v", vs)
	}
	// A validator's change needs no possession; a wrong one is refused
	// all the same (the chain would), saying it may be left out.
	e.fails(2, "or leave it out: "+key+" is a validator (power 1), and a change of a validator's power needs none",
		"propose", "validator", "--from", "registrar", "--pub-key", key, "--power", "2", "--possession", otherNode.Possession, "--reason", "more")

	// Removed, the key is not added again by the command that added it
	// (its possession, kept in that proposal, is for change count 0; the
	// key's count is 2 now), but by one with a possession for count 2.
	e.json(&decided, "propose", "validator", "--from", "registrar", "--pub-key", key, "--power", "0", "--reason", "St Mary's node replaced")
	if decided.Proposal.Status != "executed" {
		t.Fatalf("propose the removal: %+v", decided)
	}
	refused := e.fails(2, "for chain \""+chainID+"\" and change count 2", propose("--possession", possession)...)
	if !strings.Contains(refused, "emrchaind show validator --possession --changes 2") ||
		!strings.Contains(refused, "this one is the key's possession for change count 0, made before the key's last 2 changes") {
		t.Fatalf("the refusal of the stale possession does not say how to make one, or what it was made for: %s", refused)
	}
	_, readd := possessionOf(2)
	e.json(&decided, propose("--possession", readd)...)
	if decided.Proposal.Status != "executed" {
		t.Fatalf("propose validator with its possession for change count 2: %+v", decided)
	}
	e.json(&vs, "validators")
	if len(vs.Validators) != 2 || !slices.Contains(vs.Validators, validator{key, 1}) {
		t.Fatalf("validators after the re-addition: %+v", vs)
	}
}
