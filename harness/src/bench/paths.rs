//! The paths the bench measures, what each needs installed, and how each is named.

use std::path::{Path, PathBuf};

/// One way from the client to the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// Client to one server; the balancer's namespace only routes (the floor).
    Direct,
    /// iptables DNAT round robin plus MASQUERADE in the balancer's namespace.
    Nat,
    /// HAProxy `mode tcp`, `balance roundrobin`.
    HaproxyRr,
    /// HAProxy `mode tcp`, `balance leastconn`.
    HaproxyLc,
    /// nginx `stream` proxy, round robin.
    Nginx,
    /// `l4lb raw`.
    Raw,
    /// `l4lb proxy`.
    Proxy,
}

impl PathKind {
    /// Every path, in the order they run in a round.
    pub const ALL: [PathKind; 7] = [
        PathKind::Direct,
        PathKind::Nat,
        PathKind::HaproxyRr,
        PathKind::HaproxyLc,
        PathKind::Nginx,
        PathKind::Raw,
        PathKind::Proxy,
    ];

    /// Short name, as `--paths` takes it.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Nat => "nat",
            PathKind::HaproxyRr => "haproxy-rr",
            PathKind::HaproxyLc => "haproxy-lc",
            PathKind::Nginx => "nginx",
            PathKind::Raw => "raw",
            PathKind::Proxy => "proxy",
        }
    }

    /// Description for people.
    pub fn label(self) -> &'static str {
        match self {
            PathKind::Direct => "direct (lb only routes)",
            PathKind::Nat => "kernel NAT (iptables DNAT nth + MASQUERADE)",
            PathKind::HaproxyRr => "HAProxy mode tcp, roundrobin",
            PathKind::HaproxyLc => "HAProxy mode tcp, leastconn",
            PathKind::Nginx => "nginx stream, round robin",
            PathKind::Raw => "l4lb raw (ours)",
            PathKind::Proxy => "l4lb proxy (ours)",
        }
    }

    /// Whether this is one of our balancers.
    pub fn is_ours(self) -> bool {
        matches!(self, PathKind::Raw | PathKind::Proxy)
    }

    /// Whether this is a peer (a balancer a user could pick instead of ours).
    pub fn is_peer(self) -> bool {
        !self.is_ours() && self != PathKind::Direct
    }

    /// Whether a user-space process balances (so it is pinned to the balancer's core).
    pub fn has_process(self) -> bool {
        !matches!(self, PathKind::Direct | PathKind::Nat)
    }
}

/// Parses `--paths a,b,c` (order kept, duplicates dropped).
pub fn parse_paths(list: &str) -> Result<Vec<PathKind>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = PathKind::ALL
            .into_iter()
            .find(|k| k.name() == item)
            .ok_or_else(|| {
                let names: Vec<_> = PathKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown path `{item}`: choose from {}", names.join(", "))
            })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        return Err("--paths is empty: name at least one path".into());
    }
    Ok(out)
}

/// The nginx stream module Debian installs (libnginx-mod-stream).
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Finds `program` on PATH (or as given, when it contains a slash).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// What a path needs on this machine.
#[derive(Debug, Clone)]
pub struct Tools {
    /// iptables.
    pub iptables: Option<PathBuf>,
    /// haproxy.
    pub haproxy: Option<PathBuf>,
    /// nginx.
    pub nginx: Option<PathBuf>,
    /// Whether the nginx stream module is there (dynamic module file found).
    pub nginx_stream: Option<PathBuf>,
    /// The l4lb binary.
    pub l4lb: PathBuf,
}

impl Tools {
    /// Looks the tools up.
    pub fn discover(l4lb: &Path) -> Tools {
        let module = PathBuf::from(NGINX_STREAM_MODULE);
        Tools {
            iptables: which("iptables"),
            haproxy: which("haproxy"),
            nginx: which("nginx"),
            nginx_stream: module.is_file().then_some(module),
            l4lb: l4lb.to_path_buf(),
        }
    }

    /// `Ok` when `kind` can run here, else why not (e.g. "not installed: haproxy").
    pub fn check(&self, kind: PathKind) -> Result<(), String> {
        let missing = |what: &str, pkg: &str| {
            Err(format!(
                "not installed: {what} (`make bench-deps`, or apt-get install {pkg})"
            ))
        };
        match kind {
            PathKind::Direct => Ok(()),
            PathKind::Nat if self.iptables.is_none() => missing("iptables", "iptables"),
            PathKind::HaproxyRr | PathKind::HaproxyLc if self.haproxy.is_none() => {
                missing("haproxy", "haproxy")
            }
            PathKind::Nginx if self.nginx.is_none() => missing("nginx", "nginx"),
            PathKind::Nginx if self.nginx_stream.is_none() => {
                missing("nginx stream module", "libnginx-mod-stream")
            }
            PathKind::Raw | PathKind::Proxy if !self.l4lb.is_file() => {
                Err(format!("l4lb binary not found at {}", self.l4lb.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_order_and_drops_duplicates() {
        assert_eq!(
            parse_paths("proxy, direct,proxy").unwrap(),
            [PathKind::Proxy, PathKind::Direct]
        );
    }

    #[test]
    fn parse_rejects_unknown_and_empty() {
        let e = parse_paths("direct,envoy").unwrap_err();
        assert!(e.contains("`envoy`") && e.contains("haproxy-lc"), "{e}");
        assert!(parse_paths(" , ").is_err());
    }

    #[test]
    fn names_round_trip() {
        for k in PathKind::ALL {
            assert_eq!(parse_paths(k.name()).unwrap(), [k]);
        }
    }

    #[test]
    fn missing_tools_are_reported_not_dropped() {
        let tools = Tools {
            iptables: None,
            haproxy: None,
            nginx: Some("/usr/sbin/nginx".into()),
            nginx_stream: None,
            l4lb: "/nonexistent/l4lb".into(),
        };
        assert!(tools.check(PathKind::Direct).is_ok());
        assert!(tools
            .check(PathKind::Nat)
            .unwrap_err()
            .starts_with("not installed"));
        assert!(tools
            .check(PathKind::HaproxyLc)
            .unwrap_err()
            .contains("haproxy"));
        assert!(tools
            .check(PathKind::Nginx)
            .unwrap_err()
            .contains("libnginx-mod-stream"));
        assert!(tools.check(PathKind::Raw).is_err());
    }
}
