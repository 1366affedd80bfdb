//! Test-only backends, left out of `all`: each is a zoo-model session that computes nothing
//! and stands for one thing the harness must handle.
//!
//! - `noop` does no work: timing it measures the harness's own per-iteration overhead (clock
//!   reading, loop, progress counter, the call through `dyn Session`).
//! - `nan` outputs NaN: the agreement check must flag it and no report may call it fastest.
//! - `fixed` busy-waits a set time per inference (`MOBILEBENCH_FIXED_US` microseconds,
//!   default 500), so its latency is known: comparisons of runs can be tested on it. Under
//!   `--profile-ops` each profiled run costs [`PROFILER_DELAY`] more (a profiler's own
//!   cost), so a test can tell profiled iterations from timed ones.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    ModelSource, OpTiming, Session, SourceKind, Workload,
};

/// The environment variable that sets `fixed`'s cost per inference, in microseconds.
pub const FIXED_COST_VAR: &str = "MOBILEBENCH_FIXED_US";
const FIXED_COST_DEFAULT_US: u64 = 500;
/// What profiling adds to each of `fixed`'s runs.
pub const PROFILER_DELAY: Duration = Duration::from_millis(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Noop,
    Nan,
    Fixed,
}

/// One test-only backend.
pub struct TestBackend(Kind);

impl TestBackend {
    pub const NOOP: TestBackend = TestBackend(Kind::Noop);
    pub const NAN: TestBackend = TestBackend(Kind::Nan);
    pub const FIXED: TestBackend = TestBackend(Kind::Fixed);
    pub const ALL: [TestBackend; 3] = [Self::NOOP, Self::NAN, Self::FIXED];
}

fn fixed_cost() -> Result<Duration, String> {
    match std::env::var(FIXED_COST_VAR) {
        Err(_) => Ok(Duration::from_micros(FIXED_COST_DEFAULT_US)),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_micros)
            .map_err(|_| format!("{FIXED_COST_VAR}={v}: expected whole microseconds")),
    }
}

impl Backend for TestBackend {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Noop => "noop",
            Kind::Nan => "nan",
            Kind::Fixed => "fixed",
        }
    }
    fn engine(&self) -> &'static str {
        self.name()
    }
    fn description(&self) -> &'static str {
        match self.0 {
            Kind::Noop => {
                "test only: does no work, so its latency is the harness's own overhead per iteration"
            }
            Kind::Nan => "test only: outputs NaN, which the agreement check must flag",
            Kind::Fixed => {
                "test only: busy-waits MOBILEBENCH_FIXED_US µs (default 500) per inference"
            }
        }
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
        let model = source.require_zoo(self.name())?;
        let cost = match self.0 {
            Kind::Fixed => fixed_cost().map_err(|why| BackendError::Load {
                backend: self.name().into(),
                path: FIXED_COST_VAR.into(),
                why,
            })?,
            _ => Duration::ZERO,
        };
        let output_len = model.graph.output().len();
        let fill = if self.0 == Kind::Nan { f32::NAN } else { 0.0 };
        Ok(Box::new(TestSession {
            kind: self.0,
            input: model.graph.input.nhwc(),
            output: vec![fill; output_len],
            cost,
        }))
    }
    fn is_test_only(&self) -> bool {
        true
    }
    fn computes(&self) -> bool {
        // `nan` claims a result (a wrong one), so it is checked like a real engine.
        self.0 == Kind::Nan
    }
}

/// Spins (not sleeps, so the cost stays on the pinned core, like real work) for `d`.
fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

struct TestSession {
    kind: Kind,
    input: [usize; 4],
    output: Vec<f32>,
    cost: Duration,
}

impl Session for TestSession {
    fn input_shape(&self) -> Vec<usize> {
        self.input.to_vec()
    }
    fn output_len(&self) -> usize {
        self.output.len()
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.input.iter().product())?;
        black_box(input);
        Ok(())
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        spin(self.cost);
        black_box(&mut self.output);
        Ok(())
    }
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        if self.kind != Kind::Fixed {
            return None;
        }
        let ns = (0..runs.max(1))
            .map(|_| {
                let start = Instant::now();
                spin(self.cost + PROFILER_DELAY);
                start.elapsed().as_nanos() as u64
            })
            .collect();
        let op = "busy wait + profiler delay".to_string();
        Some(Ok(vec![OpTiming::from_runs(
            "wait".into(),
            op,
            String::new(),
            String::new(),
            0,
            ns,
        )]))
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.output.len())?;
        output.copy_from_slice(&self.output);
        Ok(())
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings {
            library_version: format!("mobilebench {}", env!("CARGO_PKG_VERSION")),
            threads: 1,
            precision: match self.kind {
                Kind::Nan => "fp32".into(),
                _ => "none".into(),
            },
            adapter: "cpu".into(),
            settings: match self.kind {
                Kind::Noop => "computes nothing".into(),
                Kind::Nan => "outputs NaN".into(),
                Kind::Fixed => format!("busy_wait_us={}", self.cost.as_micros()),
            },
        }
    }
}
