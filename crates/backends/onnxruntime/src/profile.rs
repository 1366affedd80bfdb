//! `--profile-ops` for ONNX Runtime: its own profiler, on a session of its own (a session's
//! profile covers its whole life and cannot be restarted, and profiling costs every node two
//! fences and a lock), read back from the Chrome-trace JSON ORT writes. Each executed kernel
//! leaves a `Node` event `<node>_kernel_time` with its duration (µs) and `op_name`; each run
//! a `Session` event `model_run` whose interval holds its kernels. Names are those of ORT's
//! optimised graph (`FusedConv` carries the Conv's name; the NCHWc pass names nodes after
//! their output tensors): the runtime's own, not yet matched to the model's layers.

use mobilebench_backend::OpTiming;
use serde_json::Value;

/// One kernel of the optimised graph with its durations, run by run.
struct Kernel {
    name: String,
    op: String,
    input_shape: String,
    output_shape: String,
    us: Vec<u64>,
}

/// `[{"float":[1,3,224,224]}, …]` (ORT's `input_type_shape`) → `1x3x224x224`, the first tensor.
fn first_shape(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_object)
        .and_then(|o| o.values().next())
        .and_then(Value::as_array)
        .map(|dims| {
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        })
        .unwrap_or_default()
}

/// The per-kernel medians of the runs in `trace` after the first `skip` (warm-ups), in the
/// order the kernels first ran. `Err` says what the trace lacks.
pub fn kernel_medians(trace: &str, skip: usize) -> Result<Vec<OpTiming>, String> {
    let events: Vec<Value> = serde_json::from_str(trace)
        .map_err(|e| format!("the profile is not a JSON array of events: {e}"))?;
    let num = |e: &Value, k: &str| e.get(k).and_then(Value::as_u64);
    let runs: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["cat"] == "Session" && e["name"] == "model_run")
        .filter_map(|e| Some((num(e, "ts")?, num(e, "ts")? + num(e, "dur")?)))
        .skip(skip)
        .collect();
    if runs.is_empty() {
        return Err(format!(
            "the profile holds no run after the {skip} warm-up(s)"
        ));
    }
    let mut kernels: Vec<Kernel> = Vec::new();
    for e in events.iter().filter(|e| e["cat"] == "Node") {
        let Some(node) = e["name"]
            .as_str()
            .and_then(|n| n.strip_suffix("_kernel_time"))
        else {
            continue;
        };
        let (Some(ts), Some(dur)) = (num(e, "ts"), num(e, "dur")) else {
            continue;
        };
        if !runs.iter().any(|&(start, end)| start <= ts && ts <= end) {
            continue; // a warm-up's kernel
        }
        let i = match kernels.iter().position(|k| k.name == node) {
            Some(i) => i,
            None => {
                let args = &e["args"];
                kernels.push(Kernel {
                    name: node.to_string(),
                    op: args["op_name"].as_str().unwrap_or_default().to_string(),
                    input_shape: first_shape(args.get("input_type_shape")),
                    output_shape: first_shape(args.get("output_type_shape")),
                    us: Vec::new(),
                });
                kernels.len() - 1
            }
        };
        kernels[i].us.push(dur);
    }
    if kernels.is_empty() {
        return Err("the profile holds no kernel events".into());
    }
    Ok(kernels
        .into_iter()
        .map(|k| {
            let ns = k.us.iter().map(|us| us * 1000).collect();
            OpTiming::from_runs(k.name, k.op, k.input_shape, k.output_shape, 0, ns)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace in the shape ORT's profiler documents (Chrome trace events; per kernel a
    /// `_kernel_time` Node event with `op_name` and the shapes; per run a `model_run`), two
    /// runs: the first is a warm-up.
    const TRACE: &str = r#"[
      {"cat":"Session","pid":1,"tid":1,"dur":900,"ts":10,"ph":"X","name":"session_initialization","args":{}},
      {"cat":"Session","pid":1,"tid":1,"dur":100,"ts":1000,"ph":"X","name":"model_run","args":{}},
      {"cat":"Node","pid":1,"tid":1,"dur":1,"ts":1001,"ph":"X","name":"conv0_fence_before","args":{"op_name":"FusedConv"}},
      {"cat":"Node","pid":1,"tid":1,"dur":70,"ts":1002,"ph":"X","name":"conv0_kernel_time","args":{"op_name":"FusedConv","provider":"CPUExecutionProvider","input_type_shape":[{"float":[1,3,224,224]},{"float":[16,3,3,3]}],"output_type_shape":[{"float":[1,16,112,112]}]}},
      {"cat":"Node","pid":1,"tid":1,"dur":20,"ts":1075,"ph":"X","name":"pool_kernel_time","args":{"op_name":"GlobalAveragePool","provider":"CPUExecutionProvider"}},
      {"cat":"Session","pid":1,"tid":1,"dur":100,"ts":2000,"ph":"X","name":"model_run","args":{}},
      {"cat":"Node","pid":1,"tid":1,"dur":50,"ts":2002,"ph":"X","name":"conv0_kernel_time","args":{"op_name":"FusedConv","input_type_shape":[{"float":[1,3,224,224]}],"output_type_shape":[{"float":[1,16,112,112]}]}},
      {"cat":"Node","pid":1,"tid":1,"dur":10,"ts":2055,"ph":"X","name":"pool_kernel_time","args":{"op_name":"GlobalAveragePool"}}
    ]"#;

    #[test]
    fn kernels_of_the_runs_after_the_warm_ups_in_execution_order() {
        let ops = kernel_medians(TRACE, 1).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].name, "conv0");
        assert_eq!(ops[0].op, "FusedConv");
        assert_eq!(ops[0].input_shape, "1x3x224x224");
        assert_eq!(ops[0].output_shape, "1x16x112x112");
        assert_eq!(ops[0].median_ns, 50_000, "the warm-up's 70 µs is left out");
        assert_eq!((ops[1].name.as_str(), ops[1].median_ns), ("pool", 10_000));
    }

    #[test]
    fn a_trace_without_runs_or_kernels_says_so() {
        assert!(kernel_medians(TRACE, 2).unwrap_err().contains("no run"));
        assert!(kernel_medians("{}", 0)
            .unwrap_err()
            .contains("not a JSON array"));
    }
}
