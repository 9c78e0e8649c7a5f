//! Facts about this process and host that the runtime reports: host name, resident memory,
//! the address of a network interface. (The batch job we run in is the deployer's to say:
//! `jobqueue::batch_job_id`.)

use std::net::{IpAddr, Ipv4Addr};

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// This machine's memory (MemTotal), or 4 GiB when /proc/meminfo cannot be read.
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(4 << 30)
}

/// Hands the heap's free pages back to the system (glibc `malloc_trim`). Freed memory
/// otherwise stays resident in the allocator's arenas: a scheduler that held a 3 M-task graph,
/// or buffers for thousands of connections, would keep that size until it exits.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size of this process in bytes, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    rss_of("self")
}

/// Resident set size of another process (0 when it is gone).
pub fn rss_of(pid: &str) -> u64 {
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}

/// Peak resident set size of a process (VmHWM), in bytes.
pub fn peak_rss_of(pid: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The IPv4 address of a network interface such as `ib0` or `eth0`.
pub fn interface_address(name: &str) -> Result<IpAddr, String> {
    let mut found = None;
    let mut names = Vec::new();
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return Err(format!(
                "cannot list network interfaces: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut cur = addrs;
        while !cur.is_null() {
            let ifa = &*cur;
            let ifname = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            if !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if ifname == name && found.is_none() {
                    found = Some(IpAddr::V4(ip));
                }
                names.push(ifname);
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(addrs);
    }
    names.sort();
    names.dedup();
    found.ok_or_else(|| {
        format!(
            "no IPv4 address on interface '{name}'; interfaces with one: {}",
            names.join(", ")
        )
    })
}

/// Seconds since the Unix epoch: the clock of the ledger, the scaler and worker lifetimes
/// (comparable across processes and hosts, unlike `Instant`).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_bytes() > 1 << 20);
        assert!(peak_rss_of("self") >= rss_bytes() / 2);
        assert!(!hostname().is_empty());
        assert_eq!(
            interface_address("lo").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        let err = interface_address("nosuch0").unwrap_err();
        assert!(err.contains("nosuch0") && err.contains("lo"), "{err}");
    }
}
