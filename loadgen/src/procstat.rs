//! CPU time and memory of a process, read from `/proc/PID/stat` and `/proc/PID/status`.

use std::time::Instant;

/// Linux reports CPU times in /proc in USER_HZ units, 100 per second on every ABI.
const USER_HZ: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    /// Resident set size now, KiB.
    pub rss_kb: u64,
    /// Peak resident set size (VmHWM), KiB: catches peaks between samples.
    pub hwm_kb: u64,
}

/// utime + stime (fields 14 and 15) in seconds from the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may hold spaces and `)`, so
/// fields are counted from the last `)`.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); utime is field 14, i.e. the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// A `Name:   1234 kB` value in KiB from the text of `/proc/PID/status`.
pub fn parse_status_kb(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != name {
            return None;
        }
        value.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// Seconds of CPU all cores spent not idle (user, nice, system, irq, softirq, steal;
/// guest time is inside user) from the `cpu` line of `/proc/stat`.
pub fn parse_machine_busy(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| v.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    (v.len() >= 4).then(|| busy as f64 / USER_HZ)
}

/// The whole machine's busy CPU seconds so far; `None` if /proc/stat is unreadable.
pub fn machine_busy_s() -> Option<f64> {
    parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Reads `/proc/<pid>` (`pid` may be `"self"`); `None` if the process is gone.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        at: Instant::now(),
        cpu_s: parse_stat_cpu(&stat)?,
        rss_kb: parse_status_kb(&status, "VmRSS")?,
        hwm_kb: parse_status_kb(&status, "VmHWM").unwrap_or(0),
    })
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent(from: &ProcSample, to: &ProcSample) -> f64 {
    let wall = to.at.saturating_duration_since(from.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    (to.cpu_s - from.cpu_s).max(0.0) / wall * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as the kernel writes it.
        let stat = "4242 (switch board) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 123456789 2500 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(3.25));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert_eq!(parse_stat_cpu("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_values_in_kb() {
        let status = "Name:\tswitchboard\nVmPeak:\t  300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   18432 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(18432));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 20 30 5000 70 4 6 10 0 0\ncpu0 50 10 15 2500 35 2 3 5 0 0\nintr 1\n";
        // 100 + 20 + 30 + 4 + 6 + 10 = 170 ticks.
        assert_eq!(parse_machine_busy(stat), Some(1.7));
        assert_eq!(parse_machine_busy("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_machine_busy("cpu  1 x 3 4\n"), None);
        assert!(machine_busy_s().is_some_and(|s| s > 0.0));
    }

    #[test]
    fn own_process_is_readable() {
        let s = sample("self").expect("/proc/self");
        assert!(s.rss_kb > 0);
        assert!(s.hwm_kb >= s.rss_kb);
    }
}
