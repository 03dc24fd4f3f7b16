//! What a load run counts: operations by kind and outcome, errors by cause,
//! and a latency histogram. One `Stats` per thread, merged at the end, so the
//! hot path never shares a cache line.

use hdrhistogram::Histogram;

#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub gets: u64,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
    /// Gets of one-time scan keys (`--scan-fraction`); always misses unless
    /// the server is wrong, and kept apart so the key-space hit ratio is
    /// visible on its own.
    pub scan_gets: u64,
    pub scan_hits: u64,
    /// ERROR, CLIENT_ERROR or SERVER_ERROR replies.
    pub server_errors: u64,
    /// Values that failed `--verify`, or a VALUE for a key not asked for.
    pub wrong_values: u64,
    /// Replies that do not parse; the connection is dropped after one.
    pub malformed: u64,
    /// Connections lost (reset, closed by the server with replies owed).
    pub conn_errors: u64,
    /// Connections opened again by `--reconnect-every`.
    pub connects: u64,
    /// TLS handshakes finished, full and resumed.
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
}

impl Counts {
    pub fn ops(&self) -> u64 {
        self.gets + self.sets
    }

    pub fn errors(&self) -> u64 {
        self.server_errors + self.wrong_values + self.malformed + self.conn_errors
    }

    pub fn add(&mut self, o: &Counts) {
        self.gets += o.gets;
        self.sets += o.sets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.scan_gets += o.scan_gets;
        self.scan_hits += o.scan_hits;
        self.server_errors += o.server_errors;
        self.wrong_values += o.wrong_values;
        self.malformed += o.malformed;
        self.conn_errors += o.conn_errors;
        self.connects += o.connects;
        self.handshakes_full += o.handshakes_full;
        self.handshakes_resumed += o.handshakes_resumed;
    }

    /// Hits over all gets (0 when there were none).
    pub fn hit_ratio(&self) -> f64 {
        ratio(self.hits, self.gets)
    }

    /// Hits over gets of the key space alone, leaving scan keys out.
    pub fn key_hit_ratio(&self) -> f64 {
        ratio(self.hits - self.scan_hits, self.gets - self.scan_gets)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub struct Stats {
    pub counts: Counts,
    /// Latency of successful replies in nanoseconds, from the write of the
    /// request to the parse of its reply.
    pub latency: Histogram<u64>,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            counts: Counts::default(),
            // 1 ns to 100 s at 3 significant digits: ~200 KiB per thread.
            latency: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    /// Forgets operations and latencies (end of warm-up) but keeps errors:
    /// a wrong value during warm-up is still a failure.
    pub fn reset_figures(&mut self) {
        let kept = self.counts;
        self.counts = Counts {
            server_errors: kept.server_errors,
            wrong_values: kept.wrong_values,
            malformed: kept.malformed,
            conn_errors: kept.conn_errors,
            ..Counts::default()
        };
        self.latency.reset();
    }

    pub fn merge(&mut self, o: &Stats) {
        self.counts.add(&o.counts);
        self.latency
            .add(&o.latency)
            .expect("histograms share their bounds");
    }
}
