//! Keys and values on the wire. Keys are fixed-width decimal names so every
//! item has the same size (the memory benchmarks depend on it). With
//! `--verify`, a value carries its own key and a version and is followed by
//! filler derived from both and from the value's length, so any value read
//! back can be checked without remembering what was written: a value that
//! belongs to another key, is truncated or spliced, or has a flipped byte is
//! caught.

use crate::rng::splitmix64;

/// A key as the generator tracks it: the key-space index, or with `SCAN_BIT`
/// set a one-time scan key (a separate name space that is never reused).
pub type KeyId = u64;
pub const SCAN_BIT: u64 = 1 << 63;

/// Bytes of the verify header around the key: ':' + 16 hex digits + ':'.
pub const VERIFY_OVERHEAD: usize = 18;

/// Fixed-width key names: `k` + zero-padded index, `s` + zero-padded counter
/// for scan keys (a counter that outgrows the width just gets longer).
#[derive(Clone, Copy)]
pub struct KeyFormat {
    digits: usize,
}

impl KeyFormat {
    /// `key_size` is the total length (prefix included); 0 picks the shortest
    /// width that fits `keys` names.
    pub fn new(keys: u64, key_size: usize) -> Result<KeyFormat, String> {
        let needed = decimal_len(keys.saturating_sub(1));
        if key_size == 0 {
            return Ok(KeyFormat { digits: needed });
        }
        if key_size > 250 {
            return Err(format!(
                "--key-size {key_size}: memcached keys are at most 250 bytes"
            ));
        }
        if key_size < needed + 1 {
            return Err(format!(
                "--key-size {key_size} cannot name {keys} keys (needs at least {})",
                needed + 1
            ));
        }
        Ok(KeyFormat {
            digits: key_size - 1,
        })
    }

    pub fn len(&self) -> usize {
        self.digits + 1
    }

    /// Appends the name of `key` to `out`.
    pub fn push(&self, out: &mut Vec<u8>, key: KeyId) {
        let (prefix, n) = if key & SCAN_BIT != 0 {
            (b's', key & !SCAN_BIT)
        } else {
            (b'k', key)
        };
        out.push(prefix);
        let len = decimal_len(n);
        out.extend(std::iter::repeat_n(b'0', self.digits.saturating_sub(len)));
        push_decimal(out, n);
    }
}

pub fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal; `format!` would allocate per request.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends a value of `len` bytes for `key` (whose name is `name`). Without
/// verification the bytes are a constant filler: cheap, and the server never
/// looks at them anyway. With verification the value is
/// `name:VERSION:filler`, at least as long as that header.
pub fn push_value(out: &mut Vec<u8>, name: &[u8], version: u64, len: usize, verify: bool) {
    if !verify {
        out.resize(out.len() + len, b'x');
        return;
    }
    let start = out.len();
    out.extend_from_slice(name);
    out.push(b':');
    push_hex16(out, version);
    out.push(b':');
    let filler = len.saturating_sub(out.len() - start);
    let total = out.len() - start + filler;
    push_filler(out, name, version, total, filler);
}

/// Checks a value read back for key `name`. Returns what is wrong with it.
pub fn check_value(name: &[u8], data: &[u8]) -> Result<(), String> {
    let header = name.len() + VERIFY_OVERHEAD;
    if data.len() < header {
        return Err(format!(
            "value of {} bytes is shorter than its header",
            data.len()
        ));
    }
    if &data[..name.len()] != name || data[name.len()] != b':' || data[header - 1] != b':' {
        let shown = String::from_utf8_lossy(&data[..header.min(data.len())]);
        return Err(format!("value belongs to another key: starts {shown:?}"));
    }
    let version = parse_hex16(&data[name.len() + 1..header - 1])
        .ok_or_else(|| "value header has a malformed version".to_string())?;
    // Regenerate the filler a word at a time and compare in place: no
    // allocation per value read.
    let mut state = filler_seed(name, version, data.len());
    for (i, chunk) in data[header..].chunks(8).enumerate() {
        let word = splitmix64(&mut state).to_le_bytes();
        if let Some(at) = chunk
            .iter()
            .zip(word)
            .position(|(&got, w)| got != b'a' + w % 26)
        {
            return Err(format!(
                "value (version {version:x}, {} bytes) is corrupt at byte {}",
                data.len(),
                header + i * 8 + at
            ));
        }
    }
    Ok(())
}

/// `len` letters derived from (key, version, total value length), so a value
/// spliced from two writes, taken from another key, or cut short does not
/// check out.
fn push_filler(out: &mut Vec<u8>, name: &[u8], version: u64, total: usize, len: usize) {
    let mut state = filler_seed(name, version, total);
    let mut left = len;
    while left > 0 {
        let word = splitmix64(&mut state).to_le_bytes();
        for &b in word.iter().take(left) {
            out.push(b'a' + b % 26);
        }
        left = left.saturating_sub(8);
    }
}

fn filler_seed(name: &[u8], version: u64, total: usize) -> u64 {
    fnv1a(name)
        ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (total as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn push_hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

fn parse_hex16(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc << 4 | d as u64)
    })
}

/// Round trip and corruption checks; run by `loadgen --self-test`.
pub fn self_test() -> Result<(), String> {
    let fmt = KeyFormat::new(1_000_000, 10)?;
    let mut name = Vec::new();
    fmt.push(&mut name, 42);
    if name != b"k000000042" {
        return Err(format!("key name {:?}", String::from_utf8_lossy(&name)));
    }
    let mut other = Vec::new();
    fmt.push(&mut other, 43);
    for len in [0usize, 28, 29, 100, 1000] {
        let mut v = Vec::new();
        push_value(&mut v, &name, 7, len, true);
        if v.len() != len.max(name.len() + VERIFY_OVERHEAD) {
            return Err(format!("value length {} for {len}", v.len()));
        }
        check_value(&name, &v).map_err(|e| format!("fresh value rejected: {e}"))?;
        if check_value(&other, &v).is_ok() {
            return Err("value accepted under another key".into());
        }
        if v.len() > name.len() + VERIFY_OVERHEAD {
            let mut bad = v.clone();
            let last = bad.len() - 1;
            bad[last] = if bad[last] == b'a' { b'b' } else { b'a' };
            if check_value(&name, &bad).is_ok() {
                return Err("corrupted value accepted".into());
            }
            // (With a filler of a letter or two a cut can match by chance.)
            if len >= 100 && check_value(&name, &v[..v.len() - 1]).is_ok() {
                return Err("truncated value accepted".into());
            }
        }
    }
    Ok(())
}
