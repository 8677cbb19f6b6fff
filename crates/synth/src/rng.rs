//! Deterministic randomness (SplitMix64) and the calendar arithmetic the generator needs:
//! output depends on the seed alone, never on the clock or the platform.

use serde_json::{Number, Value};

/// A SplitMix64 generator; one per patient (or shared resource), seeded from `(seed, stream)`.
pub struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// An independent stream for `(seed, stream)`.
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(mix(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ mix(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Uniform in `lo..=hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo { lo } else { lo + (self.next_u64() % (hi - lo + 1) as u64) as i64 }
    }

    /// An element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as i64 - 1) as usize]
    }

    /// An index drawn with the given relative weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let mut x = self.f64() * weights.iter().sum::<f64>();
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len().saturating_sub(1)
    }

    /// Normally distributed (Box–Muller).
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u = 1.0 - self.f64();
        mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.f64()).cos()
    }

    /// Poisson-distributed count (Knuth; fine for the small means used here).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        let (limit, mut p, mut k) = ((-lambda).exp(), 1.0, 0);
        loop {
            p *= self.f64();
            if p <= limit || k >= 200 {
                return k;
            }
            k += 1;
        }
    }
}

/// Days since 1970-01-01 of a civil date (Hinnant's algorithm).
pub const fn days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The civil date of a day number.
pub fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD`.
pub fn date(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A Moscow-time instant from minutes since the epoch: `YYYY-MM-DDThh:mm:00+03:00`.
pub fn datetime(minute: i64) -> String {
    let m = minute.rem_euclid(1440);
    format!("{}T{:02}:{:02}:00+03:00", date(minute.div_euclid(1440)), m / 60, m % 60)
}

/// A FHIR decimal with exactly `places` decimals (`5.40` stays `5.40`).
pub fn dec(x: f64, places: usize) -> Value {
    format!("{x:.places$}").parse::<Number>().map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days(1970, 1, 1), 0);
        assert_eq!(date(days(2024, 2, 29)), "2024-02-29");
        assert_eq!(datetime(days(2026, 6, 30) * 1440 + 9 * 60 + 5), "2026-06-30T09:05:00+03:00");
        for d in (-30_000..30_000).step_by(37) {
            let (y, m, dd) = civil(d);
            assert_eq!(days(y, m, dd), d);
        }
        assert_eq!(dec(5.4, 2).to_string(), "5.40");
    }
}
