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

/// Parse a float as Redis's `string2ld` (C's `strtold`): the whole text must be a number,
/// no leading space, not NaN; hexadecimal floats (`0x1.8p3`) too. Infinity parses (the
/// increment then fails with NaN-or-Infinity).
pub fn parse_f64(text: &[u8]) -> Option<f64> {
    if text.is_empty() || text.len() >= FLOAT_CHARS_MAX {
        return None;
    }
    let (negative, unsigned) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let value = match unsigned {
        [b'0', b'x' | b'X', hex @ ..] => {
            let magnitude = parse_hex_f64(hex)?;
            if negative { -magnitude } else { magnitude }
        }
        _ => std::str::from_utf8(text).ok()?.parse().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

/// The digits of a hexadecimal float after `0x`: hex digits with at most one `.`, at least
/// one digit, then an optional `p` and a signed decimal exponent of two.
fn parse_hex_f64(text: &[u8]) -> Option<f64> {
    let end = text.iter().position(|&c| c == b'p' || c == b'P').unwrap_or(text.len());
    let (digits, exponent) = text.split_at(end);
    let mut exp: i64 = match exponent.split_first() {
        None => 0,
        Some((_, power)) => {
            let (sign, power) = match power.split_first() {
                Some((b'-', rest)) => (-1, rest),
                Some((b'+', rest)) => (1, rest),
                _ => (1, power),
            };
            if power.is_empty() || !power.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let saturated = power.iter().fold(0i64, |v, &d| {
                v.saturating_mul(10).saturating_add(i64::from(d - b'0'))
            });
            sign * saturated
        }
    };
    // Sixty bits of mantissa at most; later digits only set a sticky bit, so that the one
    // rounding to 53 bits is right.
    let (mut mantissa, mut sticky, mut seen, mut point) = (0u64, false, false, false);
    for &c in digits {
        if c == b'.' && !point {
            point = true;
            continue;
        }
        let digit = u64::from((c as char).to_digit(16)?);
        seen = true;
        if mantissa < 1 << 56 {
            mantissa = mantissa * 16 + digit;
            exp -= if point { 4 } else { 0 };
        } else {
            sticky |= digit != 0;
            exp += if point { 0 } else { 4 };
        }
    }
    if !seen {
        return None;
    }
    let mut value = (mantissa | u64::from(sticky)) as f64;
    // Scaled in steps, each exact in range: 2^exp alone would overflow or vanish.
    let step = |e: i64| 2f64.powi(e as i32);
    while exp > 900 && value.is_finite() && value != 0.0 {
        value *= step(900);
        exp -= 900;
    }
    while exp < -900 && value != 0.0 {
        value *= step(-900);
        exp += 900;
    }
    value *= step(exp.clamp(-1100, 1100));
    // strtold's ERANGE: a result out of range, or a non-zero one that vanished, is refused.
    (value.is_finite() && (value != 0.0 || mantissa == 0)).then_some(value)
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
        // Hexadecimal floats, as redis-server 7 parses them (strtold); a value SETRANGE
        // made "0x125" of was found by .ci/redis_fuzz.py.
        let hex: [(&[u8], f64); 10] = [
            (b"0x125", 293.0),
            (b"0X1p3", 8.0),
            (b"0x1.8p1", 3.0),
            (b"-0x10", -16.0),
            (b"+0x10", 16.0),
            (b"0x.8", 0.5),
            (b"0x1p+2", 4.0),
            (b"0x1P-1", 0.5),
            (b"0xAbC.dEp0", 2748.8671875),
            (b"0x1.fffffffffffffp1023", f64::MAX),
        ];
        for (text, value) in hex {
            assert_eq!(parse_f64(text), Some(value), "{}", String::from_utf8_lossy(text));
        }
        for bad in [&b"0x"[..], b"0xg", b"0x1p", b"0x1p99999", b"0x1.2.3", b"0x1p-99999"] {
            assert_eq!(parse_f64(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_f64(b"+1.5"), Some(1.5));
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
