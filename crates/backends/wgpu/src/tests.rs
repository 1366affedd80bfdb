//! The WGSL engine against the native engine on the same (BN-folded) weights and input, on
//! whatever Vulkan adapter is here (lavapipe in the test command). Tiny models: software
//! Vulkan takes seconds on real ones.
//!
//! Tolerance: the harness's fp32 bound, 1e-4 relative. Both compute in f32 and differ in
//! summation order only; measured worst cases are printed (`-- --nocapture`).

use mobilebench_models::ir::{Graph, Shape};
use mobilebench_models::reference::relative_difference;
use mobilebench_models::weights::Weights;
use mobilebench_models::{sets::select, synthetic_input, BnMode, Model};
use mobilebench_native::Engine as Native;

use crate::{open, Engine, Pointwise};

#[test]
fn whole_models_match_native_with_both_pointwise_kernels() {
    // Every family; odd and even maps (asymmetric SAME padding), SE, residuals, 5×5 kernels.
    let names = "mobilenet_v3_small_0.25_64,mobilenet_v3_large_0.25_64,mobilenet_v2_0.35_64,\
        mobilenet_v1_0.25_64,mobilenet_v3_small_minimalistic_0.25_72,\
        mobilenet_v4_hybrid_medium_0.25_64,mobilenet_v4_hybrid_large_0.25_64";
    for cfg in select(names).unwrap() {
        let model = Model::from_config(&cfg, 5).with_bn(BnMode::Fused).unwrap();
        let input = synthetic_input(model.graph.input, 3);
        let mut native = Native::new(&model);
        let mut expected = vec![0.0; native.output_len()];
        native.run(&input, &mut expected);
        for pointwise in [Pointwise::Tiled, Pointwise::Naive] {
            let mut engine = Engine::new(open().unwrap(), &model, pointwise);
            let mut out = vec![0.0; engine.output_len()];
            engine.run(&input, &mut out).unwrap();
            let diff = relative_difference(&out, &expected);
            eprintln!("{cfg} {pointwise:?}: scaled max diff {diff:e}");
            assert!(diff <= 1e-4, "{cfg} {pointwise:?}: {diff:e}");
            let mut again = vec![0.0; out.len()];
            engine.run(&input, &mut again).unwrap();
            assert_eq!(out, again, "{cfg}: a second run differs");
        }
    }
}

#[test]
fn timestamps_give_a_gpu_time_when_the_adapter_has_them() {
    let cfg = select("mobilenet_v3_small_0.25_64").unwrap()[0];
    let model = Model::from_config(&cfg, 5);
    let gpu = open().unwrap();
    let has = gpu.timestamps;
    let mut engine = Engine::new(gpu, &model, Pointwise::Tiled);
    let input = synthetic_input(model.graph.input, 3);
    let mut out = vec![0.0; engine.output_len()];
    let start = std::time::Instant::now();
    engine.run(&input, &mut out).unwrap();
    let wall = start.elapsed();
    match engine.last_gpu_time() {
        Some(t) => {
            assert!(has);
            assert!(
                t > std::time::Duration::ZERO && t <= wall,
                "{t:?} vs wall {wall:?}"
            );
        }
        None => assert!(!has),
    }
}

fn single_op(name: &str, input: Shape, build: impl FnOnce(&mut Graph)) -> Model {
    let mut graph = Graph::new(name, input);
    build(&mut graph);
    let weights = Weights::random(&graph, 99);
    Model {
        name: name.into(),
        graph,
        weights,
    }
    .with_bn(BnMode::Fused)
    .unwrap()
}

fn check_op(model: &Model) {
    let input = synthetic_input(model.graph.input, 3);
    let mut native = Native::new(model);
    let mut expected = vec![0.0; native.output_len()];
    native.run(&input, &mut expected);
    for pointwise in [Pointwise::Naive, Pointwise::Tiled] {
        let mut engine = Engine::new(open().unwrap(), model, pointwise);
        let mut out = vec![0.0; engine.output_len()];
        engine.run(&input, &mut out).unwrap();
        let diff = relative_difference(&out, &expected);
        assert!(diff <= 1e-5, "{} {pointwise:?}: {diff:e}", model.name);
    }
}

#[test]
fn each_kernel_matches_native() {
    use mobilebench_models::ir::Activation;
    for (size, k, s) in [(17, 3, 2), (16, 3, 2), (9, 5, 1)] {
        check_op(&single_op("conv", Shape::new(size, size + 1, 3), |g| {
            g.conv_bn("c", 0, 16, k, s, Activation::HardSwish);
        }));
        check_op(&single_op("dw", Shape::new(size, size, 24), |g| {
            g.depthwise_bn("dw", 0, k, s, Activation::Relu6);
        }));
    }
    for (cin, cout) in [(16, 24), (72, 40), (7, 33), (40, 120)] {
        check_op(&single_op("pw", Shape::new(9, 11, cin), |g| {
            g.conv_bn("pw", 0, cout, 1, 1, Activation::Relu);
        }));
    }
    check_op(&single_op("se_head", Shape::new(6, 5, 32), |g| {
        let x = g.conv_bn("pw", 0, 32, 1, 1, Activation::Relu);
        let x = g.squeeze_excite("se", x, 8);
        let x = g.add("add", x, 0);
        let x = g.global_avg_pool("pool", x);
        let x = g.fully_connected("head", x, 48, Activation::HardSwish);
        g.fully_connected("logits", x, 10, Activation::None);
    }));
    // Mobile MQA with its keys and values downsampled (odd map) and not.
    for (h, w, stride) in [(7, 9, 2), (6, 6, 1)] {
        check_op(&single_op("mqa", Shape::new(h, w, 24), |g| {
            let y = g.multi_query_attention("mqa", 0, 4, 16, stride);
            g.add("mqa_add", y, 0);
        }));
    }
}
