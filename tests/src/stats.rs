//! The arithmetic of the latency tests' reports and budgets: nearest-rank percentiles over
//! millisecond samples, the budget they are held to, and samples rounded for printing.

/// The `p`-th percentile of `sorted` (ascending) by nearest rank: the value at rank
/// ceil(p/100 * n), and at least the first. Panics on an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1]
}

/// `values` in ascending order (`f64::total_cmp`).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The smallest of `values` (infinity for none): the best of several measured series.
pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// `values` rounded to a tenth, for printing samples in milliseconds.
pub fn tenths(values: &[f64]) -> Vec<f64> {
    values.iter().map(|v| (v * 10.0).round() / 10.0).collect()
}

/// The latency budget in milliseconds: `ALP_E2E_LATENCY_BUDGET_MS` when set to a number,
/// `default` otherwise.
pub fn latency_budget_ms(default: f64) -> f64 {
    std::env::var("ALP_E2E_LATENCY_BUDGET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 99.0), 20.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
        assert_eq!(sorted(&[3.0, 1.0, 2.0]), [1.0, 2.0, 3.0]);
        assert_eq!(min(&[3.0, 1.0, 2.0]), 1.0);
        assert_eq!(tenths(&[1.26, 3.04]), [1.3, 3.0]);
    }
}
