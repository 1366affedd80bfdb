//! The parent's child processes: a worker per pair (and round), an availability probe per
//! runtime-loading backend, each the same binary re-executed, through the device's run
//! prefix (an emulator) where it has one.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mobilebench_backend::{Availability, Backend};

use crate::outcome::{signal_name, Ended, Outcome};
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

/// The running program, as Linux exposes it.
const SELF_EXE: &str = "/proc/self/exe";

/// `bench worker ...` as a child process, through the device's run prefix (an emulator) if
/// it has one: a worker is the same binary, and under qemu-user it must run under qemu too.
///
/// Without a prefix the worker is started from `/proc/self/exe`: the very binary that is
/// running, even after a rebuild replaced the file at its path mid-campaign (the old path
/// would then name a missing or a different program). An emulator needs a real path to
/// load, so with a prefix the binary's path is given.
pub fn worker_command(prefix: &[String]) -> Result<Command> {
    let exe =
        || std::env::current_exe().context("cannot find the bench executable to start a worker");
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe()?);
            c
        }
        None if Path::new(SELF_EXE).exists() => Command::new(SELF_EXE),
        None => Command::new(exe()?),
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

/// Set by the first SIGINT/SIGTERM: the current worker is stopped, no new one starts.
static STOP: AtomicBool = AtomicBool::new(false);

/// First SIGINT or SIGTERM: stop the current worker and start no other (the runner keeps
/// every finished pair and says how to resume). A second one exits at once (status 130).
pub fn install_interrupt_handler() -> Result<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so the first signal finds STOP still false and only sets it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, &STOP)
            .context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(signal, &STOP).context("cannot install the Ctrl-C handler")?;
    }
    Ok(())
}

/// Whether Ctrl-C (or SIGTERM) asked the run to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Kills `pid` when the run is asked to stop or `timeout` passes, unless `finished` is set
/// first; says which ended it.
fn watchdog(
    pid: u32,
    timeout: Duration,
    finished: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<Ended>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        loop {
            if finished.load(Ordering::Relaxed) {
                return None;
            }
            let ended = if stop_requested() {
                Some(Ended::Interrupted)
            } else if start.elapsed() >= timeout {
                Some(Ended::TimedOut(timeout))
            } else {
                None
            };
            if ended.is_some() {
                // SAFETY: kill only sends a signal; the child is not yet reaped (the reader
                // sets `finished` before waiting on it), so the pid is still its own.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                return ended;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Starts a worker for one round of one pair and collects its events; kills it after
/// `timeout`, or when the run is interrupted ([`Outcome::ended`] says so).
pub fn run_worker(
    spec: &WorkerSpec,
    label: &str,
    prefix: &[String],
    timeout: Duration,
) -> Result<Outcome> {
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
    let finished = Arc::new(AtomicBool::new(false));
    let guard = watchdog(child.id(), timeout, finished.clone());
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
    // Its stdout is closed: the worker has exited or is exiting. Stop the watchdog before
    // reaping, so it never signals a pid that could be reused.
    finished.store(true, Ordering::Relaxed);
    let ended = guard.join().unwrap_or(None);
    let status = child.wait().context("lost the worker process")?;
    bar.finish_and_clear();
    let stderr = stderr_thread.join().unwrap_or_default();
    Ok(Outcome {
        events,
        status,
        stderr,
        ended,
    })
}
