//! System state: what the machine is (once per run) and the pinned core's state around each
//! pair. Everything Linux exposes is read from sysfs/procfs; what is missing is reported in
//! notes rather than invented.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Facts about the machine, probed once.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu_brand: String,
    pub cpu_cores: usize,
    pub os: String,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let mut sys = sysinfo::System::new();
        sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        let cpu_brand = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu_brand,
            cpu_cores: sys.cpus().len(),
            os: sysinfo::System::long_os_version().unwrap_or_default(),
            kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        }
    }
}

pub fn load_average_1m() -> f64 {
    sysinfo::System::load_average().one
}

/// A core's frequency and the machine's temperature at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreState {
    pub governor: Option<String>,
    pub freq_mhz: Option<f64>,
    pub max_freq_mhz: Option<f64>,
    /// Hottest thermal zone.
    pub temp_c: Option<f64>,
    /// What could not be read and where the values came from instead.
    pub notes: Vec<String>,
    /// The core's type (`cores::probe`).
    #[serde(default)]
    pub core_type: Option<String>,
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn cpufreq_khz(core: usize, file: &str) -> Option<f64> {
    read_trimmed(format!("/sys/devices/system/cpu/cpu{core}/cpufreq/{file}"))?
        .parse::<f64>()
        .ok()
}

/// `cpu MHz` of one processor in /proc/cpuinfo (x86 reports it; many ARM kernels do not).
fn proc_cpuinfo_mhz(core: usize) -> Option<f64> {
    let text = fs::read_to_string("/proc/cpuinfo").ok()?;
    let block = text.split("\n\n").find(|b| {
        b.lines().any(|l| {
            l.starts_with("processor")
                && l.split(':').nth(1).map(str::trim) == Some(&core.to_string())
        })
    })?;
    block
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn hottest_zone_c() -> Option<f64> {
    let zones = fs::read_dir("/sys/class/thermal").ok()?;
    zones
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|e| read_trimmed(e.path().join("temp"))?.parse::<f64>().ok())
        .map(|milli| milli / 1000.0)
        .reduce(f64::max)
}

impl CoreState {
    pub fn probe(core: usize) -> CoreState {
        let mut notes = Vec::new();
        let governor = read_trimmed(format!(
            "/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor"
        ));
        let max_freq_mhz = cpufreq_khz(core, "cpuinfo_max_freq").map(|k| k / 1000.0);
        let mut freq_mhz = cpufreq_khz(core, "scaling_cur_freq").map(|k| k / 1000.0);
        if governor.is_none() {
            notes.push("no cpufreq in sysfs (governor and max frequency unknown)".to_string());
        }
        if freq_mhz.is_none() {
            freq_mhz = proc_cpuinfo_mhz(core);
            if freq_mhz.is_some() {
                notes.push("current frequency from /proc/cpuinfo".to_string());
            }
        }
        let temp_c = hottest_zone_c();
        if temp_c.is_none() {
            notes.push("no thermal zones in sysfs (temperatures unknown)".to_string());
        }
        let core_type = crate::cores::core_type_of(&crate::cores::probe(Path::new("/")), core)
            .map(String::from);
        if core_type.is_none() {
            notes.push(format!(
                "core {core} is not in /proc/cpuinfo (core type unknown)"
            ));
        }
        CoreState {
            governor,
            freq_mhz,
            max_freq_mhz,
            temp_c,
            notes,
            core_type,
        }
    }
}

/// Pins the calling thread to `core`; threads it creates afterwards inherit the mask.
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// This process's resident memory at one moment, from `/proc/self/status`: `VmHWM` is the
/// peak of this process's own address space (unlike `getrusage`'s `ru_maxrss`, which keeps
/// the parent's high-water mark across exec), `VmRSS` the current size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub peak_kib: u64,
    pub rss_kib: u64,
}

impl Memory {
    /// `None` on hosts without /proc (the caller says so in the notes).
    pub fn read() -> Option<Memory> {
        parse_status(&fs::read_to_string("/proc/self/status").ok()?)
    }
}

fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        peak_kib: field("VmHWM:")?,
        rss_kib: field("VmRSS:")?,
    })
}

/// Keeps the calling thread (and the threads it starts afterwards) off `cores`, on the other
/// cores of `allowed` (the process's cores, read before anything was pinned). `Err` says why
/// not (one core only, or affinity unsupported).
pub fn keep_off_cores(cores: &[usize], allowed: &[usize]) -> Result<(), String> {
    if cores.is_empty() {
        return Ok(());
    }
    let others: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| !cores.contains(c))
        .collect();
    if others.is_empty() {
        return Err(format!(
            "cores {} are all this machine lets the worker use: the harness's own threads share them",
            crate::affinity::format_cpu_list(cores)
        ));
    }
    set_affinity(&others)
}

/// The cores this process could use when it started, before the harness moved its own
/// threads off the measured cores (read once; `main` reads it first).
pub fn initial_affinity() -> Vec<usize> {
    static INITIAL: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    INITIAL
        .get_or_init(|| current_affinity().unwrap_or_default())
        .clone()
}

/// The cores the calling thread may run on.
pub fn current_affinity() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect(),
        )
    }
}

/// Pins the calling thread to `cores`.
fn set_affinity(cores: &[usize]) -> Result<(), String> {
    crate::affinity::set_thread_affinity(0, cores)
}

pub const COMMIT: &str = env!("MOBILEBENCH_COMMIT");
pub const PROFILE: &str = env!("MOBILEBENCH_PROFILE");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_do_not_invent_values() {
        let m = Machine::probe();
        assert!(m.cpu_cores >= 1);
        let state = CoreState::probe(0);
        // Either a value or a note saying why not.
        assert!(state.governor.is_some() || !state.notes.is_empty());
        assert!(state.temp_c.is_some() || state.notes.iter().any(|n| n.contains("thermal")));
        let mem = Memory::read().unwrap();
        assert!(mem.peak_kib >= mem.rss_kib && mem.rss_kib > 0, "{mem:?}");
        let cpus = crate::cores::probe(std::path::Path::new("/"));
        let allowed = current_affinity().unwrap();
        let fastest = crate::placement::CoreChoice::Fastest;
        let core = crate::placement::core_set(1, &fastest, &[], &cpus, &allowed).unwrap()[0];
        assert!(core < m.cpu_cores && allowed.contains(&core));
    }

    #[test]
    fn status_fields_in_kib() {
        let text = "Name:\tbench\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                peak_kib: 2048,
                rss_kib: 1024
            })
        );
        assert_eq!(parse_status("Name:\tbench\n"), None);
    }

    #[test]
    fn a_thread_kept_off_a_core_runs_elsewhere() {
        // In a thread of its own, so the test harness's threads keep their mask.
        std::thread::spawn(|| {
            let all = current_affinity().unwrap();
            match keep_off_cores(&[all[0]], &all) {
                Ok(()) => assert!(!current_affinity().unwrap().contains(&all[0])),
                Err(why) => assert_eq!(all.len(), 1, "{why}"),
            }
        })
        .join()
        .unwrap();
    }
}
