package testnet_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet"
)

// TestLyingNodeRefused: a client in verified mode talks to node0 through a
// man in the middle that lies, with the three other validators as the
// light client's witnesses. Every lie — a record's hash changed, a record
// hidden, a transaction said to have failed — is an ErrVerification, never
// an answer; headers with another app hash are refused too, or outvoted by
// the witnesses' headers, which the honest data is then verified against.
// Never is a wrong answer returned. A client of an honest node reads the
// truth.
func TestLyingNodeRefused(t *testing.T) {
	ctx, net := setup(t)
	tr := testnet.Transport{Net: net}
	clinician, _, id := careTeam(t, tr, apptest.HospitalB, "lying")
	mustSubmit(t, tr, "add record", clinician, apptest.AddRecord(id, "imaging", "lying-ct"))
	seq, err := net.NextSequence(ctx, clinician.Address)
	if err != nil {
		t.Fatal(err)
	}
	read, err := net.Submit(ctx, clinician.Tx(net.ChainID, seq, apptest.Access(id, emrv1.Purpose_PURPOSE_TREATMENT, 1)))
	if err != nil {
		t.Fatal(err)
	}

	gen, err := os.ReadFile(filepath.Join(net.Home(1), "config", "genesis.json"))
	if err != nil {
		t.Fatal(err)
	}
	chainID, trust, err := client.TrustFromGenesis(ctx, net.RPCURL(1), gen, 0)
	if err != nil {
		t.Fatalf("trust from genesis: %v", err)
	}
	witnesses := []string{net.RPCURL(1), net.RPCURL(2), net.RPCURL(3)}
	newClient := func(node string) *client.Client {
		t.Helper()
		c, err := client.New(ctx, client.Config{Node: node, ChainID: chainID, Witnesses: witnesses, Verify: true, Trust: trust, Timeout: 15 * time.Second})
		if err != nil {
			t.Fatalf("client of %s: %v", node, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	pid := hex.EncodeToString(id)
	records := func(c *client.Client) (*emrv1.QueryRecordsResponse, error) {
		var resp emrv1.QueryRecordsResponse
		return &resp, c.Query(ctx, "Records", &emrv1.QueryRecordsRequest{PatientId: pid}, &resp)
	}

	// A client reads the state under its node's newest header, so the read's
	// block (which follows the record's) must be below every node's head
	// for that state to hold the record.
	for i := range net.Len() {
		if err := net.WaitHeight(ctx, i, read.Height+1); err != nil {
			t.Fatal(err)
		}
	}

	// Every client reaches its node through a proxy; the one in front of
	// node0 also lies.
	proxy := clienttest.NewProxy(t, net.RPCURL(0))
	honest := clienttest.NewProxy(t, net.RPCURL(2))
	truth, err := records(newClient(proxy.URL))
	if err != nil {
		t.Fatalf("honest records through the proxy: %v", err)
	}
	if len(truth.Records) != 1 || !bytes.Equal(truth.Records[0].CiphertextSha256, apptest.Blob("lying-ct")) {
		t.Fatalf("records = %v", truth.Records)
	}

	for _, tc := range []struct {
		name    string
		rewrite func(clienttest.Call, json.RawMessage) json.RawMessage
		// headersOnly: the lie is in headers, which the light client also
		// gets from the witnesses; it may drop the lying primary as its
		// header source and verify the (honest) data against theirs.
		headersOnly bool
		tx          bool
	}{
		{"AlteredRecordHash", rewriteRecords(func(r *emrv1.QueryRecordsResponse) { r.Records[0].CiphertextSha256[0] ^= 1 }), false, false},
		{"HiddenRecord", rewriteRecords(func(r *emrv1.QueryRecordsResponse) { r.Records, r.Proofs = nil, r.Proofs[:1] }), false, false},
		{"ForgedHeader", clienttest.ForgeAppHashExcept(trust.Height), true, false},
		{"ForgedTxResult", failTx, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy.SetRewrite(tc.rewrite)
			defer proxy.SetRewrite(nil)
			c := newClient(proxy.URL)
			if tc.tx {
				_, err := c.TxStatus(ctx, read.Hash)
				if !errors.Is(err, client.ErrVerification) {
					t.Fatalf("lie %s: err = %v, want ErrVerification", tc.name, err)
				}
				t.Logf("refused: %v", err)
				return
			}
			got, err := records(c)
			switch {
			case errors.Is(err, client.ErrVerification):
				t.Logf("refused: %v", err)
			case err == nil && tc.headersOnly && len(got.Records) == 1 && proto.Equal(got.Records[0], truth.Records[0]):
				t.Logf("the light client verified against the witnesses' headers: the true answer")
			default:
				t.Fatalf("lie %s: err = %v, records %v; want ErrVerification (or, for a header lie, the truth)", tc.name, err, got.Records)
			}
		})
	}

	// The honest nodes tell the truth, verified.
	c := newClient(honest.URL)
	got, err := records(c)
	if err != nil || len(got.Records) != 1 || !proto.Equal(got.Records[0], truth.Records[0]) {
		t.Fatalf("records from node2: %v, %v", got.Records, err)
	}
	res, err := c.TxStatus(ctx, read.Hash)
	if err != nil || res.Height != read.Height {
		t.Fatalf("the read's tx from node2: %+v, %v", res, err)
	}
}

// rewriteRecords changes the Records answers of abci_query.
func rewriteRecords(fn func(*emrv1.QueryRecordsResponse)) func(clienttest.Call, json.RawMessage) json.RawMessage {
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		var params struct {
			Path string `json:"path"`
		}
		_ = json.Unmarshal(call.Params, &params)
		if call.Method != "abci_query" || params.Path != app.QueryPathPrefix+"Records" {
			return result
		}
		var res struct {
			Response map[string]any `json:"response"`
		}
		if json.Unmarshal(result, &res) != nil {
			return result
		}
		value, _ := res.Response["value"].(string)
		raw, _ := base64.StdEncoding.DecodeString(value)
		var resp emrv1.QueryRecordsResponse
		if proto.Unmarshal(raw, &resp) != nil || len(resp.Records) == 0 {
			return result
		}
		fn(&resp)
		out, _ := proto.Marshal(&resp)
		res.Response["value"] = base64.StdEncoding.EncodeToString(out)
		b, _ := json.Marshal(res)
		return b
	}
}

// failTx says every transaction failed.
func failTx(call clienttest.Call, result json.RawMessage) json.RawMessage {
	if call.Method != "tx" {
		return result
	}
	var r map[string]any
	if json.Unmarshal(result, &r) != nil {
		return result
	}
	if txr, ok := r["tx_result"].(map[string]any); ok {
		txr["code"] = 16
	}
	b, _ := json.Marshal(r)
	return b
}
