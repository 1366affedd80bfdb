//! Device profiles (`devices/*.toml`). Only `local` exists so far; remote profiles (ssh
//! destination, target triple, core to pin) extend [`DeviceKind`].

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// Runs on the machine that runs `bench`.
    Local,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    pub name: String,
    pub kind: DeviceKind,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device profile {file}: {why}")]
    BadProfile { file: String, why: String },
    #[error("no device profile named `{name}` (known: {known})")]
    Unknown { name: String, known: String },
}

/// The profiles shipped in the repository's `devices/` folder, compiled in.
const BUILTIN: &[(&str, &str)] = &[(
    "devices/local.toml",
    include_str!("../../../devices/local.toml"),
)];

pub fn parse(file: &str, text: &str) -> Result<DeviceProfile, DeviceError> {
    toml::from_str(text).map_err(|e| DeviceError::BadProfile {
        file: file.to_string(),
        why: e.message().to_string(),
    })
}

pub fn builtin() -> Result<Vec<DeviceProfile>, DeviceError> {
    BUILTIN
        .iter()
        .map(|(file, text)| parse(file, text))
        .collect()
}

pub fn find(name: &str) -> Result<DeviceProfile, DeviceError> {
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
    fn local_profile_loads() {
        assert_eq!(find("local").unwrap().kind, DeviceKind::Local);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let err = parse("devices/x.toml", "name = \"x\"\nkind = \"local\"\n").unwrap_err();
        assert!(
            err.to_string().contains("devices/x.toml") && err.to_string().contains("description"),
            "{err}"
        );
        let err = find("odroid-n2").unwrap_err().to_string();
        assert!(err.contains("odroid-n2") && err.contains("local"), "{err}");
    }
}
