//! Reading a balancer's stats endpoint (`--admin`, Prometheus text) from inside its
//! namespace.

use std::io::{Read, Write};

use l4lb_harness::netns::Namespace;

/// `GET /metrics` from `admin` inside `ns` (panics with what failed: a test helper).
pub fn fetch(ns: &Namespace, admin: &'static str) -> String {
    ns.run(move || -> std::io::Result<String> {
        let mut c = std::net::TcpStream::connect(admin)?;
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut body = String::new();
        c.read_to_string(&mut body)?;
        Ok(body)
    })
    .expect("enter the balancer's namespace")
    .expect("the stats endpoint answers")
}

/// The value of the first sample whose line starts with `line_start`, if any.
pub fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
