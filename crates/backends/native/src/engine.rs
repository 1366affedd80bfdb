//! The executor: the graph is planned once at load (BN folded or kept as a pass, weights
//! packed for their kernels, a pointwise projection and the residual add after it fused into
//! one step, a depthwise at high resolution run row by row with the expansion before it and
//! the projection after it as one step (`chain`), activation buffers assigned by liveness),
//! then run with no allocation.

use std::time::{Duration, Instant};

use mobilebench_models::counting::count_node;
use mobilebench_models::ir::{Activation, Conv2d, Graph, Shape};
use mobilebench_models::{Layer, Model};

use crate::aligned::AlignedVec;
use crate::attention::Attention;
use crate::chain::{PartTimes, Pointwise, RowChain};
use crate::conv::{StemConv, Window};
use crate::depthwise::Depthwise;
use crate::depthwise::{RowsIn, RowsOut};
use crate::gemm::{AMatrix, Gemm, PackedB, NR};
use crate::kernels::{self, FullyConnected, SqueezeExcite};
pub use crate::plan::RowFusion;
use crate::plan::{assign_buffers, fuse};
use crate::pool::{band, Pool};
use crate::simd::Isa;

enum Kernel {
    /// 1×1 stride-1 convolution as a GEMM over pixels; `residual` adds the step's second
    /// input (a fused residual add).
    Pointwise {
        pixels: usize,
        weight: PackedB,
        act: Activation,
        residual: bool,
    },
    Depthwise(Depthwise),
    /// A depthwise convolution run row by row with the expansion before it and/or the
    /// projection (and residual add) after it (see `chain`).
    RowChain(RowChain),
    Conv(StemConv),
    SqueezeExcite(SqueezeExcite),
    GlobalAvgPool {
        channels: usize,
    },
    FullyConnected(FullyConnected),
    Add,
    Attention(Box<Attention>),
}

/// Where a step reads a value from: the caller's input slice or an activation buffer.
#[derive(Clone, Copy, PartialEq)]
enum Src {
    Input,
    Buffer(usize),
}

struct Step {
    kernel: Kernel,
    /// Separate batch norm (`--bn separate`): a second pass over the kernel's output.
    batch_norm: Option<kernels::BatchNormPass>,
    inputs: Vec<(Src, usize)>,
    output: usize,
    output_len: usize,
    info: StepInfo,
    /// What `--profile-ops` times separately: the step, or each part of a row chain.
    parts: Vec<StepInfo>,
}

/// What one step of the plan computes, for `--profile-ops`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepInfo {
    /// The graph nodes the step runs, joined by `+` when fused.
    pub name: String,
    /// The op kinds, joined by `+` when fused (`pointwise_conv+add`).
    pub op: String,
    /// `HxWxC` of the first input and of the output.
    pub input_shape: String,
    pub output_shape: String,
    /// Multiply-accumulates, counted as in the model tables.
    pub macs: u64,
}

pub struct Engine {
    isa: Isa,
    steps: Vec<Step>,
    /// Activations, each starting on a cache line (see `aligned`).
    buffers: Vec<AlignedVec>,
    /// One scratch part per thread.
    scratch: AlignedVec,
    pool: Pool,
    input_len: usize,
    output_len: usize,
}

impl Engine {
    /// Plans `model` as given for this CPU's best instruction set: batch norms it still has
    /// run as separate passes after their convolutions (`--bn separate`); fold them first for
    /// the deployed form.
    pub fn new(model: &Model) -> Engine {
        Engine::with_isa(model, Isa::detect())
    }

    /// Plans `model` for `isa`, which must be one of [`Isa::available`].
    pub fn with_isa(model: &Model, isa: Isa) -> Engine {
        Engine::planned(model, isa, RowFusion::DEFAULT)
    }

    /// [`with_isa`](Self::with_isa) on `threads` threads: the caller and `threads - 1`
    /// workers started now, worker `i` pinned to `cores[i]` when given (the caller pins
    /// itself to `cores[0]`'s core beforehand, as the harness's worker does).
    pub fn with_threads(
        model: &Model,
        isa: Isa,
        threads: usize,
        cores: Option<&[usize]>,
    ) -> Engine {
        Engine::planned_on(model, isa, RowFusion::DEFAULT, Pool::new(threads, cores))
    }

    /// [`with_isa`](Self::with_isa) with pointwise → depthwise pairs fused from an
    /// intermediate of `row_fusion_min_bytes` (tests fuse every pair with 0).
    #[doc(hidden)]
    pub fn planned(model: &Model, isa: Isa, rows: RowFusion) -> Engine {
        Engine::planned_on(model, isa, rows, Pool::new(1, None))
    }

    /// [`planned`](Self::planned) running on `pool`'s threads.
    #[doc(hidden)]
    pub fn planned_on(model: &Model, isa: Isa, rows: RowFusion, pool: Pool) -> Engine {
        let threads = pool.threads();
        let graph = &model.graph;
        let planned = fuse(graph, model, rows);
        let slots = assign_buffers(graph, &planned);
        let mut buffers: Vec<AlignedVec> = Vec::new();
        let mut scratch_len = 0;
        let mut steps = Vec::with_capacity(planned.len());
        for p in &planned {
            let out_slot = slots[p.output].expect("every step output gets a buffer");
            if buffers.len() <= out_slot {
                buffers.resize_with(out_slot + 1, AlignedVec::default);
            }
            let len = graph.value_shape(p.output).len();
            if buffers[out_slot].len() < len {
                buffers[out_slot] = AlignedVec::zeros(len);
            }
            let inputs = p
                .inputs
                .iter()
                .map(|&v| {
                    let src = if v == 0 {
                        Src::Input
                    } else {
                        Src::Buffer(slots[v].unwrap())
                    };
                    (src, graph.value_shape(v).len())
                })
                .collect();
            let first = p.nodes[0];
            let (mut kernel, batch_norm) = plan_kernel(graph, first, model.layer(first));
            if p.nodes.len() > 1 {
                kernel = fused_kernel(graph, model, kernel, &p.nodes[1..]);
            }
            let parts = match &kernel {
                // A chain's parts are timed apart on one thread only.
                Kernel::RowChain(chain) if threads == 1 => chain_parts(chain, &p.nodes)
                    .into_iter()
                    .map(|nodes| step_info(graph, nodes))
                    .collect(),
                _ => vec![step_info(graph, &p.nodes)],
            };
            scratch_len = scratch_len.max(match &kernel {
                Kernel::SqueezeExcite(se) => se.scratch_len(),
                Kernel::Conv(conv) => conv.scratch_len(),
                Kernel::Depthwise(dw) => dw.scratch_len(),
                Kernel::RowChain(chain) => chain.scratch_len(),
                _ => 0,
            });
            steps.push(Step {
                kernel,
                batch_norm,
                inputs,
                output: out_slot,
                output_len: len,
                info: step_info(graph, &p.nodes),
                parts,
            });
        }
        Engine {
            isa,
            steps,
            buffers,
            // A multiple of 16 floats per part keeps each part's scratch on a cache line.
            scratch: AlignedVec::zeros(scratch_len.next_multiple_of(16) * threads),
            pool,
            input_len: graph.input.len(),
            output_len: graph.output().len(),
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    pub fn input_len(&self) -> usize {
        self.input_len
    }

    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// The plan's steps, in execution order.
    pub fn steps(&self) -> impl Iterator<Item = &StepInfo> {
        self.steps.iter().map(|s| &s.info)
    }

    /// What [`run_timed`](Self::run_timed) times, in execution order: each step, or each
    /// part of a step that runs a row chain (its expansion, depthwise and projection).
    pub fn timed_parts(&self) -> impl Iterator<Item = &StepInfo> {
        self.steps.iter().flat_map(|s| &s.parts)
    }

    /// One inference. Lengths must match (checked by the session).
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) {
        self.execute(input, output, None);
    }

    /// One inference that adds each timed part's wall time to `times` (one entry per
    /// [`timed_parts`](Self::timed_parts)).
    pub fn run_timed(&mut self, input: &[f32], output: &mut [f32], times: &mut [Duration]) {
        assert_eq!(times.len(), self.timed_parts().count(), "one time per part");
        self.execute(input, output, Some(times));
    }

    fn execute(&mut self, input: &[f32], output: &mut [f32], mut times: Option<&mut [Duration]>) {
        let mut part = 0;
        for index in 0..self.steps.len() {
            let parts = self.steps[index].parts.len();
            match times.as_deref_mut() {
                None => self.run_step_timed(input, index, None),
                Some(times) if parts > 1 => {
                    let mut chain: PartTimes = Default::default();
                    self.run_step_timed(input, index, Some(&mut chain));
                    let Kernel::RowChain(c) = &self.steps[index].kernel else {
                        unreachable!("only row chains have parts")
                    };
                    for (slot, which) in c.parts().enumerate() {
                        times[part + slot] += chain[which];
                    }
                }
                Some(times) => {
                    let start = Instant::now();
                    self.run_step_timed(input, index, None);
                    times[part] += start.elapsed();
                }
            }
            part += parts;
        }
        let last = self.steps.last().expect("a graph has nodes");
        output.copy_from_slice(&self.buffers[last.output][..self.output_len]);
    }

    /// Step `index` of the plan alone, reading whatever its input buffers hold (the micro-
    /// benchmarks time each kernel this way, after one full run has filled them).
    pub fn run_step(&mut self, input: &[f32], index: usize) {
        self.run_step_timed(input, index, None)
    }

    /// [`run_step`](Self::run_step); a row chain adds its parts' times to `part_times`.
    ///
    /// With several threads the convolutions split their output across the pool: GEMMs by
    /// bands of pixels (whole 7-row tiles), depthwise layers and row chains by bands of
    /// output rows (each thread with its own scratch; a chain's expansion recomputes the
    /// rows two bands share), the full convolutions by pixels (each part redoing its own
    /// border pixels). The small steps (pool, squeeze-excite, FC, add) run on the calling
    /// thread.
    fn run_step_timed(&mut self, input: &[f32], index: usize, part_times: Option<&mut PartTimes>) {
        let isa = self.isa;
        let step = &self.steps[index];
        // Take the output buffer out so inputs can be borrowed beside it (no allocation:
        // `take` leaves an empty one behind). Plans never alias an output with an input.
        let mut out = std::mem::take(&mut self.buffers[step.output]);
        let dst = &mut out[..step.output_len];
        let read = |(src, len): (Src, usize)| -> &[f32] {
            match src {
                Src::Input => &input[..len],
                Src::Buffer(b) => &self.buffers[b][..len],
            }
        };
        let a = read(step.inputs[0]);
        let second = step.inputs.get(1).map(|&i| read(i));
        let threads = self.pool.threads();
        // Each part writes only its own band of `dst` and its own scratch: shared as raw
        // pointers, each part making the one slice it owns.
        let (dst_ptr, dst_len) = (SharedMut(dst.as_mut_ptr()), dst.len());
        let per_part = self.scratch.len() / threads;
        let scratch_ptr = SharedMut(self.scratch.as_mut_ptr());
        let part_times = std::sync::Mutex::new(part_times);
        // Squeeze-excite's gate (a pool over every pixel and two one-row products) on the
        // caller first; its scaling is then split by bands of pixels like the other steps.
        let gate: Option<&[f32]> = match &step.kernel {
            Kernel::SqueezeExcite(k) if threads > 1 => {
                // SAFETY: part 0's scratch, which no part of this step writes: they read the gate.
                let s = unsafe { std::slice::from_raw_parts_mut(scratch_ptr.get(), per_part) };
                Some(k.gate(isa, a, s))
            }
            _ => None,
        };
        let part = |t: usize| {
            // SAFETY: bands of one step are disjoint (`band`), scratch parts too, and the
            // buffers outlive the pool's job.
            let band_of = |rows: usize, row_len: usize, align: usize| {
                let r = band(rows, t, threads, align);
                let slice = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst_ptr.get().add(r.start * row_len),
                        r.len() * row_len,
                    )
                };
                debug_assert!(r.end * row_len <= dst_len);
                (r, slice)
            };
            // Made only by the parts that use it.
            let scratch = || unsafe {
                std::slice::from_raw_parts_mut(scratch_ptr.get().add(t * per_part), per_part)
            };
            match &step.kernel {
                Kernel::Pointwise {
                    pixels,
                    weight,
                    act,
                    residual,
                } => {
                    let (k, n) = (weight.k(), weight.n());
                    let (r, c) = band_of(*pixels, n, 7);
                    Gemm {
                        m: r.len(),
                        a: AMatrix::Rows {
                            data: &a[r.start * k..],
                            stride: k,
                        },
                        b: weight.view(),
                        act: *act,
                        residual: residual
                            .then(|| &second.expect("a residual input")[r.start * n..]),
                        c,
                        ldc: n,
                    }
                    .run(isa)
                }
                Kernel::Depthwise(k) => {
                    let (r, c) = band_of(k.output_rows(), k.output_row_len(), 1);
                    k.run_rows(isa, RowsIn::Tensor(a), RowsOut::Tensor(c), scratch(), r)
                }
                Kernel::RowChain(chain) => {
                    let (r, c) = band_of(chain.output_rows(), chain.output_row_len(), 1);
                    let residual = chain.residual.then(|| second.expect("a residual input"));
                    // Parts are timed on one thread only (`timed_parts` has them then): the
                    // lock is never contended.
                    if threads == 1 {
                        let mut times = part_times.lock().unwrap_or_else(|e| e.into_inner());
                        chain.run(isa, a, residual, c, scratch(), r, times.as_deref_mut())
                    } else {
                        chain.run(isa, a, residual, c, scratch(), r, None)
                    }
                }
                Kernel::Conv(k) => {
                    let (r, c) = band_of(k.pixels(), k.window.output.c, 7);
                    k.run_pixels(isa, a, c, r, scratch())
                }
                Kernel::FullyConnected(k) => {
                    // By bands of output panels: each thread streams its share of the weights.
                    let panels = band(k.weight.panel_count(), t, threads, 1);
                    let n = k.weight.n();
                    let cols = (panels.start * NR).min(n)..(panels.end * NR).min(n);
                    if !cols.is_empty() {
                        // SAFETY: the bands of columns of a one-row output are disjoint.
                        let c = unsafe {
                            std::slice::from_raw_parts_mut(
                                dst_ptr.get().add(cols.start),
                                cols.len(),
                            )
                        };
                        k.run_columns(isa, a, c, panels)
                    }
                }
                Kernel::SqueezeExcite(k) if threads > 1 => {
                    let c = k.channels;
                    let (r, out) = band_of(dst_len / c, c, 1);
                    let gate = gate.expect("the gate, computed before the parts");
                    k.scale(isa, &a[r.start * c..r.end * c], gate, out)
                }
                Kernel::Add => {
                    // By bands of whole cache lines of the output.
                    let (r, out) = band_of(dst_len, 1, 16);
                    let b = second.expect("an add has two inputs");
                    kernels::add(isa, &a[r.clone()], &b[r], out)
                }
                _ if t > 0 => {}
                Kernel::SqueezeExcite(k) => {
                    let dst = unsafe { std::slice::from_raw_parts_mut(dst_ptr.get(), dst_len) };
                    k.run(isa, a, dst, scratch())
                }
                Kernel::GlobalAvgPool { channels } => {
                    let dst = unsafe { std::slice::from_raw_parts_mut(dst_ptr.get(), dst_len) };
                    kernels::global_avg_pool(isa, a, *channels, dst)
                }
                Kernel::Attention(k) => {
                    let dst = unsafe { std::slice::from_raw_parts_mut(dst_ptr.get(), dst_len) };
                    k.run(isa, a, dst)
                }
            }
        };
        self.pool.run(&part);
        if let Some(bn) = &step.batch_norm {
            bn.run(dst);
        }
        self.buffers[step.output] = out;
    }
}

/// A pointer the parts of a step share; each part writes only its own band through it.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);

impl SharedMut {
    // A method, so that closures capture the whole (`Sync`) wrapper, not its field.
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: see its uses: disjoint bands, joined before the buffer is touched again.
unsafe impl Sync for SharedMut {}
unsafe impl Send for SharedMut {}

/// The kernel of a step whose first node planned as `first` and whose other nodes are `rest`
/// (as `fuse` grouped them: none of them has a separate batch norm).
fn fused_kernel(graph: &Graph, model: &Model, first: Kernel, rest: &[usize]) -> Kernel {
    let mut kernels = std::iter::once(first)
        .chain(
            rest.iter()
                .map(|&i| plan_kernel(graph, i, model.layer(i)).0),
        )
        .peekable();
    let pointwise = |k: Kernel| match k {
        Kernel::Pointwise { weight, act, .. } => Pointwise { weight, act },
        _ => unreachable!("fuse joins pointwise convolutions only around a depthwise"),
    };
    let expand = match kernels.peek() {
        Some(Kernel::Pointwise { .. }) => kernels.next().map(pointwise),
        _ => None,
    };
    let Some(Kernel::Depthwise(depthwise)) = kernels.next() else {
        // A pointwise convolution and the residual add after it.
        let Some(Pointwise { weight, act }) = expand else {
            unreachable!("a fused step starts with a pointwise or a depthwise")
        };
        let pixels = graph.value_shape(graph.nodes[rest[0] - 1].inputs[0]);
        return Kernel::Pointwise {
            pixels: pixels.h * pixels.w,
            weight,
            act,
            residual: true,
        };
    };
    let project = kernels.next().map(pointwise);
    let residual = matches!(kernels.next(), Some(Kernel::Add));
    Kernel::RowChain(RowChain {
        expand,
        depthwise,
        project,
        residual,
    })
}

/// The nodes of each part of a row chain step, for `--profile-ops`: the expansion, the
/// depthwise, the projection with its residual add.
fn chain_parts<'a>(chain: &RowChain, nodes: &'a [usize]) -> Vec<&'a [usize]> {
    let dw = usize::from(chain.expand.is_some());
    let mut parts = Vec::new();
    if dw == 1 {
        parts.push(&nodes[..1]);
    }
    parts.push(&nodes[dw..=dw]);
    if chain.project.is_some() {
        parts.push(&nodes[dw + 1..]);
    }
    parts
}

/// What consecutive `nodes` compute: from the first one's input to the last one's output.
fn step_info(graph: &Graph, nodes: &[usize]) -> StepInfo {
    let shape = |s: Shape| format!("{}x{}x{}", s.h, s.w, s.c);
    let nodes = || nodes.iter().map(|&i| &graph.nodes[i]);
    let macs = nodes().map(|n| count_node(n).macs).sum();
    let (first, last) = (nodes().next().unwrap(), nodes().next_back().unwrap());
    StepInfo {
        name: nodes()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        op: nodes().map(|n| n.op.kind()).collect::<Vec<_>>().join("+"),
        input_shape: shape(graph.value_shape(first.inputs[0])),
        output_shape: shape(last.output),
        macs,
    }
}

fn plan_kernel(graph: &Graph, i: usize, layer: Layer) -> (Kernel, Option<kernels::BatchNormPass>) {
    let node = &graph.nodes[i];
    let input = graph.value_shape(node.inputs[0]);
    let kernel = match layer {
        Layer::Conv {
            conv: c,
            kernel,
            bias,
            bn,
        } => {
            let window = Window {
                input,
                output: node.output,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
            };
            let bias = bias.map_or_else(|| vec![0.0; c.out_channels], <[f32]>::to_vec);
            return match bn {
                // Unfolded BN: the convolution without its activation, then BN and the
                // activation in a pass of their own.
                Some(bn) => (
                    plan_conv(c, window, kernel, bias, Activation::None),
                    Some(kernels::BatchNormPass::new(bn, c.activation)),
                ),
                None => (plan_conv(c, window, kernel, bias, c.activation), None),
            };
        }
        Layer::SqueezeExcite { se, weights: w } => Kernel::SqueezeExcite(SqueezeExcite {
            channels: se.channels,
            reduce: FullyConnected::new(w.reduce, w.reduce_bias, Activation::Relu),
            expand: FullyConnected::new(w.expand, w.expand_bias, Activation::HardSigmoid),
        }),
        Layer::GlobalAvgPool => Kernel::GlobalAvgPool { channels: input.c },
        Layer::FullyConnected { fc, weight, bias } => {
            Kernel::FullyConnected(FullyConnected::new(weight, bias, fc.activation))
        }
        Layer::Add => Kernel::Add,
        Layer::Attention { attn, weights } => {
            Kernel::Attention(Box::new(Attention::new(attn, input, weights)))
        }
    };
    (kernel, None)
}

fn plan_conv(
    c: &Conv2d,
    window: Window,
    kernel: &[f32],
    bias: Vec<f32>,
    act: Activation,
) -> Kernel {
    if c.is_pointwise() {
        // HWIO with H = W = 1 is `[cin][cout]`, the GEMM's K × N.
        Kernel::Pointwise {
            pixels: window.input.h * window.input.w,
            weight: PackedB::new(c.in_channels, c.out_channels, kernel, &bias),
            act,
            residual: false,
        }
    } else if c.is_depthwise() {
        // HWIO with I = 1 is already [kh][kw][c].
        Kernel::Depthwise(Depthwise::new(window, kernel, &bias, act))
    } else {
        assert_eq!(
            c.groups, 1,
            "grouped convolutions other than depthwise are not in the zoo"
        );
        // HWIO is `[kh·kw·cin][cout]`, the column order the implicit GEMM reads windows in.
        Kernel::Conv(StemConv::new(window, kernel, &bias, act))
    }
}
