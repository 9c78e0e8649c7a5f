//! Facts about this process and host that the runtime reports: host name, resident memory,
//! the address of a network interface. (The batch job we run in is the deployer's to say:
//! `jobqueue::batch_job_id`.)

use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
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
    // SAFETY: malloc_trim(3) takes no pointer and touches only the allocator's own free
    // lists, under the allocator's locks, so it is sound from any thread at any time; no safe
    // wrapper exists (nix has none). Its return value only says whether memory was released.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU time this process has used (user + system), in seconds, from /proc/self/stat; None
/// where that cannot be read.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = stat_cpu_ticks(&stat)?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Some(ticks as f64 / per_second as f64)
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line. The command name (field 2) is
/// in parentheses and may itself hold spaces or parentheses, so fields are counted from the
/// last ')'.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 11th field here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Whether the process `pid` still runs: it exists and is neither a zombie nor dead. A
/// daemon lets go of its lock as the kernel closes its files, a moment before it is gone.
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat_running(&stat))
}

/// The state field of a /proc/PID/stat line (after the last ')') is not Z (zombie) or X (dead).
fn stat_running(stat: &str) -> bool {
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// CPU use between two samples of (wall seconds, CPU seconds) in thousandths of one core
/// (1000 = one core busy the whole time; more on several threads). 0 for no elapsed time.
pub fn cpu_permille(before: (f64, f64), after: (f64, f64)) -> u32 {
    let wall = after.0 - before.0;
    let cpu = after.1 - before.1;
    if wall <= 0.0 || cpu <= 0.0 {
        return 0;
    }
    (cpu / wall * 1000.0).round().min(u32::MAX as f64) as u32
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
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096);
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
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let mut found = None;
    let mut names = Vec::new();
    for ifa in addrs {
        let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        if ifa.interface_name == name && found.is_none() {
            found = Some(IpAddr::V4(sin.ip()));
        }
        names.push(ifa.interface_name);
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

/// A Unix time as this host's wall clock (hours, minutes, seconds in its time zone), or None
/// when the C library cannot convert it.
pub fn local_clock(unix: f64) -> Option<(u32, u32, u32)> {
    let t = unix as libc::time_t;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::uninit();
    // SAFETY: localtime_r(3) reads `t` and writes only into `tm`, memory we own and sized for
    // it; it is the reentrant form (no shared static buffer), so concurrent calls are sound.
    // `tm` is read only when it returned non-null, i.e. filled it in. Neither std nor nix
    // converts to local time (it needs the C library's time-zone rules).
    let tm = unsafe {
        if libc::localtime_r(&t, tm.as_mut_ptr()).is_null() {
            return None;
        }
        tm.assume_init()
    };
    Some((tm.tm_hour as u32, tm.tm_min as u32, tm.tm_sec as u32))
}

/// Seconds since the Unix epoch: the clock of the ledger, the scaler and worker lifetimes
/// (comparable across processes and hosts, unlike `Instant`).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the Unix epoch on a clock that never jumps: the wall clock read once, at
/// this process's first call, then advanced by the monotonic clock. The cluster daemon's
/// timeouts (a job's startup, workers that never connect, back-off, pause) compare times
/// from this clock with the times it recorded, so a step of the system clock (NTP, an
/// administrator) can neither fire nor stall them; what it records and shows stays the wall
/// clock's time unless that clock is stepped while the daemon runs.
pub fn steady_unix_now() -> f64 {
    static ANCHOR: std::sync::OnceLock<(f64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = ANCHOR.get_or_init(|| (unix_now(), std::time::Instant::now()));
    wall + at.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces_and_parens() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 3 0 5 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(267));
        assert_eq!(stat_cpu_ticks("42 (x) S 1"), None);
        assert_eq!(stat_cpu_ticks("no parens"), None);
    }

    #[test]
    fn this_process_reports_cpu_time_that_grows_when_it_computes() {
        let before = cpu_seconds().expect("/proc/self/stat");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 60 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_seconds().unwrap() > before);
    }

    #[test]
    fn a_zombie_or_dead_process_is_not_running() {
        assert!(stat_running("12 (a) b) S 1 2"));
        assert!(!stat_running("12 (a) Z 1 2"));
        assert!(!stat_running("12 (x) X 1"));
        assert!(!stat_running("garbage"));
        assert!(process_running(std::process::id()));
    }

    #[test]
    fn cpu_permille_is_cpu_over_wall_time() {
        assert_eq!(cpu_permille((0.0, 0.0), (2.0, 1.0)), 500);
        assert_eq!(cpu_permille((1.0, 1.0), (2.0, 3.0)), 2000);
        assert_eq!(cpu_permille((1.0, 1.0), (1.0, 2.0)), 0);
        assert_eq!(cpu_permille((0.0, 5.0), (1.0, 4.0)), 0);
    }

    #[test]
    fn the_steady_clock_starts_at_the_wall_clock_and_never_goes_back() {
        let first = steady_unix_now();
        assert!(
            (first - unix_now()).abs() < 1.0,
            "{first} vs {}",
            unix_now()
        );
        let mut last = first;
        for _ in 0..1000 {
            let t = steady_unix_now();
            assert!(t >= last);
            last = t;
        }
    }

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
        let (h, m, s) = local_clock(0.0).unwrap();
        assert!(h < 24 && m < 60 && s < 61);
        assert!(err.contains("nosuch0") && err.contains("lo"), "{err}");
    }
}
