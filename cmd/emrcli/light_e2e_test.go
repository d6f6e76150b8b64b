package main

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
)

// TestTwoRunsShareAHome: emrcli runs of one home work at once (a long
// download in one terminal and "emrcli records" in another; a script that
// uploads in parallel). The light store is locked only for the moment a
// run copies it or writes its new headers back, never for a whole run:
// here another run (a client of the same home, as emrcli's a.client()
// makes) holds the home for a second, verifying a header meanwhile, and
// three commands started during that second all succeed. (Session 36's
// review: the second run failed at once with "open the light store in
// HOME/light (is another emrcli using it?): resource temporarily
// unavailable".)
func TestTwoRunsShareAHome(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-shared-home"})
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_NODE=" + node.RPC, "EMRCLI_KEYRING_BACKEND=test", "EMRCLI_SIDECAR="}
	e.ok("light", "init", "--genesis", node.Genesis)
	e.ok("params") // the store exists and verifies

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	other, err := client.New(ctx, client.Config{Node: node.RPC, Home: filepath.Join(e.home, "light"), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	var otherErr error
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(200 * time.Millisecond)
		_, otherErr = other.VerifyLatest(ctx)
		time.Sleep(800 * time.Millisecond)
		otherErr = errors.Join(otherErr, other.Close())
	}()
	runs := make([]result, 3)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { runs[i] = e.run("params") })
	}
	wg.Wait()
	<-released
	for i, r := range runs {
		if r.code != 0 {
			t.Errorf("emrcli params (%d of %d at once) while another run of the same home was open (closed 1 s later): exit %d\n%s", i+1, len(runs), r.code, r.stderr)
		}
	}
	if otherErr != nil {
		t.Errorf("the other run: %v", otherErr)
	}
}
