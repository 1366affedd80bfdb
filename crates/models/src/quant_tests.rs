use super::*;
use crate::agreement::cosine;
use crate::reference::relative_difference;
use crate::{ModelConfig, DEFAULT_INPUT_SEED};

#[test]
fn activation_grids_hold_zero_and_saturate() {
    let q = QParams::from_range(-1.0, 1.0);
    assert_eq!(q.fake(0.0), 0.0);
    assert!((q.scale - 2.0 / 255.0).abs() < 1e-9);
    assert_eq!(q.quantize(5.0), 127);
    assert_eq!(q.quantize(-5.0), -128);
    // A range above zero is widened to hold it: ReLU outputs get zero point −128.
    let relu = QParams::from_range(0.5, 6.0);
    assert_eq!(relu.zero_point, -128);
    assert_eq!(relu.fake(0.0), 0.0);
    // Every value inside the range is within half a step of its grid point.
    for i in 0..=100 {
        let x = -1.0 + 0.02 * i as f32;
        assert!((q.fake(x) - x).abs() <= q.scale / 2.0 + 1e-7, "{x}");
    }
    // The gate's two grids: relu6(x + 3) / 6 on RELU6 is exactly a point of UNIT.
    for q6 in -128..=127i8 {
        let r = QParams::RELU6.dequantize(q6) / 6.0;
        assert!((QParams::UNIT.fake(r) - r).abs() < 1e-6);
    }
}

#[test]
fn weights_are_symmetric_per_output_channel() {
    // Two output channels of very different magnitude: each gets its own scale.
    let w = [0.5, 100.0, -0.25, -50.0, 0.125, 25.0];
    let q = QWeights::per_output_channel(&w, 2, WeightRange::Full);
    assert_eq!(q.scales, vec![0.5 / 127.0, 100.0 / 127.0]);
    assert_eq!(q.values[0], 127);
    assert_eq!(q.values[1], 127);
    assert_eq!(q.values[3], -64);
    for (a, b) in q.dequantized().iter().zip(&w) {
        assert!((a - b).abs() <= 100.0 / 127.0 / 2.0);
    }
    // The small channel keeps its precision.
    assert!((q.dequantized()[4] - 0.125).abs() <= 0.5 / 127.0 / 2.0);
    // Reduced range: 64 steps a side.
    let r = QWeights::per_output_channel(&w, 2, WeightRange::Reduced);
    assert_eq!((r.values[1], r.values[3]), (64, -32));
    // An all-zero channel quantizes to zeros with a positive scale.
    let z = QWeights::per_output_channel(&[0.0, 1.0, 0.0, -1.0], 2, WeightRange::Full);
    assert_eq!((z.values[0], z.values[2]), (0, 0));
    assert!(z.scales[0] > 0.0);
}

fn model(name: &str) -> Model {
    Model::from_config(&name.parse::<ModelConfig>().unwrap(), crate::DEFAULT_SEED)
}

#[test]
fn the_int8_model_follows_the_float_model() {
    for name in [
        "mobilenet_v3_small_0.5_64",
        "mobilenet_v2_0.35_64",
        "mobilenet_v1_0.25_64",
    ] {
        let float = model(name);
        let q = QuantModel::quantize(&float, WeightRange::Full);
        let input = synthetic_input(float.graph.input, DEFAULT_INPUT_SEED);
        let expected = reference::evaluate(&float.graph, &float.weights, &input);
        let got = q.evaluate(&input);
        let c = cosine(&expected, &got);
        let rel = relative_difference(&got, &expected);
        eprintln!("{name}: cosine {c:.4}, max relative difference {rel:.3}");
        // Measured 0.97 (V3-Small), 0.88 (V2), 0.9x (V1) at these tiny sizes (2×2 final maps
        // amplify every rounding); 0.99 and up at 224 px. A broken scale gives ~0.
        assert!(c > 0.8, "{name}: cosine {c}");
        // Biases are int32 on the accumulator's grid: at most half a step off each.
        for layer in &q.layers {
            if let QOp::Conv(_, l) = &layer.op {
                assert_eq!(l.bias.len(), l.weights.out_channels());
                assert!(l.weights.values.iter().all(|&v| v >= -127));
            }
        }
    }
}

#[test]
fn a_wrong_zero_point_changes_the_result() {
    let float = model("mobilenet_v3_small_0.5_64");
    let good = QuantModel::quantize(&float, WeightRange::Full);
    let input = synthetic_input(float.graph.input, DEFAULT_INPUT_SEED);
    let reference = good.evaluate(&input);
    let mut bad = good.clone();
    let QOp::Conv(_, stem) = &mut bad.layers[0].op else {
        panic!("the stem is a conv")
    };
    // A zero point cancels out of quantize-then-dequantize except where it saturates: 64
    // steps off clips the top quarter of the range.
    stem.output.zero_point = (stem.output.zero_point + 64).min(127);
    let got = bad.evaluate(&input);
    let rel = relative_difference(&got, &reference);
    assert!(
        rel > 0.05,
        "a zero point 64 steps off moved the logits by only {rel}"
    );
}

#[test]
fn attention_and_gelu_have_no_int8_form_and_say_where() {
    let graph = |name: &str| name.parse::<ModelConfig>().unwrap().graph();
    assert!(has_int8_form(&graph("mobilenet_v4_conv_small_1.0_64")));
    assert!(has_int8_form(&graph("mobilenet_v3_large_1.0_64")));
    // Hybrid-L has both; attention is named first.
    let why = int8_obstacle(&graph("mobilenet_v4_hybrid_large_1.0_64")).unwrap();
    assert!(why.contains("attention (block11_mqa)"), "{why}");
    // GELU alone (no attention) is refused too, naming its first layer.
    let mut g = crate::ir::Graph::new("t", crate::ir::Shape::new(8, 8, 3));
    let x = g.conv_bn("stem", 0, 8, 3, 2, crate::ir::Activation::Gelu);
    g.conv_bn("pw", x, 8, 1, 1, crate::ir::Activation::Relu);
    let why = int8_obstacle(&g).unwrap();
    assert!(why.contains("GELU (stem)"), "{why}");
}
