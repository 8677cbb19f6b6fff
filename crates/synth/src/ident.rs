//! Russian identifiers with their check digits: SNILS (insurance number of the Social
//! Fund), the unified OMS policy number, OGRN (state registration number of a legal entity).

/// SNILS check number of the nine-digit `n`: digits weighted 9..1; a sum below 100 is the
/// check number, 100 and 101 give 00, otherwise the sum mod 101 (where 100 gives 00).
pub fn snils_check(n: u32) -> u32 {
    let sum: u32 = (0..9).map(|i| (n / 10u32.pow(8 - i)) % 10 * (9 - i)).sum();
    match sum {
        0..100 => sum,
        100 | 101 => 0,
        _ => sum % 101 % 100,
    }
}

/// A formatted SNILS: `112-233-445 95`.
pub fn snils(n: u32) -> String {
    format!("{:03}-{:03}-{:03} {:02}", n / 1_000_000, n / 1000 % 1000, n % 1000, snils_check(n))
}

/// Appends a Luhn check digit to a string of digits.
pub fn with_luhn(digits: &str) -> String {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

/// A 13-digit OGRN from its first 12 digits: the check digit is (number mod 11) mod 10.
pub fn ogrn(first12: u64) -> String {
    format!("{first12:012}{}", first12 % 11 % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits() {
        assert_eq!(snils(112_233_445), "112-233-445 95");
        assert_eq!(snils_check(0), 0);
        assert_eq!(with_luhn("7992739871"), "79927398713");
        assert_eq!(ogrn(102_770_013_219), "1027700132195");
    }
}
