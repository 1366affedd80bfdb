//! Remote devices end to end on this machine: emulated aarch64 devices behind sshds that the
//! tests start on loopback (qemu-user as the profile's run prefix). Needs what
//! `./scripts/test` installs: openssh-server, qemu-user, the aarch64 cross gcc and Rust target.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A throwaway sshd on 127.0.0.1: its own host key, one client key, key-only login.
struct Sshd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        for key in ["host", "client"] {
            if !dir.join(key).exists() {
                let ok = Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", ""])
                    .arg("-f")
                    .arg(dir.join(key))
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut sshd = Sshd {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        sshd.launch();
        sshd
    }

    fn launch(&mut self) {
        let d = self.dir.display();
        let config = format!(
            "Port {}\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n\
             PidFile {d}/sshd.pid\n",
            self.port
        );
        std::fs::write(self.dir.join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/sbin/sshd (openssh-server) runs");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the listener and every session it started: the link drops mid-run.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            for session in descendants(pid) {
                // SAFETY: kill(2) on processes of our own sshd's process tree.
                unsafe { libc::kill(session, libc::SIGKILL) };
            }
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// A device profile for this sshd, emulating aarch64 with qemu-user.
    fn profile(&self, name: &str, work: &Path) -> PathBuf {
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let d = self.dir.display();
        let text = format!(
            "name = \"{name}\"\nkind = \"ssh\"\ndescription = \"aarch64 under qemu-user behind a test sshd\"\n\
             emulated = true\nwork_dir = \"{}\"\nrun_prefix = \"qemu-aarch64 -L /usr/aarch64-linux-gnu\"\n\
             backends = [\"native\", \"tract\", \"litert-xnnpack\"]\n\
             [ssh]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity = \"{d}/client\"\n\
             options = [\"StrictHostKeyChecking=no\", \"UserKnownHostsFile={d}/known_hosts\"]\n\
             [target]\ntriple = \"aarch64-unknown-linux-gnu\"\nplatform = \"linux-aarch64\"\nlinker = \"aarch64-linux-gnu-gcc\"\n",
            work.display(),
            self.port,
            user.trim()
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn descendants(pid: i32) -> Vec<i32> {
    children(pid)
        .into_iter()
        .flat_map(|c| std::iter::once(c).chain(descendants(c)))
        .collect()
}

/// The single run directory under `out/<device folder>/`.
fn the_run(out: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

#[test]
fn emulated_devices_end_to_end_two_at_once_and_resume_after_a_dropped_link() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Sshd::start(&tmp.path().join("sshd-a"));
    let b = Sshd::start(&tmp.path().join("sshd-b"));
    let pa = a.profile("qemu-a", &tmp.path().join("work-a"));
    let pb = b.profile("qemu-b", &tmp.path().join("work-b"));
    let out = tmp.path().join("results");

    // Two emulated devices at once, one run directory.
    let both = bench(&[
        "run",
        "--device",
        pa.to_str().unwrap(),
        "--device",
        pb.to_str().unwrap(),
        "--models",
        "mobilenet_v3_small_0.25_64",
        "--backends",
        "native,litert-xnnpack",
        "--warmup",
        "2",
        "--runs",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(both.status.success(), "{}", stderr(&both));
    let dir = the_run(&out);
    let rows = summary(&dir);
    for device in ["qemu-a", "qemu-b"] {
        let native = rows
            .iter()
            .find(|r| r["device"] == device && r["backend"] == "native")
            .unwrap_or_else(|| panic!("{device}: {rows:#?}"));
        assert_eq!(native["status"], "ok", "{native:?}");
        assert!(
            native["flags"].split(';').any(|f| f == "emulated"),
            "{native:?}"
        );
        // The aarch64 engine ran its NEON kernels and agreed with the reference.
        assert!(native["settings"].contains("isa=neon"), "{native:?}");
        assert!(
            !native["flags"].split(';').any(|f| f == "disagrees"),
            "{native:?}"
        );
        let litert = rows
            .iter()
            .find(|r| r["device"] == device && r["backend"] == "litert-xnnpack")
            .unwrap();
        assert_eq!(litert["status"], "unavailable");
        assert!(litert["message"].contains("under emulation"), "{litert:?}");
    }
    // 10 samples from each device for the one (model, backend) both measured.
    let counts = sample_counts(&dir);
    assert_eq!(
        counts[&(
            "mobilenet_v3_small_0.25_64".to_string(),
            "native".to_string()
        )],
        20,
        "{counts:?}"
    );
    let report = bench(&["report", dir.to_str().unwrap()]);
    let md = stdout(&report);
    let note = md
        .lines()
        .find(|l| l.contains("measured under qemu user emulation. Those timings mean nothing"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(note.contains("qemu-a") && note.contains("qemu-b"), "{note}");
    // One latency column per device; every pair row carries the emulated flag.
    // (Devices run concurrently: their order is whichever finished first.)
    let header = md
        .lines()
        .find(|l| l.starts_with("| model | precision | MACs"))
        .unwrap();
    assert!(
        header.contains("| qemu-a (ms, fastest backend) |")
            && header.contains("| qemu-b (ms, fastest backend) |"),
        "{header}"
    );
    assert!(
        md.contains("| qemu-a | mobilenet_v3_small_0.25_64 | native | ok |")
            && md.contains("| emulated |"),
        "{md}"
    );

    // Threads on the device: each count a pair of its own, on as many of its cores.
    let out_threads = tmp.path().join("results-threads");
    let threads = bench(&[
        "run",
        "--device",
        pb.to_str().unwrap(),
        "--models",
        "mobilenet_v3_small_0.25_64",
        "--backends",
        "native",
        "--threads",
        "1,2",
        "--warmup",
        "2",
        "--runs",
        "10",
        "--out",
        out_threads.to_str().unwrap(),
    ]);
    assert!(threads.status.success(), "{}", stderr(&threads));
    let rows = summary(&the_run(&out_threads));
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for (r, n) in rows.iter().zip([1, 2]) {
        assert_eq!(
            (r["status"].as_str(), r["threads"].as_str()),
            ("ok", n.to_string().as_str()),
            "{r:?}"
        );
        assert!(r["flags"].split(';').any(|f| f == "emulated"), "{r:?}");
        assert!(!r["flags"].split(';').any(|f| f == "disagrees"), "{r:?}");
        assert_eq!(r["core_set"].split([',', '-']).count(), n, "{r:?}");
        assert_eq!(r["pinned"], "true", "{r:?}");
    }

    // A dropped link: kill device a's sshd once its first pair is back.
    let out2 = tmp.path().join("results2");
    let run = Command::new(BENCH)
        .args([
            "run",
            "--device",
            pa.to_str().unwrap(),
            "--backends",
            "native",
            "--warmup",
            "2",
            "--runs",
            "300",
        ])
        .args([
            "--models",
            "mobilenet_v3_small_0.25_64,mobilenet_v3_small_0.35_64,mobilenet_v3_small_0.5_64",
        ])
        .args(["--out", out2.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let dir2 = loop {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no pair came back"
        );
        if let Ok(d) = std::panic::catch_unwind(|| the_run(&out2)) {
            if summary_rows(&d) >= 1 {
                break d;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    a.kill();
    let failed = run.wait_with_output().unwrap();
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("device qemu-a") && err.contains("step `run`") && err.contains("--resume"),
        "{err}"
    );
    let kept = summary(&dir2).len();
    assert!(kept >= 1, "the finished pairs are kept");
    a.launch();
    let resumed = bench(&["run", "--resume", dir2.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let status: Vec<(String, String)> = summary(&dir2)
        .into_iter()
        .map(|r| (r["model"].clone(), r["status"].clone()))
        .collect();
    assert_eq!(status.len(), 3, "{status:?}");
    assert!(status.iter().all(|(_, s)| s == "ok"), "{status:?}");
    assert!(
        sample_counts(&dir2).values().all(|&n| n == 300),
        "no pair twice"
    );
}

#[test]
fn an_unknown_host_fails_fast_naming_the_host_and_what_to_check() {
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = bench(&[
        "run",
        "--device",
        "odroid-n2",
        "--models",
        "seed",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    let err = stderr(&out);
    assert!(
        err.contains("device odroid-n2")
            && err.contains("step `connect`")
            && err.contains("check that the host is up"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "no run directory for a run that never started"
    );
}

#[test]
fn every_option_and_model_file_reach_the_device_and_no_word_is_run_as_a_command() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&tmp.path().join("sshd"));
    // A relative name (a file name may hold no slash): were a word run as a command, the
    // file would appear in the remote shell's directory, the home or the work directory.
    let planted = format!(
        "PLANTED{}",
        tmp.path().file_name().unwrap().to_string_lossy()
    );
    let hostile = |what: &str| format!("{what} 'q' $(touch {planted})");
    let work = tmp.path().join(hostile("work dir"));
    let profile = sshd.profile("qemu-c", &work);
    // The user's own file, run on the device by the backend that reads it.
    let file = tmp.path().join("mine.onnx");
    let export = bench(&[
        "export",
        "mobilenet_v3_small_0.25_64",
        "--format",
        "onnx",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", stderr(&export));
    let out = tmp.path().join("results");
    // Another "run" holds the device's lock on core 0 (the device is this machine, emulated):
    // its warning must reach this terminal and the run's log, not die on the device's stderr.
    let core_lock = hold_core_lock(0);
    let first = bench(&[
        "run",
        "--device",
        profile.to_str().unwrap(),
        "--model-file",
        file.to_str().unwrap(),
        "--backends",
        "tract",
        "--cv-threshold",
        "0.2",
        "--core",
        "0",
        "--warmup",
        "1",
        "--runs",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    drop(core_lock);
    let warning = format!(
        "warning: another bench run (pid {}) is measuring on core 0",
        std::process::id()
    );
    assert!(
        stderr(&first).contains(&format!("[qemu-c] {warning}")),
        "the device's warning is relayed: {}",
        stderr(&first)
    );
    let dir = the_run(&out);
    let log = std::fs::read_to_string(dir.join("device-qemu-c.log")).unwrap();
    assert!(log.contains(&warning), "and kept in the run's log: {log}");
    let rows = summary(&dir);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["model"], "mine.onnx", "{rows:?}");
    assert_eq!(rows[0]["status"], "ok", "{rows:?}");
    assert_eq!(rows[0]["core"], "0", "{rows:?}");
    // The device ran the host's plan: read it where the device keeps it.
    let remote_runs = work.join("runs");
    let run_id = dir.file_name().unwrap();
    let plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(remote_runs.join(run_id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(plan["cv_threshold"], 0.2);
    assert_eq!(plan["core"], 0);
    assert_eq!(plan["models"], serde_json::json!([]));
    // The work directory is private to its user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&work).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    // A run id (the resumed directory's name) with the same hostile words.
    let renamed = dir.with_file_name(hostile("run id"));
    std::fs::rename(&dir, &renamed).unwrap();
    let again = bench(&["run", "--resume", renamed.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(remote_runs
        .join(renamed.file_name().unwrap())
        .join("run.json")
        .is_file());
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    for place in [
        home.as_path(),
        work.as_path(),
        renamed.parent().unwrap(),
        Path::new("."),
    ] {
        assert!(
            !place.join(&planted).exists(),
            "a word was run as a command"
        );
    }
}

/// Takes the machine-wide lock `bench` takes on a measured core (a flock on
/// `/tmp/mobilebench-core-N.lock` holding the owner's pid), as another run would.
fn hold_core_lock(core: usize) -> std::fs::File {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    // The device's shell has no TMPDIR (sshd drops the environment): its temp dir is /tmp.
    let path = format!("/tmp/mobilebench-core-{core}.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: flock on a descriptor this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0, "{path} is held by another process");
    file.set_len(0).unwrap();
    write!(file, "{}", std::process::id()).unwrap();
    file.flush().unwrap();
    file
}
