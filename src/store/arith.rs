//! incr/decr arithmetic on item bytes, exactly as memcached 1.6 does it.
//!
//! Owns the parse of an item's value as a number (memcached's
//! `safe_strtoull`, which is C `strtoull` plus checks) and the text written
//! back. It never touches the index or the segments: the store feeds it
//! bytes and stores what it returns.

/// Whitespace as C's `isspace` in the "C" locale sees it.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Parse `data` like memcached's `safe_strtoull(ITEM_data(it))`.
///
/// memcached runs `strtoull` on the item data, which is followed in memory
/// by "\r\n", so the number may end at the end of the value, at a
/// whitespace byte or at a NUL byte ("12 abc" is 12). `strtoull` also skips
/// leading whitespace and accepts one sign; a '-' negates modulo 2^64, and
/// memcached rejects the result only when it is >= 2^63 ("-0" is 0, "-1"
/// is rejected). Overflow (ERANGE) is rejected.
pub(crate) fn parse_u64(data: &[u8]) -> Option<u64> {
    // memcached refuses a value of zero length before parsing ("nbytes <= 2").
    if data.is_empty() {
        return None;
    }
    let mut i = 0;
    // strtoull's whitespace skip can run into the trailing "\r\n"; those are
    // whitespace too, so running off the end just means "no digits".
    while i < data.len() && is_c_space(data[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < data.len() && (data[i] == b'+' || data[i] == b'-') {
        negative = data[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while i < data.len() && data[i].is_ascii_digit() {
        let d = u64::from(data[i] - b'0');
        match value.checked_mul(10).and_then(|v| v.checked_add(d)) {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start || overflow {
        // No digits (endptr == str) or ERANGE.
        return None;
    }
    // What follows the number: end of value (memcached sees '\r'), a
    // whitespace byte, or NUL (the C string ends there).
    if i < data.len() && !is_c_space(data[i]) && data[i] != 0 {
        return None;
    }
    if negative {
        value = value.wrapping_neg();
    }
    // memcached: `if ((long long) ull < 0) { if (memchr(str, '-', ...)) fail }`.
    if value >= 1 << 63 && data[..i].contains(&b'-') {
        return None;
    }
    Some(value)
}

/// Apply incr (wrapping at 2^64) or decr (floored at 0).
pub(crate) fn apply(value: u64, incr: bool, delta: u64) -> u64 {
    if incr {
        value.wrapping_add(delta)
    } else {
        value.saturating_sub(delta)
    }
}

/// The bytes memcached stores after incr/decr: the decimal number, padded
/// with trailing spaces to `old_len` when it is shorter (memcached rewrites
/// the item in place then), or exactly the digits when it is longer.
/// Returns the length used; `buf` must hold at least `max(20, old_len)`.
pub(crate) fn render(value: u64, old_len: usize, buf: &mut Vec<u8>) {
    buf.clear();
    let mut digits = [0u8; 20];
    let mut n = value;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
    if buf.len() < old_len {
        buf.resize(old_len, b' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"42"), Some(42));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn overflow_is_non_numeric() {
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
    }

    #[test]
    fn trailing_text_after_whitespace_is_ignored() {
        assert_eq!(parse_u64(b"12 abc"), Some(12));
        assert_eq!(parse_u64(b"12\tx"), Some(12));
        assert_eq!(parse_u64(b"12\0zz"), Some(12));
        assert_eq!(parse_u64(b"9  "), Some(9));
    }

    #[test]
    fn trailing_garbage_is_non_numeric() {
        assert_eq!(parse_u64(b"12abc"), None);
        assert_eq!(parse_u64(b"1.5"), None);
        assert_eq!(parse_u64(b"abc"), None);
    }

    #[test]
    fn empty_and_blank_are_non_numeric() {
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"   "), None);
        assert_eq!(parse_u64(b"-"), None);
        assert_eq!(parse_u64(b"+"), None);
    }

    #[test]
    fn leading_whitespace_and_sign_follow_strtoull() {
        assert_eq!(parse_u64(b"  7"), Some(7));
        assert_eq!(parse_u64(b"\n7"), Some(7));
        assert_eq!(parse_u64(b"+7"), Some(7));
        assert_eq!(parse_u64(b"-0"), Some(0));
        // -1 wraps to 2^64-1 >= 2^63 and the text has '-': rejected.
        assert_eq!(parse_u64(b"-1"), None);
        // A '-' that wraps below 2^63 is accepted, as in memcached.
        assert_eq!(parse_u64(b"-18446744073709551615"), Some(1));
        // A big positive number without '-' is fine.
        assert_eq!(parse_u64(b"9223372036854775808"), Some(1 << 63));
    }

    #[test]
    fn incr_wraps_and_decr_floors() {
        assert_eq!(apply(u64::MAX, true, 2), 1);
        assert_eq!(apply(5, false, 9), 0);
        assert_eq!(apply(100, false, 91), 9);
    }

    #[test]
    fn render_pads_shorter_results() {
        let mut buf = Vec::new();
        render(9, 3, &mut buf);
        assert_eq!(buf, b"9  ");
        render(1000, 3, &mut buf);
        assert_eq!(buf, b"1000");
        render(0, 0, &mut buf);
        assert_eq!(buf, b"0");
        render(u64::MAX, 1, &mut buf);
        assert_eq!(buf, b"18446744073709551615");
    }
}
