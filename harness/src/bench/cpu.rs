//! CPU placement: the balancer on one core, load generator and backends on another, the
//! same for every path (a fair comparison on a 2-core machine); and the CPU time a
//! balancer process spends, so its cost per connection or request can be compared even
//! when the load generator's core, not the balancer's, limits the rate.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Where things run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// Core of the balancer process (None: not pinned).
    pub balancer: Option<usize>,
    /// Core of the load generator and the backends (None: not pinned).
    pub load: Option<usize>,
}

impl Placement {
    /// Balancer on the first allowed core, load on the second; no pinning with fewer than
    /// two (pass no cores to turn pinning off).
    pub fn plan(allowed: &[usize]) -> Placement {
        match allowed {
            [b, l, ..] => Placement {
                balancer: Some(*b),
                load: Some(*l),
            },
            _ => Placement {
                balancer: None,
                load: None,
            },
        }
    }

    /// One sentence for the report.
    pub fn describe(&self) -> String {
        match (self.balancer, self.load) {
            (Some(b), Some(l)) => format!(
                "balancer process (HAProxy, nginx, l4lb) pinned to CPU {b} (taskset); load \
                 generator and backends pinned to CPU {l} (sched_setaffinity); kernel paths \
                 (direct, NAT) forward in softirq on whichever CPU the packet arrives"
            ),
            _ => "not pinned (--no-pin, or fewer than 2 CPUs allowed): the scheduler places \
                  balancer, load and backends"
                .to_string(),
        }
    }
}

/// The cores this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pins the calling thread (and every thread it starts afterwards) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

/// CPU time every thread of process `pid` has spent so far (user and system, including
/// the softirq work the kernel ran on its behalf), from `/proc/PID/task/*/schedstat`
/// (nanoseconds, unlike the 10 ms ticks of `/proc/PID/stat`). Threads that exited
/// are no longer counted, so compare two readings of a process whose threads live on.
pub fn process_cpu_time(pid: u32) -> std::io::Result<std::time::Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += parse_schedstat(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: unexpected contents {text:?}", path.display()),
            )
        })?;
    }
    Ok(std::time::Duration::from_nanos(total))
}

/// The on-CPU nanoseconds of a `schedstat` line ("run_ns wait_ns timeslices").
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// One CPU's time so far, in the kernel's ticks (`/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// The CPU's number.
    pub cpu: usize,
    /// Every tick accounted: user, nice, system, idle, iowait, irq, softirq, steal.
    pub total: u64,
    /// Steal: ticks in which the hypervisor ran something else while this virtual CPU
    /// had work (a VM's CPU taken away, which no program inside can see otherwise).
    pub steal: u64,
}

/// The per-CPU lines of `/proc/stat` (`cpuN user nice system idle iowait irq softirq
/// steal ...`); a line too short to have a steal field is skipped.
pub fn parse_proc_stat(text: &str) -> Vec<CpuTicks> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let cpu = words.next()?.strip_prefix("cpu")?.parse().ok()?;
            let fields: Vec<u64> = words
                .take(8)
                .map(|w| w.parse().ok())
                .collect::<Option<_>>()?;
            (fields.len() == 8).then(|| CpuTicks {
                cpu,
                total: fields.iter().sum(),
                steal: fields[7],
            })
        })
        .collect()
}

/// Every CPU's ticks now (empty when `/proc/stat` cannot be read).
pub fn read_cpu_ticks() -> Vec<CpuTicks> {
    std::fs::read_to_string("/proc/stat")
        .map(|text| parse_proc_stat(&text))
        .unwrap_or_default()
}

/// For each CPU in both readings, the percentage of its time between them that was
/// stolen by the hypervisor (0 for a CPU whose ticks did not move).
pub fn steal_percent(before: &[CpuTicks], after: &[CpuTicks]) -> Vec<(usize, f64)> {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.cpu == a.cpu)?;
            let total = a.total.checked_sub(b.total)?;
            let steal = a.steal.checked_sub(b.steal)?;
            Some((
                a.cpu,
                if total == 0 {
                    0.0
                } else {
                    100.0 * steal as f64 / total as f64
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn proc_stat_gives_each_cpu_s_total_and_steal() {
        let text = "cpu  10 0 10 100 0 0 0 5 0 0\n\
                    cpu0 1 2 3 4 5 6 7 8 9 10\n\
                    cpu1 10 0 10 100 0 0 0 0 0 0\n\
                    cpu2 1 2 3\n\
                    intr 5 6 7\n";
        assert_eq!(
            parse_proc_stat(text),
            vec![
                CpuTicks {
                    cpu: 0,
                    total: 36,
                    steal: 8
                },
                CpuTicks {
                    cpu: 1,
                    total: 120,
                    steal: 0
                },
            ]
        );
    }

    #[test]
    fn steal_is_a_share_of_the_time_between_readings() {
        let t = |cpu, total, steal| CpuTicks { cpu, total, steal };
        let shares = steal_percent(
            &[t(0, 1000, 10), t(1, 500, 0), t(2, 7, 0)],
            &[t(0, 1200, 15), t(1, 500, 0), t(3, 9, 9)],
        );
        assert_eq!(shares, vec![(0, 2.5), (1, 0.0)]);
        assert!(!read_cpu_ticks().is_empty(), "this kernel has /proc/stat");
    }

    #[test]
    fn schedstat_gives_the_run_time() {
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123_456));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn this_process_spends_cpu_time() {
        use nix::time::{clock_gettime, ClockId};
        let thread_cpu =
            || Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap());
        let before = process_cpu_time(std::process::id()).unwrap();
        // Spin until this thread itself has run 20 ms (however busy the machine is).
        let start = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - start < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = process_cpu_time(std::process::id()).unwrap() - before;
        assert!(
            spent >= Duration::from_millis(19),
            "20 ms of this thread's CPU counted as {spent:?}"
        );
    }

    #[test]
    fn two_cores_split_balancer_and_load() {
        let p = Placement::plan(&[0, 1]);
        assert_eq!((p.balancer, p.load), (Some(0), Some(1)));
        assert!(p.describe().contains("CPU 0") && p.describe().contains("CPU 1"));
        let p = Placement::plan(&[2, 5, 7]);
        assert_eq!((p.balancer, p.load), (Some(2), Some(5)));
    }

    #[test]
    fn one_core_is_not_pinned_and_says_so() {
        let p = Placement::plan(&[0]);
        assert_eq!((p.balancer, p.load), (None, None));
        assert!(p.describe().starts_with("not pinned"));
    }
}
