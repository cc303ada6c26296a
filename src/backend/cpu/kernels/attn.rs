//! The vector steps of attention over an F16 or Q8_0 KV cache (`Cpu::attention`): storing rows,
//! query-key dot products and the weighted sum of values, each with a scalar reference and a
//! SIMD128 version on wasm32 that does the same float operations in the same order (so the two
//! agree bit for bit; the unit tests check it under `scripts/test-kernels-wasm`).
//!
//! What llama.cpp's CPU backend computes for each cache type:
//! - F16, flash attention off (its plain path, llama-cpp-python's default): `ggml_mul_mat` of the
//!   F16 keys with the query converts the query to F16 (its `vec_dot_type`), and the product of
//!   the F16 values with the softmax weights converts the weights to F16; both dots are products
//!   of two halves (exact in f32) summed in f32. So: `round_f16` the query head and the weights,
//!   then `dot_f16` and `axpy_f16`.
//! - Q8_0 (flash attention, which llama.cpp needs for a quantized V cache):
//!   `ggml_compute_forward_flash_attn_ext_f16_one_chunk` quantizes the query head to Q8_0 (the
//!   activation quantization of the matmul kernels), dots it with each Q8_0 key block by block
//!   (`dot_q8_0`), keeps an online softmax in f32 and adds each dequantized value row times its
//!   weight into an f32 sum (`axpy_q8_0`).
//!
//! Sums run in a different order from ggml's AVX-512 code (8 lanes here), so results agree to
//! the last bits of f32, not bit for bit.

use super::f16_bits_to_f32;
use super::quantize::{self, Q8_0x4};
use half::f16;

/// Bytes of a Q8_0 block: an f16 scale and 32 signed bytes (ggml's block_q8_0).
pub const Q8_0_BYTES: usize = 34;

/// Scores to exp(score - max) in place, as ggml's soft_max (its sum in f64); returns 1 / sum,
/// by which each is to be multiplied.
pub fn softmax(scores: &mut [f32]) -> f32 {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sum = 0f64;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s as f64;
    }
    (1.0 / sum) as f32
}

/// Buffers `attend_f16` reuses: the scores and the query head rounded to f16.
#[derive(Default)]
pub struct F16Scratch {
    scores: Vec<f32>,
    q16: Vec<f32>,
}

/// One query head `qh` over the first `n_kv` positions of an F16 cache (rows of `kv_dim` halves,
/// this head's keys and values at `off`), into `out` (zero): llama.cpp's plain path, i.e.
/// `ggml_mul_mat` of the keys with the query rounded to f16, soft_max, `ggml_mul_mat` of the
/// values with the weights rounded to f16.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub fn attend_f16(qh: &[f32], kc: &[u16], vc: &[u16], kv_dim: usize, off: usize, n_kv: usize, scale: f32, scratch: &mut F16Scratch, out: &mut [f32]) {
    let d = qh.len();
    let F16Scratch { scores, q16 } = scratch;
    q16.clear();
    q16.extend(qh.iter().map(|&x| round_f16(x)));
    scores.clear();
    scores.resize(n_kv, 0f32);
    for (j, s) in scores.iter_mut().enumerate() {
        *s = dot_f16(q16, &kc[j * kv_dim + off..][..d]) * scale;
    }
    let inv = softmax(scores);
    for (j, &s) in scores.iter().enumerate() {
        let w = round_f16(s * inv);
        if w != 0.0 {
            axpy_f16(out, w, &vc[j * kv_dim + off..][..d]);
        }
    }
}

/// One query head `qh` over the first `n_kv` positions of a Q8_0 cache (rows of `row` bytes,
/// this head's blocks at byte `off`), into `out` (zero): llama.cpp's flash attention
/// (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`), i.e. the query quantized to Q8_0, an
/// online softmax in f32 (a new maximum rescales what was summed), values dequantized and summed
/// in f32, divided by the sum at the end.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub fn attend_q8_0(qh: &[f32], kc: &[u8], vc: &[u8], row: usize, off: usize, n_kv: usize, scale: f32, q8: &mut Vec<Q8_0x4>, out: &mut [f32]) {
    let head = qh.len() / 32 * Q8_0_BYTES;
    quantize_q8_0(qh, q8);
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
    for j in 0..n_kv {
        let s = dot_q8_0(&kc[j * row + off..][..head], q8) * scale;
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > m {
            // A new maximum: what was summed so far is rescaled, this weight is 1.
            ms = (m - s).exp();
            m = s;
            scale_row(out, ms);
        } else {
            vs = (s - m).exp();
        }
        axpy_q8_0(out, vs, &vc[j * row + off..][..head]);
        sum = sum * ms + vs;
    }
    scale_row(out, if sum == 0.0 { 0.0 } else { 1.0 / sum });
}

/// x rounded to the nearest half (ties to even), as an f32: the value ggml's fp32 -> fp16
/// conversion gives, without the conversion (hot: once per cached position and query head).
/// Halves below 2^-14 are subnormal, multiples of 2^-24; from 65520 on they overflow to infinity;
/// in between, the f32 mantissa is rounded to 10 bits (a carry moves into the exponent).
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    let a = x.abs();
    if a < 6.103_515_6e-5 {
        // Scaling by powers of two is exact here; below 2^22, adding and taking off 1.5 * 2^23
        // rounds to an integer, ties to even (no libm call: x86-64's baseline has no roundss).
        let y = x * 16_777_216.0;
        let r = (y + 12_582_912.0) - 12_582_912.0;
        return (r * (1.0 / 16_777_216.0)).copysign(x);
    }
    if !(a < 65520.0) {
        return if a.is_nan() { x } else { f32::INFINITY.copysign(x) };
    }
    let b = x.to_bits();
    f32::from_bits((b + 0x0fff + ((b >> 13) & 1)) & !0x1fff)
}

/// f32 values to half bits, rounded to nearest (ties to even): ggml's fp32 -> fp16 conversion
/// (F16C's `vcvtps2ph` with round-to-nearest on x86).
pub fn store_f16(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s).to_bits();
    }
}

/// A row of `x.len()` values (a multiple of 32) as Q8_0 blocks, quantized as ggml's x86
/// `quantize_row_q8_0` does (what it uses to write a Q8_0 cache).
pub fn store_q8_0(x: &[f32], out: &mut [u8]) {
    let nb = x.len() / 32;
    assert!(x.len() == nb * 32 && out.len() >= nb * Q8_0_BYTES);
    let mut units = vec![Q8_0x4::ZERO; nb.div_ceil(4)];
    quantize::q8_0(x, &mut units);
    for (b, blk) in out[..nb * Q8_0_BYTES].chunks_exact_mut(Q8_0_BYTES).enumerate() {
        let (u, i) = (&units[b / 4], b % 4);
        // The scale is already an f16 value: this conversion is exact.
        blk[..2].copy_from_slice(&f16::from_f32(u.d[i]).to_bits().to_le_bytes());
        for (o, &q) in blk[2..].iter_mut().zip(&u.qs[32 * i..32 * i + 32]) {
            *o = q as u8;
        }
    }
}

/// A query head quantized to Q8_0 (blocks in units of four; see quantize.rs).
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<Q8_0x4>) {
    out.clear();
    out.resize(x.len().div_ceil(128), Q8_0x4::ZERO);
    quantize::q8_0(x, out);
}

/// Each `n` consecutive values (n a power of two) times the orthonormal Walsh-Hadamard matrix,
/// as ggml's `ggml_compute_forward_fwht`: scaled by 1/sqrt(n) first, then butterflies (u + v,
/// u - v) of width 1, 2, 4, ... Every value takes the same operations in the same order whatever
/// the vector width, so this is bit for bit ggml's result.
pub fn fwht(x: &mut [f32], n: usize) {
    assert!(n.is_power_of_two() && x.len().is_multiple_of(n));
    let scale = 1.0 / (n as f32).sqrt();
    for row in x.chunks_exact_mut(n) {
        for v in row.iter_mut() {
            *v *= scale;
        }
        let mut len = 1;
        while len < n {
            for pair in row.chunks_exact_mut(2 * len) {
                let (a, b) = pair.split_at_mut(len);
                for (u, v) in a.iter_mut().zip(b) {
                    (*u, *v) = (*u + *v, *u - *v);
                }
            }
            len *= 2;
        }
    }
}

/// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), as the float kernels reduce.
#[inline(always)]
fn reduce8(a: [f32; 8]) -> f32 {
    let t = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

/// Σ q[i] * k[i] with k in half bits, q any f32 (here already f16 values, so every product is
/// exact): value i summed in lane i % 8, the lanes reduced at the end.
#[inline]
pub fn dot_f16(q: &[f32], k: &[u16]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::dot_f16(q, k)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        native::dot_f16(q, k)
    }
}

#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot_f16_ref(q: &[f32], k: &[u16]) -> f32 {
    let mut acc = [0f32; 8];
    // Whole groups of 8 (each lane on its own: the compiler keeps them in vector registers), then
    // the rest, value i in lane i % 8 throughout.
    let n = q.len().min(k.len());
    let whole = n / 8 * 8;
    for (qs, ks) in q[..whole].chunks_exact(8).zip(k[..whole].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += qs[l] * f16_bits_to_f32(ks[l]);
        }
    }
    for i in whole..n {
        acc[i % 8] += q[i] * f16_bits_to_f32(k[i]);
    }
    reduce8(acc)
}

/// acc[i] += w * v[i], v in half bits.
#[inline]
pub fn axpy_f16(acc: &mut [f32], w: f32, v: &[u16]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::axpy_f16(acc, w, v)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        native::axpy_f16(acc, w, v)
    }
}

#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn axpy_f16_ref(acc: &mut [f32], w: f32, v: &[u16]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += w * f16_bits_to_f32(b);
    }
}

/// Σ over blocks of (d_k * d_q) * Σ k_q * q_q: a row of Q8_0 key blocks (`k`, whole blocks)
/// against the query's blocks (`q`, as `quantize_q8_0` leaves them). The integer sums are exact;
/// the blocks' float terms are added in order.
#[inline]
pub fn dot_q8_0(k: &[u8], q: &[Q8_0x4]) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in k.chunks_exact(Q8_0_BYTES).enumerate() {
        let (u, i) = (&q[b / 4], b % 4);
        let kq: &[u8; 32] = blk[2..].try_into().unwrap();
        let qq: &[i8; 32] = u.qs[32 * i..32 * i + 32].try_into().unwrap();
        let d = f16_bits_to_f32(u16::from_le_bytes([blk[0], blk[1]])) * u.d[i];
        sum += d * dot32(kq, qq) as f32;
    }
    sum
}

#[inline(always)]
fn dot32(k: &[u8; 32], q: &[i8; 32]) -> i32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::dot32(k, q)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        dot32_ref(k, q)
    }
}

#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot32_ref(k: &[u8; 32], q: &[i8; 32]) -> i32 {
    k.iter().zip(q).map(|(&a, &b)| a as i8 as i32 * b as i32).sum()
}

/// acc[i] += (q[i] * d) * w over a row of Q8_0 blocks: each value dequantized as ggml's
/// dequantize_row_q8_0, then weighted.
#[inline]
pub fn axpy_q8_0(acc: &mut [f32], w: f32, v: &[u8]) {
    for (a, blk) in acc.chunks_exact_mut(32).zip(v.chunks_exact(Q8_0_BYTES)) {
        let d = f16_bits_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        let qs: &[u8; 32] = blk[2..].try_into().unwrap();
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        simd::axpy_block_q8_0(a, d, w, qs);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        axpy_block_q8_0_ref(a, d, w, qs);
    }
}

#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn axpy_block_q8_0_ref(acc: &mut [f32], d: f32, w: f32, qs: &[u8; 32]) {
    for (a, &q) in acc.iter_mut().zip(qs) {
        *a += (q as i8 as f32 * d) * w;
    }
}

/// x[i] *= s.
#[inline]
pub fn scale_row(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// Off wasm: halves widened 64 at a time by the `half` crate (F16C where the CPU has it, found at
/// run time; the x86-64 baseline has no half conversion), then plain f32 loops the compiler
/// vectorizes. Widening is exact, so the results are the scalar references' bit for bit.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod native {
    use half::f16;
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

    const CHUNK: usize = 64;

    #[inline(always)]
    fn widen(h: &[u16], out: &mut [f32]) {
        h.reinterpret_cast::<f16>().convert_to_f32_slice(out);
    }

    pub fn dot_f16(q: &[f32], k: &[u16]) -> f32 {
        let n = q.len().min(k.len());
        let mut buf = [0f32; CHUNK];
        let mut acc = [0f32; 8];
        // Chunks of 64 keep value i in lane i % 8.
        for (qs, ks) in q[..n].chunks(CHUNK).zip(k[..n].chunks(CHUNK)) {
            let b = &mut buf[..ks.len()];
            widen(ks, b);
            let whole = ks.len() / 8 * 8;
            for (qq, kk) in qs[..whole].chunks_exact(8).zip(b[..whole].chunks_exact(8)) {
                for l in 0..8 {
                    acc[l] += qq[l] * kk[l];
                }
            }
            for i in whole..ks.len() {
                acc[i % 8] += qs[i] * b[i];
            }
        }
        super::reduce8(acc)
    }

    pub fn axpy_f16(acc: &mut [f32], w: f32, v: &[u16]) {
        let mut buf = [0f32; CHUNK];
        for (a, vs) in acc.chunks_mut(CHUNK).zip(v.chunks(CHUNK)) {
            let n = a.len().min(vs.len());
            let b = &mut buf[..n];
            widen(&vs[..n], b);
            for (x, &y) in a[..n].iter_mut().zip(b.iter()) {
                *x += w * y;
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::super::float::simd::h2f;
    use super::super::idot::simd::{dot16_signed, hsum_i32, load_u8};
    use core::arch::wasm32::*;

    #[inline(always)]
    fn ldf(x: &[f32]) -> v128 {
        assert!(x.len() >= 4);
        // SAFETY: 4 readable floats; unaligned loads are allowed.
        unsafe { v128_load(x.as_ptr() as *const v128) }
    }

    #[inline(always)]
    fn stf(x: &mut [f32], v: v128) {
        assert!(x.len() >= 4);
        // SAFETY: 4 writable floats; unaligned stores are allowed.
        unsafe { v128_store(x.as_mut_ptr() as *mut v128, v) }
    }

    /// Eight halves as two vectors of f32.
    #[inline(always)]
    fn h8(k: &[u16]) -> (v128, v128) {
        assert!(k.len() >= 8);
        // SAFETY: 8 readable halves (16 bytes); unaligned loads are allowed.
        let v = unsafe { v128_load(k.as_ptr() as *const v128) };
        (h2f(u32x4_extend_low_u16x8(v)), h2f(u32x4_extend_high_u16x8(v)))
    }

    pub fn dot_f16(q: &[f32], k: &[u16]) -> f32 {
        let n = q.len().min(k.len());
        let whole = n / 8 * 8;
        let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
        for i in (0..whole).step_by(8) {
            let (k0, k1) = h8(&k[i..]);
            lo = f32x4_add(lo, f32x4_mul(ldf(&q[i..]), k0));
            hi = f32x4_add(hi, f32x4_mul(ldf(&q[i + 4..]), k1));
        }
        let mut acc = [0f32; 8];
        stf(&mut acc[..4], lo);
        stf(&mut acc[4..], hi);
        for i in whole..n {
            acc[i % 8] += q[i] * super::f16_bits_to_f32(k[i]);
        }
        super::reduce8(acc)
    }

    pub fn axpy_f16(acc: &mut [f32], w: f32, v: &[u16]) {
        let n = acc.len().min(v.len());
        let whole = n / 8 * 8;
        let wv = f32x4_splat(w);
        for i in (0..whole).step_by(8) {
            let (v0, v1) = h8(&v[i..]);
            let a0 = f32x4_add(ldf(&acc[i..]), f32x4_mul(wv, v0));
            let a1 = f32x4_add(ldf(&acc[i + 4..]), f32x4_mul(wv, v1));
            stf(&mut acc[i..], a0);
            stf(&mut acc[i + 4..], a1);
        }
        for i in whole..n {
            acc[i] += w * super::f16_bits_to_f32(v[i]);
        }
    }

    #[inline(always)]
    pub fn dot32(k: &[u8; 32], q: &[i8; 32]) -> i32 {
        let qb: &[u8; 32] = bytemuck(q);
        let z = i32x4_splat(0);
        hsum_i32(dot16_signed(load_u8(&k[16..]), load_u8(&qb[16..]), dot16_signed(load_u8(&k[..]), load_u8(&qb[..]), z)))
    }

    fn bytemuck(q: &[i8; 32]) -> &[u8; 32] {
        // SAFETY: i8 and u8 have the same layout.
        unsafe { &*(q as *const [i8; 32] as *const [u8; 32]) }
    }

    #[inline(always)]
    pub fn axpy_block_q8_0(acc: &mut [f32], d: f32, w: f32, qs: &[u8; 32]) {
        let (dv, wv) = (f32x4_splat(d), f32x4_splat(w));
        for h in 0..2 {
            let b = load_u8(&qs[16 * h..]);
            let lo = i16x8_extend_low_i8x16(b);
            let hi = i16x8_extend_high_i8x16(b);
            let parts = [i32x4_extend_low_i16x8(lo), i32x4_extend_high_i16x8(lo), i32x4_extend_low_i16x8(hi), i32x4_extend_high_i16x8(hi)];
            for (j, p) in parts.into_iter().enumerate() {
                let at = 16 * h + 4 * j;
                let v = f32x4_mul(f32x4_convert_i32x4(p), dv);
                let sum = f32x4_add(ldf(&acc[at..]), f32x4_mul(v, wv));
                stf(&mut acc[at..], sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Rng;

    fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| (rng.next_f64() as f32 - 0.5) * 2.0 * scale).collect()
    }

    fn halves(x: &[f32]) -> Vec<u16> {
        let mut h = vec![0u16; x.len()];
        store_f16(x, &mut h);
        h
    }

    /// The dots and weighted sums against f64 sums of the values they stand for, and (under
    /// wasm SIMD128) the vector versions against the scalar references, bit for bit.
    #[test]
    fn f16_steps_match_f64_and_the_scalar_reference() {
        let mut rng = Rng::new(21);
        for n in [8, 32, 64, 100, 128] {
            for _ in 0..50 {
                let q: Vec<f32> = random(&mut rng, n, 3.0).into_iter().map(round_f16).collect();
                let k = halves(&random(&mut rng, n, 2.0));
                let exact: f64 = q.iter().zip(&k).map(|(&a, &b)| a as f64 * f16_bits_to_f32(b) as f64).sum();
                let got = dot_f16(&q, &k);
                assert!((got as f64 - exact).abs() <= 1e-5 * (1.0 + exact.abs()), "n {n}: {got} vs {exact}");
                assert_eq!(got.to_bits(), dot_f16_ref(&q, &k).to_bits());
                let base = random(&mut rng, n, 1.0);
                let w = rng.next_f64() as f32;
                let (mut a, mut b) = (base.clone(), base.clone());
                axpy_f16(&mut a, w, &k);
                axpy_f16_ref(&mut b, w, &k);
                assert_eq!(a, b);
                for ((&a, &x), &v) in a.iter().zip(&base).zip(&k) {
                    assert!((a as f64 - (x as f64 + w as f64 * f16_bits_to_f32(v) as f64)).abs() < 1e-6);
                }
            }
        }
        // Rounding is to nearest, ties to even, exactly as the conversion to half: every f32 of a
        // sweep over all exponents (and the edges: subnormal halves, 65504, 65520, infinities).
        let mut x = 1u32;
        while x < 0x7f80_0000 {
            for bits in [x, x ^ 0x8000_0000, x + 0x1000, x + 0x0fff, x | 0x1fff] {
                let v = f32::from_bits(bits);
                assert_eq!(round_f16(v).to_bits(), f16::from_f32(v).to_f32().to_bits(), "{v:e} ({bits:#x})");
            }
            x += (x >> 8) + 0x101;
        }
        for v in [0.0f32, -0.0, 6.1035156e-5, 6.1035152e-5, 5.96e-8, 2.98e-8, 2.99e-8, 65504.0, 65519.99, 65520.0, -65520.0, 1e30, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(round_f16(v).to_bits(), f16::from_f32(v).to_f32().to_bits(), "{v:e}");
        }
        assert!(round_f16(f32::NAN).is_nan());
        assert_eq!(round_f16(1.0 + 1.0 / 4096.0), 1.0);
        assert_eq!(round_f16(1.0 + 3.0 / 4096.0), 1.0 + 4.0 / 4096.0);
        assert_eq!(halves(&[-0.0, 1e6, -1e6]), vec![0x8000, 0x7c00, 0xfc00]);
    }

    /// The transform is ggml's Sylvester-ordered Hadamard matrix (H[i][j] = (-1)^popcount(i & j)
    /// / sqrt(n)), and its own inverse.
    #[test]
    fn fwht_is_the_orthonormal_hadamard_matrix() {
        let mut rng = Rng::new(23);
        for n in [64, 128, 256] {
            let x = random(&mut rng, 2 * n, 3.0);
            let mut y = x.clone();
            fwht(&mut y, n);
            for (xs, ys) in x.chunks_exact(n).zip(y.chunks_exact(n)) {
                for (i, &got) in ys.iter().enumerate() {
                    let want: f64 = xs.iter().enumerate().map(|(j, &v)| if (i & j).count_ones() % 2 == 0 { v as f64 } else { -v as f64 }).sum::<f64>() / (n as f64).sqrt();
                    assert!((got as f64 - want).abs() < 1e-5, "n {n} [{i}]: {got} vs {want}");
                }
            }
            fwht(&mut y, n);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn q8_0_steps_match_the_dequantized_values() {
        let mut rng = Rng::new(22);
        for n in [32, 64, 128, 160] {
            for _ in 0..50 {
                let x = random(&mut rng, n, 4.0);
                let mut blocks = vec![0u8; n / 32 * Q8_0_BYTES];
                store_q8_0(&x, &mut blocks);
                // Dequantized as ggml does: q * d, every value within half a step of x.
                let mut deq = vec![0f32; n];
                axpy_q8_0(&mut deq, 1.0, &blocks);
                for (c, (xs, ds)) in x.chunks_exact(32).zip(deq.chunks_exact(32)).enumerate() {
                    let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = f16_bits_to_f32(u16::from_le_bytes([blocks[c * 34], blocks[c * 34 + 1]]));
                    assert_eq!(d, round_f16(amax / 127.0));
                    for (&a, &b) in xs.iter().zip(ds) {
                        assert!((a - b).abs() <= d * 0.5 + amax * 2e-3, "{a} {b} d {d}");
                    }
                }
                let qx = random(&mut rng, n, 4.0);
                let mut q = Vec::new();
                quantize_q8_0(&qx, &mut q);
                let qv: Vec<f64> = (0..n).map(|i| q[i / 128].qs[i % 128] as f64 * q[i / 128].d[(i % 128) / 32] as f64).collect();
                let exact: f64 = qv.iter().zip(&deq).map(|(&a, &b)| a * b as f64).sum();
                let got = dot_q8_0(&blocks, &q);
                assert!((got as f64 - exact).abs() <= 1e-4 * (1.0 + exact.abs()), "{got} vs {exact}");
                for (c, blk) in blocks.chunks_exact(34).enumerate() {
                    let (u, i) = (&q[c / 4], c % 4);
                    let kq: &[u8; 32] = blk[2..].try_into().unwrap();
                    assert_eq!(dot32(kq, u.qs[32 * i..32 * i + 32].try_into().unwrap()), dot32_ref(kq, u.qs[32 * i..32 * i + 32].try_into().unwrap()));
                }
                let base = random(&mut rng, n, 1.0);
                let w = rng.next_f64() as f32;
                let (mut a, mut b) = (base.clone(), base.clone());
                axpy_q8_0(&mut a, w, &blocks);
                for (bb, blk) in b.chunks_exact_mut(32).zip(blocks.chunks_exact(34)) {
                    let d = f16_bits_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                    axpy_block_q8_0_ref(bb, d, w, blk[2..].try_into().unwrap());
                }
                assert_eq!(a, b);
            }
        }
        // Extremes: -128 never appears in a stored block (|q| <= 127), a zero block has scale 0.
        let mut x = vec![0f32; 64];
        x[33] = -1e-3;
        let mut blocks = vec![0u8; 68];
        store_q8_0(&x, &mut blocks);
        assert_eq!(&blocks[..2], &[0, 0]);
        assert_eq!(blocks[34 + 2 + 1] as i8, -127);
    }
}
