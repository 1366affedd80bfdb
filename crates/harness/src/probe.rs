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
        CoreState {
            governor,
            freq_mhz,
            max_freq_mhz,
            temp_c,
            notes,
        }
    }
}

/// The default core: the fastest by maximum frequency (big cores of big.LITTLE), the highest
/// index on ties (core 0 takes most interrupts). `None` when affinity is not supported.
pub fn fastest_core() -> Option<usize> {
    let cores = core_affinity::get_core_ids()?;
    cores
        .iter()
        .map(|c| (cpufreq_khz(c.id, "cpuinfo_max_freq").unwrap_or(0.0), c.id))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, id)| id)
}

/// Pins the calling thread to `core`; threads it creates afterwards inherit the mask.
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// Peak resident set size of this process, in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    // SAFETY: rc == 0 means the struct was filled.
    (rc == 0).then(|| unsafe { usage.assume_init() }.ru_maxrss as u64)
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
        assert!(peak_rss_kib().unwrap() > 0);
        let core = fastest_core().unwrap();
        assert!(core < m.cpu_cores);
    }
}
