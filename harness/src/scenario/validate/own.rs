//! `[own_balancer]`: a user's own balancer command and where its health view is read.

use toml::Spanned;

use super::Validator;
use crate::scenario::model::*;
use crate::scenario::written::*;

impl Validator<'_> {
    /// Validates `[own_balancer]`; `listed` says whether `own` is in `balancers`.
    pub(super) fn own_balancer(
        &mut self,
        written: Option<&Spanned<OwnBalancerTable>>,
        listed: Option<std::ops::Range<usize>>,
    ) -> Option<OwnBalancer> {
        let Some(written) = written else {
            if let Some(span) = listed {
                self.err(
                    span,
                    "`own` is listed, but the file has no `[own_balancer]` table",
                    Some(
                        "`[own_balancer]` with `command = \"...\"` (placeholders {port}, {backends}, ...)"
                            .into(),
                    ),
                );
            }
            return None;
        };
        let r = written.get_ref();
        let command = self.command(&r.command, crate::scenario::OWN_PLACEHOLDERS);
        let health_kind = r.health.as_ref().map_or("none", |h| h.get_ref().as_str());
        let prometheus_keys = [
            ("metrics_url", &r.metrics_url),
            ("up_metric", &r.up_metric),
            ("backend_label", &r.backend_label),
            ("sessions_metric", &r.sessions_metric),
        ];
        let health = match health_kind {
            "none" => OwnHealth::None,
            "prometheus" => {
                let url = self.required(&r.metrics_url, "metrics_url", written.span());
                let up = self.required(&r.up_metric, "up_metric", written.span());
                let addr = url.and_then(|u| match parse_metrics_url(u.get_ref()) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        self.err(
                            u.span(),
                            e,
                            Some(
                                "`http://IP:PORT/PATH`, e.g. `http://127.0.0.1:9100/metrics`"
                                    .into(),
                            ),
                        );
                        None
                    }
                });
                match (addr, up) {
                    (Some((addr, path)), Some(up)) => OwnHealth::Prometheus {
                        addr,
                        path,
                        up_metric: up.get_ref().clone(),
                        backend_label: r
                            .backend_label
                            .as_ref()
                            .map_or("backend".into(), |l| l.get_ref().clone()),
                        sessions_metric: r.sessions_metric.as_ref().map(|m| m.get_ref().clone()),
                    },
                    _ => OwnHealth::None,
                }
            }
            "haproxy" => match self.required(&r.stats_socket, "stats_socket", written.span()) {
                Some(p) => OwnHealth::HaproxySocket(p.get_ref().clone()),
                None => OwnHealth::None,
            },
            other => {
                if let Some(h) = &r.health {
                    self.err(
                        h.span(),
                        format!("unknown health view `{other}`"),
                        Some("`none`, `prometheus` or `haproxy`".into()),
                    );
                }
                OwnHealth::None
            }
        };
        for (key, value) in prometheus_keys {
            if let (Some(v), false) = (value, health_kind == "prometheus") {
                self.err(
                    v.span(),
                    format!("`{key}` belongs to `health = \"prometheus\"`"),
                    Some("`health = \"prometheus\"`, or leave it out".into()),
                );
            }
        }
        if let (Some(v), false) = (&r.stats_socket, health_kind == "haproxy") {
            self.err(
                v.span(),
                "`stats_socket` belongs to `health = \"haproxy\"`",
                Some("`health = \"haproxy\"`, or leave it out".into()),
            );
        }
        Some(OwnBalancer {
            name: r
                .name
                .as_ref()
                .map_or("own".into(), |n| n.get_ref().trim().to_string()),
            command,
            algorithm: r
                .algorithm
                .as_ref()
                .map_or(Algorithm::RoundRobin, |a| *a.get_ref()),
            health,
        })
    }

    fn required<'v>(
        &mut self,
        value: &'v Option<SStr>,
        key: &str,
        table: std::ops::Range<usize>,
    ) -> Option<&'v SStr> {
        if value.is_none() {
            self.err(
                table,
                format!("this health view needs `{key}`"),
                Some(format!("`{key} = \"...\"` in `[own_balancer]`")),
            );
        }
        value.as_ref()
    }
}

/// `http://IP:PORT/PATH` -> (address, path).
pub fn parse_metrics_url(url: &str) -> Result<(std::net::SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// address"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/metrics".to_string()),
    };
    let addr = host
        .parse()
        .map_err(|_| format!("`{host}` is not IP:PORT (names are not resolved)"))?;
    Ok((addr, path))
}

#[cfg(test)]
mod tests {
    use super::parse_metrics_url;

    #[test]
    fn metrics_urls_give_address_and_path() {
        let (a, p) = parse_metrics_url("http://127.0.0.1:9100/metrics").unwrap();
        assert_eq!(
            (a.to_string(), p.as_str()),
            ("127.0.0.1:9100".into(), "/metrics")
        );
        assert_eq!(
            parse_metrics_url("http://127.0.0.1:80").unwrap().1,
            "/metrics"
        );
        assert!(parse_metrics_url("https://x:1/").is_err());
        assert!(parse_metrics_url("http://localhost:9100/")
            .unwrap_err()
            .contains("IP:PORT"));
    }
}
