//! The results as a PNG: closed-loop throughput and open-loop p99 latency per rule count, then
//! (raw TCP) the connection rate and the long connections' throughput, one column per transport;
//! bars for native RBAC, our filter as wasm and as the native module, and ext_authz;
//! no filter and the no-op wasm filter (rule-independent) as lines. Shapes
//! are drawn with plotters' bitmap backend; text with the public-domain 8x8 bitmap font of
//! `font8x8`, so no system font is needed; the PNG is encoded with `png`.

use crate::report::{Row, RunReport, TcpRow};
use anyhow::{Context as _, Result};
use font8x8::UnicodeFonts;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const W: u32 = 1400;
/// Height of one row of panels.
const ROW_H: u32 = 415;
const HEADER: u32 = 70;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

const NONE: RGBColor = RGBColor(90, 90, 90);
const NOOP: RGBColor = RGBColor(150, 90, 190);
const RBAC: RGBColor = RGBColor(60, 110, 200);
const ALP: RGBColor = RGBColor(235, 130, 30);
const NATIVE: RGBColor = RGBColor(40, 160, 90);
const AUTHZ: RGBColor = RGBColor(200, 50, 50);
const GRID: RGBColor = RGBColor(225, 225, 225);
const INK: RGBColor = RGBColor(30, 30, 30);

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels wide.
fn text(area: &Area<'_>, x: i32, y: i32, s: &str, scale: i32, color: &RGBColor) {
    let mut cx = x;
    for c in s.chars() {
        let glyph = font8x8::BASIC_FONTS
            .get(c)
            .or_else(|| font8x8::LATIN_FONTS.get(c))
            .or_else(|| font8x8::BASIC_FONTS.get('?'));
        if let Some(rows) = glyph {
            for (gy, row) in rows.iter().enumerate() {
                for gx in 0..8 {
                    if row & (1 << gx) != 0 {
                        let (px, py) = (cx + gx * scale, y + gy as i32 * scale);
                        for dx in 0..scale {
                            for dy in 0..scale {
                                let _ = area.draw_pixel((px + dx, py + dy), color);
                            }
                        }
                    }
                }
            }
        }
        cx += 8 * scale;
    }
}

fn text_width(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 8 * scale
}

fn k(v: f64) -> String {
    if v >= 1000.0 {
        let t = v / 1000.0;
        if (t - t.round()).abs() < 1e-9 {
            format!("{}k", t.round())
        } else {
            format!("{t:.1}k")
        }
    } else {
        format!("{v:.0}")
    }
}

fn latency_label(us: f64) -> String {
    if us >= 1000.0 {
        format!("{} ms", (us / 1000.0).round())
    } else {
        format!("{us:.0} µs")
    }
}

struct Panel<'a> {
    area: Area<'a>,
    x0: i32,
    x1: i32,
    y0: i32,
    y1: i32,
}

impl<'a> Panel<'a> {
    fn new(area: Area<'a>, title: &str) -> Panel<'a> {
        let (w, h) = area.dim_in_pixel();
        text(&area, 80, 8, title, 2, &INK);
        Panel {
            area,
            x0: 80,
            x1: w as i32 - 130,
            y0: 36,
            y1: h as i32 - 36,
        }
    }

    fn hline(&self, y: i32, color: &RGBColor, dashed: bool) {
        let mut x = self.x0;
        while x < self.x1 {
            let end = if dashed {
                (x + 8).min(self.x1)
            } else {
                self.x1
            };
            let _ = self.area.draw(&PathElement::new(
                vec![(x, y), (end, y)],
                color.stroke_width(2),
            ));
            x = if dashed { x + 14 } else { self.x1 };
        }
    }

    fn frame(&self) {
        let _ = self.area.draw(&PathElement::new(
            vec![(self.x0, self.y0), (self.x0, self.y1), (self.x1, self.y1)],
            INK.stroke_width(1),
        ));
    }

    fn group_x(&self, i: usize, n: usize) -> (i32, i32) {
        let gw = (self.x1 - self.x0) as f64 / n as f64;
        ((self.x0 as f64 + gw * i as f64) as i32, gw as i32)
    }
}

/// A panel's values: `lookup(config, rules)` is `None` without such a row, `Some(None)` for a
/// row without a value (saturated), else `Some(Some(v))`.
type Lookup<'a> = &'a dyn Fn(&str, Option<usize>) -> Option<Option<f64>>;

const BARS: [(&str, RGBColor); 4] = [
    ("rbac", RBAC),
    ("alp", ALP),
    ("native", NATIVE),
    ("ext_authz", AUTHZ),
];

/// The label above a bar of ours (`alp`, `native`) at a rule count (a ratio), if any.
type Above<'a> = &'a dyn Fn(&str, usize) -> Option<String>;

/// A step of 1, 2 or 5 times a power of ten giving at most 8 grid lines up to `top`.
fn nice_step(top: f64) -> f64 {
    let raw = (top / 8.0).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| top / s <= 8.0)
        .unwrap_or(10.0 * p)
}

/// Bars on a linear axis from 0 (throughput-like values), the rule-independent rows as lines;
/// `above(rules)` labels our filter's bar.
fn linear_panel(
    panel: &Panel<'_>,
    counts: &[usize],
    lookup: Lookup<'_>,
    unit: &str,
    above: Above<'_>,
) {
    let mut top: f64 = 1.0;
    for (c, _) in BARS.iter().chain([("none", NONE), ("noop", NOOP)].iter()) {
        for n in counts.iter().map(|&n| Some(n)).chain([None]) {
            if let Some(Some(v)) = lookup(c, n) {
                if v.is_finite() {
                    top = top.max(v);
                }
            }
        }
    }
    let top = top * 1.15;
    let step = nice_step(top);
    let y = |v: f64| panel.y1 - ((v / top) * (panel.y1 - panel.y0) as f64) as i32;
    let mut t = 0.0;
    while t <= top {
        let _ = panel.area.draw(&PathElement::new(
            vec![(panel.x0, y(t)), (panel.x1, y(t))],
            GRID.stroke_width(1),
        ));
        let label = k(t);
        text(
            &panel.area,
            panel.x0 - 8 - text_width(&label, 1),
            y(t) - 4,
            &label,
            1,
            &INK,
        );
        t += step;
    }
    text(&panel.area, 8, panel.y0 - 14, unit, 1, &INK);
    draw_groups(panel, counts, lookup, &y, above);
    baselines(panel, lookup, &y);
    panel.frame();
}

fn throughput_panel(panel: &Panel<'_>, run: &RunReport, transport: &str) {
    let lookup =
        |c: &str, n: Option<usize>| find_row(run, transport, c, n).map(|r| Some(r.closed.rps));
    let above = |c: &str, n: usize| {
        let a = find_row(run, transport, c, Some(n))?;
        let b = find_row(run, transport, "rbac", Some(n))?;
        Some(format!("{:.2}xRBAC", a.closed.rps / b.closed.rps))
    };
    linear_panel(panel, &run.rule_counts(), &lookup, "req/s", &above);
}

fn find_row<'r>(
    run: &'r RunReport,
    transport: &str,
    config: &str,
    rules: Option<usize>,
) -> Option<&'r Row> {
    run.rows
        .iter()
        .find(|r| r.transport == transport && r.config == config && r.rules == rules)
}

fn find_tcp<'r>(
    run: &'r RunReport,
    transport: &str,
    config: &str,
    rules: Option<usize>,
) -> Option<&'r TcpRow> {
    run.tcp_rows
        .iter()
        .find(|r| r.transport == transport && r.config == config && r.rules == rules)
}

fn tcp_rate_panel(panel: &Panel<'_>, run: &RunReport, transport: &str) {
    let lookup =
        |c: &str, n: Option<usize>| find_tcp(run, transport, c, n).map(|r| Some(r.connect.rps));
    let above = |c: &str, n: usize| {
        let a = find_tcp(run, transport, c, Some(n))?;
        let b = find_tcp(run, transport, "rbac", Some(n))?;
        Some(format!("{:.2}xRBAC", a.connect.rps / b.connect.rps))
    };
    linear_panel(panel, &run.tcp_rule_counts(), &lookup, "conn/s", &above);
}

fn tcp_stream_panel(panel: &Panel<'_>, run: &RunReport, transport: &str) {
    let lookup = |c: &str, n: Option<usize>| {
        find_tcp(run, transport, c, n).map(|r| r.stream.as_ref().map(|t| t.mb_per_s))
    };
    let above = |c: &str, n: usize| {
        let a = find_tcp(run, transport, c, Some(n))?.stream.as_ref()?;
        let b = find_tcp(run, transport, "none", None)?.stream.as_ref()?;
        Some(format!("{:.2}xnone", a.mb_per_s / b.mb_per_s))
    };
    linear_panel(panel, &run.tcp_rule_counts(), &lookup, "MB/s", &above);
}

fn latency_panel(panel: &Panel<'_>, run: &RunReport, transport: &str) {
    let counts = run.rule_counts();
    let values: Vec<f64> = run
        .rows
        .iter()
        .filter(|r| {
            r.transport == transport && r.open.p99_us > 0.0 && !r.open_saturated(run.meta.open_rate)
        })
        .map(|r| r.open.p99_us)
        .collect();
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        .log10()
        .floor();
    let hi = values
        .iter()
        .copied()
        .fold(10.0, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let y = |v: f64| {
        panel.y1 - (((v.max(1.0).log10() - lo) / (hi - lo)) * (panel.y1 - panel.y0) as f64) as i32
    };
    let mut d = lo;
    while d <= hi {
        let v = 10f64.powf(d);
        let _ = panel.area.draw(&PathElement::new(
            vec![(panel.x0, y(v)), (panel.x1, y(v))],
            GRID.stroke_width(1),
        ));
        let label = latency_label(v);
        text(
            &panel.area,
            panel.x0 - 8 - text_width(&label, 1),
            y(v) - 4,
            &label,
            1,
            &INK,
        );
        d += 1.0;
    }
    text(&panel.area, 8, panel.y0 - 14, "p99 (log)", 1, &INK);
    let rate = run.meta.open_rate;
    let lookup = |c: &str, n: Option<usize>| {
        find_row(run, transport, c, n).map(|r| (!r.open_saturated(rate)).then_some(r.open.p99_us))
    };
    draw_groups(panel, &counts, &lookup, &y, &|_, _| None);
    baselines(panel, &lookup, &y);
    panel.frame();
}

/// The rule-independent rows as lines across the panel, labelled at the right (apart when close).
fn baselines(panel: &Panel<'_>, lookup: Lookup<'_>, y: &dyn Fn(f64) -> i32) {
    let mut last_label: Option<i32> = None;
    for (config, color, dashed, label) in [
        ("none", NONE, false, "no filter"),
        ("noop", NOOP, true, "no-op wasm"),
    ] {
        let Some(v) = lookup(config, None).flatten().filter(|v| v.is_finite()) else {
            continue;
        };
        panel.hline(y(v), &color, dashed);
        let mut ly = y(v) - 4;
        if let Some(prev) = last_label.filter(|p| (ly - p).abs() < 10) {
            ly = if ly <= prev { prev - 10 } else { prev + 10 };
        }
        text(&panel.area, panel.x1 + 6, ly, label, 1, &color);
        last_label = Some(ly);
    }
}

/// Bars per rule count; above our filters' bars (wasm, native) `above(config, rules)` (a
/// ratio), if any, the second label moved up when it would run into the first.
fn draw_groups(
    panel: &Panel<'_>,
    counts: &[usize],
    lookup: Lookup<'_>,
    y: &dyn Fn(f64) -> i32,
    above: Above<'_>,
) {
    let bars = BARS.len() as i32;
    for (gi, &n) in counts.iter().enumerate() {
        let (gx, gw) = panel.group_x(gi, counts.len());
        let bw = gw * 3 / (4 * bars);
        let mut last_label: Option<i32> = None;
        let label = format!("{n} rules");
        text(
            &panel.area,
            gx + gw / 2 - text_width(&label, 1) / 2,
            panel.y1 + 8,
            &label,
            1,
            &INK,
        );
        for (bi, (config, color)) in BARS.iter().enumerate() {
            let Some(value) = lookup(config, Some(n)) else {
                continue;
            };
            let bx = gx + gw / 2 - bars * bw / 2 + bi as i32 * bw;
            match value.filter(|v| v.is_finite()) {
                Some(v) => {
                    let _ = panel.area.draw(&Rectangle::new(
                        [(bx + 2, y(v)), (bx + bw - 2, panel.y1)],
                        color.filled(),
                    ));
                    if *config == "alp" || *config == "native" {
                        if let Some(t) = above(config, n) {
                            let mut ly = y(v) - 12;
                            if let Some(prev) = last_label.filter(|p| (ly - p).abs() < 10) {
                                ly = prev - 10;
                            }
                            last_label = Some(ly);
                            text(
                                &panel.area,
                                bx + bw / 2 - text_width(&t, 1) / 2,
                                ly,
                                &t,
                                1,
                                color,
                            );
                        }
                    }
                }
                None => {
                    let t = "sat.";
                    text(
                        &panel.area,
                        bx + bw / 2 - text_width(t, 1) / 2,
                        panel.y0 + 4,
                        t,
                        1,
                        color,
                    );
                }
            }
        }
    }
}

/// What a row of panels shows (one panel per transport).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    HttpThroughput,
    HttpLatency,
    TcpRate,
    TcpStream,
}

/// Writes the plot of `run` to `path`: HTTP throughput and latency, then the TCP connection rate
/// and throughput, each a row of panels when measured.
pub fn draw(run: &RunReport, path: &Path) -> Result<()> {
    let mut kinds = Vec::new();
    if !run.rows.is_empty() {
        kinds.extend([Kind::HttpThroughput, Kind::HttpLatency]);
    }
    if !run.tcp_rows.is_empty() {
        kinds.extend([Kind::TcpRate, Kind::TcpStream]);
    }
    let h = HEADER + ROW_H * kinds.len().max(1) as u32;
    let mut buf = vec![0u8; (W * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let m = &run.meta;
        let title = match (run.rows.is_empty(), run.tcp_rows.is_empty()) {
            (false, true) => "calico-alp: Envoy --concurrency 1, direct response, one run",
            (true, false) => "calico-alp: Envoy --concurrency 1, raw TCP to echo, one run",
            _ => "calico-alp: Envoy --concurrency 1, one run (HTTP direct response, TCP echo)",
        };
        text(&root, 20, 12, title, 2, &INK);
        let mut sub = format!("{} commit {}  {}", m.date_utc, m.git, m.envoy);
        if !run.rows.is_empty() {
            sub += &format!(
                "  HTTP: closed loop {} conns, open loop {:.0}/s",
                m.connections, m.open_rate
            );
        }
        if let (Some(t), false) = (&m.tcp, run.tcp_rows.is_empty()) {
            sub += &format!(
                "  TCP: {} workers{}, {} x {} KiB streams",
                t.workers,
                if t.resumption {
                    " (TLS resumption)"
                } else {
                    ""
                },
                t.streams,
                t.chunk_bytes / 1024
            );
        }
        text(&root, 20, 36, &sub, 1, &INK);
        let mut lx = 20;
        for (label, color) in [
            ("no filter", NONE),
            ("no-op wasm", NOOP),
            ("native RBAC", RBAC),
            ("calico-alp wasm", ALP),
            ("calico-alp native", NATIVE),
            ("ext_authz gRPC", AUTHZ),
        ] {
            let _ = root.draw(&Rectangle::new([(lx, 52), (lx + 12, 62)], color.filled()));
            text(&root, lx + 18, 54, label, 1, &INK);
            lx += 40 + text_width(label, 1);
        }
        let (_, body) = root.split_vertically(HEADER);
        let columns = run
            .transports()
            .len()
            .max(run.tcp_transports().len())
            .max(1);
        let cells = body.split_evenly((kinds.len().max(1), columns));
        for (ri, &kind) in kinds.iter().enumerate() {
            let transports = match kind {
                Kind::HttpThroughput | Kind::HttpLatency => run.transports(),
                Kind::TcpRate | Kind::TcpStream => run.tcp_transports(),
            };
            for (ci, t) in transports.iter().enumerate() {
                let name = if t == "mtls" { "mTLS" } else { t.as_str() };
                let cell = cells[ri * columns + ci].clone();
                match kind {
                    Kind::HttpThroughput => {
                        let p = Panel::new(cell, &format!("{name}: closed-loop throughput"));
                        throughput_panel(&p, run, t);
                    }
                    Kind::HttpLatency => {
                        let p = Panel::new(
                            cell,
                            &format!("{name}: open-loop p99 at {:.0}/s", m.open_rate),
                        );
                        latency_panel(&p, run, t);
                    }
                    Kind::TcpRate => {
                        let p = Panel::new(cell, &format!("TCP {name}: new connections/s"));
                        tcp_rate_panel(&p, run, t);
                    }
                    Kind::TcpStream => {
                        let p = Panel::new(cell, &format!("TCP {name}: long connections, MB/s"));
                        tcp_stream_panel(&p, run, t);
                    }
                }
            }
        }
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), W, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&buf)?;
    writer.finish()?;
    Ok(())
}
