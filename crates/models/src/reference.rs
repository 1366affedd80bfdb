//! A deliberately naive evaluator of the IR: direct convolution with explicit loops and
//! bounds checks, batch norm applied unfolded. It defines what the IR means; fast engines are
//! tested against it, and weight calibration uses it. Never used for timing.

use crate::ir::{
    Activation, Conv2d, FullyConnected, Graph, MultiQueryAttention, Node, Shape, SqueezeExcite,
};
use crate::layer::{layers, Layer, SeWeights};
use crate::weights::{AttentionWeights, BatchNorm, Weights};

/// How far `actual` is from `expected`: the largest absolute difference divided by the
/// largest magnitude of `expected` (the harness's `max_rel_diff`, and what the backends'
/// tests bound).
pub fn relative_difference(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "outputs of different lengths");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    actual
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, e)| m.max((a - e).abs()))
        / scale
}

/// Evaluates the whole graph; returns every value (index 0 is the input, `i + 1` node `i`).
pub fn evaluate_all(graph: &Graph, weights: &Weights, input: &[f32]) -> Vec<Vec<f32>> {
    assert_eq!(input.len(), graph.input.len(), "input length");
    let mut values = vec![input.to_vec()];
    for (node, layer) in layers(graph, weights) {
        let out = evaluate_node(graph, node, layer, &values);
        values.push(out);
    }
    values
}

/// Evaluates the graph and returns the logits.
pub fn evaluate(graph: &Graph, weights: &Weights, input: &[f32]) -> Vec<f32> {
    evaluate_all(graph, weights, input)
        .pop()
        .expect("at least the input")
}

/// Evaluates one node from the values computed before it.
pub fn evaluate_node(graph: &Graph, node: &Node, layer: Layer, values: &[Vec<f32>]) -> Vec<f32> {
    let input = &values[node.inputs[0]];
    let in_shape = graph.value_shape(node.inputs[0]);
    match layer {
        Layer::Conv {
            conv,
            kernel,
            bias,
            bn,
        } => {
            let mut out = conv2d(input, in_shape, conv, kernel, bias, node.output);
            if let Some(bn) = bn {
                batch_norm(&mut out, bn);
            }
            activate(&mut out, conv.activation);
            out
        }
        Layer::SqueezeExcite { se, weights } => squeeze_excite(input, in_shape, se, &weights),
        Layer::GlobalAvgPool => global_avg_pool(input, in_shape),
        Layer::FullyConnected { fc, weight, bias } => fully_connected(input, fc, weight, bias),
        Layer::Add => add(input, &values[node.inputs[1]]),
        Layer::Attention { attn, weights } => attention(input, in_shape, attn, weights),
    }
}

/// `x · w` for `x` `[rows][inner]` and `w` `[inner][cols]`.
pub fn matmul(x: &[f32], inner: usize, w: &[f32], cols: usize) -> Vec<f32> {
    let rows = x.len() / inner;
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for i in 0..inner {
            let xv = x[r * inner + i];
            for (o, wv) in out[r * cols..(r + 1) * cols]
                .iter_mut()
                .zip(&w[i * cols..(i + 1) * cols])
            {
                *o += xv * wv;
            }
        }
    }
    out
}

/// The normalised input, and the source of keys and values (after their downsampling
/// depthwise convs when strided): what [`attention`] projects.
fn attention_sources(
    input: &[f32],
    shape: Shape,
    a: &MultiQueryAttention,
    w: &AttentionWeights,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut x = input.to_vec();
    batch_norm(&mut x, &w.norm);
    let source = |down: &Option<(Vec<f32>, BatchNorm)>| match (a.down_conv(), down) {
        (Some(conv), Some((kernel, bn))) => {
            let mut y = conv2d(&x, shape, &conv, kernel, None, a.kv_shape);
            batch_norm(&mut y, bn);
            y
        }
        (None, None) => x.clone(),
        _ => panic!(
            "attention: downsampling weights do not fit kv_stride {}",
            a.kv_stride
        ),
    };
    let k_src = source(&w.key_down);
    let v_src = source(&w.value_down);
    (x, k_src, v_src)
}

/// A Mobile MQA block body ([`MultiQueryAttention`]), step by step as the IR defines it.
pub fn attention(
    input: &[f32],
    shape: Shape,
    a: &MultiQueryAttention,
    w: &AttentionWeights,
) -> Vec<f32> {
    let c = a.channels;
    let (x, k_src, v_src) = attention_sources(input, shape, a, w);
    let (kd, vd, heads) = (a.key_dim, a.value_dim, a.heads);
    let q = matmul(&x, c, &w.query, heads * kd);
    let k = matmul(&k_src, c, &w.key, kd);
    let v = matmul(&v_src, c, &w.value, vd);
    let n = shape.h * shape.w;
    let m = a.kv_shape.h * a.kv_shape.w;
    let mut o = vec![0.0f32; n * heads * vd];
    let mut p = vec![0.0f32; m];
    for i in 0..n {
        for h in 0..heads {
            let qi = &q[(i * heads + h) * kd..(i * heads + h + 1) * kd];
            for (j, pj) in p.iter_mut().enumerate() {
                let kj = &k[j * kd..(j + 1) * kd];
                *pj = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * a.scale();
            }
            softmax(&mut p);
            let oi = &mut o[(i * heads + h) * vd..(i * heads + h + 1) * vd];
            for (j, pj) in p.iter().enumerate() {
                for (oe, ve) in oi.iter_mut().zip(&v[j * vd..(j + 1) * vd]) {
                    *oe += pj * ve;
                }
            }
        }
    }
    matmul(&o, heads * vd, &w.output, c)
}

/// In-place softmax, max-subtracted.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

/// Direct convolution, one output at a time, without BN or activation.
pub fn conv2d(
    input: &[f32],
    in_shape: Shape,
    c: &Conv2d,
    kernel: &[f32],
    bias: Option<&[f32]>,
    out_shape: Shape,
) -> Vec<f32> {
    let cin_per_group = c.in_channels / c.groups;
    let cout_per_group = c.out_channels / c.groups;
    let mut out = vec![0.0f32; out_shape.len()];
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            for co in 0..c.out_channels {
                let group = co / cout_per_group;
                let mut acc = bias.map_or(0.0, |b| b[co]);
                for ky in 0..c.kernel {
                    for kx in 0..c.kernel {
                        let iy = (oy * c.stride + ky) as isize - c.padding.top as isize;
                        let ix = (ox * c.stride + kx) as isize - c.padding.left as isize;
                        if iy < 0
                            || ix < 0
                            || iy >= in_shape.h as isize
                            || ix >= in_shape.w as isize
                        {
                            continue;
                        }
                        for ci in 0..cin_per_group {
                            let channel = group * cin_per_group + ci;
                            let x = input
                                [(iy as usize * in_shape.w + ix as usize) * in_shape.c + channel];
                            let wi =
                                ((ky * c.kernel + kx) * cin_per_group + ci) * c.out_channels + co;
                            acc += x * kernel[wi];
                        }
                    }
                }
                out[(oy * out_shape.w + ox) * out_shape.c + co] = acc;
            }
        }
    }
    out
}

/// Inference-mode batch norm over the channel (last) axis.
pub fn batch_norm(x: &mut [f32], bn: &BatchNorm) {
    let c = bn.gamma.len();
    for (i, v) in x.iter_mut().enumerate() {
        let ch = i % c;
        *v = (*v - bn.mean[ch]) / (bn.var[ch] + bn.eps).sqrt() * bn.gamma[ch] + bn.beta[ch];
    }
}

pub fn activate(x: &mut [f32], act: Activation) {
    for v in x {
        *v = act.apply(*v);
    }
}

/// Mean over H and W of an NHWC tensor.
pub fn global_avg_pool(input: &[f32], shape: Shape) -> Vec<f32> {
    let mut out = vec![0.0f32; shape.c];
    for (i, v) in input.iter().enumerate() {
        out[i % shape.c] += v;
    }
    let n = (shape.h * shape.w) as f32;
    out.iter_mut().for_each(|v| *v /= n);
    out
}

/// `weight` is `[in][out]`.
pub fn fully_connected(
    input: &[f32],
    fc: &FullyConnected,
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    (0..fc.out_features)
        .map(|o| {
            let dot: f32 = (0..fc.in_features)
                .map(|i| input[i] * weight[i * fc.out_features + o])
                .sum();
            fc.activation.apply(dot + bias[o])
        })
        .collect()
}

fn squeeze_excite(input: &[f32], shape: Shape, se: &SqueezeExcite, w: &SeWeights) -> Vec<f32> {
    let pooled = global_avg_pool(input, shape);
    let squeeze = FullyConnected {
        in_features: se.channels,
        out_features: se.squeeze,
        activation: Activation::Relu,
    };
    let hidden = fully_connected(&pooled, &squeeze, w.reduce, w.reduce_bias);
    let excite = FullyConnected {
        in_features: se.squeeze,
        out_features: se.channels,
        activation: Activation::HardSigmoid,
    };
    let gate = fully_connected(&hidden, &excite, w.expand, w.expand_bias);
    scale_channels(input, &gate)
}

/// A residual addition.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// SE's last step: every channel of an NHWC `x` times its gate (one value per channel).
pub fn scale_channels(x: &[f32], gate: &[f32]) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, v)| v * gate[i % gate.len()])
        .collect()
}
