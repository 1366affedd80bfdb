//! Which kind of core each CPU is, and how the CPUs group into clusters: on ARM the MIDR
//! part number `/proc/cpuinfo` prints per processor ("CPU implementer", "CPU part"),
//! `cpu_capacity`, and the cpufreq policy a CPU shares (`related_cpus`, its cluster) with its
//! maximum frequency; on x86 the model name. Everything is read under a root directory, `/`
//! on a machine and a fixture tree in tests.

use std::fs;
use std::path::Path;

use mobilebench_devices::{parse_cpu_list, ClusterSpec};

/// One logical CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Cpu {
    pub id: usize,
    /// `Cortex-A73`, an x86 model name, or `ARM part 0x41:0xd4f` for a part not in the table.
    pub core_type: String,
    /// `cpu_capacity` (1024 = the fastest core), where the kernel gives it.
    pub capacity: Option<u32>,
    pub max_freq_mhz: Option<f64>,
    /// The CPUs of its cpufreq policy, itself included (itself alone when unknown).
    pub cluster: Vec<usize>,
}

/// CPUs that share a cpufreq policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub cpus: Vec<usize>,
    /// Its CPUs' core types, joined by `+` if they differ.
    pub core_type: String,
    pub capacity: Option<u32>,
    pub max_freq_mhz: Option<f64>,
}

/// ARM Ltd. (implementer 0x41) part numbers, from Linux `arch/arm64/include/asm/cputype.h`,
/// with the core's tier: 0 the small in-order cores (A35, A53, A55, A510, A520), 1 the big
/// out-of-order ones, 2 the X series.
const ARM_PARTS: &[(u32, &str, u8)] = &[
    (0xd03, "Cortex-A53", 0),
    (0xd04, "Cortex-A35", 0),
    (0xd05, "Cortex-A55", 0),
    (0xd07, "Cortex-A57", 1),
    (0xd08, "Cortex-A72", 1),
    (0xd09, "Cortex-A73", 1),
    (0xd0a, "Cortex-A75", 1),
    (0xd0b, "Cortex-A76", 1),
    (0xd0c, "Neoverse-N1", 1),
    (0xd0d, "Cortex-A77", 1),
    (0xd40, "Neoverse-V1", 1),
    (0xd41, "Cortex-A78", 1),
    (0xd44, "Cortex-X1", 2),
    (0xd46, "Cortex-A510", 0),
    (0xd47, "Cortex-A710", 1),
    (0xd48, "Cortex-X2", 2),
    (0xd49, "Neoverse-N2", 1),
    (0xd4d, "Cortex-A715", 1),
    (0xd4e, "Cortex-X3", 2),
    (0xd4f, "Neoverse-V2", 1),
    (0xd80, "Cortex-A520", 0),
    (0xd81, "Cortex-A720", 1),
    (0xd82, "Cortex-X4", 2),
];

/// The core's name for an MIDR implementer and part.
pub fn arm_core_name(implementer: u32, part: u32) -> String {
    ARM_PARTS
        .iter()
        .find(|(p, ..)| implementer == 0x41 && *p == part)
        .map_or_else(
            || format!("ARM part {implementer:#x}:{part:#x}"),
            |(_, name, _)| name.to_string(),
        )
}

/// The tier of an ARM core named by [`arm_core_name`] (`None`: not an ARM core in the table).
fn arm_tier(core_type: &str) -> Option<u8> {
    ARM_PARTS
        .iter()
        .find(|(_, name, _)| *name == core_type)
        .map(|(.., tier)| *tier)
}

fn read(root: &Path, path: &str) -> Option<String> {
    fs::read_to_string(root.join(path))
        .ok()
        .map(|s| s.trim().to_string())
}

fn hex_or_decimal(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// Every processor `/proc/cpuinfo` under `root` lists, with what sysfs says about it.
pub fn probe(root: &Path) -> Vec<Cpu> {
    let cpuinfo = read(root, "proc/cpuinfo").unwrap_or_default();
    let mut cpus = Vec::new();
    for block in cpuinfo.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let Some(id) = field("processor").and_then(|p| p.parse::<usize>().ok()) else {
            continue;
        };
        let arm = field("CPU implementer")
            .and_then(|i| hex_or_decimal(&i))
            .zip(field("CPU part").and_then(|p| hex_or_decimal(&p)));
        let core_type = match arm {
            Some((implementer, part)) => arm_core_name(implementer, part),
            None => field("model name").unwrap_or_else(|| "unknown".into()),
        };
        let cpu_dir = format!("sys/devices/system/cpu/cpu{id}");
        cpus.push(Cpu {
            id,
            core_type,
            capacity: read(root, &format!("{cpu_dir}/cpu_capacity")).and_then(|c| c.parse().ok()),
            max_freq_mhz: read(root, &format!("{cpu_dir}/cpufreq/cpuinfo_max_freq"))
                .and_then(|k| k.parse::<f64>().ok())
                .map(|khz| khz / 1000.0),
            cluster: read(root, &format!("{cpu_dir}/cpufreq/related_cpus"))
                .and_then(|l| parse_cpu_list(&l.replace(' ', ",")))
                .filter(|l| l.contains(&id))
                .unwrap_or_else(|| vec![id]),
        });
    }
    cpus
}

/// The clusters of `cpus`, fastest first: by capacity where the kernel gives different ones
/// (equal capacities prove nothing: the kernel gives every CPU 1024 when the device tree
/// lacks them), then by the ARM core's tier (an ODROID-N2's A53s clock higher than its
/// A73s), then by maximum frequency.
pub fn clusters(cpus: &[Cpu]) -> Vec<Cluster> {
    let mut out: Vec<Cluster> = Vec::new();
    for cpu in cpus {
        if out.iter().any(|c| c.cpus.contains(&cpu.id)) {
            continue;
        }
        let members: Vec<&Cpu> = cpus
            .iter()
            .filter(|c| cpu.cluster.contains(&c.id))
            .collect();
        let mut types: Vec<&str> = Vec::new();
        for m in &members {
            if !types.contains(&m.core_type.as_str()) {
                types.push(&m.core_type);
            }
        }
        out.push(Cluster {
            cpus: members.iter().map(|c| c.id).collect(),
            core_type: types.join("+"),
            capacity: members.iter().filter_map(|c| c.capacity).max(),
            max_freq_mhz: members
                .iter()
                .filter_map(|c| c.max_freq_mhz)
                .reduce(f64::max),
        });
    }
    let capacities_differ = out
        .iter()
        .filter_map(|c| c.capacity)
        .any(|c| Some(c) != out[0].capacity);
    out.sort_by(|a, b| {
        let key = |c: &Cluster| {
            let capacity = if capacities_differ {
                c.capacity.unwrap_or(0)
            } else {
                0
            };
            let tier = c
                .core_type
                .split('+')
                .filter_map(arm_tier)
                .max()
                .unwrap_or(0);
            (capacity, tier, c.max_freq_mhz.unwrap_or(0.0))
        };
        let (ka, kb) = (key(a), key(b));
        (kb.0, kb.1)
            .cmp(&(ka.0, ka.1))
            .then(kb.2.total_cmp(&ka.2))
            .then(a.cpus.cmp(&b.cpus))
    });
    out
}

/// The core type of CPU `id`, if the probe found it.
pub fn core_type_of(cpus: &[Cpu], id: usize) -> Option<&str> {
    cpus.iter()
        .find(|c| c.id == id)
        .map(|c| c.core_type.as_str())
}

/// Where a device profile's claimed clusters disagree with the probe, one line each (empty
/// when they agree): a core of another type, a core the device does not have, a claimed
/// cluster that is not one cpufreq policy's CPUs or a union of them.
pub fn check_clusters(device: &str, claimed: &[ClusterSpec], probed: &[Cpu]) -> Vec<String> {
    let mut warnings = Vec::new();
    for spec in claimed {
        let cpus = spec.cpus();
        let label = format!(
            "device profile {device}: cluster `{}` (cores {}, {})",
            spec.class, spec.cores, spec.core_type
        );
        for &id in &cpus {
            match core_type_of(probed, id) {
                None => warnings.push(format!("{label}: the device has no core {id}")),
                Some(found) if found != spec.core_type => {
                    warnings.push(format!("{label}: the probe found core {id} is a {found}"))
                }
                Some(_) => {}
            }
        }
        let split = probed
            .iter()
            .filter(|c| cpus.contains(&c.id))
            .find(|c| c.cluster.iter().any(|other| !cpus.contains(other)));
        if let Some(cpu) = split {
            warnings.push(format!(
                "{label}: core {} shares its cpufreq policy with cores {:?}, not all claimed",
                cpu.id, cpu.cluster
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests;
