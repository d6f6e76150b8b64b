package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestFollowSurvivesAWitnessOutage: audit --follow goes on through a
// witness that does not answer for a while (restarting), which the light
// client reports as a verification failure ("no witness could
// cross-check the header"): it warns once, and says when the log is
// read again (the session-51 review: the first version ended on it, exit
// 1).
func TestFollowSurvivesAWitnessOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-review-follow"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, trust := node.Trust(t, ctx)
	witness := clienttest.NewProxy(t, node.RPC)
	var down atomic.Bool
	witness.SetRoute(func(clienttest.Call) string {
		if down.Load() {
			return "http://127.0.0.1:1" // nothing listens: the witness is restarting
		}
		return ""
	})
	c, err := client.New(ctx, client.Config{Node: node.RPC, Verify: true, Trust: trust, Home: filepath.Join(t.TempDir(), "light"),
		Witnesses: []string{witness.URL}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A patient, whose (empty) log is followed.
	patient, _ := keyring.Generate("patient")
	identity, _ := client.IdentityFromNameAndBirth("Ada Lovelace", "1815-12-10")
	seed, _ := client.PatientSeed(patient.PatientSecret, identity)
	kek, _ := crypto.GenerateKey()
	enroll := client.EnrollPatientMsg(patient.PubKey(), patient.EncPubKey(), seed, kek)
	if _, err := c.Submit(ctx, patient, enroll); err != nil {
		t.Fatal(err)
	}
	pid := enroll.GetEnrollPatient().PatientId
	if _, _, err := c.AllAccessEvents(ctx, pid); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	f := &auditFollower{a: &cli{stdout: &stdout, stderr: &stderr}, c: c, patientID: pid, label: func(s string) string { return s }, verified: true, members: map[string]*emrv1.Member{}}
	down.Store(true)
	time.AfterFunc(3*time.Second, func() { down.Store(false) })
	fctx, fcancel := context.WithTimeout(ctx, 12*time.Second)
	defer fcancel()
	start := time.Now()
	err = f.run(fctx, nil, 0, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("audit --follow ended after %s while its witness did not answer for 3 s: %v\nstderr: %s",
			time.Since(start).Round(time.Millisecond), err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "the access log is read again") {
		t.Fatalf("no recovery said: %s", stderr.String())
	}
	// One warning for one outage, though each failure names another
	// height (the re-review: it warned at every poll).
	if n := strings.Count(stderr.String(), "warning: reading the access log"); n != 1 {
		t.Fatalf("one witness outage warned about %d times, want once:\n%s", n, stderr.String())
	}
}
