//! `rten`: Robert Knight's pure-Rust inference engine, loading the exported `.onnx` directly
//! (its `onnx_format` feature), with the graph optimisations it applies by default, on a
//! pool of `--threads` threads. What a Rust user would pick instead of mobilebench's own engine.
//!
//! rten always runs a model inside a rayon pool, never on the calling thread; the pool's
//! threads do the work while the calling thread sleeps on a latch. They are confined at load
//! to the cores the calling worker thread may run on (the run's core set), so the measured
//! cores are the ones the harness chose.

use std::sync::Arc;

mod profile;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    FileFormat, ModelSource, OpTiming, Session, SourceKind, Workload,
};
use rten::{Dimension, Model, NodeId, RunOptions, ThreadPool, Value};
use rten_tensor::prelude::*;
use rten_tensor::Tensor;

const NAME: &str = "rten";
const VERSION: &str = "rten 0.27.0";

pub struct RtenBackend;

impl Backend for RtenBackend {
    fn name(&self) -> &'static str {
        NAME
    }
    fn engine(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "rten (pure-Rust ONNX inference), default graph optimisations, a pool of --threads threads"
    }
    fn availability(&self) -> Availability {
        Availability::Available {
            detail: format!("built in, {VERSION}"),
        }
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::File(FileFormat::Onnx)
    }
    fn runs_threads(&self, _threads: u32) -> Result<(), String> {
        Ok(())
    }
    fn load(
        &self,
        source: &ModelSource,
        workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError> {
        let path = source.require_file(NAME, FileFormat::Onnx)?;
        let load_error = |why: String| BackendError::Load {
            backend: NAME.into(),
            path: path.to_path_buf(),
            why,
        };
        let model = Model::load_file(path).map_err(|e| load_error(e.to_string()))?;
        let (&input_id, &output_id) = match (model.input_ids(), model.output_ids()) {
            ([input], [output, ..]) => (input, output),
            (inputs, _) => {
                return Err(load_error(format!(
                    "expected one input and at least one output, found {} inputs",
                    inputs.len()
                )))
            }
        };
        let dims = model
            .node_info(input_id)
            .and_then(|info| info.shape())
            .ok_or_else(|| load_error("the model's input has no shape".into()))?;
        let shape = dims
            .iter()
            .map(|d| match d {
                Dimension::Fixed(n) => Ok(*n),
                Dimension::Symbolic(name) => Err(load_error(format!(
                    "the model's input has a dynamic dimension `{name}`"
                ))),
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let threads = workload.threads.max(1);
        let pool = Arc::new(ThreadPool::with_num_threads(threads as usize));
        let pinned = pin_pool_like_caller(&pool);
        let input = Tensor::from_data(&shape, vec![0.0f32; shape.iter().product()]);
        let mut session = RtenSession {
            model,
            input_id,
            output_id,
            options: RunOptions::default().with_thread_pool(Some(pool)),
            input,
            shape,
            output: None,
            output_len: 0,
            pinned,
            threads,
        };
        // The output's length from the file; only a file that leaves it open costs a run here
        // (counted in init_ms, so first_inference_ms is then not rten's very first).
        let declared: Option<usize> = session
            .model
            .node_info(output_id)
            .and_then(|info| info.shape())
            .and_then(|dims| {
                dims.iter()
                    .map(|d| match d {
                        Dimension::Fixed(n) => Some(*n),
                        Dimension::Symbolic(_) => None,
                    })
                    .product()
            });
        session.output_len = match declared {
            Some(len) => len,
            None => {
                session.infer()?;
                let len = session.output_values()?.len();
                session.output = None;
                len
            }
        };
        Ok(Box::new(session))
    }
}

/// Gives the pool's thread the calling thread's CPU affinity (the worker pinned itself
/// before loading). Returns whether it took.
fn pin_pool_like_caller(pool: &ThreadPool) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; both calls get its true size, pid 0 = this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut set) != 0 {
                return false;
            }
            pool.run(|| libc::sched_setaffinity(0, size, &set) == 0)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pool;
        false
    }
}

struct RtenSession {
    model: Model,
    input_id: NodeId,
    output_id: NodeId,
    options: RunOptions,
    input: Tensor<f32>,
    shape: Vec<usize>,
    /// The last inference's output, until the next one.
    output: Option<Value>,
    output_len: usize,
    pinned: bool,
    threads: u32,
}

fn run_error(why: impl ToString) -> BackendError {
    BackendError::Run {
        backend: NAME.into(),
        why: why.to_string(),
    }
}

impl RtenSession {
    fn output_values(&self) -> Result<&[f32], BackendError> {
        let value = self
            .output
            .as_ref()
            .ok_or_else(|| run_error("no output: read before the first inference"))?;
        let view = value
            .as_tensor_view::<f32>()
            .ok_or_else(|| run_error("the model's output is not f32"))?;
        view.data()
            .ok_or_else(|| run_error("the model's output is not contiguous"))
    }
}

impl Session for RtenSession {
    fn input_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn output_len(&self) -> usize {
        self.output_len
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.shape.iter().product())?;
        self.input
            .data_mut()
            .ok_or_else(|| run_error("input tensor is not contiguous"))?
            .copy_from_slice(input);
        Ok(())
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        // The previous output is released first, as a run that returned it would.
        self.output = None;
        let outputs = self
            .model
            .run(
                vec![(self.input_id, self.input.view().into())],
                &[self.output_id],
                Some(self.options.clone()),
            )
            .map_err(run_error)?;
        self.output = outputs.into_iter().next();
        Ok(())
    }
    /// rten prints its per-step times (`verbose`): they are captured from standard output
    /// during the profiled runs ([`profile`]).
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        let options = self.options.clone().with_verbose(true);
        let text = profile::captured(runs, || {
            self.model
                .run(
                    vec![(self.input_id, self.input.view().into())],
                    &[self.output_id],
                    Some(options.clone()),
                )
                .map(drop)
                .map_err(|e| e.to_string())
        });
        Some(
            text.and_then(|t| profile::step_medians(&t))
                .map_err(|why| run_error(format!("profiling: {why}"))),
        )
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.output_len)?;
        output.copy_from_slice(self.output_values()?);
        Ok(())
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings {
            library_version: VERSION.into(),
            threads: self.threads,
            precision: "fp32".into(),
            adapter: "cpu".into(),
            settings: format!(
                "source=onnx;optimize=default;pool_thread={}",
                if self.pinned {
                    "pinned-like-caller"
                } else {
                    "unpinned"
                }
            ),
        }
    }
}
