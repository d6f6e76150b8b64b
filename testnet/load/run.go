package load

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Bounds of a run.
const (
	// MaxTxsLimit bounds the transactions one run signs and sends.
	MaxTxsLimit = 5_000_000
	// MaxDuration bounds the measured phase.
	MaxDuration = 30 * time.Minute
	// saturationBudget is how many txs per second of the measured phase
	// are signed ahead for a run without a rate (more than any 2-core
	// machine commits; a run that uses them up says so).
	saturationBudget = 6000
	// maxConns bounds the senders per node (each is a goroutine and a
	// connection).
	maxConns = 1024
)

// Config is one load run.
type Config struct {
	// Name labels the results ("emrchain").
	Name   string
	Target Target
	// Prefix makes the actors' names, and so their keys and patient ids,
	// unique on the chain; empty means one derived from the clock. Two runs
	// on one chain need different prefixes.
	Prefix string
	Plan   PlanConfig
	Mix    Mix
	// Rate is the target rate of the measured phase in tx/s; 0 sends as
	// fast as the nodes take transactions in (saturation).
	Rate float64
	// Duration of the measured phase.
	Duration time.Duration
	// Warmup is the start of the measured phase left out of the
	// throughput and latency figures; 0 means none.
	Warmup time.Duration
	// MaxTxs bounds the transactions signed for the measured phase; 0
	// means Rate×Duration+10% (or 6,000 per second without a rate). At a
	// rate, the txs planned beyond the phase are sent after its end, at
	// the rate, within the drain: load while its last txs commit.
	MaxTxs int
	// Conns is the number of concurrent senders per node; 0 means 8 at
	// saturation and, at a target rate, rateConns.
	Conns int
	// Submit is how the txs go to the nodes: SubmitGRPC or SubmitJSONRPC;
	// empty means gRPC when Target.GRPC names the nodes' gRPC servers.
	Submit string
	// Drain is how long to wait, after the measured phase, for accepted
	// transactions to be committed (and, at a rate, to send the ones due
	// in the phase that a sender still held at its end, and the plan's
	// spare ones, which keep the load on meanwhile); 0 means 20s.
	Drain time.Duration
	// SetupTimeout bounds each setup step; 0 means 3 minutes.
	SetupTimeout time.Duration
	// Seed of the mix; 0 means 1.
	Seed uint64
	// Metrics is a node's Prometheus endpoint (http://127.0.0.1:PORT/metrics)
	// whose FinalizeBlock and Commit times over the window are reported.
	Metrics string
	// CPUPids are processes (the nodes) whose CPU time over the window
	// (after the warm-up, to the end of the measured phase) is reported,
	// also per committed tx; none means no such report.
	CPUPids []int
	// Log receives progress lines; nil means none.
	Log io.Writer
}

func (c *Config) defaults() error {
	if c.Name == "" {
		c.Name = "emrchain"
	}
	if c.Prefix == "" {
		c.Prefix = fmt.Sprintf("load-%d", time.Now().UnixNano())
	}
	if c.Mix.total() == 0 {
		c.Mix = DefaultMix
	}
	if c.Conns <= 0 {
		c.Conns = 8
		if c.Rate > 0 {
			c.Conns = rateConns(c.Rate, len(c.Target.RPC))
		}
	}
	switch c.Submit {
	case "":
		c.Submit = SubmitJSONRPC
		if len(c.Target.GRPC) > 0 {
			c.Submit = SubmitGRPC
		}
	case SubmitGRPC:
		if len(c.Target.GRPC) == 0 {
			return errors.New("submit grpc: the nodes' gRPC addresses are not known: give --grpc for every --node (a --testnet whose testnet.json lacks a node's \"grpc\" names none), or --submit jsonrpc")
		}
	case SubmitJSONRPC:
	default:
		return fmt.Errorf("submit %q: want %s or %s", c.Submit, SubmitGRPC, SubmitJSONRPC)
	}
	if c.Drain <= 0 {
		c.Drain = 20 * time.Second
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = 3 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	switch {
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("duration %s: want more than 0 and at most %s", c.Duration, MaxDuration)
	case c.Warmup < 0 || c.Warmup >= c.Duration:
		return fmt.Errorf("warm-up %s: want at least 0 and less than the duration %s", c.Warmup, c.Duration)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("rate %g: want 0 (saturation) or a number of tx/s", c.Rate)
	case c.Conns > maxConns:
		return fmt.Errorf("conns %d: want at most %d senders per node", c.Conns, maxConns)
	case c.Submit == SubmitGRPC && c.Conns > maxStreamsPerNode:
		return fmt.Errorf("conns %d: over gRPC at most %d senders per node (the streams a node serves on one connection); or --submit jsonrpc", c.Conns, maxStreamsPerNode)
	case c.MaxTxs < 0 || c.MaxTxs > MaxTxsLimit:
		return fmt.Errorf("max txs %d: want 0 to %d", c.MaxTxs, MaxTxsLimit)
	}
	if c.MaxTxs == 0 {
		// In float up to the bound: a huge rate must not overflow the int.
		n := saturationBudget * c.Duration.Seconds()
		if c.Rate > 0 {
			n = math.Floor(c.Rate*c.Duration.Seconds()*1.1) + 100
		}
		c.MaxTxs = int(min(n, MaxTxsLimit))
	}
	if len(c.Target.Registrars) == 0 {
		return errors.New("no registrar key: the load needs a hospital registrar to register its clinicians")
	}
	return c.Target.validate()
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "load: "+format+"\n", args...)
	}
}

// rateConns is the default number of senders per node at a target rate:
// each sends at most 100 tx/s, so a sender keeps up while a node takes up
// to 100 ms to answer a full batch (a node executing a block answers
// nothing else: with 2 senders per node the load fell short of 1,700 tx/s).
// At least 2, so that at low rates a node's senders still fill batches; at
// most 8, as at saturation.
func rateConns(rate float64, nodes int) int {
	const perSender = 100.0 // tx/s: a batch of maxBatch every 100 ms
	n := math.Ceil(rate / float64(max(nodes, 1)) / perSender)
	return int(min(max(n, 2), 8))
}

// submitters are the nodes as cfg.Submit reaches them, in Target order.
func submitters(cfg Config) ([]submitter, error) {
	var out []submitter
	if cfg.Submit == SubmitGRPC {
		for _, addr := range cfg.Target.GRPC {
			g, err := newGRPCNode(addr)
			if err != nil {
				closeSubmitters(out)
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	}
	for _, u := range cfg.Target.RPC {
		out = append(out, newRPC(u, cfg.Conns))
	}
	return out, nil
}

func closeSubmitters(nodes []submitter) {
	for _, n := range nodes {
		n.close()
	}
}

// Run sets the load's population up on the target, then runs the measured
// phase and returns its results. Everything it does is bounded: setup by
// SetupTimeout per step, the measured phase by Duration and MaxTxs, and
// what follows it by Drain: the wait for the last commits and, at a rate,
// the sending of txs that fell due in the phase but were still held in a
// sender at its end, and of the plan's txs due after it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := checkCPUPids(cfg.CPUPids); err != nil {
		return nil, err
	}
	if err := checkMetricsURL(ctx, cfg.Metrics); err != nil {
		return nil, err
	}
	var regs []*registrar
	for _, f := range cfg.Target.Registrars {
		r, err := readRegistrar(f)
		if err != nil {
			return nil, err
		}
		regs = append(regs, r)
	}
	submitTo, err := submitters(cfg)
	if err != nil {
		return nil, err
	}
	defer closeSubmitters(submitTo)
	obsRPC := newRPC(cfg.Target.RPC[0], 2)
	defer obsRPC.close()
	// nodes are asked, after each setup step, whether their apps have
	// committed it (waitApplied).
	nodes := []*rpc{obsRPC}
	for _, u := range cfg.Target.RPC[1:] {
		n := newRPC(u, 1)
		defer n.close()
		nodes = append(nodes, n)
	}

	regNext := make([]uint64, len(regs))
	for i, r := range regs {
		seq, err := nextSequence(ctx, obsRPC, r.address)
		if err != nil {
			return nil, fmt.Errorf("sequence of %s: %w", r.name, err)
		}
		regNext[i] = seq
	}
	p := newPlan(cfg.Target.ChainID, cfg.Prefix, cfg.Seed, regs, regNext, cfg.Plan)

	obs := newObserver(obsRPC, false)
	if err := obs.start(ctx); err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	obsCtx, stopObs := context.WithCancel(ctx)
	obsDone := make(chan struct{})
	go func() { defer close(obsDone); obs.run(obsCtx) }()
	defer func() { stopObs(); <-obsDone }()

	snd := &sender{nodes: submitTo, conns: cfg.Conns}
	now := time.Now()
	steps := []struct {
		name string
		txs  []*plannedTx
	}{
		{"register clinicians", p.setupRegister()},
		{"enroll patients and grant their clinicians", p.setupPatients(now)},
		{"add a record to every patient", p.setupRecords()},
	}
	for _, s := range steps {
		start := time.Now()
		if err := p.sign(s.txs); err != nil {
			return nil, err
		}
		obs.track(s.txs)
		snd.stats = newSendStats()
		sctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
		setupEnd := time.Now().Add(cfg.SetupTimeout)
		snd.send(sctx, s.txs, 0, setupEnd, setupEnd)
		missing := obs.waitCommitted(sctx, s.txs)
		var behind error
		if missing == 0 {
			behind = waitApplied(sctx, nodes, obs.topHeight(s.txs))
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if n := len(snd.stats.rejected); n > 0 || snd.stats.accepted.Load() != int64(len(s.txs)) || missing > 0 {
			return nil, fmt.Errorf("setup step %q: %d of %d txs accepted, %d not committed within %s, rejected: %v %v%s",
				s.name, snd.stats.accepted.Load(), len(s.txs), missing, cfg.SetupTimeout, snd.stats.rejected, snd.stats.sampleLog, snd.stats.errorText())
		}
		if behind != nil {
			return nil, fmt.Errorf("setup step %q: %w", s.name, behind)
		}
		cfg.logf("setup: %s: %d txs committed in %s", s.name, len(s.txs), time.Since(start).Round(time.Millisecond))
	}

	// The measured phase: sign everything first, then send.
	signStart := time.Now()
	txs := p.measured(cfg.MaxTxs, cfg.Mix, time.Now())
	if err := p.sign(txs); err != nil {
		return nil, err
	}
	obs.track(txs)
	cfg.logf("signed %d txs (%s) in %s; sending for %s at %s, %d senders per node on %d nodes",
		len(txs), cfg.Mix, time.Since(signStart).Round(time.Millisecond), cfg.Duration, rateName(cfg.Rate), cfg.Conns, len(submitTo))

	snd.stats = newSendStats()
	start := time.Now()
	end := start.Add(cfg.Duration)
	cpu := startCPU(ctx, cfg.CPUPids, start.Add(cfg.Warmup), end)
	abci := startABCI(ctx, cfg.Metrics, start.Add(cfg.Warmup), end)
	drainEnd := end.Add(cfg.Drain)
	sendUntil := end
	if cfg.Rate > 0 {
		// Every tx due in the phase is part of its latency: one held in
		// a sender behind a stalled node at the end still goes out,
		// within the drain. And the rate goes on after the end, for as
		// long as the plan's spare txs last (a tenth of the duration by
		// default; Summary.Trailing, in no figure): the phase's last txs
		// then commit on a chain still taking new ones in, as every
		// earlier tx did. Stopped at the end, the nodes would check no
		// more arrivals while those txs wait for their blocks, and the
		// end of the window would measure a lighter load than the rest.
		sendUntil = drainEnd
	}
	snd.send(ctx, txs, cfg.Rate, sendUntil, sendUntil)
	sendEnd := time.Now()
	exhausted := sendEnd.Before(end.Add(-time.Second)) && ctx.Err() == nil
	if exhausted {
		cfg.logf("all %d signed txs sent %s before the end: raise --max-txs", len(txs), end.Sub(sendEnd).Round(time.Millisecond))
	}
	dctx, cancel := context.WithDeadline(ctx, drainEnd)
	missing := obs.waitCommitted(dctx, txs)
	cancel()
	// Blocks after this are not looked for: a tx still not committed has
	// been waiting at least until now.
	observedTo := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if missing > 0 {
		cfg.logf("%d accepted txs not committed within %s of the end", missing, cfg.Drain)
	}
	stopObs()
	<-obsDone

	r := buildResult(cfg, obs, snd.stats, txs, start, end, observedTo)
	r.Summary.Exhausted = exhausted
	r.Summary.Signers = len(p.signers)
	if err := errors.Join(cpu.set(&r.Summary), abci.set(&r.Summary)); err != nil {
		return nil, err
	}
	return r, nil
}

// appliedPoll is how often waitApplied asks a node for its app's height.
const appliedPoll = 20 * time.Millisecond

// waitApplied waits until the app of every node has committed height. A
// setup step's txs are seen committed on the observed node; a node a
// moment behind it would refuse the next step's txs at CheckTx (a grant
// to a clinician it has not registered yet: run 69 of make bench-chain
// failed so).
func waitApplied(ctx context.Context, nodes []*rpc, height int64) error {
	for _, n := range nodes {
		for {
			h, err := n.appHeight(ctx)
			if err == nil && h >= height {
				break
			}
			select {
			case <-ctx.Done():
				if err == nil {
					err = fmt.Errorf("its app is at height %d", h)
				}
				return fmt.Errorf("node %s did not commit height %d: %w (%w)", n.url, height, err, ctx.Err())
			case <-time.After(appliedPoll):
			}
		}
	}
	return nil
}

func rateName(rate float64) string {
	if rate == 0 {
		return "saturation"
	}
	return fmt.Sprintf("%.0f tx/s", rate)
}

// nextSequence asks a node for addr's next sequence.
func nextSequence(ctx context.Context, c *rpc, addr []byte) (uint64, error) {
	req, err := proto.Marshal(&emrv1.QueryAccountRequest{Address: hex.EncodeToString(addr)})
	if err != nil {
		return 0, err
	}
	raw, err := c.abciQuery(ctx, app.QueryPathPrefix+"Account", req)
	if err != nil {
		return 0, err
	}
	var resp emrv1.QueryAccountResponse
	if err := proto.Unmarshal(raw, &resp); err != nil {
		return 0, err
	}
	return resp.GetAccount().GetNextSequence(), nil
}

// WatchConfig is a measurement of load someone else sends (CometBFT's
// loadtime `load`), made exactly as Run measures its own.
type WatchConfig struct {
	Name     string
	RPC      string
	Duration time.Duration
	Warmup   time.Duration
	// Drain: how long to keep following blocks after Duration; 0 means 5s.
	Drain time.Duration
	// CPUPids, Metrics: as Config's.
	CPUPids []int
	Metrics string
	Log     io.Writer
}

// Watch follows a node's blocks for Duration (+Drain) from now and
// measures committed tx/s and, from loadtime's payload timestamps,
// latency.
func Watch(ctx context.Context, cfg WatchConfig) (*Result, error) {
	if cfg.Name == "" {
		cfg.Name = "watched"
	}
	if cfg.Duration <= 0 || cfg.Duration > MaxDuration {
		return nil, fmt.Errorf("duration %s: want more than 0 and at most %s", cfg.Duration, MaxDuration)
	}
	if cfg.Warmup < 0 || cfg.Warmup >= cfg.Duration {
		return nil, fmt.Errorf("warm-up %s: want at least 0 and less than the duration", cfg.Warmup)
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 5 * time.Second
	}
	if err := checkLoopback(cfg.RPC); err != nil {
		return nil, err
	}
	if err := checkCPUPids(cfg.CPUPids); err != nil {
		return nil, err
	}
	if err := checkMetricsURL(ctx, cfg.Metrics); err != nil {
		return nil, err
	}
	c := newRPC(cfg.RPC, 2)
	defer c.close()
	obs := newObserver(c, true)
	if err := obs.start(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	octx, cancel := context.WithDeadline(ctx, end.Add(cfg.Drain))
	defer cancel()
	cpu := startCPU(ctx, cfg.CPUPids, start.Add(cfg.Warmup), end)
	abci := startABCI(ctx, cfg.Metrics, start.Add(cfg.Warmup), end)
	obs.run(octx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wc := Config{Name: cfg.Name, Duration: cfg.Duration, Warmup: cfg.Warmup, Target: Target{RPC: []string{cfg.RPC}}}
	r := buildResult(wc, obs, newSendStats(), nil, start, end, time.Now())
	if err := errors.Join(cpu.set(&r.Summary), abci.set(&r.Summary)); err != nil {
		return nil, err
	}
	return r, nil
}
