package client

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	abcitypes "github.com/cometbft/cometbft/abci/types"

	"github.com/emrchain/emrchain/app"
)

// FuzzSharedPatient: the patient a node's event names (StudyShares reads
// it from the transaction index) is nil, or 32 bytes whose lowercase or
// uppercase hex, then "/", begins the "record" attribute of an emrchain
// event; a well-formed attribute always gives its patient.
func FuzzSharedPatient(f *testing.F) {
	id := bytes.Repeat([]byte{0xab}, app.PatientIDSize)
	f.Add(app.EventType, "record", hex.EncodeToString(id)+"/3")
	f.Add(app.EventType, "record", strings.ToUpper(hex.EncodeToString(id))+"/1")
	f.Add(app.EventType, "record", hex.EncodeToString(id))
	f.Add(app.EventType, "patient", hex.EncodeToString(id)+"/3")
	f.Add("tm", "record", hex.EncodeToString(id)+"/3")
	f.Add(app.EventType, "record", "abab/3")
	f.Add(app.EventType, "record", "zz"+hex.EncodeToString(id)[2:]+"/3")
	f.Fuzz(func(t *testing.T, typ, key, value string) {
		events := []abcitypes.Event{{Type: typ, Attributes: []abcitypes.EventAttribute{{Key: key, Value: value, Index: true}}}}
		got := sharedPatient(events)
		prefix, _, hasSlash := strings.Cut(value, "/")
		want, err := hex.DecodeString(prefix)
		wellFormed := typ == app.EventType && key == "record" && hasSlash && err == nil && len(want) == app.PatientIDSize
		if wellFormed != (got != nil) || (got != nil && !bytes.Equal(got, want)) {
			t.Fatalf("sharedPatient(%q %q=%q) = %x, want %x (well formed: %v)", typ, key, value, got, want, wellFormed)
		}
	})
}
