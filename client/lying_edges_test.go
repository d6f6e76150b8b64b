package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/privval"
	coretypes "github.com/cometbft/cometbft/rpc/core/types"
	cmttypes "github.com/cometbft/cometbft/types"
	ics23 "github.com/cosmos/ics23/go"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// testLyingNodeEdges: lies that one check of the verification each
// (named in the subtest's comment) stands between, so that removing any
// of them fails a test. Key prefixes are those of
// store/README.md: 0x02 organization, 0x03 member, 0x08 permission, 0x09
// grant index, 0x0c access event, 0x13 validator.
func testLyingNodeEdges(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := clienttest.NewProxy(t, w.node.RPC)
	pid := hexs(w.patientID)
	clinician := hexs(w.clinician.Address())
	permissions := &emrv1.QueryPermissionsRequest{PatientId: pid}

	cases := []lyingQuery{
		// newProvenReader's "proven twice": a consent listed twice, each
		// time with the same (valid) proof.
		{"ConsentListedTwice", queryRewrite("Permissions", func(m proto.Message) {
			r := m.(*emrv1.QueryPermissionsResponse)
			r.Permissions = append(r.Permissions, r.Permissions[0])
			for _, p := range r.Proofs {
				if p.Key[0] == 0x08 {
					r.Proofs = append(r.Proofs, p)
					break
				}
			}
		}), "Permissions", permissions},
		// verifyKey's absence proof (store.VerifyAbsence): the validator's
		// entry "proven absent" with the non-existence proof of another
		// key, relabelled, and the validator left out.
		{"AbsenceProvenWithAnotherKeysProof", queryRewrite("ValidatorKey", func(m proto.Message) {
			r := m.(*emrv1.QueryValidatorKeyResponse)
			var entry, absent *emrv1.StoreProof
			for _, p := range r.Proofs {
				switch {
				case p.Key[0] == 0x13:
					entry = p
				case len(p.Value) == 0 && absent == nil:
					absent = p
				}
			}
			if entry == nil || absent == nil {
				t.Errorf("ValidatorKey's proofs hold no validator entry or no absent key: %v", r.Proofs)
				return
			}
			data := relabelNonexist(t, absent.Ops[0].Data, entry.Key)
			entry.Value, entry.Ops = nil, []*emrv1.ProofOp{{Type: absent.Ops[0].Type, Key: entry.Key, Data: data}}
			r.Validator = nil
		}), "ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: w.validator}},
		// lazyReader's proof check: a false "not found", and the key the
		// re-run reads answered "absent" with its own proof of presence.
		{"FalseNotFoundOverAnAbsenceNotProven", lieAboutRawKeys(notFound("Member"), func(_ []byte, resp map[string]any) {
			delete(resp, "value")
		}), "Member", &emrv1.QueryMemberRequest{Address: clinician}},
		// lazyReader's reading of a proven absence: a false failure of a
		// query that succeeds (a key the chain never saw is no validator,
		// with no unseen power), its raw-key answers proving each key
		// absent, honestly, but with an empty value ("") in place of none,
		// which the re-run read as a present key holding nothing (an empty
		// validator, an unseen power that does not decode: the node's
		// "internal error").
		{"FalseFailureOverAbsencesGivenAsEmptyValues", lieAboutRawKeys(refuse("ValidatorKey", app.ErrInternal.Code()), func(_ []byte, resp map[string]any) {
			if resp["value"] == nil {
				resp["value"] = ""
			}
		}), "ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: bytes.Repeat([]byte{0xee}, 32)}},
		// verifyFailure's "cannot be checked key by key": a list query
		// said to fail with the code the unprovable range gives.
		{"FalseInternalFailureOfAList", refuse("Records", app.ErrInternal.Code()), "Records", &emrv1.QueryRecordsRequest{PatientId: pid}},
		// rangeProven's Organizations: an organization left out, with its proof.
		{"HideOrganization", queryRewrite("Organizations", func(m proto.Message) {
			r := m.(*emrv1.QueryOrganizationsResponse)
			hidden := r.Organizations[len(r.Organizations)-1]
			r.Organizations = r.Organizations[:len(r.Organizations)-1]
			r.Proofs = slices.DeleteFunc(r.Proofs, func(p *emrv1.StoreProof) bool {
				return p.Key[0] == 0x02 && string(p.Key[1:]) == hidden.Id
			})
		}), "Organizations", &emrv1.QueryOrganizationsRequest{}},
		// rangeProven's Grants: HideGrant dropped the grantee's proof too,
		// which the re-run missed first; here only the grant (its index
		// entry and consent) is left out.
		{"HideGrantKeepingTheGranteeProof", queryRewrite("Grants", func(m proto.Message) {
			r := m.(*emrv1.QueryGrantsResponse)
			r.Permissions = nil
			r.Proofs = slices.DeleteFunc(r.Proofs, func(p *emrv1.StoreProof) bool { return p.Key[0] == 0x09 || p.Key[0] == 0x08 })
		}), "Grants", &emrv1.QueryGrantsRequest{Grantee: clinician}},
		// rangeProven's Validators: HideValidators kept the unseen powers,
		// which the re-run did not give; here they go too.
		{"HideValidatorsAndTheirPower", queryRewrite("Validators", func(m proto.Message) {
			r := m.(*emrv1.QueryValidatorsResponse)
			r.Validators, r.UnseenPower, r.Proofs = nil, nil, nil
		}), "Validators", &emrv1.QueryValidatorsRequest{}},
		// checkComplete's walk of Records up to the end: the newest record
		// and its proof left out.
		{"DropLastRecordAndItsProof", queryRewrite("Records", func(m proto.Message) {
			r := m.(*emrv1.QueryRecordsResponse)
			drop := r.Records[len(r.Records)-1]
			r.Records = r.Records[:len(r.Records)-1]
			dropProofOf(&r.Proofs, drop)
		}), "Records", &emrv1.QueryRecordsRequest{PatientId: pid}},
		// checkComplete's count of AccessEvents: the oldest read and its
		// proof left out (the rest is consecutive from the newest).
		{"DropOldestAccessEvent", queryRewrite("AccessEvents", func(m proto.Message) {
			r := m.(*emrv1.QueryAccessEventsResponse)
			drop := r.Events[len(r.Events)-1]
			r.Events = r.Events[:len(r.Events)-1]
			r.Proofs = slices.DeleteFunc(r.Proofs, func(p *emrv1.StoreProof) bool {
				return bytes.Equal(p.Key, accessKeyOf(w.patientID, drop.Sequence))
			})
		}), "AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: pid}},
		// proveEmpty's check of the gap proof (store.VerifyAbsence): the
		// consent left out, and the gap's non-existence proof stripped of
		// its right neighbour, the consent.
		{"HidePermissionBehindAGapProofWithoutItsNeighbour", lieAboutRawKeys(hidePermissions, func(_ []byte, resp map[string]any) {
			ops := proofOps(t, resp)
			var cp ics23.CommitmentProof
			if err := cp.Unmarshal(ops[0]); err != nil || cp.GetNonexist() == nil {
				t.Errorf("gap proof: %v, %v; want a non-existence proof", err, &cp)
				return
			}
			cp.GetNonexist().Right = nil
			data, _ := cp.Marshal()
			setProofOps(resp, [][]byte{data})
		}), "Permissions", permissions},
		// proveEmpty's check of a gap key the node says is present: the
		// consent left out, and the gap's first key claimed to hold a value.
		{"HidePermissionBehindAGapKeyClaimedPresent", lieAboutRawKeys(hidePermissions, func(_ []byte, resp map[string]any) {
			resp["value"] = base64.StdEncoding.EncodeToString([]byte("present"))
		}), "Permissions", permissions},
		// queryAt's check of the answer's own height, with the ABCI
		// envelope's height left as asked.
		{"WrongHeightInTheAnswerOnly", keepABCIHeight(queryRewrite("Patient", func(m proto.Message) {
			m.(*emrv1.QueryPatientResponse).Height--
		})), "Patient", &emrv1.QueryPatientRequest{PatientId: pid}},
	}
	w.refuseLies(ctx, t, proxy, cases)

	// verifyFailure's comparison of codes: a query that fails, said by the
	// node to fail another way (a member not found, said to be revoked).
	t.Run("FailureOfAnotherKind", func(t *testing.T) {
		proxy.Honest()
		unknown := &emrv1.QueryMemberRequest{Address: hexs(bytes.Repeat([]byte{0xee}, app.AddressSize))}
		err := w.mustClient(t, proxy.URL).Query(ctx, "Member", unknown, &emrv1.QueryMemberResponse{})
		if !errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrVerification) {
			t.Fatalf("honest Member of an unknown address: %v, want a verified ErrNotFound", err)
		}
		proxy.SetRewrite(refuse("Member", app.ErrPermissionRevoked.Code()))
		defer proxy.Honest()
		err = w.mustClient(t, proxy.URL).Query(ctx, "Member", unknown, &emrv1.QueryMemberResponse{})
		if !errors.Is(err, client.ErrVerification) || errors.Is(err, app.ErrPermissionRevoked) {
			t.Fatalf("a not-found said to be a revocation: %v, want ErrVerification", err)
		}
		t.Logf("refused: %v", err)
	})

	// checkComplete's order of AccessEvents: a page of the newest two
	// that leaves the second out, with its proof, and puts the third (and
	// its proof, from the whole list at the same height) in its place.
	t.Run("DropAnAccessEventWithinAPage", func(t *testing.T) {
		proxy.Honest()
		c := w.mustClient(t, proxy.URL)
		for {
			events, _, err := c.AllAccessEvents(ctx, w.patientID)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) >= 4 {
				break
			}
			w.mustSubmit(ctx, t, c, w.clinician, readRecord(w, 1))
		}
		page := &emrv1.QueryAccessEventsRequest{PatientId: pid, Page: &emrv1.PageRequest{Limit: 2}}
		var resp emrv1.QueryAccessEventsResponse
		if err := c.Query(ctx, "AccessEvents", page, &resp); err != nil || len(resp.Events) != 2 {
			t.Fatalf("honest page of two: %v, %v", resp.Events, err)
		}
		whole, _ := proto.Marshal(&emrv1.QueryAccessEventsRequest{PatientId: pid})
		proxy.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
			if !isQuery(call, "AccessEvents") {
				return result
			}
			var all emrv1.QueryAccessEventsResponse
			if err := upstreamQuery(w.node.RPC, call, whole, &all); err != nil || len(all.Events) < 4 {
				t.Errorf("the whole list at the page's height: %d events, %v", len(all.Events), err)
				return result
			}
			return queryRewrite("AccessEvents", func(m proto.Message) {
				r := m.(*emrv1.QueryAccessEventsResponse)
				skip, third := r.Events[1], all.Events[2]
				r.Events[1], r.Page.Next = third, third.Sequence
				r.Proofs = slices.DeleteFunc(r.Proofs, func(p *emrv1.StoreProof) bool {
					return bytes.Equal(p.Key, accessKeyOf(w.patientID, skip.Sequence))
				})
				for _, p := range all.Proofs {
					if bytes.Equal(p.Key, accessKeyOf(w.patientID, third.Sequence)) {
						r.Proofs = append(r.Proofs, p)
					}
				}
			})(call, result)
		})
		defer proxy.Honest()
		err := w.mustClient(t, proxy.URL).Query(ctx, "AccessEvents", page, &resp)
		if !errors.Is(err, client.ErrVerification) {
			t.Fatalf("a page of two skipping a read: %v, events %v; want ErrVerification", err, resp.Events)
		}
		t.Logf("refused: %v", err)
	})

	// readHeight's floor: a node one block behind what the client has
	// seen (its head the block of the client's own read, so that the
	// state under it lacks the read) is waited for, then refused.
	t.Run("OneBlockBehindWhatWasSeen", func(t *testing.T) {
		proxy.Honest()
		c, err := client.New(ctx, client.Config{Node: proxy.URL, Verify: true, Trust: w.trust, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		res := w.mustSubmit(ctx, t, c, w.clinician, readRecord(w, 1))
		seen := c.MinHeight()
		if seen < res.Height {
			t.Fatalf("MinHeight %d after a read verified at %d", seen, res.Height)
		}
		proxy.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return seen - 1 }, paths: map[string]bool{app.QueryPathPrefix + "AccessEvents": true}, lieStatus: true}.rewrite)
		defer proxy.Honest()
		events, info, err := c.AllAccessEvents(ctx, w.patientID)
		if !errors.Is(err, client.ErrStale) {
			t.Fatalf("a node whose head is %d, after state %d was seen: read at %+v, %d events, the client's own read among them: %v, err %v; want ErrStale",
				seen, seen, info, len(events), holdsRead(events, res), err)
		}
		t.Logf("refused: %v", err)
	})

	// readHeight's second choice: with a Home, another run verifies a
	// newer header while this one reads from a node that reports an older
	// head (above what this run had seen when it started). The read is
	// chosen again from the newer floor, and the node refused.
	t.Run("AnotherRunOfTheHomeSawANewerHeader", func(t *testing.T) {
		proxy.Honest()
		home := filepath.Join(t.TempDir(), "light")
		open := func(node string) *client.Client {
			t.Helper()
			c, err := client.New(ctx, client.Config{Node: node, Verify: true, Trust: w.trust, Home: home, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		other := open(w.node.RPC)
		hdr, err := other.VerifyLatest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		this := open(proxy.URL) // starts at hdr.Height-1
		w.node.WaitHeight(t, ctx, hdr.Height+3)
		newer, err := other.VerifyLatest(ctx)
		if err != nil || newer.Height < hdr.Height+3 {
			t.Fatalf("the other run's header: %v, %v; want one at or past %d", newer, err, hdr.Height+3)
		}
		// The node's head is hdr.Height+1, its state hdr.Height: above this
		// run's floor, below the other run's.
		proxy.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return hdr.Height }, paths: map[string]bool{app.QueryPathPrefix + "AccessEvents": true}, lieStatus: true}.rewrite)
		defer proxy.Honest()
		_, info, err := this.AllAccessEvents(ctx, w.patientID)
		if !errors.Is(err, client.ErrStale) {
			t.Fatalf("a read from a node at %d after another run of the home verified %d: read at %+v, err %v; want ErrStale",
				hdr.Height+1, newer.Height, info, err)
		}
		t.Logf("refused: %v", err)
	})

	// checkRoot's comparison of the root's hash: trust.json replaced by a
	// root of the same chain and height but another header stops a
	// running client (ErrTrustRootReplaced).
	t.Run("ReplacedRootOfTheSameHeight", func(t *testing.T) {
		home := filepath.Join(t.TempDir(), "light")
		c, err := client.New(ctx, client.Config{Node: w.node.RPC, Verify: true, Trust: w.trust, Home: home, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		path := filepath.Join(home, "trust.json")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var root map[string]any
		if err := json.Unmarshal(raw, &root); err != nil {
			t.Fatal(err)
		}
		root["hash"] = strings.Repeat("AB", 32)
		raw, _ = json.Marshal(root)
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyLatest(ctx); !errors.Is(err, client.ErrTrustRootReplaced) {
			t.Fatalf("a root of height %d with another hash in trust.json: %v, want ErrTrustRootReplaced", w.trust.Height, err)
		}
	})

	// openLight's chain id check: a Home of one chain is not taken for
	// another chain id the caller names.
	t.Run("ChainIDOtherThanTheHomes", func(t *testing.T) {
		home := filepath.Join(t.TempDir(), "light")
		c, err := client.New(ctx, client.Config{Node: w.node.RPC, Verify: true, Trust: w.trust, Home: home, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		c, err = client.New(ctx, client.Config{Node: w.node.RPC, ChainID: "another-chain", Verify: true, Home: home, Timeout: 10 * time.Second})
		if err == nil {
			c.Close()
			t.Fatalf("a client of chain %q from a home of chain %q was made", "another-chain", w.chainID)
		}
	})

	// witnessHeaderAhead's verification of the witness's header: a
	// witness that claims a head ten blocks past the node's and serves, at
	// that height, a header it made up (the node's head, renumbered, 30 s
	// later, its commit's signatures the real block's) sets no floor: the
	// read goes on at the node's head.
	t.Run("WitnessHeaderNotSigned", func(t *testing.T) {
		rpc := w.rpc(t)
		st, err := rpc.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h := st.SyncInfo.LatestBlockHeight
		commit, err := rpc.Commit(ctx, &h)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := rpc.Validators(ctx, &h, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		claim := h + 10
		hdr, forged := *commit.Header, *commit.Commit
		hdr.Height, hdr.Time = claim, hdr.Time.Add(30*time.Second)
		forged.Height, forged.BlockID.Hash = claim, hdr.Hash()
		commitAnswer := commitResult(t, &hdr, &forged)
		vals.BlockHeight = claim
		valsJSON, err := cmtjson.Marshal(vals)
		if err != nil {
			t.Fatal(err)
		}
		lying := clienttest.NewProxy(t, w.node.RPC)
		lying.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
			if call.Method == "status" {
				return statusWithHead(result, claim)
			}
			return result
		})
		lying.SetAnswer(func(call clienttest.Call) string {
			var params struct {
				Height string `json:"height"`
			}
			_ = json.Unmarshal(call.Params, &params)
			switch {
			case params.Height != strconv.FormatInt(claim, 10):
				return ""
			case call.Method == "commit":
				return commitAnswer
			case call.Method == "validators":
				return `"result":` + string(valsJSON)
			}
			return ""
		})
		events, info, err := w.witnessedClient(t, ctx, w.node.RPC, lying.URL).AllAccessEvents(ctx, w.patientID)
		if err != nil || len(events) == 0 {
			t.Fatalf("an honest node beside a witness serving an unsigned header at %d: read at %+v, %d events, err %v; want the read",
				claim, info, len(events), err)
		}
	})

	// TrustFromGenesis's checks of the root header (block 1, on this
	// young chain), each against a lying node that serves a forged one:
	// its validators must be the genesis' (keys of validators since
	// retired could sign a header naming others), its commit must sign it,
	// and +2/3 of the genesis validators must have signed that commit.
	t.Run("ForgedRootsFromGenesis", func(t *testing.T) {
		genesis, err := os.ReadFile(w.node.Genesis)
		if err != nil {
			t.Fatal(err)
		}
		pv := privval.LoadFilePVEmptyState(filepath.Join(w.node.Home, "config", "priv_validator_key.json"), "")
		rpc := w.rpc(t)
		first := int64(1)
		commit, err := rpc.Commit(ctx, &first)
		if err != nil {
			t.Fatal(err)
		}
		others := cmttypes.NewValidatorSet([]*cmttypes.Validator{cmttypes.NewValidator(ed25519.GenPrivKey().PubKey(), 10)})
		for _, c := range []struct {
			name  string
			forge func(hdr *cmttypes.Header, com *cmttypes.Commit)
		}{
			{"AnotherValidatorSetSignedByTheGenesisKey", func(hdr *cmttypes.Header, com *cmttypes.Commit) {
				hdr.ValidatorsHash, hdr.NextValidatorsHash = others.Hash(), others.Hash()
				com.BlockID.Hash = hdr.Hash()
				com.Signatures = []cmttypes.CommitSig{{BlockIDFlag: cmttypes.BlockIDFlagCommit, ValidatorAddress: pv.Key.Address, Timestamp: hdr.Time}}
				sig, err := pv.Key.PrivKey.Sign(cmttypes.VoteSignBytes(w.chainID, com.GetVote(0).ToProto()))
				if err != nil {
					t.Fatal(err)
				}
				com.Signatures[0].Signature = sig
			}},
			{"AHeaderNobodySigned", func(hdr *cmttypes.Header, com *cmttypes.Commit) {
				hdr.AppHash = bytes.Repeat([]byte{0xaa}, 32)
				com.BlockID.Hash = hdr.Hash() // the signatures are the real block's
			}},
			{"AHeaderItsCommitDoesNotSign", func(hdr *cmttypes.Header, _ *cmttypes.Commit) {
				hdr.AppHash = bytes.Repeat([]byte{0xaa}, 32) // the commit is the real block's
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				hdr, forged := *commit.Header, *commit.Commit
				forged.Signatures = slices.Clone(forged.Signatures)
				c.forge(&hdr, &forged)
				commitAnswer := commitResult(t, &hdr, &forged)
				lying := clienttest.NewProxy(t, w.node.RPC)
				lying.SetAnswer(func(call clienttest.Call) string {
					if call.Method == "commit" && bytes.Contains(call.Params, []byte(`"1"`)) {
						return commitAnswer
					}
					return ""
				})
				if _, trust, err := client.TrustFromGenesis(ctx, lying.URL, genesis, 0); !errors.Is(err, client.ErrVerification) {
					t.Fatalf("a forged root: %+v, %v; want ErrVerification", trust, err)
				}
			})
		}
	})
}

// commitResult is a proxy's answer (SetAnswer) to a "commit" call: hdr
// signed by commit, whatever they hold.
func commitResult(t *testing.T, hdr *cmttypes.Header, commit *cmttypes.Commit) string {
	t.Helper()
	b, err := cmtjson.Marshal(&coretypes.ResultCommit{SignedHeader: cmttypes.SignedHeader{Header: hdr, Commit: commit}, CanonicalCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	return `"result":` + string(b)
}

// hidePermissions leaves every consent, and the proofs of them, out of
// the Permissions answers (the patient's proof stays).
var hidePermissions = queryRewrite("Permissions", func(m proto.Message) {
	r := m.(*emrv1.QueryPermissionsResponse)
	r.Permissions = nil
	r.Proofs = slices.DeleteFunc(r.Proofs, func(p *emrv1.StoreProof) bool { return p.Key[0] == 0x08 })
})

// lieAboutRawKeys is rw, and also changes every raw-key answer (the
// proofs a verification asks for one key at a time): fn gets the key
// asked and the answer's "response" member, to change in place.
func lieAboutRawKeys(rw func(clienttest.Call, json.RawMessage) json.RawMessage, fn func(key []byte, resp map[string]any)) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		if !isRawKey(call) {
			return rw(call, result)
		}
		var params struct {
			Data string `json:"data"`
		}
		_ = json.Unmarshal(call.Params, &params)
		key, _ := hex.DecodeString(params.Data)
		var res map[string]map[string]any
		if json.Unmarshal(result, &res) != nil || res["response"] == nil {
			return result
		}
		fn(key, res["response"])
		out, _ := json.Marshal(res)
		return out
	}
}

// proofOps is the data of each proof op of an abci_query response.
func proofOps(t *testing.T, resp map[string]any) [][]byte {
	t.Helper()
	po, _ := resp["proofOps"].(map[string]any)
	ops, _ := po["ops"].([]any)
	var out [][]byte
	for _, op := range ops {
		s, _ := op.(map[string]any)["data"].(string)
		data, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Errorf("proof op data: %v", err)
		}
		out = append(out, data)
	}
	if len(out) == 0 {
		t.Errorf("abci_query response without proof ops: %v", resp)
		out = append(out, nil)
	}
	return out
}

// setProofOps replaces the data of the response's proof ops, in order.
func setProofOps(resp map[string]any, data [][]byte) {
	ops := resp["proofOps"].(map[string]any)["ops"].([]any)
	for i, op := range ops {
		op.(map[string]any)["data"] = base64.StdEncoding.EncodeToString(data[i])
	}
}

// relabelNonexist is the ICS23 non-existence proof data for another key,
// key: its neighbours stay, and so does the root it computes.
func relabelNonexist(t *testing.T, data, key []byte) []byte {
	t.Helper()
	var cp ics23.CommitmentProof
	if err := cp.Unmarshal(data); err != nil || cp.GetNonexist() == nil {
		t.Errorf("proof of an absent key: %v; want a non-existence proof", err)
		return data
	}
	cp.GetNonexist().Key = key
	out, err := cp.Marshal()
	if err != nil {
		t.Error(err)
	}
	return out
}

// keepABCIHeight is rw with the ABCI answer's own height left as the
// node gave it (queryRewrite sets it to the answer's).
func keepABCIHeight(rw func(clienttest.Call, json.RawMessage) json.RawMessage) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		var before map[string]map[string]any
		if json.Unmarshal(result, &before) != nil || before["response"] == nil {
			return result
		}
		out := rw(call, result)
		var after map[string]map[string]any
		if json.Unmarshal(out, &after) != nil || after["response"] == nil {
			return out
		}
		after["response"]["height"] = before["response"]["height"]
		b, _ := json.Marshal(after)
		return b
	}
}

// accessKeyOf is the state key of a patient's access event (0x0c |
// patient id | sequence).
func accessKeyOf(patientID []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{0x0c}, patientID...), seq)
}

// upstreamQuery asks node the abci_query of call again with data as its
// request, and returns the decoded answer.
func upstreamQuery(node string, call clienttest.Call, data []byte, resp proto.Message) error {
	var params map[string]any
	if err := json.Unmarshal(call.Params, &params); err != nil {
		return err
	}
	params["data"] = hex.EncodeToString(data)
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "abci_query", "params": params})
	r, err := http.Post(node, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer r.Body.Close()
	var env struct {
		Result struct {
			Response struct {
				Value string `json:"value"`
			} `json:"response"`
		} `json:"result"`
	}
	if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(env.Result.Response.Value)
	if err != nil {
		return err
	}
	return proto.Unmarshal(raw, resp)
}
