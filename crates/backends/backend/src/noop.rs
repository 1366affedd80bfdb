//! A backend that computes nothing: timing it measures the harness's own per-iteration
//! overhead (clock reading, loop, progress counter, the call through `dyn Session`).

use std::hint::black_box;

use crate::{
    check_lengths, Availability, Backend, BackendError, BackendSettings, ModelSource, Session,
    SourceKind, Workload,
};

pub struct NoopBackend;

impl Backend for NoopBackend {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn engine(&self) -> &'static str {
        "noop"
    }
    fn description(&self) -> &'static str {
        "test only: does no work, so its latency is the harness's own overhead per iteration"
    }
    fn availability(&self) -> Availability {
        Availability::Available {
            detail: "built in".into(),
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
        let ModelSource::Zoo(model) = source else {
            return Err(BackendError::Unsupported {
                backend: self.name().into(),
                source_desc: source.describe(),
                why: "takes zoo models only".into(),
            });
        };
        Ok(Box::new(NoopSession {
            input: model.graph.input.nhwc(),
            output_len: model.graph.output().len(),
        }))
    }
    fn is_test_only(&self) -> bool {
        true
    }
}

struct NoopSession {
    input: [usize; 4],
    output_len: usize,
}

impl Session for NoopSession {
    fn input_shape(&self) -> Vec<usize> {
        self.input.to_vec()
    }
    fn output_len(&self) -> usize {
        self.output_len
    }
    fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), BackendError> {
        check_lengths(input, output, self.input.iter().product(), self.output_len)?;
        black_box(output);
        Ok(())
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings {
            library_version: format!("mobilebench {}", env!("CARGO_PKG_VERSION")),
            threads: 1,
            precision: "none".into(),
            adapter: "cpu".into(),
            settings: "computes nothing".into(),
        }
    }
}
