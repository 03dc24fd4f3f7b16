//! Numbers in command lines, read as memcached 1.6.18 reads them: its
//! `safe_strto*` wrappers (util.c) around C's `strto*`.
//!
//! A number may follow whitespace and carry one sign, and it must end its
//! token or be followed by a whitespace byte: `"5\t"` and `"5\r"` are 5
//! (a line's words are split on spaces only). An unsigned number may be
//! negative when it wraps below 2^63: `"-0"` is 0, and
//! `"-18446744073709551615"` is 1.

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull`/`strtoll` read from `s`: whether it is negative, and
/// its magnitude (`None` past 2^64: ERANGE). `None` when no digits come,
/// or when what follows them is not whitespace.
fn scan(s: &[u8]) -> Option<(bool, Option<u64>)> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut magnitude = Some(0u64);
    while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
        magnitude = magnitude.and_then(|m| m.checked_mul(10)?.checked_add(u64::from(d - b'0')));
        i += 1;
    }
    if i == start || s.get(i).is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    Some((negative, magnitude))
}

/// `safe_strtoull`: 64 bits unsigned; a negative number wraps, and is
/// refused only if it wraps to 2^63 or more.
pub fn u64_token(s: &[u8]) -> Option<u64> {
    let (negative, magnitude) = scan(s)?;
    let value = magnitude?;
    let value = if negative {
        value.wrapping_neg()
    } else {
        value
    };
    if value >= 1 << 63 && s.contains(&b'-') {
        return None;
    }
    Some(value)
}

/// `safe_strtoul` (an unsigned long, 64 bits here), for numbers that must
/// fit 32 bits: memcached keeps the low 32 bits of a larger one, ferrocache
/// refuses it (README, protocol differences).
pub fn u32_token(s: &[u8]) -> Option<u32> {
    u64_token(s).and_then(|v| u32::try_from(v).ok())
}

/// `safe_strtoll`: 64 bits signed.
pub fn i64_token(s: &[u8]) -> Option<i64> {
    let (negative, magnitude) = scan(s)?;
    let magnitude = magnitude?;
    if negative {
        (magnitude <= 1 << 63).then(|| (magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `safe_strtol`: a C long (64 bits here) stored into 32 bits, so a number
/// that fits 64 bits but not 32 wraps.
pub fn i32_token(s: &[u8]) -> Option<i32> {
    i64_token(s).map(|v| v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_memcached_reads_them() {
        let u64_cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"+5", Some(5)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"-0", Some(0)),
            (b"-18446744073709551615", Some(1)),
            (b"-1", None),
            (b"-9223372036854775808", None),
            (b"-9223372036854775807", None),
            (b"-9223372036854775809", Some((1 << 63) - 1)),
            (b"5\t", Some(5)),
            (b"5\r", Some(5)),
            (b"5\x0b", Some(5)),
            (b"5\tjunk", Some(5)),
            (b"\t5", Some(5)),
            (b"5x", None),
            (b"", None),
            (b"-", None),
            (b"+-5", None),
            (b"\t", None),
            (b"0x5", None),
        ];
        for &(s, want) in u64_cases {
            assert_eq!(u64_token(s), want, "{:?}", String::from_utf8_lossy(s));
        }
        let i64_cases: &[(&[u8], Option<i64>)] = &[
            (b"-5", Some(-5)),
            (b"-0", Some(0)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"9223372036854775808", None),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"-9223372036854775809", None),
            (b"10\t", Some(10)),
            (b"1 ", Some(1)),
        ];
        for &(s, want) in i64_cases {
            assert_eq!(i64_token(s), want, "{:?}", String::from_utf8_lossy(s));
        }
        assert_eq!(i32_token(b"4294967297"), Some(1), "a long kept in 32 bits");
        assert_eq!(u32_token(b"4294967296"), None, "refused, not truncated");
        assert_eq!(u32_token(b"-18446744073709551615"), Some(1));
    }
}
