//! What the soak process holds: resident memory and open file descriptors, read from
//! `/proc/self`, and the descriptor limit raised for ten thousand connections. The whole
//! mesh runs in this process (federation, gateways, echo server, load), so these are
//! the sums of all of them.

use std::io;

/// Resident memory now, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("/proc/self/status has no VmRSS line"))
}

/// File descriptors open now.
pub fn open_fds() -> io::Result<u64> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64)
}

/// Raises this process's open-file limit to at least `wanted` (the hard limit too, which
/// needs `CAP_SYS_RESOURCE` when above it); says how far it could go when it cannot.
pub fn raise_fd_limit(wanted: u64) -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current.is_some_and(|c| c >= wanted) {
        return Ok(());
    }
    let maximum = match now.maximum {
        Some(m) if m < wanted => Some(wanted),
        other => other,
    };
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(wanted),
            maximum,
        },
    )
    .map_err(|e| {
        io::Error::other(format!(
            "cannot raise the open-file limit to {wanted} (now {:?}, hard {:?}): {e}; raising the hard limit needs CAP_SYS_RESOURCE, or hold fewer connections",
            now.current, now.maximum
        ))
    })
}
