package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestBreakGlassFollowHeaderFitsAReadOfManyRecords: a read of many
// records in the first batch (RECORDS gets no room made for it) is under
// the header: the header is printed in one batch with the first reads.
// (A named address no longer tells, since addressLabels makes room for
// it; the review of 8f321b6 found the older test could not fail any
// more.) It fails if followBreakGlass prints the header on its own.
func TestBreakGlassFollowHeaderFitsAReadOfManyRecords(t *testing.T) {
	kr, node := namedServiceNode(t)
	// One transaction (tx 0x01) reading records 1..12: RECORDS "1,2,...,12".
	for rec := uint64(1); rec <= 12; rec++ {
		node.add(10, 0x01)
		node.entries[len(node.entries)-1].Event.RecordSequence = rec
	}
	node.add(11, 0x02)
	out := followBreakGlassFor(t, &cli{kr: kr}, node, time.Time{}, nil)
	checkUnderTheHeader(t, out, 3)
}

// TestAuditFollowMakesRoomForANamedAccessor: audit --follow's WHO column
// makes room for a keyring-named accessor (labelWidth), so a read by one,
// logged after the header was printed, lines up under it. It fails with
// room for a bare address only.
func TestAuditFollowMakesRoomForANamedAccessor(t *testing.T) {
	kr, doc := keyringWith(t, "dr-longname-of-the-ward")
	log := &fakeAccessLog{height: 9} // empty when it starts: the header alone
	ctx, c := fakeNodeClient(t, log.serve, 1500*time.Millisecond)
	pid := bytes.Repeat([]byte{0x5B}, 32)
	var stdout, stderr bytes.Buffer
	a := &cli{kr: kr, stdout: &stdout, stderr: &stderr}
	label, width := a.addressLabels()
	f := &auditFollower{a: a, c: c, patientID: pid, label: label, labelWidth: width, members: map[string]*emrv1.Member{}}
	time.AfterFunc(400*time.Millisecond, func() {
		log.mu.Lock()
		log.events = append(log.events, &emrv1.AccessEvent{
			Sequence: 1, RecordSequence: 1, Accessor: doc.Address(), Purpose: emrv1.Purpose_PURPOSE_TREATMENT,
			Height: 12, Time: timestamppb.New(time.Unix(1_700_000_012, 0)), TxHash: bytes.Repeat([]byte{0x03}, 32),
		})
		log.height = 12
		log.mu.Unlock()
	})
	if err := f.run(ctx, nil, 9, 100*time.Millisecond); err != nil {
		t.Fatalf("run: %v; stderr: %s", err, stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "(dr-longname-of-the-ward)") {
		t.Fatalf("the read by the named accessor was not printed with its name:\n%s", out)
	}
	checkUnderTheHeader(t, out, 2)
}
