package sidecar

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func strconvMs(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func newKey(name string) ed25519.PrivKey {
	return ed25519.GenPrivKeyFromSecret([]byte("sidecar-test/" + name))
}

func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o600) }

// TestAppCodes pins the names the chain view reads to the app's.
func TestAppCodes(t *testing.T) {
	if app.QueryPathPrefix != QueryPathPrefix {
		t.Fatalf("query path prefix %q != %q", app.QueryPathPrefix, QueryPathPrefix)
	}
	if app.PatientIDSize != patientIDSize {
		t.Fatalf("patient ids are %d bytes; the sidecar expects %d", app.PatientIDSize, patientIDSize)
	}
	if app.EventType != appEventType || app.BlobAttribute != appBlobAttribute {
		t.Fatalf("the app names blobs in event attribute %s.%s; the sidecar reads %s.%s",
			app.EventType, app.BlobAttribute, appEventType, appBlobAttribute)
	}
	share := app.MsgName(&emrv1.Msg{Sum: &emrv1.Msg_ShareRecord{}})
	if app.ActionAttribute != appActionAttribute || share != appShareAction {
		t.Fatalf("the app names a ShareRecord %s=%q; the sidecar reads %s=%q", app.ActionAttribute, share, appActionAttribute, appShareAction)
	}
	if app.BlobRefShare != queryShare {
		t.Fatalf("the app's BlobRefs name shares %q; the sidecar reads %q", app.BlobRefShare, queryShare)
	}
	if app.PatientAttribute != appPatientAttribute || app.CategoryAttribute != appCategoryAttribute {
		t.Fatalf("the app names the patient and category in attributes %q and %q; the sidecar reads %q and %q",
			app.PatientAttribute, app.CategoryAttribute, appPatientAttribute, appCategoryAttribute)
	}
}

// TestCategoryRule: the sidecar refuses an upload's category exactly when
// the chain would refuse it in a record.
func TestCategoryRule(t *testing.T) {
	pid := apptest.PatientID("category-rule")
	for _, c := range []string{"lab-results", "imaging", "a", "0.x_y-z", strings.Repeat("a", 64),
		"", "Lab", "-lab", ".lab", "lab results", "lab/x", "läb", strings.Repeat("a", 65)} {
		chain := app.ValidateMsg(apptest.AddRecord(pid, c, "x")) == nil
		if sidecar := checkCategory(c) == nil; sidecar != chain {
			t.Errorf("category %q: the chain accepts it: %v, the sidecar: %v", c, chain, sidecar)
		}
	}
}

// TestKeySignerAddress: the signer's address is the chain's address of its key.
func TestKeySignerAddress(t *testing.T) {
	k := KeySigner{Key: newKey("x")}
	if string(app.AddressOf(k.PubKey())) != string(k.Address()) {
		t.Fatal("KeySigner.Address differs from app.AddressOf")
	}
}
