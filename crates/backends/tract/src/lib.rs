//! `tract`: sonos' pure-Rust inference engine on the exported ONNX file (tract-onnx; not
//! tract-tflite, whose MEAN runs in integer arithmetic and gives wrong MobileNet results).
//! Optimised plan, one thread (tract runs single-threaded unless told otherwise).

use std::sync::Arc;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    FileFormat, ModelSource, OpTiming, Session, SourceKind, Workload,
};
use tract_onnx::prelude::*;

const NAME: &str = "tract";
const VERSION: &str = "tract-onnx 0.23.9";

pub struct TractBackend;

impl Backend for TractBackend {
    fn runs_threads(&self, threads: u32) -> Result<(), String> {
        if threads == 1 {
            return Ok(());
        }
        Err("tract runs one thread here: its optimised plan is single-threaded unless tract-linalg's `multithread-mm` executor is built in and chosen, which this build does not do".into())
    }
    fn name(&self) -> &'static str {
        NAME
    }
    fn engine(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "tract (pure-Rust ONNX inference), optimised plan, 1 thread"
    }
    fn availability(&self) -> Availability {
        Availability::Available {
            detail: format!("built in, {VERSION}"),
        }
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::File(FileFormat::Onnx)
    }
    fn load(
        &self,
        source: &ModelSource,
        _workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError> {
        let path = source.require_file(NAME, FileFormat::Onnx)?;
        let fail = |e: TractError| BackendError::Load {
            backend: NAME.into(),
            path: path.to_path_buf(),
            why: format!("{e:#}")
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let typed = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(fail)?
            .into_typed()
            .map_err(fail)?;
        let shape: Vec<usize> = match typed.input_fact(0).map_err(fail)?.shape.as_concrete() {
            Some(s) => s.to_vec(),
            None => {
                return Err(BackendError::Load {
                    backend: NAME.into(),
                    path: path.to_path_buf(),
                    why: "the model's input has dynamic dimensions".into(),
                })
            }
        };
        let plan = typed
            .into_optimized()
            .map_err(fail)?
            .into_runnable()
            .map_err(fail)?;
        let output_len = match plan
            .model()
            .output_fact(0)
            .map_err(fail)?
            .shape
            .as_concrete()
        {
            Some(s) => s.iter().product(),
            None => 0,
        };
        let state = plan.spawn().map_err(fail)?;
        let input = Arc::new(Tensor::zero::<f32>(&shape).map_err(fail)?);
        Ok(Box::new(TractSession {
            state,
            input,
            shape,
            output_len,
            outputs: None,
        }))
    }
}

struct TractSession {
    state: TypedSimpleState,
    /// Handed to tract as a shared constant each run; tract releases it when the run ends,
    /// so the next run can write into it again without allocating.
    input: Arc<Tensor>,
    shape: Vec<usize>,
    output_len: usize,
    /// The last inference's outputs, until the next one.
    outputs: Option<TVec<TValue>>,
}

/// One plan node's identity and its time in every profiled run.
struct NodeTimes {
    id: usize,
    name: String,
    op: String,
    input_shape: String,
    output_shape: String,
    ns: Vec<u64>,
}

/// A fact's shape as `AxBxC` (tract's own layout: NCHW after the exported Transpose).
fn shape_of(fact: &TypedFact) -> String {
    fact.shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

impl TractSession {
    fn time_nodes(&mut self, runs: u32) -> Result<Vec<OpTiming>, BackendError> {
        let model = self.state.model().clone();
        let mut nodes: Vec<NodeTimes> = Vec::new();
        for _ in 0..runs {
            let mut order = 0;
            self.state
                .run_plan_with_eval(
                    tvec!(TValue::from_const(self.input.clone())),
                    |ctx, op_state, node, inputs| {
                        let start = std::time::Instant::now();
                        let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                        let ns = start.elapsed().as_nanos() as u64;
                        if nodes.len() <= order {
                            let input_shape = node
                                .inputs
                                .first()
                                .and_then(|o| model.outlet_fact(*o).ok())
                                .map_or_else(String::new, shape_of);
                            nodes.push(NodeTimes {
                                id: node.id,
                                name: node.name.clone(),
                                op: node.op().name().to_string(),
                                input_shape,
                                output_shape: node
                                    .outputs
                                    .first()
                                    .map_or_else(String::new, |o| shape_of(&o.fact)),
                                ns: Vec::new(),
                            });
                        }
                        debug_assert_eq!(nodes[order].id, node.id, "plan order changed");
                        nodes[order].ns.push(ns);
                        order += 1;
                        out
                    },
                )
                .map_err(fail)?;
        }
        Ok(nodes
            .into_iter()
            // Sources (the input) do no work; every other node is a step.
            .filter(|n| n.op != "Source")
            .map(|n| OpTiming::from_runs(n.name, n.op, n.input_shape, n.output_shape, 0, n.ns))
            .collect())
    }
}

fn fail(e: TractError) -> BackendError {
    BackendError::Run {
        backend: NAME.into(),
        why: e.to_string(),
    }
}

impl Session for TractSession {
    fn input_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn output_len(&self) -> usize {
        self.output_len
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.shape.iter().product())?;
        match Arc::get_mut(&mut self.input) {
            Some(t) => t
                .try_as_plain_ram_mut()
                .map_err(fail)?
                .as_slice_mut::<f32>()
                .map_err(fail)?
                .copy_from_slice(input),
            None => {
                self.input = Arc::new(Tensor::from_shape(&self.shape, input).map_err(fail)?);
            }
        }
        Ok(())
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        // The previous outputs are released first, as a run that returned them would.
        self.outputs = None;
        self.outputs = Some(
            self.state
                .run(tvec!(TValue::from_const(self.input.clone())))
                .map_err(fail)?,
        );
        Ok(())
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.output_len)?;
        let Some(outputs) = &self.outputs else {
            return Err(BackendError::Run {
                backend: NAME.into(),
                why: "no output: read before the first inference".into(),
            });
        };
        let out = outputs[0].try_as_plain_ram().map_err(fail)?;
        output.copy_from_slice(out.as_slice::<f32>().map_err(fail)?);
        Ok(())
    }
    /// Every node of tract's optimised plan timed as it runs (`run_plan_with_eval` with the
    /// default evaluator between two clock readings), in plan order, under tract's own names
    /// (`<onnx node>.matmatmul`, …) and op names; MACs are not known at this level (0).
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        Some(self.time_nodes(runs.max(1)))
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings {
            library_version: VERSION.into(),
            threads: 1,
            precision: "fp32".into(),
            adapter: "cpu".into(),
            settings: "source=onnx;plan=optimized".into(),
        }
    }
}
