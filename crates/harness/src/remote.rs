//! Remote devices over the system's OpenSSH: check the device answers, cross-build the
//! runner for its target, copy the binary, runtime libraries, model files and the run's plan
//! (its manifest, every option included) into a private remote folder, checked by SHA-256
//! (a file already there with the same content is not sent again), run `bench run` there on
//! that plan, and stream each finished pair back into the local run directory as it
//! completes, so a dropped link keeps every pair already measured. Every word of every remote
//! command is quoted (shlex); every error names the device and the step.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use mobilebench_devices::DeviceProfile;
use mobilebench_results::{OpRow, RunManifest, RunWriter, SampleRow, SummaryRow};
use mobilebench_runtimes::{self as runtimes, Platform};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One finished pair, as the remote runner prints it with `--emit-rows`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RowMessage {
    pub summary: SummaryRow,
    pub samples: Vec<SampleRow>,
    /// `--profile-ops` rows of the pair's round (older devices' binaries send none).
    #[serde(default)]
    pub ops: Vec<OpRow>,
}

pub const ROW_PREFIX: &str = "@mobilebench-row ";

pub struct Remote<'a> {
    pub profile: &'a DeviceProfile,
    /// As the profile gives it (`~/` is the remote user's home).
    work_dir: String,
}

/// One word for the remote shell, quoted; a leading `~/` stays the remote home ("$HOME").
fn shell_word(word: &str) -> Result<String> {
    let quote = |w: &str| -> Result<String> {
        shlex::try_quote(w)
            .map(|q| q.into_owned())
            .map_err(|e| anyhow::anyhow!("cannot quote {w:?} for the remote shell: {e}"))
    };
    match word.strip_prefix("~/") {
        Some(rest) => Ok(format!("\"$HOME\"/{}", quote(rest)?)),
        None => quote(word),
    }
}

/// A remote command line: every word quoted, joined by spaces.
fn shell_line(words: &[String]) -> Result<String> {
    Ok(words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Result<Vec<_>>>()?
        .join(" "))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What to put where under the remote work directory.
struct Upload {
    /// Relative to the work directory.
    remote: String,
    bytes: Vec<u8>,
    /// For messages.
    what: String,
}

impl Upload {
    fn file(local: &Path, remote: String) -> Result<Upload> {
        Ok(Upload {
            bytes: std::fs::read(local)
                .with_context(|| format!("cannot read {}", local.display()))?,
            what: local.display().to_string(),
            remote,
        })
    }
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

    /// `ssh [options] -- destination command`: a destination that begins with `-` cannot
    /// be taken for an option.
    fn ssh(&self, remote_command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.common_options("-p"))
            .arg("--")
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
        // Where cargo put it: CARGO_TARGET_DIR (relative to the tree) when set.
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), |d| root.join(d));
        Ok(target_dir
            .join(&target.triple)
            .join("release")
            .join("bench"))
    }

    /// Creates the work directory, private to the remote user (mode 700), and returns its
    /// absolute path there.
    fn prepare_work_dir(&self) -> Result<String> {
        let w = shell_word(&self.work_dir)?;
        let command = format!("mkdir -p -- {w} && chmod 700 -- {w} && cd -- {w} && pwd -P");
        let out = output(self.ssh(&command), "ssh")
            .map_err(|e| self.step_error("deploy (work_dir)", e))?;
        let abs = out.trim().to_string();
        if abs.is_empty() {
            bail!(
                "device {}: the work directory {} has no path",
                self.profile.name,
                self.work_dir
            );
        }
        Ok(abs)
    }

    /// Copies each upload to `work/<remote>` unless a file with the same SHA-256 is there;
    /// each arrives under a temporary name and is renamed into place, mode 700.
    fn deploy(&self, work: &str, uploads: &[Upload]) -> Result<()> {
        let listing = format!(
            "cd -- {} && find . -type f -exec sha256sum {{}} +",
            shell_word(work)?
        );
        let present =
            output(self.ssh(&listing), "ssh").map_err(|e| self.step_error("deploy (list)", e))?;
        let have: HashMap<&str, &str> = present
            .lines()
            .filter_map(|l| {
                let (hash, path) = l.split_once("  ")?;
                Some((path.strip_prefix("./").unwrap_or(path), hash))
            })
            .collect();
        for up in uploads {
            if have.get(up.remote.as_str()) == Some(&sha256_hex(&up.bytes).as_str()) {
                continue;
            }
            let path = format!("{work}/{}", up.remote);
            let dir = Path::new(&path)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| work.to_string());
            let partial = format!("{path}.partial");
            let command = format!(
                "mkdir -p -- {d} && cat > {p} && chmod 700 -- {p} && mv -f -- {p} {f}",
                d = shell_word(&dir)?,
                p = shell_word(&partial)?,
                f = shell_word(&path)?,
            );
            let mut child = self
                .ssh(&command)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot start ssh")?;
            let sent = child.stdin.take().expect("piped").write_all(&up.bytes);
            let out = child.wait_with_output().context("lost the ssh process")?;
            if sent.is_err() || !out.status.success() {
                let e = anyhow::anyhow!(
                    "ssh failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return Err(self.step_error(&format!("deploy {}", up.what), e));
            }
            eprintln!(
                "[{}] sent {} ({} bytes)",
                self.profile.name,
                up.remote,
                up.bytes.len()
            );
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
        let work = self.prepare_work_dir()?;
        let bench = Upload::file(&binary, String::new())?;
        // Keyed by content: a new build goes to a new folder; an unchanged one is not resent.
        let key = sha256_hex(&bench.bytes)[..16].to_string();
        let mut uploads = vec![Upload {
            remote: format!("bin/{key}/bench"),
            ..bench
        }];
        let platform = Platform::parse(&target.platform).context("validated platform")?;
        let backends = crate::registry::select(&manifest.backends)?;
        for rt in runtimes::ALL {
            if !backends
                .iter()
                .any(|b| b.runtime().is_some_and(|name| name == rt.name))
            {
                continue;
            }
            match crate::registry::ensure_runtime(rt, platform) {
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
                        uploads.push(Upload::file(
                            &installed.dir.join(f),
                            format!("cache/{}/{f}", rel.display()),
                        )?);
                    }
                }
                Err(e) => eprintln!(
                    "[{}] {e} (its backends will be recorded unavailable)",
                    self.profile.name
                ),
            }
        }
        // The plan the device runs: the host's, every option included, its model files
        // deployed beside the binary (keyed by content, under their own names).
        let mut plan = manifest.clone();
        plan.device = "local".into();
        plan.model_files.clear();
        for file in &manifest.model_files {
            let up = Upload::file(Path::new(file), String::new())?;
            let name = Path::new(file)
                .file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned());
            let remote = format!("files/{}/{name}", &sha256_hex(&up.bytes)[..16]);
            plan.model_files.push(format!("{work}/{remote}"));
            uploads.push(Upload { remote, ..up });
        }
        let run_dir = format!("runs/{run_id}");
        uploads.push(Upload {
            remote: format!("{run_dir}/{}", mobilebench_results::MANIFEST_FILE),
            bytes: serde_json::to_vec_pretty(&plan)?,
            what: "the run's plan".into(),
        });
        self.deploy(&work, &uploads)?;

        // cd WORK && env MOBILEBENCH_CACHE=WORK/cache [PREFIX...] WORK/bin/KEY/bench run ...
        let prefix = match &self.profile.run_prefix {
            Some(p) => shlex::split(p).with_context(|| {
                format!(
                    "device {}: run_prefix {p:?} is not a command line",
                    self.profile.name
                )
            })?,
            None => Vec::new(),
        };
        let mut words = vec!["env".to_string(), format!("MOBILEBENCH_CACHE={work}/cache")];
        words.extend(prefix.iter().cloned());
        words.extend([
            format!("{work}/bin/{key}/bench"),
            "run".into(),
            "--run-dir".into(),
            format!("{work}/{run_dir}"),
            "--as-device".into(),
            self.profile.name.clone(),
            "--emit-rows".into(),
        ]);
        if self.profile.emulated {
            words.push("--emulated".into());
        }
        if !prefix.is_empty() {
            words.push(format!("--worker-prefix={}", prefix.join(" ")));
        }
        let command = format!("cd -- {} && {}", shell_word(&work)?, shell_line(&words)?);
        eprintln!("[{}] running: {command}", self.profile.name);
        let mut child = self
            .ssh(&command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start ssh")?;
        let stderr = child.stderr.take().expect("piped");
        let log_path = writer
            .lock()
            .expect("writer lock")
            .dir()
            .join(device_log_name(&self.profile.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open the device's log {}", log_path.display()))?;
        let name = self.profile.name.clone();
        let relay = std::thread::spawn(move || relay_device_stderr(&name, stderr, log));
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
            let key = (msg.summary.model.clone(), msg.summary.backend.clone());
            if have
                .get(&key)
                .is_some_and(|&rounds| rounds >= msg.summary.rounds)
            {
                continue; // resent by a resumed remote run, and already here
            }
            writer
                .lock()
                .expect("writer lock")
                .append_round(&msg.summary, &msg.samples, &msg.ops)
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

/// The file in the run directory that keeps everything a device printed on stderr.
pub fn device_log_name(device: &str) -> String {
    format!("device-{device}.log")
}

/// Whether a line the device printed is for the user: a pair's progress line, an error, a
/// warning (another run on the measured core, a probe that contradicts the profile) or a note.
fn for_the_user(line: &str) -> bool {
    ["[", "error", "warning", "note"]
        .iter()
        .any(|p| line.starts_with(p))
}

/// Relays a remote run's stderr: lines for the user to this terminal, prefixed with the
/// device, and every finished line to `log` (progress bars redraw with `\r`: a line's last
/// state is what it finished as). Returns the last line (the reason, when the run fails).
fn relay_device_stderr(device: &str, stderr: impl std::io::Read, mut log: std::fs::File) -> String {
    let mut last = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        for part in line.split('\r').filter(|p| for_the_user(p)) {
            eprintln!("[{device}] {part}");
        }
        let finished = line.rsplit('\r').next().unwrap_or_default();
        if !finished.trim().is_empty() {
            // The log is a record, never a reason to stop relaying.
            let _ = writeln!(log, "{finished}");
        }
        last = line;
    }
    last
}

impl Remote<'_> {
    /// The pairs of this device already measured ok in the local run directory, with the
    /// rounds each holds.
    fn pairs_kept(&self, writer: &Mutex<RunWriter>) -> HashMap<(String, String), u32> {
        let dir = writer.lock().expect("writer lock").dir().to_path_buf();
        mobilebench_results::read_run(&dir)
            .map(|run| {
                run.summary
                    .iter()
                    .filter(|r| r.is_ok() && r.device == self.profile.name)
                    .map(|r| ((r.model.clone(), r.backend.clone()), r.rounds))
                    .collect()
            })
            .unwrap_or_default()
    }
}
