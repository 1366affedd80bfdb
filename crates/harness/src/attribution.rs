//! Lines a backend's per-op profile up with the model: every event is attributed to a layer
//! group of IR nodes (`mobilebench_models::groups`), or reported unattributed.
//!
//! Rules, in order:
//! 1. An event the runtime ties to a name in the model (`OpTiming::node`: an ONNX node, a
//!    TFLite op's output tensor, IR nodes joined by `+`) goes to the IR node that name
//!    starts with (the longest such node name, at a separator). An event naming several
//!    nodes (our engine's fused steps) spans them.
//! 2. The profile's groups are the base groups merged wherever one event spans several: the
//!    smallest groups this runtime's events can tell apart.
//! 3. An event tied to no node (ONNX Runtime's layout reorders) that lies between attributed
//!    events goes to the group of the event before it, "by position".
//! 4. Events before the first or after the last attributed one (the export's input and
//!    output layout conversions) are unattributed: their time is reported as such, never
//!    spread over layers.

use mobilebench_backend::OpTiming;
use mobilebench_models::groups::{group_of, merge_spans};
use mobilebench_models::{Graph, LayerGroup};

/// Where one event's time goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub group: Option<LayerGroup>,
    /// One of `groups::KINDS` (or several joined by ` + ` for a merged group).
    pub kind: String,
    /// How the event was matched: the runtime's tie (`event name`, `op index`, ...) and,
    /// for an untied event, its position.
    pub matched_by: String,
}

/// The first and last IR node `step` names, if it names any.
fn span(graph: &Graph, step: &OpTiming) -> Option<(usize, usize)> {
    let nodes: Vec<usize> = step
        .node
        .split('+')
        .filter_map(|part| graph.node_named(part))
        .collect();
    Some((*nodes.iter().min()?, *nodes.iter().max()?))
}

/// Whether the runtime ran a hard-swish on its own (the IR folds it into the layer before).
fn is_hard_swish(op: &str) -> bool {
    let op = op.to_ascii_lowercase().replace('_', "");
    !op.contains('+') && (op.ends_with("hardswish") || op.contains("hardswish ("))
}

/// One attribution per step of `steps`, in order (rules in the module docs).
pub fn attribute(graph: &Graph, steps: &[OpTiming]) -> Vec<Attribution> {
    let spans: Vec<Option<(usize, usize)>> = steps.iter().map(|s| span(graph, s)).collect();
    let tied: Vec<(usize, usize)> = spans.iter().flatten().copied().collect();
    let groups = merge_spans(&graph.layer_groups(), &tied);
    let first_tied = spans.iter().position(Option::is_some);
    let last_tied = spans.iter().rposition(Option::is_some);
    let mut previous: Option<LayerGroup> = None;
    steps
        .iter()
        .zip(&spans)
        .enumerate()
        .map(|(i, (step, span))| {
            let inside = first_tied.is_some_and(|f| i > f) && last_tied.is_some_and(|l| i < l);
            let (group, matched_by) = match span {
                Some((first, _)) => (group_of(&groups, *first), step.matched_by.clone()),
                None if inside => (
                    previous,
                    format!(
                        "position (after a step of {})",
                        previous.map_or(String::new(), |g| g.label(graph))
                    ),
                ),
                None => (
                    None,
                    "none (before or after every layer: the model's input or output)".into(),
                ),
            };
            if group.is_some() {
                previous = group;
            }
            let kind = match group {
                None => "unattributed".to_string(),
                Some(_) if is_hard_swish(&step.op) => "hard-swish".to_string(),
                Some(g) => g.kind(graph),
            };
            Attribution {
                group,
                kind,
                matched_by,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilebench_models::ModelConfig;

    fn step(name: &str, op: &str, node: &str, how: &str) -> OpTiming {
        OpTiming::from_runs(
            name.into(),
            op.into(),
            String::new(),
            String::new(),
            0,
            vec![1],
        )
        .tied_to(node.into(), how)
    }

    fn graph() -> Graph {
        "mobilenet_v3_small_1.0_224"
            .parse::<ModelConfig>()
            .unwrap()
            .graph()
    }

    #[test]
    fn onnx_runtime_names_reorders_and_the_input_transpose() {
        let g = graph();
        let named = |n: &str, op: &str| step(n, op, n, "event name");
        let steps = [
            named("to_nchw_1", "Transpose"),
            named("conv0_4_nchwc", "Conv"),
            named("block1_dw_act_9_nchwc", "Conv"),
            named("block1_se_pool_10_nchwc", "GlobalAveragePool"),
            named("ReorderOutput_token_183", "ReorderOutput"),
            named("block1_se_scale_19", "Mul"),
            named("block3_project_44_nchwc", "Conv"),
            named("block3_add_45", "Add"),
            named("conv0_act_5", "HardSwish"),
            named("to_nhwc_9", "Transpose"),
        ];
        let a = attribute(&g, &steps);
        let labels: Vec<String> = a
            .iter()
            .map(|x| x.group.map_or("-".into(), |gr| gr.label(&g)))
            .collect();
        assert_eq!(labels[0], "-", "the input's transpose is no layer's");
        assert_eq!(a[0].kind, "unattributed");
        assert_eq!(labels[1], "conv0");
        assert_eq!(a[1].kind, "stem");
        assert_eq!(labels[3], "block1_se");
        assert_eq!(
            labels[4], "block1_se",
            "a reorder goes with the step before"
        );
        assert!(a[4].matched_by.starts_with("position"), "{:?}", a[4]);
        assert_eq!(labels[6], "block3_project..block3_add");
        assert_eq!(labels[7], labels[6], "the add is in its layer's group");
        assert_eq!(a[7].kind, "pointwise + add");
        assert_eq!(a[8].kind, "hard-swish");
        assert_eq!(labels[9], "-");
    }

    #[test]
    fn a_fused_step_merges_its_groups_for_every_step_of_the_profile() {
        let g = graph();
        let steps = [
            step(
                "block2_expand+block2_dw",
                "pointwise_conv+depthwise_conv",
                "block2_expand+block2_dw",
                "IR node",
            ),
            step(
                "block2_project",
                "pointwise_conv",
                "block2_project",
                "IR node",
            ),
        ];
        let a = attribute(&g, &steps);
        let group = a[0].group.unwrap();
        assert_eq!(group.label(&g), "block2_expand..block2_dw");
        assert_eq!(a[0].kind, "pointwise + depthwise");
        assert_eq!(a[1].group.unwrap().label(&g), "block2_project");
    }

    #[test]
    fn a_profile_tied_to_nothing_is_all_unattributed() {
        let g = graph();
        let steps = [step(
            "XNNPACK operator 0",
            "xnnpack: Convolution",
            "",
            "nothing fits",
        )];
        let a = attribute(&g, &steps);
        assert_eq!(a[0].group, None);
        assert_eq!(a[0].kind, "unattributed");
    }
}
