//! A zoo model as libtorch tensors: weights converted once from the IR's layouts, then a
//! forward pass over the node list with tch's ops (the same ops torchvision's MobileNets use:
//! conv2d, batch_norm, hardswish, SE as two 1×1 convs, adaptive pooling, linear).

use mobilebench_models::ir::{Activation, Conv2d, Padding};
use mobilebench_models::layer::Layer as ModelLayer;
use mobilebench_models::weights::BatchNorm;
use mobilebench_models::Model;
use tch::{Device, Kind, Tensor};

/// How activations and conv weights are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Contiguous NCHW (PyTorch's default).
    Contiguous,
    /// NCHW logical shape with NHWC strides (`torch.channels_last`): what PyTorch's
    /// `.to(memory_format=torch.channels_last)` makes, and what oneDNN's NHWC kernels take.
    ChannelsLast,
}

/// A batch norm kept separate (`--bn separate`). The running statistics are plain tensors:
/// training updates them in place, as `nn.BatchNorm2d` does.
struct Bn {
    gamma: Tensor,
    beta: Tensor,
    mean: Tensor,
    var: Tensor,
    eps: f64,
}

enum Layer {
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        bn: Option<Bn>,
        stride: i64,
        groups: i64,
        /// Symmetric padding goes to conv2d; TensorFlow's asymmetric SAME is an explicit pad.
        padding: [i64; 2],
        pad_first: Option<[i64; 4]>,
        act: Activation,
    },
    SqueezeExcite {
        reduce: Tensor,
        reduce_bias: Tensor,
        expand: Tensor,
        expand_bias: Tensor,
    },
    GlobalAvgPool,
    Linear {
        weight: Tensor,
        bias: Tensor,
        act: Activation,
    },
    Add,
    Attention(Box<Attention>),
}

/// Mobile MQA (the IR's `MultiQueryAttention`): 1×1 convs for the projections, the strided
/// depthwise convs of keys and values, and matmul + softmax over the shared key head.
struct Attention {
    norm: Bn,
    query: Tensor,
    key_down: Option<(Tensor, Bn)>,
    value_down: Option<(Tensor, Bn)>,
    stride: i64,
    padding: [i64; 2],
    pad_first: Option<[i64; 4]>,
    key: Tensor,
    value: Tensor,
    output: Tensor,
    heads: i64,
    key_dim: i64,
    value_dim: i64,
    scale: f64,
}

pub struct Net {
    layers: Vec<(Layer, Vec<usize>)>,
    /// The IR node each layer is (`--profile-ops` names its times after them).
    names: Vec<String>,
    /// When each value is read for the last time (so it can be dropped early).
    last_use: Vec<Option<usize>>,
    layout: Layout,
}

fn tensor(data: &[f32], shape: &[i64], device: Device) -> Tensor {
    Tensor::from_slice(data).view(shape).to_device(device)
}

/// HWIO `[kh][kw][in/groups][out]` → OIHW, in the requested memory layout.
fn conv_weight(kernel: &[f32], c: &Conv2d, layout: Layout, device: Device) -> Tensor {
    let k = c.kernel as i64;
    let hwio = Tensor::from_slice(kernel).view([
        k,
        k,
        (c.in_channels / c.groups) as i64,
        c.out_channels as i64,
    ]);
    let weight = match layout {
        Layout::Contiguous => hwio.permute([3, 2, 0, 1]).contiguous(),
        // OHWI in memory, viewed as OIHW: channels_last strides.
        Layout::ChannelsLast => hwio
            .permute([3, 0, 1, 2])
            .contiguous()
            .permute([0, 3, 1, 2]),
    };
    weight.to_device(device)
}

fn bn(bn: &BatchNorm, device: Device) -> Bn {
    let n = bn.gamma.len() as i64;
    Bn {
        gamma: tensor(&bn.gamma, &[n], device),
        beta: tensor(&bn.beta, &[n], device),
        mean: tensor(&bn.mean, &[n], device),
        var: tensor(&bn.var, &[n], device),
        eps: f64::from(bn.eps),
    }
}

fn padding(p: Padding) -> ([i64; 2], Option<[i64; 4]>) {
    if p.top == p.bottom && p.left == p.right {
        ([p.top as i64, p.left as i64], None)
    } else {
        // constant_pad_nd takes (left, right, top, bottom) for the last two dimensions.
        let pad = [p.left, p.right, p.top, p.bottom].map(|v| v as i64);
        ([0, 0], Some(pad))
    }
}

/// A 2-D convolution in fp32 on every device. libtorch's `conv2d` lets cuDNN compute in TF32
/// (10-bit mantissa) by default on Ampere and newer GPUs: on an H200 that put `tch-cuda`
/// 2.0e-3 to 6.9e-3 (max relative) from native on the `default` set, where every other fp32
/// backend is within 5e-6. On CUDA, `_convolution` with `allow_tf32 = false` is the same op
/// in fp32; the CPU keeps `conv2d`, the call the CPU measurements were taken with.
fn conv2d_fp32(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: i64,
    padding: [i64; 2],
    groups: i64,
) -> Tensor {
    if !x.device().is_cuda() {
        return x.conv2d(weight, bias, [stride; 2], padding, [1, 1], groups);
    }
    let (benchmark, deterministic, cudnn_enabled, allow_tf32) = (false, false, true, false);
    x.internal_convolution(
        weight,
        bias,
        [stride; 2],
        padding,
        [1, 1],
        false,
        [0, 0],
        groups,
        benchmark,
        deterministic,
        cudnn_enabled,
        allow_tf32,
    )
}

fn activate(x: Tensor, act: Activation) -> Tensor {
    let mut x = x;
    match act {
        Activation::None => x,
        Activation::Relu => x.relu_(),
        Activation::Relu6 => x.clamp_(0.0, 6.0),
        Activation::HardSwish => x.hardswish_(),
        Activation::HardSigmoid => x.hardsigmoid_(),
        Activation::Gelu => x.gelu("none"),
    }
}

impl Net {
    /// Converts `model` (with or without its batch norms) for `device` in `layout`.
    pub fn new(model: &Model, layout: Layout, device: Device) -> Net {
        let graph = &model.graph;
        let mut layers = Vec::with_capacity(graph.nodes.len());
        for (node, layer) in model.layers() {
            let layer = match layer {
                ModelLayer::Conv {
                    conv: c,
                    kernel,
                    bias,
                    bn: b,
                } => {
                    let (padding, pad_first) = padding(c.padding);
                    Layer::Conv {
                        weight: conv_weight(kernel, c, layout, device),
                        bias: bias.map(|b| tensor(b, &[c.out_channels as i64], device)),
                        bn: b.map(|b| bn(b, device)),
                        stride: c.stride as i64,
                        groups: c.groups as i64,
                        padding,
                        pad_first,
                        act: c.activation,
                    }
                }
                ModelLayer::SqueezeExcite { se, weights: w } => {
                    let (c, s) = (se.channels as i64, se.squeeze as i64);
                    // `[in][out]` matrices as 1×1 conv weights `[out, in, 1, 1]`.
                    let one_by_one = |m: &[f32], i: i64, o: i64| {
                        Tensor::from_slice(m)
                            .view([i, o])
                            .transpose(0, 1)
                            .contiguous()
                            .view([o, i, 1, 1])
                            .to_device(device)
                    };
                    Layer::SqueezeExcite {
                        reduce: one_by_one(w.reduce, c, s),
                        reduce_bias: tensor(w.reduce_bias, &[s], device),
                        expand: one_by_one(w.expand, s, c),
                        expand_bias: tensor(w.expand_bias, &[c], device),
                    }
                }
                ModelLayer::GlobalAvgPool => Layer::GlobalAvgPool,
                ModelLayer::FullyConnected { fc, weight, bias } => {
                    let (i, o) = (fc.in_features as i64, fc.out_features as i64);
                    Layer::Linear {
                        // `[in][out]` → linear's `[out, in]`.
                        weight: Tensor::from_slice(weight)
                            .view([i, o])
                            .transpose(0, 1)
                            .contiguous()
                            .to_device(device),
                        bias: tensor(bias, &[o], device),
                        act: fc.activation,
                    }
                }
                ModelLayer::Add => Layer::Add,
                ModelLayer::Attention {
                    attn: a,
                    weights: w,
                } => {
                    let c = a.channels;
                    let matrix = |m: &[f32], i: usize, o: usize| {
                        let conv = Conv2d::one_by_one(i, o, Activation::None);
                        conv_weight(m, &conv, layout, device)
                    };
                    let down_conv = a.down_conv();
                    let down = |d: &Option<(Vec<f32>, BatchNorm)>| {
                        let conv = down_conv.as_ref()?;
                        let (kernel, b) = d.as_ref()?;
                        Some((conv_weight(kernel, conv, layout, device), bn(b, device)))
                    };
                    let (padding, pad_first) = padding(a.kv_padding);
                    Layer::Attention(Box::new(Attention {
                        norm: bn(&w.norm, device),
                        query: matrix(&w.query, c, a.heads * a.key_dim),
                        key_down: down(&w.key_down),
                        value_down: down(&w.value_down),
                        stride: a.kv_stride as i64,
                        padding,
                        pad_first,
                        key: matrix(&w.key, c, a.key_dim),
                        value: matrix(&w.value, c, a.value_dim),
                        output: matrix(&w.output, a.heads * a.value_dim, c),
                        heads: a.heads as i64,
                        key_dim: a.key_dim as i64,
                        value_dim: a.value_dim as i64,
                        scale: f64::from(a.scale()),
                    }))
                }
            };
            layers.push((layer, node.inputs.clone()));
        }
        Net {
            layers,
            names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
            last_use: graph.last_uses(),
            layout,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Every trainable tensor (kernels, biases, BN's γ and β; not its running statistics).
    pub fn parameters(&mut self) -> Vec<&mut Tensor> {
        let mut out = Vec::new();
        for (layer, _) in &mut self.layers {
            match layer {
                Layer::Conv {
                    weight, bias, bn, ..
                } => {
                    out.push(weight);
                    if let Some(b) = bias {
                        out.push(b);
                    }
                    if let Some(bn) = bn {
                        out.push(&mut bn.gamma);
                        out.push(&mut bn.beta);
                    }
                }
                Layer::SqueezeExcite {
                    reduce,
                    reduce_bias,
                    expand,
                    expand_bias,
                } => out.extend([reduce, reduce_bias, expand, expand_bias]),
                Layer::Linear { weight, bias, .. } => out.extend([weight, bias]),
                Layer::Attention(a) => {
                    let a = &mut **a;
                    out.extend([&mut a.norm.gamma, &mut a.norm.beta]);
                    for (w, bn) in [a.key_down.as_mut(), a.value_down.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        out.extend([w, &mut bn.gamma, &mut bn.beta]);
                    }
                    out.extend([&mut a.query, &mut a.key, &mut a.value, &mut a.output]);
                }
                Layer::GlobalAvgPool | Layer::Add => {}
            }
        }
        out
    }

    /// The logits `[batch, classes]` for an NCHW-shaped `input`. `training` switches batch
    /// norm to batch statistics (and updates its running statistics), as `model.train()`.
    pub fn forward(&self, input: &Tensor, training: bool) -> Tensor {
        self.forward_observed(input, training, &mut |_| {})
    }

    /// The torch ops layer `i` calls, e.g. `conv2d+batch_norm+hardswish`.
    pub fn layer_kind(&self, i: usize) -> String {
        let act = |a: &Activation| match a {
            Activation::None => "",
            Activation::Relu => "+relu",
            Activation::Relu6 => "+relu6",
            Activation::HardSwish => "+hardswish",
            Activation::HardSigmoid => "+hardsigmoid",
            Activation::Gelu => "+gelu",
        };
        match &self.layers[i].0 {
            Layer::Conv {
                bn,
                act: a,
                pad_first,
                ..
            } => format!(
                "{}conv2d{}{}",
                if pad_first.is_some() { "pad+" } else { "" },
                if bn.is_some() { "+batch_norm" } else { "" },
                act(a)
            ),
            Layer::SqueezeExcite { .. } => {
                "adaptive_avg_pool2d+conv2d+relu+conv2d+hardsigmoid+mul".into()
            }
            Layer::GlobalAvgPool => "adaptive_avg_pool2d".into(),
            Layer::Linear { act: a, .. } => format!("linear{}", act(a)),
            Layer::Add => "add".into(),
            Layer::Attention(a) => format!(
                "batch_norm+conv2d+{}conv2d+matmul+softmax+matmul+conv2d",
                if a.key_down.is_some() {
                    "pad+conv2d+batch_norm+"
                } else {
                    ""
                }
            ),
        }
    }

    /// The IR node names of the layers, in order.
    pub fn layer_names(&self) -> &[String] {
        &self.names
    }

    /// [`Net::forward`], calling `after_layer(i)` as soon as layer `i` has been issued (a
    /// per-layer timer: on CUDA it must synchronise first).
    pub fn forward_observed(
        &self,
        input: &Tensor,
        training: bool,
        after_layer: &mut dyn FnMut(usize),
    ) -> Tensor {
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(self.layers.len() + 1);
        values.push(Some(input.shallow_clone()));
        for (i, (layer, inputs)) in self.layers.iter().enumerate() {
            let x = values[inputs[0]]
                .as_ref()
                .expect("values are live until last use");
            let y = match layer {
                Layer::Conv {
                    weight,
                    bias,
                    bn,
                    stride,
                    groups,
                    padding,
                    pad_first,
                    act,
                } => {
                    let padded;
                    let x = match pad_first {
                        Some(pad) => {
                            padded = x.constant_pad_nd(pad.as_slice());
                            &padded
                        }
                        None => x,
                    };
                    let y = conv2d_fp32(x, weight, bias.as_ref(), *stride, *padding, *groups);
                    let y = match bn {
                        Some(bn) => batch_norm(&y, bn, training),
                        None => y,
                    };
                    activate(y, *act)
                }
                Layer::SqueezeExcite {
                    reduce,
                    reduce_bias,
                    expand,
                    expand_bias,
                } => {
                    let s = x.adaptive_avg_pool2d([1, 1]);
                    let s = conv2d_fp32(&s, reduce, Some(reduce_bias), 1, [0, 0], 1).relu_();
                    let s = conv2d_fp32(&s, expand, Some(expand_bias), 1, [0, 0], 1).hardsigmoid_();
                    x * s
                }
                Layer::GlobalAvgPool => x.adaptive_avg_pool2d([1, 1]),
                Layer::Linear { weight, bias, act } => {
                    let flat = if x.dim() > 2 {
                        x.flatten(1, -1)
                    } else {
                        x.shallow_clone()
                    };
                    activate(flat.linear(weight, Some(bias)), *act)
                }
                Layer::Add => {
                    let b = values[inputs[1]]
                        .as_ref()
                        .expect("values are live until last use");
                    x + b
                }
                Layer::Attention(a) => a.forward(x, training),
            };
            for &v in inputs {
                if self.last_use[v] == Some(i) {
                    values[v] = None;
                }
            }
            values.push(Some(y));
            after_layer(i);
        }
        let out = values.pop().flatten().expect("a graph has nodes");
        if out.dim() > 2 {
            out.flatten(1, -1)
        } else {
            out
        }
    }
}

/// Batch norm in eval mode, or with batch statistics (updating the running ones) in training.
fn batch_norm(x: &Tensor, bn: &Bn, training: bool) -> Tensor {
    x.batch_norm(
        Some(&bn.gamma),
        Some(&bn.beta),
        Some(&bn.mean),
        Some(&bn.var),
        training,
        0.1,
        bn.eps,
        true,
    )
}

impl Attention {
    /// `x` NCHW `[1, C, H, W]` → the same shape.
    fn forward(&self, x: &Tensor, training: bool) -> Tensor {
        let size = x.size();
        let (h, w) = (size[2], size[3]);
        let normed = batch_norm(x, &self.norm, training);
        let q = conv2d_fp32(&normed, &self.query, None, 1, [0, 0], 1)
            .reshape([1, self.heads, self.key_dim, h * w])
            .transpose(-1, -2);
        let source = |down: &Option<(Tensor, Bn)>| match down {
            Some((weight, bn)) => {
                let padded = match self.pad_first {
                    Some(pad) => normed.constant_pad_nd(pad.as_slice()),
                    None => normed.shallow_clone(),
                };
                let channels = size[1];
                let y = conv2d_fp32(&padded, weight, None, self.stride, self.padding, channels);
                batch_norm(&y, bn, training)
            }
            None => normed.shallow_clone(),
        };
        let k = conv2d_fp32(&source(&self.key_down), &self.key, None, 1, [0, 0], 1).reshape([
            1,
            1,
            self.key_dim,
            -1,
        ]);
        let v = conv2d_fp32(&source(&self.value_down), &self.value, None, 1, [0, 0], 1)
            .reshape([1, 1, self.value_dim, -1])
            .transpose(-1, -2);
        let p = (q.matmul(&k) * self.scale).softmax(-1, Kind::Float);
        let o = p
            .matmul(&v)
            .transpose(-1, -2)
            .reshape([1, self.heads * self.value_dim, h, w]);
        conv2d_fp32(&o, &self.output, None, 1, [0, 0], 1)
    }
}

/// Fills a preallocated NHWC host tensor from a slice (no allocation in the timed loop).
pub fn fill(tensor: &mut Tensor, data: &[f32]) {
    assert_eq!(tensor.kind(), Kind::Float);
    assert_eq!(tensor.numel(), data.len());
    assert!(tensor.is_contiguous() && tensor.device() == Device::Cpu);
    // SAFETY: the tensor is a contiguous f32 CPU tensor of exactly data.len() elements,
    // owned by the session and not aliased by anything running concurrently.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), tensor.data_ptr() as *mut f32, data.len());
    }
}
