//! `--profile-ops` for LiteRT: its own profiler, on a compiled model of its own (profiling is
//! switched on when a model is compiled, `enable_profiling` in the runtime options, and
//! changes the XNNPACK runtime it builds). With XNNPACK each delegated operator is an event
//! (`Convolution (NHWC, F32) IGEMM`, numbered inside its partition); with the builtin kernels,
//! and for ops XNNPACK leaves to them, each TFLite op is one (`CONV_2D`, numbered by op index).
//! A run's events lie between its `LiteRT::Run[buffer registration]` marker and the next.

use std::ffi::{c_void, CStr};

use mobilebench_backend::{OpTiming, Session};

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
        op_medians(&events)
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

/// The per-op medians of the profiled runs in `events`, in execution order. Every run must
/// hold the same ops in the same order; `Err` says how they differ.
pub fn op_medians(events: &[Event]) -> Result<Vec<OpTiming>, String> {
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
    Ok((0..first.len())
        .map(|i| {
            let e = first[i];
            let (what, kind) = if e.kind == ffi::EVENT_DELEGATE_PROFILED_OPERATOR {
                ("XNNPACK operator", "xnnpack")
            } else {
                ("TFLite op", "tflite")
            };
            OpTiming::from_runs(
                format!("{what} {}", e.index),
                format!("{kind}: {}", e.tag),
                String::new(),
                String::new(),
                0,
                runs.iter().map(|run| run[i].elapsed_us * 1000).collect(),
            )
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
        let ops = op_medians(&events).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].name, "XNNPACK operator 0");
        assert_eq!(ops[0].op, "xnnpack: Convolution (NHWC, F32) IGEMM");
        assert_eq!(ops[0].median_ns, 60_000);
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
        assert!(op_medians(&[run(50), other].concat())
            .unwrap_err()
            .contains("other operators"));
        assert!(op_medians(&[]).unwrap_err().contains("no run"));
    }
}
