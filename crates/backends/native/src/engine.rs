//! The executor: the graph is planned once at load (BN folded, weights re-laid out, one
//! kernel per node, activation buffers assigned by liveness), then run with no allocation.

use mobilebench_models::ir::{Activation, Conv2d, Graph, Op, ValueId};
use mobilebench_models::weights::NodeWeights;
use mobilebench_models::Model;

use crate::kernels::{self, Depthwise, Direct, FullyConnected, Pointwise, SqueezeExcite, Window};

enum Kernel {
    Pointwise(Pointwise),
    Depthwise(Depthwise),
    Direct(Direct),
    SqueezeExcite(SqueezeExcite),
    GlobalAvgPool { channels: usize },
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
}

pub struct Engine {
    steps: Vec<Step>,
    buffers: Vec<Vec<f32>>,
    scratch: Vec<f32>,
    input_len: usize,
    output_len: usize,
}

impl Engine {
    /// Plans `model` as given: batch norms it still has run as separate passes after their
    /// convolutions (`--bn separate`); fold them first for the deployed form.
    pub fn new(model: &Model) -> Engine {
        let graph = &model.graph;
        let slots = assign_buffers(graph);
        let mut buffers: Vec<Vec<f32>> = Vec::new();
        let mut scratch_len = 0;
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (i, (node, w)) in graph.nodes.iter().zip(&model.weights.nodes).enumerate() {
            let out_slot = slots[i + 1].expect("every node output gets a buffer");
            if buffers.len() <= out_slot {
                buffers.resize_with(out_slot + 1, Vec::new);
            }
            let len = node.output.len();
            if buffers[out_slot].len() < len {
                buffers[out_slot].resize(len, 0.0);
            }
            let inputs = node
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
            let (kernel, batch_norm) = plan_kernel(graph, i, w);
            if let Kernel::SqueezeExcite(se) = &kernel {
                scratch_len = scratch_len.max(2 * se.channels + se.reduce.bias.len());
            }
            steps.push(Step {
                kernel,
                batch_norm,
                inputs,
                output: out_slot,
                output_len: len,
            });
        }
        Engine {
            steps,
            buffers,
            scratch: vec![0.0; scratch_len],
            input_len: graph.input.len(),
            output_len: graph.output().len(),
        }
    }

    pub fn input_len(&self) -> usize {
        self.input_len
    }

    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// One inference. Lengths must match (checked by the session).
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) {
        for step in &self.steps {
            // Take the output buffer out so inputs can be borrowed beside it (no allocation:
            // `take` leaves an empty Vec behind). Plans never alias an output with an input.
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
                Kernel::Pointwise(k) => k.run(a, dst),
                Kernel::Depthwise(k) => k.run(a, dst),
                Kernel::Direct(k) => k.run(a, dst),
                Kernel::SqueezeExcite(k) => k.run(a, dst, &mut self.scratch),
                Kernel::GlobalAvgPool { channels } => kernels::global_avg_pool(a, *channels, dst),
                Kernel::FullyConnected(k) => kernels::matvec(a, &k.weight, &k.bias, k.act, dst),
                Kernel::Add => kernels::add(a, read(step.inputs[1]), dst),
            }
            if let Some(bn) = &step.batch_norm {
                bn.run(dst);
            }
            self.buffers[step.output] = out;
        }
        let last = self.steps.last().expect("a graph has nodes");
        output.copy_from_slice(&self.buffers[last.output][..self.output_len]);
    }
}

fn plan_kernel(
    graph: &Graph,
    i: usize,
    w: &NodeWeights,
) -> (Kernel, Option<kernels::BatchNormPass>) {
    let node = &graph.nodes[i];
    let input = graph.value_shape(node.inputs[0]);
    let kernel = match (&node.op, w) {
        (Op::Conv2d(c), NodeWeights::Conv { kernel, bias, bn }) => {
            let window = Window {
                input,
                output: node.output,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
            };
            let bias = bias.clone().unwrap_or_else(|| vec![0.0; c.out_channels]);
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
        (
            Op::SqueezeExcite(se),
            NodeWeights::SqueezeExcite {
                reduce,
                reduce_bias,
                expand,
                expand_bias,
            },
        ) => Kernel::SqueezeExcite(SqueezeExcite {
            channels: se.channels,
            reduce: FullyConnected {
                weight: reduce.clone(),
                bias: reduce_bias.clone(),
                act: Activation::Relu,
            },
            expand: FullyConnected {
                weight: expand.clone(),
                bias: expand_bias.clone(),
                act: Activation::HardSigmoid,
            },
        }),
        (Op::GlobalAvgPool, _) => Kernel::GlobalAvgPool { channels: input.c },
        (Op::FullyConnected(fc), NodeWeights::FullyConnected { weight, bias }) => {
            Kernel::FullyConnected(FullyConnected {
                weight: weight.clone(),
                bias: bias.clone(),
                act: fc.activation,
            })
        }
        (Op::Add, _) => Kernel::Add,
        (op, w) => panic!("node {}: weights {w:?} do not fit op {op:?}", node.name),
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
        Kernel::Pointwise(Pointwise {
            pixels: window.input.h * window.input.w,
            cin: c.in_channels,
            cout: c.out_channels,
            weight: kernel.to_vec(),
            bias,
            act,
        })
    } else if c.is_depthwise() {
        // HWIO with I = 1 is already [kh][kw][c].
        Kernel::Depthwise(Depthwise {
            window,
            weight: kernel.to_vec(),
            bias,
            act,
        })
    } else {
        assert_eq!(
            c.groups, 1,
            "grouped convolutions other than depthwise are not in the zoo"
        );
        Kernel::Direct(Direct {
            window,
            cout: c.out_channels,
            weight: kernel.to_vec(),
            bias,
            act,
        })
    }
}

/// Assigns each node output a buffer index, reusing a buffer once its value's last reader has
/// run. A node's output never shares a buffer with its own inputs.
fn assign_buffers(graph: &Graph) -> Vec<Option<usize>> {
    let last_use = graph.last_uses();
    let mut slot_of: Vec<Option<usize>> = vec![None; graph.nodes.len() + 1];
    let mut free: Vec<usize> = Vec::new();
    let mut count = 0;
    for (i, node) in graph.nodes.iter().enumerate() {
        let slot = free.pop().unwrap_or_else(|| {
            count += 1;
            count - 1
        });
        slot_of[i + 1] = Some(slot);
        let mut released: Vec<ValueId> = node.inputs.clone();
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
            let graph = cfg.graph();
            let slots = assign_buffers(&graph);
            let distinct: std::collections::HashSet<_> = slots.iter().flatten().collect();
            // A chain with residuals needs a handful of buffers, not one per layer.
            assert!(distinct.len() <= 4, "{cfg}: {} buffers", distinct.len());
            for (i, node) in graph.nodes.iter().enumerate() {
                for &v in &node.inputs {
                    if v != 0 {
                        assert_ne!(
                            slots[v],
                            slots[i + 1],
                            "{cfg}: {} aliases its input",
                            node.name
                        );
                    }
                }
            }
        }
    }
}
