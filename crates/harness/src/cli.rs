//! The command line: every subcommand and option, with the help text users read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mobilebench_backend::Mode;
use mobilebench_models::{BnMode, Precision, DEFAULT_SEED};

#[derive(Parser)]
#[command(
    name = "bench",
    version,
    about = "Measure how fast MobileNets run, across inference runtimes and devices",
    long_about = "Measure how fast MobileNets run, across inference runtimes and devices.\n\n\
        `bench run` measures every (model, backend) pair on one pinned core (50 warm-up and 1000 \
        timed runs by default: the protocol of the published MobileNetV3 TFLite device table; \
        TFLite's own benchmark_model defaults to 1 warm-up and 50 runs) and writes samples.csv \
        and summary.csv into a run directory; `bench report` turns run directories into \
        markdown; `bench compare` judges two runs against their between-round spread."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// List models (counted vs published MACs, params, top-1), backends or devices
    #[command(subcommand)]
    List(ListCmd),
    /// Measure every (model, backend) pair, one worker process per pair
    Run(Box<RunArgs>),
    /// Report run directories (any number of devices): tables on stdout, or with -o a folder
    /// with README.md and SVG/PNG plots
    Report(ReportArgs),
    /// Compare two run directories pair by pair: change of the median of round medians,
    /// judged against the between-round spread (run with --rounds), with a verdict
    Compare(CompareArgs),
    /// Write a zoo model as an .onnx or .tflite file (NHWC float input, [1, classes] logits: 1001 for V1–V3, 1000 for V4),
    /// float32 or post-training int8
    Export(ExportArgs),
    /// Fetch the runtimes (ONNX Runtime, LiteRT) from their PyPI wheels into the cache and
    /// check that they load (libtorch, needed at build time, comes from scripts/setup)
    Setup(SetupArgs),
    /// Internal: measure one pair and report JSON lines on stdout
    #[command(hide = true)]
    Worker {
        #[arg(long, required_unless_present = "probe")]
        spec: Option<String>,
        /// Print one backend's availability as JSON
        #[arg(long)]
        probe: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ListCmd {
    /// Zoo models with counted and published MACs/params and published top-1
    Models {
        /// Models to show: set names (seed, default, v3-widths, v4, all), globs or names, comma-separated
        #[arg(long, default_value = "all")]
        models: String,
    },
    /// Backends in this build, whether each can run here, and why not
    Backends,
    /// Device profiles
    Devices,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Models: named sets (seed, default, v3-widths, v4, all), globs over the published configs
    /// ('mobilenet_v2_*_224') or names with any width and resolution
    /// (mobilenet_v3_small_0.25_64), comma-separated [default: `default`, or none when
    /// --model-file is given]
    #[arg(long)]
    pub(crate) models: Option<String>,
    /// Your own .onnx or .tflite file, run on every selected backend that reads its format
    /// (repeatable)
    #[arg(long = "model-file", value_name = "PATH")]
    pub(crate) model_files: Vec<PathBuf>,
    /// Backends, comma-separated, or `all` for every backend that is not test-only (see
    /// `bench list backends`); runtimes missing from the cache are fetched first
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub(crate) backends: Vec<String>,
    /// Device to run on: a profile name (see `bench list devices`) or a profile file's path;
    /// repeat it to measure several devices at once (each device's pairs run one after
    /// another, devices run concurrently, into one run directory)
    #[arg(long = "device", default_value = "local")]
    pub(crate) devices: Vec<String>,
    /// Core to pin each one-thread worker to [default: the fastest core: of the fastest
    /// cluster (by capacity, core type, then maximum frequency), the highest index]
    #[arg(long, conflicts_with_all = ["cores", "core_class"])]
    pub(crate) core: Option<usize>,
    /// Thread counts to measure, e.g. `1,2,4`: each (model, backend, threads) is a pair of
    /// its own, round-robin with the others. Every runtime is given the count explicitly
    /// (LiteRT num_threads, ONNX Runtime intra-op threads, libtorch intra-op threads with one
    /// inter-op, rten's pool, native's pool); one that cannot run N threads (tract, the GPU
    /// backends) records the pair unavailable with the reason. The summary's busy_threads
    /// says how many threads really burned CPU
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1")]
    pub(crate) threads: Vec<u32>,
    /// Cores the threads run on, in the kernel's list format (`2-5`, `0,2`): N threads take N
    /// of them, fastest first. The worker confines its whole process (every thread any
    /// runtime starts) to those N cores before the runtime starts, and verifies it after
    /// the loop [default: the N fastest cores]
    #[arg(long, value_name = "SET", conflicts_with = "core_class")]
    pub(crate) cores: Option<String>,
    /// Cores by class instead: `big` or `little` (or another class the device profile's
    /// [[clusters]] name); without a profile claim, the fastest and slowest of the clusters
    /// the probe finds
    #[arg(long, value_name = "CLASS")]
    pub(crate) core_class: Option<String>,
    /// Untimed warm-up runs per pair and round (50: the published MobileNetV3 TFLite device
    /// table's protocol)
    #[arg(long, default_value_t = 50)]
    pub(crate) warmup: u32,
    /// Timed runs per pair and round (1000: the same protocol; TFLite's benchmark_model
    /// defaults to 50)
    #[arg(long, default_value_t = 1000)]
    pub(crate) runs: u32,
    /// Measure every pair this many times, round-robin (A B C A B C ...), each time in a
    /// fresh worker: the summary's p50_ms is then the median of round medians and round_cv
    /// the between-round spread, which `bench compare` needs to tell change from drift
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) rounds: u32,
    /// Seconds one worker (one pair, one round) may run before it is killed and recorded
    /// `timed_out`; the campaign goes on (default an hour: a software GPU adapter takes tens
    /// of minutes for 1050 inferences of a large model)
    #[arg(long, value_name = "SECONDS", default_value_t = mobilebench_results::DEFAULT_PAIR_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) pair_timeout: u64,
    /// Time input placement and output read inside every sample, for every backend alike
    /// (default: the input is placed once before warm-up and the output read after the
    /// loop, so a sample is the inference alone; the CSV's `timing` column says which)
    #[arg(long)]
    pub(crate) timed_io: bool,
    /// After each timed loop (never inside it), run the model again (--runs times, at most
    /// 200) timing every step with the runtime's own profiler, and write ops.csv beside
    /// samples.csv: per event its runtime's name and op, the layer group of the model it is
    /// attributed to, its op kind, median time, and the pair's coverage (sum of step
    /// medians / unprofiled median). report.md gains "where the time goes": time by op kind
    /// per backend, the fastest per kind, and (bench report) a stacked-bar plot. Profiled:
    /// native, tch, tract, rten (its printed step times), onnxruntime and LiteRT (on a
    /// second, profiled session), wgpu (timestamp queries per dispatch); the others run as
    /// usual and say why in probe_notes. How to read it: docs/profiles.md
    #[arg(long)]
    pub(crate) profile_ops: bool,
    /// Seconds to sleep before each pair (every round), so the heat of one pair does not
    /// slow the next (MLPerf Mobile's app waits 5 minutes between benchmarks, ncnn 10 s)
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub(crate) cooldown: u64,
    /// Before each pair, wait until every thermal zone is within --settle-margin °C of its
    /// temperature when the campaign started and the measured core's frequency cap
    /// (scaling_max_freq, lowered while the kernel throttles) is back at its maximum, up to
    /// --settle-timeout; summary.csv records the wait (settle_wait_s) and the temperatures
    /// before and after each pair, and a pair that ran unsettled says why in probe_notes
    #[arg(long)]
    pub(crate) settle: bool,
    /// °C above the campaign's starting temperature a zone may be for --settle
    #[arg(long, value_name = "DEG_C", default_value_t = 2.0, requires = "settle")]
    pub(crate) settle_margin: f64,
    /// Longest --settle wait before a pair, in seconds; the pair then runs, its reason noted
    #[arg(long, value_name = "SECS", default_value_t = 300, requires = "settle")]
    pub(crate) settle_timeout: u64,
    /// What one timed run does: `infer` (a forward pass) or `train` (forward, cross-entropy
    /// loss, backward and an SGD update of every weight, in training mode). Backends without a
    /// training step (all but the tch ones) are recorded unavailable, with the reason
    #[arg(long, default_value = "infer")]
    pub(crate) mode: Mode,
    /// Images per timed run. The tch backends take any batch; the others run batch 1 only and
    /// are recorded unavailable otherwise
    #[arg(long, default_value_t = 1)]
    pub(crate) batch: u32,
    /// Batch norm folded into the convolutions (`fused`, what deployments ship) or kept as a
    /// separate normalisation after each convolution (`separate`, what training frameworks
    /// run). Applies to native, tch, and the files exported for the other runtimes
    #[arg(long, default_value = "fused")]
    pub(crate) bn: BnMode,
    /// Number formats to run zoo models in, comma-separated: `float32` (the model as built)
    /// and `int8` (post-training quantized: per-channel int8 weights, int8 activations
    /// calibrated on 8 seeded images; a fully-integer .tflite and a QDQ .onnx, both with
    /// float input and output). int8 runs on litert-builtin, litert-xnnpack and onnxruntime;
    /// other backends are recorded unavailable, with the reason. int8 rows are named
    /// MODEL_int8 and checked against the int8 reference and, on 16 more inputs, against the
    /// float model (top-1 agreement and cosine of the logits: agreement, not accuracy)
    #[arg(long, value_delimiter = ',', default_value = "float32")]
    pub(crate) precision: Vec<Precision>,
    /// Smoke run: 10 warm-up and 100 timed runs (overrides --warmup/--runs)
    #[arg(long)]
    pub(crate) quick: bool,
    /// Where run directories are created (OUT/DEVICE/TIMESTAMP)
    #[arg(long, short, default_value = "results")]
    pub(crate) out: PathBuf,
    /// Continue a run directory: its plan is reused, pairs already ok are skipped, the rest
    /// (not run, failed, crashed) are measured
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["models", "model_files", "backends", "devices", "quick", "mode", "batch", "bn", "precision", "rounds", "timed_io", "pair_timeout", "profile_ops", "cooldown", "settle", "settle_margin", "settle_timeout", "threads", "cores", "core_class", "core"])]
    pub(crate) resume: Option<PathBuf>,
    /// Seed of the deterministic weights
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub(crate) seed: u64,
    /// Coefficient of variation above which a pair is flagged `noisy`
    #[arg(long, default_value_t = 0.10)]
    pub(crate) cv_threshold: f64,
    /// Internal (remote runs): use exactly this run directory, resuming it if it exists
    #[arg(long, hide = true)]
    pub(crate) run_dir: Option<PathBuf>,
    /// Internal (remote runs): the device name to write into the rows
    #[arg(long, hide = true)]
    pub(crate) as_device: Option<String>,
    /// Internal (remote runs): flag every row as measured under emulation
    #[arg(long, hide = true)]
    pub(crate) emulated: bool,
    /// Internal (remote runs): print each finished pair on stdout
    #[arg(long, hide = true)]
    pub(crate) emit_rows: bool,
    /// Internal (remote runs): start workers under this command (the device's emulator)
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub(crate) worker_prefix: Option<String>,
}

#[derive(Args)]
pub(crate) struct SetupArgs {
    /// Platform to fetch for: linux-x86_64 or linux-aarch64 [default: this machine's]
    #[arg(long)]
    pub(crate) platform: Option<String>,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Canonical model name, e.g. mobilenet_v3_small_1.0_224
    pub(crate) model: String,
    /// File format
    #[arg(long, value_parser = ["onnx", "tflite"])]
    pub(crate) format: String,
    /// Output file
    #[arg(long, short)]
    pub(crate) output: PathBuf,
    /// Batch norm folded into the convolutions (`fused`) or kept as separate ops (`separate`)
    #[arg(long, default_value = "fused")]
    pub(crate) bn: BnMode,
    /// `float32`, or `int8`: post-training quantized (BN folded, activation ranges from 8
    /// seeded calibration images) as a fully-integer .tflite or a QDQ .onnx, float input and
    /// output
    #[arg(long, default_value = "float32")]
    pub(crate) precision: Precision,
    /// Seed of the deterministic weights
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub(crate) seed: u64,
}

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// Run directories (each holds summary.csv), from any number of devices
    #[arg(required = true)]
    pub(crate) dirs: Vec<PathBuf>,
    /// What to write: `markdown` (the tables; with -o a folder with README.md and plots),
    /// `json` (every summary row, typed, versioned: docs/reports.md), `bmf` (Bencher Metric
    /// Format: latency in ns, median with the 5th/95th percentiles), `github-benchmark`
    /// (github-action-benchmark's customSmallerIsBetter list, ms)
    #[arg(long, default_value = "markdown", value_parser = parse_report_format)]
    pub(crate) format: mobilebench_reports::export::Format,
    /// Markdown: write DIR/README.md and the plots (SVG and PNG) here instead of printing the
    /// tables. Other formats: write the document to this file instead of stdout
    #[arg(long, short, value_name = "PATH")]
    pub(crate) output: Option<PathBuf>,
    /// Backend whose latency the model table shows [default: the fastest per device]
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// Backend the speed-up plots are relative to
    #[arg(long, default_value = "native")]
    pub(crate) baseline: String,
}

#[derive(Args)]
pub(crate) struct CompareArgs {
    /// The earlier run directory
    pub(crate) old: PathBuf,
    /// The later run directory
    pub(crate) new: PathBuf,
    /// Changes of the median smaller than this fraction are never called, whatever the test
    /// says (run-to-run drift of the whole machine that rounds within one run cannot see)
    #[arg(long, default_value_t = 0.05)]
    pub(crate) noise: f64,
    /// Significance level of the per-pair t-test on round medians, after Holm's correction
    /// for the number of pairs compared
    #[arg(long, default_value_t = 0.05)]
    pub(crate) alpha: f64,
    /// With one round on either side there is no spread to judge by: only a change beyond
    /// this fraction is called (else "cannot judge: one round")
    #[arg(long, default_value_t = 0.30)]
    pub(crate) one_round_bound: f64,
    /// Exit with status 1 when any pair is judged slower (flagged and one-round pairs that
    /// cannot be judged do not count)
    #[arg(long)]
    pub(crate) fail_on_regression: bool,
}

fn parse_report_format(s: &str) -> Result<mobilebench_reports::export::Format, String> {
    s.parse()
}
