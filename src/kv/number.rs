//! Numbers inside string values, parsed and printed the way Redis does for INCRBY and
//! INCRBYFLOAT. Owns only text ↔ number conversion; never touches records.

/// Longest text Redis accepts as a 64-bit integer (`-9223372036854775808`).
const INTEGER_CHARS_MAX: usize = 20;
/// Longest text accepted as a float (Redis's `MAX_LONG_DOUBLE_CHARS`).
const FLOAT_CHARS_MAX: usize = 5 * 1024;
/// Significant digits printed by `format_f64`; see its doc.
const FLOAT_SIGNIFICANT_DIGITS: i32 = 15;
/// Decimals printed at most, as Redis's `%.17Lf`.
const FLOAT_DECIMALS_MAX: i32 = 17;

/// Parse a signed 64-bit integer as Redis's `string2ll`: optional `-`, no `+`, no spaces,
/// no leading zeros (`0` alone is fine, `-0` is not).
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > INTEGER_CHARS_MAX {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    // Accumulate as a negative number so that i64::MIN parses.
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Parse a float as Redis's `string2ld`: the whole text must be a number, no leading
/// space, not NaN. Infinity parses (the increment then fails with NaN-or-Infinity).
pub fn parse_f64(text: &[u8]) -> Option<f64> {
    if text.is_empty() || text.len() >= FLOAT_CHARS_MAX {
        return None;
    }
    let value: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// Print a float as INCRBYFLOAT stores it: fixed notation (never an exponent), trailing
/// zeros and a trailing dot removed, `-0` printed as `0`.
///
/// Redis computes in `long double` and prints `%.17Lf`, so `10.1 + 0.1` reads `10.2`.
/// We compute in `f64`, whose 17th significant digit is noise; rounding to 15
/// significant digits (never more than 17 decimals) gives the same text for the values
/// people type. Integers up to 2^53 print exactly.
pub fn format_f64(value: f64) -> String {
    let decimals =
        (FLOAT_SIGNIFICANT_DIGITS - integer_digits(value)).clamp(0, FLOAT_DECIMALS_MAX) as usize;
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    if text == "-0" {
        text = "0".to_string();
    }
    text
}

/// Digits before the decimal point of |value| (≤ 0 for values below 1), taken from Rust's
/// own exponent formatting so that every platform agrees.
fn integer_digits(value: f64) -> i32 {
    if value == 0.0 || !value.is_finite() {
        return 1;
    }
    let scientific = format!("{:e}", value.abs());
    let exponent = scientific.rsplit('e').next().and_then(|e| e.parse::<i32>().ok());
    exponent.unwrap_or(0) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in
            [&b""[..], b"-", b"-0", b"01", b"+1", b" 1", b"1 ", b"1.0", b"9223372036854775808"]
        {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_parse_like_string2ld() {
        assert_eq!(parse_f64(b"10.50"), Some(10.5));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"-.5"), Some(-0.5));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        for bad in [&b""[..], b" 1", b"1 ", b"nan", b"abc", b"1.0x", b"\xff"] {
            assert_eq!(parse_f64(bad), None);
        }
    }

    #[test]
    fn floats_print_like_incrbyfloat() {
        assert_eq!(format_f64(10.6), "10.6");
        assert_eq!(format_f64(10.1 + 0.1), "10.2");
        assert_eq!(format_f64(0.1 + 0.2), "0.3");
        assert_eq!(format_f64(5200.0), "5200");
        assert_eq!(format_f64(3.0000000000000001), "3");
        assert_eq!(format_f64(-0.0), "0");
        assert_eq!(format_f64(1e20), "100000000000000000000");
        assert_eq!(format_f64(9007199254740993.0), "9007199254740992");
        assert_eq!(format_f64(1.5e-5), "0.000015");
        assert_eq!(format_f64(1e-20), "0");
        assert_eq!(format_f64(-2.5), "-2.5");
    }
}
