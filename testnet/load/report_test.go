package load

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/cometbft/cometbft/test/loadtime/payload"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestUnknownOutcomeIsNotASuccess: when a block's results never come (the
// observer gives up after resultsWait), its txs are booked as outcome
// unknown: committed, but not successes in the window, tx/s or latency.
func TestUnknownOutcomeIsNotASuccess(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, watch := range []bool{false, true} {
		o := newObserver(nil, watch)
		var b block
		var txs []*plannedTx
		if watch {
			b.Data.Txs = [][]byte{loadtimeTx(t, start.Add(2*time.Second))}
		} else {
			tx := &plannedTx{raw: []byte("x")}
			tx.hash = sha256.Sum256(tx.raw)
			tx.sendNs.Store(start.Add(2 * time.Second).UnixNano())
			tx.accepted.Store(true)
			o.track([]*plannedTx{tx})
			txs = []*plannedTx{tx}
			b.Data.Txs = [][]byte{tx.raw}
		}
		o.record(5, &b, nil, start.Add(3*time.Second), time.Time{}) // results never came
		s := buildResult(Config{Name: "x", Duration: 10 * time.Second, Rate: 1}, o, newSendStats(), txs, start, start.Add(10*time.Second)).Summary
		if s.CommittedInWindow != 0 || s.Latency.Count != 0 || s.OutcomeUnknown != 1 || len(s.CommittedFailed) != 0 {
			t.Errorf("watch %v: in window %d, latencies %d, unknown %d, failed %v: want 0, 0, 1, none",
				watch, s.CommittedInWindow, s.Latency.Count, s.OutcomeUnknown, s.CommittedFailed)
		}
	}
}

// TestSummarySaysWhereLatencyStarts: the summary and its text name the
// latency clock of the mode.
func TestSummarySaysWhereLatencyStarts(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, c := range []struct {
		rate  float64
		watch bool
		from  string
		text  string
	}{{100, false, "due", "due time to commit"}, {0, false, "first_send", "first send to commit"}, {0, true, "loadtime_payload", "loadtime timestamp to commit"}} {
		var txs []*plannedTx
		if !c.watch {
			txs = []*plannedTx{}
		}
		r := buildResult(Config{Name: "x", Duration: time.Second, Rate: c.rate}, newObserver(nil, c.watch), newSendStats(), txs, start, start.Add(time.Second))
		var text bytes.Buffer
		r.WriteText(&text)
		if r.Summary.LatencyFrom != c.from || !bytes.Contains(text.Bytes(), []byte(c.text)) {
			t.Errorf("rate %v watch %v: latency_from %q, text %q", c.rate, c.watch, r.Summary.LatencyFrom, text.String())
		}
	}
}

// loadtimeTx is a tx of CometBFT's loadtime tool, stamped sent.
func loadtimeTx(t *testing.T, sent time.Time) []byte {
	t.Helper()
	raw, err := payload.NewBytes(&payload.Payload{Size: 300, Time: timestamppb.New(sent)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
