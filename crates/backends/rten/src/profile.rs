//! `--profile-ops` for rten: its only per-node view is the `verbose` run option, which
//! *prints* each step (`#3 Conv (block1_dw_8)`, its inputs and outputs, `  time: 0.123ms`)
//! with `println!`. Standard output is the worker's protocol channel, so for the profiled
//! runs file descriptor 1 is pointed at a temporary file and put back after, and the file
//! is parsed. A step's time runs from the end of the previous step (after its printing) to
//! the end of the op, in whole µs.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;

use mobilebench_backend::OpTiming;

/// Standard output redirected into a temporary file until [`Capture::finish`] (or drop,
/// which restores it on any error path).
struct Capture {
    file: File,
    saved: libc::c_int,
}

impl Capture {
    fn start() -> Result<Capture, String> {
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let file = tempfile::tempfile().map_err(|e| format!("a temporary file: {e}"))?;
        // SAFETY: plain descriptor calls on descriptors this process owns.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 {
            return Err(format!("dup(1): {}", std::io::Error::last_os_error()));
        }
        if unsafe { libc::dup2(file.as_raw_fd(), 1) } < 0 {
            let e = std::io::Error::last_os_error();
            unsafe { libc::close(saved) };
            return Err(format!("dup2: {e}"));
        }
        Ok(Capture { file, saved })
    }

    /// Puts standard output back and returns what was written meanwhile.
    fn finish(mut self) -> Result<String, String> {
        self.restore();
        let mut text = String::new();
        self.file.rewind().map_err(|e| e.to_string())?;
        self.file
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok(text)
    }

    fn restore(&mut self) {
        if self.saved >= 0 {
            let _ = std::io::stdout().flush();
            // SAFETY: `saved` is our duplicate of the original standard output.
            unsafe {
                libc::dup2(self.saved, 1);
                libc::close(self.saved);
            }
            self.saved = -1;
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Runs `run` `runs` times with standard output captured; the text it printed.
pub fn captured(runs: u32, mut run: impl FnMut() -> Result<(), String>) -> Result<String, String> {
    let capture = Capture::start()?;
    for _ in 0..runs.max(1) {
        run()?;
    }
    capture.finish()
}

/// One printed step.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    op: String,
    node: String,
    /// The name of its first output value: rten leaves an op unnamed when its ONNX name is
    /// also its output's (our exports name both alike), and names the value.
    output_name: String,
    input: String,
    output: String,
    ns: u64,
}

/// `[1, 16, 112, 112]` → `1x16x112x112`.
fn shape_of(line: &str) -> String {
    line.rsplit_once('[')
        .and_then(|(_, s)| s.split_once(']'))
        .map(|(dims, _)| dims.split(", ").collect::<Vec<_>>().join("x"))
        .unwrap_or_default()
}

/// The steps of every run in `text` (a run starts again at `#0`).
fn parse(text: &str) -> Result<Vec<Vec<Step>>, String> {
    let mut runs: Vec<Vec<Step>> = Vec::new();
    let mut current: Option<Step> = None;
    for line in text.lines() {
        if let Some(head) = line.strip_prefix('#') {
            let (index, rest) = head.split_once(' ').ok_or("a step line without an op")?;
            let (op, node) = match rest.split_once(" (") {
                Some((op, node)) => (op, node.strip_suffix(')').unwrap_or(node)),
                None => (rest, ""),
            };
            if index == "0" {
                runs.push(Vec::new());
            }
            current = Some(Step {
                op: op.into(),
                node: node.into(),
                output_name: String::new(),
                input: String::new(),
                output: String::new(),
                ns: 0,
            });
        } else if let Some(step) = current.as_mut() {
            let line = line.trim_start();
            if line.starts_with("input 0:") {
                step.input = shape_of(line);
            } else if let Some(rest) = line.strip_prefix("output 0: ") {
                step.output = shape_of(line);
                step.output_name = rest.split(" (").next().unwrap_or_default().to_string();
            } else if let Some(ms) = line
                .strip_prefix("time: ")
                .and_then(|t| t.strip_suffix("ms"))
            {
                let ms: f64 = ms.parse().map_err(|_| format!("a step time `{ms}`"))?;
                step.ns = (ms * 1e6).round() as u64;
                let step = current.take().expect("some");
                runs.last_mut().ok_or("a step before step #0")?.push(step);
            }
        }
    }
    Ok(runs)
}

/// The per-step medians of the printed runs, in execution order.
pub fn step_medians(text: &str) -> Result<Vec<OpTiming>, String> {
    let runs = parse(text)?;
    let Some(first) = runs.first().filter(|r| !r.is_empty()) else {
        return Err("rten printed no step (its `verbose` output changed?)".into());
    };
    for (r, run) in runs.iter().enumerate() {
        let same = run.len() == first.len() && run.iter().zip(first).all(|(a, b)| a.node == b.node);
        if !same {
            return Err(format!("run {} printed other steps than run 1", r + 1));
        }
    }
    Ok((0..first.len())
        .map(|i| {
            let s = &first[i];
            let (name, how) = match (s.node.is_empty(), s.output_name.is_empty()) {
                (false, _) => (s.node.clone(), "event name"),
                (true, false) => (s.output_name.clone(), "event's output name"),
                (true, true) => (format!("step {i}"), "event name"),
            };
            let tie = if s.node.is_empty() {
                s.output_name.clone()
            } else {
                s.node.clone()
            };
            OpTiming::from_runs(
                name,
                s.op.clone(),
                s.input.clone(),
                s.output.clone(),
                0,
                runs.iter().map(|run| run[i].ns).collect(),
            )
            .tied_to(tie, how)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "#0 Transpose (to_nchw_1)\n  input 0: input (f32 [1, 64, 64, 3])\n  output 0: to_nchw_1_out ([1, 3, 64, 64])\n  time: 0.012ms\n#1 Conv (conv0_4)\n  input 0: to_nchw_1_out (f32 [1, 3, 64, 64])\n  input 1: conv0_w (f32 [8, 3, 3, 3])\n  output 0: conv0_out ([1, 8, 32, 32])\n  time: 0.250ms\n";

    #[test]
    fn printed_steps_become_medians_in_the_runtimes_names() {
        let text = format!("{RUN}{}{RUN}", RUN.replace("0.250ms", "0.350ms"));
        let steps = step_medians(&text).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].name, "conv0_4");
        assert_eq!(steps[1].op, "Conv");
        assert_eq!(steps[1].input_shape, "1x3x64x64");
        assert_eq!(steps[1].output_shape, "1x8x32x32");
        assert_eq!(steps[1].median_ns, 250_000);
        assert_eq!(steps[1].node, "conv0_4");
    }

    #[test]
    fn nothing_printed_or_runs_that_differ_are_errors() {
        assert!(step_medians("").unwrap_err().contains("no step"));
        let unnamed = step_medians(&RUN.replace(" (conv0_4)", " ()")).unwrap();
        assert_eq!(unnamed[1].name, "conv0_out");
        assert_eq!(unnamed[1].node, "conv0_out");
        assert_eq!(unnamed[1].matched_by, "event's output name");
        let other = RUN.replace("conv0_4", "conv9_9");
        assert!(step_medians(&format!("{RUN}{other}"))
            .unwrap_err()
            .contains("other steps"));
    }

    #[test]
    fn standard_output_is_captured_and_put_back() {
        // Written to the process's standard output (the test harness captures `println!`
        // of tests elsewhere; rten's, in a worker, reach descriptor 1).
        let text = captured(2, || {
            let mut out = std::io::stdout();
            out.write_all(b"inside\n").map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(text, "inside\ninside\n");
        // A failing run still puts standard output back.
        assert!(captured(1, || Err("boom".into())).is_err());
        let text = captured(1, || Ok(())).unwrap();
        assert_eq!(text, "");
    }
}
