package app_test

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// genesisSeeds are app_states as MarshalGenesis writes them (the test
// consortium, the default genesis) and a few it would refuse.
func genesisSeeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	marshal := func(g *emrv1.GenesisState) []byte {
		raw, err := app.MarshalGenesis(g)
		if err != nil {
			tb.Fatal(err)
		}
		return raw
	}
	full := apptest.Consortium()
	full.Members = append(full.Members, apptest.NewActor("genesis-doc").GenesisMember(emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB))
	twice := apptest.Consortium()
	twice.Members = append(twice.Members, twice.Members[0])
	patient := apptest.Consortium()
	patient.Members[0].Role = emrv1.Role_ROLE_PATIENT
	noCategories := apptest.Consortium()
	noCategories.Params.Categories = nil
	limits := apptest.Consortium()
	limits.Params.Consensus = app.DefaultConsensusLimits()
	otherLimits := apptest.Consortium()
	otherLimits.Params.Consensus = app.DefaultConsensusLimits()
	otherLimits.Params.Consensus.BlockMaxBytes = 2 << 20
	return map[string][]byte{
		"consensus-limits":       marshal(limits),
		"other-consensus-limits": marshal(otherLimits),
		"consortium":             marshal(full),
		"default":                marshal(app.DefaultGenesis()),
		"member-twice":           marshal(twice),
		"patient-member":         marshal(patient),
		"no-categories":          marshal(noCategories),
		"compact":                []byte(`{"params":{"categories":["x"],"maxTxBytes":"1024","maxBlobBytes":"1","maxRecordsPerAccess":1,"maxRewrapsPerRotation":1,"maxPageSize":1,"maxWrappedKeyBytes":93}}`),
		"enum-number":            []byte(`{"params":{"categories":["x"],"max_tx_bytes":1024,"max_blob_bytes":1,"max_records_per_access":1,"max_rewraps_per_rotation":1,"max_page_size":1,"max_wrapped_key_bytes":93},"organizations":[{"id":"o","name":"O","kind":99}]}`),
		"null-member":            []byte(`{"params":{"categories":["x"]},"members":[null]}`),
		"empty-object":           []byte(`{}`),
		"null":                   []byte(`null`),
		"empty":                  nil,
		"trailing-object":        append(marshal(app.DefaultGenesis()), []byte(`{}`)...),
	}
}

// FuzzParseGenesis: ParseGenesis never panics; what it refuses is an
// ErrInvalidGenesis; a genesis it accepts has categories and no member
// twice or a patient among them, and MarshalGenesis
// writes it as an app_state that parses to the same genesis, and starts a
// chain (InitChain) with the same params.
func FuzzParseGenesis(f *testing.F) {
	for _, raw := range genesisSeeds(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, appState []byte) {
		g, err := app.ParseGenesis(appState)
		if err != nil {
			if !errors.Is(err, app.ErrInvalidGenesis) || g != nil {
				t.Fatalf("ParseGenesis = %v, %v; want an ErrInvalidGenesis", g, err)
			}
			return
		}
		// What validation promises, checked here without it: categories,
		// no patient among the members, no signing key twice.
		keys := map[string]bool{}
		for _, m := range g.Members {
			if m == nil || m.Role == emrv1.Role_ROLE_PATIENT || keys[string(m.SignPubKey)] {
				t.Fatalf("accepted a genesis with member %v twice, or a patient, or none", m)
			}
			keys[string(m.SignPubKey)] = true
		}
		if len(g.Params.GetCategories()) == 0 {
			t.Fatalf("accepted a genesis without categories: %v", g.Params)
		}
		raw, err := app.MarshalGenesis(g)
		if err != nil {
			t.Fatalf("an accepted genesis does not marshal: %v", err)
		}
		again, err := app.ParseGenesis(raw)
		if err != nil {
			t.Fatalf("a marshalled genesis does not parse: %v\n%s", err, raw)
		}
		if !proto.Equal(g, again) {
			t.Fatalf("a genesis does not survive a round trip:\n%v\n%v", g, again)
		}
		if raw2, _ := app.MarshalGenesis(again); !bytes.Equal(raw, raw2) {
			t.Fatalf("MarshalGenesis is not stable:\n%s\n%s", raw, raw2)
		}
		// The chain takes CometBFT's limits from consensus_params;
		// app_state may only repeat them (TestGenesisConsensusLimits).
		// Started here under the ones it repeats, or the defaults.
		want := proto.Clone(g.Params).(*emrv1.Params)
		if want.Consensus == nil {
			want.Consensus = app.DefaultConsensusLimits()
		}
		c := apptest.New(t, apptest.Options{Genesis: g, Consensus: want.Consensus})
		var params emrv1.QueryParamsResponse
		c.Query("Params", &emrv1.QueryParamsRequest{}, &params)
		if !proto.Equal(params.Params, want) {
			t.Fatalf("the chain started with params %v, genesis has %v", params.Params, want)
		}
	})
}
