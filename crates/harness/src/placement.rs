//! Which cores a pair runs on: `--core`, `--cores SET`, `--core-class CLASS`, or by default
//! the fastest cores; `N` threads take the first `N` of the choice, fastest first.

use mobilebench_devices::{parse_cpu_list, ClusterSpec};
use mobilebench_results::RunManifest;

use crate::affinity::format_cpu_list;
use crate::cores::{clusters, Cluster, Cpu};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreChoice {
    /// The fastest cores.
    Fastest,
    /// `--core C`: one core (one thread only).
    Core(usize),
    /// `--cores SET`.
    Set(Vec<usize>),
    /// `--core-class CLASS` (`big`, `little`, or a class the device profile names).
    Class(String),
}

impl CoreChoice {
    pub fn of(m: &RunManifest) -> Result<CoreChoice, String> {
        CoreChoice::from_options(m.core, m.cores.as_deref(), m.core_class.as_deref())
    }

    /// From `--core`, `--cores` and `--core-class` (the first given wins, in reverse order).
    pub fn from_options(
        core: Option<usize>,
        cores: Option<&str>,
        class: Option<&str>,
    ) -> Result<CoreChoice, String> {
        Ok(match (cores, class, core) {
            (Some(set), _, _) => CoreChoice::Set(
                parse_cpu_list(set)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        format!("--cores `{set}`: expected a CPU list such as `2-5` or `0,2`")
                    })?,
            ),
            (None, Some(class), _) => CoreChoice::Class(class.to_string()),
            (None, None, Some(core)) => CoreChoice::Core(core),
            (None, None, None) => CoreChoice::Fastest,
        })
    }
}

/// Whether the clusters differ at all (a machine of equal cores has no big or little ones).
fn alike(clusters: &[Cluster]) -> bool {
    clusters.windows(2).all(|w| {
        (&w[0].core_type, w[0].capacity, w[0].max_freq_mhz)
            == (&w[1].core_type, w[1].capacity, w[1].max_freq_mhz)
    })
}

/// The cores `threads` threads run on, fastest first (the measuring thread takes the first):
/// from the choice, the device profile's claimed clusters, the probed CPUs and the cores this
/// process may use (`allowed`, empty when unknown).
pub fn core_set(
    threads: u32,
    choice: &CoreChoice,
    claimed: &[ClusterSpec],
    cpus: &[Cpu],
    allowed: &[usize],
) -> Result<Vec<usize>, String> {
    let threads = threads.max(1) as usize;
    let ranked_clusters = clusters(cpus);
    // Every usable core, fastest cluster first, the highest index first within one (the
    // default core of one-thread runs, unchanged).
    let usable = |c: &usize| allowed.is_empty() || allowed.contains(c);
    let mut ranked: Vec<usize> = Vec::new();
    for cluster in &ranked_clusters {
        let mut members: Vec<usize> = cluster.cpus.iter().copied().filter(usable).collect();
        members.sort_unstable_by(|a, b| b.cmp(a));
        ranked.extend(members);
    }
    if alike(&ranked_clusters) {
        // Equal clusters (or one CPU per policy): the highest index first, core 0 (which
        // takes most interrupts) last.
        ranked.sort_unstable_by(|a, b| b.cmp(a));
    }
    if ranked.is_empty() {
        ranked = allowed.iter().rev().copied().collect();
    }
    let in_rank_order = |set: &[usize]| -> Vec<usize> {
        let mut out: Vec<usize> = ranked.iter().copied().filter(|c| set.contains(c)).collect();
        // Cores the probe did not see keep the order given.
        out.extend(set.iter().copied().filter(|c| !ranked.contains(c)));
        out
    };
    let (pool, what): (Vec<usize>, String) = match choice {
        CoreChoice::Fastest => (ranked.clone(), "this machine".into()),
        CoreChoice::Core(c) => {
            if threads > 1 {
                return Err(format!(
                    "--core {c} is one core and --threads asks for {threads}: give a set with --cores (e.g. --cores {c}-{})",
                    c + threads - 1
                ));
            }
            (vec![*c], format!("--core {c}"))
        }
        CoreChoice::Set(set) => {
            if let Some(c) = set
                .iter()
                .find(|c| !allowed.is_empty() && !allowed.contains(c))
            {
                return Err(format!(
                    "--cores {}: core {c} is not one this process may use ({})",
                    format_cpu_list(set),
                    format_cpu_list(allowed)
                ));
            }
            (
                in_rank_order(set),
                format!("--cores {}", format_cpu_list(set)),
            )
        }
        CoreChoice::Class(class) => {
            let from_profile = claimed.iter().find(|c| &c.class == class);
            let set = match (from_profile, class.as_str()) {
                (Some(spec), _) => parse_cpu_list(&spec.cores).unwrap_or_default(),
                (None, "big" | "little") if ranked_clusters.is_empty() => {
                    return Err(format!(
                        "--core-class {class}: this machine's clusters are unknown (no /proc/cpuinfo or cpufreq) and its profile claims none"
                    ))
                }
                (None, "big" | "little") if alike(&ranked_clusters) => {
                    if class == "little" {
                        return Err("--core-class little: this machine's cores are all alike (one core type, capacity and maximum frequency): it has no little cores".into());
                    }
                    ranked.clone()
                }
                (None, "big") => ranked_clusters[0].cpus.clone(),
                (None, "little") => ranked_clusters[ranked_clusters.len() - 1].cpus.clone(),
                (None, _) => {
                    let known: Vec<&str> = claimed.iter().map(|c| c.class.as_str()).collect();
                    return Err(format!(
                        "--core-class {class}: unknown class (`big`, `little`{})",
                        known
                            .iter()
                            .filter(|k| !["big", "little"].contains(k))
                            .map(|k| format!(", `{k}`"))
                            .collect::<String>()
                    ));
                }
            };
            (
                in_rank_order(&set),
                format!("--core-class {class} (cores {})", format_cpu_list(&set)),
            )
        }
    };
    if pool.len() < threads {
        return Err(format!(
            "--threads {threads} needs {threads} cores; {what} has {}",
            pool.len()
        ));
    }
    Ok(pool[..threads].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(id: usize, core_type: &str, freq: f64, cluster: &[usize]) -> Cpu {
        Cpu {
            id,
            core_type: core_type.into(),
            capacity: None,
            max_freq_mhz: Some(freq),
            cluster: cluster.to_vec(),
        }
    }

    /// An ODROID-N2: A53 cores 0-1 (1896 MHz), A73 cores 2-5 (1704 MHz).
    fn odroid() -> Vec<Cpu> {
        let little = [0, 1];
        let big = [2, 3, 4, 5];
        (0..2)
            .map(|i| cpu(i, "Cortex-A53", 1896.0, &little))
            .chain((2..6).map(|i| cpu(i, "Cortex-A73", 1704.0, &big)))
            .collect()
    }

    fn spec(class: &str, cores: &str) -> ClusterSpec {
        ClusterSpec {
            class: class.into(),
            cores: cores.into(),
            core_type: String::new(),
        }
    }

    #[test]
    fn the_default_takes_the_fastest_cores_big_cluster_first() {
        let cpus = odroid();
        let set = |n| core_set(n, &CoreChoice::Fastest, &[], &cpus, &[]).unwrap();
        assert_eq!(set(1), vec![5]);
        assert_eq!(set(2), vec![5, 4]);
        assert_eq!(set(6), vec![5, 4, 3, 2, 1, 0]);
        let err = core_set(7, &CoreChoice::Fastest, &[], &cpus, &[]).unwrap_err();
        assert!(err.contains("needs 7 cores"), "{err}");
    }

    #[test]
    fn core_classes_come_from_the_profile_or_the_probed_clusters() {
        let cpus = odroid();
        let class = |c: &str, claimed: &[ClusterSpec], n| {
            core_set(n, &CoreChoice::Class(c.into()), claimed, &cpus, &[])
        };
        assert_eq!(class("big", &[], 4).unwrap(), vec![5, 4, 3, 2]);
        assert_eq!(class("little", &[], 2).unwrap(), vec![1, 0]);
        assert!(class("little", &[], 3).unwrap_err().contains("has 2"));
        let claimed = [
            spec("little", "0-1"),
            spec("big", "2-5"),
            spec("prime", "5"),
        ];
        assert_eq!(class("prime", &claimed, 1).unwrap(), vec![5]);
        assert!(class("mid", &claimed, 1).unwrap_err().contains("`prime`"));
    }

    #[test]
    fn a_machine_of_equal_cores_has_big_cores_and_no_little_ones() {
        let cpus: Vec<Cpu> = (0..2).map(|i| cpu(i, "Xeon", 2000.0, &[i])).collect();
        let big = core_set(2, &CoreChoice::Class("big".into()), &[], &cpus, &[]).unwrap();
        assert_eq!(big, vec![1, 0]);
        let err = core_set(1, &CoreChoice::Class("little".into()), &[], &cpus, &[]).unwrap_err();
        assert!(err.contains("all alike"), "{err}");
    }

    #[test]
    fn a_given_set_is_checked_and_ordered_fastest_first() {
        let cpus = odroid();
        let set = CoreChoice::Set(vec![1, 2, 3]);
        assert_eq!(core_set(2, &set, &[], &cpus, &[]).unwrap(), vec![3, 2]);
        assert_eq!(core_set(3, &set, &[], &cpus, &[]).unwrap(), vec![3, 2, 1]);
        let err = core_set(2, &set, &[], &cpus, &[0, 1, 2]).unwrap_err();
        assert!(err.contains("core 3 is not one"), "{err}");
        let err = core_set(2, &CoreChoice::Core(4), &[], &cpus, &[]).unwrap_err();
        assert!(err.contains("--cores 4-5"), "{err}");
        assert_eq!(
            core_set(1, &CoreChoice::Core(4), &[], &cpus, &[]).unwrap(),
            vec![4]
        );
    }
}
