package client

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"testing"

	abcitypes "github.com/cometbft/cometbft/abci/types"

	"github.com/emrchain/emrchain/app"
)

// recordRefPattern is an event's record attribute as the app writes it:
// the patient id in lowercase hex, "/", a decimal sequence from 1.
var recordRefPattern = regexp.MustCompile(`^([0-9a-f]{64})/([1-9][0-9]*)$`)

// FuzzSharedPatient: the patient a node's event names (StudyShares reads
// it from the transaction index) is nil, or the 32 bytes whose hex begins
// the record attribute of an emrchain event written as the app writes it;
// such an attribute always gives its patient.
func FuzzSharedPatient(f *testing.F) {
	id := bytes.Repeat([]byte{0xab}, app.PatientIDSize)
	f.Add(app.EventType, app.RecordAttribute, hex.EncodeToString(id)+"/3")
	f.Add(app.EventType, app.RecordAttribute, strings.ToUpper(hex.EncodeToString(id))+"/1")
	f.Add(app.EventType, app.RecordAttribute, hex.EncodeToString(id))
	f.Add(app.EventType, app.RecordAttribute, hex.EncodeToString(id)+"/03")
	f.Add(app.EventType, app.RecordAttribute, hex.EncodeToString(id)+"/0")
	f.Add(app.EventType, "patient", hex.EncodeToString(id)+"/3")
	f.Add("tm", app.RecordAttribute, hex.EncodeToString(id)+"/3")
	f.Add(app.EventType, app.RecordAttribute, "abab/3")
	f.Add(app.EventType, app.RecordAttribute, "zz"+hex.EncodeToString(id)[2:]+"/3")
	f.Fuzz(func(t *testing.T, typ, key, value string) {
		events := []abcitypes.Event{{Type: typ, Attributes: []abcitypes.EventAttribute{{Key: key, Value: value, Index: true}}}}
		got := sharedPatient(events)
		var want []byte
		if m := recordRefPattern.FindStringSubmatch(value); m != nil && typ == app.EventType && key == app.RecordAttribute {
			if _, err := strconv.ParseUint(m[2], 10, 64); err == nil {
				want, _ = hex.DecodeString(m[1])
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("sharedPatient(%q %q=%q) = %x, want %x", typ, key, value, got, want)
		}
	})
}
