//! The graph IR every backend consumes: a list of nodes in execution order, NHWC f32,
//! batch 1. It holds shapes only; weights live beside it in [`crate::weights::Weights`], so MACs
//! and params can be counted without materialising a single weight.

use serde::{Deserialize, Serialize};

/// Index of a value: 0 is the graph input, `i + 1` is the output of node `i`.
pub type ValueId = usize;

/// Spatial-and-channel shape of an activation (batch is always 1), NHWC order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c }
    }
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[1, h, w, c]`, the NHWC tensor shape runtimes see.
    pub fn nhwc(&self) -> [usize; 4] {
        [1, self.h, self.w, self.c]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    None,
    Relu,
    Relu6,
    /// x · relu6(x + 3) / 6
    HardSwish,
    /// relu6(x + 3) / 6, the SE gate
    HardSigmoid,
    /// x · Φ(x), Φ the standard normal CDF: the exact (erf) GELU, as TF's `tf.nn.gelu`
    /// (default `approximate=False`) and torch's `nn.GELU()` compute it (MobileNetV4
    /// Hybrid-L).
    Gelu,
}

impl Activation {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
            Activation::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
            // Φ(x) = erfc(−x/√2)/2, in f64: erfc keeps the relative accuracy on the negative
            // side, where 1 + erf(x/√2) would cancel.
            Activation::Gelu => {
                let x = x as f64;
                (0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)) as f32
            }
        }
    }
}

/// Explicit zero padding, resolved once at build time with TensorFlow's SAME rule so that
/// every backend pads identically (SAME is asymmetric for stride 2 on even inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding {
    /// TensorFlow SAME padding for one axis: output = ceil(input / stride).
    pub fn same(input: Shape, kernel: usize, stride: usize) -> (Padding, Shape) {
        let axis = |size: usize| {
            let out = size.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(size);
            (out, total / 2, total - total / 2)
        };
        let (oh, top, bottom) = axis(input.h);
        let (ow, left, right) = axis(input.w);
        (
            Padding {
                top,
                left,
                bottom,
                right,
            },
            Shape::new(oh, ow, input.c),
        )
    }
}

/// A 2-D convolution. `groups` is 1 (regular) or `in_channels` (depthwise, multiplier 1).
/// Weight layout in [`crate::weights::Weights`]: `[kh][kw][in_channels / groups][out_channels]` (HWIO).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub padding: Padding,
    /// Followed by batch normalisation (unfolded form); after folding it has a bias instead.
    pub batch_norm: bool,
    pub bias: bool,
    pub activation: Activation,
    /// Followed by a learned per-channel scale (MobileNetV4 hybrids' layer scale). It sits
    /// right after BN, so the weights hold it multiplied into BN's γ (one affine map either
    /// way); it matters only to the trained-parameter count.
    #[serde(default)]
    pub layer_scale: bool,
}

impl Conv2d {
    /// A 1×1 stride-1 convolution with bias and no BN: how exporters write SE's two layers on
    /// a pooled value, and the int8 exporters an FC layer.
    pub fn one_by_one(in_channels: usize, out_channels: usize, activation: Activation) -> Conv2d {
        Conv2d {
            in_channels,
            out_channels,
            kernel: 1,
            stride: 1,
            groups: 1,
            padding: Padding {
                top: 0,
                left: 0,
                bottom: 0,
                right: 0,
            },
            batch_norm: false,
            bias: true,
            activation,
            layer_scale: false,
        }
    }

    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.out_channels == self.in_channels
    }
    pub fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.groups == 1
    }
    pub fn kernel_len(&self) -> usize {
        self.kernel * self.kernel * (self.in_channels / self.groups) * self.out_channels
    }
}

/// Squeeze-and-excitation: global average pool → 1×1 conv (`squeeze`, ReLU) → 1×1 conv
/// (back to `channels`, hard sigmoid) → scale the input channel-wise. Both convs have biases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqueezeExcite {
    pub channels: usize,
    pub squeeze: usize,
}

/// Fully connected layer on a pooled `[1, 1, in_features]` value (the 1×1 convs of the heads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullyConnected {
    pub in_features: usize,
    pub out_features: usize,
    pub activation: Activation,
}

/// MobileNetV4's Mobile MQA block body (Qin et al. §3.3; TF `MultiHeadSelfAttentionBlock` with
/// `use_multi_query=True`, timm `MobileAttention` + `MultiQueryAttention2d`); its residual is
/// a separate [`Op::Add`]. On an `[h, w, C]` input `x`:
/// 1. `x̂ = BN(x)` (no activation);
/// 2. queries `q = x̂ · Wq`, 1×1 to `heads · key_dim` (channel `head · key_dim + d`);
/// 3. keys and values from one shared head: when `kv_stride > 1`, each first takes its own
///    k×k depthwise conv of `x̂` with that stride (BN, no activation), then a 1×1 to
///    `key_dim` (`value_dim`): `M = h'·w'` positions;
/// 4. per head, `softmax(q_h · kᵀ / √key_dim) · v` → `[h, w, heads · value_dim]`;
/// 5. output 1×1 back to C, then layer scale (held multiplied into the output matrix).
///
/// No projection has a bias (`use_bias=False` in both sources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiQueryAttention {
    pub channels: usize,
    pub heads: usize,
    pub key_dim: usize,
    pub value_dim: usize,
    pub kv_stride: usize,
    /// Kernel of the keys' and values' downsampling depthwise convs (used when strided).
    pub kv_kernel: usize,
    pub kv_padding: Padding,
    /// The keys' and values' spatial grid (`channels` deep before their projection).
    pub kv_shape: Shape,
}

impl MultiQueryAttention {
    /// The downsampling depthwise conv of keys and values (each has its own weights), as a
    /// conv the engines already run; `None` when `kv_stride` is 1.
    pub fn down_conv(&self) -> Option<Conv2d> {
        (self.kv_stride > 1).then_some(Conv2d {
            in_channels: self.channels,
            out_channels: self.channels,
            kernel: self.kv_kernel,
            stride: self.kv_stride,
            groups: self.channels,
            padding: self.kv_padding,
            batch_norm: true,
            bias: false,
            activation: Activation::None,
            layer_scale: false,
        })
    }
    /// The softmax temperature, `1/√key_dim`.
    pub fn scale(&self) -> f32 {
        1.0 / (self.key_dim as f32).sqrt()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Conv2d(Conv2d),
    SqueezeExcite(SqueezeExcite),
    /// Mean over H and W: `[h, w, c]` → `[1, 1, c]`.
    GlobalAvgPool,
    FullyConnected(FullyConnected),
    /// Residual addition of two values of the same shape.
    Add,
    MultiQueryAttention(MultiQueryAttention),
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d(c) if c.is_depthwise() => "depthwise_conv",
            Op::Conv2d(c) if c.is_pointwise() => "pointwise_conv",
            Op::Conv2d(_) => "conv",
            Op::SqueezeExcite(_) => "squeeze_excite",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::FullyConnected(_) => "fully_connected",
            Op::Add => "add",
            Op::MultiQueryAttention(_) => "attention",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: Shape,
}

/// A model graph: nodes in execution order; the last node's output is the logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    pub input: Shape,
    pub nodes: Vec<Node>,
}

impl Graph {
    pub fn new(name: impl Into<String>, input: Shape) -> Self {
        Graph {
            name: name.into(),
            input,
            nodes: Vec::new(),
        }
    }

    pub fn value_shape(&self, id: ValueId) -> Shape {
        if id == 0 {
            self.input
        } else {
            self.nodes[id - 1].output
        }
    }

    pub fn output(&self) -> Shape {
        self.nodes.last().map_or(self.input, |n| n.output)
    }

    /// The id of the most recently produced value.
    pub fn last_value(&self) -> ValueId {
        self.nodes.len()
    }

    fn push(&mut self, name: String, op: Op, inputs: Vec<ValueId>, output: Shape) -> ValueId {
        self.nodes.push(Node {
            name,
            op,
            inputs,
            output,
        });
        self.nodes.len()
    }

    /// Appends a regular convolution with SAME padding, batch-normalised (no bias).
    pub fn conv_bn(
        &mut self,
        name: impl Into<String>,
        input: ValueId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        activation: Activation,
    ) -> ValueId {
        self.push_conv(
            name.into(),
            input,
            out_channels,
            kernel,
            stride,
            1,
            activation,
        )
    }

    /// Appends a depthwise convolution (multiplier 1) with SAME padding, batch-normalised.
    pub fn depthwise_bn(
        &mut self,
        name: impl Into<String>,
        input: ValueId,
        kernel: usize,
        stride: usize,
        activation: Activation,
    ) -> ValueId {
        let c = self.value_shape(input).c;
        self.push_conv(name.into(), input, c, kernel, stride, c, activation)
    }

    #[allow(clippy::too_many_arguments)] // private; the two public builders name the cases
    fn push_conv(
        &mut self,
        name: String,
        input: ValueId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        activation: Activation,
    ) -> ValueId {
        let in_shape = self.value_shape(input);
        let (padding, out) = Padding::same(in_shape, kernel, stride);
        let conv = Conv2d {
            in_channels: in_shape.c,
            out_channels,
            kernel,
            stride,
            groups,
            padding,
            batch_norm: true,
            bias: false,
            activation,
            layer_scale: false,
        };
        let output = Shape::new(out.h, out.w, out_channels);
        self.push(name, Op::Conv2d(conv), vec![input], output)
    }

    pub fn squeeze_excite(
        &mut self,
        name: impl Into<String>,
        input: ValueId,
        squeeze: usize,
    ) -> ValueId {
        let shape = self.value_shape(input);
        let op = Op::SqueezeExcite(SqueezeExcite {
            channels: shape.c,
            squeeze,
        });
        self.push(name.into(), op, vec![input], shape)
    }

    pub fn global_avg_pool(&mut self, name: impl Into<String>, input: ValueId) -> ValueId {
        let c = self.value_shape(input).c;
        self.push(
            name.into(),
            Op::GlobalAvgPool,
            vec![input],
            Shape::new(1, 1, c),
        )
    }

    pub fn fully_connected(
        &mut self,
        name: impl Into<String>,
        input: ValueId,
        out_features: usize,
        activation: Activation,
    ) -> ValueId {
        let in_shape = self.value_shape(input);
        assert_eq!((in_shape.h, in_shape.w), (1, 1), "FC takes a pooled value");
        let op = Op::FullyConnected(FullyConnected {
            in_features: in_shape.c,
            out_features,
            activation,
        });
        self.push(name.into(), op, vec![input], Shape::new(1, 1, out_features))
    }

    /// Appends a Mobile MQA block body on `input` (same shape out); see [`MultiQueryAttention`].
    pub fn multi_query_attention(
        &mut self,
        name: impl Into<String>,
        input: ValueId,
        heads: usize,
        key_dim: usize,
        kv_stride: usize,
    ) -> ValueId {
        let shape = self.value_shape(input);
        let kv_kernel = 3;
        let (kv_padding, kv_shape) = Padding::same(shape, kv_kernel, kv_stride);
        let op = Op::MultiQueryAttention(MultiQueryAttention {
            channels: shape.c,
            heads,
            key_dim,
            value_dim: key_dim,
            kv_stride,
            kv_kernel,
            kv_padding,
            kv_shape,
        });
        self.push(name.into(), op, vec![input], shape)
    }

    /// Marks the last node, a batch-normalised conv, as followed by a layer scale.
    pub fn with_layer_scale(&mut self) {
        match self.nodes.last_mut().map(|n| &mut n.op) {
            Some(Op::Conv2d(c)) if c.batch_norm => c.layer_scale = true,
            op => panic!("layer scale after {op:?}"),
        }
    }

    pub fn add(&mut self, name: impl Into<String>, a: ValueId, b: ValueId) -> ValueId {
        let shape = self.value_shape(a);
        assert_eq!(shape, self.value_shape(b), "residual shapes differ");
        self.push(name.into(), Op::Add, vec![a, b], shape)
    }

    /// For each value, the index of the last node that reads it (`None`: never read, or the
    /// graph output). Engines use it to recycle activation buffers.
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.nodes.len() + 1];
        for (i, node) in self.nodes.iter().enumerate() {
            for &v in &node.inputs {
                last[v] = Some(i);
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // 224, k3, s2: out 112, total pad 1 → all of it at the bottom/right (TF SAME).
        let (p, out) = Padding::same(Shape::new(224, 224, 3), 3, 2);
        assert_eq!((out.h, out.w), (112, 112));
        assert_eq!((p.top, p.bottom, p.left, p.right), (0, 1, 0, 1));
        // 7, k5, s1: symmetric 2.
        let (p, out) = Padding::same(Shape::new(7, 7, 8), 5, 1);
        assert_eq!((out.h, p.top, p.bottom), (7, 2, 2));
        // odd input with stride 2: 7 → 4, total pad 2 → 1/1.
        let (p, out) = Padding::same(Shape::new(7, 7, 8), 3, 2);
        assert_eq!((out.h, p.top, p.bottom), (4, 1, 1));
    }

    #[test]
    fn activations() {
        assert_eq!(Activation::Relu6.apply(7.0), 6.0);
        assert_eq!(Activation::HardSigmoid.apply(0.0), 0.5);
        assert_eq!(Activation::HardSwish.apply(3.0), 3.0);
        assert_eq!(Activation::HardSwish.apply(-3.0), 0.0);
        // x·Φ(x) from tables of the normal CDF: Φ(1) = 0.841344746, Φ(−1) = 0.158655254,
        // Φ(−5) = 2.86651572e-7 (the tail, where 1 + erf would have cancelled).
        for (x, want) in [
            (1.0, 0.841_344_8),
            (-1.0, -0.158_655_25),
            (-5.0, -1.433_257_9e-6),
        ] {
            let got = Activation::Gelu.apply(x);
            assert!((got - want).abs() <= 1e-6 * want.abs(), "gelu({x}) = {got}");
        }
        assert_eq!(Activation::Gelu.apply(0.0), 0.0);
    }
}
