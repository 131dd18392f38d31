//! The command line that starts a balancer for a scenario (pure, unit-tested).

use std::net::{Ipv4Addr, SocketAddrV4};

use l4lb_contract::flags;

use crate::scenario::{BalancerKind, BalancerSettings};

/// Where the balancer serves its stats inside the `lb` namespace.
pub const ADMIN_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100);

/// `--NAME` of a flag the balancers define.
fn flag(name: &str) -> String {
    format!("--{name}")
}

fn dur(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Arguments after the binary: `raw ...` or `proxy ...` (`kind` is one of ours; the
/// peers are started by [`crate::peers`]).
pub fn args(
    kind: BalancerKind,
    settings: &BalancerSettings,
    lb_addr: Ipv4Addr,
    source_ip: Ipv4Addr,
    backends: &[SocketAddrV4],
) -> Vec<String> {
    let mut a: Vec<String> = vec![kind.as_str().into()];
    match kind {
        BalancerKind::Raw => {
            a.extend([flag(flags::SOURCE_IP), source_ip.to_string()]);
            a.extend([flag(flags::PORT), settings.port.to_string()]);
        }
        _ => {
            a.extend([
                flag(flags::LISTEN),
                SocketAddrV4::new(lb_addr, settings.port).to_string(),
            ]);
            if let Some(t) = settings.connect_timeout {
                a.extend([flag(flags::CONNECT_TIMEOUT), dur(t)]);
            }
        }
    }
    for b in backends {
        a.extend([flag(flags::BACKEND), b.to_string()]);
    }
    a.extend([
        flag(flags::HEALTH_INTERVAL),
        dur(settings.interval),
        flag(flags::HEALTH_TIMEOUT),
        dur(settings.timeout),
        flag(flags::RISE),
        settings.rise.to_string(),
        flag(flags::FALL),
        settings.fall.to_string(),
        flag(flags::IDLE_TIMEOUT),
        dur(settings.idle_timeout),
        flag(flags::ADMIN),
        ADMIN_ADDR.to_string(),
    ]);
    if let Some(send) = &settings.health_send {
        a.extend([flag(flags::HEALTH_SEND), send.clone()]);
    }
    if let Some(expect) = &settings.health_expect {
        a.extend([flag(flags::HEALTH_EXPECT), expect.clone()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::*;

    /// Short test settings, as the fast scenarios use.
    fn settings() -> BalancerSettings {
        BalancerSettings {
            port: 20000,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: 1,
            fall: 3,
            idle_timeout: std::time::Duration::from_secs(2),
            connect_timeout: None,
            health_send: None,
            health_expect: None,
        }
    }

    #[test]
    fn only_the_proxy_gets_a_connect_timeout() {
        let s = BalancerSettings {
            connect_timeout: Some(std::time::Duration::from_secs(5)),
            ..settings()
        };
        let lb = Ipv4Addr::new(10, 0, 0, 1);
        let be = [SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 9000)];
        let proxy = args(BalancerKind::Proxy, &s, lb, lb, &be).join(" ");
        assert!(proxy.contains("--connect-timeout 5000ms"), "{proxy}");
        let raw = args(BalancerKind::Raw, &s, lb, lb, &be).join(" ");
        assert!(!raw.contains("--connect-timeout"), "{raw}");
    }

    #[test]
    fn both_balancers_get_health_idle_and_admin_flags() {
        let s = settings();
        let lb = Ipv4Addr::new(10, 0, 0, 1);
        let be = [SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 9000)];
        assert_eq!(
            args(BalancerKind::Raw, &s, lb, lb, &be).join(" "),
            "raw --source-ip 10.0.0.1 --port 20000 --backend 10.0.0.11:9000 --health-interval 200ms \
             --health-timeout 100ms --rise 1 --fall 3 --idle-timeout 2000ms --admin 127.0.0.1:9100"
        );
        assert_eq!(
            args(BalancerKind::Proxy, &s, lb, lb, &be).join(" "),
            "proxy --listen 10.0.0.1:20000 --backend 10.0.0.11:9000 --health-interval 200ms \
             --health-timeout 100ms --rise 1 --fall 3 --idle-timeout 2000ms --admin 127.0.0.1:9100"
        );
    }
}
