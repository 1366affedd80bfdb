//! The one contract every inference engine implements: [`Backend`] (what it is, whether it
//! can run here, loading a model) and [`Session`] (placing the input, running one
//! inference, reading the output: three steps, so the harness times the same one for all). Designed for every planned engine: native, litert-builtin, litert-xnnpack,
//! litert-gpu, onnxruntime, tch, wgpu, tract.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mobilebench_models::Model;
use serde::{Deserialize, Serialize};

pub mod testing;

/// Mesa writes its shader cache under ~/.cache and warns without XDG_RUNTIME_DIR: point both
/// at folders of our own (only where the user has not set them). Call before any Vulkan
/// driver loads, while the process has one thread.
pub fn prepare_vulkan_environment() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let base = std::env::temp_dir().join(format!("mobilebench-vulkan-{uid}"));
    for (var, dir) in [
        ("XDG_RUNTIME_DIR", base.join("runtime")),
        ("MESA_SHADER_CACHE_DIR", base.join("mesa-shader-cache")),
    ] {
        if std::env::var_os(var).is_none() && std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            std::env::set_var(var, &dir);
        }
    }
}

/// A model file format that runtimes read directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileFormat {
    Onnx,
    Tflite,
}

impl FileFormat {
    /// The format implied by a file's extension.
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "onnx" => Some(FileFormat::Onnx),
            "tflite" => Some(FileFormat::Tflite),
            _ => None,
        }
    }
}

/// What a backend is asked to load: a zoo model (IR and weights) or a user's file.
#[derive(Debug, Clone, Copy)]
pub enum ModelSource<'a> {
    Zoo(&'a Model),
    File { path: &'a Path, format: FileFormat },
}

/// The kind of a [`ModelSource`], for asking a backend whether it takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Zoo,
    File(FileFormat),
}

impl<'a> ModelSource<'a> {
    pub fn kind(&self) -> SourceKind {
        match self {
            ModelSource::Zoo(_) => SourceKind::Zoo,
            ModelSource::File { format, .. } => SourceKind::File(*format),
        }
    }

    /// The path of a file source of `format`, or the error a backend that reads only such
    /// files returns for anything else.
    pub fn require_file(&self, backend: &str, format: FileFormat) -> Result<&Path, BackendError> {
        match self {
            ModelSource::File { path, format: f } if *f == format => Ok(path),
            _ => Err(BackendError::Unsupported {
                backend: backend.into(),
                source_desc: self.describe(),
                why: format!("takes {format:?} files (zoo models are exported first)"),
            }),
        }
    }

    /// The zoo model, or the error a backend that builds only zoo models returns for a file
    /// (it has no file parser).
    pub fn require_zoo(&self, backend: &str) -> Result<&'a Model, BackendError> {
        match self {
            ModelSource::Zoo(model) => Ok(model),
            ModelSource::File { .. } => Err(BackendError::Unsupported {
                backend: backend.into(),
                source_desc: self.describe(),
                why: "it builds zoo models from the IR (it reads no model files)".into(),
            }),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ModelSource::Zoo(m) => format!("zoo model {}", m.name),
            ModelSource::File { path, format } => format!("{format:?} file {}", path.display()),
        }
    }
}

/// What one timed iteration does: `bench run --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One forward pass (inference).
    #[default]
    Infer,
    /// One training step: forward, loss, backward and an SGD update of every weight.
    Train,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Infer => "infer",
            Mode::Train => "train",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "infer" | "inference" => Ok(Mode::Infer),
            "train" | "training" => Ok(Mode::Train),
            _ => Err(format!("`{s}`: expected `infer` or `train`")),
        }
    }
}

/// The work a session does per iteration (the mode and the batch size) and the CPU threads
/// it does it on (`bench run --threads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub mode: Mode,
    pub batch: usize,
    /// Compute threads, set explicitly in every runtime (never its default).
    #[serde(default = "one_thread")]
    pub threads: u32,
}

fn one_thread() -> u32 {
    1
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            mode: Mode::Infer,
            batch: 1,
            threads: 1,
        }
    }
}

/// Whether a backend can run on this machine, and if not, why (in words a user can act on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Available; the detail says what would be used (library version, adapter).
    Available {
        detail: String,
    },
    Unavailable {
        reason: String,
    },
}

impl Availability {
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available { .. })
    }
}

/// One step of an engine's plan and its median time over the profiled runs
/// (`Session::profile_ops`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpTiming {
    /// native: the graph nodes the step runs (joined by `+` when the engine fused them); a
    /// runtime (tract, onnxruntime, LiteRT): its own node name.
    pub name: String,
    /// native: their op kinds (`pointwise_conv+add`, `pointwise_conv+depthwise_conv` when
    /// fused); a runtime: its own op name.
    pub op: String,
    /// `HxWxC` of the step's first input and of its output (a runtime: its own layout).
    pub input_shape: String,
    pub output_shape: String,
    /// Multiply-accumulates, counted as in the model tables; 0 for a runtime's steps, which
    /// are not matched to the model's layers.
    pub macs: u64,
    pub median_ns: u64,
    /// The model's name for what the event ran, by which it is lined up with the IR: an
    /// ONNX node (tract, ONNX Runtime), a TFLite op's output tensor (LiteRT), IR nodes joined
    /// by `+` (native, tch); empty when the runtime ties the event to nothing.
    #[serde(default)]
    pub node: String,
    /// How `node` was found: `event name`, `op index`, `position and op kind`, `IR node`.
    #[serde(default)]
    pub matched_by: String,
}

impl OpTiming {
    /// A step's row from its time in every profiled run (ns, any order): their median (the
    /// upper middle of an even count).
    pub fn from_runs(
        name: String,
        op: String,
        input_shape: String,
        output_shape: String,
        macs: u64,
        mut ns: Vec<u64>,
    ) -> OpTiming {
        assert!(!ns.is_empty(), "step {name} was never timed");
        ns.sort_unstable();
        OpTiming {
            node: name.clone(),
            matched_by: "event name".into(),
            name,
            op,
            input_shape,
            output_shape,
            macs,
            median_ns: ns[ns.len() / 2],
        }
    }

    /// The same event tied to `node` of the model, found as `matched_by` says.
    pub fn tied_to(self, node: String, matched_by: &str) -> OpTiming {
        OpTiming {
            node,
            matched_by: matched_by.into(),
            ..self
        }
    }
}

/// The configuration a run records in the summary CSV.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendSettings {
    /// Library and version, e.g. `LiteRT 2.3.0`, or `mobilebench-native 0.1.0`.
    pub library_version: String,
    /// Threads the backend computes with.
    pub threads: u32,
    /// Arithmetic precision, e.g. `fp32`, `fp16`.
    pub precision: String,
    /// Compute device / adapter, e.g. `cpu`, `llvmpipe (Vulkan, Cpu)`.
    pub adapter: String,
    /// Other settings that change speed, `key=value` pairs separated by `;`.
    pub settings: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} is unavailable: {reason}")]
    Unavailable { backend: String, reason: String },
    #[error("{backend} cannot load {source_desc}: {why}")]
    Unsupported {
        backend: String,
        source_desc: String,
        why: String,
    },
    #[error("{backend} failed to load {path}: {why}")]
    Load {
        backend: String,
        path: PathBuf,
        why: String,
    },
    #[error("input has {got} values, the model takes {expected}")]
    InputLength { expected: usize, got: usize },
    #[error("output buffer has {got} values, the model produces {expected}")]
    OutputLength { expected: usize, got: usize },
    #[error("{backend} inference failed: {why}")]
    Run { backend: String, why: String },
}

/// An inference engine. Constructing one is cheap; [`Backend::load`] does the work.
pub trait Backend: Send + Sync {
    /// The name used on the command line and in the CSVs, e.g. `litert-xnnpack`.
    fn name(&self) -> &'static str;
    /// The engine family (`litert`), the variant being `name` minus it (`xnnpack`).
    fn engine(&self) -> &'static str;
    /// One line for `bench list backends`.
    fn description(&self) -> &'static str;
    /// Whether it can run here (runtime present, loadable, adapter found).
    fn availability(&self) -> Availability;
    /// Whether it takes this kind of source (a zoo IR, an .onnx, a .tflite).
    fn accepts(&self, kind: SourceKind) -> bool;
    /// Whether it can do `workload`, and if not, why. Most engines run inference on batch 1
    /// only (exported files have a fixed batch of 1).
    fn supports(&self, workload: &Workload) -> Result<(), String> {
        if workload.mode == Mode::Train {
            Err(format!(
                "{} runs inference only (it has no backward pass)",
                self.name()
            ))
        } else if workload.batch != 1 {
            Err(format!("{} runs batch 1 only", self.name()))
        } else {
            Ok(())
        }
    }
    /// Whether it runs the int8 files of `--precision int8` (a fully-integer .tflite, a QDQ
    /// .onnx) on integer kernels, and if not, why.
    fn runs_int8(&self) -> Result<(), String> {
        Err(format!(
            "{} has no int8 path (int8 runs on litert-builtin, litert-xnnpack and onnxruntime)",
            self.name()
        ))
    }
    /// Whether it can compute on `threads` CPU threads, and if not, why. Engines with a
    /// thread setting override this and set the count in [`Backend::load`] explicitly.
    fn runs_threads(&self, threads: u32) -> Result<(), String> {
        if threads == 1 {
            Ok(())
        } else {
            Err(format!(
                "{} has no thread-count setting: it runs on one thread",
                self.name()
            ))
        }
    }
    /// Prepares a session for `workload` (which [`Backend::supports`] accepted): parse,
    /// compile, allocate. The runner times this as init.
    fn load(
        &self,
        source: &ModelSource,
        workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError>;
    /// The name of the software adapter it would compute on (a CPU rasteriser standing in
    /// for a GPU, e.g. lavapipe), if that is what this machine offers. Such a backend is
    /// real but takes seconds per inference: `all` leaves it out and rows are flagged.
    fn software_adapter(&self) -> Option<String> {
        None
    }
    /// Test-only backends are left out of `all` and marked as such in listings.
    fn is_test_only(&self) -> bool {
        false
    }
    /// The provisioned runtime it loads (a `mobilebench_runtimes` name: `onnxruntime`,
    /// `litert`), if any: the runner fetches it when missing, checks its availability in a
    /// child process, and deploys it to remote devices.
    fn runtime(&self) -> Option<&'static str> {
        None
    }
    /// Why it cannot run under qemu-user emulation, if it cannot (its rows on emulated
    /// devices are then unavailable with this reason).
    fn emulation_blocker(&self) -> Option<&'static str> {
        None
    }
    /// Whether its output is a result to check against the reference: false only for
    /// test-only backends that compute nothing (their output means nothing).
    fn computes(&self) -> bool {
        true
    }
    /// The variant: the part of the name after the engine (`""` for none).
    fn variant(&self) -> &'static str {
        let name = self.name();
        name.strip_prefix(self.engine())
            .map(|v| v.trim_start_matches('-'))
            .unwrap_or("")
    }
}

/// What one timed sample covers (`bench run --timed-io`); the harness's timing contract,
/// the same for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timing {
    /// The input is placed once, before warm-up; a sample is [`Session::infer`] alone (the
    /// inference and whatever makes its result complete); the output is read after the loop.
    #[default]
    Infer,
    /// Every sample is [`Session::set_input`] + [`Session::infer`] + [`Session::read_output`].
    InferWithIo,
}

impl Timing {
    pub fn name(self) -> &'static str {
        match self {
            Timing::Infer => "infer",
            Timing::InferWithIo => "infer-with-io",
        }
    }
}

impl std::str::FromStr for Timing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "infer" => Ok(Timing::Infer),
            "infer-with-io" => Ok(Timing::InferWithIo),
            _ => Err(format!("`{s}`: expected `infer` or `infer-with-io`")),
        }
    }
}

/// A loaded model, ready to run. The three steps of an iteration are separate methods so
/// that no backend can time more or less than another by accident: [`Session::infer`] sees
/// no caller buffer, so it cannot copy the input in or the output out. None of them may
/// allocate on the host in steady state: the runner calls them in the timed loop.
pub trait Session {
    /// The input tensor's shape as the model declares it (NHWC `[batch, H, W, 3]` for zoo
    /// models; a user's file may differ).
    fn input_shape(&self) -> Vec<usize>;
    /// Number of output values (logits, for the whole batch).
    fn output_len(&self) -> usize;
    /// Places `input` in the runtime's own input tensor (on the device, for a GPU), ready
    /// for [`Session::infer`]. Outside the timed region unless `--timed-io`.
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError>;
    /// One iteration on the placed input: an inference, or in train mode a training step.
    /// When it returns the result is complete (a GPU backend has waited for the device);
    /// it stays in the runtime until [`Session::read_output`].
    fn infer(&mut self) -> Result<(), BackendError>;
    /// Copies the last iteration's output (the logits; in train mode those of the step's
    /// forward pass) into `output`. Outside the timed region unless `--timed-io`.
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError>;
    /// What to record about this session's configuration.
    fn settings(&self) -> BackendSettings;
    /// Device-side time of the last run (GPU timestamp queries), where the backend has it.
    fn last_device_time(&self) -> Option<Duration> {
        None
    }
    /// `bench run --profile-ops`: `runs` more inferences (after the timed loop, never inside
    /// it), each step timed; the median time of every step of the engine's plan. `None`: the
    /// engine cannot time its steps (`native`, `tract`, `onnxruntime` and LiteRT on the CPU can).
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        let _ = runs;
        None
    }
    /// Input in, one iteration, output out: for tests and one-off uses, never the timed loop.
    fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), BackendError> {
        self.set_input(input)?;
        self.infer()?;
        self.read_output(output)
    }
}

/// Checks the length of the input a session was handed; call at the top of `set_input`.
pub fn check_input_len(input: &[f32], expected: usize) -> Result<(), BackendError> {
    if input.len() != expected {
        return Err(BackendError::InputLength {
            expected,
            got: input.len(),
        });
    }
    Ok(())
}

/// Checks the length of the output buffer; call at the top of `read_output`.
pub fn check_output_len(output: &[f32], expected: usize) -> Result<(), BackendError> {
    if output.len() != expected {
        return Err(BackendError::OutputLength {
            expected,
            got: output.len(),
        });
    }
    Ok(())
}

impl fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
