//! A depthwise convolution run row by row with the pointwise convolutions on either side of
//! it: the expansion before it produces each input row just before it is needed, and the
//! projection after it (with the block's residual add) consumes each output row as soon as
//! it is written. The two intermediates of an inverted-residual block, the largest tensors
//! of the model at high resolution, stay in a ring of rows and one row in cache and are
//! never written to memory.

use std::time::{Duration, Instant};

use mobilebench_models::ir::Activation;

use crate::depthwise::{Depthwise, RowsIn, RowsOut};
use crate::gemm::{AMatrix, Gemm, PackedB};
use crate::simd::Isa;

/// A pointwise convolution of the chain: its packed weights and activation.
pub struct Pointwise {
    pub weight: PackedB,
    pub act: Activation,
}

impl Pointwise {
    /// `C = act(A · W + bias) [+ residual]` over `a`'s pixels.
    fn run(&self, isa: Isa, a: &[f32], residual: Option<&[f32]>, c: &mut [f32]) {
        let (k, n) = (self.weight.k(), self.weight.n());
        Gemm {
            m: a.len() / k,
            a: AMatrix::Rows { data: a, stride: k },
            b: self.weight.view(),
            act: self.act,
            residual,
            c,
            ldc: n,
        }
        .run(isa)
    }
}

pub struct RowChain {
    pub expand: Option<Pointwise>,
    pub depthwise: Depthwise,
    pub project: Option<Pointwise>,
    /// The projection's output gets the step's second input added (a residual block).
    pub residual: bool,
}

/// Time spent in the expansion, the depthwise and the projection of one run (`--profile-ops`).
pub type PartTimes = [Duration; 3];

impl RowChain {
    /// Floats of scratch `run` needs.
    pub fn scratch_len(&self) -> usize {
        self.depthwise
            .rows_scratch_len(self.expand.is_some(), self.project.is_some())
    }

    /// The parts the chain runs, in order: expansion, depthwise, projection (those present).
    pub fn parts(&self) -> impl Iterator<Item = usize> + '_ {
        [self.expand.is_some(), true, self.project.is_some()]
            .into_iter()
            .enumerate()
            .filter_map(|(i, present)| present.then_some(i))
    }

    /// Output rows: the unit a step is split into across threads.
    pub fn output_rows(&self) -> usize {
        self.depthwise.output_rows()
    }

    /// Floats of one row of the chain's output.
    pub fn output_row_len(&self) -> usize {
        let row = self.depthwise.output_row_len();
        self.project
            .as_ref()
            .map_or(row, |p| row / p.weight.k() * p.weight.n())
    }

    /// `input` is the chain's input tensor (the expansion's, or the depthwise's without one);
    /// `out` holds output rows `rows` of the chain's output (a thread's band), the residual
    /// the whole tensor; `times`, when given, gets each part's time added.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        isa: Isa,
        input: &[f32],
        residual: Option<&[f32]>,
        out: &mut [f32],
        scratch: &mut [f32],
        rows: std::ops::Range<usize>,
        times: Option<&mut PartTimes>,
    ) {
        let first = rows.start;
        let start = times.is_some().then(Instant::now);
        // Time in the expansion and in the projection; the depthwise gets the rest.
        let (mut expanding, mut projecting) = (Duration::ZERO, Duration::ZERO);
        let timer = |spent: &mut Duration, work: &mut dyn FnMut()| match start {
            Some(_) => {
                let t = Instant::now();
                work();
                *spent += t.elapsed();
            }
            None => work(),
        };
        let mut produce = |iy: usize, row: &mut [f32]| {
            let expand = self
                .expand
                .as_ref()
                .expect("produced rows need an expansion");
            // The row holds the expansion's output for one row of pixels, N per pixel.
            let k = expand.weight.k();
            let width = row.len() / expand.weight.n();
            let a = &input[iy * width * k..][..width * k];
            timer(&mut expanding, &mut || expand.run(isa, a, None, row));
        };
        let rows_in = match self.expand {
            Some(_) => RowsIn::Produced(&mut produce),
            None => RowsIn::Tensor(input),
        };
        match &self.project {
            Some(project) => {
                let mut consume = |oy: usize, row: &[f32]| {
                    let len = row.len() / project.weight.k() * project.weight.n();
                    let residual = residual.map(|r| &r[oy * len..][..len]);
                    let c = &mut out[(oy - first) * len..][..len];
                    timer(&mut projecting, &mut || project.run(isa, row, residual, c));
                };
                self.depthwise.run_rows(
                    isa,
                    rows_in,
                    RowsOut::Consumed(&mut consume),
                    scratch,
                    rows,
                )
            }
            None => self
                .depthwise
                .run_rows(isa, rows_in, RowsOut::Tensor(out), scratch, rows),
        }
        if let (Some(times), Some(start)) = (times, start) {
            let total = start.elapsed();
            times[0] += expanding;
            times[2] += projecting;
            times[1] += total.saturating_sub(expanding + projecting);
        }
    }
}
