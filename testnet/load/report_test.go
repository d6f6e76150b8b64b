package load

import (
	"bytes"
	"testing"
	"time"
)

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
