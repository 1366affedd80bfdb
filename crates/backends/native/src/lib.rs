//! `native`: mobilebench's own pure-Rust CPU engine. NHWC f32, one thread, activations fused
//! into the convolutions (or into the batch-norm pass with `--bn separate`), pointwise
//! convolutions as SGEMM.

mod conv;
mod engine;
mod gemm;
mod kernels;
mod peak;
mod simd;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    ModelSource, Session, SourceKind, Workload,
};

pub use engine::{Engine, StepInfo};
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
        "mobilebench's pure-Rust engine (NHWC f32, one thread, SGEMM pointwise)"
    }
    fn availability(&self) -> Availability {
        Availability::Available {
            detail: format!("built in, mobilebench-native {}", env!("CARGO_PKG_VERSION")),
        }
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::Zoo
    }
    fn load(
        &self,
        source: &ModelSource,
        _workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError> {
        let model = source.require_zoo(self.name())?;
        let engine = Engine::new(model);
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
    fn settings(&self) -> BackendSettings {
        BackendSettings {
            library_version: format!("mobilebench-native {}", env!("CARGO_PKG_VERSION")),
            threads: 1,
            precision: "fp32".into(),
            adapter: "cpu".into(),
            settings: format!(
                "bn={};pointwise=matrixmultiply-sgemm",
                if self.bn_separate {
                    "separate"
                } else {
                    "folded"
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests;
