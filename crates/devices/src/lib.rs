//! Device profiles (`devices/*.toml`, compiled in; or any profile file given by path): where
//! a device is reached, what it runs, which core to pin and why.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// Runs on the machine that runs `bench`.
    Local,
    /// Reached over ssh: the runner is cross-built, copied there and run there.
    Ssh,
}

/// How to reach an ssh device. `host` may be an `~/.ssh/config` alias, whose settings apply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTarget {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Private key file (`~` is expanded).
    pub identity: Option<String>,
    /// Extra `-o` options, e.g. `["UserKnownHostsFile=/tmp/known"]`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// What the device runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Rust target triple, e.g. `aarch64-unknown-linux-gnu`.
    pub triple: String,
    /// Runtime wheel platform: `linux-aarch64` or `linux-x86_64`.
    pub platform: String,
    /// Linker for the cross-build [default: cargo's configuration, or `<arch>-linux-gnu-gcc`].
    pub linker: Option<String>,
}

/// A cluster of equal cores as the profile claims it (the probe checks the claim on the
/// device: `/proc/cpuinfo` part numbers and cpufreq policies).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// What `--core-class` calls it: `big`, `little`, `prime`, or `all` on a board of equal
    /// cores.
    pub class: String,
    /// Its CPUs, in the kernel's list format (`2-5`, `0,2`).
    pub cores: String,
    /// The core, as the probe names it (`Cortex-A73`).
    pub core_type: String,
}

impl ClusterSpec {
    /// Its CPUs (checked at parse time).
    pub fn cpus(&self) -> Vec<usize> {
        parse_cpu_list(&self.cores).unwrap_or_default()
    }
}

/// `0-3,6` → `[0, 1, 2, 3, 6]` (the kernel's CPU list format, also `--cores`); `None` if
/// malformed or empty.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    pub name: String,
    pub kind: DeviceKind,
    pub description: String,
    /// The board: SoC, cores, clocks.
    pub board: Option<String>,
    pub ssh: Option<SshTarget>,
    pub target: Option<Target>,
    /// The core to pin [default: the fastest core by maximum frequency].
    pub core: Option<usize>,
    /// Why that core (e.g. "a Cortex-A73, not an A53").
    pub core_reason: Option<String>,
    /// Remote working directory (binaries, runtimes, runs) [default: `~/.cache/mobilebench`,
    /// under the remote user's home: a shared /tmp would let another user plant a library].
    pub work_dir: Option<String>,
    /// Prepended to the remote command, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
    pub run_prefix: Option<String>,
    /// Rows measured here are flagged `emulated`: their timings mean nothing.
    #[serde(default)]
    pub emulated: bool,
    /// The backends this device may run [default: all].
    pub backends: Option<Vec<String>>,
    /// Its clusters of equal cores, fastest first [default: none claimed; the probe still
    /// reports each measured core's type].
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
}

impl DeviceProfile {
    /// The ssh settings, target and work dir of an ssh device (validated at parse time).
    pub fn remote(&self) -> Option<(&SshTarget, &Target, &str)> {
        Some((
            self.ssh.as_ref()?,
            self.target.as_ref()?,
            self.work_dir.as_deref().unwrap_or(DEFAULT_WORK_DIR),
        ))
    }

    pub fn allows(&self, backend: &str) -> bool {
        self.backends
            .as_ref()
            .is_none_or(|b| b.iter().any(|x| x == backend))
    }
}

/// Where an ssh device keeps its files unless its profile says otherwise (`~/` is the remote
/// user's home).
pub const DEFAULT_WORK_DIR: &str = "~/.cache/mobilebench";

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device profile {file}: {why}")]
    BadProfile { file: String, why: String },
    #[error("no device profile named `{name}` (known: {known}; or give a profile file's path)")]
    Unknown { name: String, known: String },
}

/// The profiles shipped in the repository's `devices/` folder, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    (
        "devices/local.toml",
        include_str!("../../../devices/local.toml"),
    ),
    (
        "devices/odroid-n2.toml",
        include_str!("../../../devices/odroid-n2.toml"),
    ),
    (
        "devices/raspberry-pi-4.toml",
        include_str!("../../../devices/raspberry-pi-4.toml"),
    ),
    (
        "devices/raspberry-pi-5.toml",
        include_str!("../../../devices/raspberry-pi-5.toml"),
    ),
    (
        "devices/rock-5b.toml",
        include_str!("../../../devices/rock-5b.toml"),
    ),
    (
        "devices/qemu-aarch64.toml",
        include_str!("../../../devices/qemu-aarch64.toml"),
    ),
];

pub fn parse(file: &str, text: &str) -> Result<DeviceProfile, DeviceError> {
    let bad = |why: String| DeviceError::BadProfile {
        file: file.to_string(),
        why,
    };
    let profile: DeviceProfile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    if profile.kind == DeviceKind::Ssh {
        for (field, present) in [
            ("[ssh] (host, user, port, identity)", profile.ssh.is_some()),
            ("[target] (triple, platform)", profile.target.is_some()),
        ] {
            if !present {
                return Err(bad(format!("an ssh device needs {field}")));
            }
        }
        let platform = &profile.target.as_ref().expect("checked").platform;
        if !["linux-aarch64", "linux-x86_64"].contains(&platform.as_str()) {
            return Err(bad(format!(
                "target.platform `{platform}`: expected linux-aarch64 or linux-x86_64"
            )));
        }
    }
    let mut seen: Vec<usize> = Vec::new();
    for (i, cluster) in profile.clusters.iter().enumerate() {
        let cpus = parse_cpu_list(&cluster.cores).ok_or_else(|| {
            bad(format!(
                "clusters[{i}].cores `{}`: expected a CPU list such as `2-5` or `0,2`",
                cluster.cores
            ))
        })?;
        if let Some(cpu) = cpus.iter().find(|c| seen.contains(c)) {
            return Err(bad(format!("core {cpu} is in two clusters")));
        }
        if profile.clusters[..i]
            .iter()
            .any(|c| c.class == cluster.class)
        {
            return Err(bad(format!("two clusters are called `{}`", cluster.class)));
        }
        seen.extend(cpus);
    }
    Ok(profile)
}

pub fn builtin() -> Result<Vec<DeviceProfile>, DeviceError> {
    BUILTIN
        .iter()
        .map(|(file, text)| parse(file, text))
        .collect()
}

/// A built-in profile by name, or a profile file by path (anything ending in `.toml`).
pub fn find(name: &str) -> Result<DeviceProfile, DeviceError> {
    if name.ends_with(".toml") {
        let text =
            std::fs::read_to_string(Path::new(name)).map_err(|e| DeviceError::BadProfile {
                file: name.to_string(),
                why: e.to_string(),
            })?;
        return parse(name, &text);
    }
    let all = builtin()?;
    let known = all
        .iter()
        .map(|d| d.name.clone())
        .collect::<Vec<_>>()
        .join(", ");
    all.into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| DeviceError::Unknown {
            name: name.to_string(),
            known,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_load() {
        let all = builtin().unwrap();
        let names: Vec<_> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "local",
                "odroid-n2",
                "raspberry-pi-4",
                "raspberry-pi-5",
                "rock-5b",
                "qemu-aarch64"
            ]
        );
        // The boards' clusters, fastest first, as their device trees and the probe give them.
        let classes = |name: &str| -> Vec<(String, Vec<usize>, String)> {
            find(name)
                .unwrap()
                .clusters
                .iter()
                .map(|c| (c.class.clone(), c.cpus(), c.core_type.clone()))
                .collect()
        };
        let c = |class: &str, cpus: &[usize], core: &str| {
            (class.to_string(), cpus.to_vec(), core.to_string())
        };
        assert_eq!(
            classes("odroid-n2"),
            [
                c("big", &[2, 3, 4, 5], "Cortex-A73"),
                c("little", &[0, 1], "Cortex-A53")
            ]
        );
        assert_eq!(
            classes("rock-5b"),
            [
                c("big", &[4, 5, 6, 7], "Cortex-A76"),
                c("little", &[0, 1, 2, 3], "Cortex-A55")
            ]
        );
        assert_eq!(
            classes("raspberry-pi-5"),
            [c("all", &[0, 1, 2, 3], "Cortex-A76")]
        );
        assert_eq!(find("local").unwrap().kind, DeviceKind::Local);
        let n2 = find("odroid-n2").unwrap();
        assert!(n2.remote().is_some() && n2.core.is_some() && n2.core_reason.is_some());
        assert!(find("qemu-aarch64").unwrap().emulated);
    }

    #[test]
    fn clusters_must_be_cpu_lists_of_distinct_cores_and_classes() {
        let profile = |clusters: &str| {
            parse(
                "devices/x.toml",
                &format!("name = \"x\"\nkind = \"local\"\ndescription = \"x\"\n{clusters}"),
            )
        };
        let cluster = |class: &str, cores: &str| {
            format!("[[clusters]]\nclass = \"{class}\"\ncores = \"{cores}\"\ncore_type = \"Cortex-A55\"\n")
        };
        assert!(profile(&(cluster("big", "2-3") + &cluster("little", "0,1"))).is_ok());
        for (bad, why) in [
            (cluster("big", "3-2"), "expected a CPU list"),
            (cluster("big", ""), "expected a CPU list"),
            (
                cluster("big", "0-2") + &cluster("little", "2"),
                "core 2 is in two clusters",
            ),
            (
                cluster("big", "0") + &cluster("big", "1"),
                "two clusters are called `big`",
            ),
        ] {
            let err = profile(&bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("devices/x.toml"), "{err}");
        }
        assert_eq!(parse_cpu_list("0-3,6"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("4\n"), Some(vec![4]));
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let err = parse("devices/x.toml", "name = \"x\"\nkind = \"local\"\n").unwrap_err();
        assert!(
            err.to_string().contains("devices/x.toml") && err.to_string().contains("description"),
            "{err}"
        );
        let err = parse(
            "devices/y.toml",
            "name = \"y\"\nkind = \"ssh\"\ndescription = \"d\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("devices/y.toml") && err.to_string().contains("[ssh]"),
            "{err}"
        );
        let err = parse(
            "devices/z.toml",
            "name = \"z\"\nkind = \"local\"\ndescription = \"d\"\ncolour = 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = find("odroid-x").unwrap_err().to_string();
        assert!(err.contains("odroid-x") && err.contains("local"), "{err}");
    }
}
