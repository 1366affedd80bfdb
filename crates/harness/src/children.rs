//! The parent's child processes: a worker per pair (and round), an availability probe per
//! runtime-loading backend, each the same binary re-executed, through the device's run
//! prefix (an emulator) where it has one.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mobilebench_backend::{Availability, Backend};

use crate::outcome::{signal_name, Outcome};
use crate::registry;
use crate::worker::{Event, WorkerSpec};

fn progress_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} runs, ETA {eta}")
            .expect("valid template"),
    );
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// `bench worker ...` as a child process, through the device's run prefix (an emulator) if
/// it has one: a worker is the same binary, and under qemu-user it must run under qemu too.
pub fn worker_command(prefix: &[String]) -> Result<Command> {
    let exe =
        std::env::current_exe().context("cannot find the bench executable to start a worker")?;
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.arg("worker");
    Ok(cmd)
}

/// Whether a backend can run, asked of a child process when the check loads a runtime
/// library: a library whose loading crashes (ONNX Runtime under qemu-user) then makes the
/// backend unavailable instead of taking the campaign down.
pub fn probe_availability(backend: &dyn Backend, prefix: &[String]) -> Availability {
    if registry::runtime_of(backend).is_none() {
        return backend.availability();
    }
    let out = worker_command(prefix).and_then(|mut c| {
        c.args(["--probe", backend.name()])
            .stdin(Stdio::null())
            .output()
            .context("cannot start the availability probe")
    });
    match out {
        Ok(o) if o.status.success() => {
            match serde_json::from_slice::<crate::worker::ProbeAnswer>(&o.stdout) {
                Ok(answer) => answer.into(),
                Err(e) => Availability::Unavailable {
                    reason: format!("its availability probe answered nonsense: {e}"),
                },
            }
        }
        Ok(o) => Availability::Unavailable {
            reason: match o.status.signal() {
                Some(sig) => format!(
                    "loading its runtime library crashed (signal {sig}, {})",
                    signal_name(sig)
                ),
                None => format!("its availability probe failed ({})", o.status),
            },
        },
        Err(e) => Availability::Unavailable {
            reason: format!("{e:#}"),
        },
    }
}

pub fn run_worker(spec: &WorkerSpec, label: &str, prefix: &[String]) -> Result<Outcome> {
    let mut child = worker_command(prefix)?
        .arg("--spec")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start a worker")?;
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let bar = progress_bar(u64::from(spec.warmup + spec.runs), label);
    let mut events = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        // Runtimes may print to stdout too: only our JSON events count.
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        match &event {
            Event::Progress { done } => bar.set_position(u64::from(*done)),
            Event::Finished { .. } => bar.set_position(u64::from(spec.warmup + spec.runs)),
            _ => {}
        }
        if !matches!(event, Event::Progress { .. }) {
            events.push(event);
        }
    }
    let status = child.wait().context("lost the worker process")?;
    bar.finish_and_clear();
    let stderr = stderr_thread.join().unwrap_or_default();
    Ok(Outcome {
        events,
        status,
        stderr,
    })
}
