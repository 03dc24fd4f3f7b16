//! The byte layout of one item inside a segment.
//!
//! Owns the item header's encoding and the "item size" the stats report.
//! It never decides where an item goes or when it dies; it only reads and
//! writes bytes at an offset the caller chose.
//!
//! An item is a variable-length header, then the key, then the value:
//!
//! ```text
//! word0 u32  klen:8 | vlen:20 | has_flags:1 | wide_ns:1 | own_cas:1 | dead:1
//! u8         ns, when ns < 256 (else 0)
//! u32        exptime (0 = never)
//! u24        meta: last access:21 | stale:1 | token sent:1 | binary key:1
//! [u32 flags]     only when the client flags are nonzero
//! [u32 ns]        only when ns >= 256
//! [u64 cas]       only for items moved by eviction (see below)
//! key, value
//! ```
//!
//! So the common case costs 12 bytes, 16 with client flags. The meta field
//! serves the meta protocol: the last access is the server second modulo
//! 2^21 (24 days), the three bits are memcached's ITEM_STALE,
//! ITEM_TOKEN_SENT and ITEM_KEY_BINARY. The cas of an
//! item written fresh is not stored at all: it is the segment's cas base
//! plus the item's offset, unique because each segment opened for writing
//! takes a fresh block of `segment size` cas values and every mutation
//! appends. Items that eviction copies elsewhere must keep their cas (a
//! client may hold it from `gets`), so those carry it explicitly.
//! Nothing records where the item's index entry is: eviction, the sweep and
//! an index split rehash the key (`super::key_hash`) to find it. That costs
//! a few nanoseconds per item they visit, and saves 3 bytes on every item.
//! Everything is little-endian and unaligned: items are packed back to back.

use super::NsId;

/// Bytes of the fixed part of the header.
pub(crate) const FIXED_HEADER: usize = 12;
/// Where the fixed fields sit, from the item's start.
const NS_AT: usize = 4;
const EXPTIME_AT: usize = 5;
const META_AT: usize = 9;

/// The meta field's parts.
pub(crate) const ACCESS_MASK: u32 = (1 << 21) - 1;
pub(crate) const META_STALE: u32 = 1 << 21;
pub(crate) const META_TOKEN_SENT: u32 = 1 << 22;
pub(crate) const META_BINARY_KEY: u32 = 1 << 23;

const VLEN_SHIFT: u32 = 8;
const VLEN_MASK: u32 = (1 << 20) - 1;
const HAS_FLAGS: u32 = 1 << 28;
const WIDE_NS: u32 = 1 << 29;
const OWN_CAS: u32 = 1 << 30;
const DEAD: u32 = 1 << 31;

/// Largest value length a segment item can carry (20 bits).
pub(crate) const MAX_SEGMENT_VLEN: usize = VLEN_MASK as usize;

/// Header bytes for an item with these fields.
#[inline]
pub(crate) fn header_len(ns: NsId, flags: u32, own_cas: bool) -> usize {
    FIXED_HEADER
        + if flags != 0 { 4 } else { 0 }
        + if ns >= 256 { 4 } else { 0 }
        + if own_cas { 8 } else { 0 }
}

/// The size `stats bytes` counts for an item: its header (without an
/// eviction-copied cas, so the figure does not change when an item moves),
/// key and value. Large items report the same formula.
#[inline]
pub(crate) fn item_size(ns: NsId, flags: u32, klen: usize, vlen: usize) -> usize {
    header_len(ns, flags, false) + klen + vlen
}

/// A decoded header: where the key and value sit and the item's fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub ns: NsId,
    pub exptime: u32,
    /// The meta field (see the module header).
    pub meta: u32,
    pub flags: u32,
    /// The stored cas, for items that carry one.
    pub own_cas: Option<u64>,
    pub klen: usize,
    pub vlen: usize,
    pub dead: bool,
    /// Header length; the key starts here.
    pub hlen: usize,
}

impl Header {
    /// Total bytes this item occupies in its segment.
    #[inline]
    pub fn total_len(&self) -> usize {
        self.hlen + self.klen + self.vlen
    }

    /// The stats size of this item (see [`item_size`]).
    #[inline]
    pub fn stats_size(&self) -> usize {
        item_size(self.ns, self.flags, self.klen, self.vlen)
    }
}

#[inline]
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[inline]
fn rd24(b: &[u8], at: usize) -> u32 {
    u32::from(b[at]) | u32::from(b[at + 1]) << 8 | u32::from(b[at + 2]) << 16
}

#[inline]
fn wr24(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 3].copy_from_slice(&v.to_le_bytes()[..3]);
}

#[inline]
fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Decode the header at `at`. The caller guarantees an item starts there.
#[inline]
pub(crate) fn read(b: &[u8], at: usize) -> Header {
    let w0 = rd32(b, at);
    let exptime = rd32(b, at + EXPTIME_AT);
    let mut p = at + FIXED_HEADER;
    let flags = if w0 & HAS_FLAGS != 0 {
        p += 4;
        rd32(b, p - 4)
    } else {
        0
    };
    let ns = if w0 & WIDE_NS != 0 {
        p += 4;
        rd32(b, p - 4)
    } else {
        NsId::from(b[at + NS_AT])
    };
    let own_cas = if w0 & OWN_CAS != 0 {
        p += 8;
        Some(u64::from_le_bytes(b[p - 8..p].try_into().unwrap()))
    } else {
        None
    };
    Header {
        ns,
        exptime,
        meta: rd24(b, at + META_AT),
        flags,
        own_cas,
        klen: (w0 & 0xff) as usize,
        vlen: ((w0 >> VLEN_SHIFT) & VLEN_MASK) as usize,
        dead: w0 & DEAD != 0,
        hlen: p - at,
    }
}

/// Decode the header at `at` if the whole item lies before `end`; `None`
/// when it would not. For walks that cannot be sure an item starts at
/// `at` (a broken invariant): a bad header then costs a skipped item, never
/// a read past the segment.
pub(crate) fn read_within(b: &[u8], at: usize, end: usize) -> Option<Header> {
    let end = end.min(b.len());
    if at.checked_add(FIXED_HEADER)? > end {
        return None;
    }
    let w0 = rd32(b, at);
    let hlen = FIXED_HEADER
        + if w0 & HAS_FLAGS != 0 { 4 } else { 0 }
        + if w0 & WIDE_NS != 0 { 4 } else { 0 }
        + if w0 & OWN_CAS != 0 { 8 } else { 0 };
    if at + hlen > end {
        return None;
    }
    let h = read(b, at);
    (at + h.total_len() <= end).then_some(h)
}

/// The fields of an item to write.
pub(crate) struct NewItem<'a> {
    pub ns: NsId,
    pub exptime: u32,
    pub meta: u32,
    pub flags: u32,
    pub own_cas: Option<u64>,
    pub key: &'a [u8],
    /// The value, in up to two parts (append/prepend write old and new data
    /// without building the joined value first).
    pub value: [&'a [u8]; 2],
}

impl NewItem<'_> {
    #[inline]
    pub fn vlen(&self) -> usize {
        self.value[0].len() + self.value[1].len()
    }

    #[inline]
    pub fn total_len(&self) -> usize {
        header_len(self.ns, self.flags, self.own_cas.is_some()) + self.key.len() + self.vlen()
    }
}

/// Write `item` at `at`; returns its total length. The caller checked room,
/// `klen <= 255` and `vlen <= MAX_SEGMENT_VLEN`.
#[inline]
pub(crate) fn write(b: &mut [u8], at: usize, item: &NewItem<'_>) -> usize {
    let vlen = item.vlen();
    debug_assert!(item.key.len() <= 255 && vlen <= MAX_SEGMENT_VLEN);
    let mut w0 = item.key.len() as u32 | ((vlen as u32) << VLEN_SHIFT);
    if item.flags != 0 {
        w0 |= HAS_FLAGS;
    }
    let wide = item.ns >= 256;
    if wide {
        w0 |= WIDE_NS;
    }
    if item.own_cas.is_some() {
        w0 |= OWN_CAS;
    }
    wr32(b, at, w0);
    b[at + NS_AT] = if wide { 0 } else { item.ns as u8 };
    wr32(b, at + EXPTIME_AT, item.exptime);
    wr24(b, at + META_AT, item.meta & 0xff_ffff);
    let mut p = at + FIXED_HEADER;
    if item.flags != 0 {
        wr32(b, p, item.flags);
        p += 4;
    }
    if wide {
        wr32(b, p, item.ns);
        p += 4;
    }
    if let Some(cas) = item.own_cas {
        b[p..p + 8].copy_from_slice(&cas.to_le_bytes());
        p += 8;
    }
    b[p..p + item.key.len()].copy_from_slice(item.key);
    p += item.key.len();
    for part in item.value {
        b[p..p + part.len()].copy_from_slice(part);
        p += part.len();
    }
    p - at
}

/// The exptime of the item at `at`, without decoding the rest.
#[inline]
pub(crate) fn exptime(b: &[u8], at: usize) -> u32 {
    rd32(b, at + EXPTIME_AT)
}

/// The meta field of the item at `at`.
#[inline]
pub(crate) fn meta(b: &[u8], at: usize) -> u32 {
    rd24(b, at + META_AT)
}

/// Overwrite the item's meta field (an access, a win token handed out).
#[inline]
pub(crate) fn set_meta(b: &mut [u8], at: usize, meta: u32) {
    wr24(b, at + META_AT, meta & 0xff_ffff);
}

/// Mark the item at `at` dead (its index entry is gone).
#[inline]
pub(crate) fn mark_dead(b: &mut [u8], at: usize) {
    let w0 = rd32(b, at);
    wr32(b, at, w0 | DEAD);
}

/// Overwrite the item's exptime (touch/gat: memcached keeps the cas).
#[inline]
pub(crate) fn set_exptime(b: &mut [u8], at: usize, exptime: u32) {
    wr32(b, at + EXPTIME_AT, exptime);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_optional_field() {
        let mut buf = vec![0u8; 256];
        for (ns, flags, cas) in [
            (0, 0, None),
            (7, 0xdead_beef, None),
            (70_000, 0, Some(u64::MAX - 3)),
            (300, 1, Some(5)),
        ] {
            let item = NewItem {
                ns,
                exptime: 1234,
                meta: 0xab_cdef,
                flags,
                own_cas: cas,
                key: b"key",
                value: [b"val", b"ue"],
            };
            let n = write(&mut buf, 10, &item);
            assert_eq!(n, item.total_len());
            let h = read(&buf, 10);
            assert_eq!(
                (h.ns, h.exptime, h.flags, h.own_cas, h.dead),
                (ns, 1234, flags, cas, false)
            );
            assert_eq!(h.meta, 0xab_cdef);
            assert_eq!(h.total_len(), n);
            assert_eq!(&buf[10 + h.hlen..10 + h.hlen + 3], b"key");
            assert_eq!(&buf[10 + h.hlen + 3..10 + n], b"value");
            mark_dead(&mut buf, 10);
            set_exptime(&mut buf, 10, 99);
            let h = read(&buf, 10);
            assert!(h.dead);
            assert_eq!(h.exptime, 99);
            assert_eq!(h.vlen, 5);
        }
    }

    #[test]
    fn read_within_refuses_items_past_the_end() {
        let mut buf = vec![0u8; 64];
        let item = NewItem {
            ns: 300,
            exptime: 1,
            meta: 0,
            flags: 9,
            own_cas: Some(7),
            key: b"k",
            value: [b"vv", b""],
        };
        let n = write(&mut buf, 3, &item);
        assert_eq!(read_within(&buf, 3, 3 + n).map(|h| h.total_len()), Some(n));
        for end in 0..3 + n {
            assert!(read_within(&buf, 3, end).is_none(), "end {end}");
        }
        // A header claiming the largest value and every optional field.
        buf[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_within(&buf, 40, 64).is_none());
        assert!(read_within(&buf, 40, usize::MAX).is_none());
        // Too close to the end for even the fixed part.
        assert!(read_within(&buf, 60, 64).is_none());
        assert!(read_within(&buf, usize::MAX - 2, usize::MAX).is_none());
    }

    #[test]
    fn common_case_header_is_twelve_bytes() {
        assert_eq!(header_len(3, 0, false), 12);
        assert_eq!(header_len(3, 1, false), 16);
        assert_eq!(header_len(256, 0, false), 16);
        assert_eq!(item_size(3, 0, 10, 100), 122);
    }
}
