//! How the graph's nodes are grouped into the engine's steps (which fuse, and which run
//! row by row) and which activation buffer each step writes.

use mobilebench_models::ir::{Graph, Op, ValueId};
use mobilebench_models::{Layer, Model};

/// From which intermediate size (bytes) a depthwise runs row by row with the pointwise
/// expansion before it and with the projection after it (below it the tensor stays in cache
/// between the two steps anyway), and up to how many times the pointwise's weights may be
/// read, once per row of the intermediate, for each time the intermediate itself would be.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct RowFusion {
    pub expand_min_bytes: usize,
    pub project_min_bytes: usize,
    pub max_weight_rereads: usize,
}

impl RowFusion {
    /// Expansions from 512 KiB (a quarter of this machine's L2; in the default set the
    /// expansions at 112×112 to 28×28), projections from 256 KiB. Measured on an Intel Xeon
    /// (AVX-512, 2 MiB L2), plans interleaved in one process: expansions alone against no
    /// row fusion, V2 0.94×, the others 0.97–1.0×; projections too (from 256 KiB) against
    /// expansions alone, V2 0.95–0.97×, V3-Large 0.97–0.99×, V3-Large minimalistic
    /// 0.97–0.99×, V3-Small and V1 (which has no projections: its pointwise layers widen)
    /// within ±1%. Expansions from 256 KiB or 0 measured no better.
    ///
    /// Weights re-read at most 16 times the intermediate's bytes: every V1–V3 chain passes
    /// (their plans are unchanged), V4's wide late layers do not — Conv-M's and Hybrid-M's
    /// 8×8×1024 → 256 projections (1 MiB of weights read 8 times for a 256 KiB
    /// intermediate, 32×) and Conv-L's and Hybrid-L's 12×12×512 blocks (4 MiB of weights,
    /// 12 rows, 170×) run as separate steps. Measured against no limit, interleaved in one
    /// process on the same Xeon: Conv-L 0.87×, Hybrid-L 0.91×, Conv-M 0.96–0.97×, Hybrid-M
    /// 0.97–0.985×, Conv-S and V1–V3 within ±2%.
    pub const DEFAULT: RowFusion = RowFusion {
        expand_min_bytes: 512 * 1024,
        project_min_bytes: 256 * 1024,
        max_weight_rereads: 16,
    };
    /// Every pair that can, whatever its size (tests).
    pub const ALL: RowFusion = RowFusion {
        expand_min_bytes: 0,
        project_min_bytes: 0,
        max_weight_rereads: usize::MAX,
    };
}

/// A step before buffers are assigned: the nodes it runs and the values it reads.
pub(crate) struct Planned {
    pub nodes: Vec<usize>,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// Groups nodes into steps. A depthwise convolution runs row by row (a `RowChain`) with the
/// pointwise expansion before it, when that is the depthwise's only input, and with the
/// pointwise projection after it (and the residual add after that), when it is the
/// depthwise's only reader, each when the intermediate between them is at least the
/// `fusion`'s minimum and the pointwise's weights, read once per row, stay within its
/// `max_weight_rereads`; a pointwise convolution whose only reader is the residual add
/// right after it becomes one step (the GEMM adds the residual in its store). Nothing fuses
/// across a batch norm run as a separate pass (it must run between the two).
pub(crate) fn fuse(graph: &Graph, model: &Model, fusion: RowFusion) -> Vec<Planned> {
    let readers = graph.nodes.iter().flat_map(|n| n.inputs.iter().copied());
    let mut read_count = vec![0usize; graph.nodes.len() + 1];
    for v in readers {
        read_count[v] += 1;
    }
    let is = |i: usize, pointwise: bool| {
        matches!(model.layer(i), Layer::Conv { conv, bn: None, .. }
            if if pointwise { conv.is_pointwise() } else { conv.is_depthwise() })
    };
    // Node `i`'s output is read by node `i + 1` only.
    let feeds_next_only = |i: usize| {
        read_count[i + 1] == 1
            && graph
                .nodes
                .get(i + 1)
                .is_some_and(|n| n.inputs.contains(&(i + 1)))
    };
    let bytes = |i: usize| graph.nodes[i].output.len() * std::mem::size_of::<f32>();
    // Pointwise node `pw` run row by row beside a depthwise, `between` the node whose output
    // lies between them: its weights are read once per row of that intermediate.
    let rereads_ok = |pw: usize, between: usize| {
        let input = graph.value_shape(graph.nodes[pw].inputs[0]);
        let weight_bytes = input.c * graph.nodes[pw].output.c * std::mem::size_of::<f32>();
        let rows = graph.nodes[between].output.h;
        rows.saturating_mul(weight_bytes)
            <= bytes(between).saturating_mul(fusion.max_weight_rereads)
    };
    // Node `i + 1` adds node `i`'s output to another value.
    let residual_add_next = |i: usize| {
        feeds_next_only(i)
            && graph.nodes[i + 1].op == Op::Add
            && graph.nodes[i + 1].inputs[0] != graph.nodes[i + 1].inputs[1]
    };
    let mut planned = Vec::with_capacity(graph.nodes.len());
    let mut i = 0;
    while i < graph.nodes.len() {
        let node = &graph.nodes[i];
        let expands = is(i, true)
            && feeds_next_only(i)
            && is(i + 1, false)
            && bytes(i) >= fusion.expand_min_bytes
            && rereads_ok(i, i);
        let dw = if expands { i + 1 } else { i };
        // A projection: narrower than the depthwise, or closing a residual block. (A
        // pointwise that widens, as V1's do, is the next depthwise's expansion: fused with
        // that one instead, the larger tensor stays in cache.)
        let projects = is(dw, false)
            && feeds_next_only(dw)
            && is(dw + 1, true)
            && (graph.nodes[dw + 1].output.c < graph.nodes[dw].output.c
                || residual_add_next(dw + 1))
            && bytes(dw) >= fusion.project_min_bytes
            && rereads_ok(dw + 1, dw);
        let mut nodes: Vec<usize> = (i..=dw).collect();
        if projects {
            nodes.push(dw + 1);
        }
        let last = *nodes.last().unwrap();
        let chain = expands || projects;
        // A pointwise (alone, or the chain's projection) takes the residual add after it.
        if (!chain && is(i, true) || projects) && residual_add_next(last) {
            nodes.push(last + 1);
        }
        let last = *nodes.last().unwrap();
        let mut inputs = vec![node.inputs[0]];
        if graph.nodes[last].op == Op::Add && nodes.len() > 1 {
            let add = &graph.nodes[last];
            inputs.extend(add.inputs.iter().copied().find(|&v| v != last));
        } else {
            inputs = node.inputs.clone();
        }
        planned.push(Planned {
            nodes,
            inputs,
            output: last + 1,
        });
        i = last + 1;
    }
    planned
}

/// Assigns each step's output value a buffer index (indexed by value), reusing a buffer once
/// its value's last reading step has run. A step's output never shares a buffer with its own
/// inputs (the buffer is taken before the inputs are released).
pub(crate) fn assign_buffers(graph: &Graph, steps: &[Planned]) -> Vec<Option<usize>> {
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
            let steps = fuse(&model.graph, &model, RowFusion::DEFAULT);
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
    fn projections_fuse_with_their_residual_adds_and_depthwise_layers_run_row_by_row() {
        let cfg = &select("mobilenet_v2_1.0_224").unwrap()[0];
        let separate = Model::from_config(cfg, 1);
        let model = separate.with_bn(mobilebench_models::BnMode::Fused).unwrap();
        let graph = &model.graph;
        let kinds = |s: &Planned| -> Vec<&str> {
            s.nodes.iter().map(|&i| graph.nodes[i].op.kind()).collect()
        };
        let adds = graph.nodes.iter().filter(|n| n.op == Op::Add).count();
        assert_eq!(adds, 10, "MobileNetV2 has ten residual blocks");
        for rows in [
            RowFusion::DEFAULT,
            RowFusion::ALL,
            RowFusion {
                expand_min_bytes: usize::MAX,
                project_min_bytes: usize::MAX,
                max_weight_rereads: 0,
            },
        ] {
            let steps = fuse(graph, &model, rows);
            // Every residual add rides on its projection, whether that runs alone or at the
            // end of a row chain; every node is in exactly one step, in order.
            let with_add: Vec<_> = steps.iter().filter(|s| kinds(s).contains(&"add")).collect();
            assert_eq!(with_add.len(), adds, "{rows:?}");
            for s in with_add {
                let k = kinds(s);
                assert_eq!(
                    &k[k.len() - 2..],
                    ["pointwise_conv", "add"],
                    "{rows:?}: {k:?}"
                );
            }
            let order: Vec<usize> = steps.iter().flat_map(|s| s.nodes.iter().copied()).collect();
            assert_eq!(order, (0..graph.nodes.len()).collect::<Vec<_>>());
        }
        // By default: expansions from 512 KiB (V2's at 112×112×96, 56×56×144 (two) and
        // 28×28×192 (three, 602 KB)), projections from 256 KiB (every depthwise output from
        // 112×112×32 down to 14×14×384, 301 KB; not 28×28×144 → 14×14×144 nor 7×7).
        let chains = |rows| -> Vec<String> {
            fuse(graph, &model, rows)
                .iter()
                .filter(|s| kinds(s).contains(&"depthwise_conv") && s.nodes.len() > 1)
                .map(|s| kinds(s).join("+"))
                .collect()
        };
        let (dp, dpa) = (
            "depthwise_conv+pointwise_conv",
            "depthwise_conv+pointwise_conv+add",
        );
        let (pdp, pdpa) = (
            &format!("pointwise_conv+{dp}"),
            &format!("pointwise_conv+{dpa}"),
        );
        let pd = "pointwise_conv+depthwise_conv";
        assert_eq!(
            chains(RowFusion::DEFAULT),
            [dp, pdp, pdpa, pdp, pdpa, pdpa, pd, dpa, dpa, dpa, dp, dpa, dpa]
        );
        // From 0 bytes every depthwise is in a chain with its projection, all but the first
        // (fed by the stem) with their expansion too.
        let all = chains(RowFusion::ALL);
        assert_eq!(all.len(), 17);
        assert!(
            all[1..]
                .iter()
                .all(|c| c.starts_with("pointwise_conv+depthwise_conv+pointwise_conv")),
            "{all:?}"
        );
        // With separate batch norm the pass must run between the two: nothing fuses.
        assert!(fuse(&separate.graph, &separate, RowFusion::ALL)
            .iter()
            .all(|s| s.nodes.len() == 1));
    }

    #[test]
    fn wide_weights_read_once_per_row_keep_their_layers_apart() {
        // Each multi-node step as the (kind, h, c) of its nodes' outputs.
        let chains = |name: &str, fusion| -> Vec<Vec<(&'static str, usize, usize)>> {
            let cfg = &select(name).unwrap()[0];
            let model = Model::from_config(cfg, 1)
                .with_bn(mobilebench_models::BnMode::Fused)
                .unwrap();
            fuse(&model.graph, &model, fusion)
                .into_iter()
                .filter(|s| s.nodes.len() > 1)
                .map(|s| {
                    s.nodes
                        .iter()
                        .map(|&i| {
                            let n = &model.graph.nodes[i];
                            (n.op.kind(), n.output.h, n.output.c)
                        })
                        .collect()
                })
                .collect()
        };
        let unlimited = RowFusion {
            max_weight_rereads: usize::MAX,
            ..RowFusion::DEFAULT
        };
        // Conv-M's last stage, 8×8×1024 → 256: 1 MiB of weights read on each of 8 rows,
        // 32× its 256 KiB intermediate. Only the limit keeps these four out of chains.
        let conv_m = "mobilenet_v4_conv_medium_1.0_256";
        let wide_projections = |steps: &[Vec<(&str, usize, usize)>]| {
            steps
                .iter()
                .filter(|step| {
                    step.windows(2)
                        .any(|w| w[0] == ("depthwise_conv", 8, 1024) && w[1].0 == "pointwise_conv")
                })
                .count()
        };
        let (conv_m_unlimited, conv_m_default) = (
            chains(conv_m, unlimited),
            chains(conv_m, RowFusion::DEFAULT),
        );
        assert_eq!(wide_projections(&conv_m_unlimited), 4);
        assert_eq!(wide_projections(&conv_m_default), 0);
        // The limit splits only those, the depthwise from its projection (and residual
        // add): every other chain of Conv-M stays as it was.
        let split: Vec<_> = conv_m_unlimited
            .into_iter()
            .map(|step| match step[0] {
                ("depthwise_conv", 8, 1024) => step[1..].to_vec(),
                _ => step,
            })
            .collect();
        assert_eq!(conv_m_default, split);
        // No V1–V3 chain re-reads its weights that often: their plans do not change.
        for cfg in select("default").unwrap() {
            let name = cfg.to_string();
            assert_eq!(
                chains(&name, RowFusion::DEFAULT),
                chains(&name, unlimited),
                "{name}"
            );
        }
    }

    #[test]
    fn widening_pointwise_layers_are_the_next_expansion_not_a_projection() {
        let cfg = &select("mobilenet_v1_1.0_224").unwrap()[0];
        let model = Model::from_config(cfg, 1)
            .with_bn(mobilebench_models::BnMode::Fused)
            .unwrap();
        for s in fuse(&model.graph, &model, RowFusion::ALL) {
            let kinds: Vec<&str> = s
                .nodes
                .iter()
                .map(|&i| model.graph.nodes[i].op.kind())
                .collect();
            assert!(
                !kinds
                    .windows(2)
                    .any(|w| w == ["depthwise_conv", "pointwise_conv"]),
                "V1's pointwise layers widen: {kinds:?} should not be one step"
            );
        }
    }
}
