//! RFC 3339 timestamps (UTC, milliseconds) for decision log lines, from the host's clock in
//! milliseconds since the Unix epoch. Written here because the wasm module carries no date
//! crate: the civil date comes from the day count (Howard Hinnant's `civil_from_days`
//! algorithm, proleptic Gregorian calendar).

use std::fmt::Write as _;

/// `2026-12-01T14:35:12.345Z` for `ms` milliseconds after 1970-01-01T00:00:00Z.
pub fn rfc3339_ms(ms: u64) -> String {
    let days = ms / 86_400_000;
    let in_day = ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z"
    );
    out
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (1_709_251_199_000, "2024-02-29T23:59:59.000Z"),
            (1_796_135_712_345, "2026-12-01T14:35:12.345Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(rfc3339_ms(ms), text, "{ms}");
        }
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // 1970 to 2400: dates strictly increase and days stay within their month.
        let mut previous = String::new();
        for d in 0..157_000u64 {
            let t = rfc3339_ms(d * 86_400_000);
            assert!(t > previous, "{t} after {previous}");
            let day: u32 = t[8..10].parse().unwrap();
            assert!((1..=31).contains(&day));
            previous = t;
        }
    }
}
