//! What the `idle` and `proxy-overhead` benchmarks read from `/proc`: a process's resident memory (`VmRSS`), thread
//! count and CPU time (`utime + stime`), and which pid of a [`ChildGuard`]'s process group runs a
//! given binary. Every reader returns `None` once the process is gone, so the caller decides what
//! a vanished process means.

use std::fs;
use std::process::Command;
use stolon_tests::ChildGuard;

/// Linux's clock tick on every common architecture; used if `getconf` cannot be run.
const DEFAULT_CLK_TCK: u64 = 100;
/// The kernel truncates `/proc/<pid>/comm` to this many bytes.
const COMM_LEN: usize = 15;

/// A value in kB from a `/proc/<pid>/status` line such as `VmRSS:    1234 kB`.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS")
}

/// Number of threads.
pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads")
}

/// User plus system CPU time in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; after its closing ')' come fields 3, 4, ...
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, for [`cpu_ticks`].
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(DEFAULT_CLK_TCK)
}

/// Whether `pid` runs `binary`, by its (truncated) command name.
fn runs(pid: u32, binary: &str) -> bool {
    let want = &binary[..binary.len().min(COMM_LEN)];
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == want)
}

/// The pid running `binary` in `guard`'s process group: normally the leader itself (the harness
/// switches to the `postgres` user without a wrapper), else the member whose name matches.
pub fn binary_pid(guard: &ChildGuard, binary: &str) -> Option<u32> {
    if runs(guard.pid(), binary) {
        return Some(guard.pid());
    }
    guard.group_pids().into_iter().find(|pid| runs(*pid, binary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(threads(me).is_some_and(|n| n >= 1));
        assert!(cpu_ticks(me).is_some());
        assert!(clk_tck() > 0);
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
