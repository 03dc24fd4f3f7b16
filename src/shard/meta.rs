//! The meaning of meta commands on a shard: `mg`, `ms`, `md`, `ma`, `me`
//! run against the store, and their replies composed, as memcached 1.6.18
//! answers them.
//!
//! Owns which store calls a meta request makes and which counters move. It
//! never touches a socket; `mn` never reaches it (transport answers it in
//! place, since it has no key).

use super::Shard;
use crate::protocol::meta::{flag_letters, push_return_flags, ReturnFields};
use crate::protocol::reply::push_u64;
use crate::protocol::reply::MetaCode;
use crate::protocol::{compose, ErrorReply, Meta, MetaCommand, MetaSetMode, Response, MAX_KEY_LEN};
use crate::store::{
    ArithOutcome, Key, MetaDeleteOutcome, MetaGetOptions, MetaLookup, MetaSet, NsId, SetMode,
    SetOutcome, TtlFlag,
};

/// Seconds left before `exptime` (-1: never), as `t` shows them: memcached
/// prints the difference as an unsigned 32-bit number, so an item this
/// request expired reads as about 4.29 billion, never as "never".
fn ttl(exptime: u32, now: u32) -> i64 {
    if exptime == 0 {
        -1
    } else {
        i64::from(exptime.wrapping_sub(now))
    }
}

/// `me`'s `exp=` (-1: never): memcached 1.6.18 prints `current_time -
/// exptime`, signed, so an item with 100 seconds left shows `exp=-100`.
/// Its meta debug reply is the contract, so it is kept.
fn exp(exptime: u32, now: u32) -> i64 {
    if exptime == 0 {
        -1
    } else {
        i64::from(now.wrapping_sub(exptime) as i32)
    }
}

/// The one reply to an `O` over 32 bytes.
fn long_opaque(out: &mut Vec<u8>) {
    compose(&Response::Error(ErrorReply::MetaOpaqueTooLong), out);
}

#[inline]
fn line_start(code: MetaCode, out: &mut Vec<u8>) {
    out.extend_from_slice(code.word());
}

#[inline]
fn line_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

impl Shard {
    /// Runs one meta request whose key hashes to `hash` and appends its
    /// reply (nothing, where `q` hides it).
    pub(crate) fn execute_meta(&mut self, ns: NsId, hash: u64, meta: &Meta, out: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_KEY_LEN];
        let key = meta.key(&mut buf);
        let k = Key { ns, hash, key };
        let now = self.clock.now();
        match meta.command {
            MetaCommand::Get => self.meta_get(k, meta, now, out),
            MetaCommand::Set => self.meta_set(k, meta, now, out),
            MetaCommand::Delete => self.meta_delete(k, meta, now, out),
            MetaCommand::Arith => self.meta_arith(k, meta, now, out),
            MetaCommand::Debug => self.meta_debug(k, now, out),
        }
    }

    fn meta_get(&mut self, k: Key, meta: &Meta, now: u32, out: &mut Vec<u8>) {
        let f = &meta.flags;
        // `T`, `N` and `R` act in the order they came, and `t` shows the
        // exptime as those before it left it: the `t_at`-th.
        let (mut ttl_flags, mut n, mut t_at) = ([None; 3], 0, 0);
        for letter in f.acting_letters() {
            let flag = match letter {
                b'T' => f.ttl.map(|t| TtlFlag::Touch(self.clock.expiry(t, now))),
                b'N' => f.vivify.map(|t| TtlFlag::Vivify(self.clock.expiry(t, now))),
                b'R' => f
                    .recache
                    .map(|t| TtlFlag::Recache(self.clock.expiry(t, now))),
                b't' => {
                    t_at = n;
                    None
                }
                _ => None,
            };
            if let (Some(flag), Some(slot)) = (flag, ttl_flags.get_mut(n)) {
                *slot = Some(flag);
                n += 1;
            }
        }
        // An opaque over 32 bytes: memcached has fetched the item (and
        // bumped it, unless a flag had it locked for a later bump),
        // created it for `N`, and applied the flags left of the opaque;
        // then it answers the error alone and counts nothing.
        let failed = f.long_opaque.is_some();
        let locked =
            || flag_letters(f.tokens).any(|l| matches!(l, b'N' | b'T' | b'R' | b'l' | b'h'));
        let opts = MetaGetOptions {
            ttl_flags,
            vivify: f.vivify.is_some(),
            bump: !(f.no_update || failed && locked()),
            mark_won: !failed,
            want_cas: f.return_cas,
        };
        let lookup = self.store.meta_get(k, opts, now);
        if failed {
            return long_opaque(out);
        }
        let (hit, expired) = match lookup {
            MetaLookup::Hit(hit) => {
                let b = hit.before;
                if f.value {
                    line_start(MetaCode::Va, out);
                    out.push(b' ');
                    push_u64(out, hit.value.len() as u64);
                } else {
                    line_start(MetaCode::Hd, out);
                }
                let fields = ReturnFields {
                    cas: Some(b.cas),
                    flags: Some(b.flags),
                    size: Some(b.size),
                    ttl: hit.exptimes.get(t_at).map(|&e| (ttl(e, now), ttl(e, now))),
                    last_access: Some(b.idle),
                    hit_before: Some(b.hit_before),
                    // As the item was stored: only `ms` with `b` marks
                    // a key binary, whatever this request's `b`.
                    key: Some((k.key, b.binary_key)),
                };
                push_return_flags(f.tokens, &fields, out);
                if b.token_sent {
                    out.extend_from_slice(b" Z");
                }
                if b.stale {
                    out.extend_from_slice(b" X");
                }
                if hit.won {
                    out.extend_from_slice(b" W");
                }
                line_end(out);
                if f.value {
                    out.extend_from_slice(hit.value);
                    line_end(out);
                }
                (true, false)
            }
            MetaLookup::Expired => (false, true),
            MetaLookup::Missing => (false, false),
        };
        if !hit && !f.quiet {
            // A miss still echoes `O` and `k`, as memcached does.
            line_start(MetaCode::En, out);
            let fields = ReturnFields {
                key: Some((k.key, f.base64)),
                ..ReturnFields::default()
            };
            push_return_flags(f.tokens, &fields, out);
            line_end(out);
        }
        self.count_retrieval(k.ns, f.ttl.is_some(), hit, expired);
    }

    fn meta_set(&mut self, k: Key, meta: &Meta, now: u32, out: &mut Vec<u8>) {
        let f = &meta.flags;
        let exptime = self.clock.expiry(f.ttl.unwrap_or(0), now);
        let mode = match (f.set_mode, f.compare_cas) {
            (MetaSetMode::Set | MetaSetMode::Replace, Some(cas)) => SetMode::Cas(cas),
            (MetaSetMode::Set, None) => SetMode::Set,
            (MetaSetMode::Replace, None) => SetMode::Replace,
            (MetaSetMode::Add, _) => SetMode::Add,
            (MetaSetMode::Append, _) => SetMode::Append,
            (MetaSetMode::Prepend, _) => SetMode::Prepend,
        };
        // Append and prepend take a plain cas check first; memcached's
        // do_store_item reads C0 as "no cas" there.
        let cas_mismatch = matches!(mode, SetMode::Append | SetMode::Prepend)
            && f.compare_cas.is_some_and(|cas| {
                cas != 0
                    && self
                        .store
                        .meta_peek(k, now)
                        .is_some_and(|item| item.cas != cas)
            });
        let (outcome, cas) = if cas_mismatch {
            (SetOutcome::Exists, 0)
        } else {
            let set = MetaSet {
                mode,
                flags: f.client_flags,
                exptime,
                value: meta.data,
                invalidate: f.invalidate,
                // memcached builds an appended item afresh, unmarked.
                binary_key: f.base64 && !matches!(mode, SetMode::Append | SetMode::Prepend),
                want_cas: f.return_cas,
            };
            self.store.meta_set(k, set, now)
        };
        let c = self.counters(k.ns);
        c.cmd_set += 1;
        if let SetMode::Cas(_) = mode {
            match outcome {
                SetOutcome::Stored => c.cas_hits += 1,
                SetOutcome::Exists => c.cas_badval += 1,
                SetOutcome::NotFound => c.cas_misses += 1,
                _ => {}
            }
        }
        let code = match outcome {
            SetOutcome::Stored => MetaCode::Hd,
            SetOutcome::NotStored => MetaCode::Ns,
            SetOutcome::Exists => MetaCode::Ex,
            SetOutcome::NotFound => MetaCode::Nf,
            SetOutcome::TooLarge if matches!(mode, SetMode::Append | SetMode::Prepend) => {
                MetaCode::Ns
            }
            SetOutcome::TooLarge => {
                c.store_too_large += 1;
                return compose(&Response::Error(ErrorReply::TooLarge), out);
            }
            SetOutcome::OutOfMemory => {
                c.store_no_memory += 1;
                return compose(&Response::Error(ErrorReply::OutOfMemoryStoring), out);
            }
        };
        if code == MetaCode::Hd && f.quiet {
            return;
        }
        line_start(code, out);
        let fields = ReturnFields {
            cas: Some(cas),
            key: Some((k.key, f.base64)),
            ..ReturnFields::default()
        };
        push_return_flags(f.tokens, &fields, out);
        line_end(out);
    }

    fn meta_delete(&mut self, k: Key, meta: &Meta, now: u32, out: &mut Vec<u8>) {
        let f = &meta.flags;
        let ttl = match (f.invalidate, f.ttl) {
            (true, Some(t)) => Some(self.clock.expiry(t, now)),
            _ => None,
        };
        let outcome = self
            .store
            .meta_delete(k, f.compare_cas, f.invalidate, ttl, now);
        let c = self.counters(k.ns);
        let code = match outcome {
            MetaDeleteOutcome::Deleted => {
                c.delete_hits += 1;
                MetaCode::Hd
            }
            MetaDeleteOutcome::NotFound => {
                c.delete_misses += 1;
                MetaCode::Nf
            }
            MetaDeleteOutcome::Exists => MetaCode::Ex,
        };
        if code == MetaCode::Hd && f.quiet {
            return;
        }
        line_start(code, out);
        let fields = ReturnFields {
            key: Some((k.key, f.base64)),
            ..ReturnFields::default()
        };
        push_return_flags(f.tokens, &fields, out);
        line_end(out);
    }

    fn meta_arith(&mut self, k: Key, meta: &Meta, now: u32, out: &mut Vec<u8>) {
        let f = &meta.flags;
        let incr = !f.decr;
        let found = self.store.meta_peek(k, now);
        // The new number, and whether this request created the item.
        let result: Result<(u64, bool), MetaCode> = match found {
            None => match f.vivify {
                None => Err(MetaCode::Nf),
                Some(_) => {
                    // Created never expiring: `N` sets its exptime below,
                    // in its place among the flags, as memcached does.
                    let mut digits = Vec::with_capacity(20);
                    push_u64(&mut digits, f.initial);
                    match self.store.set(k, SetMode::Add, 0, 0, &digits, now) {
                        SetOutcome::Stored => Ok((f.initial, true)),
                        _ => Err(MetaCode::Ns),
                    }
                }
            },
            // memcached's do_add_delta refuses an empty value, and one it
            // stored in chunks, before it compares the cas, and takes C0
            // for "no cas".
            Some(item) if item.size == 0 || item.chunked => {
                return compose(&Response::Error(ErrorReply::NonNumeric), out);
            }
            Some(item) if f.compare_cas.is_some_and(|cas| cas != 0 && cas != item.cas) => {
                Err(MetaCode::Ex)
            }
            Some(_) => match self.store.arith(k, incr, f.delta, now) {
                ArithOutcome::Value(v) => Ok((v, false)),
                ArithOutcome::NotFound => Err(MetaCode::Nf),
                ArithOutcome::NonNumeric => {
                    return compose(&Response::Error(ErrorReply::NonNumeric), out);
                }
            },
        };
        // As memcached counts them: a change is a hit and a missing item a
        // miss; an item `N` created, a cas mismatch and a failed create
        // count as neither.
        let c = self.counters(k.ns);
        match (&result, incr) {
            (Ok((_, false)), true) => c.incr_hits += 1,
            (Ok((_, false)), false) => c.decr_hits += 1,
            (Err(MetaCode::Nf), true) => c.incr_misses += 1,
            (Err(MetaCode::Nf), false) => c.decr_misses += 1,
            _ => {}
        }
        // An opaque over 32 bytes: memcached has changed the number (or
        // not), and answers the error alone.
        let (value, created) = match result {
            Ok(done) => done,
            Err(_) if f.long_opaque.is_some() => return long_opaque(out),
            Err(code) => {
                line_start(code, out);
                let fields = ReturnFields {
                    key: Some((k.key, f.base64)),
                    ..ReturnFields::default()
                };
                push_return_flags(f.tokens, &fields, out);
                line_end(out);
                return;
            }
        };
        let mut digits = Vec::with_capacity(20);
        push_u64(&mut digits, value);
        // memcached walks the flags left to right on the item it changed:
        // `T` sets the exptime, `N` sets it on an item this request
        // created, and `t` shows it as it is at that point. The reply is
        // the item's even when that exptime has already passed. A number
        // that outgrew its value went into a new item, but memcached's
        // flags act on the old one it still holds: `t` shows a `T`, the
        // stored item keeps its exptime.
        let relinked = !created && found.is_some_and(|old| digits.len() > old.size);
        let item = self.store.meta_peek(k, now);
        let mut exptime = item.map_or(0, |i| i.exptime);
        let mut shown = None;
        for letter in f.acting_letters() {
            match (letter, f.ttl, f.vivify) {
                (b'T', Some(t), _) => exptime = self.clock.expiry(t, now),
                (b'N', _, Some(t)) if created => exptime = self.clock.expiry(t, now),
                (b't', ..) => shown = Some(ttl(exptime, now)),
                _ => {}
            }
        }
        if !relinked && item.is_some_and(|i| i.exptime != exptime) {
            self.store.meta_set_exptime(k, exptime, now);
        }
        if f.long_opaque.is_some() {
            return long_opaque(out);
        }
        // `q` hides a success, but not the answer for an item it created.
        if f.quiet && !created {
            return;
        }
        if f.value {
            line_start(MetaCode::Va, out);
            out.push(b' ');
            push_u64(out, digits.len() as u64);
        } else {
            line_start(MetaCode::Hd, out);
        }
        let fields = ReturnFields {
            cas: item.map(|i| i.cas),
            ttl: shown.map(|t| (t, t)),
            key: Some((k.key, f.base64)),
            ..ReturnFields::default()
        };
        push_return_flags(f.tokens, &fields, out);
        line_end(out);
        if f.value {
            out.extend_from_slice(&digits);
            line_end(out);
        }
    }

    fn meta_debug(&mut self, k: Key, now: u32, out: &mut Vec<u8>) {
        let Some(item) = self.store.meta_peek(k, now) else {
            line_start(MetaCode::En, out);
            return line_end(out);
        };
        line_start(MetaCode::Me, out);
        out.push(b' ');
        // The key as stored, not as asked for: base64 when it was stored
        // with `b`, as memcached re-encodes it from memory.
        if item.binary_key {
            crate::protocol::meta::base64_encode(k.key, out);
        } else {
            out.extend_from_slice(k.key);
        }
        out.extend_from_slice(b" exp=");
        crate::protocol::meta::push_i64(out, exp(item.exptime, now));
        out.extend_from_slice(b" la=");
        push_u64(out, u64::from(item.idle));
        out.extend_from_slice(b" cas=");
        push_u64(out, item.cas);
        out.extend_from_slice(if item.hit_before {
            b" fetch=yes"
        } else {
            b" fetch=no"
        });
        // No slab classes here: every item reports class 1.
        out.extend_from_slice(b" cls=1 size=");
        push_u64(out, item.total as u64);
        line_end(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::keyspace::KeyHasher;
    use crate::protocol::{parse, Keyed, Limits, Parsed, Request};

    #[test]
    fn ttls_print_as_memcached_prints_them() {
        // In the server's first second (its clock starts at 62): an item
        // the request expired (exptime 1) reads as memcached 1.6.18's does.
        assert_eq!(ttl(1, 62), 4_294_967_235);
        assert_eq!(ttl(0, 62), -1);
        assert_eq!(ttl(162, 62), 100);
        assert_eq!(exp(162, 62), -100);
        assert_eq!(exp(0, 62), -1);
    }

    /// Runs every request of `wire` on `shard`; the replies, as text.
    fn run(shard: &mut Shard, wire: &[u8]) -> String {
        let limits = Limits {
            max_item_size: 1 << 20,
        };
        let (mut at, mut out) = (0, Vec::new());
        while at < wire.len() {
            match parse(&wire[at..], &limits) {
                Parsed::Request {
                    request: Request::Keyed(keyed),
                    consumed,
                } => {
                    let mut buf = [0; crate::protocol::MAX_KEY_LEN];
                    let hash = KeyHasher::default().hash(0, keyed.routing_key(&mut buf));
                    shard.execute(0, hash, &keyed, &mut out);
                    at += consumed;
                }
                Parsed::Request {
                    request: Request::Get { kind, keys },
                    consumed,
                } => {
                    for key in keys.iter() {
                        let hash = KeyHasher::default().hash(0, key);
                        shard.execute(0, hash, &Keyed::Get { kind, key }, &mut out);
                    }
                    at += consumed;
                }
                Parsed::Invalid {
                    error, consumed, ..
                } => {
                    compose(&Response::Error(error), &mut out);
                    at += consumed;
                }
                other => panic!("{other:?}"),
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn cas_of(reply: &str) -> u64 {
        let word = reply.split_whitespace().find(|w| w.starts_with('c'));
        word.and_then(|w| w[1..].parse().ok())
            .unwrap_or_else(|| panic!("no cas in {reply:?}"))
    }

    /// The cas unique is computed only when `c` asks for it; whichever
    /// command shows it, it is the same number, and it is the one a
    /// compare-and-swap accepts.
    #[test]
    fn cas_uniques_agree_whether_or_not_they_were_asked_for() {
        let mut shard = Shard::new(16 << 20, 1 << 20, Clock::new(), KeyHasher::default());
        assert_eq!(run(&mut shard, b"ms k 1\r\na\r\n"), "HD\r\n");
        let from_get = cas_of(&run(&mut shard, b"mg k c\r\n"));
        assert_ne!(from_get, 0);
        assert_eq!(run(&mut shard, b"mg k v\r\n"), "VA 1\r\na\r\n");
        // (The shard answers one key's VALUE; transport adds END.)
        let from_classic = run(&mut shard, b"gets k\r\n");
        assert_eq!(from_classic, format!("VALUE k 0 1 {from_get}\r\na\r\n"));
        // A set that does not ask answers HD alone; one that asks gets the
        // new unique, which mg then shows and a cas set accepts.
        assert_eq!(run(&mut shard, b"ms k 1\r\nb\r\n"), "HD\r\n");
        let stored = cas_of(&run(&mut shard, b"ms k 1 c\r\nc\r\n"));
        assert_ne!(stored, from_get);
        assert_eq!(cas_of(&run(&mut shard, b"mg k c\r\n")), stored);
        let wire = format!("ms k 1 C{stored}\r\nd\r\nms k 1 C{stored}\r\ne\r\nmg k v\r\n");
        assert_eq!(
            run(&mut shard, wire.as_bytes()),
            "HD\r\nEX\r\nVA 1\r\nd\r\n"
        );
    }

    /// `ma`'s mode comes from its `M` token; other commands ignore one.
    #[test]
    fn arith_mode_is_read_from_the_m_token() {
        let mut shard = Shard::new(16 << 20, 1 << 20, Clock::new(), KeyHasher::default());
        assert_eq!(
            run(
                &mut shard,
                b"ms n 2\r\n10\r\nma n MD v\r\nma n M- D3 v\r\nma n v\r\n"
            ),
            "HD\r\nVA 1\r\n9\r\nVA 1\r\n6\r\nVA 1\r\n7\r\n"
        );
        assert_eq!(
            run(&mut shard, b"ma n MX\r\n"),
            "CLIENT_ERROR invalid mode for ma M token\r\n"
        );
    }

    /// `ma` walks its flags in order on the item it changed: `T` and `N`
    /// set the exptime where they stand, `t` shows it there, and an item
    /// they expire still answers with its cas.
    #[test]
    fn arith_applies_n_and_t_in_request_order() {
        let mut shard = Shard::new(16 << 20, 1 << 20, Clock::new(), KeyHasher::default());
        assert_eq!(
            run(
                &mut shard,
                b"ma a t N0 T-1\r\nmg a\r\nma b T-1 N0 t\r\nmg b\r\n"
            ),
            "HD t-1\r\nEN\r\nHD t-1\r\nHD\r\n"
        );
        assert_ne!(cas_of(&run(&mut shard, b"ma c N-1 c\r\n")), 0);
        assert_eq!(run(&mut shard, b"mg c\r\n"), "EN\r\n");
    }

    /// An `ma` that rewrites the number in place keeps the item's marks
    /// (stale, not hit), and its `T` does not count as a fetch.
    #[test]
    fn arith_in_place_keeps_the_stale_mark_and_does_not_hit() {
        let mut shard = Shard::new(16 << 20, 1 << 20, Clock::new(), KeyHasher::default());
        assert_eq!(
            run(
                &mut shard,
                b"ms s 1\r\n5\r\nmd s I q\r\nma s q T100\r\nmg s h\r\n"
            ),
            "HD\r\nHD h0 X W\r\n"
        );
    }
}
