//! Hands out loopback TCP ports for servers the tests start (etcd client and
//! peer ports, PostgreSQL, proxy, ...).
//!
//! Two hazards shape this. Tests run on parallel threads, so a port handed to
//! one test is remembered and never handed out again in this process. And a
//! port that is merely free *now* may be taken before our server binds it: the
//! kernel picks the source port of every outgoing connection (etcd clients,
//! replication) from the ephemeral range. So ports are chosen *below* that
//! range, where only explicit binds land, starting at an offset derived from
//! the process id so that test binaries run side by side (e.g. by nextest)
//! rarely probe the same ports.
//!
//! Whether a port is free is read from `/proc/net/tcp{,6}`, not probed by
//! binding it: a probe socket is inherited by any child another test thread
//! forks at that moment and stays bound until that child execs, so the server
//! given the port could fail with "address in use" (seen in the self-tests).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Lowest port we hand out: clear of the well-known and common service ports.
const LOWEST: u16 = 15_000;
/// Used when the ephemeral range cannot be read; Linux's default low end.
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;

/// Every port handed out in this process, plus the cursor for the next probe.
struct Allocator {
    handed_out: HashSet<u16>,
    next: u16,
}

fn allocator() -> &'static Mutex<Allocator> {
    static ALLOCATOR: OnceLock<Mutex<Allocator>> = OnceLock::new();
    ALLOCATOR.get_or_init(|| {
        let span = u32::from(ephemeral_low() - LOWEST);
        // Spread processes over the range; the modulo keeps it below `span`,
        // which fits in u16 because it is a difference of two u16s.
        let offset = u16::try_from(std::process::id().wrapping_mul(7_919) % span).unwrap_or(0);
        Mutex::new(Allocator {
            handed_out: HashSet::new(),
            next: LOWEST + offset,
        })
    })
}

/// The low end of the kernel's ephemeral port range, bounded to leave us room.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|low| low.parse::<u16>().ok())
        })
        .filter(|low| *low > LOWEST + 1_000)
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

/// A port on 127.0.0.1 that no TCP socket uses now and that was not handed
/// out before in this process.
///
/// # Panics
/// If every port in the range is taken, which means something leaks servers.
pub fn free_port() -> u16 {
    // A poisoned lock only means another test panicked while holding it; the
    // set is still a valid record of handed-out ports.
    let mut alloc = allocator()
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let high = ephemeral_low();
    let in_use = ports_in_use();
    for _ in LOWEST..high {
        let port = alloc.next;
        alloc.next = if port + 1 >= high { LOWEST } else { port + 1 };
        if alloc.handed_out.contains(&port) {
            continue;
        }
        let free = match &in_use {
            Some(in_use) => !in_use.contains(&port),
            // Without /proc, fall back to a bind probe (see module docs for
            // its small race); the listener drops at once.
            None => TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok(),
        };
        if free {
            alloc.handed_out.insert(port);
            return port;
        }
    }
    panic!("no free loopback port left in {LOWEST}..{high}");
}

/// Local ports of every TCP socket in any state (listening, connected,
/// TIME_WAIT, ...) on any address, IPv4 or IPv6; `None` if /proc is missing.
fn ports_in_use() -> Option<HashSet<u16>> {
    let mut in_use = HashSet::new();
    let mut read_any = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        read_any = true;
        // Lines after the header: "sl local_address rem_address st ...",
        // local_address being "<hex ip>:<hex port>".
        let ports = text.lines().skip(1).filter_map(|line| {
            let local = line.split_whitespace().nth(1)?;
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        });
        in_use.extend(ports);
    }
    read_any.then_some(in_use)
}

/// `n` distinct ports from [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}
