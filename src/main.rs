//! `l4lb`: one binary for the balancers, the chat programs and the harness.
//! It only parses arguments and dispatches; every subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use l4lb_balancers::usage::{UsageError, USAGE_EXIT_CODE};
use l4lb_harness::commands;

#[derive(Debug, Parser)]
#[command(
    name = "l4lb",
    version,
    about = "L4 TCP load balancers and the harness that proves them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Raw-socket full-NAT balancer (root): round robin over healthy backends.
    Raw(l4lb_balancers::raw::RawArgs),
    /// TCP proxy balancer: least connections, health checks, idle timeouts.
    Proxy(l4lb_balancers::proxy::ProxyArgs),
    /// Chat server: every chunk a client sends goes to every client of this server.
    ChatServer(l4lb_balancers::chat::ServerArgs),
    /// Chat client: sends `[nickname] line` for each stdin line, prints what arrives.
    ChatClient(l4lb_balancers::chat::ClientArgs),
    /// Run scenario files (or directories of them) in fresh namespace topologies.
    Run(commands::RunArgs),
    /// Validate scenario files without running them.
    Check(commands::CheckArgs),
    /// Build, remove or inspect a topology by hand.
    Topo(commands::TopoArgs),
    /// Remove namespaces, links and processes that crashed runs left behind.
    Cleanup(commands::CleanupArgs),
    /// Measure both balancers against direct, kernel NAT, HAProxy and nginx.
    Bench(commands::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Raw(args) => l4lb_balancers::raw::run(args),
        Command::Proxy(args) => l4lb_balancers::proxy::run(args),
        Command::ChatServer(args) => l4lb_balancers::chat::run_server(args),
        Command::ChatClient(args) => l4lb_balancers::chat::run_client(args),
        Command::Run(args) => commands::run(args),
        Command::Check(args) => commands::check(args),
        Command::Topo(args) => commands::topo(args),
        Command::Cleanup(args) => commands::cleanup(args),
        Command::Bench(args) => commands::bench(args),
    };
    match result {
        Ok(code) => code,
        Err(error) if error.downcast_ref::<UsageError>().is_some() => {
            eprintln!("l4lb: {error}");
            ExitCode::from(USAGE_EXIT_CODE)
        }
        Err(error) => {
            eprintln!("l4lb: {error:#}");
            ExitCode::FAILURE
        }
    }
}
