//! Remote devices over the system's OpenSSH: check the device answers, cross-build the
//! runner for its target, copy the binary and runtime libraries into a remote folder keyed by
//! content (unchanged files are not sent again), run `bench run` there pinned, and stream
//! each finished pair back into the local run directory as it completes, so a dropped link
//! keeps every pair already measured. Every error names the device and the step.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use mobilebench_backend::Timing;
use mobilebench_devices::DeviceProfile;
use mobilebench_results::{RunManifest, RunWriter, SampleRow, SummaryRow};
use mobilebench_runtimes::{self as runtimes, Platform};
use serde::{Deserialize, Serialize};

/// One finished pair, as the remote runner prints it with `--emit-rows`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RowMessage {
    pub summary: SummaryRow,
    pub samples: Vec<SampleRow>,
}

pub const ROW_PREFIX: &str = "@mobilebench-row ";

pub struct Remote<'a> {
    pub profile: &'a DeviceProfile,
    work_dir: String,
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

/// Runs a command, returning stdout; the error carries the last stderr line.
fn output(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        bail!("{what} failed ({}): {last}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl<'a> Remote<'a> {
    pub fn new(profile: &'a DeviceProfile) -> Result<Self> {
        let Some((_, _, work_dir)) = profile.remote() else {
            bail!("device {} is not an ssh device", profile.name);
        };
        Ok(Remote {
            profile,
            work_dir: work_dir.trim_end_matches('/').to_string(),
        })
    }

    fn ssh_target(&self) -> &mobilebench_devices::SshTarget {
        self.profile.ssh.as_ref().expect("validated ssh device")
    }

    fn destination(&self) -> String {
        let s = self.ssh_target();
        match &s.user {
            Some(u) => format!("{u}@{}", s.host),
            None => s.host.clone(),
        }
    }

    /// Options shared by ssh and scp: never prompt, give up on a dead link within ~25 s.
    fn common_options(&self, port_flag: &str) -> Vec<String> {
        let s = self.ssh_target();
        let mut o: Vec<String> = [
            "BatchMode=yes",
            "ConnectTimeout=10",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
        ]
        .iter()
        .flat_map(|opt| ["-o".to_string(), opt.to_string()])
        .collect();
        for opt in &s.options {
            o.extend(["-o".to_string(), opt.clone()]);
        }
        if let Some(port) = s.port {
            o.extend([port_flag.to_string(), port.to_string()]);
        }
        if let Some(id) = &s.identity {
            o.extend(["-i".to_string(), expand_home(id)]);
        }
        o
    }

    fn ssh(&self, remote_command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.common_options("-p"))
            .arg(self.destination())
            .arg(remote_command);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn step_error(&self, step: &str, e: anyhow::Error) -> anyhow::Error {
        let s = self.ssh_target();
        let port = s.port.map_or(String::new(), |p| format!(" port {p}"));
        e.context(format!(
            "device {} ({}{port}), step `{step}` — check that the host is up and reachable, that `ssh {}` works without a password, and the [ssh] table of its profile",
            self.profile.name,
            s.host,
            self.destination()
        ))
    }

    /// Fails fast (seconds) when the device cannot be reached or refuses the login.
    pub fn check_reachable(&self) -> Result<()> {
        output(self.ssh("true"), "ssh")
            .map(drop)
            .map_err(|e| self.step_error("connect", e))
    }

    /// Cross-builds `bench` for the device's target from this source tree.
    pub fn cross_build(&self) -> Result<PathBuf> {
        let target = self.profile.target.as_ref().expect("validated ssh device");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if !root.join("Cargo.toml").is_file() {
            bail!(
                "device {}: cross-building needs the mobilebench source tree at {}",
                self.profile.name,
                root.display()
            );
        }
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root).args([
            "build",
            "--release",
            "-q",
            "-p",
            "mobilebench-harness",
            "--bin",
            "bench",
            // The tch backend links an x86_64 libtorch: devices get a build without it
            // (its backends are then listed unavailable, with that reason).
            "--no-default-features",
            "--target",
            &target.triple,
        ]);
        let env = format!(
            "CARGO_TARGET_{}_LINKER",
            target.triple.to_uppercase().replace('-', "_")
        );
        let linker = target.linker.clone().unwrap_or_else(|| {
            format!(
                "{}-linux-gnu-gcc",
                target.triple.split('-').next().unwrap_or("")
            )
        });
        if std::env::var_os(&env).is_none() {
            cmd.env(&env, linker);
        }
        eprintln!(
            "[{}] cross-building bench for {} ...",
            self.profile.name, target.triple
        );
        let status = cmd.status().context("cannot run cargo")?;
        if !status.success() {
            bail!(
                "device {}, step `cross-build`: cargo build --target {} failed; install the target (rustup target add {}) and a linker ({})",
                self.profile.name,
                target.triple,
                target.triple,
                env
            );
        }
        Ok(root
            .join("target")
            .join(&target.triple)
            .join("release")
            .join("bench"))
    }

    /// Copies files to `work_dir/<relative path>` unless a file of the same size is there.
    fn deploy(&self, files: &[(PathBuf, String)]) -> Result<()> {
        let listing = format!(
            "mkdir -p {w} && cd {w} && find . -type f -printf '%P %s\\n'",
            w = self.work_dir
        );
        let present =
            output(self.ssh(&listing), "ssh").map_err(|e| self.step_error("deploy (list)", e))?;
        let have: Vec<(String, u64)> = present
            .lines()
            .filter_map(|l| {
                l.rsplit_once(' ')
                    .map(|(p, s)| (p.to_string(), s.parse().unwrap_or(0)))
            })
            .collect();
        for (local, remote) in files {
            let size = std::fs::metadata(local)
                .with_context(|| format!("{}", local.display()))?
                .len();
            if have.iter().any(|(p, s)| p == remote && *s == size) {
                continue;
            }
            let dir = Path::new(remote)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            output(
                self.ssh(&format!("mkdir -p {}/{dir}", self.work_dir)),
                "ssh",
            )
            .map_err(|e| self.step_error("deploy (mkdir)", e))?;
            let mut scp = Command::new("scp");
            scp.args(self.common_options("-P"))
                .arg("-q")
                .arg(local)
                .arg(format!("{}:{}/{remote}", self.destination(), self.work_dir));
            output(scp, "scp")
                .map_err(|e| self.step_error(&format!("deploy {}", local.display()), e))?;
            eprintln!("[{}] sent {remote} ({size} bytes)", self.profile.name);
        }
        Ok(())
    }

    /// The whole path for one device: check, build, deploy, run, stream rows back.
    pub fn run(
        &self,
        manifest: &RunManifest,
        run_id: &str,
        writer: &Mutex<RunWriter>,
    ) -> Result<()> {
        self.check_reachable()?;
        let target = self.profile.target.as_ref().expect("validated ssh device");
        let binary = self.cross_build()?;
        let bytes = std::fs::read(&binary).with_context(|| format!("{}", binary.display()))?;
        // Keyed by content: a new build goes to a new folder; an unchanged one is not resent.
        let key = format!("{:016x}", fnv1a(&bytes));
        let mut files = vec![(binary.clone(), format!("bin/{key}/bench"))];
        let platform = Platform::parse(&target.platform).context("validated platform")?;
        let needs_runtime = |name: &str| manifest.backends.iter().any(|b| b.starts_with(name));
        for rt in runtimes::ALL {
            if !needs_runtime(rt.name) {
                continue;
            }
            match runtimes::ensure(rt, platform) {
                Ok(installed) => {
                    let rel = installed
                        .dir
                        .strip_prefix(runtimes::cache_root())
                        .unwrap_or(&installed.dir)
                        .to_path_buf();
                    for f in installed
                        .libraries
                        .iter()
                        .map(String::as_str)
                        .chain(["runtime.json"])
                    {
                        files.push((
                            installed.dir.join(f),
                            format!("cache/{}/{f}", rel.display()),
                        ));
                    }
                }
                Err(e) => eprintln!(
                    "[{}] {e} (its backends will be recorded unavailable)",
                    self.profile.name
                ),
            }
        }
        self.deploy(&files)?;
        let w = &self.work_dir;
        let prefix = self.profile.run_prefix.clone().unwrap_or_default();
        let mut args = vec![
            format!("{w}/bin/{key}/bench"),
            "run".into(),
            "--run-dir".into(),
            format!("{w}/runs/{run_id}"),
            "--as-device".into(),
            self.profile.name.clone(),
            "--emit-rows".into(),
            "--warmup".into(),
            manifest.warmup.to_string(),
            "--runs".into(),
            manifest.runs.to_string(),
            "--seed".into(),
            manifest.weight_seed.to_string(),
            "--mode".into(),
            manifest.mode.clone(),
            "--batch".into(),
            manifest.batch.to_string(),
            "--bn".into(),
            manifest.bn.clone(),
            "--rounds".into(),
            manifest.rounds.to_string(),
            "--pair-timeout".into(),
            manifest.pair_timeout_s.to_string(),
            "--backends".into(),
            manifest.backends.join(","),
        ];
        if manifest.timing == Timing::InferWithIo.name() {
            args.push("--timed-io".into());
        }
        if !manifest.models.is_empty() {
            args.extend(["--models".into(), manifest.models.join(",")]);
        }
        if let Some(core) = self.profile.core {
            args.extend(["--core".into(), core.to_string()]);
        }
        if self.profile.emulated {
            args.push("--emulated".into());
        }
        if !prefix.is_empty() {
            args.push(format!("--worker-prefix='{prefix}'"));
        }
        let command = format!(
            "cd {w} && MOBILEBENCH_CACHE={w}/cache {prefix} {}",
            args.join(" ")
        );
        eprintln!("[{}] running: {command}", self.profile.name);
        let mut child = self
            .ssh(&command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start ssh")?;
        let name = self.profile.name.clone();
        let stderr = child.stderr.take().expect("piped");
        let relay = std::thread::spawn(move || {
            let mut last = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Progress bars redraw with \r; pass finished lines through, prefixed.
                for part in line
                    .split('\r')
                    .filter(|p| p.starts_with('[') || p.starts_with("error"))
                {
                    eprintln!("[{name}] {part}");
                }
                last = line;
            }
            last
        });
        let mut received = 0;
        let have = self.pairs_kept(writer);
        for line in BufReader::new(child.stdout.take().expect("piped"))
            .lines()
            .map_while(Result::ok)
        {
            let Some(json) = line.strip_prefix(ROW_PREFIX) else {
                continue;
            };
            let msg: RowMessage =
                serde_json::from_str(json).context("a malformed row from the device")?;
            if have.contains(&(msg.summary.model.clone(), msg.summary.backend.clone())) {
                continue; // resent by a resumed remote run, and already here
            }
            writer
                .lock()
                .expect("writer lock")
                .append_pair(&msg.summary, &msg.samples)
                .with_context(|| format!("cannot record a pair of device {}", self.profile.name))?;
            received += 1;
        }
        let status = child.wait().context("lost the ssh process")?;
        let last = relay.join().unwrap_or_default();
        if !status.success() {
            let e = anyhow::anyhow!(
                "the remote run ended with {status} after {received} pairs: {}",
                last.trim()
            );
            return Err(self.step_error("run", e).context(format!(
                "{received} finished pairs are kept; `bench run --resume` continues once the device is back"
            )));
        }
        Ok(())
    }
}

impl Remote<'_> {
    /// The pairs of this device already measured ok in the local run directory.
    fn pairs_kept(&self, writer: &Mutex<RunWriter>) -> Vec<(String, String)> {
        let dir = writer.lock().expect("writer lock").dir().to_path_buf();
        mobilebench_results::read_run(&dir)
            .map(|run| {
                run.summary
                    .iter()
                    .filter(|r| r.is_ok() && r.device == self.profile.name)
                    .map(|r| (r.model.clone(), r.backend.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// FNV-1a: a content key for file names, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
