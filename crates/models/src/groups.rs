//! Layer groups: how a per-op profile is lined up against the model. Runtimes fuse
//! differently (conv with its BN and activation, conv with the residual add that follows, our
//! engine's expansion with its depthwise), so a runtime's event is attributed to a *group* of
//! consecutive IR nodes, never to a fraction of one. The base groups are one IR node each,
//! except that a residual `Add` joins the layer that produced its first input (every runtime
//! we drive fuses or may fuse it there); a profile whose event spans several base groups
//! merges them ([`merge_spans`]).

use crate::ir::{Graph, Op};

/// The op kinds a profile is summarised by, one row each in the report.
pub const KINDS: [&str; 10] = [
    "stem",
    "pointwise",
    "pointwise + add",
    "depthwise",
    "SE",
    "FC",
    "pooling",
    "hard-swish",
    "other",
    "unattributed",
];

/// Consecutive IR nodes `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerGroup {
    pub first: usize,
    pub last: usize,
}

impl LayerGroup {
    /// `block3_project` for one node, `block3_project..block3_add` for several.
    pub fn label(&self, graph: &Graph) -> String {
        let name = |i: usize| graph.nodes[i].name.as_str();
        if self.first == self.last {
            name(self.first).to_string()
        } else {
            format!("{}..{}", name(self.first), name(self.last))
        }
    }

    /// The IR node names the group covers, joined by `+`.
    pub fn node_names(&self, graph: &Graph) -> String {
        graph.nodes[self.first..=self.last]
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The group's op kind: one of [`KINDS`], or several joined by ` + ` for a merged group
    /// (`pointwise + depthwise`).
    pub fn kind(&self, graph: &Graph) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        let mut i = self.first;
        while i <= self.last {
            let followed_by_add = i < self.last && graph.nodes[i + 1].op == Op::Add;
            let kind = match node_kind(graph, i) {
                "pointwise" if followed_by_add => "pointwise + add",
                k => k,
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
            i += if followed_by_add { 2 } else { 1 };
        }
        kinds.join(" + ")
    }
}

/// The kind of one IR node.
fn node_kind(graph: &Graph, i: usize) -> &'static str {
    match &graph.nodes[i].op {
        Op::Conv2d(c) if c.is_depthwise() => "depthwise",
        Op::Conv2d(c) if c.is_pointwise() => "pointwise",
        Op::Conv2d(_) if i == 0 => "stem",
        Op::Conv2d(_) => "other",
        Op::SqueezeExcite(_) => "SE",
        Op::GlobalAvgPool => "pooling",
        Op::FullyConnected(_) => "FC",
        Op::Add => "other",
        Op::MultiQueryAttention(_) => "attention",
    }
}

impl Graph {
    /// The base layer groups, in execution order; every node is in exactly one.
    pub fn layer_groups(&self) -> Vec<LayerGroup> {
        let mut groups: Vec<LayerGroup> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let joins_previous = node.op == Op::Add
                && i > 0
                && node.inputs.first() == Some(&i)
                && !groups.is_empty();
            match groups.last_mut() {
                Some(g) if joins_previous => g.last = i,
                _ => groups.push(LayerGroup { first: i, last: i }),
            }
        }
        groups
    }

    /// The IR node a runtime's name refers to: the longest node name that is the whole of
    /// `name` or its start followed by a separator (`block1_se_pool_10` → `block1_se`,
    /// `conv0_4.pad` → `conv0`, `block10_dw_73` → `block10_dw`, never `block1_dw`).
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                name.strip_prefix(n.name.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with(['_', '.', ':', '/', '+', ' '])
                })
            })
            .max_by_key(|(_, n)| n.name.len())
            .map(|(i, _)| i)
    }
}

/// The base groups merged wherever one of `spans` (each an event's first and last IR node)
/// reaches across a group boundary: the smallest groups this profile can tell apart.
pub fn merge_spans(base: &[LayerGroup], spans: &[(usize, usize)]) -> Vec<LayerGroup> {
    let mut merged: Vec<LayerGroup> = Vec::new();
    for g in base {
        let joins = merged.last().is_some_and(|m| {
            spans
                .iter()
                .any(|&(a, b)| a <= m.last && b >= g.first && a.min(b) < g.first)
        });
        match merged.last_mut() {
            Some(m) if joins => m.last = g.last,
            _ => merged.push(*g),
        }
    }
    merged
}

/// The group holding node `i`.
pub fn group_of(groups: &[LayerGroup], i: usize) -> Option<LayerGroup> {
    groups.iter().copied().find(|g| g.first <= i && i <= g.last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    fn v3_small() -> Graph {
        "mobilenet_v3_small_1.0_224"
            .parse::<ModelConfig>()
            .unwrap()
            .graph()
    }

    #[test]
    fn every_node_is_in_exactly_one_group_and_adds_join_their_layer() {
        let g = v3_small();
        let groups = g.layer_groups();
        let mut next = 0;
        for group in &groups {
            assert_eq!(group.first, next, "groups are consecutive and disjoint");
            next = group.last + 1;
        }
        assert_eq!(next, g.nodes.len());
        let add = g.nodes.iter().position(|n| n.name == "block3_add").unwrap();
        let group = group_of(&groups, add).unwrap();
        assert_eq!(group.label(&g), "block3_project..block3_add");
        assert_eq!(group.node_names(&g), "block3_project+block3_add");
        assert_eq!(group.kind(&g), "pointwise + add");
        assert_eq!(groups[0].kind(&g), "stem");
        let kinds: Vec<String> = groups.iter().map(|x| x.kind(&g)).collect();
        for k in ["depthwise", "SE", "pointwise", "pooling", "FC"] {
            assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
        }
    }

    #[test]
    fn names_resolve_to_the_longest_node_at_a_separator() {
        let g = v3_small();
        let name = |s: &str| g.node_named(s).map(|i| g.nodes[i].name.clone());
        assert_eq!(name("block1_se_pool_10").as_deref(), Some("block1_se"));
        assert_eq!(name("conv0_4.pad").as_deref(), Some("conv0"));
        assert_eq!(name("block10_dw_73_nchwc").as_deref(), Some("block10_dw"));
        assert_eq!(name("block1_dw").as_deref(), Some("block1_dw"));
        assert_eq!(name("block1_dwx"), None, "no separator after the name");
        assert_eq!(name("to_nchw_1"), None);
        assert_eq!(name("ReorderOutput_token_3"), None);
    }

    #[test]
    fn a_span_across_groups_merges_them_and_the_kinds_join() {
        let g = v3_small();
        let base = g.layer_groups();
        let expand = g.node_named("block2_expand").unwrap();
        let dw = g.node_named("block2_dw").unwrap();
        let merged = merge_spans(&base, &[(expand, dw), (3, 3)]);
        assert_eq!(merged.len(), base.len() - 1);
        let group = group_of(&merged, dw).unwrap();
        assert_eq!(group.first, expand);
        assert_eq!(group.kind(&g), "pointwise + depthwise");
        assert_eq!(merge_spans(&base, &[]), base);
    }
}
