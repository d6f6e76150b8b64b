package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/libs/log"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestQuerySlots: no more queries run at once than the server has slots;
// one more waits, and is answered DEADLINE_EXCEEDED, naming the slots, if
// its deadline passes first; once a slot is free the next query runs.
func TestQuerySlots(t *testing.T) {
	s := newQueryServerOver(nil, log.NewNopLogger(), 2)
	release := make(chan struct{})
	running := make(chan struct{}, 3)
	slow := func(ctx context.Context, _ *emrv1.QueryParamsRequest) (*emrv1.QueryParamsResponse, error) {
		running <- struct{}{}
		select {
		case <-release:
			return &emrv1.QueryParamsResponse{Height: 1}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := serveQuery(context.Background(), s, "Params", &emrv1.QueryParamsRequest{}, slow)
			done <- err
		}()
	}
	<-running
	<-running

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := serveQuery(ctx, s, "Params", &emrv1.QueryParamsRequest{}, slow)
	if grpcstatus.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "2 query slots") {
		t.Fatalf("a third query with both slots busy: %v, want DEADLINE_EXCEEDED naming the slots", err)
	}
	if len(running) != 0 {
		t.Fatal("a third query ran while both slots were busy")
	}

	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := serveQuery(context.Background(), s, "Params", &emrv1.QueryParamsRequest{}, slow); err != nil || resp.Height != 1 {
		t.Fatalf("a query once the slots are free: %v %v", resp, err)
	}
}
