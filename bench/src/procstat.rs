//! CPU time and memory of processes, and how busy each CPU was, from /proc.

use anyhow::{anyhow, Context as _, Result};

/// Clock ticks per second of /proc's CPU times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU time of process `pid` (all its threads), in ticks.
pub fn process_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: fields are counted after its closing ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no utime"))?;
    let stime: u64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no stime"))?;
    Ok(utime + stime)
}

/// Envoy's resident set size and its peak, and the authz server's resident set size when there
/// is one, in kB: what a result row records.
pub fn memory_kb(envoy: u32, authz: Option<u32>) -> Result<(u64, u64, Option<u64>)> {
    let (rss, peak) = rss_kb(envoy)?;
    let authz = authz.map(rss_kb).transpose()?.map(|(rss, _)| rss);
    Ok((rss, peak, authz))
}

/// Resident set size of `pid` in kB (`VmRSS`), and its peak (`VmHWM`).
fn rss_kb(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// (busy, total) ticks of CPU `cpu` since boot, from /proc/stat.
pub fn cpu_ticks(cpu: usize) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| anyhow!("no {name} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU time of the calling thread (`Thread`) or of the waited-for children (`Children`), in
/// seconds: what the load generator used.
#[derive(Clone, Copy, Debug)]
pub enum Own {
    Thread,
    Children,
}

pub fn own_cpu_s(who: Own) -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let target = match who {
        Own::Thread => libc::RUSAGE_THREAD,
        Own::Children => libc::RUSAGE_CHILDREN,
    };
    // SAFETY: as above.
    if unsafe { libc::getrusage(target, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of the processes under test and how busy both CPUs were, over one measurement:
/// `cpu` runs Envoy (and the authz server), `load_cpu` the load generator (`own`).
pub struct CpuWindow {
    pids: Vec<u32>,
    start_ticks: Vec<u64>,
    cpu: usize,
    start_cpu: (u64, u64),
    load: Option<(usize, (u64, u64), Own, f64)>,
}

/// Ticks used by each process, and by everything else on the CPU, over a window.
#[derive(Clone, Debug)]
pub struct CpuUsed {
    pub per_process_s: Vec<f64>,
    /// Share of the CPU busy with anything but `pids` (other work on the machine).
    pub foreign_share: f64,
    /// Share of the CPU busy in total.
    pub busy_share: f64,
    /// Share of the load generator's CPU busy with anything but the generator.
    pub load_foreign_share: f64,
}

impl CpuWindow {
    pub fn start(pids: &[u32], cpu: usize, load: Option<(usize, Own)>) -> Result<Self> {
        Ok(CpuWindow {
            pids: pids.to_vec(),
            start_ticks: pids
                .iter()
                .map(|&p| process_ticks(p))
                .collect::<Result<_>>()?,
            cpu,
            start_cpu: cpu_ticks(cpu)?,
            load: match load {
                Some((c, own)) => Some((c, cpu_ticks(c)?, own, own_cpu_s(own))),
                None => None,
            },
        })
    }

    pub fn stop(&self) -> Result<CpuUsed> {
        let hz = clock_ticks();
        let now: Vec<u64> = self
            .pids
            .iter()
            .map(|&p| process_ticks(p))
            .collect::<Result<_>>()?;
        let (busy, total) = cpu_ticks(self.cpu)?;
        let (busy, total) = (busy - self.start_cpu.0, (total - self.start_cpu.1).max(1));
        let used: Vec<u64> = now
            .iter()
            .zip(&self.start_ticks)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let ours: u64 = used.iter().sum();
        let load_foreign_share = match self.load {
            Some((c, (busy0, total0), own, own0)) => {
                let (busy1, total1) = cpu_ticks(c)?;
                let busy = (busy1 - busy0) as f64 / hz;
                let total = ((total1 - total0) as f64 / hz).max(1e-9);
                ((busy - (own_cpu_s(own) - own0)) / total).max(0.0)
            }
            None => 0.0,
        };
        Ok(CpuUsed {
            per_process_s: used.iter().map(|&t| t as f64 / hz).collect(),
            foreign_share: busy.saturating_sub(ours) as f64 / total as f64,
            busy_share: busy as f64 / total as f64,
            load_foreign_share,
        })
    }
}
