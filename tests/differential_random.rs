//! Randomized differential test: seeded random command sequences, classic and
//! meta, mostly well-formed, over seven keys (so hits, misses and cas conflicts
//! happen), go to the real memcached 1.6.18 and to ferrocache (two cores, so
//! the keys span shards). Each sequence runs on one connection to each server,
//! both flushed first, and the replies must be identical once cas uniques are
//! masked. A diverging sequence is shrunk (steps dropped one at a time while it
//! still diverges) and printed with both replies. A second run (a quarter as
//! many sequences) does the same inside one tenant's namespace, on a server
//! with tokens, while neighbour tenants hold the same keys, which must come
//! through untouched.
//!
//! Environment: `DIFF_RANDOM_SEEDS` sequences (default 2000, a few seconds),
//! starting at seed `DIFF_RANDOM_START` (default 0); `DIFF_RANDOM_VERBOSE=1`
//! prints every divergence found, not only the first of each kind.
//!
//! Requests are pipelined: written together, then the write side is closed
//! and the reply read to EOF. A step that needs a real cas unique (a `cas`
//! that should succeed, `ms C`, `md C`, `ma C`) first drains the pipeline
//! with a probe, `me <key>` then `mn`, on each server; the probe's reply is
//! cut out of the transcript and each server gets its own unique back.
//!
//! Never generated, because the servers differ by design (README.md,
//! docs/META.md) or by the clock:
//! - anything that waits on the clock: TTLs are 0, negative, from 100000 s
//!   (relative) or absolute dates; `mg l`; TTLs read back (`t`) are compared
//!   within 2 s.
//! - item sizes (`mg s`, `me`), `stats`, `version`, `verbosity`, `watch`,
//!   `lru`, `flush_all` with a delay, and memory limits. Both servers run
//!   with `-I 1k`, so values near the item size limit (and appends past
//!   it) are generated: a few hundred bytes, not megabytes.
//! - control bytes in keys, client flags above 2^32-1, exptimes beyond 32
//!   bits, lines over 2048 bytes (memcached's answer depends on whether
//!   the newline came in the same read; tests/long_lines.rs sends them
//!   whole).
//! - `ms I` with a made-up `C` number (ferrocache's uniques are sealed).
//! - a data block shorter than its length (the following commands would be
//!   swallowed as data, which the probes cannot tell apart).
//!
//! Nor what memcached itself answers by timing or by memory contents: a key
//! over 250 bytes in get/gets/gat/gats (memcached then drops every reply not
//! yet written), numbers of 2^63 or more and values of only spaces (its
//! `incr` reads past the value, see `NUMBERS`). Arithmetic waits for earlier
//! replies first (see `Part::Drain`), and the `t` of an item the request
//! itself expired is masked (see `normalize`).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use common::{exchange, oauth_request, split_line, GrantsFile, Memcached, Server};

/// The key set: small, so commands meet each other's items. One key has
/// bytes above 0x7f (both servers accept them), and one is 250 bytes, the
/// longest either takes: its items meet the size limit 249 bytes sooner,
/// and its base64 form is too long a token.
const KEYS: [&[u8]; 7] = [
    b"a",
    b"k1",
    b"key2",
    b"kk3",
    b"n4",
    b"\xc3\xa9t5",
    &[b'L'; 250],
];

/// A cas unique neither server hands out (memcached's counter starts at 1
/// on a fresh server; ferrocache's are sealed).
const WRONG_CAS: &str = "987654321987654";

// ---------------------------------------------------------------- PRNG

/// splitmix64: tiny, seedable, good enough to pick commands.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------- steps

/// A piece of a request: literal bytes, or the cas unique of a key as the
/// server itself reports it.
#[derive(Clone, Debug)]
enum Part {
    Lit(Vec<u8>),
    /// `fresh`: probe the key now; otherwise reuse the unique the last probe
    /// of this key saw (stale by now, perhaps). No unique: `WRONG_CAS`.
    Cas {
        key: usize,
        fresh: bool,
    },
    /// Wait for every earlier reply first. Arithmetic starts with this:
    /// memcached updates a number in place only when no reply still being
    /// written holds the item, else it makes a new item (not padded, not
    /// stale, not hit), so a pipelined `get` then `incr` depends on timing.
    Drain,
}

/// One command (with its data block, if any).
#[derive(Clone, Debug, Default)]
struct Step(Vec<Part>);

impl Step {
    fn push(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        if let Some(Part::Lit(last)) = self.0.last_mut() {
            last.extend_from_slice(bytes.as_ref());
        } else {
            self.0.push(Part::Lit(bytes.as_ref().to_vec()));
        }
        self
    }

    fn cas(&mut self, key: usize, fresh: bool) -> &mut Self {
        self.0.push(Part::Cas { key, fresh });
        self
    }

    /// The step as text, with `<cas:KEY>` (or `<oldcas:KEY>`) placeholders.
    fn render(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Lit(b) => escape(b),
                Part::Cas { key, fresh: true } => format!("<cas:{}>", escape(KEYS[*key])),
                Part::Cas { key, fresh: false } => format!("<oldcas:{}>", escape(KEYS[*key])),
                Part::Drain => String::new(),
            })
            .collect()
    }
}

/// Bytes as an escaped string (`\r`, `\n`, `\xNN`).
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------------- generator

const EXPTIMES: [&str; 10] = [
    "0",
    "0",
    "0",
    "100000",
    "500000",
    "2592000",
    "2000000000",
    "1000000000",
    "-1",
    "-1000",
];
/// Stored numbers stay below 2^63, and hold no `-`: for a number of 2^63 or
/// more memcached's parser looks for a minus sign with `strchr` over the
/// item's data and on past its end, into whatever the slab holds next, so
/// its answer depends on its memory (`tests/differential.rs` pins the
/// wrap-around cases one at a time).
const NUMBERS: [&[u8]; 13] = [
    b"0",
    b"1",
    b"9",
    b"10",
    b"99",
    b"100",
    b"007",
    b"4611686018427387904",
    b"18446744073709551616",
    b"+5",
    b" 12",
    b"12 ",
    b"1a",
];
/// Deltas up to 10^18 (see `NUMBERS`), and some bad ones.
const DELTAS: [&str; 11] = [
    "0",
    "1",
    "1",
    "5",
    "100",
    "1000000000000000000",
    "18446744073709551616",
    "abc",
    "-1",
    "+5",
    "0x5",
];
/// Lowercase letters, digits and spaces only: no `MN` line and no command
/// can hide in a value (and no `-`, see `NUMBERS`).
const VALUE_BYTES: &[u8] = b"abwxyz0189 "; // the space last

struct Gen {
    rng: Rng,
}

impl Gen {
    fn key(&mut self) -> usize {
        self.rng.below(KEYS.len())
    }

    /// A key token: the key, its base64 form when `b` (now and then one
    /// that does not decode), or rarely one byte too long.
    fn key_token(&mut self, key: usize, b: bool) -> Vec<u8> {
        if self.rng.chance(2) {
            return vec![b'k'; 251];
        }
        if b && self.rng.chance(5) {
            self.rng.pick(&["A===", "*!*"]).as_bytes().to_vec()
        } else if b {
            BASE64.encode(KEYS[key]).into_bytes()
        } else {
            KEYS[key].to_vec()
        }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.below(13) {
            0 => Vec::new(),
            1..=4 => self.rng.pick(&NUMBERS).to_vec(),
            5 => b"a\r\nb".to_vec(),
            // Around `-I 1k`: memcached's largest value there is 940 to
            // 963 bytes by the key and the flags, 714 with the long key.
            12 => {
                let len = if self.rng.chance(30) { 680 } else { 900 } + self.rng.below(80);
                let mut value = vec![b'v'; len];
                value[self.rng.below(len)] = VALUE_BYTES[self.rng.below(VALUE_BYTES.len())];
                value
            }
            // Never only spaces: memcached's `incr` would skip them, and
            // the CR LF, and parse whatever its memory holds next.
            _ => {
                let len = self.rng.below(12);
                let mut value = vec![VALUE_BYTES[self.rng.below(VALUE_BYTES.len() - 1)]];
                value.extend((0..len).map(|_| VALUE_BYTES[self.rng.below(VALUE_BYTES.len())]));
                value
            }
        }
    }

    fn client_flags(&mut self) -> String {
        match self.rng.below(12) {
            0..=4 => "0".into(),
            5 => "1".into(),
            6 => "4294967295".into(),
            7 => "abc".into(),
            8 => "-1".into(),
            _ => (self.rng.next() as u32).to_string(),
        }
    }

    fn exptime(&mut self) -> String {
        if self.rng.chance(3) {
            return "abc".into();
        }
        self.rng.pick(&EXPTIMES).to_string()
    }

    fn opaque(&mut self) -> String {
        self.rng
            .pick(&["1", "77", "abc", "123456789012345678901234567890123"])
            .to_string()
    }

    fn noreply(&mut self, step: &mut Step) {
        if self.rng.chance(20) {
            step.push(" noreply");
        }
    }

    /// A cas unique token: the key's current unique, an old one, 0, or a
    /// number no item has.
    fn cas_token(&mut self, step: &mut Step, key: usize) {
        match self.rng.below(10) {
            0..=4 => {
                step.cas(key, true);
            }
            5..=7 => {
                step.cas(key, false);
            }
            9 => {
                step.push("0");
            }
            _ => {
                step.push(WRONG_CAS);
            }
        }
    }

    fn step(&mut self) -> Step {
        let mut step = Step::default();
        match self.rng.below(200) {
            0..=49 => self.storage(&mut step),
            50..=89 => self.retrieval(&mut step),
            90..=101 => self.arith(&mut step),
            102..=109 => self.touch(&mut step),
            110..=119 => self.delete(&mut step),
            120..=147 => self.meta_get(&mut step),
            148..=167 => self.meta_set(&mut step),
            168..=177 => self.meta_delete(&mut step),
            178..=189 => self.meta_arith(&mut step),
            190..=192 => {
                step.push("mn\r\n");
            }
            193 => {
                step.push(
                    self.rng
                        .pick(&["flush_all", "flush_all noreply", "flush_all 0"]),
                );
                step.push("\r\n");
            }
            _ => self.malformed(&mut step),
        }
        step
    }

    fn storage(&mut self, step: &mut Step) {
        let verb = self.rng.pick(&[
            "set", "set", "set", "add", "replace", "append", "prepend", "cas", "cas",
        ]);
        let key = self.key();
        let value = self.value();
        step.push(verb).push(" ").push(self.key_token(key, false));
        let (flags, exptime) = (self.client_flags(), self.exptime());
        let length = match self.rng.below(40) {
            0 => "abc".to_string(),
            1 => "-1".to_string(),
            _ => value.len().to_string(),
        };
        step.push(format!(" {flags} {exptime} {length}"));
        if verb == "cas" && !self.rng.chance(3) {
            step.push(" ");
            self.cas_token(step, key);
        }
        self.noreply(step);
        step.push("\r\n").push(&value);
        // Rarely a data block longer than its length: a bad data chunk.
        if self.rng.chance(3) {
            step.push("zz");
        }
        step.push("\r\n");
    }

    fn retrieval(&mut self, step: &mut Step) {
        let verb = self.rng.pick(&["get", "get", "gets", "gat", "gats"]);
        step.push(verb);
        if verb.starts_with("gat") {
            step.push(" ").push(self.exptime());
        }
        let n = match self.rng.below(20) {
            0 => 0,
            1..=10 => 1,
            _ => 2 + self.rng.below(4),
        };
        for _ in 0..n {
            step.push(if self.rng.chance(5) { "  " } else { " " });
            // Never a key over 250 bytes: memcached then drops every reply
            // not yet written on the connection, which depends on timing.
            step.push(KEYS[self.key()]);
        }
        step.push("\r\n");
    }

    fn arith(&mut self, step: &mut Step) {
        step.0.push(Part::Drain);
        let verb = self.rng.pick(&["incr", "decr"]);
        let key = self.key();
        step.push(verb).push(" ").push(self.key_token(key, false));
        step.push(" ").push(self.rng.pick(&DELTAS));
        self.noreply(step);
        step.push("\r\n");
    }

    fn touch(&mut self, step: &mut Step) {
        let key = self.key();
        step.push("touch ").push(self.key_token(key, false));
        step.push(" ").push(self.exptime());
        self.noreply(step);
        step.push("\r\n");
    }

    fn delete(&mut self, step: &mut Step) {
        let key = self.key();
        step.push("delete ").push(self.key_token(key, false));
        if self.rng.chance(5) {
            step.push(" 0");
        }
        self.noreply(step);
        step.push("\r\n");
    }

    /// Picks a random subset of `pool`, in random order, each flag at
    /// `percent`; rarely adds a flag twice or an invalid one.
    fn flags<'a>(&mut self, pool: &[&'a str], percent: usize, invalid: &[&'a str]) -> Vec<&'a str> {
        let mut chosen: Vec<&str> = pool
            .iter()
            .copied()
            .filter(|_| self.rng.chance(percent))
            .collect();
        for i in (1..chosen.len()).rev() {
            let j = self.rng.below(i + 1);
            chosen.swap(i, j);
        }
        if self.rng.chance(4) && !chosen.is_empty() {
            let dup = chosen[self.rng.below(chosen.len())];
            chosen.push(dup);
        }
        if self.rng.chance(4) {
            let at = self.rng.below(chosen.len() + 1);
            chosen.insert(at, self.rng.pick(invalid));
        }
        chosen
    }

    /// Appends ` <flag><token>` for each flag; `token` gives a flag's token.
    fn push_flags(&mut self, step: &mut Step, key: usize, flags: &[&str]) {
        for &flag in flags {
            step.push(" ").push(flag);
            match flag {
                "O" => {
                    let o = self.opaque();
                    step.push(o);
                }
                "N" | "T" => {
                    let t = if self.rng.chance(3) {
                        "x".into()
                    } else {
                        self.rng.pick(&EXPTIMES).to_string()
                    };
                    step.push(t);
                }
                "R" => {
                    step.push(self.rng.pick(&["30", "300000", "99999999"]));
                }
                "C" => {
                    self.cas_token(step, key);
                }
                "F" => {
                    let f = self.client_flags();
                    step.push(f);
                }

                "M" => {
                    step.push(self.rng.pick(&[
                        "S", "E", "A", "P", "R", "S", "E", "R", "X", "s", "a", "I", "+", "D", "-",
                        "i", "d",
                    ]));
                }
                "D" => {
                    step.push(self.rng.pick(&DELTAS));
                }
                "J" => {
                    step.push(self.rng.pick(&["0", "5", "13", "4611686018427387904", "x"]));
                }
                _ => {}
            }
        }
    }

    /// A meta command with no data block, `verb key flags\r\n`: its flags
    /// drawn from `pool`, now and then with one of `invalid` among them.
    fn meta_line(&mut self, step: &mut Step, verb: &str, pool: &[&str], invalid: &[&str]) {
        let flags = self.flags(pool, 30, invalid);
        let key = self.key();
        let b = flags.contains(&"b");
        step.push(verb).push(" ").push(self.key_token(key, b));
        self.push_flags(step, key, &flags);
        step.push("\r\n");
    }

    fn meta_get(&mut self, step: &mut Step) {
        let pool = [
            "b", "c", "f", "h", "k", "O", "q", "t", "u", "v", "N", "R", "T",
        ];
        self.meta_line(step, "mg", &pool, &["E5", "zz", "S5", "x"]);
    }

    fn meta_set(&mut self, step: &mut Step) {
        let mut flags = self.flags(
            &["b", "c", "C", "F", "I", "k", "O", "q", "T", "M", "M"],
            30,
            &["E5", "S5", "zz", "v"],
        );
        let value = self.value();
        let key = self.key();
        let b = flags.contains(&"b");
        let length = match self.rng.below(40) {
            0 => "abc".to_string(),
            1 => "-1".to_string(),
            _ => value.len().to_string(),
        };
        step.push("ms ").push(self.key_token(key, b));
        step.push(" ").push(&length);
        // `I` with a made-up cas is a documented difference: keep `I` only
        // with a real unique.
        let mut with_cas = Step::default();
        if flags.contains(&"I") {
            flags.retain(|f| *f != "C");
            if self.rng.chance(60) {
                with_cas.push(" C").cas(key, self.rng.chance(50));
            }
        }
        self.push_flags(step, key, &flags);
        step.0.extend(with_cas.0);
        step.push("\r\n").push(&value);
        if self.rng.chance(3) {
            step.push("zz");
        }
        step.push("\r\n");
    }

    fn meta_delete(&mut self, step: &mut Step) {
        let pool = ["b", "C", "I", "k", "O", "q", "T"];
        self.meta_line(step, "md", &pool, &["x", "zz", "E5", "v"]);
    }

    fn meta_arith(&mut self, step: &mut Step) {
        step.0.push(Part::Drain);
        let pool = [
            "b", "C", "N", "J", "D", "T", "M", "q", "O", "k", "c", "t", "v",
        ];
        self.meta_line(step, "ma", &pool, &["zz", "f", "E5"]);
    }

    fn malformed(&mut self, step: &mut Step) {
        let key = KEYS[self.key()];
        let (before, after): (&str, &str) = match self.rng.below(18) {
            0 => ("set k1 0 0\r\n", ""),
            1 => ("incr ", "\r\n"),
            2 => ("touch ", "\r\n"),
            3 => ("delete\r\n", ""),
            4 => ("gets\r\n", ""),
            5 => ("gat\r\n", ""),
            6 => ("foo ", "\r\n"),
            7 => ("GET ", "\r\n"),
            8 => ("\r\n", ""),
            9 => ("incr ", " 1 2 3\r\n"),
            10 => ("set ", " 0 0 1 2\r\nx\r\n"),
            11 => ("mg ", " v v\r\n"),
            12 => ("ms ", "\r\n"),
            13 => ("ma ", " Mx\r\n"),
            14 => ("mg\r\n", ""),
            15 => ("md ", " q q\r\n"),
            16 => ("cas ", " 0 0 1\r\nx\r\n"),
            _ => ("delete ", " 5\r\n"),
        };
        step.push(before);
        if !after.is_empty() {
            step.push(key).push(after);
        }
    }
}

fn sequence(seed: u64) -> Vec<Step> {
    let mut gen = Gen {
        rng: Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed),
    };
    let len = 5 + gen.rng.below(36);
    (0..len).map(|_| gen.step()).collect()
}

// ---------------------------------------------------------------- running

/// One connection running a sequence: what it sent since the last probe and
/// what it got back (probes cut out).
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
    /// `mn` lines sent since the last probe, and so `MN` replies due.
    mn_due: usize,
    transcript: Vec<u8>,
    last_cas: [Option<String>; KEYS.len()],
    /// Closed, or stuck: no more requests go out.
    dead: bool,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            pending: Vec::new(),
            mn_due: 0,
            transcript: Vec::new(),
            last_cas: Default::default(),
            dead: false,
        }
    }

    fn queue(&mut self, bytes: &[u8]) {
        self.mn_due += bytes
            .split(|&b| b == b'\n')
            .filter(|line| {
                line.starts_with(b"mn") && matches!(line.get(2), None | Some(b'\r' | b' '))
            })
            .count();
        self.pending.extend_from_slice(bytes);
    }

    /// Sends what is pending plus `me <key>` (if a key) and `mn`, reads up
    /// to that `MN`, and keeps the key's unique from `me`'s `cas=`.
    fn probe(&mut self, key: Option<usize>) {
        if self.dead {
            return;
        }
        let mut probe = Vec::new();
        if let Some(key) = key {
            probe.extend_from_slice(b"me ");
            probe.extend_from_slice(KEYS[key]);
            probe.extend_from_slice(b"\r\n");
        }
        probe.extend_from_slice(b"mn\r\n");
        self.queue(&probe);
        let request = std::mem::take(&mut self.pending);
        if self.stream.write_all(&request).is_err() {
            self.dead = true;
            return;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while count_mn(&got) < self.mn_due {
            match self.stream.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => {
                    self.transcript.extend_from_slice(&got);
                    self.transcript.extend_from_slice(b"<closed or stuck>");
                    self.dead = true;
                    return;
                }
            }
        }
        self.mn_due = 0;
        // `got` ends with the probe's reply line, then `MN\r\n`.
        let body = &got[..got.len() - b"MN\r\n".len()];
        let Some(key) = key else {
            self.transcript.extend_from_slice(body);
            return;
        };
        let start = body[..body.len().saturating_sub(2)]
            .windows(2)
            .rposition(|w| w == b"\r\n")
            .map_or(0, |i| i + 2);
        let reply = String::from_utf8_lossy(&body[start..]).into_owned();
        self.last_cas[key] = reply
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cas="))
            .map(str::to_owned);
        self.transcript.extend_from_slice(&body[..start]);
    }

    fn step(&mut self, step: &Step) {
        for part in &step.0 {
            match part {
                Part::Cas { key, fresh: true } => self.probe(Some(*key)),
                Part::Drain => self.probe(None),
                _ => {}
            }
        }
        let mut bytes = Vec::new();
        for part in &step.0 {
            match part {
                Part::Lit(b) => bytes.extend_from_slice(b),
                Part::Cas { key, .. } => bytes.extend_from_slice(
                    self.last_cas[*key]
                        .as_deref()
                        .unwrap_or(WRONG_CAS)
                        .as_bytes(),
                ),
                Part::Drain => {}
            }
        }
        self.queue(&bytes);
    }

    /// Sends the rest, half-closes, reads to EOF.
    fn finish(mut self) -> Vec<u8> {
        if self.dead {
            return self.transcript;
        }
        let _ = self.stream.write_all(&self.pending);
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.transcript.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(_) => {
                    self.transcript.extend_from_slice(b"<stuck>");
                    break;
                }
            }
            if Instant::now() > deadline {
                self.transcript.extend_from_slice(b"<stuck>");
                break;
            }
        }
        self.transcript
    }
}

/// `MN\r\n` lines in `bytes` (values never hold capitals, so no data block
/// looks like one).
fn count_mn(bytes: &[u8]) -> usize {
    let mut n = usize::from(bytes.starts_with(b"MN\r\n"));
    n += bytes.windows(6).filter(|w| w == b"\r\nMN\r\n").count();
    n
}

/// Runs `steps` on a flushed server, on one connection; with `login`, a
/// `set oauth` request, that connection (and the flush) first binds a
/// namespace.
fn run(addr: SocketAddr, steps: &[Step], login: Option<&[u8]>) -> Vec<u8> {
    let login = login.unwrap_or_default();
    let stored: &[u8] = if login.is_empty() { b"" } else { b"STORED\r\n" };
    let flush = [login, b"flush_all\r\n"].concat();
    assert_eq!(
        exchange(addr, &flush, usize::MAX),
        [stored, b"OK\r\n"].concat()
    );
    let mut client = Client::new(addr);
    if !login.is_empty() {
        client.stream.write_all(login).unwrap();
        let mut reply = vec![0; stored.len()];
        client.stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, stored, "the login");
    }
    for step in steps {
        client.step(step);
    }
    client.finish()
}

// ---------------------------------------------------------------- comparing

/// A reply with cas uniques masked (`VALUE`'s fifth word, meta `c<n>`) and
/// long TTLs (`t<n>`, n >= 1000) taken out, to compare within 2 s.
fn normalize(reply: &[u8]) -> (Vec<u8>, Vec<i64>) {
    let mut out = Vec::with_capacity(reply.len());
    let mut ttls = Vec::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let (line, body, after) = split_line(rest);
        rest = after;
        let words: Vec<&[u8]> = body.split(|&b| b == b' ').collect();
        let meta = ["HD", "VA", "NS", "EX", "NF", "EN", "MN"]
            .iter()
            .any(|code| words[0] == code.as_bytes());
        let data_len: Option<usize> = if words[0] == b"VALUE" && words.len() >= 4 {
            std::str::from_utf8(words[3])
                .ok()
                .and_then(|s| s.parse().ok())
        } else if words[0] == b"VA" && words.len() >= 2 {
            std::str::from_utf8(words[1])
                .ok()
                .and_then(|s| s.parse().ok())
        } else {
            None
        };
        if words[0] == b"VALUE" && words.len() == 5 {
            out.extend_from_slice(&words[..4].join(&b' '));
            out.extend_from_slice(b" <cas>");
        } else if meta {
            let masked: Vec<Vec<u8>> = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let text = std::str::from_utf8(w).unwrap_or("");
                    let digits = text
                        .get(1..)
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
                    let signed = text.get(1..).and_then(|s| s.parse::<i64>().ok());
                    match (i, w.first(), digits, signed) {
                        (0, ..) => w.to_vec(),
                        (_, Some(b'c'), Some(_), _) => b"c<cas>".to_vec(),
                        // An item expired by this very request: memcached
                        // prints its exptime minus its uptime as a u32,
                        // which no other server can reproduce.
                        (_, Some(b't'), _, Some(n)) if !(-1..1 << 31).contains(&n) => {
                            b"t<past>".to_vec()
                        }
                        (_, Some(b't'), _, Some(n)) if n >= 1000 => {
                            ttls.push(n);
                            b"t<ttl>".to_vec()
                        }
                        _ => w.to_vec(),
                    }
                })
                .collect();
            out.extend_from_slice(&masked.join(&b' '));
        } else {
            out.extend_from_slice(body);
        }
        out.extend_from_slice(&line[body.len()..]);
        if let Some(len) = data_len {
            let take = (len + 2).min(rest.len());
            out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
    }
    (out, ttls)
}

fn same(memcached: &[u8], ferrocache: &[u8]) -> bool {
    let (a, ta) = normalize(memcached);
    let (b, tb) = normalize(ferrocache);
    a == b && ta.len() == tb.len() && ta.iter().zip(&tb).all(|(x, y)| (x - y).abs() <= 2)
}

/// The first line where the normalized replies differ: the divergence's kind.
fn first_difference(memcached: &[u8], ferrocache: &[u8]) -> (String, String) {
    let (a, _) = normalize(memcached);
    let (b, _) = normalize(ferrocache);
    let a = String::from_utf8_lossy(&a).into_owned();
    let b = String::from_utf8_lossy(&b).into_owned();
    let mut la = a.split_inclusive("\r\n");
    let mut lb = b.split_inclusive("\r\n");
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => {
                // Only the words that differ, so that one kind of divergence
                // with other flags around it counts once.
                let wx: Vec<&str> = x.trim_end().split(' ').collect();
                let wy: Vec<&str> = y.trim_end().split(' ').collect();
                let only = |a: &[&str], b: &[&str]| {
                    let words: Vec<&str> = a.iter().copied().filter(|w| !b.contains(w)).collect();
                    escape(words.join(" ").as_bytes())
                };
                return (only(&wx, &wy), only(&wy, &wx));
            }
            (x, y) => {
                return (
                    escape(x.unwrap_or("<end>").as_bytes()),
                    escape(y.unwrap_or("<end>").as_bytes()),
                )
            }
        }
    }
}

struct Servers {
    memcached: Memcached,
    ferrocache: Server,
    /// The `set oauth` each ferrocache connection sends first, if any.
    login: Option<Vec<u8>>,
}

impl Servers {
    /// Both replies, if they differ.
    fn diverges(&self, steps: &[Step]) -> Option<(Vec<u8>, Vec<u8>)> {
        let want = run(self.memcached.addr, steps, None);
        let got = run(self.ferrocache.addr, steps, self.login.as_deref());
        (!same(&want, &got)).then_some((want, got))
    }

    /// Drops steps one at a time while the sequence still diverges, until no
    /// single step can go.
    fn shrink(&self, mut steps: Vec<Step>) -> Vec<Step> {
        loop {
            let before = steps.len();
            let mut i = 0;
            while i < steps.len() {
                let mut fewer = steps.clone();
                fewer.remove(i);
                if self.diverges(&fewer).is_some() {
                    steps = fewer;
                } else {
                    i += 1;
                }
            }
            if steps.len() == before {
                return steps;
            }
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// memcached, started for these tests. Its LRU maintainer thread holds
/// items now and then; an `incr` that meets one held makes a new item
/// (unpadded, its marks cleared) instead of writing in place, so the
/// replies would depend on that thread's timing.
fn memcached() -> Option<Memcached> {
    Memcached::start_with(
        "differential_random",
        &[
            "-I",
            MAX_ITEM_SIZE,
            "-o",
            "no_lru_maintainer,slab_chunk_max=1024",
        ],
    )
}

/// Both servers' item size limit: small, so values reach it.
const MAX_ITEM_SIZE: &str = "1k";

#[test]
fn random_sequences_same_bytes_as_memcached() {
    let Some(memcached) = memcached() else {
        return;
    };
    let servers = Servers {
        memcached,
        ferrocache: Server::start(&["-I", MAX_ITEM_SIZE]),
        login: None,
    };
    compare(&servers, env_number("DIFF_RANDOM_SEEDS", 2000));
}

/// The same sequences inside one tenant's namespace, on a server with
/// tokens, while two neighbours (another project, and another cache of the
/// same project) hold every key the sequences use: the replies must still
/// be memcached's, and the neighbours' items must come through every flush,
/// incr and delete untouched.
#[test]
fn random_sequences_in_a_namespace_same_bytes_as_memcached() {
    let Some(memcached) = memcached() else {
        return;
    };
    let grants = GrantsFile::new("token-sequences-1 proj-seq\ntoken-neighbour-1 proj-next\n");
    std::fs::set_permissions(&grants.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let servers = Servers {
        memcached,
        ferrocache: Server::start(&["--tokens", grants.arg(), "-I", MAX_ITEM_SIZE]),
        login: Some(oauth_request("token-sequences-1 proj-seq cache")),
    };
    // The neighbour: another project, and the same project's other cache.
    let neighbours = [
        oauth_request("token-neighbour-1 proj-next cache"),
        oauth_request("token-sequences-1 proj-seq other"),
    ];
    let (mut set, mut get, mut want) = (Vec::new(), Vec::new(), Vec::new());
    for (i, key) in KEYS.iter().enumerate() {
        let value = format!("next{i}");
        let key = String::from_utf8_lossy(key);
        set.extend(format!("set {key} 7 0 {}\r\n{value}\r\n", value.len()).bytes());
        get.extend(format!("get {key}\r\n").bytes());
        want.extend(format!("VALUE {key} 7 {}\r\n{value}\r\nEND\r\n", value.len()).bytes());
    }
    let addr = servers.ferrocache.addr;
    for login in &neighbours {
        let reply = exchange(addr, &[login.as_slice(), &set].concat(), usize::MAX);
        assert_eq!(reply, [b"STORED\r\n".repeat(KEYS.len() + 1)].concat());
    }
    compare(&servers, env_number("DIFF_RANDOM_SEEDS", 2000) / 4);
    for login in &neighbours {
        let reply = exchange(addr, &[login.as_slice(), &get].concat(), usize::MAX);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(&[b"STORED\r\n".as_slice(), &want].concat()),
            "a neighbour's items changed"
        );
    }
}

/// Runs `count` seeded sequences on both servers and fails, after
/// printing each kind of divergence shrunk, if any reply differed.
fn compare(servers: &Servers, count: u64) {
    let first = env_number("DIFF_RANDOM_START", 0);
    let verbose = std::env::var_os("DIFF_RANDOM_VERBOSE").is_some();
    let started = Instant::now();
    // Kind (first differing line pair) -> (seeds that showed it, report).
    let mut kinds: Vec<((String, String), Vec<u64>)> = Vec::new();
    let mut reports = Vec::new();
    for seed in first..first + count {
        let steps = sequence(seed);
        if servers.diverges(&steps).is_none() {
            continue;
        }
        let steps = servers.shrink(steps);
        let Some((want, got)) = servers.diverges(&steps) else {
            let report = format!("seed {seed}: diverged once, not again after shrinking");
            eprintln!("{report}\n");
            reports.push(report);
            continue;
        };
        let kind = first_difference(&want, &got);
        let known = kinds.iter().position(|(k, _)| *k == kind);
        let seen = match known {
            Some(i) => {
                kinds[i].1.push(seed);
                true
            }
            None => {
                kinds.push((kind, vec![seed]));
                false
            }
        };
        if seen && !verbose {
            continue;
        }
        let request: String = steps.iter().map(Step::render).collect();
        let report = format!(
            "seed {seed}, shrunk to {} steps:\n  request:    \"{request}\"\n  memcached:  \"{}\"\n  ferrocache: \"{}\"",
            steps.len(),
            escape(&want),
            escape(&got),
        );
        eprintln!("{report}\n");
        reports.push(report);
    }
    eprintln!(
        "{count} sequences (seeds {first}..{}) in {:.1} s, {} kinds of divergence",
        first + count,
        started.elapsed().as_secs_f64(),
        kinds.len()
    );
    for ((mc, fc), seeds) in &kinds {
        eprintln!(
            "  {} seeds, first {}: memcached {mc:?} / ferrocache {fc:?}",
            seeds.len(),
            seeds[0]
        );
    }
    assert!(
        kinds.is_empty() && reports.is_empty(),
        "{} kinds of divergence from memcached, {} reports (above)",
        kinds.len(),
        reports.len(),
    );
}

#[test]
fn normalize_masks_cas_and_ttls() {
    let reply = b"VALUE k 0 1 123\r\nx\r\nHD c42 t100000 t5 kk1\r\nVA 2 c7\r\nc9\r\nEXISTS\r\n";
    let (out, ttls) = normalize(reply);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "VALUE k 0 1 <cas>\r\nx\r\nHD c<cas> t<ttl> t5 kk1\r\nVA 2 c<cas>\r\nc9\r\nEXISTS\r\n"
    );
    assert_eq!(ttls, [100000]);
    assert!(same(b"HD t100000\r\n", b"HD t99999\r\n"));
    assert!(!same(b"HD t100000\r\n", b"HD t-1\r\n"));
    assert!(same(b"HD t4294967200\r\n", b"HD t-36\r\n"));
    assert_eq!(count_mn(b"MN\r\nEN\r\nMN\r\n"), 2);
}
