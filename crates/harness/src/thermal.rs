//! Thermal discipline between pairs: `--settle` waits until the machine is back where the
//! campaign started — every thermal zone within a margin of its temperature then, and the
//! measured core's frequency cap back at its maximum (the kernel lowers `scaling_max_freq`
//! while it throttles) — up to a timeout, and says what it waited for.
//!
//! Read under a root directory: `/` on a machine, a fixture tree in tests.

use std::fs;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where sysfs is read from.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs { root: "/".into() }
    }
}

/// The temperatures of every thermal zone, by zone directory name.
pub type Temperatures = Vec<(String, f64)>;

impl Sysfs {
    #[cfg(test)]
    pub fn at(root: &Path) -> Sysfs {
        Sysfs { root: root.into() }
    }

    fn read(&self, path: &str) -> Option<String> {
        fs::read_to_string(self.root.join(path))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Every `thermal_zoneN/temp`, in °C, sorted by zone.
    pub fn temperatures(&self) -> Temperatures {
        let Ok(dir) = fs::read_dir(self.root.join("sys/class/thermal")) else {
            return Vec::new();
        };
        let mut zones: Temperatures = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("thermal_zone"))
            .filter_map(|name| {
                let milli: f64 = self
                    .read(&format!("sys/class/thermal/{name}/temp"))?
                    .parse()
                    .ok()?;
                Some((name, milli / 1000.0))
            })
            .collect();
        zones.sort_by(|a, b| a.0.cmp(&b.0));
        zones
    }

    /// `(scaling_max_freq, cpuinfo_max_freq)` of `core`, in kHz.
    fn frequency_cap(&self, core: usize) -> Option<(u64, u64)> {
        let read = |file: &str| {
            self.read(&format!("sys/devices/system/cpu/cpu{core}/cpufreq/{file}"))?
                .parse::<u64>()
                .ok()
        };
        Some((read("scaling_max_freq")?, read("cpuinfo_max_freq")?))
    }
}

/// How `--settle` waits.
#[derive(Debug, Clone, Copy)]
pub struct SettlePolicy {
    /// °C above the campaign's starting temperature a zone may be.
    pub margin_c: f64,
    pub timeout: Duration,
    /// Time between readings.
    pub poll: Duration,
}

/// What one wait found.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub waited: Duration,
    /// The hottest zone before and after the wait.
    pub hottest_before_c: Option<f64>,
    pub hottest_after_c: Option<f64>,
    /// Why the pair ran before the machine settled (the timeout ran out), if it did.
    pub timed_out: Option<String>,
}

fn hottest(t: &Temperatures) -> Option<f64> {
    t.iter().map(|(_, c)| *c).reduce(f64::max)
}

/// Why the machine is not settled now, or `None` if it is.
fn unsettled(sysfs: &Sysfs, start: &Temperatures, core: usize, margin_c: f64) -> Option<String> {
    let now = sysfs.temperatures();
    let mut hot: Vec<String> = Vec::new();
    for (zone, base) in start {
        if let Some((_, c)) = now.iter().find(|(z, _)| z == zone) {
            if *c > base + margin_c {
                hot.push(format!("{zone} at {c:.1} °C (started at {base:.1})"));
            }
        }
    }
    if !hot.is_empty() {
        return Some(format!("{} over the {margin_c} °C margin", hot.join(", ")));
    }
    match sysfs.frequency_cap(core) {
        Some((cap, max)) if cap < max => Some(format!(
            "core {core}'s frequency is capped at {} of {} MHz (throttled)",
            cap / 1000,
            max / 1000
        )),
        _ => None,
    }
}

/// Waits until every zone is within `policy.margin_c` of `start` and `core`'s frequency cap
/// is its maximum, or until the timeout; `sleep` is `std::thread::sleep` outside tests.
pub fn settle(
    sysfs: &Sysfs,
    start: &Temperatures,
    core: usize,
    policy: SettlePolicy,
    mut sleep: impl FnMut(Duration),
) -> Settled {
    let began = Instant::now();
    let mut waited = Duration::ZERO;
    let hottest_before_c = hottest(&sysfs.temperatures());
    let timed_out = loop {
        let Some(why) = unsettled(sysfs, start, core, policy.margin_c) else {
            break None;
        };
        if waited >= policy.timeout {
            break Some(format!(
                "not settled after {} s: {why}",
                policy.timeout.as_secs()
            ));
        }
        sleep(policy.poll);
        // Fake sleeps in tests take no time: count the polls as well as the clock.
        waited = (waited + policy.poll).max(began.elapsed());
    };
    Settled {
        waited,
        hottest_before_c,
        hottest_after_c: hottest(&sysfs.temperatures()),
        timed_out,
    }
}

/// What `--cooldown` and `--settle` do before a pair on `core`: the sleep, then the wait
/// (`None` without `--settle`).
pub fn before_pair(
    policy: &mobilebench_results::ThermalPolicy,
    start: &Temperatures,
    core: usize,
) -> Option<Settled> {
    if policy.cooldown_s > 0 {
        std::thread::sleep(Duration::from_secs(policy.cooldown_s));
    }
    policy.settle.then(|| {
        settle(
            &Sysfs::default(),
            start,
            core,
            SettlePolicy {
                margin_c: policy.settle_margin_c,
                timeout: Duration::from_secs(policy.settle_timeout_s),
                poll: Duration::from_secs(1),
            },
            std::thread::sleep,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, value: impl ToString) {
        let file = root.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, format!("{}\n", value.to_string())).unwrap();
    }

    fn tree(zones: &[f64], cap_khz: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (i, c) in zones.iter().enumerate() {
            let milli = (c * 1000.0) as i64;
            write(
                dir.path(),
                &format!("sys/class/thermal/thermal_zone{i}/temp"),
                milli,
            );
        }
        let cpufreq = "sys/devices/system/cpu/cpu2/cpufreq";
        write(
            dir.path(),
            &format!("{cpufreq}/cpuinfo_max_freq"),
            1_800_000,
        );
        write(dir.path(), &format!("{cpufreq}/scaling_max_freq"), cap_khz);
        dir
    }

    const POLICY: SettlePolicy = SettlePolicy {
        margin_c: 2.0,
        timeout: Duration::from_secs(60),
        poll: Duration::from_secs(5),
    };

    #[test]
    fn waits_while_hot_and_proceeds_once_cool() {
        let dir = tree(&[61.0, 48.0], 1_800_000);
        let sysfs = Sysfs::at(dir.path());
        let start = vec![
            ("thermal_zone0".into(), 50.0),
            ("thermal_zone1".into(), 47.0),
        ];
        // The zone cools by 4 °C per poll: 61 → 57 → 53 → 49, settled on the third.
        let mut temp = 61.0;
        let settled = settle(&sysfs, &start, 2, POLICY, |_| {
            temp -= 4.0;
            write(
                dir.path(),
                "sys/class/thermal/thermal_zone0/temp",
                (temp * 1000.0) as i64,
            );
        });
        assert_eq!(settled.timed_out, None);
        assert_eq!(settled.waited, Duration::from_secs(15));
        assert_eq!(settled.hottest_before_c, Some(61.0));
        assert_eq!(settled.hottest_after_c, Some(49.0));
    }

    #[test]
    fn proceeds_at_once_when_cool_and_times_out_with_the_reason() {
        let start = vec![("thermal_zone0".into(), 50.0)];
        let cool = tree(&[51.5], 1_800_000);
        let settled = settle(&Sysfs::at(cool.path()), &start, 2, POLICY, |_| {
            panic!("slept")
        });
        assert_eq!((settled.waited, settled.timed_out), (Duration::ZERO, None));

        let hot = tree(&[70.0], 1_800_000);
        let mut polls = 0;
        let settled = settle(&Sysfs::at(hot.path()), &start, 2, POLICY, |_| polls += 1);
        assert_eq!(polls, 12, "60 s in polls of 5");
        let why = settled.timed_out.expect("never cooled");
        assert!(
            why.contains("not settled after 60 s") && why.contains("thermal_zone0 at 70.0 °C"),
            "{why}"
        );
    }

    #[test]
    fn a_throttled_core_is_not_settled_even_when_cool() {
        let start = vec![("thermal_zone0".into(), 50.0)];
        let dir = tree(&[50.0], 1_200_000);
        let mut polls = 0;
        let settled = settle(&Sysfs::at(dir.path()), &start, 2, POLICY, |_| {
            polls += 1;
            if polls == 2 {
                write(
                    dir.path(),
                    "sys/devices/system/cpu/cpu2/cpufreq/scaling_max_freq",
                    1_800_000,
                );
            }
        });
        assert_eq!((polls, settled.timed_out), (2, None));
        let capped = tree(&[50.0], 1_200_000);
        let never = settle(&Sysfs::at(capped.path()), &start, 2, POLICY, |_| {});
        let why = never.timed_out.unwrap();
        assert!(why.contains("capped at 1200 of 1800 MHz"), "{why}");
    }

    #[test]
    fn a_machine_without_thermal_zones_or_cpufreq_is_settled() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = Sysfs::at(dir.path());
        assert!(sysfs.temperatures().is_empty());
        let settled = settle(&sysfs, &Vec::new(), 0, POLICY, |_| panic!("slept"));
        assert_eq!(settled.timed_out, None);
    }
}
