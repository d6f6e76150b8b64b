package sidecar

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
)

func strconvMs(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func newKey(name string) ed25519.PrivKey {
	return ed25519.GenPrivKeyFromSecret([]byte("sidecar-test/" + name))
}

func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o600) }

// TestAppCodes pins the codes the chain view decodes to the app's.
func TestAppCodes(t *testing.T) {
	if app.ErrNotFound.Code() != appCodeNotFound || app.Codespace != appCodespace {
		t.Fatalf("app.ErrNotFound is code %d in %q; the sidecar expects %d in %q",
			app.ErrNotFound.Code(), app.Codespace, appCodeNotFound, appCodespace)
	}
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
}

// TestKeySignerAddress: the signer's address is the chain's address of its key.
func TestKeySignerAddress(t *testing.T) {
	k := KeySigner{Key: newKey("x")}
	if string(app.AddressOf(k.PubKey())) != string(k.Address()) {
		t.Fatal("KeySigner.Address differs from app.AddressOf")
	}
}
