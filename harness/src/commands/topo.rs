//! `l4lb topo up|down|status`: a topology to poke at by hand with `ip netns exec`.
//!
//! - `up` builds one and waits until Ctrl-C or SIGTERM, then tears it down (a SIGKILL
//!   leaves it behind: `l4lb cleanup` removes it once the process is gone).
//! - `down` removes every `l4lb-` namespace on the machine, live runs included, without
//!   asking (it is `l4lb cleanup --all`); use `l4lb cleanup` to spare live runs.
//! - `status` lists `l4lb-` namespaces with their owner pid and whether it still runs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::Context;

use crate::cleanup::{self, SweepScope};
use crate::topology::{plan, Host, Layout, Offloads, Topology, TopologySpec};

/// Arguments of `l4lb topo`.
#[derive(Debug, clap::Args)]
pub struct TopoArgs {
    #[command(subcommand)]
    action: TopoAction,
}

#[derive(Debug, clap::Subcommand)]
enum TopoAction {
    /// Build a topology, print how to reach it, wait for Ctrl-C/SIGTERM, tear it down.
    Up(UpArgs),
    /// Remove every l4lb namespace on this machine (live runs too), without asking.
    Down,
    /// List l4lb namespaces, their owner pid and whether it is alive.
    Status,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Number of client hosts.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Number of server hosts.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// First address of the LAN /24 (routed: servers on the next /24).
    #[arg(long, default_value_t = Ipv4Addr::new(10, 0, 0, 0))]
    subnet: Ipv4Addr,
    /// How hosts are joined.
    #[arg(long, value_enum, default_value_t = LayoutArg::Lan)]
    layout: LayoutArg,
    /// MTU of every veth.
    #[arg(long)]
    mtu: Option<u32>,
    /// Offload settings of every veth.
    #[arg(long, value_enum, default_value_t = OffloadsArg::Default)]
    offloads: OffloadsArg,
    /// Do not install the RST-drop rule in lb.
    #[arg(long)]
    no_rst_drop: bool,
    /// Build the `[topology]` of this scenario file instead (a home layout, say); the
    /// flags above other than `--no-rst-drop` are then not used.
    #[arg(long, value_name = "FILE")]
    scenario: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Lan,
    Routed,
}

/// `--offloads` of `l4lb topo up` and `l4lb bench`: the veths' offloads as a fresh veth
/// has them, or GRO, GSO, TSO and checksum offload off.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OffloadsArg {
    /// Whatever a fresh veth has (GRO/GSO/TSO on).
    Default,
    /// GRO, GSO, TSO and checksum offload off on every veth (every segment on its own).
    Off,
}

impl From<OffloadsArg> for Offloads {
    fn from(arg: OffloadsArg) -> Offloads {
        match arg {
            OffloadsArg::Default => Offloads::Default,
            OffloadsArg::Off => Offloads::Off,
        }
    }
}

/// Runs `l4lb topo`.
pub fn topo(args: TopoArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        TopoAction::Up(up_args) => up(up_args),
        TopoAction::Down => down(),
        TopoAction::Status => status(),
    }
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.scenario {
        let scenario = match crate::scenario::load(file) {
            Ok(s) => s,
            Err(errors) => {
                eprint!("{errors}");
                return Ok(ExitCode::from(2));
            }
        };
        let t = &scenario.topology;
        let spec = TopologySpec {
            clients: t.clients,
            servers: t.servers,
            layout: t.layout,
            subnet: t.subnet,
            mtu: t.mtu,
            offloads: t.offloads,
            rst_drop: !args.no_rst_drop,
            home: t.home.clone(),
        };
        return build_and_wait(spec);
    }
    let spec = TopologySpec {
        clients: args.clients,
        servers: args.servers,
        layout: match args.layout {
            LayoutArg::Lan => Layout::Lan,
            LayoutArg::Routed => Layout::Routed,
        },
        subnet: args.subnet,
        mtu: args.mtu,
        offloads: args.offloads.into(),
        rst_drop: !args.no_rst_drop,
        home: Default::default(),
    };
    build_and_wait(spec)
}

/// Builds `spec`, prints how to reach it, and waits for a signal to tear it down.
fn build_and_wait(spec: TopologySpec) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    rt.block_on(async {
        let signal = cleanup::shutdown_signal()?;
        let topo = Topology::build(&spec).await?;
        print!("{}", describe(&topo));
        println!(
            "waiting: Ctrl-C or SIGTERM (kill {}) tears it down",
            std::process::id()
        );
        signal.await;
        let prefix = topo.prefix().to_string();
        topo.teardown().await?;
        println!("removed {prefix}*");
        Ok(ExitCode::SUCCESS)
    })
}

/// What `topo up` prints: namespaces, addresses, and commands to try.
fn describe(topo: &Topology) -> String {
    let mut out = format!("topology {}* is up\n", topo.prefix());
    for link in &topo.plan().links {
        let ns = &topo.namespace(link.host).name;
        let mut notes = Vec::new();
        if let Some(gw) = link.gateway {
            notes.push(format!("default via {gw}"));
        }
        if link.host == Host::Lb && link.host_if == "eth0" && topo.spec().rst_drop {
            notes.push("RST-drop rule".into());
        }
        out += &format!(
            "  {:<8} {:<28} {} {}/{} {}\n",
            plan::role(link.host),
            ns,
            link.host_if,
            link.addr,
            plan::PREFIX_LEN,
            notes.join(", ")
        );
    }
    out += &format!(
        "  {:<8} {:<28} {} (switch)\n",
        plan::LAN_ROLE,
        topo.lan().name,
        topo.plan().bridges.join(", ")
    );
    for line in topo.diagram() {
        out += &format!("  {line}\n");
    }
    let s1 = topo.namespace(Host::Server(0));
    let c1 = topo.namespace(Host::Client(0));
    let s1_addr = topo.addr(Host::Server(0));
    out += "try:\n";
    out += &format!("  sudo ip netns exec {} l4lb chat-server 7000\n", s1.name);
    out += &format!(
        "  sudo ip netns exec {} l4lb chat-client {s1_addr} 7000 alice\n",
        c1.name
    );
    if topo.entry(0) != topo.addr(Host::Lb) {
        out += &format!(
            "  (client1 reaches the balancer at {}:20000 through the router)\n",
            topo.entry(0)
        );
    }
    out += &format!("  sudo ip netns exec {} ping -c1 {s1_addr}\n", c1.name);
    out
}

fn down() -> anyhow::Result<ExitCode> {
    let removed = cleanup::sweep(SweepScope::All)?;
    if removed.is_empty() {
        println!("no l4lb namespaces to remove");
    }
    for r in removed {
        println!("removed {} (killed {} process(es))", r.name, r.killed.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn status() -> anyhow::Result<ExitCode> {
    let found = cleanup::project_namespaces()?;
    if found.is_empty() {
        println!("no l4lb namespaces");
        return Ok(ExitCode::SUCCESS);
    }
    let mut runs: BTreeMap<String, (u32, bool, Vec<String>)> = BTreeMap::new();
    for (name, pid, alive) in found {
        let (_, n, role) = plan::parse_name(&name).expect("project names parse");
        let entry = runs
            .entry(format!("l4lb-{pid}-{n}-"))
            .or_insert((pid, alive, Vec::new()));
        entry.2.push(role.to_string());
    }
    for (prefix, (pid, alive, roles)) in runs {
        let state = if alive {
            "alive"
        } else {
            "dead: `l4lb cleanup` removes it"
        };
        println!("{prefix}*  owner pid {pid} ({state})  {}", roles.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}
