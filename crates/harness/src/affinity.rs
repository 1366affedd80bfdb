//! Where a worker's threads may run and where they did: the whole process confined to the
//! run's core set before any runtime starts, and after the timed loop, for every thread, the
//! cores it is allowed on, the core it last ran on, and how much CPU it burned.

use std::collections::HashMap;
use std::path::Path;

use mobilebench_devices::parse_cpu_list;

/// A thread of this process burned CPU in the timed loop when it used at least this share of
/// the busiest thread's CPU time. Relative, not against the wall clock: on a loaded machine a
/// computing thread gets less of the wall time, never less than its siblings by this much,
/// while a helper that wakes every 100 ms (the progress thread) or a pool thread left idle
/// uses a few percent at most.
const BUSY_SHARE: f64 = 0.25;

/// This process's threads, one folder each.
const TASKS: &str = "/proc/self/task";

/// Confines every thread of this process, those already running included, to `cores`;
/// threads started later inherit the mask of the thread that starts them.
pub fn confine_process(cores: &[usize]) -> Result<(), String> {
    if task_ids(Path::new(TASKS)).is_empty() {
        return set_thread_affinity(0, cores); // no /proc: the calling thread at least
    }
    confine_threads(cores, &[])
}

/// Confines every thread of this process but `except` to `cores`.
pub fn confine_threads(cores: &[usize], except: &[i32]) -> Result<(), String> {
    task_ids(Path::new(TASKS))
        .into_iter()
        .filter(|tid| !except.contains(tid))
        .try_for_each(|tid| set_thread_affinity(tid, cores))
}

/// Sets thread `tid`'s affinity (0: the calling thread); a thread that has ended meanwhile
/// is not an error.
pub(crate) fn set_thread_affinity(tid: i32, cores: &[usize]) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; the set is built from core indices below its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ESRCH) {
                return Ok(()); // the thread ended since the folder was listed
            }
            return Err(format!(
                "cannot confine thread {tid} to cores {}: {}",
                format_cpu_list(cores),
                error
            ));
        }
    }
    Ok(())
}

fn task_ids(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut tids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// One thread as `/proc/<pid>/task/<tid>` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadState {
    pub name: String,
    /// CPU time so far, in ns (the thread's CPU-time clock; else `schedstat` or `stat`'s ticks).
    pub cpu_ns: u64,
    /// The cores it may run on.
    pub allowed: Vec<usize>,
    /// The core it last ran on.
    pub last_cpu: Option<usize>,
}

/// Every thread of this process, by id.
pub fn threads() -> HashMap<i32, ThreadState> {
    let dir = Path::new(TASKS);
    task_ids(dir)
        .into_iter()
        .filter_map(|tid| Some((tid, read_thread(tid, &dir.join(tid.to_string()))?)))
        .collect()
}

/// CPU time of thread `tid` of this process so far, in ns, from its CPU-time clock. The
/// clock is exact and current; `schedstat` is not for a running thread: it moves only at a
/// scheduler tick or switch (every 4 ms at HZ=250), so a thread that computed for 3 ms
/// without either showed none (a third of such loops, measured).
fn thread_cpu_ns(tid: i32) -> Option<u64> {
    // The kernel's clock id for one thread's scheduler CPU time: the negated tid, shifted
    // past the 3 type bits, with the per-thread flag (4) and the "sched" clock (2); it is
    // what glibc's pthread_getcpuclockid builds, for threads of the calling process only.
    clock_ns(((!tid) << 3) | 4 | 2)
}

/// What `clock` reads now, in ns; `None` where it is not a clock of this process.
fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; an unknown clock or thread is an error return.
    let ok = unsafe { libc::clock_gettime(clock, &mut now) } == 0;
    ok.then(|| now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}

fn read_thread(tid: i32, dir: &Path) -> Option<ThreadState> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) state ...`: the name may hold spaces and parentheses; fields follow the last `)`.
    let close = stat.rfind(')')?;
    let name = stat[stat.find('(')? + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: field 3 (state) is fields[0]; utime 14, stime 15, processor 39.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks_ns = 1e9 / clock_ticks_per_second();
    let cpu_ns = thread_cpu_ns(tid)
        .or_else(|| {
            let schedstat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            schedstat.split_whitespace().next()?.parse().ok()
        })
        .or_else(|| Some(((field(14)? + field(15)?) as f64 * ticks_ns) as u64))?;
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
        .unwrap_or_default();
    Some(ThreadState {
        name,
        cpu_ns,
        allowed,
        last_cpu: field(39).map(|c| c as usize),
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// How many threads alive at both snapshots burned CPU between them (see [`BUSY_SHARE`]).
pub fn busy_threads(before: &HashMap<i32, ThreadState>, after: &HashMap<i32, ThreadState>) -> u32 {
    let used: Vec<u64> = after
        .iter()
        .filter_map(|(tid, a)| Some(a.cpu_ns.saturating_sub(before.get(tid)?.cpu_ns)))
        .collect();
    let busiest = used.iter().copied().max().unwrap_or(0);
    if busiest == 0 {
        return 0;
    }
    used.iter()
        .filter(|&&u| u as f64 >= BUSY_SHARE * busiest as f64)
        .count() as u32
}

/// Every way a thread left `cores`: allowed elsewhere, or, having run since `before` (the
/// snapshot at the start of the timed loop), last seen running elsewhere. A thread asleep
/// since before the confinement still shows the core it last ran on then.
pub fn outside(
    threads: &HashMap<i32, ThreadState>,
    before: &HashMap<i32, ThreadState>,
    cores: &[usize],
) -> Vec<String> {
    let mut tids: Vec<&i32> = threads.keys().collect();
    tids.sort_unstable();
    let set = format_cpu_list(cores);
    tids.into_iter()
        .filter_map(|tid| {
            let t = &threads[tid];
            let stray: Vec<usize> = t
                .allowed
                .iter()
                .copied()
                .filter(|c| !cores.contains(c))
                .collect();
            if !stray.is_empty() {
                Some(format!(
                    "thread {tid} ({}) is allowed on cores {} outside the set {set}",
                    t.name,
                    format_cpu_list(&t.allowed)
                ))
            } else {
                let ran = before.get(tid).is_none_or(|b| t.cpu_ns > b.cpu_ns);
                match t.last_cpu {
                    Some(c) if ran && !cores.contains(&c) => Some(format!(
                        "thread {tid} ({}) last ran on core {c}, outside the set {set}",
                        t.name
                    )),
                    _ => None,
                }
            }
        })
        .collect()
}

/// `0-3,6`: the kernel's list format.
pub fn format_cpu_list(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(cpu_ns: u64, allowed: &[usize], last: usize) -> ThreadState {
        ThreadState {
            name: "t".into(),
            cpu_ns,
            allowed: allowed.to_vec(),
            last_cpu: Some(last),
        }
    }

    #[test]
    fn cpu_lists_are_written_as_the_kernel_writes_them() {
        assert_eq!(format_cpu_list(&[3, 0, 1, 2, 6]), "0-3,6");
        assert_eq!(format_cpu_list(&[5]), "5");
        assert_eq!(format_cpu_list(&[]), "");
        assert_eq!(
            parse_cpu_list(&format_cpu_list(&[0, 2, 3])),
            Some(vec![0, 2, 3])
        );
    }

    /// The calling thread's own CPU time, from the clock the C library gives it.
    fn own_cpu_ns() -> u64 {
        clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).expect("every thread has a CPU-time clock")
    }

    #[test]
    fn a_running_thread_shows_all_the_cpu_it_burned_since_the_last_look() {
        // 3 ms of computing is less than a scheduler tick at HZ=250: schedstat showed none
        // of it in a third of such loops. The spin watches the wall clock, not the thread's
        // CPU clock, whose every read would bring schedstat up to date and hide the fault.
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        for _ in 0..20 {
            let before = threads()[&me].cpu_ns;
            let start = own_cpu_ns();
            let wall = std::time::Instant::now();
            while wall.elapsed() < std::time::Duration::from_millis(3) {
                std::hint::spin_loop();
            }
            let seen = threads()[&me].cpu_ns - before;
            let used = own_cpu_ns() - start;
            // `used` also holds the second snapshot's own cost (reading a few /proc files),
            // far below a quarter of the spin.
            assert!(seen + used / 4 >= used, "saw {seen} ns of {used} ns");
        }
    }

    #[test]
    fn busy_threads_are_those_near_the_busiest_and_alive_at_both_ends() {
        let before = HashMap::from([
            (1, thread(0, &[0], 0)),
            (2, thread(100, &[1], 1)),
            (3, thread(0, &[1], 1)),
        ]);
        // 1 and 2 computed; 3 woke now and then; 4 started after the first snapshot.
        let after = HashMap::from([
            (1, thread(1_000_000, &[0], 0)),
            (2, thread(700_100, &[1], 1)),
            (3, thread(20_000, &[1], 1)),
            (4, thread(9_000_000, &[1], 1)),
        ]);
        assert_eq!(busy_threads(&before, &after), 2);
        assert_eq!(busy_threads(&before, &before), 0);
    }

    #[test]
    fn a_thread_allowed_or_seen_outside_the_set_is_named() {
        let before = HashMap::from([
            (10, thread(0, &[1], 1)),
            (11, thread(0, &[0, 1], 1)),
            (12, thread(0, &[1], 0)),
            (13, thread(5, &[1], 0)),
        ]);
        let mut after = before.clone();
        // 12 ran in the loop and was last seen on core 0; 13 slept through it (its last
        // core is from before the confinement).
        after.insert(12, thread(9, &[1], 0));
        let problems = outside(&after, &before, &[1]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("thread 11") && problems[0].contains("0-1"));
        assert!(problems[1].contains("thread 12") && problems[1].contains("last ran on core 0"));
        assert!(outside(&after, &before, &[0, 1]).is_empty());
    }

    #[test]
    fn this_process_is_read_and_confined() {
        let me = threads();
        assert!(!me.is_empty(), "no thread read from /proc/self/task");
        assert!(me
            .values()
            .all(|t| !t.allowed.is_empty() && t.last_cpu.is_some()));
        // Busy work on a thread of its own shows as CPU time.
        let before = threads();
        let spin = std::thread::spawn(|| {
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_millis(50) {
                std::hint::spin_loop();
            }
            let tid = unsafe { libc::gettid() };
            let t = threads();
            (tid, t[&tid].cpu_ns)
        });
        let (tid, cpu) = spin.join().unwrap();
        assert!(!before.contains_key(&tid));
        assert!(cpu >= 20_000_000, "a 50 ms spin used {cpu} ns of CPU");
    }
}
