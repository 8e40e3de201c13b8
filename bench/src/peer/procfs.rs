//! What Linux tells about a process in `/proc`: its CPU time (`stat`), its memory (`status`), its
//! children; how much disk is free (`df`); and signalling a process (`kill`). Parsing is pure;
//! reading returns `None` where the system does not tell (not Linux, or the process is gone).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on every Linux architecture we run).
const TICKS_PER_SEC: u64 = 100;

/// CPU time of a process from its `/proc/<pid>/stat` line: its own (user + system) and that of
/// its children it has waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub own: Duration,
    pub waited_children: Duration,
}

/// Parses a `/proc/<pid>/stat` line: fields 14–17 (utime, stime, cutime, cstime) in clock ticks.
pub fn parse_stat(stat: &str) -> Option<CpuTimes> {
    // The command name (field 2) may hold spaces and parentheses; the fields after its last ')'
    // are plain. After it come field 3 (state) onwards, so utime (14) is the 12th.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [utime, stime, cutime, cstime] = ticks[..] else {
        return None;
    };
    let time = |t: u64| Duration::from_millis(t * 1000 / TICKS_PER_SEC);
    Some(CpuTimes {
        own: time(utime + stime),
        waited_children: time(cutime + cstime),
    })
}

/// The parent's pid from a `/proc/<pid>/stat` line (field 4).
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), in bytes.
pub fn parse_status_bytes(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// The real user id from `/proc/<pid>/status` (`Uid:` real, effective, saved, filesystem).
pub fn parse_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|line| {
        line.strip_prefix("Uid:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Available bytes of the file system, from the second line of `df -Pk` (POSIX format, 1024-byte
/// blocks: file system, blocks, used, available, capacity, mount point).
pub fn parse_df_available(df: &str) -> Option<u64> {
    let line = df.lines().nth(1)?;
    let kb: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn cpu_times(pid: u32) -> Option<CpuTimes> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn self_cpu_times() -> Option<CpuTimes> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Resident memory now (`VmRSS`) and at its peak so far (`VmHWM`), in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((
        parse_status_bytes(&status, "VmRSS")?,
        parse_status_bytes(&status, "VmHWM")?,
    ))
}

pub fn own_uid() -> Option<u32> {
    parse_uid(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The pids whose parent is `parent` (nginx's workers under its master).
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_ppid(&s))
                == Some(parent)
        })
        .collect()
}

/// Free bytes of the file system holding `dir` (from `df`, so no unsafe `statvfs` call).
pub fn available_bytes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    parse_df_available(&String::from_utf8_lossy(&out.stdout))
}

/// Bytes of disk the files under `dir` take (allocated blocks, so a sparse or preallocated file
/// counts what it holds), walked recursively; symbolic links are not followed.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.blocks() * 512),
            _ => 0,
        })
        .sum()
}

/// Sends `signal` (`TERM`, `QUIT`) to `pid` with kill(1), the one way to signal a process
/// without unsafe code.
pub fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}
