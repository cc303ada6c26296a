//! Kernel tests. Off wasm the fast paths are the scalar ones (plus the AVX2 build of the driver),
//! so the SIMD128 comparisons only bite under `scripts/test-kernels-wasm`; the reference checks
//! (ggml's formulas in f64, dequantization) and the driver checks run everywhere.

use super::quantize::{tests::random_row, BlockQ8K, Q8_0x4, Q8_1x4};
use super::*;
use crate::sampler::Rng;
use half::{bf16, f16};

/// The activation values a quantized unit stands for, and Q8_1's stored sums (one per block).
trait ActValues {
    fn values(&self) -> Vec<f64>;
    fn s(&self) -> Option<Vec<f64>> {
        None
    }
}
impl ActValues for Q8_0x4 {
    fn values(&self) -> Vec<f64> {
        self.qs.iter().enumerate().map(|(i, &q)| q as f64 * self.d[i / 32] as f64).collect()
    }
}
impl ActValues for Q8_1x4 {
    fn values(&self) -> Vec<f64> {
        self.qs.iter().enumerate().map(|(i, &q)| q as f64 * self.d[i / 32] as f64).collect()
    }
    fn s(&self) -> Option<Vec<f64>> {
        Some(self.s.iter().map(|&s| s as f64).collect())
    }
}
impl ActValues for BlockQ8K {
    fn values(&self) -> Vec<f64> {
        self.qs.iter().map(|&q| q as f64 * self.d as f64).collect()
    }
}
impl ActValues for float::Chunk {
    fn values(&self) -> Vec<f64> {
        self.iter().map(|&v| v as f64).collect()
    }
}

/// Offsets of the f16 scale fields in each block.
fn scale_fields(ty: TensorType) -> &'static [usize] {
    match ty {
        TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => &[0],
        TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4_K | TensorType::Q5_K => &[0, 2],
        TensorType::Q2_K => &[80, 82],
        TensorType::Q3_K => &[108],
        TensorType::Q6_K => &[208],
        _ => &[],
    }
}

/// `blocks` random weight blocks of `ty`; `extreme` sets every quant byte to 0x00 or 0xFF.
fn random_weights(ty: TensorType, blocks: usize, rng: &mut Rng, extreme: Option<u8>) -> Vec<u8> {
    let bytes = ty.type_size().unwrap() as usize;
    let bs = ty.block_size().unwrap() as usize;
    match ty {
        TensorType::F32 | TensorType::F16 | TensorType::BF16 => {
            let n = blocks * 32;
            let vals: Vec<f32> = (0..n).map(|_| (rng.next_f64() as f32 - 0.5) * 2.0).collect();
            return match ty {
                TensorType::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
                TensorType::F16 => vals.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
                _ => vals.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
            };
        }
        _ => {}
    }
    let _ = bs;
    let mut w: Vec<u8> = (0..blocks * bytes).map(|_| extreme.unwrap_or((rng.next_u64() >> 17) as u8)).collect();
    for b in w.chunks_exact_mut(bytes) {
        for &at in scale_fields(ty) {
            let v = f16::from_f32((rng.next_f64() as f32 + 0.01) * 0.05);
            b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    w
}

/// ggml's dot product in f64 from the dequantized weights and activations; Q4_1/Q5_1 use the
/// stored activation sum s for their m terms, as ggml's kernels do. Also Σ|w·a| for the tolerance.
fn reference<K: Kernel>(w: &[u8], act: &[K::Act]) -> (f64, f64)
where
    K::Act: ActValues,
{
    let values: Vec<f64> = act.iter().flat_map(|a| a.values()).collect();
    let sums: Option<Vec<f64>> = act.iter().map(|a| a.s()).collect::<Option<Vec<_>>>().map(|v| v.concat());
    let mut deq = vec![0f32; K::QK];
    let (mut sum, mut mag) = (0f64, 0f64);
    for (i, b) in w.chunks_exact(K::BYTES).enumerate() {
        K::dequantize(b, &mut deq);
        let av = &values[i * K::QK..(i + 1) * K::QK];
        let m = if sums.is_some() { f16::from_le_bytes([b[2], b[3]]).to_f64() } else { 0.0 };
        for (&wv, &x) in deq.iter().zip(av) {
            sum += (wv as f64 - m) * x;
            mag += (wv as f64 * x).abs();
        }
        if let Some(s) = &sums {
            sum += m * s[i];
        }
    }
    (sum, mag)
}

/// The units of a row, the last one padded with zero bytes as the driver does.
fn row_units<K: Kernel>(row: &[u8]) -> Vec<Vec<u8>> {
    row.chunks(K::UNIT * K::BYTES)
        .map(|c| {
            let mut u = c.to_vec();
            u.resize(K::UNIT * K::BYTES, 0);
            u
        })
        .collect()
}

/// One output computed the plain way: quantize, scalar unpack, dot unit by unit.
fn naive<K: Kernel>(w_row: &[u8], x: &[f32]) -> f32 {
    let nu = (x.len() / K::QK).div_ceil(K::UNIT);
    let mut act = vec![K::ACT_ZERO; nu];
    K::quantize(x, &mut act);
    let mut u = K::unpacked();
    let mut acc = K::ACC_ZERO;
    for (unit, a) in row_units::<K>(w_row).iter().zip(&act) {
        K::unpack_ref(unit, &mut u);
        K::dot::<idot::Portable>(&u, a, &mut acc);
    }
    K::finish(acc)
}

fn check_type<K: Kernel>(ty: TensorType)
where
    K::Act: ActValues,
    K::Unpacked: PartialEq + std::fmt::Debug,
{
    let mut rng = Rng::new(ty.0 as u64 + 100);
    // Rows of 512 values, and for the 32-value types 576 (18 blocks: a partial last unit).
    for k in if K::QK == 32 { vec![512, 576] } else { vec![512] } {
        let nb = k / K::QK;
        let nu = nb.div_ceil(K::UNIT);
        // Fast unpacking is the reference's, and the dot is ggml's formula.
        for round in 0..12 {
            let extreme = match round {
                0 => Some(0x00),
                1 => Some(0xFF),
                _ => None,
            };
            let w = random_weights(ty, nb, &mut rng, extreme);
            for unit in row_units::<K>(&w) {
                let (mut fast, mut slow) = (K::unpacked(), K::unpacked());
                K::unpack(&unit, &mut fast);
                K::unpack_ref(&unit, &mut slow);
                assert_eq!(fast, slow, "{ty}: unpack");
            }
            let x = random_row(&mut rng, k);
            let mut act = vec![K::ACT_ZERO; nu];
            K::quantize(&x, &mut act);
            let (want, mag) = reference::<K>(&w, &act);
            let got = naive::<K>(&w, &x) as f64;
            assert!((got - want).abs() <= 2e-6 * mag + 1e-30, "{ty} k={k} round {round}: {got} vs {want} (Σ|w·a| {mag})");
        }
        // The driver (tiled, threaded, AVX2 where the CPU has it) against the naive loop, bit
        // for bit, for shapes that leave partial tiles and partial thread chunks.
        for &(m, n) in &[(1, 37), (3, 5), (9, 40), (17, 33)] {
            let w = random_weights(ty, n * nb, &mut rng, None);
            let x: Vec<f32> = (0..m).flat_map(|_| random_row(&mut rng, k)).collect();
            let mut out = vec![0f32; m * n];
            matmul(ty, &w, n, k, &x, m, &mut out);
            for r in 0..m {
                for j in 0..n {
                    let want = naive::<K>(&w[j * nb * K::BYTES..(j + 1) * nb * K::BYTES], &x[r * k..(r + 1) * k]);
                    assert_eq!(out[r * n + j].to_bits(), want.to_bits(), "{ty} k={k} m={m} n={n} [{r},{j}]");
                }
            }
        }
    }
}

macro_rules! type_tests {
    ($($test:ident: $kernel:ty = $ty:expr;)*) => {
        $(
            #[test]
            fn $test() {
                check_type::<$kernel>($ty);
            }
        )*
    };
}

type_tests! {
    f32_kernel: float::F32 = TensorType::F32;
    f16_kernel: float::F16 = TensorType::F16;
    bf16_kernel: float::BF16 = TensorType::BF16;
    q4_0_kernel: legacy::Q4_0 = TensorType::Q4_0;
    q4_1_kernel: legacy::Q4_1 = TensorType::Q4_1;
    q5_0_kernel: legacy::Q5_0 = TensorType::Q5_0;
    q5_1_kernel: legacy::Q5_1 = TensorType::Q5_1;
    q8_0_kernel: legacy::Q8_0 = TensorType::Q8_0;
    q2_k_kernel: kquants::Q2_K = TensorType::Q2_K;
    q3_k_kernel: kquants::Q3_K = TensorType::Q3_K;
    q4_k_kernel: kquants::Q4_K = TensorType::Q4_K;
    q5_k_kernel: kquants::Q5_K = TensorType::Q5_K;
    q6_k_kernel: kquants::Q6_K = TensorType::Q6_K;
}

/// The weight bytes an unpacked block feeds the integer dot.
trait Weights {
    fn weights(&self) -> &[i8];
}
impl Weights for legacy::Unpacked {
    fn weights(&self) -> &[i8] {
        &self.q
    }
}
impl Weights for kquants::Unpacked {
    fn weights(&self) -> &[i8] {
        &self.q
    }
}

/// Every value the unpacking can produce (random blocks and all-0x00 / all-0xFF quant bytes) is
/// the 7-bit operand the relaxed-SIMD dot needs to be deterministic, and below 64 (see idot).
fn check_7_bit<K: Kernel>(ty: TensorType)
where
    K::Unpacked: Weights,
{
    let mut rng = Rng::new(ty.0 as u64 + 200);
    let (mut lo, mut hi) = (127i8, 0i8);
    for extreme in [Some(0x00), Some(0xFF), None, None, None] {
        let w = random_weights(ty, 16, &mut rng, extreme);
        for unit in row_units::<K>(&w) {
            let (mut fast, mut slow) = (K::unpacked(), K::unpacked());
            K::unpack(&unit, &mut fast);
            K::unpack_ref(&unit, &mut slow);
            for &q in fast.weights().iter().chain(slow.weights()) {
                assert!((0..64).contains(&q), "{ty}: unpacked value {q} is not in 0..=63");
                (lo, hi) = (lo.min(q), hi.max(q));
            }
        }
    }
    // The extremes are reached: 0 and the type's largest stored value.
    let top = match ty {
        TensorType::Q2_K => 3,
        TensorType::Q3_K => 7,
        TensorType::Q4_0 | TensorType::Q4_1 | TensorType::Q4_K => 15,
        TensorType::Q5_0 | TensorType::Q5_1 | TensorType::Q5_K => 31,
        _ => 63,
    };
    assert_eq!((lo, hi), (0, top), "{ty}");
}

#[test]
fn unpacked_weights_are_7_bit() {
    check_7_bit::<legacy::Q4_0>(TensorType::Q4_0);
    check_7_bit::<legacy::Q4_1>(TensorType::Q4_1);
    check_7_bit::<legacy::Q5_0>(TensorType::Q5_0);
    check_7_bit::<legacy::Q5_1>(TensorType::Q5_1);
    check_7_bit::<kquants::Q2_K>(TensorType::Q2_K);
    check_7_bit::<kquants::Q3_K>(TensorType::Q3_K);
    check_7_bit::<kquants::Q4_K>(TensorType::Q4_K);
    check_7_bit::<kquants::Q5_K>(TensorType::Q5_K);
    check_7_bit::<kquants::Q6_K>(TensorType::Q6_K);
}

#[test]
fn f16_conversion_is_exact_for_every_value() {
    for h in 0..=u16::MAX {
        let (got, want) = (f16_bits_to_f32(h), f16::from_bits(h).to_f32());
        assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{h:#x}: {got} vs {want}");
        let (got, want) = (bf16_bits_to_f32(h), bf16::from_bits(h).to_f32());
        assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "bf16 {h:#x}: {got} vs {want}");
    }
}

#[test]
fn float_lanes_match_the_reference() {
    let mut rng = Rng::new(5);
    let mut u = [0f32; 32];
    let mut a = [0f32; 32];
    for _ in 0..100 {
        for i in 0..32 {
            u[i] = (rng.next_f64() as f32 - 0.5) * 1e3;
            a[i] = (rng.next_f64() as f32 - 0.5) * 1e-3;
        }
        let (mut x, mut y) = ([1.5f32; 8], [1.5f32; 8]);
        <float::F32 as Kernel>::dot::<idot::Portable>(&u, &a, &mut x);
        float::lane_dot_ref(&u, &a, &mut y);
        assert_eq!(x, y);
    }
}

#[test]
fn dequantized_rows_are_the_blocks() {
    let mut rng = Rng::new(9);
    for ty in TensorType::SUPPORTED {
        let k = 512;
        let qk = block_values(ty).unwrap();
        let bytes = ty.type_size().unwrap() as usize * if ty.block_size() == Some(1) { 32 } else { 1 };
        let w = random_weights(ty, 3 * k / qk, &mut rng, None);
        let mut rows = vec![0f32; 2 * k];
        dequantize_rows(ty, &w, k, &[2, 0], &mut rows);
        let mut first = vec![0f32; k];
        dequantize_rows(ty, &w[..k / qk * bytes], k, &[0], &mut first);
        assert_eq!(&rows[k..], &first[..], "{ty}");
        assert!(rows.iter().all(|v| v.is_finite()), "{ty}");
    }
}

/// Throughput of the driver on a 2048 x 2048 matrix (in cache: the kernels' own speed), the best
/// of 7 trials so that other load on the machine only costs trials: `cargo test --release --lib
/// bench_matmul -- --ignored --nocapture`; in Chromium, `node scripts/bench-kernels-browser.mjs`.
#[test]
#[ignore]
fn bench_matmul() {
    let mut rng = Rng::new(1);
    let (n, k) = (2048, 2048);
    for ty in [TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::F16] {
        let qk = block_values(ty).unwrap();
        let w = random_weights(ty, n * k / qk, &mut rng, None);
        for m in [1, 8, 64] {
            let x: Vec<f32> = (0..m).flat_map(|_| random_row(&mut rng, k)).collect();
            let mut out = vec![0f32; m * n];
            let reps = (64 / m).max(1);
            // Warm-up: the browser starts wasm in its baseline compiler and swaps in optimized
            // code after a while; time only the optimized code.
            let t = std::time::Instant::now();
            while t.elapsed().as_secs_f64() < 0.3 {
                matmul(ty, &w, n, k, &x, m, &mut out);
            }
            let mut best = f64::INFINITY;
            for _ in 0..7 {
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    matmul(ty, &w, n, k, &x, m, &mut out);
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            eprintln!("{ty:<5} m={m:<3} {:8.2} GMAC/s {:8.3} ms", (m * n * k) as f64 / best / 1e9, best * 1e3);
        }
    }
}

/// Decode from memory: one activation row against a matrix far larger than the caches (65536 x
/// 2048, the output projection's shape cut to half), so the weights stream from DRAM as they do
/// in a whole model. Prints GB/s of weights. `--ignored --nocapture`, or in Chromium
/// `node scripts/bench-kernels-browser.mjs --filter bench_matvec_dram`.
#[test]
#[ignore]
fn bench_matvec_dram() {
    let mut rng = Rng::new(2);
    let (n, k) = (65536, 2048);
    for ty in [TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K] {
        let qk = block_values(ty).unwrap();
        let w = random_weights(ty, n * k / qk, &mut rng, None);
        let x = random_row(&mut rng, k);
        let mut out = vec![0f32; n];
        matmul(ty, &w, n, k, &x, 1, &mut out);
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            matmul(ty, &w, n, k, &x, 1, &mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "{ty:<5} {n}x{k} m=1 {:8.2} GMAC/s {:6.2} GB/s {:8.3} ms",
            (n * k) as f64 / best / 1e9,
            w.len() as f64 / best / 1e9,
            best * 1e3
        );
    }
}
