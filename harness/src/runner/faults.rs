//! Link faults a step asks for: packet drop (iptables statistic), rate limit (tbf),
//! netem (where the kernel has it). Each acts on a host's `eth0`.

use anyhow::Context;

use crate::netns::Namespace;

/// Whether this kernel offers the netem qdisc (built in, loaded, or loadable).
pub fn netem_supported() -> bool {
    if std::path::Path::new("/sys/module/sch_netem").exists() {
        return true;
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = std::path::Path::new("/lib/modules")
        .join(release)
        .join("kernel/net/sched");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("sch_netem"))
        })
        .unwrap_or(false)
}

/// Runs `tc args...` inside `ns`.
pub async fn tc(ns: &Namespace, args: &[&str]) -> anyhow::Result<()> {
    let out = ns
        .command("tc")
        .args(args)
        .output()
        .await
        .with_context(|| format!("cannot run tc in {}", ns.name))?;
    if !out.status.success() {
        anyhow::bail!(
            "`tc {}` in {} failed: {}",
            args.join(" "),
            ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Limits `eth0` of `ns` to `rate` (token bucket filter).
pub async fn rate_limit(ns: &Namespace, rate: &str) -> anyhow::Result<()> {
    tc(
        ns,
        &[
            "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "32kbit",
            "latency", "400ms",
        ],
    )
    .await
}

/// Applies netem `args` on `eth0` of `ns`.
pub async fn netem(ns: &Namespace, args: &str) -> anyhow::Result<()> {
    let mut a = vec!["qdisc", "replace", "dev", "eth0", "root", "netem"];
    a.extend(args.split_whitespace());
    tc(ns, &a).await
}

/// Removes any root qdisc of `eth0` (ignores "nothing to delete").
pub async fn clear_qdisc(ns: &Namespace) {
    let _ = tc(ns, &["qdisc", "del", "dev", "eth0", "root"]).await;
}
