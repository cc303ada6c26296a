//! Activation quantization, bit for bit as ggml's x86 build does it (our goldens come from there):
//! Q8_0 (ggml-cpu/arch/x86/quants.c quantize_row_q8_0), Q8_1 (same, plus s = f16(d * Σq)) and
//! Q8_K (ggml-quants.c quantize_row_q8_K_ref, which x86 uses). Block scales that ggml stores as
//! f16 are kept here as the f32 value of that f16.

use half::f16;

/// Four consecutive Q8_0 blocks: the unit the 32-value weight kernels work in (see legacy.rs).
/// Past the end of a row the blocks are zero.
#[derive(Clone, Copy)]
pub struct Q8_0x4 {
    pub qs: [i8; 128],
    /// f16-rounded scales.
    pub d: [f32; 4],
    /// Σqs of each block, for the offsets of Q4_0 / Q5_0 weights (not part of ggml's block).
    pub sum: [i32; 4],
    /// Some quant is -128 (only when a block's maximum is subnormal and the scale overflows):
    /// the relaxed Q8_0 dot, which negates activations, must not take this unit.
    pub has_min: bool,
}

/// Four consecutive Q8_1 blocks (zero past the end of a row).
#[derive(Clone, Copy)]
pub struct Q8_1x4 {
    pub qs: [i8; 128],
    /// f16-rounded scales and f16-rounded d * Σqs.
    pub d: [f32; 4],
    pub s: [f32; 4],
}

#[derive(Clone, Copy)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; 256],
    /// Sums of each 16 consecutive qs.
    pub bsums: [i16; 16],
    /// Sums of each 32 (not part of ggml's block): the minimum terms of Q4_K / Q5_K, whose
    /// groups are 32 values.
    pub bsums32: [i16; 8],
}

impl Q8_0x4 {
    pub const ZERO: Self = Self { qs: [0; 128], d: [0.0; 4], sum: [0; 4], has_min: false };
}
impl Q8_1x4 {
    pub const ZERO: Self = Self { qs: [0; 128], d: [0.0; 4], s: [0.0; 4] };
}
impl BlockQ8K {
    pub const ZERO: Self = Self { d: 0.0, qs: [0; 256], bsums: [0; 16], bsums32: [0; 8] };
}

fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// Block maximum of |x| (exact whatever the order).
#[inline(always)]
fn amax32(x: &[f32]) -> f32 {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        simd::amax(x)
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        x.iter().fold(0f32, |m, v| m.max(v.abs()))
    }
}

/// q[i] = round_ties_even(x[i] * id) for 32 values; returns Σq.
#[inline(always)]
fn scale_round32(x: &[f32], id: f32, q: &mut [i8; 32]) -> i32 {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        simd::scale_round32(x, id, q)
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        scale_round32_scalar(x, id, q)
    }
}

// Scalar reference: what runs off wasm, and what the wasm tests compare against.
#[cfg_attr(all(target_family = "wasm", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub(super) fn scale_round32_scalar(x: &[f32], id: f32, q: &mut [i8; 32]) -> i32 {
    let mut sum = 0;
    for (q, &v) in q.iter_mut().zip(&x[..32]) {
        *q = (v * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    sum
}

/// A unit of four quantized activation blocks, as `q8_units` fills it.
trait Q8Unit: Copy {
    fn qs(&mut self) -> &mut [i8; 128];
}

impl Q8Unit for Q8_0x4 {
    fn qs(&mut self) -> &mut [i8; 128] {
        &mut self.qs
    }
}

impl Q8Unit for Q8_1x4 {
    fn qs(&mut self) -> &mut [i8; 128] {
        &mut self.qs
    }
}

/// The 32-value blocks of `x` in units of four (`out` has `blocks.div_ceil(4)` units, each reset
/// to `zero` first, so blocks past the row stay zero): each block quantized as ggml's AVX build
/// does, q = nearest(x * (127 / amax)), into the unit's `qs`, then `done(unit, block, amax, Σq)`.
#[inline(always)]
fn q8_units<U: Q8Unit>(x: &[f32], out: &mut [U], zero: U, mut done: impl FnMut(&mut U, usize, f32, i32)) {
    for (u, xs) in out.iter_mut().zip(x.chunks(128)) {
        *u = zero;
        for (i, xs) in xs.chunks_exact(32).enumerate() {
            let amax = amax32(xs);
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let q: &mut [i8; 32] = (&mut u.qs()[32 * i..32 * i + 32]).try_into().unwrap();
            let sum = scale_round32(xs, id, q);
            done(u, i, amax, sum);
        }
    }
}

/// quantize_row_q8_0 of ggml's AVX build: d = amax / 127.
pub fn q8_0(x: &[f32], out: &mut [Q8_0x4]) {
    q8_units(x, out, Q8_0x4::ZERO, |u, i, amax, sum| {
        u.sum[i] = sum;
        u.has_min |= u.qs[32 * i..32 * i + 32].contains(&i8::MIN);
        u.d[i] = round_f16(amax / 127.0);
    })
}

/// quantize_row_q8_1 of ggml's AVX build: as Q8_0, plus s = f16(d * Σq) with d in f32.
pub fn q8_1(x: &[f32], out: &mut [Q8_1x4]) {
    q8_units(x, out, Q8_1x4::ZERO, |u, i, amax, sum| {
        let d = amax / 127.0;
        u.d[i] = round_f16(d);
        u.s[i] = round_f16(d * sum as f32);
    })
}

/// quantize_row_q8_K_ref: max is the signed value of largest magnitude (the first one on ties),
/// iscale = -127 / max, q = min(127, nearest(iscale * x)), d = 1 / iscale, bsums per 16.
pub fn q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(256)) {
        let mut amax = 0f32;
        for c in xs.chunks_exact(32) {
            amax = amax.max(amax32(c));
        }
        if amax == 0.0 {
            *b = BlockQ8K::ZERO;
            continue;
        }
        // The first element whose magnitude is the maximum: what the reference's `ax > amax`
        // scan keeps.
        let max = *xs.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
        let iscale = -127.0 / max;
        for (g, c) in xs.chunks_exact(32).enumerate() {
            let q: &mut [i8; 32] = (&mut b.qs[g * 32..g * 32 + 32]).try_into().unwrap();
            q8_k_round32(c, iscale, q);
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        for (s, p) in b.bsums32.iter_mut().zip(b.bsums.chunks_exact(2)) {
            *s = p[0] + p[1];
        }
        b.d = 1.0 / iscale;
    }
}

/// min(127, nearest(x * iscale)); nearest(x * iscale) is >= -128 for |x| <= |max|.
#[inline(always)]
fn q8_k_round32(x: &[f32], iscale: f32, q: &mut [i8; 32]) {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        simd::scale_round32(x, iscale, q);
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * iscale).round_ties_even() as i32).min(127) as i8;
        }
    }
}

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
mod simd {
    use crate::wasm_simd::*;

    pub fn amax(x: &[f32]) -> f32 {
        assert!(x.len() >= 32);
        // SAFETY: 32 floats are in bounds; v128_load takes unaligned addresses.
        unsafe {
            let p = x.as_ptr() as *const v128;
            let mut m = f32x4_abs(v128_load(p));
            for j in 1..8 {
                m = f32x4_max(m, f32x4_abs(v128_load(p.add(j))));
            }
            let m2 = f32x4_max(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
            let m3 = f32x4_max(m2, i32x4_shuffle::<1, 0, 3, 2>(m2, m2));
            f32x4_extract_lane::<0>(m3)
        }
    }

    /// Nearest (ties to even) of x * s, saturated to i8; returns Σq. Both callers' values lie
    /// in [-128, 127] (Q8_K's min(127, ·) is the saturation), so this is the scalar result.
    pub fn scale_round32(x: &[f32], s: f32, q: &mut [i8; 32]) -> i32 {
        assert!(x.len() >= 32);
        let sv = f32x4_splat(s);
        // SAFETY: 32 floats read, 32 bytes written; unaligned access is allowed.
        unsafe {
            let p = x.as_ptr() as *const v128;
            let mut sum = i32x4_splat(0);
            for h in 0..2 {
                let mut i = [i32x4_splat(0); 4];
                for (j, v) in i.iter_mut().enumerate() {
                    *v = i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v128_load(p.add(h * 4 + j)), sv)));
                    sum = i32x4_add(sum, *v);
                }
                let b = i8x16_narrow_i16x8(i16x8_narrow_i32x4(i[0], i[1]), i16x8_narrow_i32x4(i[2], i[3]));
                v128_store(q.as_mut_ptr().add(h * 16) as *mut v128, b);
            }
            let s2 = i32x4_add(sum, i32x4_shuffle::<2, 3, 0, 1>(sum, sum));
            let s3 = i32x4_add(s2, i32x4_shuffle::<1, 0, 3, 2>(s2, s2));
            i32x4_extract_lane::<0>(s3)
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sampler::Rng;

    pub(crate) fn random_row(rng: &mut Rng, n: usize) -> Vec<f32> {
        let mut x: Vec<f32> = (0..n).map(|_| (rng.next_f64() as f32 - 0.5) * 8.0).collect();
        // Extremes: an all-zero block, a block with a tie of ±max, huge and tiny values.
        if n >= 256 {
            x[..32].fill(0.0);
            x[40] = 3.5;
            x[41] = -3.5;
            x[64] = 3e3;
            x[100] = -1e-30;
            x[130] = 5e-8;
        }
        x
    }

    /// ggml's formulas transcribed literally (reference scans, nearest_int's float trick).
    fn nearest_int(f: f32) -> i32 {
        let v = f + 12582912.0;
        (v.to_bits() & 0x007fffff) as i32 - 0x00400000
    }

    #[test]
    fn q8_0_and_q8_1_are_ggmls() {
        let mut rng = Rng::new(11);
        // 18 blocks: four whole units and a half one (its last two blocks stay zero).
        for _ in 0..20 {
            let x = random_row(&mut rng, 576);
            let mut a = vec![Q8_0x4::ZERO; 5];
            let mut b = vec![Q8_1x4::ZERO; 5];
            a[4].d[3] = 1.0;
            b[4].s[3] = 1.0;
            q8_0(&x, &mut a);
            q8_1(&x, &mut b);
            for (blk, xs) in x.chunks_exact(32).enumerate() {
                let (a, b, i) = (&a[blk / 4], &b[blk / 4], blk % 4);
                let mut max = 0f32;
                for &v in xs {
                    max = max.max(v.abs());
                }
                let d = max / 127.0;
                let id = if max != 0.0 { 127.0 / max } else { 0.0 };
                let q: Vec<i8> = xs.iter().map(|&v| nearest_int(v * id) as i8).collect();
                let sum: i32 = q.iter().map(|&v| v as i32).sum();
                assert_eq!(a.qs[32 * i..32 * i + 32].to_vec(), q);
                assert_eq!(a.sum[i], sum);
                assert_eq!(b.qs[32 * i..32 * i + 32].to_vec(), q);
                assert_eq!(a.d[i].to_bits(), f16::from_f32(d).to_f32().to_bits());
                assert_eq!(b.d[i].to_bits(), a.d[i].to_bits());
                assert_eq!(b.s[i].to_bits(), f16::from_f32(d * sum as f32).to_f32().to_bits());
            }
            for u in &a {
                assert_eq!(u.has_min, u.qs.contains(&-128));
            }
            assert!(a[4].qs[64..].iter().all(|&q| q == 0) && a[4].d[2..] == [0.0; 2] && a[4].sum[2..] == [0; 2]);
            assert!(b[4].qs[64..].iter().all(|&q| q == 0) && b[4].d[2..] == [0.0; 2] && b[4].s[2..] == [0.0; 2]);
        }
    }

    #[test]
    fn q8_k_is_quantize_row_q8_k_ref() {
        let mut rng = Rng::new(12);
        for _ in 0..20 {
            let x = random_row(&mut rng, 512);
            let mut got = vec![BlockQ8K::ZERO; 2];
            q8_k(&x, &mut got);
            for (b, xs) in got.iter().zip(x.chunks_exact(256)) {
                let (mut max, mut amax) = (0f32, 0f32);
                for &v in xs {
                    if v.abs() > amax {
                        amax = v.abs();
                        max = v;
                    }
                }
                if amax == 0.0 {
                    assert_eq!(b.d, 0.0);
                    assert!(b.qs.iter().all(|&q| q == 0) && b.bsums.iter().all(|&s| s == 0) && b.bsums32.iter().all(|&s| s == 0));
                    continue;
                }
                let iscale = -127.0 / max;
                let q: Vec<i8> = xs.iter().map(|&v| nearest_int(iscale * v).min(127) as i8).collect();
                assert_eq!(b.qs.to_vec(), q);
                for j in 0..16 {
                    assert_eq!(b.bsums[j] as i32, q[j * 16..j * 16 + 16].iter().map(|&v| v as i32).sum::<i32>());
                }
                for j in 0..8 {
                    assert_eq!(b.bsums32[j] as i32, q[j * 32..j * 32 + 32].iter().map(|&v| v as i32).sum::<i32>());
                }
                assert_eq!(b.d.to_bits(), (1.0 / iscale).to_bits());
            }
        }
        // Ties between +max and -max keep the first.
        let mut x = vec![0.5f32; 256];
        x[3] = -2.0;
        x[9] = 2.0;
        let mut b = [BlockQ8K::ZERO];
        q8_k(&x, &mut b);
        assert_eq!((b[0].qs[3], b[0].qs[9]), (-127, 127));
    }

    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    #[test]
    fn simd_rounding_is_scalar() {
        let mut rng = Rng::new(13);
        for _ in 0..50 {
            let x = random_row(&mut rng, 256);
            for c in x.chunks_exact(32) {
                let s = (rng.next_f64() as f32) * 50.0;
                let (mut a, mut b) = ([0i8; 32], [0i8; 32]);
                let sa = simd::scale_round32(c, s.min(127.0 / amax32(c).max(1e-30)), &mut a);
                let sb = scale_round32_scalar(c, s.min(127.0 / amax32(c).max(1e-30)), &mut b);
                assert_eq!((a, sa), (b, sb));
                assert_eq!(simd::amax(c), c.iter().fold(0f32, |m, v| m.max(v.abs())));
            }
        }
    }
}
