//! CPU placement: the balancer on one core, load generator and backends on another, the
//! same for every path (a fair comparison on a 2-core machine).

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

#[cfg(test)]
mod tests {
    use super::*;

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
