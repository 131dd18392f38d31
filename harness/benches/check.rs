//! `l4lb check` on large generated files: parse and validate a valid file and an invalid
//! one of about 0.4 MB and 1.6 MB each, and print the time per MB, which stays about the
//! same from the small file to the large one when checking is linear in the file's size.
//!
//! `cargo bench -p l4lb-harness --bench check` (no root). `BENCH_RUNS=N` sets the runs a
//! file (default 5; the fastest is shown).

use std::path::Path;
use std::time::{Duration, Instant};

use l4lb_harness::scenario::parse_str;

const HEADER: &str =
    "name = \"large\"\npurpose = \"a generated file\"\n\n[[step]]\njoin = [\"a\", \"b\"]\n";

/// A valid file of about `bytes`: lines said, and expectations on who heard them.
fn valid(bytes: usize) -> String {
    let mut text = HEADER.to_string();
    let mut n = 0;
    while text.len() < bytes {
        n += 1;
        text += &format!(
            "\n[[step]]\nsay = \"line {n}\"\nclient = \"a\"\nnote = \"step {n}\"\n\n[[expect]]\nheard = \"line {n}\"\nby = [\"b\"]\n"
        );
    }
    text
}

/// An invalid file of about `bytes`: every step names a server that does not exist.
fn invalid(bytes: usize) -> String {
    let mut text = HEADER.to_string();
    let mut n = 0;
    while text.len() < bytes {
        n += 1;
        text += &format!(
            "\n[[step]]\nkill = \"s{}\"\nnote = \"step {n}\"\n",
            9 + n % 90
        );
    }
    text
}

/// The fastest of `runs` parses of `text`, and whether it parsed.
fn time(text: &str, runs: usize) -> (Duration, bool) {
    let mut best = Duration::MAX;
    let mut ok = false;
    for _ in 0..runs {
        let start = Instant::now();
        let result = parse_str(Path::new("large.toml"), text);
        best = best.min(start.elapsed());
        ok = result.is_ok();
        if let Err(e) = &result {
            std::hint::black_box(e.to_string());
        }
    }
    (best, ok)
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!("file      size      parse+validate  per MB      result");
    for (kind, make) in [
        ("valid", valid as fn(usize) -> String),
        ("invalid", invalid),
    ] {
        for size in [400_000, 1_600_000] {
            let text = make(size);
            let (took, ok) = time(&text, runs);
            let mb = text.len() as f64 / 1e6;
            println!(
                "{kind:<8}  {mb:.2} MB   {:>9.1} ms    {:>7.1} ms  {}",
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e3 / mb,
                if ok { "ok" } else { "errors" }
            );
            assert_eq!(ok, kind == "valid", "the generated {kind} file");
            let start = Instant::now();
            let value: toml::Table = toml::from_str(&text).expect("TOML");
            let toml_only = start.elapsed();
            std::hint::black_box(value);
            println!(
                "  (toml alone: {:.1} ms per MB)",
                toml_only.as_secs_f64() * 1e3 / mb
            );
        }
    }
}
