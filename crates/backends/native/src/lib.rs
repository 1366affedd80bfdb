//! `native`: mobilebench's own pure-Rust CPU engine. NHWC f32, one thread, activations fused
//! into the convolutions (or into the batch-norm pass with `--bn separate`), pointwise
//! convolutions as SGEMM.

mod engine;
mod kernels;

use mobilebench_backend::{
    check_lengths, Availability, Backend, BackendError, BackendSettings, ModelSource, Session,
    SourceKind, Workload,
};

pub use engine::Engine;

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
        match source {
            ModelSource::Zoo(model) => Ok(Box::new(NativeSession {
                engine: Engine::new(model),
                bn_separate: model.has_batch_norm(),
                input_shape: model.graph.input.nhwc(),
            })),
            ModelSource::File { .. } => Err(BackendError::Unsupported {
                backend: self.name().into(),
                source_desc: source.describe(),
                why: "the native engine runs zoo models only (it has no file parser)".into(),
            }),
        }
    }
}

struct NativeSession {
    engine: Engine,
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
    fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), BackendError> {
        check_lengths(
            input,
            output,
            self.engine.input_len(),
            self.engine.output_len(),
        )?;
        self.engine.run(input, output);
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
