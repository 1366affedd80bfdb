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
                "qemu-aarch64"
            ]
        );
        assert_eq!(find("local").unwrap().kind, DeviceKind::Local);
        let n2 = find("odroid-n2").unwrap();
        assert!(n2.remote().is_some() && n2.core.is_some() && n2.core_reason.is_some());
        assert!(find("qemu-aarch64").unwrap().emulated);
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
