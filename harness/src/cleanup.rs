//! Removing namespaces: a run's own teardown, and sweeping what crashed runs left behind.
//!
//! Only names with this project's prefix (`l4lb-<pid>-<n>-<role>`) are ever touched.
//! [`sweep`] with [`SweepScope::DeadRuns`] removes namespaces whose creating process is
//! gone (safe while other runs are live); [`SweepScope::All`] removes every `l4lb-`
//! namespace (`l4lb topo down`). Removing a namespace first kills every process inside
//! it, then unmounts it; the kernel drops its links once nothing holds it.
//!
//! Ctrl-C: every live topology registers its namespaces in a process-wide [`registry`];
//! [`install_signal_teardown`] tears them all down on SIGINT/SIGTERM, then exits.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::netns::{Namespace, NETNS_DIR};
use names::parse_name;

/// The spelling of this project's namespace names, `l4lb-<pid>-<n>-<role>`: topology
/// makes them, sweeping reads them back.
pub mod names {
    /// The prefix of run `n` of process `pid`.
    pub fn prefix(pid: u32, n: u64) -> String {
        format!("l4lb-{pid}-{n}-")
    }

    /// Parses `l4lb-<pid>-<n>-<role>` into (pid, n, role); None for other names.
    pub fn parse_name(name: &str) -> Option<(u32, u64, &str)> {
        let rest = name.strip_prefix("l4lb-")?;
        let (pid, rest) = rest.split_once('-')?;
        let (n, role) = rest.split_once('-')?;
        if role.is_empty() {
            return None;
        }
        Some((pid.parse().ok()?, n.parse().ok()?, role))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_round_trip() {
            let p = prefix(4242, 7);
            assert_eq!(p, "l4lb-4242-7-");
            assert_eq!(
                parse_name(&format!("{p}client3")),
                Some((4242, 7, "client3"))
            );
            assert_eq!(parse_name("l4lb-4242-7-"), None);
            assert_eq!(parse_name("l4lb-x-7-lb"), None);
            assert_eq!(parse_name("other-1-2-lb"), None);
            assert_eq!(parse_name("l4lb-12-3"), None);
        }
    }
}

/// Which leftover namespaces [`sweep`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepScope {
    /// `l4lb-<pid>-*` namespaces whose pid is no longer alive.
    DeadRuns,
    /// Every `l4lb-` namespace, live runs included.
    All,
}

/// One namespace [`sweep`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The namespace name.
    pub name: String,
    /// Pids of the processes killed inside it.
    pub killed: Vec<u32>,
}

/// How long killed processes get to leave a namespace before teardown goes on anyway.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Names under /run/netns (all of them, not only ours).
pub fn list_namespaces() -> anyhow::Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {NETNS_DIR}")),
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// This project's namespaces: (name, owner pid, whether that pid is alive).
pub fn project_namespaces() -> anyhow::Result<Vec<(String, u32, bool)>> {
    Ok(list_namespaces()?
        .into_iter()
        .filter_map(|name| {
            let (pid, _, _) = parse_name(&name)?;
            Some((name, pid, pid_alive(pid)))
        })
        .collect())
}

/// Whether a process (not a thread of another process) with this pid exists; zombies
/// count as gone.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status_says_alive(&status, pid)
}

/// Parses /proc/<pid>/status: alive if its thread-group id is `pid` and it is no zombie.
fn status_says_alive(status: &str, pid: u32) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let tgid_ok = field("Tgid:").is_some_and(|t| t == pid.to_string());
    let zombie = field("State:").is_some_and(|s| s.starts_with('Z') || s.starts_with('X'));
    tgid_ok && !zombie
}

/// Removes leftover namespaces in `scope`, killing processes inside them first.
/// Returns what it removed; errors on some namespaces do not stop the others.
pub fn sweep(scope: SweepScope) -> anyhow::Result<Vec<Removed>> {
    let targets: Vec<Namespace> = project_namespaces()?
        .into_iter()
        .filter(|(_, _, alive)| scope == SweepScope::All || !alive)
        .map(|(name, _, _)| Namespace::named(&name))
        .collect();
    let inodes = namespace_inodes(&targets);
    let procs = processes_in(&inodes.iter().map(|(_, id)| *id).collect());
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for ns in &targets {
        let id = inodes
            .iter()
            .find(|(n, _)| n == &ns.name)
            .map(|(_, id)| *id);
        let killed: Vec<u32> = procs
            .iter()
            .filter(|(_, pid_ns)| Some(*pid_ns) == id)
            .map(|(pid, _)| *pid)
            .collect();
        let errs = remove_namespaces(std::slice::from_ref(ns));
        if errs.is_empty() {
            removed.push(Removed {
                name: ns.name.clone(),
                killed,
            });
        }
        errors.extend(errs);
    }
    combine_errors("sweeping leftover namespaces", errors)?;
    Ok(removed)
}

type NsId = (u64, u64);

fn ns_id(path: &Path) -> Option<NsId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn namespace_inodes(namespaces: &[Namespace]) -> Vec<(String, NsId)> {
    namespaces
        .iter()
        .filter_map(|ns| ns_id(&ns.path).map(|id| (ns.name.clone(), id)))
        .collect()
}

/// Every process (other than this one) whose network namespace is in `ids`.
fn processes_in(ids: &HashSet<NsId>) -> Vec<(u32, NsId)> {
    if ids.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let id = ns_id(Path::new(&format!("/proc/{pid}/ns/net")))?;
            ids.contains(&id).then_some((pid, id))
        })
        .collect()
}

/// Kills every process inside `namespaces`, waits (bounded) for them to die, then
/// unmounts the namespaces. Returns every error met; never stops early.
pub fn remove_namespaces(namespaces: &[Namespace]) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    let ids: HashSet<NsId> = namespace_inodes(namespaces)
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let procs = processes_in(&ids);
    for &(pid, _) in &procs {
        match nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        ) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => errors.push(anyhow::anyhow!(
                "cannot kill pid {pid} inside a namespace: {e}"
            )),
        }
    }
    if !procs.is_empty() {
        let deadline = Instant::now() + KILL_WAIT;
        let mut left = procs;
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            // Gone or a zombie: it no longer holds the namespace, and never runs again.
            left.retain(|(pid, _)| pid_alive(*pid));
        }
        for (pid, _) in left {
            errors.push(anyhow::anyhow!(
                "pid {pid} still runs {KILL_WAIT:?} after SIGKILL (stuck in the kernel?)"
            ));
        }
    }
    for ns in namespaces {
        if let Err(e) = crate::netns::remove(&ns.path) {
            errors.push(e);
        }
    }
    errors
}

/// Ok if `errors` is empty, otherwise one error listing them all under `what`.
pub fn combine_errors(what: &str, errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = errors.iter().map(|e| format!("  - {e:#}")).collect();
    anyhow::bail!(
        "{what}: {} error(s):\n{}\n(`l4lb cleanup` retries leftovers of dead runs)",
        errors.len(),
        list.join("\n")
    )
}

/// Process-wide registry of live topologies, so a signal can tear them all down.
pub mod registry {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use crate::netns::Namespace;

    static NEXT: AtomicU64 = AtomicU64::new(1);
    static LIVE: Mutex<BTreeMap<u64, Vec<Namespace>>> = Mutex::new(BTreeMap::new());

    fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, Vec<Namespace>>> {
        LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the namespaces of a topology being built; returns its registry id.
    pub fn register(namespaces: Vec<Namespace>) -> u64 {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        live().insert(id, namespaces);
        id
    }

    /// Forgets a topology (it has been torn down).
    pub fn unregister(id: u64) {
        live().remove(&id);
    }

    /// Namespaces of every live topology of this process.
    pub fn live_namespaces() -> Vec<Namespace> {
        live().values().flatten().cloned().collect()
    }

    /// Tears down every registered topology now (for signal handlers and fatal exits).
    pub fn teardown_all() -> Vec<anyhow::Error> {
        let all: Vec<Namespace> = std::mem::take(&mut *live())
            .into_values()
            .flatten()
            .collect();
        super::remove_namespaces(&all)
    }
}

/// Resolves when this process gets SIGINT (returns 130) or SIGTERM (returns 143), the
/// shell's exit codes for them. Registering replaces the default "die at once", so the
/// caller gets to tear down. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = i32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        }
    })
}

/// On SIGINT or SIGTERM: tear down every live topology of this process (the
/// [`registry`]), then exit with 130 (SIGINT) or 143 (SIGTERM). Call once, inside a
/// tokio runtime, early in a command that builds topologies (`l4lb run`). Children
/// started with [`crate::netns::Namespace::command`] die with the process anyway
/// (PR_SET_PDEATHSIG). Returns the watcher task.
pub fn install_signal_teardown() -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let signal = shutdown_signal()?;
    Ok(tokio::spawn(async move {
        let code = signal.await;
        let errors = registry::teardown_all();
        if let Err(e) = combine_errors("teardown on signal", errors) {
            eprintln!("l4lb: {e:#}");
        }
        std::process::exit(code);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_and_zombies_are_not_live_processes() {
        let live = "Name:\tl4lb\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\n";
        assert!(status_says_alive(live, 42));
        let thread = "Name:\tl4lb\nState:\tS (sleeping)\nTgid:\t42\nPid:\t43\n";
        assert!(!status_says_alive(thread, 43));
        let zombie = "Name:\tsh\nState:\tZ (zombie)\nTgid:\t44\nPid:\t44\n";
        assert!(!status_says_alive(zombie, 44));
        assert!(pid_alive(std::process::id()));
    }

    #[test]
    fn combined_errors_list_every_failure() {
        assert!(combine_errors("x", vec![]).is_ok());
        let e = combine_errors(
            "tearing down",
            vec![anyhow::anyhow!("a"), anyhow::anyhow!("b")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("2 error(s)") && e.contains("- a") && e.contains("- b"),
            "{e}"
        );
    }
}
