//! Entering a network namespace safely.
//!
//! setns(2) changes only the calling thread, so this module never switches a tokio
//! worker: code runs in a namespace on a dedicated std thread ([`Namespace::run`]), and
//! processes enter it in the child between fork and exec ([`Namespace::command`]).
//! A netlink socket stays bound to the namespace it was opened in, so
//! [`Namespace::rtnetlink`] opens one on a throwaway thread inside the namespace and the
//! returned handle is then usable from any task.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sched::CloneFlags;

/// Directory where named network namespaces are bind-mounted (as `ip netns` does).
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace (a bind mount under /run/netns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Full name, as `ip netns list` shows it.
    pub name: String,
    /// Path of the bind mount, e.g. `/run/netns/<name>`.
    pub path: PathBuf,
}

/// An rtnetlink handle bound to one namespace, with the task that drives its socket.
/// Dropping it closes the socket (which otherwise keeps the namespace alive).
#[derive(Debug)]
pub struct NetlinkHandle {
    /// The handle: clone it freely; requests go to the namespace it was opened in.
    pub handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NetlinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Namespace {
    /// The namespace called `name` under [`NETNS_DIR`] (it need not exist yet).
    pub fn named(name: &str) -> Namespace {
        Namespace {
            name: name.to_string(),
            path: Path::new(NETNS_DIR).join(name),
        }
    }

    /// Opens the namespace file (an fd that setns(2) accepts).
    pub fn open(&self) -> anyhow::Result<File> {
        self.handle()?
            .file()
            .try_clone()
            .with_context(|| format!("cannot duplicate the fd of {}", self.path.display()))
    }

    /// Opens the namespace as a netns-rs handle (the crate's `NetNs`), whose `enter`
    /// switches the calling thread into it.
    ///
    /// Creation stays in `create`: netns-rs creates a namespace on a thread that exits
    /// at once (we need that thread to open the netlink socket too), and reuses an
    /// existing name instead of failing.
    pub fn handle(&self) -> anyhow::Result<netns_rs::NetNs> {
        netns_rs::get_from_path(&self.path).with_context(|| {
            format!(
                "cannot open network namespace {} (was it removed? `ip netns list` shows what exists)",
                self.path.display()
            )
        })
    }

    /// Runs `f` on a fresh std thread that has entered this namespace, and returns its result.
    ///
    /// Blocks the calling thread until `f` returns; from async code prefer
    /// [`Namespace::run_async`]. A panic in `f` is re-raised in the caller.
    pub fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let netns = self.handle()?;
        let name = self.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{}", short(&name)))
            .spawn(move || -> anyhow::Result<T> {
                netns
                    .enter()
                    .with_context(|| format!("setns into {name} failed (needs root)"))?;
                Ok(f())
            })
            .context("cannot spawn a thread to enter a namespace")?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Like [`Namespace::run`], but awaits the thread instead of blocking the caller.
    pub async fn run_async<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let netns = self.handle()?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("netns-{}", short(&name)))
            .spawn(move || {
                let result = netns
                    .enter()
                    .with_context(|| format!("setns into {name} failed (needs root)"))
                    .map(|()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
                let _ = tx.send(result);
            })
            .context("cannot spawn a thread to enter a namespace")?;
        match rx.await.context("namespace thread vanished")?? {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// A `tokio::process::Command` whose child enters this namespace before exec.
    ///
    /// The child also gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the thread that
    /// spawned it: spawn from a long-lived thread (a tokio worker, the main thread),
    /// never from a short-lived one such as a [`Namespace::run`] closure or a
    /// `spawn_blocking` task. If the namespace cannot be opened, the returned command
    /// fails at spawn with that error.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        let enter = self.pre_exec_enter(true);
        // SAFETY: `enter` only makes async-signal-safe calls (see `pre_exec_enter`).
        unsafe {
            cmd.pre_exec(enter);
        }
        cmd
    }

    /// Runs a tool (`iptables`, `tc`, `ethtool`...) inside the namespace and waits for it;
    /// returns its stdout, or an error naming the command, the namespace and the tool's
    /// stderr. `package` is the Debian package to install when the tool is missing.
    pub async fn run_tool<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[S],
        package: &str,
    ) -> anyhow::Result<String> {
        let program = program.as_ref();
        let shown = || {
            std::iter::once(program)
                .chain(args.iter().map(AsRef::as_ref))
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let out = self
            .command(program)
            .args(args)
            .output()
            .await
            .with_context(|| {
                format!(
                    "cannot run {} (install it: apt-get install {package})",
                    program.to_string_lossy()
                )
            })?;
        if !out.status.success() {
            anyhow::bail!(
                "`{}` in {} failed: {}",
                shown(),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A std `Command` for one-off helper tools (iptables, tc, ethtool) run in this
    /// namespace (no parent-death signal: it is waited for synchronously).
    pub fn std_command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(program);
        let enter = self.pre_exec_enter(false);
        // SAFETY: `enter` only makes async-signal-safe calls (see `pre_exec_enter`).
        unsafe {
            cmd.pre_exec(enter);
        }
        cmd
    }

    /// The closure a child runs between fork and exec: setns into this namespace (the
    /// file is opened now, in the parent), optionally PR_SET_PDEATHSIG = SIGKILL. It only
    /// calls async-signal-safe functions (setns, prctl, getppid, _exit) and allocates
    /// nothing, as `pre_exec` requires.
    fn pre_exec_enter(
        &self,
        die_with_parent: bool,
    ) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        let fd: Result<OwnedFd, i32> = File::open(&self.path)
            .map(OwnedFd::from)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT));
        let parent = std::process::id() as libc::pid_t;
        move || {
            let fd = match &fd {
                Ok(fd) => fd.as_raw_fd(),
                Err(errno) => return Err(std::io::Error::from_raw_os_error(*errno)),
            };
            // SAFETY: plain syscalls on a valid fd; no memory is shared or allocated.
            unsafe {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if die_with_parent {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent may have died between fork and prctl.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                }
            }
            Ok(())
        }
    }

    /// Opens an rtnetlink socket inside this namespace (on a throwaway thread) and drives
    /// it on the current tokio runtime. Must be called from within a runtime.
    pub fn rtnetlink(&self) -> anyhow::Result<NetlinkHandle> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("Namespace::rtnetlink needs a tokio runtime")?;
        let rt = runtime.clone();
        let (connection, handle) = self.run(move || {
            let _guard = rt.enter();
            rtnetlink::new_connection().map(|(c, h, _)| (c, h))
        })??;
        let task = runtime.spawn(connection);
        Ok(NetlinkHandle { handle, task })
    }

    /// Whether the namespace's bind mount exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }
}

/// A std `Command` whose child runs in a fresh, private, unnamed network namespace
/// (only `lo`, down) that vanishes when it exits: for probes such as "does this kernel
/// have netem" that must not touch any real namespace.
pub fn private_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    // SAFETY: unshare is async-signal-safe and allocates nothing; it runs in the child
    // between fork and exec and gives it a new network namespace (never the host's).
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The part of a namespace name after the run prefix, for thread names (≤15 bytes).
fn short(name: &str) -> String {
    let tail = name.rsplit('-').next().unwrap_or(name);
    tail.chars().take(9).collect()
}

/// Creates a fresh network namespace bound at `ns.path`, on a throwaway thread, and
/// returns it together with an rtnetlink socket opened inside it (so one thread does
/// both; nothing is ever created in the caller's namespace).
pub(crate) fn create(
    ns: &Namespace,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<NetlinkHandle> {
    ensure_netns_dir()?;
    let path = ns.path.clone();
    let rt = runtime.clone();
    let name = ns.name.clone();
    let (connection, handle) = std::thread::Builder::new()
        .name(format!("mkns-{}", short(&name)))
        .spawn(move || -> anyhow::Result<_> {
            File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("cannot create {} (needs root)", path.display()))?;
            let made = (|| -> anyhow::Result<_> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .context("unshare(CLONE_NEWNET) failed (needs root)")?;
                let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
                nix::mount::mount(
                    Some(own.as_str()),
                    &path,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .with_context(|| format!("cannot bind-mount a namespace at {}", path.display()))?;
                let _guard = rt.enter();
                let (c, h, _) = rtnetlink::new_connection()
                    .context("cannot open an rtnetlink socket in the new namespace")?;
                Ok((c, h))
            })();
            if made.is_err() {
                let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(&path);
            }
            made
        })
        .context("cannot spawn a thread to create a namespace")?
        .join()
        .map_err(|_| anyhow::anyhow!("namespace creation thread panicked"))??;
    let task = runtime.spawn(connection);
    Ok(NetlinkHandle { handle, task })
}

/// Removes a namespace's bind mount (the kernel frees the namespace and its links once
/// no process or socket holds it any more).
pub(crate) fn remove(path: &Path) -> anyhow::Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot unmount namespace {}", path.display()))
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Makes sure /run/netns exists and is a shared mount point, as `ip netns add` does,
/// so namespaces created here are visible to `ip netns exec` in other mount namespaces.
fn ensure_netns_dir() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(NETNS_DIR)
            .map_err(|e| format!("cannot create {NETNS_DIR}: {e}"))?;
        let shared = |flags| mount(None::<&str>, NETNS_DIR, Some("none"), flags, None::<&str>);
        if shared(MsFlags::MS_SHARED | MsFlags::MS_REC).is_ok() {
            return Ok(());
        }
        mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("cannot bind-mount {NETNS_DIR} on itself: {e} (needs root)"))?;
        shared(MsFlags::MS_SHARED | MsFlags::MS_REC)
            .map_err(|e| format!("cannot make {NETNS_DIR} a shared mount: {e}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_namespace_lives_under_run_netns() {
        let ns = Namespace::named("l4lb-1-0-lb");
        assert_eq!(ns.path, Path::new("/run/netns/l4lb-1-0-lb"));
        assert_eq!(short(&ns.name), "lb");
        assert_eq!(short("l4lb-1-0-client12345678"), "client123");
    }
}
