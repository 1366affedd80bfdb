//! Each backend's profiled time of one model on one device, split by op kind, on layer
//! groups every backend agrees on: where one runtime fused what another kept apart (our
//! engine's expansion with its depthwise), the groups of all are merged to the coarser one,
//! so a kind holds the same layers in every column.

use std::collections::HashMap;

use mobilebench_results::{OpRow, Run};

/// Kinds kept as the runtime's own, whatever group their event sits in: a hard-swish a
/// runtime runs apart, and time attributed to no layer.
const EVENT_KINDS: [&str; 2] = ["hard-swish", "unattributed"];

/// One (device, model)'s profiles, aligned.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    pub device: String,
    pub model: String,
    pub backends: Vec<String>,
    /// Op kinds in the report's order (`groups::KINDS`, merged kinds after).
    pub kinds: Vec<String>,
    /// `ms[k][b]`: the sum of backend `b`'s step medians of kind `k`.
    pub ms: Vec<Vec<f64>>,
    /// Per backend: the pair's coverage (sum of step medians over its unprofiled median).
    pub coverage: Vec<Option<f64>>,
}

impl Breakdown {
    pub fn total(&self, b: usize) -> f64 {
        self.ms.iter().map(|k| k[b]).sum()
    }

    /// The share of backend `b`'s profiled time attributed to a layer group.
    pub fn attributed_share(&self, b: usize) -> f64 {
        let total = self.total(b);
        let unattributed = self
            .kinds
            .iter()
            .position(|k| k == "unattributed")
            .map_or(0.0, |k| self.ms[k][b]);
        if total > 0.0 {
            1.0 - unattributed / total
        } else {
            0.0
        }
    }
}

/// Smallest-index representative, with path halving.
fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// The breakdown of every (device, model) whose rows carry layer groups (zoo models);
/// model files, profiled in the runtimes' own names only, have none.
pub fn breakdowns(runs: &[Run]) -> Vec<Breakdown> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for o in runs.iter().flat_map(|r| &r.ops) {
        if !o.op_kind.is_empty() && !keys.contains(&(o.device.as_str(), o.model.as_str())) {
            keys.push((o.device.as_str(), o.model.as_str()));
        }
    }
    keys.into_iter()
        .map(|(device, model)| {
            // The first run that profiled a backend on this model speaks for it.
            let mut rows: Vec<&OpRow> = Vec::new();
            let mut backends: Vec<String> = Vec::new();
            for run in runs {
                let mut here: Vec<&str> = Vec::new();
                for o in run
                    .ops
                    .iter()
                    .filter(|o| o.device == device && o.model == model)
                {
                    if backends.contains(&o.backend) && !here.contains(&o.backend.as_str()) {
                        continue;
                    }
                    if !here.contains(&o.backend.as_str()) {
                        here.push(&o.backend);
                        backends.push(o.backend.clone());
                    }
                    rows.push(o);
                }
            }
            breakdown(device, model, backends, &rows)
        })
        .collect()
}

fn breakdown(device: &str, model: &str, backends: Vec<String>, rows: &[&OpRow]) -> Breakdown {
    // Union of every backend's groups: IR nodes that any backend keeps together stay together.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for r in rows {
        for n in r.ir_nodes.split('+').filter(|n| !n.is_empty()) {
            let next = index.len();
            index.entry(n).or_insert(next);
        }
    }
    let mut parent: Vec<usize> = (0..index.len()).collect();
    for r in rows {
        let nodes: Vec<usize> = r
            .ir_nodes
            .split('+')
            .filter_map(|n| index.get(n).copied())
            .collect();
        for pair in nodes.windows(2) {
            let (a, b) = (find(&mut parent, pair[0]), find(&mut parent, pair[1]));
            parent[a.max(b)] = a.min(b);
        }
    }
    // A merged group's kind is that of the widest group inside it (the one a backend
    // computed on all of it).
    let mut kind_of_root: HashMap<usize, (usize, &str)> = HashMap::new();
    for r in rows
        .iter()
        .filter(|r| !EVENT_KINDS.contains(&r.op_kind.as_str()))
    {
        let Some(first) = r.ir_nodes.split('+').next().and_then(|n| index.get(n)) else {
            continue;
        };
        let root = find(&mut parent, *first);
        let width = r.ir_nodes.split('+').count();
        let entry = kind_of_root.entry(root).or_insert((0, ""));
        if width > entry.0 {
            *entry = (width, &r.op_kind);
        }
    }
    let mut kinds: Vec<String> = Vec::new();
    let mut ms: Vec<Vec<f64>> = Vec::new();
    let mut coverage = vec![None; backends.len()];
    for r in rows {
        let b = backends
            .iter()
            .position(|x| *x == r.backend)
            .expect("listed");
        coverage[b] = coverage[b].or(r.coverage);
        let kind = if EVENT_KINDS.contains(&r.op_kind.as_str()) {
            r.op_kind.as_str()
        } else {
            r.ir_nodes
                .split('+')
                .next()
                .and_then(|n| index.get(n))
                .map(|&i| find(&mut parent, i))
                .and_then(|root| kind_of_root.get(&root))
                .map_or(r.op_kind.as_str(), |k| k.1)
        };
        let k = match kinds.iter().position(|x| x == kind) {
            Some(k) => k,
            None => {
                kinds.push(kind.to_string());
                ms.push(vec![0.0; backends.len()]);
                kinds.len() - 1
            }
        };
        ms[k][b] += r.median_ms;
    }
    // The report's order: the standard kinds first, merged ones after, unattributed last.
    let rank = |k: &str| {
        let standard = mobilebench_models::groups::KINDS;
        match standard.iter().position(|s| *s == k) {
            Some(i) if k == "unattributed" => i + 100,
            Some(i) => i,
            None => standard.len(),
        }
    };
    let mut order: Vec<usize> = (0..kinds.len()).collect();
    order.sort_by_key(|&k| (rank(&kinds[k]), k));
    Breakdown {
        device: device.into(),
        model: model.into(),
        kinds: order.iter().map(|&k| kinds[k].clone()).collect(),
        ms: order.iter().map(|&k| ms[k].clone()).collect(),
        backends,
        coverage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(backend: &str, group: &str, nodes: &str, kind: &str, ms: f64) -> OpRow {
        OpRow {
            device: "local".into(),
            model: "m".into(),
            backend: backend.into(),
            threads: 1,
            round: 1,
            step: 0,
            name: format!("{backend} {nodes}"),
            op: "op".into(),
            layer_group: group.into(),
            ir_nodes: nodes.into(),
            op_kind: kind.into(),
            matched_by: "event name".into(),
            input_shape: String::new(),
            output_shape: String::new(),
            macs: 0,
            median_ms: ms,
            gflops: None,
            core_peak_gflops: None,
            isa: String::new(),
            coverage: Some(0.95),
        }
    }

    fn run(ops: Vec<OpRow>) -> Run {
        Run {
            dir: "r".into(),
            summary: vec![],
            samples: Default::default(),
            skipped_rows: vec![],
            ops,
        }
    }

    #[test]
    fn groups_one_backend_fused_are_merged_for_all_and_event_kinds_stay_apart() {
        let ops = vec![
            row("native", "e..d", "e+d", "pointwise + depthwise", 1.0),
            row("native", "p", "p", "pointwise", 0.5),
            row("ort", "", "", "unattributed", 0.1),
            row("ort", "e", "e", "pointwise", 0.4),
            row("ort", "e", "e", "hard-swish", 0.05),
            row("ort", "d", "d", "depthwise", 0.7),
            row("ort", "p", "p", "pointwise", 0.3),
        ];
        let b = &breakdowns(&[run(ops)])[0];
        assert_eq!(b.backends, ["native", "ort"]);
        assert_eq!(
            b.kinds,
            [
                "pointwise",
                "hard-swish",
                "pointwise + depthwise",
                "unattributed"
            ]
        );
        let at = |k: &str, be: usize| b.ms[b.kinds.iter().position(|x| x == k).unwrap()][be];
        assert!((at("pointwise + depthwise", 1) - 1.1).abs() < 1e-9, "{b:?}");
        assert_eq!(at("pointwise", 1), 0.3);
        assert_eq!(at("hard-swish", 1), 0.05);
        assert!((b.total(1) - 1.55).abs() < 1e-9);
        assert!((b.attributed_share(1) - (1.0 - 0.1 / 1.55)).abs() < 1e-9);
        assert_eq!(b.coverage, [Some(0.95), Some(0.95)]);
    }

    #[test]
    fn model_files_have_no_breakdown() {
        assert!(breakdowns(&[run(vec![row("ort", "", "", "", 1.0)])]).is_empty());
    }
}
