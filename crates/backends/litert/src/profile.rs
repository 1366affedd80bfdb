//! `--profile-ops` for LiteRT: its own profiler, on a compiled model of its own (profiling is
//! switched on when a model is compiled, `enable_profiling` in the runtime options, and
//! changes the XNNPACK runtime it builds). With XNNPACK each delegated operator is an event
//! (`Convolution (NHWC, F32) IGEMM`, numbered inside its partition); with the builtin kernels,
//! and for ops XNNPACK leaves to them, each TFLite op is one (`CONV_2D`, numbered by op index).
//! A run's events lie between its `LiteRT::Run[buffer registration]` marker and the next.

use std::ffi::{c_void, CStr};

use mobilebench_backend::{OpTiming, Session};
use mobilebench_export::tflite_read::TfliteOp;

use mobilebench_runtimes::LITERT;

use crate::{check, ffi, LiteRtSession};

/// Runs of the profiled twin before its profiler starts.
const WARMUP: usize = 2;

impl LiteRtSession {
    /// A twin of this session compiled with the profiler on, fed this session's input, two
    /// warm-ups, then `runs` profiled runs; the median of every operator.
    pub(crate) fn time_ops(&mut self, runs: u32) -> Result<Vec<OpTiming>, String> {
        if self.accelerator.is_gpu() {
            return Err(
                "LiteRT's GPU accelerator records no per-operator events through the C API".into(),
            );
        }
        let mut input = vec![0f32; self.input_len];
        let api = self.api;
        // SAFETY: the input buffer is live host memory of input_len floats.
        unsafe {
            let mut p: *mut c_void = std::ptr::null_mut();
            check(
                (api.lock_buffer)(self.input, &mut p, ffi::LOCK_READ),
                "locking the input",
            )?;
            std::ptr::copy_nonoverlapping(p as *const f32, input.as_mut_ptr(), input.len());
            check((api.unlock_buffer)(self.input), "unlocking the input")?;
        }
        let profiler_api = ffi::ProfilerApi::load(&self.installed.main_library(&LITERT))
            .map_err(|e| format!("LiteRT's profiler: {e}"))?;
        let mut twin = LiteRtSession::new(
            api,
            &self.path.clone(),
            self.accelerator,
            &self.installed.clone(),
            self.threads,
            true,
        )?;
        twin.set_input(&input).map_err(|e| e.to_string())?;
        for _ in 0..WARMUP {
            twin.infer().map_err(|e| e.to_string())?;
        }
        // SAFETY: the profiler belongs to the twin's compiled model, live until it drops;
        // the event array has room for the count LiteRT reported, and each tag is copied
        // before the profiler is touched again.
        let events = unsafe {
            let mut profiler: ffi::Handle = std::ptr::null_mut();
            check(
                (profiler_api.compiled_model_profiler)(twin.compiled, &mut profiler),
                "getting the profiler",
            )?;
            if profiler.is_null() {
                return Err("the model was compiled without a profiler".into());
            }
            check(
                (profiler_api.start_profiler)(profiler),
                "starting the profiler",
            )?;
            for _ in 0..runs {
                twin.infer().map_err(|e| e.to_string())?;
            }
            check(
                (profiler_api.stop_profiler)(profiler),
                "stopping the profiler",
            )?;
            let mut n = 0;
            check(
                (profiler_api.num_profiler_events)(profiler, &mut n),
                "counting profiler events",
            )?;
            let mut raw = vec![ffi::ProfiledEvent::zeroed(); n.max(0) as usize];
            check(
                (profiler_api.profiler_events)(profiler, n, raw.as_mut_ptr()),
                "reading profiler events",
            )?;
            raw.iter()
                .map(|e| Event {
                    tag: if e.tag.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(e.tag).to_string_lossy().into_owned()
                    },
                    kind: e.event_type,
                    elapsed_us: e.elapsed_us,
                    index: e.metadata1,
                })
                .collect::<Vec<_>>()
        };
        drop(twin);
        // Our exporter names every op's output tensor after its IR node; a foreign file's
        // names are its own.
        let ops = std::fs::read(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| mobilebench_export::tflite_read::operators(&bytes))
            .map_err(|e| format!("reading the operators of {}: {e}", self.path.display()))?;
        op_medians(&events, &ops)
    }
}

/// One profiler event, copied out of LiteRT's buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub tag: String,
    pub kind: u32,
    pub elapsed_us: u64,
    pub index: u64,
}

const RUN_MARKER: &str = "LiteRT::Run[buffer registration]";

/// XNNPACK operators that follow a TFLite op without an op of their own (the clamp of a
/// fused activation) are looked for this many ops ahead, no further.
const WINDOW: usize = 4;

/// Whether XNNPACK's operator `tag` can be the one it built for a TFLite op `code`.
fn xnnpack_runs(tag: &str, code: &str) -> bool {
    let tag = tag.to_ascii_lowercase();
    let codes: &[&str] = match () {
        _ if tag.contains("dwconv") => &["DEPTHWISE_CONV_2D"],
        _ if tag.contains("deconvolution") => &["TRANSPOSE_CONV"],
        _ if tag.contains("convolution") => &["CONV_2D", "DEPTHWISE_CONV_2D"],
        _ if tag.contains("fully connected") => &["FULLY_CONNECTED", "CONV_2D"],
        _ if tag.contains("batch matrix multiply") => &["BATCH_MATMUL"],
        _ if tag.contains("global average pooling") || tag.contains("mean") => {
            &["MEAN", "AVERAGE_POOL_2D", "SUM"]
        }
        _ if tag.contains("average pooling") => &["AVERAGE_POOL_2D"],
        _ if tag.contains("max pooling") => &["MAX_POOL_2D"],
        _ if tag.contains("add") => &["ADD"],
        _ if tag.contains("multiply") => &["MUL"],
        _ if tag.contains("subtract") => &["SUB"],
        _ if tag.contains("hardswish") => &["HARD_SWISH"],
        _ if tag.contains("sigmoid") => &["LOGISTIC"],
        _ if tag.contains("softmax") => &["SOFTMAX"],
        _ if tag.contains("clamp") => &["RELU", "RELU6", "RELU_N1_TO_1", "MINIMUM", "MAXIMUM"],
        _ if tag.contains("transpose") => &["TRANSPOSE"],
        _ if tag.contains("pad") => &["PAD", "PADV2"],
        _ if tag.contains("convert") => &["QUANTIZE", "DEQUANTIZE"],
        _ if tag.contains("copy") || tag.contains("reshape") => {
            &["RESHAPE", "SQUEEZE", "EXPAND_DIMS"]
        }
        _ => &[],
    };
    codes.contains(&code)
}

/// Ties each event of one run to a TFLite op: a TFLite event by its op index; an XNNPACK
/// operator (numbered inside its partition, so not by index) by position and kind — the
/// next op within [`WINDOW`] that XNNPACK builds such an operator for, or, for an operator
/// with no op of its own, the op before it. `(op, how)` per event; `None` when nothing fits.
fn tie_to_ops(run: &[&Event], ops: &[TfliteOp]) -> Vec<Option<(usize, &'static str)>> {
    let mut next = 0;
    let mut last: Option<usize> = None;
    run.iter()
        .map(|e| {
            let tied = if e.kind == ffi::EVENT_OPERATOR {
                let i = e.index as usize;
                (i < ops.len()).then_some((i, "op index"))
            } else {
                let end = (next + WINDOW).min(ops.len());
                (next..end)
                    .find(|&j| xnnpack_runs(&e.tag, &ops[j].code))
                    .map(|j| (j, "position and op kind"))
                    .or(last.map(|l| (l, "position (after the op it follows)")))
            };
            if let Some((i, how)) = tied {
                if how != "position (after the op it follows)" {
                    next = i + 1;
                    last = Some(i);
                }
            }
            tied
        })
        .collect()
}

/// The per-op medians of the profiled runs in `events`, in execution order, each tied to an
/// op of `ops` (the file's operators) where one fits. Every run must hold the same events in
/// the same order; `Err` says how they differ.
pub fn op_medians(events: &[Event], ops: &[TfliteOp]) -> Result<Vec<OpTiming>, String> {
    let mut runs: Vec<Vec<&Event>> = Vec::new();
    for e in events {
        if e.kind == ffi::EVENT_DEFAULT && e.tag == RUN_MARKER {
            runs.push(Vec::new());
        } else if e.kind == ffi::EVENT_OPERATOR || e.kind == ffi::EVENT_DELEGATE_PROFILED_OPERATOR {
            if let Some(run) = runs.last_mut() {
                run.push(e);
            }
        }
    }
    let Some(first) = runs.first() else {
        return Err("the profiler recorded no run".into());
    };
    if first.is_empty() {
        return Err("the profiler recorded no operator".into());
    }
    for (r, run) in runs.iter().enumerate() {
        let same = run.len() == first.len()
            && run
                .iter()
                .zip(first)
                .all(|(a, b)| a.tag == b.tag && a.index == b.index);
        if !same {
            return Err(format!(
                "run {} recorded other operators than run 1 ({} vs {})",
                r + 1,
                run.len(),
                first.len()
            ));
        }
    }
    let tied = tie_to_ops(first, ops);
    Ok((0..first.len())
        .map(|i| {
            let e = first[i];
            let (what, kind) = if e.kind == ffi::EVENT_DELEGATE_PROFILED_OPERATOR {
                ("XNNPACK operator", "xnnpack")
            } else {
                ("TFLite op", "tflite")
            };
            let timing = OpTiming::from_runs(
                format!("{what} {}", e.index),
                format!("{kind}: {}", e.tag),
                String::new(),
                String::new(),
                0,
                runs.iter().map(|run| run[i].elapsed_us * 1000).collect(),
            );
            match tied[i] {
                Some((op, how)) => timing.tied_to(ops[op].output.clone(), how),
                None => timing.tied_to(String::new(), "nothing fits"),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(tag: &str, kind: u32, us: u64, index: u64) -> Event {
        Event {
            tag: tag.into(),
            kind,
            elapsed_us: us,
            index,
        }
    }

    fn op(code: &str, output: &str) -> TfliteOp {
        TfliteOp {
            code: code.into(),
            output: output.into(),
        }
    }

    fn file_ops() -> Vec<TfliteOp> {
        vec![
            op("CONV_2D", "conv0_out"),
            op("HARD_SWISH", "conv0_act"),
            op("DEPTHWISE_CONV_2D", "block1_dw_out"),
        ]
    }

    #[test]
    fn xnnpack_operators_are_tied_by_position_and_kind_and_extra_ones_follow_their_op() {
        // The squeeze-excite of our exports as TFLite ops, and what XNNPACK made of it: its
        // hard sigmoid's fused RELU6 becomes an operator of its own (Clamp).
        let ops = vec![
            op("DEPTHWISE_CONV_2D", "b_dw_out"),
            op("MEAN", "b_se_pool"),
            op("CONV_2D", "b_se_reduce_out"),
            op("CONV_2D", "b_se_expand_out"),
            op("ADD", "b_se_relu6"),
            op("MUL", "b_se_gate"),
            op("MUL", "b_se_out"),
            op("CONV_2D", "b_project_out"),
        ];
        let tags = [
            "Convolution (NHWC, F32) DWConv",
            "Mean (ND) Reduce2",
            "Fully Connected (NC, F32) GEMM",
            "Fully Connected (NC, F32) GEMM",
            "Add (ND)",
            "Clamp (NC)",
            "Multiply (ND)",
            "Multiply (ND)",
            "Fully Connected (NC, F32) GEMM",
        ];
        let events: Vec<Event> = tags.iter().map(|t| ev(t, 8, 1, 0)).collect();
        let run: Vec<&Event> = events.iter().collect();
        let tied = tie_to_ops(&run, &ops);
        let outputs: Vec<&str> = tied
            .iter()
            .map(|t| ops[t.unwrap().0].output.as_str())
            .collect();
        assert_eq!(
            outputs,
            [
                "b_dw_out",
                "b_se_pool",
                "b_se_reduce_out",
                "b_se_expand_out",
                "b_se_relu6",
                "b_se_relu6",
                "b_se_gate",
                "b_se_out",
                "b_project_out"
            ]
        );
        assert_eq!(tied[5].unwrap().1, "position (after the op it follows)");
        assert_eq!(tied[6].unwrap().1, "position and op kind");
        // An operator with nothing before it and no op of its kind ahead fits nothing.
        let lone = ev("Softmax (NC)", 8, 1, 0);
        assert_eq!(tie_to_ops(&[&lone], &ops), vec![None]);
    }

    fn run(conv_us: u64) -> Vec<Event> {
        vec![
            ev(RUN_MARKER, ffi::EVENT_DEFAULT, 3, u64::MAX),
            ev("Invoke", ffi::EVENT_DEFAULT, 90, u64::MAX),
            ev("Convolution (NHWC, F32) IGEMM", 8, conv_us, 0),
            ev("HARD_SWISH", 2, 4, 1),
            ev("Convolution (NHWC, F32) DWConv", 8, 20, 0),
            ev("LiteRT::Run[Buffer sync]", ffi::EVENT_DEFAULT, 1, u64::MAX),
        ]
    }

    #[test]
    fn operators_of_every_run_by_position_with_their_medians() {
        let events: Vec<Event> = [run(50), run(70), run(60)].concat();
        let ops = op_medians(&events, &file_ops()).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].name, "XNNPACK operator 0");
        assert_eq!(ops[0].op, "xnnpack: Convolution (NHWC, F32) IGEMM");
        assert_eq!(ops[0].median_ns, 60_000);
        assert_eq!(ops[0].node, "conv0_out");
        assert_eq!(ops[1].node, "conv0_act");
        assert_eq!(ops[1].matched_by, "op index");
        assert_eq!(ops[2].node, "block1_dw_out");
        assert_eq!(ops[2].matched_by, "position and op kind");
        assert_eq!(ops[1].op, "tflite: HARD_SWISH");
        assert_eq!(
            ops[2].name, "XNNPACK operator 0",
            "numbered inside its partition"
        );
    }

    #[test]
    fn runs_that_disagree_or_record_nothing_are_refused() {
        let mut other = run(50);
        other[3].tag = "MUL".into();
        assert!(op_medians(&[run(50), other].concat(), &file_ops())
            .unwrap_err()
            .contains("other operators"));
        assert!(op_medians(&[], &[]).unwrap_err().contains("no run"));
    }
}
