//! Resident memory of processes, sampled every second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// VmRSS of `pid` in KiB (None if it is gone).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One sample: seconds since the sampler started, KiB of each watched process (0: gone).
#[derive(Clone, Debug)]
pub struct Sample {
    pub at_s: f64,
    pub kib: Vec<u64>,
}

/// Samples the processes whose pids `pids` gives (read again each time: a restarted process
/// is followed) every second.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(pids: Arc<Mutex<Vec<u32>>>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(vec![]));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ids = pids.lock().map(|p| p.clone()).unwrap_or_default();
                    let kib = ids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();
                    if let Ok(mut s) = samples.lock() {
                        s.push(Sample {
                            at_s: start.elapsed().as_secs_f64(),
                            kib,
                        });
                    }
                    n += 1;
                    let next = Duration::from_secs(n);
                    if let Some(d) = next.checked_sub(start.elapsed()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        Sampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Growth of process `i` in percent: the median of the last 10 samples against the median of
/// the 10 samples from `baseline_s` on (after warm-up); also both medians (KiB).
pub fn growth(samples: &[Sample], i: usize, baseline_s: f64) -> (f64, u64, u64) {
    let med = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let mut base: Vec<u64> = samples
        .iter()
        .filter(|s| s.at_s >= baseline_s)
        .take(10)
        .map(|s| s.kib.get(i).copied().unwrap_or(0))
        .collect();
    let n = samples.len();
    let mut last: Vec<u64> = samples[n.saturating_sub(10)..]
        .iter()
        .map(|s| s.kib.get(i).copied().unwrap_or(0))
        .collect();
    let (b, l) = (med(&mut base), med(&mut last));
    let g = if b == 0 {
        0.0
    } else {
        (l as f64 - b as f64) * 100.0 / b as f64
    };
    (g, b, l)
}
