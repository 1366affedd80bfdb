//! The MobileNet zoo, defined once as block tables and built into the [`Graph`] IR.
//!
//! Channel rules follow TensorFlow-slim, whose checkpoints the published figures describe:
//! V1 `max(int(d·α), 8)`; V2/V3 `make_divisible(d·α, 8)` with the 10% rule. V1–V3 classifiers
//! have [`NUM_CLASSES`] = 1001 outputs (slim's background class + ImageNet's 1000), which is
//! what the published parameter counts include; V4 (`v4.rs`, the official TF spec) has 1000.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::ir::{Activation, Graph, Shape, ValueId};

pub mod v4;

/// Classifier width of the slim-trained V1–V3 (index 0 is "background").
pub const NUM_CLASSES: usize = 1001;

/// Classifier width of V4 (ImageNet's 1000 classes, no background).
pub const NUM_CLASSES_V4: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    V1,
    V2,
    V3Large,
    V3Small,
    V3LargeMinimalistic,
    V3SmallMinimalistic,
    V4ConvSmall,
    V4ConvMedium,
    V4ConvLarge,
    V4HybridMedium,
    V4HybridLarge,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::V1,
        Family::V2,
        Family::V3Large,
        Family::V3Small,
        Family::V3LargeMinimalistic,
        Family::V3SmallMinimalistic,
        Family::V4ConvSmall,
        Family::V4ConvMedium,
        Family::V4ConvLarge,
        Family::V4HybridMedium,
        Family::V4HybridLarge,
    ];

    /// The MobileNetV4 models.
    pub const V4: [Family; 5] = [
        Family::V4ConvSmall,
        Family::V4ConvMedium,
        Family::V4ConvLarge,
        Family::V4HybridMedium,
        Family::V4HybridLarge,
    ];

    pub fn is_v4(self) -> bool {
        Family::V4.contains(&self)
    }

    /// Logits the classifier returns: 1001 for slim's V1–V3, 1000 for V4.
    pub fn num_classes(self) -> usize {
        if self.is_v4() {
            NUM_CLASSES_V4
        } else {
            NUM_CLASSES
        }
    }

    /// The input resolution the family was published at (V4: 224, 256, 384; the others 224).
    pub fn published_resolution(self) -> usize {
        match self {
            Family::V4ConvMedium | Family::V4HybridMedium => 256,
            Family::V4ConvLarge | Family::V4HybridLarge => 384,
            _ => 224,
        }
    }

    /// The name prefix, also the `family` column of the published table.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::V1 => "mobilenet_v1",
            Family::V2 => "mobilenet_v2",
            Family::V3Large => "mobilenet_v3_large",
            Family::V3Small => "mobilenet_v3_small",
            Family::V3LargeMinimalistic => "mobilenet_v3_large_minimalistic",
            Family::V3SmallMinimalistic => "mobilenet_v3_small_minimalistic",
            Family::V4ConvSmall => "mobilenet_v4_conv_small",
            Family::V4ConvMedium => "mobilenet_v4_conv_medium",
            Family::V4ConvLarge => "mobilenet_v4_conv_large",
            Family::V4HybridMedium => "mobilenet_v4_hybrid_medium",
            Family::V4HybridLarge => "mobilenet_v4_hybrid_large",
        }
    }

    pub fn from_prefix(prefix: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.prefix() == prefix)
    }
}

/// One zoo model: family, width multiplier α and square input resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: Family,
    pub alpha: f64,
    pub resolution: usize,
}

impl ModelConfig {
    pub fn new(family: Family, alpha: f64, resolution: usize) -> Self {
        ModelConfig {
            family,
            alpha,
            resolution,
        }
    }

    /// The canonical name, e.g. `mobilenet_v2_0.35_96`.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Builds the graph (shapes only; see [`crate::weights::Weights`] for the numbers).
    pub fn graph(&self) -> Graph {
        let mut g = Graph::new(self.name(), Shape::new(self.resolution, self.resolution, 3));
        let mut v4_build = |blocks, act| v4::build(&mut g, self.alpha, blocks, act, NUM_CLASSES_V4);
        match self.family {
            Family::V1 => build_v1(&mut g, self.alpha),
            Family::V2 => build_v2(&mut g, self.alpha),
            Family::V3Large => build_v3(&mut g, self.alpha, &V3_LARGE, 960, 1280, false),
            Family::V3Small => build_v3(&mut g, self.alpha, &V3_SMALL, 576, 1024, false),
            Family::V3LargeMinimalistic => build_v3(&mut g, self.alpha, &V3_LARGE, 960, 1280, true),
            Family::V3SmallMinimalistic => build_v3(&mut g, self.alpha, &V3_SMALL, 576, 1024, true),
            Family::V4ConvSmall => v4_build(v4::CONV_SMALL, Activation::Relu),
            Family::V4ConvMedium => v4_build(v4::CONV_MEDIUM, Activation::Relu),
            Family::V4ConvLarge => v4_build(v4::CONV_LARGE, Activation::Relu),
            Family::V4HybridMedium => v4_build(v4::HYBRID_MEDIUM, Activation::Relu),
            Family::V4HybridLarge => v4_build(v4::HYBRID_LARGE, Activation::Gelu),
        }
        g
    }
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}",
            self.family.prefix(),
            format_alpha(self.alpha),
            self.resolution
        )
    }
}

/// `1.0`, `0.75`, `0.35`: at least one decimal, no trailing noise.
pub fn format_alpha(alpha: f64) -> String {
    let s = format!("{alpha}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

impl FromStr for ModelConfig {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self, ModelError> {
        let bad = |why: &str| ModelError::BadName {
            name: name.to_string(),
            why: why.to_string(),
        };
        let mut parts = name.rsplitn(3, '_');
        let (res, alpha, prefix) = match (parts.next(), parts.next(), parts.next()) {
            (Some(r), Some(a), Some(p)) => (r, a, p),
            _ => return Err(bad("expected FAMILY_WIDTH_RESOLUTION")),
        };
        let family = Family::from_prefix(prefix).ok_or_else(|| {
            bad("unknown family (mobilenet_v1, mobilenet_v2, mobilenet_v3_{small,large}[_minimalistic], mobilenet_v4_conv_{small,medium,large}, mobilenet_v4_hybrid_{medium,large})")
        })?;
        let alpha: f64 = alpha.parse().map_err(|_| bad("width is not a number"))?;
        if !(alpha > 0.0 && alpha <= 4.0) {
            return Err(bad("width must be in (0, 4]"));
        }
        let resolution: usize = res
            .parse()
            .map_err(|_| bad("resolution is not an integer"))?;
        if !(32..=1024).contains(&resolution) {
            return Err(bad("resolution must be between 32 and 1024"));
        }
        Ok(ModelConfig::new(family, alpha, resolution))
    }
}

/// slim's `_make_divisible`: round to the nearest multiple of `divisor` (at least `divisor`),
/// but never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

fn v1_depth(d: usize, alpha: f64) -> usize {
    ((d as f64 * alpha) as usize).max(8)
}

/// MobileNet V1 after the stem: (stride, pointwise output channels) per separable block.
const V1_BLOCKS: [(usize, usize); 13] = [
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
];

fn build_v1(g: &mut Graph, alpha: f64) {
    let act = Activation::Relu6;
    let mut x = g.conv_bn("conv0", 0, v1_depth(32, alpha), 3, 2, act);
    for (i, &(stride, out)) in V1_BLOCKS.iter().enumerate() {
        x = g.depthwise_bn(format!("block{}_dw", i + 1), x, 3, stride, act);
        x = g.conv_bn(
            format!("block{}_pw", i + 1),
            x,
            v1_depth(out, alpha),
            1,
            1,
            act,
        );
    }
    classifier(g, x);
}

/// MobileNet V2 inverted residual stages: (expansion t, output channels c, repeats n, stride s).
const V2_STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

fn build_v2(g: &mut Graph, alpha: f64) {
    let act = Activation::Relu6;
    let mut x = g.conv_bn("conv0", 0, make_divisible(32.0 * alpha, 8), 3, 2, act);
    let mut block = 0;
    for &(t, c, n, s) in &V2_STAGES {
        for i in 0..n {
            block += 1;
            let in_c = g.value_shape(x).c;
            // slim: the first block expands "by 1, divisible by 1", i.e. not at all.
            let expanded = if t == 1 {
                in_c
            } else {
                make_divisible((in_c * t) as f64, 8)
            };
            let spec = BlockSpec {
                kernel: 3,
                expanded,
                out: make_divisible(c as f64 * alpha, 8),
                stride: if i == 0 { s } else { 1 },
                se: false,
                act,
            };
            x = inverted_residual(g, &format!("block{block}"), x, &spec);
        }
    }
    // The last conv keeps 1280 channels for α < 1 (slim's finegrain classification mode).
    let last = if alpha > 1.0 {
        make_divisible(1280.0 * alpha, 8)
    } else {
        1280
    };
    x = g.conv_bn("conv_last", x, last, 1, 1, act);
    classifier(g, x);
}

/// One MobileNet V3 bottleneck row: kernel, expansion factor (relative to the block's input
/// channels), output channels, squeeze-excite, hard-swish (else ReLU), stride.
struct V3Row {
    kernel: usize,
    expansion: f64,
    out: usize,
    se: bool,
    hswish: bool,
    stride: usize,
}

const fn row(
    kernel: usize,
    expansion: f64,
    out: usize,
    se: bool,
    hs: bool,
    stride: usize,
) -> V3Row {
    V3Row {
        kernel,
        expansion,
        out,
        se,
        hswish: hs,
        stride,
    }
}

const V3_LARGE: [V3Row; 15] = [
    row(3, 1.0, 16, false, false, 1),
    row(3, 4.0, 24, false, false, 2),
    row(3, 3.0, 24, false, false, 1),
    row(5, 3.0, 40, true, false, 2),
    row(5, 3.0, 40, true, false, 1),
    row(5, 3.0, 40, true, false, 1),
    row(3, 6.0, 80, false, true, 2),
    row(3, 2.5, 80, false, true, 1),
    row(3, 184.0 / 80.0, 80, false, true, 1),
    row(3, 184.0 / 80.0, 80, false, true, 1),
    row(3, 6.0, 112, true, true, 1),
    row(3, 6.0, 112, true, true, 1),
    row(5, 6.0, 160, true, true, 2),
    row(5, 6.0, 160, true, true, 1),
    row(5, 6.0, 160, true, true, 1),
];

const V3_SMALL: [V3Row; 11] = [
    row(3, 1.0, 16, true, false, 2),
    row(3, 72.0 / 16.0, 24, false, false, 2),
    row(3, 88.0 / 24.0, 24, false, false, 1),
    row(5, 4.0, 40, true, true, 2),
    row(5, 6.0, 40, true, true, 1),
    row(5, 6.0, 40, true, true, 1),
    row(5, 3.0, 48, true, true, 1),
    row(5, 3.0, 48, true, true, 1),
    row(5, 6.0, 96, true, true, 2),
    row(5, 6.0, 96, true, true, 1),
    row(5, 6.0, 96, true, true, 1),
];

fn build_v3(
    g: &mut Graph,
    alpha: f64,
    rows: &[V3Row],
    last_conv: usize,
    head: usize,
    minimalistic: bool,
) {
    // Minimalistic: every kernel 3×3, no SE, ReLU everywhere.
    let pick = |hswish: bool| {
        if hswish && !minimalistic {
            Activation::HardSwish
        } else {
            Activation::Relu
        }
    };
    let mut x = g.conv_bn(
        "conv0",
        0,
        make_divisible(16.0 * alpha, 8),
        3,
        2,
        pick(true),
    );
    for (i, r) in rows.iter().enumerate() {
        let in_c = g.value_shape(x).c;
        let spec = BlockSpec {
            kernel: if minimalistic { 3 } else { r.kernel },
            expanded: make_divisible(in_c as f64 * r.expansion, 8),
            out: make_divisible(r.out as f64 * alpha, 8),
            stride: r.stride,
            se: r.se && !minimalistic,
            act: pick(r.hswish),
        };
        x = inverted_residual(g, &format!("block{}", i + 1), x, &spec);
    }
    x = g.conv_bn(
        "conv_last",
        x,
        make_divisible(last_conv as f64 * alpha, 8),
        1,
        1,
        pick(true),
    );
    x = g.global_avg_pool("pool", x);
    // The head conv has no BN and keeps its width for α ≤ 1 (what the published 0.75 params match).
    let head = if alpha > 1.0 {
        make_divisible(head as f64 * alpha, 8)
    } else {
        head
    };
    x = g.fully_connected("head", x, head, pick(true));
    g.fully_connected("logits", x, NUM_CLASSES, Activation::None);
}

struct BlockSpec {
    kernel: usize,
    expanded: usize,
    out: usize,
    stride: usize,
    se: bool,
    act: Activation,
}

/// Expand (1×1, skipped when it would not widen) → depthwise → [SE] → project (linear)
/// → residual add when shapes allow.
fn inverted_residual(g: &mut Graph, name: &str, input: ValueId, b: &BlockSpec) -> ValueId {
    let in_c = g.value_shape(input).c;
    let mut x = input;
    if b.expanded > in_c {
        x = g.conv_bn(format!("{name}_expand"), x, b.expanded, 1, 1, b.act);
    }
    x = g.depthwise_bn(format!("{name}_dw"), x, b.kernel, b.stride, b.act);
    let c = g.value_shape(x).c;
    if b.se {
        x = g.squeeze_excite(format!("{name}_se"), x, make_divisible(c as f64 / 4.0, 8));
    }
    x = g.conv_bn(format!("{name}_project"), x, b.out, 1, 1, Activation::None);
    if b.stride == 1 && in_c == b.out {
        x = g.add(format!("{name}_add"), x, input);
    }
    x
}

/// V1/V2 head: global pool → FC to the classes (slim's 1×1 logits conv, with bias).
fn classifier(g: &mut Graph, x: ValueId) {
    let x = g.global_avg_pool("pool", x);
    g.fully_connected("logits", x, NUM_CLASSES, Activation::None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_slim() {
        assert_eq!(make_divisible(32.0 * 0.35, 8), 16); // 8 would lose more than 10%
        assert_eq!(make_divisible(16.0 * 0.75, 8), 16);
        assert_eq!(make_divisible(24.0 * 0.5, 8), 16);
        assert_eq!(make_divisible(1280.0 * 1.4, 8), 1792);
        assert_eq!(make_divisible(3.0, 8), 8);
    }

    #[test]
    fn names_round_trip() {
        for name in [
            "mobilenet_v3_small_1.0_224",
            "mobilenet_v3_large_minimalistic_1.0_224",
            "mobilenet_v2_0.35_96",
            "mobilenet_v1_0.25_128",
            "mobilenet_v2_1.4_224",
            "mobilenet_v4_conv_small_1.0_224",
            "mobilenet_v4_conv_large_1.0_448",
        ] {
            let cfg: ModelConfig = name.parse().unwrap();
            assert_eq!(cfg.name(), name);
        }
    }

    #[test]
    fn bad_names_say_why() {
        for (name, why) in [
            ("mobilenet_v4_1.0_224", "unknown family"),
            ("mobilenet_v4_hybrid_huge_1.0_384", "unknown family"),
            ("mobilenet_v2_x_224", "width is not a number"),
            ("mobilenet_v2_1.0_big", "resolution is not an integer"),
            ("mobilenet_v2_1.0_8", "between 32 and 1024"),
            ("resnet", "expected FAMILY_WIDTH_RESOLUTION"),
        ] {
            let err = name.parse::<ModelConfig>().unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn v3_large_channel_plan() {
        let g = ModelConfig::new(Family::V3Large, 1.0, 224).graph();
        let expands: Vec<usize> = g
            .nodes
            .iter()
            .filter(|n| n.name.ends_with("_expand"))
            .map(|n| n.output.c)
            .collect();
        assert_eq!(
            expands,
            [64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]
        );
        assert_eq!(g.output(), Shape::new(1, 1, NUM_CLASSES));
        let final_spatial = g
            .nodes
            .iter()
            .find(|n| n.name == "conv_last")
            .unwrap()
            .output;
        assert_eq!(final_spatial, Shape::new(7, 7, 960));
    }

    #[test]
    fn minimalistic_has_no_se_no_hswish_no_5x5() {
        let g = ModelConfig::new(Family::V3SmallMinimalistic, 1.0, 224).graph();
        for n in &g.nodes {
            match &n.op {
                crate::ir::Op::SqueezeExcite(_) => panic!("SE in minimalistic"),
                crate::ir::Op::Conv2d(c) => {
                    assert!(c.kernel <= 3);
                    assert_ne!(c.activation, Activation::HardSwish);
                }
                _ => {}
            }
        }
    }
}
