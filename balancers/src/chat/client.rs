//! `l4lb chat-client <host> <port> <nickname>`: stdin lines out as `[nickname] line\n`,
//! everything the server sends straight to stdout.
//!
//! Exit codes: 0 after `q`/`Q` or at end of stdin (the original busy-looped at end of
//! stdin; we treat it as `q`), 1 when the connect fails or takes longer than
//! `--connect-timeout` (`connect() error` on stderr, as the original) or when the server
//! closes or resets the connection (`Server disconnected ...` on stdout), 2 for bad
//! arguments (an empty nickname among them).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::wire::{frame_line, is_quit};
use super::ClientArgs;
use crate::args::parse_duration;
use crate::usage::UsageError;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 4096;

/// Runs the client on a current-thread runtime.
pub fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    if args.nickname.trim().is_empty() {
        return Err(UsageError::new(
            "the nickname must not be empty: give one, e.g. `l4lb chat-client HOST PORT alice`",
        )
        .into());
    }
    let connect_timeout = parse_duration("--connect-timeout", &args.connect_timeout)?;
    crate::logging::init(args.log_format);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let code = runtime.block_on(chat(args, connect_timeout))?;
    // The stdin thread may still block in read(2); do not wait for it.
    runtime.shutdown_background();
    Ok(code)
}

async fn chat(args: ClientArgs, connect_timeout: Duration) -> anyhow::Result<ExitCode> {
    let connect = TcpStream::connect((args.host.as_str(), args.port));
    let stream = match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            eprintln!("connect() error");
            eprintln!(
                "l4lb: cannot connect to {}:{}: {error}; is the server running and the host name right?",
                args.host, args.port
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(_) => {
            eprintln!(
                "connect() error: {}:{} timed out after {}",
                args.host,
                args.port,
                humantime::format_duration(connect_timeout)
            );
            eprintln!(
                "l4lb: no answer from {}:{}; is the host reachable (route, firewall)? \
                 --connect-timeout sets how long to wait",
                args.host, args.port
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut lines = spawn_stdin_reader();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else {
                    // End of stdin: behave as `q`.
                    let _ = writer.shutdown().await;
                    return Ok(ExitCode::SUCCESS);
                };
                if is_quit(&line) {
                    let _ = writer.shutdown().await;
                    return Ok(ExitCode::SUCCESS);
                }
                if let Err(error) = writer.write_all(&frame_line(&args.nickname, &line)).await {
                    return Ok(server_gone(&error.to_string()));
                }
            }
            read = reader.read(&mut buf) => match read {
                Ok(0) => return Ok(server_gone("connection closed")),
                Ok(n) => {
                    let mut out = std::io::stdout().lock();
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        // Nobody reads our output any more: nothing useful left to do.
                        return Ok(ExitCode::FAILURE);
                    }
                }
                Err(error) => return Ok(server_gone(&error.to_string())),
            },
        }
    }
}

/// Prints the original's message and returns the exit code for a lost server.
fn server_gone(reason: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Server disconnected ...").and_then(|()| out.flush());
    tracing::info!("server gone: {reason}");
    ExitCode::FAILURE
}

/// Reads stdin lines (bytes, end of line included) on a plain thread, so a blocking read
/// never holds up the runtime. The channel closes at end of stdin or on a read error.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!("cannot read stdin: {error}; quitting");
                    break;
                }
            }
        }
    });
    rx
}
