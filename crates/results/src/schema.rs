//! The documented meaning of every CSV column. A test keeps this list identical to the
//! serialised headers, and another keeps docs/schema.md in step with it.

/// One documented column.
pub struct Column {
    pub name: &'static str,
    pub unit: &'static str,
    pub meaning: &'static str,
}

const fn col(name: &'static str, unit: &'static str, meaning: &'static str) -> Column {
    Column {
        name,
        unit,
        meaning,
    }
}

pub const SAMPLE_COLUMNS: &[Column] = &[
    col("device", "", "device profile name the pair ran on"),
    col(
        "model",
        "",
        "canonical model name, or the file's name for --model-file",
    ),
    col("backend", "", "backend name (`bench list backends`)"),
    col(
        "round",
        "",
        "1-based round (`--rounds`): each round is a fresh worker process",
    ),
    col(
        "iteration",
        "",
        "0-based index of the timed run within its round (warm-up runs are not recorded)",
    ),
    col(
        "latency_ns",
        "ns",
        "wall time of that run: difference of consecutive monotonic-clock readings; what it covers is the pair's `timing`",
    ),
    col(
        "gpu_ns",
        "ns",
        "GPU time of that run from timestamp queries (GPU backends whose adapter has them; empty otherwise)",
    ),
    col(
        "threads",
        "",
        "threads the pair ran on (`--threads`; part of the pair's identity)",
    ),
];

pub const SUMMARY_COLUMNS: &[Column] = &[
    col("device", "", "device profile name"),
    col("model", "", "canonical model name"),
    col("backend", "", "backend name"),
    col(
        "status",
        "",
        "ok, failed, crashed, unavailable or timed_out (killed after --pair-timeout)",
    ),
    col(
        "message",
        "",
        "why a pair is not ok (error, crash, missing runtime); on an ok pair, notes such as MACs not computed for a model file",
    ),
    col("started_at", "UTC", "when the pair started, RFC 3339"),
    col("source", "", "`zoo` or the model file's path"),
    col("input_shape", "", "NHWC input shape, e.g. 1x224x224x3"),
    col(
        "mode",
        "",
        "what one timed run is: `infer` (a forward pass) or `train` (forward, loss, backward, SGD update)",
    ),
    col("batch", "images", "images per timed run"),
    col(
        "bn",
        "",
        "batch norm `fused` into the convolutions or kept `separate` (--bn)",
    ),
    col(
        "timing",
        "",
        "what one sample covers (docs/measurement.md, timing contract): `infer` (the inference alone; input placed once before warm-up, output read after the loop) or `infer-with-io` (--timed-io: input placement + inference + output read); `legacy` for runs recorded before this column, when most runtimes timed an input copy and native did not",
    ),
    col(
        "macs",
        "MACs",
        "multiply-accumulates counted from the IR (docs/models.md, conventions); empty for model files",
    ),
    col("params", "", "parameters of the BN-folded model; empty for model files"),
    col("warmup", "runs", "untimed warm-up runs"),
    col("runs", "runs", "timed runs per round"),
    col(
        "rounds",
        "",
        "rounds measured (--rounds; round-robin over the pairs, a fresh worker each)",
    ),
    col(
        "core",
        "",
        "CPU core the measuring thread was pinned to (the first of `core_set`)",
    ),
    col(
        "pinned",
        "",
        "confinement verified after the loop: the measuring thread's affinity was still its core, and every thread of the worker process was allowed, and last ran, only on `core_set`",
    ),
    col(
        "init_ms",
        "ms",
        "time to load the model into the backend (parse, compile, allocate)",
    ),
    col(
        "first_inference_ms",
        "ms",
        "the first inference after loading, before warm-up",
    ),
    col(
        "mean_ms",
        "ms",
        "mean latency of the timed runs (all rounds; so are the other statistics but p50_ms)",
    ),
    col("std_ms", "ms", "standard deviation (n − 1)"),
    col("min_ms", "ms", "fastest run"),
    col("max_ms", "ms", "slowest run"),
    col(
        "p50_ms",
        "ms",
        "median (linear interpolation between order statistics); with several rounds, the median of the round medians",
    ),
    col("p90_ms", "ms", "90th percentile"),
    col("p95_ms", "ms", "95th percentile"),
    col("p99_ms", "ms", "99th percentile"),
    col(
        "gpu_p50_ms",
        "ms",
        "median GPU time of the timed runs from timestamp queries (empty without them)",
    ),
    col("cv", "", "coefficient of variation, std / mean"),
    col(
        "round_cv",
        "",
        "between-round spread: coefficient of variation of the round medians (empty with one round); the run-to-run drift `bench compare` judges against",
    ),
    col(
        "median_ci_low_ms",
        "ms",
        "bootstrap 95% confidence interval of the median of the samples, lower end (within one run: it knows nothing of run-to-run drift, see round_cv)",
    ),
    col(
        "median_ci_high_ms",
        "ms",
        "bootstrap 95% confidence interval of the median, upper end",
    ),
    col(
        "outliers_mild",
        "runs",
        "Tukey mild outliers: beyond 1.5 IQR of the quartiles, within 3",
    ),
    col(
        "outliers_severe",
        "runs",
        "Tukey severe outliers: beyond 3 IQR",
    ),
    col(
        "peak_rss_mb",
        "MiB",
        "the worker's own peak resident memory (VmHWM of /proc/self/status after the loop; the largest of its rounds)",
    ),
    col(
        "model_mem_mb",
        "MiB",
        "resident memory the backend added: VmRSS after the loop minus VmRSS before loading",
    ),
    col(
        "flags",
        "",
        "`;`-separated warnings: noisy, freq_changed, temp_changed, unpinned, disagrees (outside the tolerance, or non-finite values), emulated, software (a software GPU adapter such as lavapipe)",
    ),
    col(
        "reference",
        "",
        "what the output was compared with: the naive evaluator for native, the native engine for other backends on zoo models, the int8 reference (the quantized model's meaning, fake quantization in the naive evaluator) for int8 rows, the first backend to run a model file",
    ),
    col(
        "max_abs_diff",
        "",
        "largest absolute difference of the output from the reference",
    ),
    col(
        "max_rel_diff",
        "",
        "largest absolute difference divided by the reference's largest magnitude",
    ),
    col(
        "agreement_inputs",
        "",
        "int8 rows: how many deterministic inputs (seeds input_seed + 1 ...) the backend ran after the timed loop to compare its int8 logits with the float model's (native engine, same weights)",
    ),
    col(
        "top1_agreement",
        "",
        "int8 rows: share of those inputs on which the int8 and float logits pick the same class (agreement with the float model, not accuracy: there are no labels)",
    ),
    col(
        "cosine_mean",
        "",
        "int8 rows: mean cosine similarity of the int8 and float logits over those inputs",
    ),
    col(
        "cosine_min",
        "",
        "int8 rows: the smallest of those cosine similarities",
    ),
    col("library_version", "", "the backend's library and version"),
    col(
        "threads",
        "",
        "threads the pair was asked to compute on (`--threads`), set explicitly in the runtime; part of the pair's identity with device, model and backend",
    ),
    col(
        "precision",
        "",
        "arithmetic precision: fp32, fp16 (a GPU at half precision), int8 (a post-training quantized zoo model, `--precision int8`)",
    ),
    col("adapter", "", "compute device the backend used"),
    col("settings", "", "other backend settings, `key=value;...`"),
    col("cpu_brand", "", "CPU model name"),
    col("cpu_cores", "", "logical cores"),
    col("os", "", "operating system name and version"),
    col("kernel", "", "kernel version"),
    col(
        "core_type",
        "",
        "the measured core's type: the ARM core its MIDR part number names (`Cortex-A73`), or the x86 model name; empty where the probe could not tell",
    ),
    col(
        "governor",
        "",
        "the pinned core's cpufreq governor, or `unavailable`",
    ),
    col(
        "freq_before_mhz",
        "MHz",
        "the pinned core's current frequency before the pair",
    ),
    col("freq_after_mhz", "MHz", "the same after the pair"),
    col(
        "freq_max_mhz",
        "MHz",
        "the pinned core's maximum frequency (empty without cpufreq)",
    ),
    col(
        "temp_before_c",
        "°C",
        "hottest thermal zone before the pair (empty without thermal zones)",
    ),
    col("temp_after_c", "°C", "hottest thermal zone after the pair"),
    col(
        "settle_wait_s",
        "s",
        "seconds waited before the pair for the machine to settle (`--settle`; the `--cooldown` sleep not included); empty without `--settle`",
    ),
    col(
        "core_set",
        "",
        "the cores the worker confined its whole process to before the runtime started (`2-3`; the measuring thread on the first), empty when not confined",
    ),
    col(
        "busy_threads",
        "",
        "threads of the worker that burned CPU during the timed loop (at least a quarter of the busiest thread's CPU time): the threads that really computed, whatever the runtime was told",
    ),
    col(
        "load_avg_1m",
        "",
        "1-minute load average when the pair started",
    ),
    col(
        "harness_commit",
        "",
        "git commit the harness was built from (`+dirty` if modified)",
    ),
    col("build_profile", "", "cargo profile of the harness build"),
    col(
        "probe_notes",
        "",
        "what this machine did not expose (why a system column is empty) and what the worker could not do as asked (e.g. keep its helper threads off a one-core device)",
    ),
];

pub const OP_COLUMNS: &[Column] = &[
    col("device", "", "device profile name"),
    col("model", "", "canonical model name"),
    col("backend", "", "backend name (`native`, `tch`, `tract`, `onnxruntime`, `rten`, `litert-xnnpack` and `litert-builtin` time their steps; the others say why not in the summary's `probe_notes`)"),
    col("threads", "", "threads the pair ran on (`--threads`)"),
    col("round", "", "1-based round the profile was taken in"),
    col("step", "", "0-based position of the step in the engine's plan (tract: its optimised plan; onnxruntime: the order its kernels first ran; LiteRT: the order of its profiler's operator events in a run)"),
    col(
        "name",
        "",
        "the runtime's own name for the event. native: the graph nodes the step runs, joined by `+` when the engine fused them; tch: the IR layer; tract: its plan node's own name (the ONNX node's, with a suffix such as `.matmatmul` where tract lowered it); onnxruntime: the node name in its optimised graph; LiteRT: `XNNPACK operator I` (I numbered inside each delegated partition) or `TFLite op I` (the TFLite op index)",
    ),
    col(
        "op",
        "",
        "the runtime's own op. native: its op kinds (`pointwise_conv`, `depthwise_conv`, `conv`, `squeeze_excite`, `global_avg_pool`, `fully_connected`, `add`; `pointwise_conv+add`, `pointwise_conv+depthwise_conv` when fused); tch: the torch ops the layer calls (`conv2d+batch_norm+hardswish`); tract: its op's name (`OptMatMul`, `DepthWiseConv`, …); onnxruntime: the kernel's op type (`Conv`, `FusedConv`, `ReorderInput`, …); LiteRT: `xnnpack: ` and XNNPACK's operator name (`Convolution (NHWC, F32) IGEMM`) or `tflite: ` and the builtin op (`CONV_2D`)",
    ),
    col(
        "layer_group",
        "",
        "the layer group the event is attributed to: consecutive IR nodes, named `first..last` when several (`block3_project..block3_add`); empty when unattributed or for a model file (docs/profiles.md, alignment rules)",
    ),
    col(
        "ir_nodes",
        "",
        "the IR nodes of that group, joined by `+`",
    ),
    col(
        "op_kind",
        "",
        "`stem`, `pointwise`, `pointwise + add`, `depthwise`, `SE`, `FC`, `pooling`, `other`, or kinds joined by ` + ` for a group this backend fused (`pointwise + depthwise`); `hard-swish` for a hard-swish the runtime ran on its own; `unattributed` for time no layer group takes; empty for a model file",
    ),
    col(
        "matched_by",
        "",
        "how the event was matched to its group: `event name` (its name starts with an IR node's), `IR node` (the engine runs IR nodes), `op index` (LiteRT's TFLite op index, then that op's output tensor name), `position and op kind` (an XNNPACK operator, by order and kind among the TFLite ops), `position (after ...)` (no name: the group of the event before it); `none (...)` when unattributed",
    ),
    col("input_shape", "", "native: `HxWxC` of the step's first input; tract and onnxruntime: the shape as the runtime holds it (`AxBxC…`); empty for LiteRT, whose events carry none"),
    col("output_shape", "", "the same for its output"),
    col(
        "macs",
        "",
        "native: multiply-accumulates of the step, counted as in the model tables; 0 for the other backends (their events do not split a layer group's MACs)",
    ),
    col(
        "median_ms",
        "ms",
        "median wall time of the step over the profiled runs (`--runs`, at most 200, after the timed loop)",
    ),
    col(
        "gflops",
        "GFLOP/s",
        "achieved: 2 × macs / median time (empty for steps without MACs)",
    ),
    col(
        "core_peak_gflops",
        "GFLOP/s",
        "the pinned core's fp32 FMA peak, measured in the same worker by a register-only loop of independent fused multiply-adds in the engine's instruction set (best of 5 × 20 ms)",
    ),
    col(
        "isa",
        "",
        "the instruction set the engine chose at run time (`avx512f`, `avx2+fma`, `neon`, `portable`)",
    ),
    col(
        "coverage",
        "",
        "the pair's sum of step medians over the median of its unprofiled samples in the same round (the same on each of its rows): 1 means the profile accounts for the measured latency; above 1, the profiler's own cost per step; below 1, time between the steps it times",
    ),
];
