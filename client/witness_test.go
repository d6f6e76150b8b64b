package client_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
)

// TestCheckWitnessesNamesEach: every witness is asked at once, so one that
// cannot be reached (its wait spent retrying) is named with its own error,
// connection refused, and a witness that answers is not blamed for the
// wait the other used up; the node's own address is not a witness.
func TestCheckWitnessesNamesEach(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close() // nothing listens there from now on
	healthy := strings.Replace(node.RPC, "127.0.0.1", "localhost", 1)

	ctx := context.Background()
	if err := client.CheckWitnesses(ctx, node.RPC, []string{node.RPC, healthy}, 5*time.Second); err != nil {
		t.Fatalf("the node itself and an answering witness: %v", err)
	}
	err = client.CheckWitnesses(ctx, node.RPC, []string{down, healthy}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "witness "+down) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("a witness nothing listens at: %v, want it named with connection refused", err)
	}
	if strings.Contains(err.Error(), healthy) {
		t.Fatalf("the answering witness %s is blamed: %v", healthy, err)
	}
}
