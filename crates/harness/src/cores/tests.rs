//! Fixture trees written from the boards' published facts (`/proc/cpuinfo` as arm64 Linux
//! prints it, MIDR part numbers from `cputype.h`, clusters and maximum frequencies from the
//! mainline device trees and sbc-bench's board reviews), and this machine.

use std::path::Path;

use super::*;

/// One CPU of a fixture: its MIDR part, cpufreq cluster, maximum kHz and `cpu_capacity`.
struct FixtureCpu {
    part: u32,
    cluster: &'static str,
    max_khz: u32,
    capacity: Option<u32>,
}

fn write_tree(root: &Path, cpus: &[FixtureCpu]) {
    let mut cpuinfo = String::new();
    for (id, cpu) in cpus.iter().enumerate() {
        cpuinfo.push_str(&format!(
            "processor\t: {id}\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n\
             CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n\
             CPU part\t: {:#05x}\nCPU revision\t: 4\n\n",
            cpu.part
        ));
        let dir = root.join(format!("sys/devices/system/cpu/cpu{id}"));
        fs::create_dir_all(dir.join("cpufreq")).unwrap();
        fs::write(
            dir.join("cpufreq/related_cpus"),
            format!("{}\n", cpu.cluster),
        )
        .unwrap();
        fs::write(
            dir.join("cpufreq/cpuinfo_max_freq"),
            format!("{}\n", cpu.max_khz),
        )
        .unwrap();
        if let Some(c) = cpu.capacity {
            fs::write(dir.join("cpu_capacity"), format!("{c}\n")).unwrap();
        }
    }
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(root.join("proc/cpuinfo"), cpuinfo).unwrap();
}

fn cpu(part: u32, cluster: &'static str, max_khz: u32, capacity: Option<u32>) -> FixtureCpu {
    FixtureCpu {
        part,
        cluster,
        max_khz,
        capacity,
    }
}

fn summary(clusters: &[Cluster]) -> Vec<(Vec<usize>, &str)> {
    clusters
        .iter()
        .map(|c| (c.cpus.clone(), c.core_type.as_str()))
        .collect()
}

#[test]
fn odroid_n2_big_a73s_rank_above_the_higher_clocked_a53s() {
    // S922X: cpu0-1 Cortex-A53 (max 1896 MHz), cpu2-5 Cortex-A73 (max 1704 MHz, mainline);
    // no capacity-dmips-mhz in the device tree, so the kernel gives every CPU 1024.
    let dir = tempfile::tempdir().unwrap();
    let little = |_| cpu(0xd03, "0-1", 1_896_000, Some(1024));
    let big = |_| cpu(0xd09, "2-5", 1_704_000, Some(1024));
    let cpus: Vec<FixtureCpu> = (0..2).map(little).chain((2..6).map(big)).collect();
    write_tree(dir.path(), &cpus);
    let probed = probe(dir.path());
    assert_eq!(probed.len(), 6);
    assert_eq!(core_type_of(&probed, 0), Some("Cortex-A53"));
    assert_eq!(core_type_of(&probed, 5), Some("Cortex-A73"));
    assert_eq!(probed[3].cluster, vec![2, 3, 4, 5]);
    assert_eq!(probed[1].max_freq_mhz, Some(1896.0));
    assert_eq!(
        summary(&clusters(&probed)),
        [(vec![2, 3, 4, 5], "Cortex-A73"), (vec![0, 1], "Cortex-A53")]
    );
}

#[test]
fn rk3588_has_two_a76_clusters_ranked_by_capacity_over_the_a55s() {
    // RK3588: cpu0-3 Cortex-A55 (policy0, 1800 MHz), cpu4-5 and cpu6-7 Cortex-A76 (policy4
    // and policy6, 2400 MHz); capacity-dmips-mhz 530 and 1024, scaled by frequency.
    let dir = tempfile::tempdir().unwrap();
    let a55 = |_| cpu(0xd05, "0-3", 1_800_000, Some(414));
    let cpus: Vec<FixtureCpu> = (0..4)
        .map(a55)
        .chain((4..6).map(|_| cpu(0xd0b, "4-5", 2_400_000, Some(1024))))
        .chain((6..8).map(|_| cpu(0xd0b, "6-7", 2_400_000, Some(1024))))
        .collect();
    write_tree(dir.path(), &cpus);
    let probed = probe(dir.path());
    assert_eq!(
        summary(&clusters(&probed)),
        [
            (vec![4, 5], "Cortex-A76"),
            (vec![6, 7], "Cortex-A76"),
            (vec![0, 1, 2, 3], "Cortex-A55")
        ]
    );
    assert_eq!(clusters(&probed)[2].capacity, Some(414));
}

#[test]
fn raspberry_pi_5_is_one_cluster_of_a76s() {
    let dir = tempfile::tempdir().unwrap();
    let cpus: Vec<FixtureCpu> = (0..4).map(|_| cpu(0xd0b, "0-3", 2_400_000, None)).collect();
    write_tree(dir.path(), &cpus);
    let probed = probe(dir.path());
    assert!(probed
        .iter()
        .all(|c| c.core_type == "Cortex-A76" && c.capacity.is_none()));
    assert_eq!(
        summary(&clusters(&probed)),
        [(vec![0, 1, 2, 3], "Cortex-A76")]
    );
}

#[test]
fn unknown_parts_and_missing_sysfs_are_named_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("proc")).unwrap();
    fs::write(
        dir.path().join("proc/cpuinfo"),
        "processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x804\n\n",
    )
    .unwrap();
    let probed = probe(dir.path());
    assert_eq!(probed[0].core_type, "ARM part 0x51:0x804");
    assert_eq!((probed[0].capacity, probed[0].max_freq_mhz), (None, None));
    assert_eq!(probed[0].cluster, vec![0]);
    assert!(probe(&dir.path().join("nowhere")).is_empty());
}

#[test]
fn a_profile_that_disagrees_with_the_probe_gets_a_warning_per_fault() {
    let dir = tempfile::tempdir().unwrap();
    let cpus: Vec<FixtureCpu> = (0..2)
        .map(|_| cpu(0xd03, "0-1", 1_896_000, None))
        .chain((2..6).map(|_| cpu(0xd09, "2-5", 1_704_000, None)))
        .collect();
    write_tree(dir.path(), &cpus);
    let probed = probe(dir.path());
    let n2 = mobilebench_devices::find("odroid-n2").unwrap();
    assert_eq!(
        check_clusters("odroid-n2", &n2.clusters, &probed),
        Vec::<String>::new()
    );
    let spec = |class: &str, cores: &str, core_type: &str| ClusterSpec {
        class: class.into(),
        cores: cores.into(),
        core_type: core_type.into(),
    };
    let wrong = [
        spec("big", "1-5", "Cortex-A73"),
        spec("little", "0,6", "Cortex-A53"),
    ];
    let warnings = check_clusters("n2-wrong", &wrong, &probed);
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(
        warnings[0].contains("core 1 is a Cortex-A53"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("core 1 shares its cpufreq policy with cores [0, 1]"),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[2].contains("the device has no core 6"),
        "{}",
        warnings[2]
    );
    assert!(
        warnings[3].contains("core 0 shares its cpufreq policy"),
        "{}",
        warnings[3]
    );
    assert!(warnings
        .iter()
        .all(|w| w.starts_with("device profile n2-wrong: cluster")));
}

#[test]
fn this_machine_reports_every_cpu_with_its_model_name() {
    let probed = probe(Path::new("/"));
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        probed.len() >= online,
        "{} CPUs probed, {online} online",
        probed.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        let brand = crate::probe::Machine::probe().cpu_brand;
        assert!(
            probed.iter().all(|c| c.core_type == brand),
            "{probed:?} vs {brand}"
        );
    }
    #[cfg(target_arch = "aarch64")]
    assert!(probed.iter().all(|c| !c.core_type.is_empty()));
}
