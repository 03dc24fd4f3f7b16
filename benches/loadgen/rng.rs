//! Random numbers for the load generator: a fast PRNG (xoshiro256**) and a
//! Zipf sampler (rejection-inversion). Written here rather than pulled from
//! `rand` so the hot loop stays small and the sequence is reproducible from
//! `--seed` alone. Never allocates.

/// One step of splitmix64; used to expand a seed and as a cheap mixer.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**: 4 words of state, a few cycles per number, good enough
/// statistically for picking keys and operations.
#[derive(Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        Rng {
            s: [
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
            ],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-64 * n,
    /// far under anything a benchmark can see).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf distribution over ranks `1..=n` with P(k) ∝ k^-alpha, sampled by
/// rejection-inversion (W. Hörmann and G. Derflinger, "Rejection-inversion to
/// generate variates from monotone discrete distributions", 1996). O(1) per
/// sample and no table, so a 10-million-key space costs nothing to set up; it
/// also handles alpha = 1 exactly, which the classic YCSB generator does not.
#[derive(Clone)]
pub struct Zipf {
    n: f64,
    alpha: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    pub fn new(n: u64, alpha: f64) -> Result<Zipf, String> {
        if n == 0 {
            return Err("zipf: the key space is empty".into());
        }
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(format!("zipf: alpha must be > 0, got {alpha}"));
        }
        let mut z = Zipf {
            n: n as f64,
            alpha,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        Ok(z)
    }

    /// A rank in `1..=n`; rank 1 is the most popular.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.unit() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    /// h(x) = x^-alpha, the unnormalised density.
    fn h(&self, x: f64) -> f64 {
        (-self.alpha * x.ln()).exp()
    }

    /// H(x) = ∫ h: ((x^(1-alpha)) - 1) / (1 - alpha), written to stay exact
    /// near alpha = 1 where it tends to ln x.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.alpha) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let mut t = x * (1.0 - self.alpha);
        if t < -1.0 {
            // Rounding can push t just below -1, where ln1p is undefined.
            t = -1.0;
        }
        (helper1(t) * x).exp()
    }
}

/// ln(1+x)/x, with its Taylor series near 0 to avoid 0/0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1)/x, with its Taylor series near 0 to avoid 0/0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

/// Checks the samplers against their exact distributions; run by
/// `loadgen --self-test`. Returns a description of the first failure.
pub fn self_test() -> Result<(), String> {
    let mut rng = Rng::new(42);
    for &(n, alpha) in &[
        (1000u64, 1.0f64),
        (1000, 0.9),
        (10_000_000, 0.99),
        (50, 2.0),
    ] {
        let z = Zipf::new(n, alpha)?;
        let samples = 2_000_000u64;
        let mut counts = [0u64; 8];
        for _ in 0..samples {
            let k = z.sample(&mut rng);
            if k == 0 || k > n {
                return Err(format!("zipf(n={n}, alpha={alpha}) gave rank {k}"));
            }
            if k <= counts.len() as u64 {
                counts[k as usize - 1] += 1;
            }
        }
        let norm: f64 = if n <= 1_000_000 {
            (1..=n).map(|k| (k as f64).powf(-alpha)).sum()
        } else {
            // Euler-Maclaurin estimate of the generalised harmonic number.
            let head: f64 = (1..=1000u64).map(|k| (k as f64).powf(-alpha)).sum();
            let a = 1000.5f64;
            let b = n as f64 + 0.5;
            head + (b.powf(1.0 - alpha) - a.powf(1.0 - alpha)) / (1.0 - alpha)
        };
        for (i, &c) in counts.iter().enumerate() {
            let expect = ((i + 1) as f64).powf(-alpha) / norm;
            let got = c as f64 / samples as f64;
            // Five standard deviations of a binomial proportion.
            let tol = 5.0 * (expect * (1.0 - expect) / samples as f64).sqrt();
            if (got - expect).abs() > tol {
                return Err(format!(
                    "zipf(n={n}, alpha={alpha}): P(rank {}) = {got:.5}, expected {expect:.5} ± {tol:.5}",
                    i + 1
                ));
            }
        }
    }
    let mut buckets = [0u64; 10];
    for _ in 0..1_000_000 {
        buckets[rng.below(10) as usize] += 1;
    }
    if buckets.iter().any(|&b| !(98_500..=101_500).contains(&b)) {
        return Err(format!("uniform below(10) is skewed: {buckets:?}"));
    }
    Ok(())
}
