//! MobileNetV4's convolutional models (Qin et al., ECCV 2024), as the block tables of the
//! official TensorFlow spec (`official/vision/modeling/backbones/mobilenet.py`:
//! `MNV4ConvSmall_BLOCK_SPECS`, `_mnv4_conv_medium_block_specs()`, `MNV4ConvLarge_BLOCK_SPECS`;
//! `_mnv4_hybrid_medium_block_specs()`, `_mnv4_hybrid_large_block_specs()`; timm's
//! `_gen_mobilenet_v4` holds the same tables). Every conv uses batch norm and ReLU (GELU in
//! Hybrid-L), convolutions have no bias, and the classifier has 1000 outputs (no background
//! class).

use crate::ir::{Activation, Graph, ValueId};
use crate::zoo::make_divisible;

/// One row of a V4 block table (repeats already written out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V4Block {
    /// `conv_bn`: k×k convolution → BN → ReLU.
    ConvBn {
        kernel: usize,
        out: usize,
        stride: usize,
    },
    /// `fused_ib`: k×k convolution to `in·expand` (BN, ReLU) → 1×1 to `out` (BN, linear).
    FusedIb {
        kernel: usize,
        expand: usize,
        out: usize,
        stride: usize,
    },
    /// The Universal Inverted Bottleneck: optional start depthwise (kernel `start`, BN, no
    /// activation) → 1×1 expansion to `in·expand` (BN, ReLU) → optional middle depthwise
    /// (kernel `middle`, BN, ReLU) → 1×1 projection (BN, linear) → residual when shapes allow.
    /// A kernel of 0 means the depthwise is absent: IB (0/k), ConvNext-like (k/0), ExtraDW
    /// (k/k), FFN (0/0). The stride sits on the middle depthwise when there is one
    /// (`middle_dw_downsample=True` in every V4 spec), else on the start depthwise.
    Uib {
        start: usize,
        middle: usize,
        expand: usize,
        out: usize,
        stride: usize,
    },
    /// Mobile MQA (the hybrids): BN → multi-query attention with `heads` query heads of
    /// `key_dim`, one shared key/value head, keys and values downsampled by a stride
    /// `kv_stride` 3×3 depthwise conv when above 1 → output projection → layer scale → `+`.
    Mqa {
        heads: usize,
        key_dim: usize,
        kv_stride: usize,
    },
}

use V4Block::{ConvBn, FusedIb, Mqa, Uib};

const fn mqa(heads: usize, key_dim: usize, kv_stride: usize) -> V4Block {
    Mqa {
        heads,
        key_dim,
        kv_stride,
    }
}

const fn cn(kernel: usize, out: usize, stride: usize) -> V4Block {
    ConvBn {
        kernel,
        out,
        stride,
    }
}

const fn fused(kernel: usize, expand: usize, out: usize, stride: usize) -> V4Block {
    FusedIb {
        kernel,
        expand,
        out,
        stride,
    }
}

const fn uib(start: usize, middle: usize, expand: usize, out: usize, stride: usize) -> V4Block {
    Uib {
        start,
        middle,
        expand,
        out,
        stride,
    }
}

/// Conv-S at 224: stem, two conv_bn pairs (k3 s2 then 1×1), then UIB stages.
pub const CONV_SMALL: &[V4Block] = &[
    cn(3, 32, 2),
    cn(3, 32, 2),
    cn(1, 32, 1),
    cn(3, 96, 2),
    cn(1, 64, 1),
    uib(5, 5, 3, 96, 2),
    uib(0, 3, 2, 96, 1),
    uib(0, 3, 2, 96, 1),
    uib(0, 3, 2, 96, 1),
    uib(0, 3, 2, 96, 1),
    uib(3, 0, 4, 96, 1),
    uib(3, 3, 6, 128, 2),
    uib(5, 5, 4, 128, 1),
    uib(0, 5, 4, 128, 1),
    uib(0, 5, 3, 128, 1),
    uib(0, 3, 4, 128, 1),
    uib(0, 3, 4, 128, 1),
];

/// Conv-M at 256.
pub const CONV_MEDIUM: &[V4Block] = &[
    cn(3, 32, 2),
    fused(3, 4, 48, 2),
    uib(3, 5, 4, 80, 2),
    uib(3, 3, 2, 80, 1),
    uib(3, 5, 6, 160, 2),
    uib(3, 3, 4, 160, 1),
    uib(3, 3, 4, 160, 1),
    uib(3, 5, 4, 160, 1),
    uib(3, 3, 4, 160, 1),
    uib(3, 0, 4, 160, 1),
    uib(0, 0, 2, 160, 1),
    uib(3, 0, 4, 160, 1),
    uib(5, 5, 6, 256, 2),
    uib(5, 5, 4, 256, 1),
    uib(3, 5, 4, 256, 1),
    uib(3, 5, 4, 256, 1),
    uib(0, 0, 4, 256, 1),
    uib(3, 0, 4, 256, 1),
    uib(3, 5, 2, 256, 1),
    uib(5, 5, 4, 256, 1),
    uib(0, 0, 4, 256, 1),
    uib(0, 0, 4, 256, 1),
    uib(5, 0, 2, 256, 1),
];

/// Conv-L at 384.
pub const CONV_LARGE: &[V4Block] = &[
    cn(3, 24, 2),
    fused(3, 4, 48, 2),
    uib(3, 5, 4, 96, 2),
    uib(3, 3, 4, 96, 1),
    uib(3, 5, 4, 192, 2),
    uib(3, 3, 4, 192, 1),
    uib(3, 3, 4, 192, 1),
    uib(3, 3, 4, 192, 1),
    uib(3, 5, 4, 192, 1),
    uib(5, 3, 4, 192, 1),
    uib(5, 3, 4, 192, 1),
    uib(5, 3, 4, 192, 1),
    uib(5, 3, 4, 192, 1),
    uib(5, 3, 4, 192, 1),
    uib(3, 0, 4, 192, 1),
    uib(5, 5, 4, 512, 2),
    uib(5, 5, 4, 512, 1),
    uib(5, 5, 4, 512, 1),
    uib(5, 5, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 3, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 3, 4, 512, 1),
    uib(5, 5, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
];

/// Hybrid-M at 256 (`_mnv4_hybrid_medium_block_specs()`): Conv-M's shape with MQA blocks
/// interleaved in the last two stages, 4 heads of 64, keys and values downsampled 2× at
/// 16×16 and not at 8×8. Its UIBs carry a layer scale (`use_layer_scale=True`).
pub const HYBRID_MEDIUM: &[V4Block] = &[
    cn(3, 32, 2),
    fused(3, 4, 48, 2),
    uib(3, 5, 4, 80, 2),
    uib(3, 3, 2, 80, 1),
    uib(3, 5, 6, 160, 2),
    uib(0, 0, 2, 160, 1),
    uib(3, 3, 4, 160, 1),
    uib(3, 5, 4, 160, 1),
    mqa(4, 64, 2),
    uib(3, 3, 4, 160, 1),
    mqa(4, 64, 2),
    uib(3, 0, 4, 160, 1),
    mqa(4, 64, 2),
    uib(3, 3, 4, 160, 1),
    mqa(4, 64, 2),
    uib(3, 0, 4, 160, 1),
    uib(5, 5, 6, 256, 2),
    uib(5, 5, 4, 256, 1),
    uib(3, 5, 4, 256, 1),
    uib(3, 5, 4, 256, 1),
    uib(0, 0, 2, 256, 1),
    uib(3, 5, 2, 256, 1),
    uib(0, 0, 2, 256, 1),
    uib(0, 0, 4, 256, 1),
    mqa(4, 64, 1),
    uib(3, 0, 4, 256, 1),
    mqa(4, 64, 1),
    uib(5, 5, 4, 256, 1),
    mqa(4, 64, 1),
    uib(5, 0, 4, 256, 1),
    mqa(4, 64, 1),
    uib(5, 0, 4, 256, 1),
];

/// Hybrid-L at 384 (`_mnv4_hybrid_large_block_specs()`): Conv-L's stem and stages with
/// MQA blocks in the last two stages, 8 heads of 48 with keys and values downsampled 2× at
/// 24×24, 8 heads of 64 without downsampling at 12×12. Every UIB expands 4× and carries a layer
/// scale; every conv (stem, FusedIB, UIBs, head) uses GELU, the attention blocks none.
pub const HYBRID_LARGE: &[V4Block] = &[
    cn(3, 24, 2),
    fused(3, 4, 48, 2),
    uib(3, 5, 4, 96, 2),
    uib(3, 3, 4, 96, 1),
    uib(3, 5, 4, 192, 2),
    uib(3, 3, 4, 192, 1),
    uib(3, 3, 4, 192, 1),
    uib(3, 3, 4, 192, 1),
    uib(3, 5, 4, 192, 1),
    uib(5, 3, 4, 192, 1),
    uib(5, 3, 4, 192, 1),
    mqa(8, 48, 2),
    uib(5, 3, 4, 192, 1),
    mqa(8, 48, 2),
    uib(5, 3, 4, 192, 1),
    mqa(8, 48, 2),
    uib(5, 3, 4, 192, 1),
    mqa(8, 48, 2),
    uib(3, 0, 4, 192, 1),
    uib(5, 5, 4, 512, 2),
    uib(5, 5, 4, 512, 1),
    uib(5, 5, 4, 512, 1),
    uib(5, 5, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 3, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 0, 4, 512, 1),
    uib(5, 3, 4, 512, 1),
    uib(5, 5, 4, 512, 1),
    mqa(8, 64, 1),
    uib(5, 0, 4, 512, 1),
    mqa(8, 64, 1),
    uib(5, 0, 4, 512, 1),
    mqa(8, 64, 1),
    uib(5, 0, 4, 512, 1),
    mqa(8, 64, 1),
    uib(5, 0, 4, 512, 1),
];

/// Builds a V4 model: the table, then the head shared by all five — 1×1 → 960 (BN,
/// `act`), global pool, 1×1 → 1280 (BN, `act`, no bias: the spec's and timm's `head_norm`),
/// FC → `classes` with bias. `act` is every conv's activation (ReLU; GELU in Hybrid-L).
/// Widths follow timm's `round_channels`: block outputs and the 960 conv scale by α
/// (`make_divisible(c·α, 8)`); the stem keeps its width below α = 1 and the 1280 head keeps
/// its width up to α = 1.
pub fn build(g: &mut Graph, alpha: f64, blocks: &[V4Block], act: Activation, classes: usize) {
    // The hybrids' UIBs carry a layer scale; the conv models' do not.
    let layer_scale = blocks.iter().any(|b| matches!(b, Mqa { .. }));
    let scaled = |c: usize| make_divisible(c as f64 * alpha, 8);
    let mut x: ValueId = 0;
    for (i, block) in blocks.iter().enumerate() {
        let name = format!("block{i}");
        let in_c = g.value_shape(x).c;
        x = match *block {
            ConvBn {
                kernel,
                out,
                stride,
            } => {
                let out = if i == 0 && alpha < 1.0 {
                    out
                } else {
                    scaled(out)
                };
                let name = if i == 0 { "conv0".to_string() } else { name };
                g.conv_bn(name, x, out, kernel, stride, act)
            }
            FusedIb {
                kernel,
                expand,
                out,
                stride,
            } => {
                let mid = make_divisible((in_c * expand) as f64, 8);
                let y = g.conv_bn(format!("{name}_fused"), x, mid, kernel, stride, act);
                let y = g.conv_bn(
                    format!("{name}_project"),
                    y,
                    scaled(out),
                    1,
                    1,
                    Activation::None,
                );
                residual(g, &name, y, x, stride)
            }
            Uib {
                start,
                middle,
                expand,
                out,
                stride,
            } => {
                let mut y = x;
                // The stride goes to the middle depthwise when there is one.
                let start_stride = if middle == 0 { stride } else { 1 };
                if start > 0 {
                    y = g.depthwise_bn(
                        format!("{name}_dw_start"),
                        y,
                        start,
                        start_stride,
                        Activation::None,
                    );
                }
                let mid = make_divisible((in_c * expand) as f64, 8);
                y = g.conv_bn(format!("{name}_expand"), y, mid, 1, 1, act);
                if middle > 0 {
                    y = g.depthwise_bn(format!("{name}_dw"), y, middle, stride, act);
                }
                y = g.conv_bn(
                    format!("{name}_project"),
                    y,
                    scaled(out),
                    1,
                    1,
                    Activation::None,
                );
                if layer_scale {
                    g.with_layer_scale();
                }
                residual(g, &name, y, x, stride)
            }
            Mqa {
                heads,
                key_dim,
                kv_stride,
            } => {
                let y =
                    g.multi_query_attention(format!("{name}_mqa"), x, heads, key_dim, kv_stride);
                residual(g, &name, y, x, 1)
            }
        };
    }
    x = g.conv_bn("conv_last", x, scaled(960), 1, 1, act);
    x = g.global_avg_pool("pool", x);
    let head = if alpha > 1.0 { scaled(1280) } else { 1280 };
    x = g.conv_bn("head", x, head, 1, 1, act);
    g.fully_connected("logits", x, classes, Activation::None);
}

/// `+ input` when the block keeps the shape (stride 1, same channels).
fn residual(g: &mut Graph, name: &str, y: ValueId, input: ValueId, stride: usize) -> ValueId {
    if stride == 1 && g.value_shape(y) == g.value_shape(input) {
        g.add(format!("{name}_add"), y, input)
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::{count, trained_params};
    use crate::ir::{Op, Shape};
    use crate::zoo::{Family, ModelConfig};

    fn graph(family: Family) -> Graph {
        ModelConfig::new(family, 1.0, family.published_resolution()).graph()
    }

    #[test]
    fn counts_equal_the_official_spec() {
        // The spec's figures as timm states them (3.77 / 9.72 / 32.59 M params) and as the
        // issue quotes MACs (0.19 / 1.08 / 6.38 G): equal within half a unit of their last
        // digit (params ±0.005 M, MACs ±5 M), i.e. our count rounds to the stated figure.
        for (family, params_m, macs_m) in [
            (Family::V4ConvSmall, 3.77, 190.0),
            (Family::V4ConvMedium, 9.72, 1080.0),
            (Family::V4ConvLarge, 32.59, 6380.0),
        ] {
            let g = graph(family);
            let params = trained_params(&g) as f64 / 1e6;
            let macs = count(&g).macs as f64 / 1e6;
            assert!(
                (params - params_m).abs() <= 0.005,
                "{}: {params} M params",
                g.name
            );
            assert!((macs - macs_m).abs() <= 5.0, "{}: {macs} M MACs", g.name);
        }
        // The hybrids: 11.07 / 37.76 M params as timm states them. Their MACs are stated only
        // by timm's profiler (1.29 G @256, 7.77 G @384), which also counts BN, softmax and
        // adds and so sits above a conv+FC+matmul count (Conv-L: 6.43 G profiled vs 6.38 G
        // counted, 0.8%): the count must lie below it by at most 2%.
        for (family, params_m, profiled_macs_m) in [
            (Family::V4HybridMedium, 11.07, 1290.0),
            (Family::V4HybridLarge, 37.76, 7770.0),
        ] {
            let g = graph(family);
            let params = trained_params(&g) as f64 / 1e6;
            assert!(
                (params - params_m).abs() <= 0.005,
                "{}: {params} M params",
                g.name
            );
            let macs = count(&g).macs as f64 / 1e6;
            assert!(
                (profiled_macs_m * 0.98..profiled_macs_m).contains(&macs),
                "{}: {macs} M MACs",
                g.name
            );
        }
    }

    #[test]
    fn hybrid_medium_places_its_attention_where_the_spec_does() {
        let g = graph(Family::V4HybridMedium);
        let attention: Vec<(&str, Shape, usize)> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::MultiQueryAttention(a) => {
                    assert_eq!((a.heads, a.key_dim, a.value_dim), (4, 64, 64));
                    Some((n.name.as_str(), a.kv_shape, a.kv_stride))
                }
                _ => None,
            })
            .collect();
        let at16 = (Shape::new(8, 8, 160), 2);
        let at8 = (Shape::new(8, 8, 256), 1);
        let expect = [
            ("block8_mqa", at16),
            ("block10_mqa", at16),
            ("block12_mqa", at16),
            ("block14_mqa", at16),
            ("block24_mqa", at8),
            ("block26_mqa", at8),
            ("block28_mqa", at8),
            ("block30_mqa", at8),
        ];
        let expect: Vec<(&str, Shape, usize)> =
            expect.iter().map(|&(n, (s, k))| (n, s, k)).collect();
        assert_eq!(attention, expect);
        // Each is a residual block; the hybrid's UIB projections carry a layer scale.
        assert!(g.nodes.iter().any(|n| n.name == "block8_add"));
        let project = |name: &str| match &g.nodes.iter().find(|n| n.name == name).unwrap().op {
            Op::Conv2d(c) => c.layer_scale,
            op => panic!("{op:?}"),
        };
        assert!(project("block9_project"));
        assert!(!project("block1_project")); // the FusedIB's: no layer scale in the spec
        assert!(!graph(Family::V4ConvMedium)
            .nodes
            .iter()
            .any(|n| matches!(&n.op, Op::Conv2d(c) if c.layer_scale)));
    }

    #[test]
    fn hybrid_large_uses_gelu_and_two_attention_shapes() {
        let g = graph(Family::V4HybridLarge);
        let attention: Vec<(usize, usize, usize, Shape)> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::MultiQueryAttention(a) => {
                    assert_eq!(a.value_dim, a.key_dim);
                    Some((a.heads, a.key_dim, a.kv_stride, a.kv_shape))
                }
                _ => None,
            })
            .collect();
        let at24 = (8, 48, 2, Shape::new(12, 12, 192));
        let at12 = (8, 64, 1, Shape::new(12, 12, 512));
        assert_eq!(attention, [at24, at24, at24, at24, at12, at12, at12, at12]);
        // Every conv that has an activation uses GELU: stem, FusedIB, UIBs and the head.
        let acts: Vec<(&str, Activation)> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Conv2d(c) if c.activation != Activation::None => {
                    Some((n.name.as_str(), c.activation))
                }
                _ => None,
            })
            .collect();
        // 50 = stem + FusedIB + 28 UIB expansions + 18 middle depthwise + 960 conv + head.
        assert_eq!(acts.len(), 50);
        assert!(acts.iter().all(|&(_, a)| a == Activation::Gelu));
        for name in ["conv0", "block1_fused", "block2_dw", "conv_last", "head"] {
            assert!(acts.iter().any(|&(n, _)| n == name), "{name}");
        }
    }

    #[test]
    fn exact_counts_from_the_tables() {
        // Regression guard on the tables themselves: one changed row moves these.
        let exact: Vec<(u64, u64)> = Family::V4
            .iter()
            .map(|&f| {
                let g = graph(f);
                (count(&g).macs, trained_params(&g))
            })
            .collect();
        assert_eq!(
            exact,
            [
                (186_005_568, 3_774_024),
                (1_080_244_224, 9_715_512),
                (6_376_220_672, 32_590_864),
                (1_271_183_360, 11_074_648),
                (7_711_877_120, 37_764_624)
            ]
        );
    }

    #[test]
    fn a_stride_2_extra_dw_strides_in_its_middle_depthwise() {
        // Conv-S block5 is uib(5, 5, 3, 96, 2) on 28×28×64: the start depthwise runs at the
        // input's 28×28, the middle one takes the stride to 14×14.
        let g = graph(Family::V4ConvSmall);
        let node = |name: &str| g.nodes.iter().find(|n| n.name == name).expect(name);
        let conv = |name: &str| match &node(name).op {
            Op::Conv2d(c) => c.clone(),
            op => panic!("{name}: {op:?}"),
        };
        assert_eq!(conv("block5_dw_start").stride, 1);
        assert_eq!(node("block5_dw_start").output, Shape::new(28, 28, 64));
        assert_eq!(conv("block5_dw_start").activation, Activation::None);
        assert_eq!(node("block5_expand").output, Shape::new(28, 28, 192));
        assert_eq!(conv("block5_dw").stride, 2);
        assert_eq!(node("block5_dw").output, Shape::new(14, 14, 192));
        assert_eq!(conv("block5_dw").activation, Activation::Relu);
        assert!(g.nodes.iter().all(|n| n.name != "block5_add"));
        // A ConvNext-like block (no middle depthwise) keeps its stride on the start one:
        // none is strided in V4, so check the rule on a one-block table.
        let mut g = Graph::new("t", Shape::new(16, 16, 8));
        build(&mut g, 1.0, &[uib(3, 0, 2, 8, 2)], Activation::Relu, 10);
        let start = g
            .nodes
            .iter()
            .find(|n| n.name == "block0_dw_start")
            .unwrap();
        assert_eq!(start.output, Shape::new(8, 8, 8));
    }

    #[test]
    fn the_four_uib_instances_and_the_head() {
        let g = graph(Family::V4ConvMedium);
        let has = |name: &str| g.nodes.iter().any(|n| n.name == name);
        // block10 is the FFN (0/0): expansion and projection only, with the residual.
        assert!(has("block10_expand") && has("block10_add"));
        assert!(!has("block10_dw_start") && !has("block10_dw"));
        // block9 ConvNext-like (3/0), block2 ExtraDW (3/5), block1 the FusedIB.
        assert!(has("block9_dw_start") && !has("block9_dw"));
        assert!(has("block2_dw_start") && has("block2_dw"));
        assert!(has("block1_fused") && !has("block1_add"));
        let tail: Vec<(&str, Shape)> = g.nodes[g.nodes.len() - 4..]
            .iter()
            .map(|n| (n.name.as_str(), n.output))
            .collect();
        assert_eq!(
            tail,
            [
                ("conv_last", Shape::new(8, 8, 960)),
                ("pool", Shape::new(1, 1, 960)),
                ("head", Shape::new(1, 1, 1280)),
                ("logits", Shape::new(1, 1, 1000)),
            ]
        );
        match &g.nodes[g.nodes.len() - 2].op {
            Op::Conv2d(c) => assert!(c.batch_norm && !c.bias),
            op => panic!("{op:?}"),
        }
    }
}
