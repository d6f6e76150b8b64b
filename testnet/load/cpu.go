package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emrchain/emrchain/internal/ctxtime"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on Linux whatever the kernel's HZ (it is part of the ABI; without
// cgo, Go cannot ask sysconf(_SC_CLK_TCK)).
const userHZ = 100

// processesCPU is the CPU time (user + system) the processes pids have
// used so far, from /proc (Linux).
func processesCPU(pids []int) (time.Duration, error) {
	var ticks int64
	for _, pid := range pids {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
		}
		t, err := statCPUTicks(string(raw))
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// statCPUTicks is utime + stime, fields 14 and 15 of a /proc/<pid>/stat
// line. Field 2, the command name, is in parentheses and may hold spaces
// and parentheses: the fields after it are counted from its last ')'.
func statCPUTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return u + s, nil
}

// checkCPUPids refuses, before anything starts, pids (of --cpu-pids) that
// are not there to sample, or given twice (their CPU time would count
// twice).
func checkCPUPids(pids []int) error {
	seen := make(map[int]bool, len(pids))
	for _, pid := range pids {
		if seen[pid] {
			return fmt.Errorf("--cpu-pids: process %d given twice", pid)
		}
		seen[pid] = true
	}
	if _, err := processesCPU(pids); err != nil {
		return fmt.Errorf("--cpu-pids: %w", err)
	}
	return nil
}

// startCPU samples the CPU time of pids over [from, to] (sampleCPU); nil,
// whose set does nothing, when there are no pids.
func startCPU(ctx context.Context, pids []int, from, to time.Time) *cpuWindow {
	if len(pids) == 0 {
		return nil
	}
	return sampleCPU(ctx, pids, from, to)
}

// windowEdges are two samples of a cumulative figure, taken in the
// background at the measured window's edges: what the load does before the
// window (setup, signing) and after it (the drain) stays out of their
// difference, so that a chain the load tool sets up compares with one
// loaded by another tool (load watch).
type windowEdges[T any] struct {
	done        chan struct{}
	first, last T
	err         error
}

// sampleEdges calls sample at from and at to.
func sampleEdges[T any](ctx context.Context, from, to time.Time, sample func(context.Context) (T, error)) *windowEdges[T] {
	e := &windowEdges[T]{done: make(chan struct{})}
	go func() {
		defer close(e.done)
		ctxtime.Sleep(ctx, time.Until(from))
		if e.first, e.err = sample(ctx); e.err != nil {
			return
		}
		ctxtime.Sleep(ctx, time.Until(to))
		if e.err = ctx.Err(); e.err != nil {
			return
		}
		e.last, e.err = sample(ctx)
	}()
	return e
}

// wait returns the two samples once the second is taken.
func (e *windowEdges[T]) wait() (first, last T, err error) {
	<-e.done
	return e.first, e.last, e.err
}

// cpuWindow is the CPU time of some processes (the nodes) over the
// measured window (windowEdges).
type cpuWindow struct {
	pids  int
	edges *windowEdges[time.Duration]
}

// sampleCPU reads the CPU time of pids at from and at to.
func sampleCPU(ctx context.Context, pids []int, from, to time.Time) *cpuWindow {
	return &cpuWindow{len(pids), sampleEdges(ctx, from, to, func(context.Context) (time.Duration, error) {
		return processesCPU(pids)
	})}
}

// set waits for the window's end and puts the CPU time into s, also per
// committed tx: the CPU time per second of the window over the committed
// tx/s (TPS, over whole block intervals; set before). Not over the txs
// committed in the window: the nodes burn CPU all the time, but a fixed
// window holds a block more or less (at saturation, blocks of 4,500 txs
// every 2 s: some 5 % of a 35-s window), which moved the figure as it
// moved tx/s before TPS was counted over whole intervals. Without whole
// intervals (TPSBasis "window") the two are the same. On a nil window (no
// pids) it does nothing.
func (c *cpuWindow) set(s *Summary) error {
	if c == nil {
		return nil
	}
	c0, c1, err := c.edges.wait()
	if err != nil {
		return fmt.Errorf("--cpu-pids: %w", err)
	}
	used := c1 - c0
	s.CPUPids = c.pids
	s.NodeCPUS = math.Round(used.Seconds()*1000) / 1000
	switch {
	case s.CommittedInWindow == 0:
	case s.TPSBasis == "blocks" && s.TPS > 0 && s.WindowS > 0:
		s.NodeCPUMsPTx = math.Round(used.Seconds()/s.WindowS/s.TPS*1e6) / 1000
	default:
		s.NodeCPUMsPTx = math.Round(used.Seconds()*1e6/float64(s.CommittedInWindow)) / 1000
	}
	return nil
}
