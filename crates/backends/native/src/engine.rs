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
use crate::chain::{PartTimes, Pointwise, RowChain};
use crate::conv::{StemConv, Window};
use crate::depthwise::Depthwise;
use crate::gemm::{AMatrix, Gemm, PackedB};
use crate::kernels::{self, FullyConnected, SqueezeExcite};
pub use crate::plan::RowFusion;
use crate::plan::{assign_buffers, fuse};
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
    scratch: AlignedVec,
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

    /// [`with_isa`](Self::with_isa) with pointwise → depthwise pairs fused from an
    /// intermediate of `row_fusion_min_bytes` (tests fuse every pair with 0).
    #[doc(hidden)]
    pub fn planned(model: &Model, isa: Isa, rows: RowFusion) -> Engine {
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
                Kernel::RowChain(chain) => chain_parts(chain, &p.nodes)
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
            scratch: AlignedVec::zeros(scratch_len),
            input_len: graph.input.len(),
            output_len: graph.output().len(),
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
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
        match &step.kernel {
            Kernel::Pointwise {
                pixels,
                weight,
                act,
                residual,
            } => Gemm {
                m: *pixels,
                a: AMatrix::Rows {
                    data: a,
                    stride: weight.k(),
                },
                b: weight,
                act: *act,
                residual: residual.then(|| read(step.inputs[1])),
                c: dst,
                ldc: weight.n(),
            }
            .run(isa),
            Kernel::Depthwise(k) => k.run(isa, a, dst, &mut self.scratch),
            Kernel::RowChain(chain) => {
                let residual = chain.residual.then(|| read(step.inputs[1]));
                chain.run(isa, a, residual, dst, &mut self.scratch, part_times)
            }
            Kernel::Conv(k) => k.run(isa, a, dst, &mut self.scratch),
            Kernel::SqueezeExcite(k) => k.run(isa, a, dst, &mut self.scratch),
            Kernel::GlobalAvgPool { channels } => kernels::global_avg_pool(isa, a, *channels, dst),
            Kernel::FullyConnected(k) => k.run(isa, a, dst),
            Kernel::Add => kernels::add(isa, a, read(step.inputs[1]), dst),
        }
        if let Some(bn) = &step.batch_norm {
            bn.run(dst);
        }
        self.buffers[step.output] = out;
    }
}

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
