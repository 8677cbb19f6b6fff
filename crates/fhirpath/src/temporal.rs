//! Dates, date-times and times of FHIRPath with their partial precisions: parsing,
//! comparison (component by component, empty when precisions differ), equivalence,
//! arithmetic with time-valued quantities and the `lowBoundary()`/`highBoundary()`/
//! `precision()` functions.

use std::cmp::Ordering;

/// Which of the three temporal types a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Date,
    DateTime,
    Time,
}

/// Index of each component in [`Temporal::parts`].
const YEAR: usize = 0;
const MONTH: usize = 1;
const DAY: usize = 2;
const HOUR: usize = 3;
const MINUTE: usize = 4;
const SECOND: usize = 5;
/// Pseudo-slot for milliseconds in unit conversions.
const MILLI: usize = 6;

/// A parsed date, dateTime or time, keeping which components were given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Temporal {
    pub kind: Kind,
    /// year, month, day, hour, minute, second (unset components are their minimum).
    parts: [i64; 6],
    millis: i64,
    /// Digits given after the seconds' decimal point (0: none).
    frac_digits: usize,
    /// Index of the most precise component present.
    last: usize,
    /// Offset from UTC in minutes, where given.
    tz: Option<i64>,
    /// A dateTime written with a trailing `T` and no time (`@2015-02-04T`).
    bare_t: bool,
}

/// A calendar unit of a time-valued quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl Unit {
    /// The unit of a calendar keyword (`days`) or of a UCUM code that may be added to a
    /// date (`d`, `wk`, `h`, `min`, `s`, `ms`); `None` for others, including `a` and `mo`.
    pub(crate) fn of(unit: &str) -> Option<Unit> {
        Some(match unit {
            "year" | "years" => Unit::Year,
            "month" | "months" => Unit::Month,
            "week" | "weeks" | "wk" => Unit::Week,
            "day" | "days" | "d" => Unit::Day,
            "hour" | "hours" | "h" => Unit::Hour,
            "minute" | "minutes" | "min" => Unit::Minute,
            "second" | "seconds" | "s" => Unit::Second,
            "millisecond" | "milliseconds" | "ms" => Unit::Millisecond,
            _ => return None,
        })
    }

    /// The component index this unit adds to, with a multiplier (weeks are 7 days, and
    /// milliseconds are counted in the seconds slot at 1/1000).
    fn slot(self) -> usize {
        match self {
            Unit::Year => YEAR,
            Unit::Month => MONTH,
            Unit::Week | Unit::Day => DAY,
            Unit::Hour => HOUR,
            Unit::Minute => MINUTE,
            Unit::Second | Unit::Millisecond => SECOND,
        }
    }
}

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Parse `hh[:mm[:ss[.fff]]]` into `t` starting at the hour slot.
fn parse_time(s: &str, t: &mut Temporal) -> Option<()> {
    let mut it = s.split(':');
    t.parts[HOUR] = digits(it.next()?, 2).filter(|h| *h < 24)?;
    t.last = HOUR;
    if let Some(m) = it.next() {
        t.parts[MINUTE] = digits(m, 2).filter(|m| *m < 60)?;
        t.last = MINUTE;
    }
    if let Some(sec) = it.next() {
        let (whole, frac) = match sec.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (sec, None),
        };
        t.parts[SECOND] = digits(whole, 2).filter(|s| *s < 60)?;
        t.last = SECOND;
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.frac_digits = f.len();
            let ms: String = f.chars().chain(std::iter::repeat('0')).take(3).collect();
            t.millis = ms.parse().ok()?;
        }
    }
    if it.next().is_some() {
        return None;
    }
    Some(())
}

impl Temporal {
    fn empty(kind: Kind) -> Temporal {
        Temporal { kind, parts: [1, 1, 1, 0, 0, 0], millis: 0, frac_digits: 0, last: 0, tz: None, bare_t: false }
    }

    /// Parse FHIRPath/FHIR text: `2014-01-05`, `2014-01-05T10:30:00.000+10:00`, `T10:30`
    /// (a time literal) or `10:30` when `time` is set (a FHIR `time` value).
    pub(crate) fn parse(s: &str, time: bool) -> Option<Temporal> {
        let s = s.trim_start_matches('@');
        if let Some(t) = s.strip_prefix('T').or(if time { Some(s) } else { None }) {
            let mut out = Temporal::empty(Kind::Time);
            parse_time(t, &mut out)?;
            return Some(out);
        }
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let mut out = Temporal::empty(if time.is_some() { Kind::DateTime } else { Kind::Date });
        let mut it = date.split('-');
        out.parts[YEAR] = digits(it.next()?, 4)?;
        if let Some(m) = it.next() {
            out.parts[MONTH] = digits(m, 2).filter(|m| (1..=12).contains(m))?;
            out.last = MONTH;
        }
        if let Some(d) = it.next() {
            out.parts[DAY] = digits(d, 2).filter(|d| *d >= 1 && *d <= days_in_month(out.parts[0], out.parts[1]))?;
            out.last = DAY;
        }
        if it.next().is_some() {
            return None;
        }
        if let Some(t) = time {
            if t.is_empty() {
                out.bare_t = true;
                return Some(out);
            }
            if out.last != DAY {
                return None;
            }
            let (clock, tz) = if let Some(c) = t.strip_suffix('Z') {
                (c, Some(0))
            } else if let Some(i) = t.rfind(['+', '-']) {
                let (c, z) = t.split_at(i);
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let (h, m) = z[1..].split_once(':')?;
                (c, Some(sign * (digits(h, 2)? * 60 + digits(m, 2)?)))
            } else {
                (t, None)
            };
            parse_time(clock, &mut out)?;
            out.tz = tz;
        }
        Some(out)
    }

    /// The FHIRPath precision: number of digits of the value (`@2014` is 4, a time to the
    /// millisecond is 9, a dateTime to the millisecond 17).
    pub(crate) fn precision(&self) -> usize {
        let base = if self.kind == Kind::Time { 2 * (self.last + 1 - HOUR) } else { [4, 6, 8, 10, 12, 14][self.last] };
        if self.last == SECOND && self.frac_digits > 0 { base + 3 } else { base }
    }

    /// Render as FHIRPath text (without the `@`).
    pub(crate) fn render(&self) -> String {
        let mut s = String::new();
        if self.kind != Kind::Time {
            s.push_str(&format!("{:04}", self.parts[YEAR]));
            if self.last >= MONTH {
                s.push_str(&format!("-{:02}", self.parts[MONTH]));
            }
            if self.last >= DAY {
                s.push_str(&format!("-{:02}", self.parts[DAY]));
            }
        }
        if self.last >= HOUR || self.bare_t {
            s.push('T');
        }
        if self.last >= HOUR {
            s.push_str(&format!("{:02}", self.parts[HOUR]));
        }
        if self.last >= MINUTE {
            s.push_str(&format!(":{:02}", self.parts[MINUTE]));
        }
        if self.last >= SECOND {
            s.push_str(&format!(":{:02}", self.parts[SECOND]));
            if self.frac_digits > 0 {
                let ms = format!("{:03}", self.millis);
                s.push('.');
                s.push_str(&ms[..self.frac_digits.min(3)]);
                for _ in 3..self.frac_digits {
                    s.push('0');
                }
            }
        }
        if self.last >= HOUR
            && let Some(tz) = self.tz
        {
            if tz == 0 {
                s.push('Z');
            } else {
                let sign = if tz < 0 { '-' } else { '+' };
                s.push_str(&format!("{sign}{:02}:{:02}", tz.abs() / 60, tz.abs() % 60));
            }
        }
        s
    }

    /// This value shifted to UTC (only meaningful with a time zone and hour precision).
    fn to_utc(&self) -> Option<Temporal> {
        let tz = self.tz?;
        let mut out = self.add(-tz, Unit::Minute)?;
        out.tz = Some(0);
        Some(out)
    }

    /// Compare per the FHIRPath rules: `None` when the result is unknown (the values
    /// stop at different precisions before differing, or only one has a time zone).
    pub(crate) fn compare(&self, other: &Temporal) -> Option<Ordering> {
        if (self.kind == Kind::Time) != (other.kind == Kind::Time) {
            return None;
        }
        let (a, b);
        let (x, y) = if self.last >= HOUR && other.last >= HOUR && self.kind != Kind::Time {
            match (self.tz, other.tz) {
                (Some(_), Some(_)) => {
                    a = self.to_utc()?;
                    b = other.to_utc()?;
                    (&a, &b)
                }
                (None, None) => (self, other),
                _ => return None,
            }
        } else {
            (self, other)
        };
        let first = if x.kind == Kind::Time { HOUR } else { YEAR };
        for i in first..=SECOND {
            match (i <= x.last, i <= y.last) {
                (true, true) => {
                    let (p, q) = if i == SECOND {
                        (x.parts[i] * 1000 + x.millis, y.parts[i] * 1000 + y.millis)
                    } else {
                        (x.parts[i], y.parts[i])
                    };
                    if p != q {
                        return Some(p.cmp(&q));
                    }
                }
                (false, false) => return Some(Ordering::Equal),
                _ => return None,
            }
        }
        Some(Ordering::Equal)
    }

    /// Equivalence: same precision and equal.
    pub(crate) fn equivalent(&self, other: &Temporal) -> bool {
        self.last == other.last && self.compare(other) == Some(Ordering::Equal)
    }

    /// Add `amount` of `unit` (negative to subtract). Units finer than the value's
    /// precision are converted to its precision first (whole units only).
    pub(crate) fn add(&self, amount: i64, unit: Unit) -> Option<Temporal> {
        if self.kind == Kind::Time && unit.slot() < HOUR {
            return None;
        }
        let mut out = self.clone();
        // express the amount in a unit no finer than the value's precision (whole units)
        let (mut amount, mut slot) = match unit {
            Unit::Week => (amount.checked_mul(7)?, DAY),
            Unit::Millisecond => (amount, MILLI),
            u => (amount, u.slot()),
        };
        let precision = if self.last == SECOND { MILLI } else { self.last };
        if slot > precision && slot >= DAY {
            let ms = amount.checked_mul(unit_ms(slot))?;
            if precision >= DAY {
                amount = ms / unit_ms(precision);
                slot = precision;
            } else {
                amount = ms / unit_ms(DAY) / if precision == MONTH { 30 } else { 365 };
                slot = precision;
            }
        }
        if slot == MONTH && precision == YEAR {
            amount /= 12;
            slot = YEAR;
        }
        match slot {
            YEAR | MONTH => {
                let months =
                    out.parts[YEAR] * 12 + (out.parts[MONTH] - 1) + if slot == YEAR { amount * 12 } else { amount };
                out.parts[YEAR] = months.div_euclid(12);
                out.parts[MONTH] = months.rem_euclid(12) + 1;
                out.parts[DAY] = out.parts[DAY].min(days_in_month(out.parts[YEAR], out.parts[MONTH]));
            }
            _ => {
                let delta = amount.checked_mul(unit_ms(slot))?;
                let day_ms = ((out.parts[HOUR] * 60 + out.parts[MINUTE]) * 60 + out.parts[SECOND]) * 1000 + out.millis;
                let total = day_ms.checked_add(delta)?;
                let days = total.div_euclid(86_400_000);
                let rest = total.rem_euclid(86_400_000);
                out.millis = rest % 1000;
                out.parts[SECOND] = rest / 1000 % 60;
                out.parts[MINUTE] = rest / 60_000 % 60;
                out.parts[HOUR] = rest / 3_600_000;
                if out.kind != Kind::Time && days != 0 {
                    let date = jiff::civil::Date::new(
                        i16::try_from(out.parts[YEAR]).ok()?,
                        i8::try_from(out.parts[MONTH]).ok()?,
                        i8::try_from(out.parts[DAY]).ok()?,
                    )
                    .ok()?;
                    let moved = date.checked_add(jiff::Span::new().days(days)).ok()?;
                    out.parts[YEAR] = i64::from(moved.year());
                    out.parts[MONTH] = i64::from(moved.month());
                    out.parts[DAY] = i64::from(moved.day());
                }
            }
        }
        (1..=9999).contains(&out.parts[YEAR]).then_some(out)
    }

    /// `lowBoundary(precision)` / `highBoundary(precision)`: the earliest or latest value
    /// the partial value may stand for, rendered to `precision` digits.
    pub(crate) fn boundary(&self, precision: Option<usize>, high: bool) -> Option<Temporal> {
        let (slots, max): (&[usize], usize) = match self.kind {
            Kind::Date => (&[4, 6, 8], 8),
            Kind::DateTime => (&[4, 6, 8, 10, 12, 14, 17], 17),
            Kind::Time => (&[2, 4, 6, 9], 9),
        };
        let p = precision.unwrap_or(max);
        let idx = slots.iter().position(|s| *s == p)?;
        let mut out = self.clone();
        let first = if self.kind == Kind::Time { HOUR } else { YEAR };
        let target = (first + idx).min(SECOND);
        for i in (self.last + 1)..=SECOND {
            if i < first {
                continue;
            }
            out.parts[i] = match (i, high) {
                (MONTH, true) => 12,
                (DAY, true) => days_in_month(out.parts[YEAR], out.parts[MONTH]),
                (HOUR, true) => 23,
                (MINUTE | SECOND, true) => 59,
                (MONTH | DAY, false) => 1,
                _ => 0,
            };
        }
        if self.last < SECOND || self.frac_digits == 0 {
            out.millis = if high { 999 } else { 0 };
        }
        out.last = target;
        out.frac_digits = if p == max && target == SECOND { 3 } else { 0 };
        out.bare_t = false;
        if out.kind == Kind::DateTime && target >= HOUR && out.tz.is_none() {
            out.tz = Some(if high { -12 * 60 } else { 14 * 60 });
        }
        Some(out)
    }
}

/// Milliseconds in one unit of a slot (day and finer).
fn unit_ms(slot: usize) -> i64 {
    match slot {
        DAY => 86_400_000,
        HOUR => 3_600_000,
        MINUTE => 60_000,
        SECOND => 1000,
        _ => 1,
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// The current date and time, in UTC, to the millisecond.
pub(crate) fn now() -> String {
    let ts = jiff::Timestamp::now();
    format!("{}+00:00", ts.strftime("%Y-%m-%dT%H:%M:%S%.3f"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Temporal {
        Temporal::parse(s, false).unwrap()
    }

    #[test]
    fn arithmetic_and_rendering() {
        assert_eq!(t("1973-12-25").add(7, Unit::Day).unwrap().render(), "1974-01-01");
        assert_eq!(t("1974-12-25").add(-1, Unit::Month).unwrap().render(), "1974-11-25");
        assert_eq!(
            t("1973-12-25T00:00:00.000+10:00").add(10, Unit::Millisecond).unwrap().render(),
            "1973-12-25T00:00:00.010+10:00"
        );
        assert_eq!(t("T10:30").boundary(Some(9), true).unwrap().render(), "T10:30:59.999");
        assert_eq!(t("2014").boundary(Some(6), false).unwrap().render(), "2014-01");
        assert_eq!(
            t("2014-01-01T08:05+08:00").boundary(Some(17), false).unwrap().render(),
            "2014-01-01T08:05:00.000+08:00"
        );
        assert_eq!(t("2014-01-05T10:30:00.000").precision(), 17);
    }

    #[test]
    fn comparison() {
        assert_eq!(t("2012-04-15T15:30:31").compare(&t("2012-04-15T15:30:31.0")), Some(Ordering::Equal));
        assert_eq!(t("2012-04-15T15:00:00Z").compare(&t("2012-04-15T10:00:00")), None);
        assert_eq!(t("2012-04-15T15:00:00Z").compare(&t("2012-04-15T10:00:00-05:00")), Some(Ordering::Equal));
        assert_eq!(t("2012-04").compare(&t("2012-04-15")), None);
        assert_eq!(t("2012-03").compare(&t("2012-04-15")), Some(Ordering::Less));
    }
}
