//! The bench report: figures, ratios (each path / direct, ours / best peer), goals;
//! rendered as Markdown and JSON (pure).

use super::goals::{self, Bound, Goal, Verdict};
use super::paths::PathKind;
use super::results::{Metric, PathResult, PathStatus};
use super::stats::{best, ratio, Summary};

/// The report's line on the time the hypervisor took from the CPUs during the run.
fn steal_line(steal: &[(usize, f64)]) -> String {
    if steal.is_empty() {
        return "host steal: not reported by this kernel".into();
    }
    let each: Vec<String> = steal
        .iter()
        .map(|(cpu, pct)| format!("CPU {cpu} {pct:.1}%"))
        .collect();
    format!(
        "host steal (time the hypervisor ran something else while a CPU had work, \
         /proc/stat): {} of the run; each pause it makes lands in some path's latency tail",
        each.join(", ")
    )
}

/// A whole run, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// How the run was set up, one line each (rounds, durations, topology, tuning).
    pub setup: Vec<String>,
    /// CPU placement, one sentence.
    pub placement: String,
    /// Every requested path, in run order.
    pub paths: Vec<PathResult>,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    /// Per CPU, the percentage of the run's time the hypervisor stole (empty when the
    /// kernel does not say): why latency tails on a VM differ from run to run.
    pub steal: Vec<(usize, f64)>,
}

impl BenchReport {
    /// The result of `kind`, when it was requested.
    pub fn path(&self, kind: PathKind) -> Option<&PathResult> {
        self.paths.iter().find(|p| p.path == kind)
    }

    fn median(&self, kind: PathKind, m: Metric) -> Option<f64> {
        self.path(kind)?.summary(m).map(|s| s.median)
    }

    /// `kind`'s median over direct's, for `m`.
    pub fn vs_direct(&self, kind: PathKind, m: Metric) -> Option<f64> {
        ratio(self.median(kind, m), self.median(PathKind::Direct, m))
    }

    /// The best peer (kernel NAT, HAProxy, nginx) for `m`, and its median.
    pub fn best_peer(&self, m: Metric) -> Option<(PathKind, f64)> {
        let candidates: Vec<(&'static str, f64)> = self
            .paths
            .iter()
            .filter(|p| p.path.is_peer())
            .filter_map(|p| Some((p.path.name(), p.summary(m)?.median)))
            .collect();
        let (name, v) = best(candidates, m.higher_is_better())?;
        let kind = PathKind::ALL.into_iter().find(|k| k.name() == name)?;
        Some((kind, v))
    }

    /// The goals of issue 18: each of ours against the strongest peer of its kind (see
    /// [`goals`]), then no errors and no lost bytes.
    pub fn goals(&self) -> Vec<Goal> {
        use Bound::{AtLeast, AtMost};
        let mut out = Vec::new();
        let nat_and_proxies = [
            PathKind::Nat,
            PathKind::HaproxyRr,
            PathKind::HaproxyLc,
            PathKind::Nginx,
        ];
        let wanted: [(PathKind, Metric, Bound, &[PathKind]); 14] = [
            (
                PathKind::Proxy,
                Metric::KeepReqPerSec,
                AtLeast(1.0),
                goals::peers_of(PathKind::Proxy),
            ),
            (
                PathKind::Proxy,
                Metric::CpuUsPerReq,
                AtMost(1.0),
                goals::peers_of(PathKind::Proxy),
            ),
            (
                PathKind::Proxy,
                Metric::ConnPerSec,
                AtLeast(1.05),
                goals::peers_of(PathKind::Proxy),
            ),
            (
                PathKind::Proxy,
                Metric::CpuUsPerConn,
                AtMost(0.95),
                goals::peers_of(PathKind::Proxy),
            ),
            (
                PathKind::Proxy,
                Metric::LatP99Us,
                AtMost(1.0),
                goals::peers_of(PathKind::Proxy),
            ),
            (
                PathKind::Proxy,
                Metric::Bulk1Gbps,
                AtLeast(1.0),
                goals::peers_of(PathKind::Proxy),
            ),
            (
                PathKind::Proxy,
                Metric::BulkNGbps,
                AtLeast(1.0),
                goals::peers_of(PathKind::Proxy),
            ),
            (
                PathKind::Raw,
                Metric::LatP50Us,
                AtMost(1.5),
                goals::peers_of(PathKind::Raw),
            ),
            (
                PathKind::Raw,
                Metric::LatP999Us,
                AtMost(2.0),
                goals::peers_of(PathKind::Raw),
            ),
            (
                PathKind::Raw,
                Metric::KeepReqPerSec,
                AtLeast(1.0),
                &nat_and_proxies,
            ),
            (
                PathKind::Raw,
                Metric::ConnPerSec,
                AtLeast(1.0),
                goals::peers_of(PathKind::Raw),
            ),
            (
                PathKind::Raw,
                Metric::Bulk1Gbps,
                AtLeast(0.9),
                goals::peers_of(PathKind::Raw),
            ),
            (
                PathKind::Raw,
                Metric::BulkNGbps,
                AtLeast(0.9),
                goals::peers_of(PathKind::Raw),
            ),
            (
                PathKind::Raw,
                Metric::SmallKpps,
                AtLeast(1.0),
                goals::peers_of(PathKind::Raw),
            ),
        ];
        for (kind, m, bound, peer_kinds) in wanted {
            let peers: Vec<&PathResult> = peer_kinds.iter().filter_map(|k| self.path(*k)).collect();
            out.push(goals::versus_best(
                (kind, peer_kinds),
                self.path(kind),
                &peers,
                m,
                bound,
                |v| fmt(v, m),
            ));
        }
        for kind in [PathKind::Raw, PathKind::Proxy] {
            let claim = format!(
                "{}: no errors and no lost bytes under any workload",
                kind.name()
            );
            let (verdict, detail) = match self.path(kind) {
                Some(p) if p.status == PathStatus::Measured => (
                    if p.clean() {
                        Verdict::Met
                    } else {
                        Verdict::Missed
                    },
                    format!(
                        "{} errors, {} lost bytes, {} server errors, {} bytes moved",
                        p.errors,
                        p.lost_bytes,
                        p.server_errors,
                        thousands(p.bytes_moved)
                    ),
                ),
                Some(p) => (Verdict::Missed, status_text(&p.status)),
                None => (Verdict::NotMeasured, "not measured in this run".into()),
            };
            out.push(Goal {
                claim,
                verdict,
                peer: None,
                rounds: None,
                detail,
            });
        }
        out
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::from("# l4lb bench\n\n");
        for line in &self.setup {
            md.push_str(&format!("- {line}\n"));
        }
        md.push_str(&format!("- CPU placement: {}\n", self.placement));
        md.push_str(&format!("- run time: {:.0} s\n", self.elapsed_s));
        md.push_str(&format!("- {}\n\n", steal_line(&self.steal)));

        md.push_str("## Figures (median of rounds, min–max)\n\n");
        let mut head = vec!["path".to_string()];
        head.extend(Metric::ALL.iter().map(|m| m.header().to_string()));
        head.extend(["errors", "lost bytes"].map(String::from));
        md.push_str(&table_head(&head));
        for p in &self.paths {
            let mut row = vec![p.path.name().to_string()];
            if p.status == PathStatus::Measured {
                row.extend(Metric::ALL.iter().map(|m| match p.summary(*m) {
                    Some(s) => cell(s, *m),
                    None => "–".into(),
                }));
                row.push(p.errors.to_string());
                row.push(p.lost_bytes.to_string());
            } else {
                row.push(short(&status_text(&p.status)));
                row.extend(std::iter::repeat_n(String::new(), Metric::ALL.len() + 1));
            }
            md.push_str(&table_row(&row));
        }

        md.push_str("\n## Each path / direct\n\n(latency: above 1 is slower)\n\n");
        let mut head = vec!["path".to_string()];
        head.extend(Metric::ALL.iter().map(|m| m.header().to_string()));
        md.push_str(&table_head(&head));
        for p in self.paths.iter().filter(|p| p.path != PathKind::Direct) {
            let mut row = vec![p.path.name().to_string()];
            row.extend(
                Metric::ALL
                    .iter()
                    .map(|m| times(self.vs_direct(p.path, *m))),
            );
            md.push_str(&table_row(&row));
        }

        md.push_str("\n## Ours / best peer (kernel NAT, HAProxy, nginx)\n\n");
        md.push_str(&table_head(&head));
        for p in self.paths.iter().filter(|p| p.path.is_ours()) {
            let mut row = vec![p.path.name().to_string()];
            row.extend(
                Metric::ALL
                    .iter()
                    .map(|m| match (p.summary(*m), self.best_peer(*m)) {
                        (Some(s), Some((k, v))) => {
                            format!("{} vs {}", times(ratio(Some(s.median), Some(v))), k.name())
                        }
                        _ => "–".into(),
                    }),
            );
            md.push_str(&table_row(&row));
        }

        md.push_str(&format!(
            "\n## Goals (issue 18)\n\nOurs / the strongest peer of its kind, round by round: \
             met only when the median ratio is past the bound by more than the interquartile \
             range of the rounds, missed only when it falls short by more, unclear otherwise \
             (and from fewer than {} rounds).\n\n",
            goals::MIN_ROUNDS
        ));
        for g in self.goals() {
            md.push_str(&format!(
                "- [{}] {}: {}\n",
                g.verdict.mark(),
                g.claim,
                g.detail
            ));
        }

        let with_problems: Vec<_> = self
            .paths
            .iter()
            .filter(|p| !p.problems.is_empty())
            .collect();
        if !with_problems.is_empty() {
            md.push_str("\n## Problems\n\n");
            for p in with_problems {
                for e in &p.problems {
                    md.push_str(&format!("- {}: {e}\n", p.path.name()));
                }
            }
        }
        let distributed: Vec<_> = self
            .paths
            .iter()
            .filter(|p| !p.per_server.is_empty())
            .collect();
        if !distributed.is_empty() {
            md.push_str(
                "\n## New connections per server\n\nThe new-connection workload, one request \
                 per connection: each is one balancing decision (round robin: even; \
                 least connections: close to even).\n\n",
            );
        }
        for p in distributed {
            let d: Vec<String> = p.per_server.iter().map(|&n| thousands(n)).collect();
            md.push_str(&format!("- {}: {}\n", p.path.name(), d.join(" / ")));
        }
        md
    }

    /// The report as JSON: setup, per path its samples and summaries, ratios and goals.
    pub fn json(&self) -> serde_json::Value {
        let paths: Vec<serde_json::Value> = self
            .paths
            .iter()
            .map(|p| {
                let mut metrics = serde_json::Map::new();
                for m in Metric::ALL {
                    if let Some(s) = p.summary(m) {
                        metrics.insert(
                            m.key().into(),
                            serde_json::json!({
                                "median": s.median, "min": s.min, "max": s.max,
                                "spread": s.spread(), "samples": p.samples.get(&m),
                                "vs_direct": self.vs_direct(p.path, m),
                                "vs_best_peer": if p.path.is_ours() {
                                    self.best_peer(m).map(|(k, v)| serde_json::json!({
                                        "peer": k.name(), "ratio": ratio(Some(s.median), Some(v))
                                    }))
                                } else { None },
                            }),
                        );
                    }
                }
                serde_json::json!({
                    "path": p.path.name(), "label": p.label, "status": p.status,
                    "metrics": metrics, "errors": p.errors, "lost_bytes": p.lost_bytes,
                    "server_errors": p.server_errors, "bytes_moved": p.bytes_moved,
                    "requests": p.requests, "connections": p.connections,
                    "per_server": p.per_server, "problems": p.problems, "runs": p.runs,
                    "clean": p.clean(),
                })
            })
            .collect();
        serde_json::json!({
            "setup": self.setup, "placement": self.placement, "elapsed_s": self.elapsed_s,
            "steal": self.steal,
            "paths": paths, "goals": self.goals(),
        })
    }
}

/// "not installed: …" / "failed: …".
pub fn status_text(s: &PathStatus) -> String {
    match s {
        PathStatus::Measured => "measured".into(),
        PathStatus::NotInstalled(why) => why.clone(),
        PathStatus::Failed(why) => format!("failed: {why}"),
    }
}

/// The first 80 characters of `s`, on one line (the Problems list has the rest).
pub(crate) fn short(s: &str) -> String {
    let one_line = s.replace(['\n', '|'], " ");
    match one_line.char_indices().nth(80) {
        Some((i, _)) => format!("{}… (see Problems)", &one_line[..i]),
        None => one_line,
    }
}

fn fmt(v: f64, m: Metric) -> String {
    let d = m.decimals();
    // Thousands separators for big integers (conn/s, req/s).
    if d == 0 && v.abs() >= 1_000.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        return format!("{sign}{}", thousands(v.abs().round() as u64));
    }
    format!("{v:.d$}")
}

/// `n` with a comma between groups of three digits: 15,935,206,656.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cell(s: Summary, m: Metric) -> String {
    if s.n > 1 {
        format!("{} ({}–{})", fmt(s.median, m), fmt(s.min, m), fmt(s.max, m))
    } else {
        fmt(s.median, m)
    }
}

fn times(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn table_head(cols: &[String]) -> String {
    format!(
        "{}\n|{}\n",
        table_row(cols).trim_end(),
        cols.iter().map(|_| "---|").collect::<String>()
    )
}

fn table_row(cols: &[String]) -> String {
    format!("| {} |\n", cols.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::{LoadOutcome, Workload};
    use std::time::Duration;

    #[test]
    fn big_numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(15_935_206_656), "15,935,206,656");
        assert_eq!(fmt(9_048.4, Metric::ConnPerSec), "9,048");
        assert_eq!(fmt(-123_456.0, Metric::ConnPerSec), "-123,456");
        assert_eq!(fmt(11.234, Metric::Bulk1Gbps), "11.23");
    }

    fn measured(kind: PathKind, bulk: &[f64], conn: &[f64], p99: &[f64]) -> PathResult {
        let mut p = PathResult::new(kind, PathStatus::Measured);
        p.samples.insert(Metric::Bulk1Gbps, bulk.to_vec());
        p.samples.insert(Metric::BulkNGbps, bulk.to_vec());
        p.samples.insert(Metric::ConnPerSec, conn.to_vec());
        p.samples.insert(Metric::LatP99Us, p99.to_vec());
        p.bytes_moved = 1000;
        p
    }

    fn report() -> BenchReport {
        let mut r = BenchReport {
            setup: vec!["3 rounds".into()],
            placement: "balancer on CPU 0".into(),
            paths: vec![
                measured(PathKind::Direct, &[20.0, 25.0, 30.0], &[16000.0], &[40.0]),
                measured(PathKind::Nat, &[15.0], &[12000.0], &[50.0]),
                measured(PathKind::HaproxyRr, &[9.0], &[9000.0], &[70.0]),
                measured(PathKind::HaproxyLc, &[10.0], &[10000.0], &[60.0]),
                PathResult::new(
                    PathKind::Nginx,
                    PathStatus::NotInstalled("not installed: nginx".into()),
                ),
                measured(PathKind::Raw, &[5.0], &[7000.0], &[80.0]),
                measured(PathKind::Proxy, &[11.0], &[9500.0], &[55.0]),
            ],
            elapsed_s: 12.0,
            steal: vec![(0, 1.25), (1, 0.0)],
        };
        for (kind, cpu) in [(PathKind::HaproxyLc, 50.0), (PathKind::Proxy, 45.0)] {
            let p = r.paths.iter_mut().find(|p| p.path == kind).unwrap();
            p.samples.insert(Metric::CpuUsPerConn, vec![cpu]);
        }
        r
    }

    #[test]
    fn ratios_against_direct_and_best_peer() {
        let r = report();
        assert_eq!(r.vs_direct(PathKind::Nat, Metric::Bulk1Gbps), Some(0.6));
        assert_eq!(r.vs_direct(PathKind::Nginx, Metric::Bulk1Gbps), None);
        assert_eq!(r.best_peer(Metric::Bulk1Gbps), Some((PathKind::Nat, 15.0)));
        assert_eq!(r.best_peer(Metric::LatP99Us), Some((PathKind::Nat, 50.0)));
        assert_eq!(r.best_peer(Metric::KeepReqPerSec), None);
    }

    #[test]
    fn goals_name_the_best_peer_of_each_kind() {
        let goals = report().goals();
        let get = |s: &str| goals.iter().find(|g| g.claim.contains(s)).unwrap().clone();
        let conn = get("proxy new conn/s");
        assert_eq!(conn.peer, Some("haproxy-lc"), "nginx is not installed");
        assert_eq!(
            conn.verdict,
            Verdict::Unclear,
            "one round claims nothing: {}",
            conn.detail
        );
        assert!(
            conn.detail
                .contains("round by round 0.95× (IQR 0.95–0.95, range 0.95–0.95, 1 rounds)"),
            "{}",
            conn.detail
        );
        assert_eq!(get("raw new conn/s").peer, Some("nat"));
        assert_eq!(get("raw p99.9").verdict, Verdict::NotMeasured);
        assert_eq!(get("raw: no errors").verdict, Verdict::Met);
        assert_eq!(
            report().best_peer(Metric::CpuUsPerConn),
            Some((PathKind::HaproxyLc, 50.0)),
            "kernel paths have no process to measure"
        );
        // Three rounds, the proxy 10% ahead of the better HAProxy in each: met.
        let mut r = report();
        for (kind, v) in [
            (PathKind::HaproxyRr, 9000.0),
            (PathKind::HaproxyLc, 10000.0),
            (PathKind::Proxy, 11000.0),
        ] {
            let p = r.paths.iter_mut().find(|p| p.path == kind).unwrap();
            p.samples
                .insert(Metric::ConnPerSec, vec![v, v * 0.9, v * 1.1]);
        }
        let goals = r.goals();
        let conn = goals
            .iter()
            .find(|g| g.claim.contains("proxy new conn/s"))
            .unwrap();
        assert_eq!(conn.verdict, Verdict::Met, "{}", conn.detail);
        let mut r = report();
        r.paths.retain(|p| p.path != PathKind::Nat);
        r.paths
            .iter_mut()
            .find(|p| p.path == PathKind::Proxy)
            .unwrap()
            .lost_bytes = 3;
        let goals = r.goals();
        let get = |s: &str| goals.iter().find(|g| g.claim.contains(s)).unwrap().clone();
        assert_eq!(get("raw bulk 1 stream").verdict, Verdict::NotMeasured);
        assert_eq!(get("proxy: no errors").verdict, Verdict::Missed);
    }

    #[test]
    fn markdown_report() {
        insta::assert_snapshot!(report().markdown());
    }

    #[test]
    fn json_has_summaries_ratios_and_status() {
        let j = report().json();
        let direct = &j["paths"][0];
        assert_eq!(direct["metrics"]["bulk1_gbps"]["median"], 25.0);
        assert_eq!(direct["metrics"]["bulk1_gbps"]["min"], 20.0);
        let proxy = &j["paths"][6];
        assert_eq!(
            proxy["metrics"]["bulk1_gbps"]["vs_best_peer"]["peer"],
            "nat"
        );
        assert_eq!(j["paths"][4]["status"]["state"], "not_installed");
        assert!(j["goals"].as_array().unwrap().len() >= 9);
    }

    #[test]
    fn outcomes_become_samples_and_counts() {
        let mut p = PathResult::new(PathKind::Proxy, PathStatus::Measured);
        let o = LoadOutcome {
            elapsed: Duration::from_secs(2),
            bytes_sent: 2_000_000_000,
            bytes_confirmed: 2_000_000_000,
            requests: 0,
            ..Default::default()
        };
        p.add(Workload::Bulk { streams: 1 }, &o, 0);
        assert_eq!(p.samples[&Metric::Bulk1Gbps], [8.0]);
        assert!(p.clean());
        let o = LoadOutcome {
            elapsed: Duration::from_secs(1),
            requests: 300,
            bytes_sent: 64 * 301,
            bytes_confirmed: 64 * 300,
            lost_bytes: 64,
            errors: 1,
            first_error: Some("request: reset".into()),
            per_server: vec![100, 100, 100],
            ..Default::default()
        };
        p.add(Workload::Connect { concurrency: 50 }, &o, 0);
        assert_eq!(p.samples[&Metric::ConnPerSec], [300.0]);
        p.add_cpu(
            Workload::Connect { concurrency: 50 },
            &o,
            Duration::from_millis(15),
        );
        assert_eq!(p.samples[&Metric::CpuUsPerConn], [50.0], "15 ms over 300");
        p.add_cpu(Workload::Latency, &o, Duration::from_millis(15));
        p.add_cpu(
            Workload::Keep { concurrency: 50 },
            &LoadOutcome::default(),
            Duration::from_millis(15),
        );
        assert!(
            !p.samples.contains_key(&Metric::CpuUsPerReq),
            "nothing completed: no per-request figure"
        );
        // Kept connections are not balancing decisions: not counted per server.
        let kept = LoadOutcome {
            elapsed: Duration::from_secs(1),
            requests: 900,
            per_server: vec![900, 0, 0],
            ..Default::default()
        };
        p.add(Workload::Keep { concurrency: 1 }, &kept, 0);
        p.add(Workload::Latency, &kept, 0);
        assert_eq!(
            (p.errors, p.lost_bytes, p.per_server.clone()),
            (1, 64, vec![100, 100, 100])
        );
        assert!(!p.clean());
        assert_eq!(p.problems.len(), 1);
    }
}
