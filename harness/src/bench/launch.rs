//! Starting and stopping one path in the balancer's namespace, and waiting until it
//! carries traffic (a real request from the client's namespace, not a sleep).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::configs::{self, HaproxyBalance};
use super::paths::{PathKind, Tools};
use super::proto;
use crate::netns::Namespace;
use crate::process::NsProcess;

/// The port every balancer listens on (the original's).
pub const LB_PORT: u16 = 20000;

/// Which backends a balancer is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One backend: server 1's bulk sink.
    Bulk,
    /// Every server's request/response port.
    Requests,
}

/// Everything a path needs to know about the topology.
#[derive(Debug, Clone)]
pub struct PathEnv {
    /// The client's namespace.
    pub client: Namespace,
    /// The balancer's namespace.
    pub lb: Namespace,
    /// The balancer's address the client connects to.
    pub lb_addr: Ipv4Addr,
    /// The balancer's address on the servers' network (raw's source address).
    pub lb_server_side: Ipv4Addr,
    /// The servers' addresses.
    pub servers: Vec<Ipv4Addr>,
    /// Tools found on this machine.
    pub tools: Tools,
    /// Where configuration files and logs go.
    pub work_dir: PathBuf,
    /// The core a balancer process is pinned to (None: not pinned).
    pub balancer_cpu: Option<usize>,
}

impl PathEnv {
    /// The backends a balancer gets in `mode`.
    pub fn backends(&self, mode: Mode) -> Vec<SocketAddrV4> {
        match mode {
            Mode::Bulk => vec![SocketAddrV4::new(self.servers[0], proto::SINK_PORT)],
            Mode::Requests => self
                .servers
                .iter()
                .map(|ip| SocketAddrV4::new(*ip, proto::RR_PORT))
                .collect(),
        }
    }
}

/// A path that is up.
#[derive(Debug)]
pub struct ActivePath {
    /// Which path.
    pub kind: PathKind,
    /// Where the load generator connects.
    pub target: SocketAddrV4,
    process: Option<NsProcess>,
    nat_rules: Vec<Vec<String>>,
}

impl ActivePath {
    /// Starts `kind` with the backends of `mode`, and waits until it answers.
    pub async fn start(kind: PathKind, mode: Mode, env: &PathEnv) -> anyhow::Result<ActivePath> {
        let backends = env.backends(mode);
        let listen = SocketAddrV4::new(env.lb_addr, LB_PORT);
        let mut active = ActivePath {
            kind,
            target: listen,
            process: None,
            nat_rules: Vec::new(),
        };
        match kind {
            PathKind::Direct => active.target = backends[0],
            PathKind::Nat => {
                let rules = configs::nat_rules(listen, &backends);
                for rule in &rules {
                    if let Err(e) = iptables(env, rule).await {
                        active.stop(env).await.ok();
                        return Err(e);
                    }
                    active.nat_rules.push(rule.clone());
                }
            }
            _ => active.process = Some(spawn_balancer(kind, mode, listen, &backends, env).await?),
        }
        if let Err(e) = active.wait_ready(mode, env).await {
            active.stop(env).await.ok();
            return Err(e);
        }
        Ok(active)
    }

    /// Whether the balancer process still runs (always true for kernel paths).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.process.as_mut().and_then(|p| p.try_exit_code()) {
            Some(status) => Err(format!(
                "{} exited ({status}); {}",
                self.kind.name(),
                self.log_tail()
            )),
            None => Ok(()),
        }
    }

    /// CPU time the balancer process has spent so far; None for kernel paths (their
    /// work is softirq time no process owns) or when it cannot be read.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = self.process.as_ref()?.pid();
        super::cpu::process_cpu_time(pid).ok()
    }

    /// The last lines the balancer printed.
    pub fn log_tail(&self) -> String {
        let Some(p) = &self.process else {
            return String::from("(no process)");
        };
        let tail = p.output_tail(5);
        format!("last output of {}: {}", self.kind.name(), tail.join(" | "))
    }

    /// Stops the path: SIGTERM (then SIGKILL) the process, delete the NAT rules, and end
    /// the TIME_WAIT sockets its connections left in the client and lb namespaces (see
    /// [`clear_time_wait`]).
    pub async fn stop(mut self, env: &PathEnv) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        if let Some(mut p) = self.process.take() {
            if let Err(e) = p.stop(Duration::from_secs(3)).await {
                errors.push(format!("stopping {}: {e:#}", self.kind.name()));
            }
        }
        for rule in configs::nat_delete(&self.nat_rules) {
            if let Err(e) = iptables(env, &rule).await {
                errors.push(format!("{e:#}"));
            }
        }
        for ns in [&env.client, &env.lb] {
            if let Err(e) = clear_time_wait(ns).await {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("; "))
        }
    }

    /// Retries one real exchange from the client's namespace until it works (5 s at most).
    async fn wait_ready(&mut self, mode: Mode, env: &PathEnv) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < Duration::from_secs(5) {
            if let Err(e) = self.check_alive() {
                bail!("{e}");
            }
            let (ns, target) = (env.client.clone(), self.target);
            let servers = env.servers.len();
            let probe =
                tokio::task::spawn_blocking(move || ns.run(move || probe(target, mode, servers)))
                    .await
                    .context("probe thread")??;
            match probe {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{} did not carry a {mode:?} exchange to {} within 5 s: {last}; {}",
            self.kind.name(),
            self.target,
            self.log_tail()
        )
    }
}

/// One blocking exchange: the sink's zero count (bulk), or one valid response (requests).
fn probe(target: SocketAddrV4, mode: Mode, servers: usize) -> std::io::Result<()> {
    let t = Duration::from_millis(500);
    let mut s = TcpStream::connect_timeout(&target.into(), t)?;
    s.set_read_timeout(Some(t))?;
    s.set_write_timeout(Some(t))?;
    match mode {
        Mode::Bulk => {
            s.shutdown(std::net::Shutdown::Write)?;
            let mut count = [0u8; 8];
            s.read_exact(&mut count)?;
            if u64::from_be_bytes(count) != 0 {
                return Err(std::io::Error::other(
                    "sink counted bytes that were never sent",
                ));
            }
        }
        Mode::Requests => {
            s.write_all(&proto::request())?;
            let mut resp = [0u8; proto::RESPONSE_LEN];
            s.read_exact(&mut resp)?;
            if proto::response_server(&resp, servers).is_none() {
                return Err(std::io::Error::other("malformed response"));
            }
        }
    }
    Ok(())
}

/// Runs `iptables ARGS` in the balancer's namespace.
async fn iptables(env: &PathEnv, args: &[String]) -> anyhow::Result<()> {
    let program = env
        .tools
        .iptables
        .clone()
        .context("iptables is not installed")?;
    env.lb.run_tool(&program, args, "iptables").await.map(drop)
}

/// Ends every TCP socket in TIME_WAIT in `ns` (`ss -K`, the kernel's SOCK_DESTROY).
///
/// Why: a path's new-connection workload leaves some 20,000 of them in the lb namespace
/// (a proxy closes first towards its backends) and in the client's, for a minute. The
/// path that runs next would find its port space and hash tables crowded and pay for it
/// in every connect (port search, reuse of old TIME_WAIT entries), while the first path of
/// a round would not: paths would be measured on different kernels' states. Cleared, each
/// path starts from the same empty tables. Run only with no traffic in `ns`.
///
/// Errors if any is left (a kernel without `CONFIG_INET_DIAG_DESTROY` cannot end them).
pub async fn clear_time_wait(ns: &Namespace) -> anyhow::Result<()> {
    let query = ["-H", "-t", "state", "time-wait"];
    let kill: Vec<&str> = std::iter::once("-K").chain(query).collect();
    ns.run_tool("ss", &kill, "iproute2").await?;
    let left = ns.run_tool("ss", &query, "iproute2").await?.lines().count();
    if left > 0 {
        bail!(
            "{left} TIME_WAIT sockets are left in {} after `ss -K`: this kernel cannot end \
             sockets (it needs CONFIG_INET_DIAG_DESTROY), so each path inherits the previous \
             path's",
            ns.name
        );
    }
    Ok(())
}

/// Starts a balancer process in the balancer's namespace, pinned to its core.
async fn spawn_balancer(
    kind: PathKind,
    mode: Mode,
    listen: SocketAddrV4,
    backends: &[SocketAddrV4],
    env: &PathEnv,
) -> anyhow::Result<NsProcess> {
    let tag = format!(
        "{}-{}",
        kind.name(),
        if mode == Mode::Bulk { "bulk" } else { "req" }
    );
    let dir = env.work_dir.join(&tag);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (program, args): (PathBuf, Vec<String>) = match kind {
        PathKind::HaproxyRr | PathKind::HaproxyLc => {
            let balance = if kind == PathKind::HaproxyRr {
                HaproxyBalance::RoundRobin
            } else {
                HaproxyBalance::LeastConn
            };
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, configs::haproxy(listen, backends, balance))?;
            let bin = env
                .tools
                .haproxy
                .clone()
                .context("haproxy is not installed")?;
            (
                bin,
                vec!["-db".into(), "-f".into(), cfg.display().to_string()],
            )
        }
        PathKind::Nginx => {
            let cfg = dir.join("nginx.conf");
            let module = env.tools.nginx_stream.as_deref();
            std::fs::write(&cfg, configs::nginx(listen, backends, module, &dir))?;
            let bin = env.tools.nginx.clone().context("nginx is not installed")?;
            let d = dir.display().to_string();
            let args = [
                "-p",
                &d,
                "-e",
                &format!("{d}/error.log"),
                "-c",
                &cfg.display().to_string(),
            ];
            (bin, args.map(String::from).to_vec())
        }
        PathKind::Raw => {
            let mut args = vec![
                "raw".into(),
                "--source-ip".into(),
                env.lb_server_side.to_string(),
            ];
            for b in backends {
                args.extend(["--backend".into(), b.to_string()]);
            }
            args.push("--install-rst-drop".into());
            (env.tools.l4lb.clone(), args)
        }
        PathKind::Proxy => {
            let mut args = vec!["proxy".into(), "--listen".into(), listen.to_string()];
            for b in backends {
                args.extend(["--backend".into(), b.to_string()]);
            }
            (env.tools.l4lb.clone(), args)
        }
        PathKind::Direct | PathKind::Nat => bail!("{} has no process", kind.name()),
    };
    let (program, args) = match env.balancer_cpu {
        Some(cpu) => {
            let mut a = vec![
                "-c".to_string(),
                cpu.to_string(),
                program.display().to_string(),
            ];
            a.extend(args);
            (PathBuf::from("taskset"), a)
        }
        None => (program, args),
    };
    // Into a file, as in a deployment: read by the harness, a line per connection (`l4lb
    // raw` logs each flow) would cost the load core and slow only the paths that print.
    NsProcess::spawn_with_output_file(&env.lb, &program, &args, &dir.join("output.log"))
        .await
        .with_context(|| format!("starting {} ({})", kind.name(), program.display()))
}
