//! The executor: the graph is planned once at load (BN folded or kept as a pass, weights
//! packed for their kernels, a pointwise projection and the residual add after it fused into
//! one step, a large pointwise expansion and the depthwise after it run row by row as one
//! step, activation buffers assigned by liveness), then run with no allocation.

use std::time::{Duration, Instant};

use mobilebench_models::counting::count_node;
use mobilebench_models::ir::{Activation, Conv2d, Graph, Op, ValueId};
use mobilebench_models::{Layer, Model};

use crate::aligned::AlignedVec;
use crate::conv::{StemConv, Window};
use crate::depthwise::Depthwise;
use crate::gemm::{AMatrix, Gemm, PackedB};
use crate::kernels::{self, FullyConnected, SqueezeExcite};
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
    /// A pointwise convolution whose only reader is the depthwise after it: the depthwise
    /// asks for its input rows as it needs them, and each is one GEMM over a row's pixels.
    PointwiseDepthwise {
        weight: PackedB,
        act: Activation,
        depthwise: Depthwise,
    },
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

/// The smallest intermediate (pointwise output, in bytes) for which a pointwise convolution
/// and the depthwise after it run row by row: 512 KiB, a quarter of this machine's L2 (below
/// it the tensor stays in cache between the two anyway). In the default set that fuses the
/// expansions at 112×112 to 28×28; measured against no row fusion, interleaved in one
/// process: V2 0.94×, the others 0.97–1.0× (within the run's noise).
const ROW_FUSION_MIN_BYTES: usize = 512 * 1024;

/// A step before buffers are assigned: the nodes it runs and the values it reads.
struct Planned {
    nodes: Vec<usize>,
    inputs: Vec<ValueId>,
    output: ValueId,
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
        Engine::planned(model, isa, ROW_FUSION_MIN_BYTES)
    }

    /// [`with_isa`](Self::with_isa) with pointwise → depthwise pairs fused from an
    /// intermediate of `row_fusion_min_bytes` (tests fuse every pair with 0).
    pub(crate) fn planned(model: &Model, isa: Isa, row_fusion_min_bytes: usize) -> Engine {
        let graph = &model.graph;
        let planned = fuse(graph, model, row_fusion_min_bytes);
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
            if let &[_, second] = &p.nodes[..] {
                // Fused pairs have no separate BN (`fuse` checks).
                let (next, _) = plan_kernel(graph, second, model.layer(second));
                kernel = match (kernel, next) {
                    (Kernel::Pointwise { weight, act, .. }, Kernel::Depthwise(depthwise)) => {
                        Kernel::PointwiseDepthwise {
                            weight,
                            act,
                            depthwise,
                        }
                    }
                    (
                        Kernel::Pointwise {
                            pixels,
                            weight,
                            act,
                            ..
                        },
                        Kernel::Add,
                    ) => Kernel::Pointwise {
                        pixels,
                        weight,
                        act,
                        residual: true,
                    },
                    _ => unreachable!("only pointwise + add and pointwise + depthwise fuse"),
                };
            }
            scratch_len = scratch_len.max(match &kernel {
                Kernel::SqueezeExcite(se) => se.scratch_len(),
                Kernel::Conv(conv) => conv.scratch_len(),
                Kernel::Depthwise(dw) => dw.scratch_len(),
                Kernel::PointwiseDepthwise { depthwise, .. } => depthwise.ring_scratch_len(),
                _ => 0,
            });
            steps.push(Step {
                kernel,
                batch_norm,
                inputs,
                output: out_slot,
                output_len: len,
                info: step_info(graph, p),
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

    /// One inference. Lengths must match (checked by the session).
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) {
        self.execute(input, output, None);
    }

    /// One inference that adds each step's wall time to `times` (one entry per step).
    pub fn run_timed(&mut self, input: &[f32], output: &mut [f32], times: &mut [Duration]) {
        assert_eq!(times.len(), self.steps.len(), "one time per step");
        self.execute(input, output, Some(times));
    }

    fn execute(&mut self, input: &[f32], output: &mut [f32], mut times: Option<&mut [Duration]>) {
        for index in 0..self.steps.len() {
            let start = times.is_some().then(Instant::now);
            self.run_step(input, index);
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                times[index] += start.elapsed();
            }
        }
        let last = self.steps.last().expect("a graph has nodes");
        output.copy_from_slice(&self.buffers[last.output][..self.output_len]);
    }

    /// Step `index` of the plan alone, reading whatever its input buffers hold (the micro-
    /// benchmarks time each kernel this way, after one full run has filled them).
    pub fn run_step(&mut self, input: &[f32], index: usize) {
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
            Kernel::PointwiseDepthwise {
                weight,
                act,
                depthwise,
            } => {
                let (k, n) = (weight.k(), weight.n());
                let produce = |iy: usize, row: &mut [f32]| {
                    // The row holds the GEMM's output for one row of pixels, n per pixel.
                    let width = row.len() / n;
                    Gemm {
                        m: width,
                        a: AMatrix::Rows {
                            data: &a[iy * width * k..][..width * k],
                            stride: k,
                        },
                        b: weight,
                        act: *act,
                        residual: None,
                        c: row,
                        ldc: n,
                    }
                    .run(isa)
                };
                depthwise.run_producing_rows(isa, produce, dst, &mut self.scratch)
            }
            Kernel::Conv(k) => k.run(isa, a, dst, &mut self.scratch),
            Kernel::SqueezeExcite(k) => k.run(isa, a, dst, &mut self.scratch),
            Kernel::GlobalAvgPool { channels } => kernels::global_avg_pool(a, *channels, dst),
            Kernel::FullyConnected(k) => k.run(isa, a, dst),
            Kernel::Add => kernels::add(a, read(step.inputs[1]), dst),
        }
        if let Some(bn) = &step.batch_norm {
            bn.run(dst);
        }
        self.buffers[step.output] = out;
    }
}

/// Groups nodes into steps: a pointwise convolution whose only reader is the residual add
/// right after it becomes one step (the GEMM adds the residual in its store), and so does one
/// whose only reader is a depthwise convolution right after it, when its output is at least
/// `row_fusion_min_bytes` (the two run row by row); neither when a batch norm is a separate
/// pass (which must run between the two).
fn fuse(graph: &Graph, model: &Model, row_fusion_min_bytes: usize) -> Vec<Planned> {
    let readers = graph.nodes.iter().flat_map(|n| n.inputs.iter().copied());
    let mut read_count = vec![0usize; graph.nodes.len() + 1];
    for v in readers {
        read_count[v] += 1;
    }
    let mut planned = Vec::with_capacity(graph.nodes.len());
    let mut i = 0;
    while i < graph.nodes.len() {
        let node = &graph.nodes[i];
        let value = i + 1;
        let next = graph.nodes.get(i + 1);
        let sole_reader_is_next = matches!(model.layer(i), Layer::Conv { conv, bn: None, .. } if conv.is_pointwise())
            && read_count[value] == 1
            && next.is_some_and(|n| n.inputs.contains(&value));
        let fusable = sole_reader_is_next
            && next.is_some_and(|n| n.op == Op::Add && n.inputs[0] != n.inputs[1]);
        let row_fusable = sole_reader_is_next
            && matches!(model.layer(i + 1), Layer::Conv { conv, bn: None, .. } if conv.is_depthwise())
            && graph.value_shape(value).len() * std::mem::size_of::<f32>() >= row_fusion_min_bytes;
        if row_fusable {
            planned.push(Planned {
                nodes: vec![i, i + 1],
                inputs: node.inputs.clone(),
                output: i + 2,
            });
            i += 2;
        } else if let (true, Some(add)) = (fusable, next) {
            let residual = add.inputs.iter().copied().find(|&v| v != value).unwrap();
            planned.push(Planned {
                nodes: vec![i, i + 1],
                inputs: vec![node.inputs[0], residual],
                output: i + 2,
            });
            i += 2;
        } else {
            planned.push(Planned {
                nodes: vec![i],
                inputs: node.inputs.clone(),
                output: value,
            });
            i += 1;
        }
    }
    planned
}

fn step_info(graph: &Graph, p: &Planned) -> StepInfo {
    let shape = |v: ValueId| {
        let s = graph.value_shape(v);
        format!("{}x{}x{}", s.h, s.w, s.c)
    };
    let nodes = || p.nodes.iter().map(|&i| &graph.nodes[i]);
    let macs = nodes().map(|n| count_node(n).macs).sum();
    StepInfo {
        name: nodes()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        op: nodes().map(|n| n.op.kind()).collect::<Vec<_>>().join("+"),
        input_shape: shape(p.inputs[0]),
        output_shape: shape(p.output),
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

/// Assigns each step's output value a buffer index (indexed by value), reusing a buffer once
/// its value's last reading step has run. A step's output never shares a buffer with its own
/// inputs (the buffer is taken before the inputs are released).
fn assign_buffers(graph: &Graph, steps: &[Planned]) -> Vec<Option<usize>> {
    let mut last_use: Vec<Option<usize>> = vec![None; graph.nodes.len() + 1];
    for (i, step) in steps.iter().enumerate() {
        for &v in &step.inputs {
            last_use[v] = Some(i);
        }
    }
    let mut slot_of: Vec<Option<usize>> = vec![None; graph.nodes.len() + 1];
    let mut free: Vec<usize> = Vec::new();
    let mut count = 0;
    for (i, step) in steps.iter().enumerate() {
        let slot = free.pop().unwrap_or_else(|| {
            count += 1;
            count - 1
        });
        slot_of[step.output] = Some(slot);
        let mut released: Vec<ValueId> = step.inputs.clone();
        released.sort_unstable();
        released.dedup();
        for v in released {
            if v != 0 && last_use[v] == Some(i) {
                free.push(slot_of[v].expect("inputs are produced before use"));
            }
        }
    }
    slot_of
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilebench_models::sets::select;

    #[test]
    fn buffers_are_reused_and_never_alias_inputs() {
        for cfg in select("default").unwrap() {
            let model = Model::from_config(&cfg, 1);
            let steps = fuse(&model.graph, &model, ROW_FUSION_MIN_BYTES);
            let slots = assign_buffers(&model.graph, &steps);
            let distinct: std::collections::HashSet<_> = slots.iter().flatten().collect();
            // A chain with residuals needs a handful of buffers, not one per layer.
            assert!(distinct.len() <= 4, "{cfg}: {} buffers", distinct.len());
            for step in &steps {
                for &v in step.inputs.iter().filter(|&&v| v != 0) {
                    assert_ne!(
                        slots[v], slots[step.output],
                        "{cfg}: step aliases its input"
                    );
                }
            }
        }
    }

    #[test]
    fn projections_fuse_with_their_residual_adds() {
        let cfg = &select("mobilenet_v2_1.0_224").unwrap()[0];
        let separate = Model::from_config(cfg, 1);
        let model = separate.with_bn(mobilebench_models::BnMode::Fused).unwrap();
        let steps = fuse(&model.graph, &model, usize::MAX);
        let adds = model.graph.nodes.iter().filter(|n| n.op == Op::Add).count();
        let fused = steps.iter().filter(|s| s.nodes.len() == 2).count();
        assert_eq!(adds, 10, "MobileNetV2 has ten residual blocks");
        assert_eq!(fused, adds, "every residual add rides on its projection");
        // Expansions (pointwise into depthwise) run row by row from 512 KiB: V2's at
        // 112×112×96, 56×56×144 (two) and 28×28×192 (three, 602 KB), not the 14×14 ones. From
        // 0 bytes, all seventeen depthwise layers but the first (fed by the stem) take their
        // input from the pointwise before them.
        let rows = |min_bytes| {
            fuse(&model.graph, &model, min_bytes)
                .iter()
                .filter(|s| model.graph.nodes[*s.nodes.last().unwrap()].op != Op::Add)
                .filter(|s| s.nodes.len() == 2)
                .count()
        };
        assert_eq!(rows(ROW_FUSION_MIN_BYTES), 6);
        assert_eq!(rows(0), 16);
        // With separate batch norm the pass must run between the two: nothing fuses.
        assert!(fuse(&separate.graph, &separate, 0)
            .iter()
            .all(|s| s.nodes.len() == 1));
    }
}
