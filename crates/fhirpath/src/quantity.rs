//! Numbers and quantities: exact decimal arithmetic on the literal text (so `1.8 - 1.2`
//! is `0.6`), decimal boundaries, and quantities with UCUM units (a small table of
//! atoms and prefixes, products, quotients and exponents) and calendar durations.

use std::cmp::Ordering;

/// A decimal as an integer mantissa and a count of fraction digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dec {
    m: i128,
    scale: u32,
}

impl Dec {
    /// Parse `-12.50` (plain decimal notation only).
    pub(crate) fn parse(s: &str) -> Option<Dec> {
        let (neg, body) = match s.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if body.contains('.') && frac.is_empty() {
            return None;
        }
        let m: i128 = format!("{int}{frac}").parse().ok()?;
        Some(Dec { m: if neg { -m } else { m }, scale: u32::try_from(frac.len()).ok()? })
    }

    pub(crate) fn scale(self) -> u32 {
        self.scale
    }

    fn rescale(self, scale: u32) -> Option<Dec> {
        if scale >= self.scale {
            Some(Dec { m: self.m.checked_mul(10i128.checked_pow(scale - self.scale)?)?, scale })
        } else {
            None
        }
    }

    pub(crate) fn add(self, o: Dec) -> Option<Dec> {
        let s = self.scale.max(o.scale);
        Some(Dec { m: self.rescale(s)?.m.checked_add(o.rescale(s)?.m)?, scale: s })
    }

    pub(crate) fn neg(self) -> Dec {
        Dec { m: -self.m, scale: self.scale }
    }

    pub(crate) fn mul(self, o: Dec) -> Option<Dec> {
        Some(Dec { m: self.m.checked_mul(o.m)?, scale: self.scale + o.scale })
    }

    /// Remainder with the sign of the dividend; `None` for a zero divisor.
    pub(crate) fn rem(self, o: Dec) -> Option<Dec> {
        let s = self.scale.max(o.scale);
        let (a, b) = (self.rescale(s)?.m, o.rescale(s)?.m);
        (b != 0).then(|| Dec { m: a % b, scale: s })
    }

    /// Render, keeping the scale (`1.50`).
    pub(crate) fn render(self) -> String {
        let digits = self.m.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let padded =
            if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale + 1 - digits.len())) } else { digits };
        let (int, frac) = padded.split_at(padded.len() - scale);
        let sign = if self.m < 0 { "-" } else { "" };
        if scale == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
    }

    /// `lowBoundary()`/`highBoundary()` of a decimal: the value ± half a unit of its last
    /// digit, rounded outwards to `precision` fraction digits. `None` beyond 31 digits.
    pub(crate) fn boundary(self, precision: i64, high: bool) -> Option<String> {
        if !(0..=31).contains(&precision) {
            return None;
        }
        let p = u32::try_from(precision).ok()?;
        let half = Dec { m: if high { 5 } else { -5 }, scale: self.scale + 1 };
        let exact = self.add(half)?;
        // a value whose digits all lie beyond the precision rounds to zero (signed low)
        let work = self.scale.max(p) + 1;
        let unit = 10i128.checked_pow(work - p)?;
        let v = self.rescale(work)?.m;
        if v != 0 && v.abs() < unit {
            let zero = Dec { m: 0, scale: p }.render();
            return Some(if !high && v < 0 { format!("-{zero}") } else { zero });
        }
        let e = exact.rescale(work.max(exact.scale))?;
        let unit = 10i128.checked_pow(e.scale - p)?;
        let q = e.m.div_euclid(unit);
        let r = e.m.rem_euclid(unit);
        let m = if high && r != 0 { q + 1 } else { q };
        Some(Dec { m, scale: p }.render())
    }

    pub(crate) fn to_f64(self) -> f64 {
        self.render().parse().unwrap_or(f64::NAN)
    }
}

/// Round `x` to `scale` fraction digits and render it without a trailing exponent.
pub(crate) fn round_to(x: f64, scale: u32) -> String {
    let s = format!("{x:.*}", scale as usize);
    if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') { s[1..].to_string() } else { s }
}

/// Calendar duration keywords (`4 days`), which are not UCUM codes.
pub(crate) fn is_calendar_word(w: &str) -> bool {
    matches!(
        w,
        "year"
            | "years"
            | "month"
            | "months"
            | "week"
            | "weeks"
            | "day"
            | "days"
            | "hour"
            | "hours"
            | "minute"
            | "minutes"
            | "second"
            | "seconds"
            | "millisecond"
            | "milliseconds"
    )
}

/// Dimension exponents over m, g, s, A, K, mol, cd.
type Dims = [i8; 7];

/// A unit reduced to a factor over base units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Canonical {
    pub factor: f64,
    pub dims: Dims,
}

fn atom(code: &str) -> Option<(f64, Dims, bool)> {
    // (factor to base, dimensions, takes metric prefixes)
    let d = |i: usize, e: i8| {
        let mut x = [0i8; 7];
        x[i] = e;
        x
    };
    Some(match code {
        "m" => (1.0, d(0, 1), true),
        "g" => (1.0, d(1, 1), true),
        "s" => (1.0, d(2, 1), true),
        "A" => (1.0, d(3, 1), true),
        "K" => (1.0, d(4, 1), true),
        "mol" => (6.022_140_76e23, [0; 7], true),
        "cd" => (1.0, d(6, 1), true),
        "L" | "l" => (1e-3, d(0, 3), true),
        "min" => (60.0, d(2, 1), false),
        "h" => (3600.0, d(2, 1), false),
        "d" => (86_400.0, d(2, 1), false),
        "wk" => (604_800.0, d(2, 1), false),
        "mo" => (2_629_800.0, d(2, 1), false),
        "a" => (31_557_600.0, d(2, 1), false),
        "[in_i]" => (0.0254, d(0, 1), false),
        "[ft_i]" => (0.3048, d(0, 1), false),
        "[yd_i]" => (0.9144, d(0, 1), false),
        "[mi_i]" => (1609.344, d(0, 1), false),
        "[lb_av]" => (453.592_37, d(1, 1), false),
        "[oz_av]" => (28.349_523_125, d(1, 1), false),
        "[gr]" => (0.064_798_91, d(1, 1), false),
        "%" => (0.01, [0; 7], false),
        "1" => (1.0, [0; 7], false),
        "Hz" => (1.0, d(2, -1), true),
        "N" => (1000.0, [1, 1, -2, 0, 0, 0, 0], true),
        "Pa" => (1000.0, [-1, 1, -2, 0, 0, 0, 0], true),
        "J" => (1000.0, [2, 1, -2, 0, 0, 0, 0], true),
        "W" => (1000.0, [2, 1, -3, 0, 0, 0, 0], true),
        "[mmHg]" | "mm[Hg]" => (133_322.387_415, [-1, 1, -2, 0, 0, 0, 0], false),
        "bar" => (1e8, [-1, 1, -2, 0, 0, 0, 0], true),
        "eq" => (6.022_140_76e23, [0; 7], true),
        "U" => (1.0e-6 * 6.022_140_76e23 / 60.0, d(2, -1), true),
        "[iU]" | "[IU]" => (1.0, [0, 0, 0, 0, 0, 0, 1], true),
        _ => return None,
    })
}

fn prefix(p: &str) -> Option<f64> {
    Some(match p {
        "Y" => 1e24,
        "Z" => 1e21,
        "E" => 1e18,
        "P" => 1e15,
        "T" => 1e12,
        "G" => 1e9,
        "M" => 1e6,
        "k" => 1e3,
        "h" => 1e2,
        "da" => 1e1,
        "d" => 1e-1,
        "c" => 1e-2,
        "m" => 1e-3,
        "u" | "\u{b5}" => 1e-6,
        "n" => 1e-9,
        "p" => 1e-12,
        "f" => 1e-15,
        _ => return None,
    })
}

/// One UCUM term: an atom with an optional prefix and exponent (`cm2`, `mg`, `10*3`).
fn term(t: &str) -> Option<Canonical> {
    let t = match t.find('{') {
        Some(0) => return Some(Canonical { factor: 1.0, dims: [0; 7] }),
        Some(i) => &t[..i],
        None => t,
    };
    if let Some(exp) = t.strip_prefix("10*").or_else(|| t.strip_prefix("10^")) {
        return Some(Canonical { factor: 10f64.powi(exp.parse().ok()?), dims: [0; 7] });
    }
    let digits = t.trim_end_matches(|c: char| c.is_ascii_digit());
    let signed = if digits.len() < t.len() { digits.strip_suffix(['-', '+']).unwrap_or(digits) } else { digits };
    let (body, exp) = if signed.is_empty() || signed.len() == t.len() {
        (t, 1)
    } else {
        (signed, t[signed.len()..].parse::<i32>().ok()?)
    };
    let (factor, dims) = if let Some((f, d, _)) = atom(body) {
        (f, d)
    } else {
        let (p, a) = ["da"]
            .iter()
            .find_map(|p| body.strip_prefix(p).map(|a| (*p, a)))
            .or_else(|| body.char_indices().nth(1).map(|(i, _)| (&body[..i], &body[i..])))?;
        let (f, d, metric) = atom(a)?;
        if !metric {
            return None;
        }
        (f * prefix(p)?, d)
    };
    let mut out = Canonical { factor: factor.powi(exp), dims: [0; 7] };
    for (o, d) in out.dims.iter_mut().zip(dims) {
        *o = d.checked_mul(i8::try_from(exp).ok()?)?;
    }
    Some(out)
}

/// Reduce a UCUM expression (`g/m`, `kg.m2/s2`, `mg/dL`) to its canonical form.
pub(crate) fn canonical(unit: &str) -> Option<Canonical> {
    if unit.is_empty() {
        return Some(Canonical { factor: 1.0, dims: [0; 7] });
    }
    let mut out = Canonical { factor: 1.0, dims: [0; 7] };
    let mut divide = false;
    let mut rest = unit;
    if let Some(r) = rest.strip_prefix('/') {
        divide = true;
        rest = r;
    }
    loop {
        let end = rest.find(['.', '/']).unwrap_or(rest.len());
        let c = term(&rest[..end])?;
        if divide {
            out.factor /= c.factor;
            for (o, d) in out.dims.iter_mut().zip(c.dims) {
                *o -= d;
            }
        } else {
            out.factor *= c.factor;
            for (o, d) in out.dims.iter_mut().zip(c.dims) {
                *o += d;
            }
        }
        if end == rest.len() {
            return Some(out);
        }
        divide = rest.as_bytes()[end] == b'/';
        rest = &rest[end + 1..];
    }
}

/// The UCUM text of canonical dimensions (`m2`, `g/m`, `1`).
pub(crate) fn dims_unit(dims: &Dims) -> String {
    const NAMES: [&str; 7] = ["m", "g", "s", "A", "K", "mol", "cd"];
    let part = |e: i8, n: &str| if e == 1 { n.to_string() } else { format!("{n}{e}") };
    let num: Vec<String> = dims.iter().zip(NAMES).filter(|(e, _)| **e > 0).map(|(e, n)| part(*e, n)).collect();
    let den: Vec<String> = dims.iter().zip(NAMES).filter(|(e, _)| **e < 0).map(|(e, n)| part(-*e, n)).collect();
    let head = if num.is_empty() { "1".to_string() } else { num.join(".") };
    if den.is_empty() { head } else { format!("{head}/{}", den.join(".")) }
}

/// The UCUM code a calendar keyword is compared as, and whether it is a calendar unit
/// of variable length (years, months), which never equals a UCUM definite duration.
fn calendar_ucum(word: &str) -> Option<(&'static str, bool)> {
    Some(match word.trim_end_matches('s') {
        "year" => ("a", true),
        "month" => ("mo", true),
        "week" => ("wk", false),
        "day" => ("d", false),
        "hour" => ("h", false),
        "minute" => ("min", false),
        "second" => ("s", false),
        "millisecond" => ("ms", false),
        _ => return None,
    })
}

/// Convert `value` in `from` to the unit `to`. `None` when not comparable (different
/// dimensions, unknown units, or a calendar year/month against a UCUM `a`/`mo`).
pub(crate) fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    if from == to {
        return Some(value);
    }
    let (f, fcal) = calendar_ucum(from).map_or((from, false), |(u, v)| (u, v));
    let (t, tcal) = calendar_ucum(to).map_or((to, false), |(u, v)| (u, v));
    let from_word = calendar_ucum(from).is_some();
    let to_word = calendar_ucum(to).is_some();
    if from_word && to_word && (fcal || tcal) {
        // years and months among themselves
        let months = |u: &str| match u {
            "a" => Some(12.0),
            "mo" => Some(1.0),
            _ => None,
        };
        return Some(value * months(f)? / months(t)?);
    }
    if (fcal && !to_word) || (tcal && !from_word) {
        return None;
    }
    let (a, b) = (canonical(f)?, canonical(t)?);
    (a.dims == b.dims).then(|| value * a.factor / b.factor)
}

/// Compare two quantities after unit conversion.
pub(crate) fn compare(a: (f64, &str), b: (f64, &str)) -> Option<Ordering> {
    let bv = convert(b.0, b.1, a.1)?;
    let tol = 1e-9 * a.0.abs().max(bv.abs()).max(1e-300);
    if (a.0 - bv).abs() <= tol { Some(Ordering::Equal) } else { a.0.partial_cmp(&bv) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let d = |s| Dec::parse(s).unwrap();
        assert_eq!(d("1.8").add(d("-1.2")).unwrap().render(), "0.6");
        assert_eq!(d("2.2").rem(d("1.8")).unwrap().render(), "0.4");
        assert_eq!(d("1.587").boundary(8, false).unwrap(), "1.58650000");
        assert_eq!(d("-1.587").boundary(2, false).unwrap(), "-1.59");
        assert_eq!(d("-1.587").boundary(0, false).unwrap(), "-2");
        assert_eq!(d("1").boundary(0, true).unwrap(), "2");
        assert_eq!(d("120").boundary(2, false).unwrap(), "119.50");
        assert_eq!(d("-0.0034").boundary(1, false).unwrap(), "-0.0");
        assert_eq!(d("-0.0034").boundary(1, true).unwrap(), "0.0");
        assert_eq!(d("12.500").boundary(4, true).unwrap(), "12.5005");
    }

    #[test]
    fn units() {
        assert_eq!(compare((4.0, "g"), (4000.0, "mg")), Some(Ordering::Equal));
        assert_eq!(compare((7.0, "days"), (1.0, "week")), Some(Ordering::Equal));
        assert_eq!(compare((7.0, "days"), (1.0, "wk")), Some(Ordering::Equal));
        assert_eq!(compare((1.0, "mo"), (1.0, "month")), None);
        assert_eq!(convert(1.0, "cm", "s"), None);
        assert!(canonical("[in_i]").is_some());
        assert_eq!(dims_unit(&canonical("g/m").unwrap().dims), "g/m");
    }
}
