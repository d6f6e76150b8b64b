package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/testnet/load"
)

// loadOutputs are the result files of load and load watch.
type loadOutputs struct {
	json, series, blocks string
}

func (o *loadOutputs) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.json, "json", "", "write the summary as JSON to this file")
	f.StringVar(&o.series, "csv", "", "write the per-second series (sent, committed, blocks, latency p50/p95/p99) as CSV to this file")
	f.StringVar(&o.blocks, "blocks-csv", "", "write every observed block (height, time, interval, txs, bytes, ours, failed, exec_ms, unknown) as CSV to this file")
}

func (o *loadOutputs) write(cmd *cobra.Command, r *load.Result) error {
	r.WriteText(cmd.OutOrStdout())
	return r.WriteFiles(o.json, o.series, o.blocks)
}

func newLoadCmd() *cobra.Command {
	var (
		cfg        load.Config
		out        loadOutputs
		testnetDir string
		mix        string
	)
	cmd := &cobra.Command{
		Use:   "load --testnet DIR",
		Short: "Load a consortium with signed, valid transactions and measure what it commits",
		Long: `load measures a running consortium the way its operators would use it.

Setup registers clinicians (signed with the hospital registrars' keys),
enrolls patients who grant their clinician read and write, and adds one
record per patient; each step waits for its blocks. Then, for --duration,
load sends a mix of transactions (default: 60% AddRecord, 30% RecordAccess,
10% Grant / Revoke / RotateKey by patients of their own), all signed before
the clock starts, at --rate tx/s or, with --rate 0, as fast as the nodes
take them in. Every signer has its own sequence and sends to one validator;
the signers are spread over all validators. Each sender streams its
transactions, in batches of up to 10, to its node's gRPC
TxService.BroadcastTxs, which answers each after CheckTx (--submit grpc,
the default when the nodes' gRPC servers are known); --submit jsonrpc
sends them as JSON-RPC batches of broadcast_tx_sync instead (CometBFT's
default rpc.max_request_batch_size is 10). Either way the generator takes
little of the CPU the nodes it measures need.

Commits are counted from the blocks (one node's RPC, every block and its
results), not from sends. It reports committed tx/s after the --warmup
(over whole block intervals), submit-to-commit latency p50/p95/p99 (to
first sight of the block; from the time a tx was due at a --rate, from its
first broadcast at saturation), CheckTx rejections by code, block time and
block size; --json, --csv and --blocks-csv write them for plots (load
plot); --cpu-pids adds the nodes' CPU time per committed tx.

A run is bounded in count (--max-txs, signed up front) and in time
(--duration, then at most --drain for the last commits; at a --rate, the
txs that fell due in --duration but that a sender still held behind a
slow node at its end go out within the drain too, and count from when
they were due; the rate then goes on, unmeasured, with the spare txs of
--max-txs, so the phase's last txs commit under load). Only 127.0.0.1
endpoints are accepted. Every run needs a fresh --prefix on the same chain
(the default is derived from the clock).`,
		Example: `  emrchaind load --testnet ./localnet --duration 60s
  emrchaind load --testnet ./localnet --rate 1500 --duration 60s --json run.json --csv run.csv
  emrchaind load --node http://127.0.0.1:26657 --chain-id emr-dev --registrar-key ./node0/dev-keys/registrar.json --duration 10s
  emrchaind load plot --out load.png emrchain=run.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if testnetDir != "" {
				t, err := load.ReadTestnet(testnetDir)
				if err != nil {
					return fmt.Errorf("--testnet: %w", err)
				}
				if len(cfg.Target.RPC) == 0 {
					cfg.Target.RPC = t.RPC
					if len(cfg.Target.GRPC) == 0 {
						cfg.Target.GRPC = t.GRPC
					}
				}
				if cfg.Target.ChainID == "" {
					cfg.Target.ChainID = t.ChainID
				}
				cfg.Target.Registrars = append(cfg.Target.Registrars, t.Registrars...)
			}
			if len(cfg.Target.RPC) == 0 {
				return errors.New("no node: give --testnet DIR or --node URL")
			}
			var err error
			if cfg.Mix, err = load.ParseMix(mix); err != nil {
				return err
			}
			cfg.Log = cmd.ErrOrStderr()
			r, err := load.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return out.write(cmd, r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&testnetDir, "testnet", "", "directory written by emrchaind testnet: nodes and registrar keys from its testnet.json")
	f.StringArrayVar(&cfg.Target.RPC, "node", nil, "CometBFT RPC of a validator, http://127.0.0.1:PORT (repeatable; default: every node of --testnet)")
	f.StringArrayVar(&cfg.Target.GRPC, "grpc", nil, "gRPC server of each --node, 127.0.0.1:PORT, in the same order (repeatable; default: those of --testnet's nodes)")
	f.StringVar(&cfg.Submit, "submit", "", "how txs go to the nodes: grpc (a TxService.BroadcastTxs stream per sender) or jsonrpc (batches of broadcast_tx_sync) (default: grpc when the nodes' gRPC servers are known)")
	f.StringVar(&cfg.Target.ChainID, "chain-id", "", "chain id (default: from --testnet)")
	f.StringArrayVar(&cfg.Target.Registrars, "registrar-key", nil, "development key file of a hospital registrar (repeatable; default: those of --testnet)")
	f.StringVar(&cfg.Name, "name", "emrchain", "label of the results")
	f.Float64Var(&cfg.Rate, "rate", 0, "target rate in tx/s over all nodes; 0 = as fast as the nodes accept (saturation)")
	f.DurationVar(&cfg.Duration, "duration", 60*time.Second, fmt.Sprintf("length of the measured phase (at most %s)", load.MaxDuration))
	f.DurationVar(&cfg.Warmup, "warmup", 5*time.Second, "start of the measured phase left out of throughput and latency")
	f.DurationVar(&cfg.Drain, "drain", 20*time.Second, "how long to wait after the measured phase for accepted txs to be committed (and, at a --rate, to send the ones due in it that senders still held)")
	f.StringVar(&mix, "mix", load.DefaultMix.String(), "weights of add-record, record-access and consent (grant, revoke, rotate-key in turn)")
	f.IntVar(&cfg.MaxTxs, "max-txs", 0, fmt.Sprintf("txs signed for the measured phase, at most %d (default: rate x duration + 10%%, or 6000/s without --rate)", load.MaxTxsLimit))
	f.IntVar(&cfg.Conns, "conns", 0, "concurrent senders per node (default 8 at saturation; at a --rate, one per 100 tx/s a node gets, 2 to 8)")
	f.IntVar(&cfg.Plan.Clinicians, "clinicians", 128, "clinicians, each its own sequence stream")
	f.IntVar(&cfg.Plan.PatientsPerClinician, "patients-per-clinician", 8, "patients of each clinician (enrolled, granting read+write, one record each at setup)")
	f.IntVar(&cfg.Plan.ConsentPatients, "consent-patients", 256, "patients that grant, revoke and rotate their key during the run")
	f.StringVar(&cfg.Prefix, "prefix", "", "prefix of the load's actor names, unique per run on a chain (default: from the clock)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of the mix")
	f.DurationVar(&cfg.SetupTimeout, "setup-timeout", 3*time.Minute, "bound of each setup step")
	f.IntSliceVar(&cfg.CPUPids, "cpu-pids", nil, cpuPidsUsage)
	f.StringVar(&cfg.Metrics, "metrics", "", metricsUsage)
	out.flags(cmd)
	cmd.AddCommand(newLoadWatchCmd(), newLoadPlotCmd(), newLoadCompareCmd())
	return cmd
}

// metricsUsage is the help of --metrics, of load and load watch alike.
const metricsUsage = "a node's CometBFT metrics, http://127.0.0.1:PORT/metrics: its FinalizeBlock and Commit times over the window after --warmup are reported, also per committed tx"

// cpuPidsUsage is the help of --cpu-pids, of load and load watch alike.
const cpuPidsUsage = "process ids (the nodes, comma-separated) whose CPU time (Linux /proc) over the window after --warmup is reported, also per committed tx"

func newLoadWatchCmd() *cobra.Command {
	var (
		cfg load.WatchConfig
		out loadOutputs
	)
	cmd := &cobra.Command{
		Use:   "watch --node URL --duration D",
		Short: "Measure load someone else sends (e.g. CometBFT's loadtime load against kvstore)",
		Long: `watch follows one node's blocks from now for --duration (and --drain more)
and measures them exactly as load does: committed tx/s after --warmup, block
time and size. Latency is taken from the timestamp in the payload of
CometBFT's loadtime tool (test/loadtime/cmd/load); other transactions are
counted as foreign.`,
		Example: `  emrchaind load watch --node http://127.0.0.1:26657 --duration 60s --name kvstore --json kv.json --csv kv.csv`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := load.Watch(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return out.write(cmd, r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.RPC, "node", "http://127.0.0.1:26657", "CometBFT RPC to follow, http://127.0.0.1:PORT")
	f.StringVar(&cfg.Name, "name", "watched", "label of the results")
	f.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to measure")
	f.DurationVar(&cfg.Warmup, "warmup", 5*time.Second, "start left out of throughput and latency")
	f.DurationVar(&cfg.Drain, "drain", 5*time.Second, "how long to follow blocks after --duration")
	f.IntSliceVar(&cfg.CPUPids, "cpu-pids", nil, cpuPidsUsage)
	f.StringVar(&cfg.Metrics, "metrics", "", metricsUsage)
	out.flags(cmd)
	return cmd
}

func newLoadPlotCmd() *cobra.Command {
	var (
		output string
		title  string
	)
	cmd := &cobra.Command{
		Use:   "plot --out FILE.png LABEL=SERIES.csv...",
		Short: "Plot committed tx/s and latency over time of one or more runs into a PNG",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var series []load.PlotSeries
			for _, a := range args {
				label, path, ok := strings.Cut(a, "=")
				if !ok {
					return fmt.Errorf("%q: want LABEL=FILE.csv", a)
				}
				pts, err := load.ReadSeriesCSV(path)
				if err != nil {
					return err
				}
				series = append(series, load.PlotSeries{Label: label, Points: pts})
			}
			f, err := os.Create(output)
			if err != nil {
				return err
			}
			if err := load.Plot(f, title, series); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
	cmd.Flags().StringVar(&output, "out", "load.png", "PNG file to write")
	cmd.Flags().StringVar(&title, "title", "emrchain load", "title of the plot")
	return cmd
}

func newLoadCompareCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compare EMRCHAIN.json KVSTORE.json",
		Short: "Print both runs' throughput and latency and the line: emrchain N tx/s, kvstore M tx/s, ratio R",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			emr, err := load.ReadSummary(args[0])
			if err != nil {
				return err
			}
			kv, err := load.ReadSummary(args[1])
			if err != nil {
				return err
			}
			load.Compare(cmd.OutOrStdout(), emr, kv)
			return nil
		},
	}
}
