//! Gate for tests that need root: they fail loudly, or skip only when asked to.
//!
//! A namespace test that cannot run must not pass silently. [`root_or_skip`] returns
//! `true` when the test should go on; without root it panics with one clear line, unless
//! the person set [`SKIP_ENV`]`=1`, in which case it prints why and returns `false`.

/// Environment variable that explicitly opts out of root-only tests.
pub const SKIP_ENV: &str = "L4LB_SKIP_ROOT_TESTS";

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Call first in every test that needs root; `return` from the test when it is `false`.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        eprintln!("skipping {test}: needs root, and {SKIP_ENV}=1 opts out");
        return false;
    }
    panic!(
        "{test} needs root (network namespaces, veth, iptables): run `sudo -E cargo test`, \
         or set {SKIP_ENV}=1 to skip root-only tests explicitly"
    );
}
