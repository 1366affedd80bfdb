//! `native`: mobilebench's own pure-Rust CPU engine. NHWC f32, one thread. Pointwise
//! convolutions, the stem and the FC layers run one GEMM with packed weights and the bias,
//! activation and residual add fused into its store; depthwise convolutions have their own
//! kernel; both are written once over a small SIMD trait and compiled for AVX-512F, AVX2+FMA,
//! NEON and a portable fallback, the best of which is chosen at run time (`settings`: `isa=`).

mod aligned;
mod attention;
mod chain;
mod conv;
mod depthwise;
mod engine;
mod gemm;
mod kernels;
mod math;
mod peak;
mod plan;
pub mod pool;
mod simd;

use std::time::Duration;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    ModelSource, OpTiming, Session, SourceKind, Workload,
};

pub use engine::{Engine, RowFusion, StepInfo};

pub use peak::fma_peak_gflops;
pub use simd::Isa;

pub struct NativeBackend;

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }
    fn engine(&self) -> &'static str {
        "native"
    }
    fn description(&self) -> &'static str {
        "mobilebench's pure-Rust engine (NHWC f32, one thread, AVX-512/AVX2/NEON kernels chosen at run time)"
    }
    fn availability(&self) -> Availability {
        Availability::Available {
            detail: format!("built in, mobilebench-native {}", env!("CARGO_PKG_VERSION")),
        }
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::Zoo
    }
    fn runs_threads(&self, _threads: u32) -> Result<(), String> {
        Ok(())
    }
    fn load(
        &self,
        source: &ModelSource,
        workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError> {
        let model = source.require_zoo(self.name())?;
        let isa = Isa::chosen().map_err(|reason| BackendError::Unavailable {
            backend: self.name().into(),
            reason,
        })?;
        // The pool's threads are not pinned here: the harness places every runtime's
        // threads alike (confined to the run's core set after load, the caller on its first).
        let threads = (workload.threads as usize).max(1);
        let engine = Engine::with_threads(model, isa, threads, None);
        Ok(Box::new(NativeSession {
            input: vec![0.0; engine.input_len()],
            output: vec![0.0; engine.output_len()],
            engine,
            bn_separate: model.has_batch_norm(),
            input_shape: model.graph.input.nhwc(),
        }))
    }
}

struct NativeSession {
    engine: Engine,
    /// The engine's input and output tensors: it reads and writes them in place.
    input: Vec<f32>,
    output: Vec<f32>,
    bn_separate: bool,
    input_shape: [usize; 4],
}

impl Session for NativeSession {
    fn input_shape(&self) -> Vec<usize> {
        self.input_shape.to_vec()
    }
    fn output_len(&self) -> usize {
        self.engine.output_len()
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.input.len())?;
        self.input.copy_from_slice(input);
        Ok(())
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        self.engine.run(&self.input, &mut self.output);
        Ok(())
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.output.len())?;
        output.copy_from_slice(&self.output);
        Ok(())
    }
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        let steps: Vec<StepInfo> = self.engine.timed_parts().cloned().collect();
        let mut per_step: Vec<Vec<u64>> = vec![Vec::with_capacity(runs as usize); steps.len()];
        let mut times = vec![Duration::ZERO; steps.len()];
        for _ in 0..runs.max(1) {
            times.fill(Duration::ZERO);
            self.engine
                .run_timed(&self.input, &mut self.output, &mut times);
            for (all, t) in per_step.iter_mut().zip(&times) {
                all.push(t.as_nanos() as u64);
            }
        }
        Some(Ok(steps
            .into_iter()
            .zip(per_step)
            .map(|(info, ns)| {
                let nodes = info.name.clone();
                OpTiming::from_runs(
                    info.name,
                    info.op,
                    info.input_shape,
                    info.output_shape,
                    info.macs,
                    ns,
                )
                .tied_to(nodes, "IR node")
            })
            .collect()))
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings {
            library_version: format!("mobilebench-native {}", env!("CARGO_PKG_VERSION")),
            threads: self.engine.threads() as u32,
            precision: "fp32".into(),
            adapter: "cpu".into(),
            settings: format!(
                "bn={};isa={};pointwise=packed-gemm-{}",
                if self.bn_separate {
                    "separate"
                } else {
                    "folded"
                },
                self.engine.isa().name(),
                gemm::tile_label(self.engine.isa())
            ),
        }
    }
}

#[cfg(test)]
mod tests;
