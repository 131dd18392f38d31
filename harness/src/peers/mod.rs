//! The peers a scenario may run beside ours: HAProxy, nginx `stream`, kernel NAT and a
//! user's own balancer program, started in the `lb` namespace like ours.
//!
//! - [`config`]: their configurations (pure; `l4lb bench` uses the same functions).
//! - [`view`]: reading a balancer's view of backend health in its own form (our stats
//!   endpoint, HAProxy's `show stat`, a Prometheus endpoint), or none.
//! - [`launch`]: starting one for a run and waiting until it serves.
//!
//! [`Traits`] says what a balancer can do by design, so an expectation it cannot meet is
//! judged "not applicable" with the reason instead of failed.

pub mod config;
pub mod launch;
pub mod view;

use serde::Serialize;

use crate::scenario::{Algorithm, BalancerKind, OwnHealth, Scenario};

/// What a balancer can do by design, for judging which expectations apply to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Traits {
    /// How it picks a server.
    pub algorithm: Algorithm,
    /// Whether it checks servers on its own (kernel NAT does not, nginx only passively).
    pub active_checks: bool,
    /// Whether the harness can read its view of backend health; None: why not.
    pub no_health_view: Option<String>,
    /// Whether it closes a session on time after the idle timeout; None: it does; Some:
    /// why not.
    pub no_idle_close: Option<String>,
    /// How late after the idle timeout it may close by design (the raw balancer's once-a-
    /// second sweep): an `idle_closed` whose tolerance is smaller cannot be met, and is
    /// not applicable; a wider one is judged as for any balancer.
    pub idle_close_lag: std::time::Duration,
    /// Why it keeps sending clients to a dead server (None: it takes dead ones out).
    pub no_failover: Option<String>,
    /// Why it keeps sending clients to a hung (stopped) server while it takes a crashed
    /// one out (None: it takes both out, or neither: see `no_failover`).
    pub no_hang_failover: Option<String>,
    /// Why it never ends an idle session, neither closing it nor forgetting it (None:
    /// it does one or the other).
    pub no_idle_timeout: Option<String>,
}

/// How often the raw balancer sweeps idle rows (resetting both ends of each): its idle
/// close comes up to this long after the idle timeout.
pub const RAW_IDLE_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Why kernel NAT cannot meet health expectations.
pub const NAT_NO_CHECKS: &str = "kernel NAT has no health checks: it keeps sending new \
     clients to a dead server (the server's host refuses them)";
/// Why nginx's health cannot be observed.
pub const NGINX_PASSIVE: &str = "open-source nginx has only passive checks (max_fails/\
     fail_timeout: a server is skipped after real client connections to it fail) and no \
     view of backend health to read";

/// Why nginx keeps sending clients to a hung server.
pub const NGINX_HANG: &str = "nginx's passive checks count failed connections only, and a \
     hung server's kernel still accepts them";

/// The traits of `kind` in `scenario`.
pub fn traits(kind: BalancerKind, scenario: &Scenario) -> Traits {
    let algorithm = kind.algorithm(scenario);
    let mut t = Traits {
        algorithm,
        active_checks: true,
        no_health_view: None,
        no_idle_close: None,
        idle_close_lag: std::time::Duration::ZERO,
        no_failover: None,
        no_hang_failover: None,
        no_idle_timeout: None,
    };
    match kind {
        BalancerKind::Raw => t.idle_close_lag = RAW_IDLE_SWEEP,
        BalancerKind::Proxy | BalancerKind::Haproxy => {}
        BalancerKind::Nginx => {
            t.active_checks = false;
            t.no_health_view = Some(NGINX_PASSIVE.into());
            t.no_hang_failover = Some(NGINX_HANG.into());
        }
        BalancerKind::Nat => {
            t.active_checks = false;
            t.no_health_view = Some(NAT_NO_CHECKS.into());
            t.no_failover = Some(NAT_NO_CHECKS.into());
            let no_idle = "kernel NAT has no idle timeout of its own (conntrack keeps an \
                 established flow for days) and closes neither end";
            t.no_idle_close = Some(no_idle.into());
            t.no_idle_timeout = Some(no_idle.into());
        }
        BalancerKind::Own => {
            if let Some(own) = &scenario.own_balancer {
                if own.health == OwnHealth::None {
                    t.no_health_view = Some(format!(
                        "`{}` gives no health view (`[own_balancer] health = \"none\"`)",
                        own.name
                    ));
                }
            }
        }
    }
    t
}

/// `Ok` when `kind` can run on this machine, else why not ("not installed: ...", with
/// what to install).
pub fn installed(kind: BalancerKind) -> Result<(), String> {
    use crate::bench::paths::{which, NGINX_STREAM_MODULE};
    installed_with(
        kind,
        |p| which(p).is_some(),
        || std::path::Path::new(NGINX_STREAM_MODULE).exists(),
    )
}

/// [`installed`] with the look-ups given: `program` finds a program, `stream_module`
/// says whether nginx's stream module is there.
pub fn installed_with(
    kind: BalancerKind,
    program: impl Fn(&str) -> bool,
    stream_module: impl Fn() -> bool,
) -> Result<(), String> {
    let missing = |what: &str, package: &str| {
        Err(format!(
            "not installed: {what} (apt-get install {package}, or `make bench-deps`)"
        ))
    };
    match kind {
        BalancerKind::Haproxy if !program("haproxy") => missing("haproxy", "haproxy"),
        BalancerKind::Nginx if !program("nginx") => missing("nginx", "nginx"),
        BalancerKind::Nginx if !stream_module() => {
            missing("the nginx stream module", "libnginx-mod-stream")
        }
        BalancerKind::Nat if !program("iptables") => missing("iptables", "iptables"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> Scenario {
        crate::scenario::parse_str(
            std::path::Path::new("t.toml"),
            &format!("name = \"t\"\npurpose = \"p\"\n{extra}\n[[step]]\njoin = [\"a\"]\n"),
        )
        .unwrap()
    }

    #[test]
    fn algorithms_follow_the_scenario_for_haproxy_and_nginx_only() {
        let rr = scenario("");
        let lc = scenario("[balancer]\nalgorithm = \"least_connections\"\n");
        assert_eq!(
            traits(BalancerKind::Haproxy, &rr).algorithm,
            Algorithm::RoundRobin
        );
        assert_eq!(
            traits(BalancerKind::Haproxy, &lc).algorithm,
            Algorithm::LeastConnections
        );
        assert_eq!(
            traits(BalancerKind::Nginx, &lc).algorithm,
            Algorithm::LeastConnections
        );
        assert_eq!(
            traits(BalancerKind::Raw, &lc).algorithm,
            Algorithm::RoundRobin
        );
        assert_eq!(
            traits(BalancerKind::Proxy, &rr).algorithm,
            Algorithm::LeastConnections
        );
        assert_eq!(
            traits(BalancerKind::Nat, &lc).algorithm,
            Algorithm::RoundRobin
        );
    }

    #[test]
    fn nat_and_nginx_say_why_they_cannot_be_watched() {
        let s = scenario("");
        let nat = traits(BalancerKind::Nat, &s);
        assert!(!nat.active_checks);
        assert!(nat.no_failover.unwrap().contains("no health checks"));
        assert!(nat.no_idle_close.is_some());
        let nginx = traits(BalancerKind::Nginx, &s);
        assert!(nginx.no_health_view.unwrap().contains("passive"));
        assert!(nginx.no_failover.is_none() && nginx.no_idle_close.is_none());
        assert!(nginx.no_hang_failover.unwrap().contains("still accepts"));
        let h = traits(BalancerKind::Haproxy, &s);
        assert!(h.active_checks && h.no_health_view.is_none() && h.no_idle_close.is_none());
    }

    #[test]
    fn a_missing_peer_is_not_installed_with_what_to_install() {
        let none = |_: &str| false;
        let e = installed_with(BalancerKind::Haproxy, none, || true).unwrap_err();
        assert!(
            e.starts_with("not installed: haproxy") && e.contains("make bench-deps"),
            "{e}"
        );
        let e = installed_with(BalancerKind::Nginx, |_| true, || false).unwrap_err();
        assert!(e.contains("libnginx-mod-stream"), "{e}");
        assert!(installed_with(BalancerKind::Nat, none, || true).is_err());
        // Ours and a user's own program need nothing more.
        for b in [BalancerKind::Raw, BalancerKind::Proxy, BalancerKind::Own] {
            assert_eq!(installed_with(b, none, || false), Ok(()));
        }
        assert_eq!(
            installed_with(BalancerKind::Nginx, |_| true, || true),
            Ok(())
        );
    }
}
