//! Starting the balancer of a run in the `lb` namespace, whichever it is, and waiting
//! until it serves: ours and HAProxy until their health view shows every backend up,
//! nginx and a user's program without a view until something listens on the port,
//! kernel NAT once its rules are in.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::config::{self, Checks, HaproxyBalance, PeerSettings};
use super::view::HealthView;
use crate::netns::Namespace;
use crate::process::NsProcess;
use crate::runner::balancer;
use crate::scenario::{Algorithm, BalancerKind, OwnBalancer, OwnHealth, Scenario};

/// Where a run's balancer goes and what it balances.
#[derive(Debug, Clone)]
pub struct LaunchEnv<'a> {
    /// The scenario (its settings, algorithm and own balancer).
    pub scenario: &'a Scenario,
    /// Which balancer.
    pub kind: BalancerKind,
    /// The `l4lb` binary.
    pub l4lb: &'a Path,
    /// The balancer's namespace.
    pub lb: &'a Namespace,
    /// The address clients connect to.
    pub lb_addr: Ipv4Addr,
    /// The balancer's address towards the servers (raw's source address).
    pub source: Ipv4Addr,
    /// The servers.
    pub backends: &'a [SocketAddrV4],
    /// A directory of this run's own for configurations, sockets and logs.
    pub dir: PathBuf,
}

/// A balancer that serves.
#[derive(Debug)]
pub struct Started {
    /// Its process (None: kernel NAT, which is rules only).
    pub process: Option<NsProcess>,
    /// Where its view of backend health is read.
    pub view: HealthView,
    /// How it was started, in words (command line or rules), for the report.
    pub how: String,
}

/// The scenario's settings as a peer takes them.
pub fn peer_settings(scenario: &Scenario, stats_socket: Option<PathBuf>) -> PeerSettings {
    let h = &scenario.health;
    PeerSettings {
        checks: Some(Checks {
            interval: h.interval,
            timeout: h.timeout,
            rise: h.rise,
            fall: h.fall,
            send: h.health_send.clone(),
            expect: h.health_expect.clone(),
        }),
        idle_timeout: Some(h.idle_timeout),
        connect_timeout: h.connect_timeout,
        stats_socket,
    }
}

/// The values of the placeholders of an `[own_balancer]` command.
pub fn own_vars(env: &LaunchEnv<'_>) -> Vec<(&'static str, String)> {
    let h = &env.scenario.health;
    let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
    vec![
        ("l4lb", env.l4lb.display().to_string()),
        ("addr", env.lb_addr.to_string()),
        ("port", h.port.to_string()),
        ("listen", SocketAddrV4::new(env.lb_addr, h.port).to_string()),
        (
            "backends",
            env.backends
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("health_interval", ms(h.interval)),
        ("health_timeout", ms(h.timeout)),
        ("rise", h.rise.to_string()),
        ("fall", h.fall.to_string()),
        ("idle_timeout", ms(h.idle_timeout)),
        ("dir", env.dir.display().to_string()),
    ]
}

/// The argv of an own balancer: an argument that is exactly `{backends}` becomes one
/// argument a backend; every other placeholder is replaced in place.
pub fn own_argv(
    own: &OwnBalancer,
    vars: &[(&str, String)],
    backends: &[SocketAddrV4],
) -> Vec<String> {
    let mut out = Vec::new();
    for arg in &own.command.argv {
        if arg == "{backends}" {
            out.extend(backends.iter().map(|b| b.to_string()));
        } else {
            let t = crate::scenario::CommandTemplate {
                argv: vec![arg.clone()],
            };
            out.extend(t.expand(vars));
        }
    }
    out
}

/// The health view of an own balancer.
pub fn own_view(own: &OwnBalancer, vars: &[(&str, String)]) -> HealthView {
    match &own.health {
        OwnHealth::None => HealthView::None,
        OwnHealth::Prometheus {
            addr,
            path,
            up_metric,
            backend_label,
            sessions_metric,
        } => HealthView::Prometheus {
            addr: *addr,
            path: path.clone(),
            up_metric: up_metric.clone(),
            backend_label: backend_label.clone(),
            sessions_metric: sessions_metric.clone(),
        },
        OwnHealth::HaproxySocket(p) => {
            let t = crate::scenario::CommandTemplate {
                argv: vec![p.clone()],
            };
            HealthView::HaproxySocket(PathBuf::from(t.expand(vars).concat()))
        }
    }
}

/// Starts `env.kind` and waits (up to `timeout`) until it serves.
pub async fn start(env: &LaunchEnv<'_>, timeout: Duration) -> anyhow::Result<Started> {
    std::fs::create_dir_all(&env.dir)
        .with_context(|| format!("cannot create {}", env.dir.display()))?;
    let listen = SocketAddrV4::new(env.lb_addr, env.scenario.health.port);
    let (program, args, view): (PathBuf, Vec<String>, HealthView) = match env.kind {
        BalancerKind::Raw | BalancerKind::Proxy => (
            env.l4lb.to_path_buf(),
            balancer::args(
                env.kind,
                &env.scenario.health,
                env.lb_addr,
                env.source,
                env.backends,
            ),
            HealthView::L4lb(SocketAddr::V4(balancer::ADMIN_ADDR)),
        ),
        BalancerKind::Haproxy => {
            let sock = env.dir.join("haproxy.sock");
            let balance = match env.kind.algorithm(env.scenario) {
                Algorithm::RoundRobin => HaproxyBalance::RoundRobin,
                Algorithm::LeastConnections => HaproxyBalance::LeastConn,
            };
            let cfg = env.dir.join("haproxy.cfg");
            let text = config::haproxy_with(
                listen,
                env.backends,
                balance,
                &peer_settings(env.scenario, Some(sock.clone())),
            );
            std::fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
            (
                crate::bench::paths::which("haproxy").context("haproxy is not installed")?,
                vec!["-db".into(), "-f".into(), cfg.display().to_string()],
                HealthView::HaproxySocket(sock),
            )
        }
        BalancerKind::Nginx => {
            let module = Path::new(crate::bench::paths::NGINX_STREAM_MODULE);
            let cfg = env.dir.join("nginx.conf");
            let text = config::nginx_with(
                listen,
                env.backends,
                module.exists().then_some(module),
                &env.dir,
                env.kind.algorithm(env.scenario) == Algorithm::LeastConnections,
                &peer_settings(env.scenario, None),
            );
            std::fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
            let d = env.dir.display().to_string();
            (
                crate::bench::paths::which("nginx").context("nginx is not installed")?,
                [
                    "-p",
                    &d,
                    "-e",
                    &format!("{d}/error.log"),
                    "-c",
                    &cfg.display().to_string(),
                ]
                .map(String::from)
                .to_vec(),
                HealthView::None,
            )
        }
        BalancerKind::Nat => {
            // The lb forwards what it DNATs (the routed layout already does).
            env.lb
                .run_async(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
                .await?
                .context("cannot enable ip_forward in the lb namespace")?;
            let rules = config::nat_rules(listen, env.backends);
            for rule in &rules {
                env.lb.run_tool("iptables", rule, "iptables").await?;
            }
            let how = rules
                .iter()
                .map(|r| format!("iptables {}", r.join(" ")))
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Started {
                process: None,
                view: HealthView::None,
                how,
            });
        }
        BalancerKind::Own => {
            let own = env
                .scenario
                .own_balancer
                .as_ref()
                .context("the scenario has no `[own_balancer]` table")?;
            let vars = own_vars(env);
            let argv = own_argv(own, &vars, env.backends);
            let view = own_view(own, &vars);
            let mut it = argv.into_iter();
            (
                PathBuf::from(it.next().unwrap_or_default()),
                it.collect(),
                view,
            )
        }
    };
    let how = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut p = NsProcess::spawn(env.lb, &program, &args)
        .await
        .with_context(|| format!("starting {} ({})", env.kind, program.display()))?;
    if let Err(e) = wait_ready(env, &mut p, &view, listen.port(), timeout).await {
        let _ = p.stop(Duration::from_secs(1)).await;
        return Err(e);
    }
    Ok(Started {
        process: Some(p),
        view,
        how,
    })
}

/// Until the view shows every backend up, or (no view) something listens on `port`.
async fn wait_ready(
    env: &LaunchEnv<'_>,
    p: &mut NsProcess,
    view: &HealthView,
    port: u16,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ready: Result<bool, String> = if view.exists() {
            let (v, b) = (view.clone(), env.backends.to_vec());
            env.lb
                .run_async(move || {
                    v.read(&b, Duration::from_millis(300))
                        .map(|(_, s)| b.iter().all(|b| s.up.get(&b.to_string()) == Some(&true)))
                        .map_err(|e| e.to_string())
                })
                .await?
        } else {
            Ok(crate::sockets::listening(env.lb)
                .await?
                .iter()
                .any(|a| a.port() == port))
        };
        if ready == Ok(true) {
            return Ok(());
        }
        if let Some(status) = p.try_exit_code() {
            bail!(
                "the {} balancer exited at start ({status}): {}",
                env.kind,
                p.output_tail(5).join(" / ")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the {} balancer did not {} within {timeout:?} ({}): {}",
                env.kind,
                if view.exists() {
                    "report every backend up"
                } else {
                    "listen on its port"
                },
                match ready {
                    Ok(_) if view.exists() => "view readable, not all up".to_string(),
                    Ok(_) => "not listening".to_string(),
                    Err(e) => format!("{}: {e}", view.describe()),
                },
                p.output_tail(5).join(" / ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_str;

    fn scenario(text: &str) -> Scenario {
        parse_str(Path::new("t.toml"), text).unwrap()
    }

    const OWN: &str = r#"
name = "own"
purpose = "p"
balancers = ["own"]
balancers_why = "only the user's"
[balancer]
health_interval = "300ms"
health_timeout = "100ms"
fall = 2
idle_timeout = "5s"
[own_balancer]
name = "mine"
command = ["{l4lb}", "proxy", "--listen", "{listen}", "--health-interval", "{health_interval}", "{backends}", "--fall", "{fall}"]
algorithm = "least_connections"
health = "haproxy"
stats_socket = "{dir}/s.sock"
[[step]]
join = ["a"]
"#;

    #[test]
    fn own_commands_get_every_placeholder_and_one_argument_a_backend() {
        let s = scenario(OWN);
        let backends: Vec<SocketAddrV4> = vec![
            "10.0.0.11:9000".parse().unwrap(),
            "10.0.0.12:9000".parse().unwrap(),
        ];
        let ns = Namespace::named("unused");
        let env = LaunchEnv {
            scenario: &s,
            kind: BalancerKind::Own,
            l4lb: Path::new("/bin/l4lb"),
            lb: &ns,
            lb_addr: "10.0.0.1".parse().unwrap(),
            source: "10.0.0.1".parse().unwrap(),
            backends: &backends,
            dir: PathBuf::from("/tmp/run"),
        };
        let own = s.own_balancer.as_ref().unwrap();
        let vars = own_vars(&env);
        assert_eq!(
            own_argv(own, &vars, &backends).join(" "),
            "/bin/l4lb proxy --listen 10.0.0.1:20000 --health-interval 300ms 10.0.0.11:9000 \
             10.0.0.12:9000 --fall 2"
        );
        assert_eq!(
            own_view(own, &vars),
            HealthView::HaproxySocket(PathBuf::from("/tmp/run/s.sock"))
        );
        assert_eq!(BalancerKind::Own.algorithm(&s), Algorithm::LeastConnections);
    }

    #[test]
    fn peers_get_the_scenarios_settings() {
        let s = scenario(OWN);
        let p = peer_settings(&s, None);
        let c = p.checks.unwrap();
        assert_eq!(
            (
                c.interval.as_millis(),
                c.timeout.as_millis(),
                c.rise,
                c.fall
            ),
            (300, 100, 1, 2)
        );
        assert_eq!(p.idle_timeout, Some(Duration::from_secs(5)));
    }
}
