//! `onnxruntime`: ONNX Runtime's CPU execution provider, through `ort` with the library
//! loaded at run time from the provisioned PyPI wheel (`bench setup`).
//!
//! Settings: intra-op threads `--threads` (set explicitly, so ORT pins none of its threads:
//! they inherit the cores the worker confined the process to), inter-op 1, sequential execution, graph optimisation level
//! 3 (its NCHWc layout transformation halves MobileNet latency against levels 1-2). Inputs and
//! outputs are bound once (IoBinding) to preallocated tensors: `set_input` writes the input
//! tensor, `infer` is `run_binding` alone, `read_output` copies the output tensor.

mod profile;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    FileFormat, ModelSource, OpTiming, Session as BenchSession, SourceKind, Workload,
};
use mobilebench_runtimes::{self as runtimes, Installed, Platform, ONNXRUNTIME};
use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, ValueType};

const NAME: &str = "onnxruntime";

pub struct OnnxRuntimeBackend;

fn installed() -> Result<Installed, String> {
    let platform = Platform::host().ok_or("no ONNX Runtime wheel for this architecture")?;
    runtimes::locate(&ONNXRUNTIME, platform).ok_or_else(|| {
        format!(
            "ONNX Runtime {} is not provisioned for {}: run `bench setup` (needs python3 with pip and PyPI)",
            ONNXRUNTIME.version,
            platform.name()
        )
    })
}

/// The process-wide environment, created on first use from the provisioned library (after
/// the worker has pinned itself, so ORT's threads inherit the core).
fn environment() -> Result<&'static ort::environment::Environment, String> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = installed()?.main_library(&ONNXRUNTIME);
        ort::init_from(&lib)
            .map_err(|e| format!("cannot load {}: {e}", lib.display()))?
            .with_name("mobilebench")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

impl Backend for OnnxRuntimeBackend {
    fn name(&self) -> &'static str {
        NAME
    }
    fn engine(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "ONNX Runtime CPU execution provider, --threads intra-op threads, optimisation level 3"
    }
    fn availability(&self) -> Availability {
        match installed() {
            Ok(i) => match check_loadable(&i.main_library(&ONNXRUNTIME)) {
                Ok(()) => Availability::Available {
                    detail: i.describe(),
                },
                Err(reason) => Availability::Unavailable { reason },
            },
            Err(reason) => Availability::Unavailable { reason },
        }
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::File(FileFormat::Onnx)
    }
    fn runs_int8(&self) -> Result<(), String> {
        Ok(())
    }
    fn runtime(&self) -> Option<&'static str> {
        Some(ONNXRUNTIME.name)
    }
    fn runs_threads(&self, _threads: u32) -> Result<(), String> {
        Ok(())
    }
    fn load(
        &self,
        source: &ModelSource,
        workload: &Workload,
    ) -> Result<Box<dyn BenchSession>, BackendError> {
        let path = source.require_file(NAME, FileFormat::Onnx)?;
        let fail = |why: String| BackendError::Load {
            backend: NAME.into(),
            path: path.to_path_buf(),
            why,
        };
        let env = environment().map_err(|reason| BackendError::Unavailable {
            backend: NAME.into(),
            reason,
        })?;
        let version = installed().map(|i| i.describe()).unwrap_or_default();
        OrtSession::new(env, path, version, workload.threads, None)
            .map_err(fail)
            .map(|s| Box::new(s) as Box<dyn BenchSession>)
    }
}

fn check_loadable(lib: &Path) -> Result<(), String> {
    // SAFETY: loading ONNX Runtime runs only its library initialisers.
    unsafe { libloading::Library::new(lib) }
        .map(drop)
        .map_err(|e| format!("{} does not load: {e}", lib.display()))
}

/// A fixed tensor shape from a model's declared one: a dynamic batch becomes 1; any other
/// dynamic dimension is an error (benchmarks need a fixed input).
fn fixed_shape(ty: &ValueType, what: &str) -> Result<Vec<usize>, String> {
    let ValueType::Tensor { shape, .. } = ty else {
        return Err(format!("the model's {what} is not a tensor"));
    };
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| match (i, d) {
            (_, d) if d > 0 => Ok(d as usize),
            (0, _) => Ok(1),
            _ => Err(format!(
                "the model's {what} has a dynamic dimension {i}: {shape:?}"
            )),
        })
        .collect()
}

struct OrtSession {
    session: Session,
    binding: ort::session::IoBinding,
    input: Tensor<f32>,
    output: Tensor<f32>,
    input_shape: Vec<usize>,
    output_len: usize,
    version: String,
    env: &'static ort::environment::Environment,
    path: PathBuf,
    threads: u32,
}

impl OrtSession {
    /// A session on `path`; with `profile_prefix`, ORT's profiler records its whole life
    /// into a JSON file named from that prefix.
    fn new(
        env: &'static ort::environment::Environment,
        path: &Path,
        version: String,
        threads: u32,
        profile_prefix: Option<&Path>,
    ) -> Result<Self, String> {
        let threads = threads.max(1);
        let e = |e: ort::Error| e.to_string();
        let mut builder = Session::builder(env).map_err(e)?;
        if let Some(prefix) = profile_prefix {
            builder = builder.with_profiling(prefix).map_err(|x| x.to_string())?;
        }
        let session = builder
            // Explicit, never 0 (ORT's default picks the count and pins its threads itself).
            .with_intra_threads(threads as usize)
            .map_err(|x| x.to_string())?
            .with_inter_threads(1)
            .map_err(|x| x.to_string())?
            .with_parallel_execution(false)
            .map_err(|x| x.to_string())?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|x| x.to_string())?
            .commit_from_file(path)
            .map_err(e)?;
        if session.inputs().len() != 1 || session.outputs().is_empty() {
            return Err(format!(
                "expected one input and at least one output, the model has {} and {}",
                session.inputs().len(),
                session.outputs().len()
            ));
        }
        let input_name = session.inputs()[0].name().to_string();
        let output_name = session.outputs()[0].name().to_string();
        let input_shape = fixed_shape(session.inputs()[0].dtype(), "input")?;
        let output_shape = fixed_shape(session.outputs()[0].dtype(), "output")?;
        let allocator = Allocator::default();
        let input = Tensor::<f32>::new(&allocator, input_shape.clone()).map_err(e)?;
        let mut output = Tensor::<f32>::new(&allocator, output_shape.clone()).map_err(e)?;
        let mut binding = session.create_binding().map_err(e)?;
        binding.bind_input(&input_name, &input).map_err(e)?;
        binding.bind_output(&output_name, &mut output).map_err(e)?;
        Ok(OrtSession {
            session,
            binding,
            input,
            output,
            output_len: output_shape.iter().product(),
            input_shape,
            version,
            env,
            path: path.to_path_buf(),
            threads,
        })
    }

    /// `--profile-ops`: a second session with ORT's profiler on, fed the same input, two
    /// warm-up runs then `runs` profiled ones; the median of every kernel of its optimised
    /// graph, from the trace. This session (the timed one) is never profiled.
    fn time_kernels(&mut self, runs: u32) -> Result<Vec<OpTiming>, String> {
        const WARMUP: usize = 2;
        let dir = std::env::temp_dir().join(format!(
            "mobilebench-ort-profile-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let result = (|| {
            let mut profiled = OrtSession::new(
                self.env,
                &self.path,
                self.version.clone(),
                self.threads,
                Some(&dir.join("profile")),
            )?;
            let input = self
                .input
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?
                .1;
            profiled.set_input(input).map_err(|e| e.to_string())?;
            for _ in 0..WARMUP + runs as usize {
                profiled.infer().map_err(|e| e.to_string())?;
            }
            let file = profiled
                .session
                .end_profiling()
                .map_err(|e| e.to_string())?;
            let trace = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
            profile::kernel_medians(&trace, WARMUP).map_err(|e| format!("{file}: {e}"))
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}

fn fail(e: ort::Error) -> BackendError {
    BackendError::Run {
        backend: NAME.into(),
        why: e.to_string(),
    }
}

impl BenchSession for OrtSession {
    fn input_shape(&self) -> Vec<usize> {
        self.input_shape.clone()
    }
    fn output_len(&self) -> usize {
        self.output_len
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.input_shape.iter().product())?;
        self.input
            .try_extract_tensor_mut::<f32>()
            .map_err(fail)?
            .1
            .copy_from_slice(input);
        Ok(())
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        drop(self.session.run_binding(&self.binding).map_err(fail)?);
        Ok(())
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.output_len)?;
        output.copy_from_slice(self.output.try_extract_tensor::<f32>().map_err(fail)?.1);
        Ok(())
    }
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        Some(
            self.time_kernels(runs.max(1))
                .map_err(|why| BackendError::Run {
                    backend: NAME.into(),
                    why,
                }),
        )
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings {
            library_version: self.version.clone(),
            threads: self.threads,
            precision: "fp32".into(),
            adapter: "cpu".into(),
            settings: format!(
                "ep=cpu;intra_threads={};inter_threads=1;execution=sequential;opt_level=3;io_binding",
                self.threads
            ),
        }
    }
}
