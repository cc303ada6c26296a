//! The K-quants (256-value super-blocks against Q8_K activations). A super-block is unpacked to
//! one byte per value (the stored unsigned value, 0..=63: Q3_K's offset 4 and Q6_K's 32 are taken
//! off with the activations' block sums, see idot) plus a scale (and minimum) per 16 values; the
//! integer sums are exact, so only the float steps matter for matching ggml: per super-block
//! d * Σ scale·(q·a) into one sum and dmin * Σ min·bsum into another (as ggml's x86 kernels keep
//! them), added at the end.

#![allow(non_camel_case_types)] // ggml's type names

use super::f16_bits_to_f32 as h2f;
use super::idot::{dot16_i16, dot8_i16, Isa};
use super::quantize::{self, BlockQ8K};
use super::Kernel;

#[derive(PartialEq, Debug)]
pub struct Unpacked {
    /// Stored values, 0..=63.
    pub q: [i8; 256],
    /// Scale and minimum of each group: 16 groups of 16 values, or for Q4_K / Q5_K 8 groups of
    /// 32 (`sc[..8]`, `mn[..8]`; the rest stays 0).
    pub sc: [i16; 16],
    pub mn: [i16; 16],
    pub d: f32,
    pub dmin: f32,
}

fn h(b: &[u8], at: usize) -> f32 {
    h2f(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// ggml's get_scale_min_k4: the 6-bit scale and minimum of sub-block j (of 8) of Q4_K / Q5_K.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K / Q5_K scales (12 bytes) as the 8 sub-blocks' scales and minimums.
#[inline(always)]
fn scales_k4(s: &[u8], u: &mut Unpacked) {
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, s);
        u.sc[j] = sc as i16;
        u.mn[j] = m as i16;
    }
}

/// Q3_K's 16 6-bit scales packed in 12 bytes, minus 32.
#[inline(always)]
fn scales_q3k(s: &[u8], u: &mut Unpacked) {
    const KMASK1: u32 = 0x03030303;
    const KMASK2: u32 = 0x0f0f0f0f;
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, tmp) = (w(0), w(1), w(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    for (i, a) in aux.iter().enumerate() {
        for (k, byte) in a.to_le_bytes().iter().enumerate() {
            u.sc[4 * i + k] = *byte as i8 as i16 - 32;
        }
    }
}

/// One super-block's float steps from its integer dot: the offset (value = q - OFFSET) taken off
/// with the activations' group sums, d * d_a * isum into one sum, and with `MINS` dmin * d_a * Σ
/// min·bsum into the other.
#[inline(always)]
fn finish_k<const MINS: bool, const OFFSET: i32, const PAIRED: bool>(u: &Unpacked, a: &BlockQ8K, mut isum: i32, acc: &mut [f32; 2]) {
    if OFFSET != 0 {
        isum -= OFFSET * dot16_i16(&u.sc, &a.bsums);
    }
    acc[0] += (u.d * a.d) * isum as f32;
    if MINS {
        let m = if PAIRED { dot8_i16(u.mn[..8].try_into().unwrap(), &a.bsums32) } else { dot16_i16(&u.mn, &a.bsums) };
        acc[1] -= (u.dmin * a.d) * m as f32;
    }
}

/// `$mins`: dmin * min terms; `$offset`: value = q - offset; `$paired`: groups of 32 values.
/// Q4_K and Q6_K (the Q4_K_M mix) have fused decode kernels on wasm (`@fused`).
macro_rules! k_kernel {
    (@fused Q4_K) => {
        #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
        #[inline(always)]
        fn dot_packed<I: Isa>(b: &[u8], a: &BlockQ8K, acc: &mut [f32; 2]) {
            simd::fused_q4_k::<I>(b, a, acc)
        }
    };
    (@fused Q6_K) => {
        #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
        #[inline(always)]
        fn dot_packed<I: Isa>(b: &[u8], a: &BlockQ8K, acc: &mut [f32; 2]) {
            simd::fused_q6_k::<I>(b, a, acc)
        }
    };
    (@fused $name:ident) => {};
    ($name:ident, $bytes:expr, $mins:expr, $offset:expr, $paired:expr) => {
        pub struct $name;
        impl Kernel for $name {
            const QK: usize = 256;
            const BYTES: usize = $bytes;
            type Act = BlockQ8K;
            type Unpacked = Unpacked;
            type Acc = [f32; 2];
            const ACT_ZERO: BlockQ8K = BlockQ8K::ZERO;
            const ACC_ZERO: [f32; 2] = [0.0; 2];
            fn unpacked() -> Unpacked {
                Unpacked { q: [0; 256], sc: [0; 16], mn: [0; 16], d: 0.0, dmin: 0.0 }
            }
            #[inline(always)]
            fn quantize(x: &[f32], out: &mut [BlockQ8K]) {
                quantize::q8_k(x, out)
            }
            #[inline(always)]
            fn unpack(b: &[u8], u: &mut Unpacked) {
                #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
                simd::$name(b, u);
                #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
                Self::unpack_ref(b, u);
            }
            #[inline(always)]
            fn dot<I: Isa>(u: &Unpacked, a: &BlockQ8K, acc: &mut [f32; 2]) {
                finish_k::<$mins, $offset, $paired>(u, a, I::dot256::<$paired>(&u.q, &a.qs, &u.sc), acc)
            }
            k_kernel!(@fused $name);
            /// Two rows share the weight loads and scale splats: faster for the paired types
            /// (measured: Q4_K / Q5_K 1.25x; Q6_K slower, so it keeps two single dots).
            #[inline(always)]
            fn dot2<I: Isa>(u: &Unpacked, a: [&BlockQ8K; 2], acc: [&mut [f32; 2]; 2]) {
                let [c0, c1] = acc;
                if !$paired {
                    Self::dot::<I>(u, a[0], c0);
                    Self::dot::<I>(u, a[1], c1);
                    return;
                }
                let isum = I::dot256_2::<$paired>(&u.q, [&a[0].qs, &a[1].qs], &u.sc);
                finish_k::<$mins, $offset, $paired>(u, a[0], isum[0], c0);
                finish_k::<$mins, $offset, $paired>(u, a[1], isum[1], c1);
            }
            #[inline(always)]
            fn finish(acc: [f32; 2]) -> f32 {
                acc[0] + acc[1]
            }
            fn dequantize(b: &[u8], out: &mut [f32]) {
                dequant::$name(b, out)
            }
            #[inline(always)]
            fn unpack_ref(b: &[u8], u: &mut Unpacked) {
                scalar::$name(b, u)
            }
        }
    };
}

k_kernel!(Q2_K, 84, true, 0, false);
k_kernel!(Q3_K, 110, false, 4, false);
k_kernel!(Q4_K, 144, true, 0, true);
k_kernel!(Q5_K, 176, true, 0, true);
k_kernel!(Q6_K, 210, false, 32, false);

/// Scalar unpacking; value order as in ggml's dequantize_row_*.
#[allow(non_snake_case)]
mod scalar {
    use super::*;

    /// scales[16] | qs[64] | d | dmin.
    #[inline(always)]
    pub fn Q2_K(b: &[u8], u: &mut Unpacked) {
        let qs = &b[16..80];
        for half in 0..2 {
            for j in 0..4 {
                for l in 0..32 {
                    u.q[half * 128 + j * 32 + l] = ((qs[half * 32 + l] >> (2 * j)) & 3) as i8;
                }
            }
        }
        for g in 0..16 {
            u.sc[g] = (b[g] & 0xF) as i16;
            u.mn[g] = (b[g] >> 4) as i16;
        }
        (u.d, u.dmin) = (h(b, 80), h(b, 82));
    }

    /// hmask[32] | qs[64] | scales[12] | d.
    #[inline(always)]
    pub fn Q3_K(b: &[u8], u: &mut Unpacked) {
        let (hm, qs) = (&b[..32], &b[32..96]);
        for half in 0..2 {
            for j in 0..4 {
                let m = 1u8 << (half * 4 + j);
                for l in 0..32 {
                    let v = ((qs[half * 32 + l] >> (2 * j)) & 3) as i8;
                    u.q[half * 128 + j * 32 + l] = v + if hm[l] & m != 0 { 4 } else { 0 };
                }
            }
        }
        scales_q3k(&b[96..108], u);
        u.d = h(b, 108);
    }

    /// d | dmin | scales[12] | qs[128].
    #[inline(always)]
    pub fn Q4_K(b: &[u8], u: &mut Unpacked) {
        let qs = &b[16..144];
        for j in 0..4 {
            for l in 0..32 {
                u.q[64 * j + l] = (qs[32 * j + l] & 0xF) as i8;
                u.q[64 * j + 32 + l] = (qs[32 * j + l] >> 4) as i8;
            }
        }
        scales_k4(&b[4..16], u);
        (u.d, u.dmin) = (h(b, 0), h(b, 2));
    }

    /// d | dmin | scales[12] | qh[32] | qs[128].
    #[inline(always)]
    pub fn Q5_K(b: &[u8], u: &mut Unpacked) {
        let (qh, qs) = (&b[16..48], &b[48..176]);
        for j in 0..4 {
            for l in 0..32 {
                let h0 = ((qh[l] >> (2 * j)) & 1) << 4;
                let h1 = ((qh[l] >> (2 * j + 1)) & 1) << 4;
                u.q[64 * j + l] = ((qs[32 * j + l] & 0xF) | h0) as i8;
                u.q[64 * j + 32 + l] = ((qs[32 * j + l] >> 4) | h1) as i8;
            }
        }
        scales_k4(&b[4..16], u);
        (u.d, u.dmin) = (h(b, 0), h(b, 2));
    }

    /// ql[128] | qh[64] | scales[16] (i8) | d.
    #[inline(always)]
    pub fn Q6_K(b: &[u8], u: &mut Unpacked) {
        for half in 0..2 {
            let (ql, qh) = (&b[64 * half..64 * half + 64], &b[128 + 32 * half..128 + 32 * half + 32]);
            let q = &mut u.q[128 * half..128 * half + 128];
            for l in 0..32 {
                q[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8;
                q[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8;
                q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8;
                q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8;
            }
        }
        for g in 0..16 {
            u.sc[g] = b[192 + g] as i8 as i16;
        }
        u.d = h(b, 208);
    }
}

/// ggml's dequantize_row_* (float steps in its order), for embedding rows and small tensors.
#[allow(non_snake_case)]
mod dequant {
    use super::*;

    pub fn Q2_K(b: &[u8], out: &mut [f32]) {
        let mut u = Q2_K::unpacked();
        scalar::Q2_K(b, &mut u);
        for (g, o) in out[..256].chunks_exact_mut(16).enumerate() {
            let (dl, ml) = (u.d * u.sc[g] as f32, u.dmin * u.mn[g] as f32);
            for (o, &q) in o.iter_mut().zip(&u.q[16 * g..]) {
                *o = dl * q as f32 - ml;
            }
        }
    }

    pub fn Q3_K(b: &[u8], out: &mut [f32]) {
        let mut u = Q3_K::unpacked();
        scalar::Q3_K(b, &mut u);
        for (g, o) in out[..256].chunks_exact_mut(16).enumerate() {
            let dl = u.d * u.sc[g] as f32;
            for (o, &q) in o.iter_mut().zip(&u.q[16 * g..]) {
                *o = dl * (q - 4) as f32;
            }
        }
    }

    pub fn Q4_K(b: &[u8], out: &mut [f32]) {
        let mut u = Q4_K::unpacked();
        scalar::Q4_K(b, &mut u);
        k4(&u, out)
    }

    pub fn Q5_K(b: &[u8], out: &mut [f32]) {
        let mut u = Q5_K::unpacked();
        scalar::Q5_K(b, &mut u);
        k4(&u, out)
    }

    fn k4(u: &Unpacked, out: &mut [f32]) {
        for (g, o) in out[..256].chunks_exact_mut(32).enumerate() {
            let (d1, m1) = (u.d * u.sc[g] as f32, u.dmin * u.mn[g] as f32);
            for (o, &q) in o.iter_mut().zip(&u.q[32 * g..]) {
                *o = d1 * q as f32 - m1;
            }
        }
    }

    pub fn Q6_K(b: &[u8], out: &mut [f32]) {
        let mut u = Q6_K::unpacked();
        scalar::Q6_K(b, &mut u);
        for (g, o) in out[..256].chunks_exact_mut(16).enumerate() {
            for (o, &q) in o.iter_mut().zip(&u.q[16 * g..]) {
                *o = u.d * u.sc[g] as f32 * (q - 32) as f32;
            }
        }
    }
}

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
#[allow(non_snake_case)]
pub(super) mod simd {
    use super::super::idot::simd::{load, load_i16, load_u8, shl_small, shr_mask, store, store_i16};
    use super::*;
    use crate::wasm_simd::*;

    /// get_scale_min_k4 for all 8 sub-blocks at once, on 32-bit words (as ggml's x86 code does).
    #[inline(always)]
    fn scales_k4(s: &[u8], u: &mut Unpacked) {
        let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
        let (a0, a1, a2) = (w(0), w(1), w(2));
        let sc = a0 & 0x3f3f3f3f;
        let sc_hi = (a2 & 0x0f0f0f0f) | (((a0 >> 6) & 0x03030303) << 4);
        let mn = a1 & 0x3f3f3f3f;
        let mn_hi = ((a2 >> 4) & 0x0f0f0f0f) | (((a1 >> 6) & 0x03030303) << 4);
        let v = u32x4(sc, sc_hi, mn, mn_hi);
        store_i16(&mut u.sc[..8], u16x8_extend_low_u8x16(v));
        store_i16(&mut u.mn[..8], u16x8_extend_high_u8x16(v));
    }

    #[inline(always)]
    pub fn Q2_K(b: &[u8], u: &mut Unpacked) {
        let three = u8x16_splat(3);
        for half in 0..2 {
            for k in 0..2 {
                let v = load_u8(&b[16 + half * 32 + 16 * k..]);
                for j in 0..4 {
                    store(&mut u.q[half * 128 + j * 32 + 16 * k..], shr_mask(v, 2 * j as u32, three));
                }
            }
        }
        let s = load_u8(&b[..16]);
        let m4 = u8x16_splat(0xF);
        let (sc, mn) = (v128_and(s, m4), shr_mask(s, 4, m4));
        store_i16(&mut u.sc[..8], u16x8_extend_low_u8x16(sc));
        store_i16(&mut u.sc[8..], u16x8_extend_high_u8x16(sc));
        store_i16(&mut u.mn[..8], u16x8_extend_low_u8x16(mn));
        store_i16(&mut u.mn[8..], u16x8_extend_high_u8x16(mn));
        (u.d, u.dmin) = (h(b, 80), h(b, 82));
    }

    #[inline(always)]
    pub fn Q3_K(b: &[u8], u: &mut Unpacked) {
        let three = u8x16_splat(3);
        let one = u8x16_splat(1);
        for k in 0..2 {
            let hm = load_u8(&b[16 * k..]);
            for half in 0..2 {
                let v = load_u8(&b[32 + half * 32 + 16 * k..]);
                for j in 0..4 {
                    let q = shr_mask(v, 2 * j as u32, three);
                    // + 4 where the mask bit is set.
                    let hi = shl_small(shr_mask(hm, (half * 4 + j) as u32, one), 2);
                    store(&mut u.q[half * 128 + j * 32 + 16 * k..], v128_or(q, hi));
                }
            }
        }
        scales_q3k(&b[96..108], u);
        u.d = h(b, 108);
    }

    #[inline(always)]
    pub fn Q4_K(b: &[u8], u: &mut Unpacked) {
        let m4 = u8x16_splat(0xF);
        for j in 0..4 {
            for k in 0..2 {
                let v = load_u8(&b[16 + 32 * j + 16 * k..]);
                store(&mut u.q[64 * j + 16 * k..], v128_and(v, m4));
                store(&mut u.q[64 * j + 32 + 16 * k..], shr_mask(v, 4, m4));
            }
        }
        scales_k4(&b[4..16], u);
        (u.d, u.dmin) = (h(b, 0), h(b, 2));
    }

    #[inline(always)]
    pub fn Q5_K(b: &[u8], u: &mut Unpacked) {
        let m4 = u8x16_splat(0xF);
        let one = u8x16_splat(1);
        for k in 0..2 {
            let qh = load_u8(&b[16 + 16 * k..]);
            for j in 0..4 {
                let v = load_u8(&b[48 + 32 * j + 16 * k..]);
                let h0 = shl_small(shr_mask(qh, 2 * j as u32, one), 4);
                let h1 = shl_small(shr_mask(qh, 2 * j as u32 + 1, one), 4);
                store(&mut u.q[64 * j + 16 * k..], v128_or(v128_and(v, m4), h0));
                store(&mut u.q[64 * j + 32 + 16 * k..], v128_or(shr_mask(v, 4, m4), h1));
            }
        }
        scales_k4(&b[4..16], u);
        (u.d, u.dmin) = (h(b, 0), h(b, 2));
    }

    /// i16 lane `l` of `v` in every lane.
    macro_rules! splat16 {
        ($v:expr, $l:literal) => {
            i16x8_shuffle::<$l, $l, $l, $l, $l, $l, $l, $l>($v, $v)
        };
    }

    /// Q4_K's unpack and dot in one pass (decode: the weights stay in registers): each 16 bytes
    /// of quants are the low and high nibbles of two 32-value groups, dotted with their scale.
    #[inline(always)]
    pub fn fused_q4_k<I: Isa>(b: &[u8], a: &BlockQ8K, acc: &mut [f32; 2]) {
        let mut u = Q4_K::unpacked();
        scales_k4(&b[4..16], &mut u);
        (u.d, u.dmin) = (h(b, 0), h(b, 2));
        let s = load_i16(&u.sc[..8]);
        let m4 = u8x16_splat(0xF);
        let q = |at: usize| load_u8(&b[16 + at..]);
        let x = |at: usize| load(&a.qs[at..]);
        let mut isum = i32x4_splat(0);
        macro_rules! pair {
            ($j:literal, $lo:literal, $hi:literal) => {
                let (v0, v1) = (q(32 * $j), q(32 * $j + 16));
                isum = I::dot32_scaled(v128_and(v0, m4), v128_and(v1, m4), x(64 * $j), x(64 * $j + 16), splat16!(s, $lo), isum);
                isum = I::dot32_scaled(shr_mask(v0, 4, m4), shr_mask(v1, 4, m4), x(64 * $j + 32), x(64 * $j + 48), splat16!(s, $hi), isum);
            };
        }
        pair!(0, 0, 1);
        pair!(1, 2, 3);
        pair!(2, 4, 5);
        pair!(3, 6, 7);
        finish_k::<true, 0, true>(&u, a, super::super::idot::simd::hsum_i32(isum), acc)
    }

    /// Q6_K's unpack and dot in one pass (decode): each 16 bytes of low quants with their high
    /// bits make four 16-value groups, dotted with their scale.
    #[inline(always)]
    pub fn fused_q6_k<I: Isa>(b: &[u8], a: &BlockQ8K, acc: &mut [f32; 2]) {
        let mut u = Q6_K::unpacked();
        let sv = load_u8(&b[192..208]);
        let (s_lo, s_hi) = (i16x8_extend_low_i8x16(sv), i16x8_extend_high_i8x16(sv));
        store_i16(&mut u.sc[..8], s_lo);
        store_i16(&mut u.sc[8..], s_hi);
        u.d = h(b, 208);
        let m4 = u8x16_splat(0xF);
        let three = u8x16_splat(3);
        let x = |at: usize| load(&a.qs[at..]);
        let mut isum = i32x4_splat(0);
        // Group (128 half + 16 k + 32 j) / 16 = 8 half + k + 2 j: scales vector and lane.
        macro_rules! chunk {
            ($half:literal, $k:literal, $s:ident, $g0:literal, $g1:literal, $g2:literal, $g3:literal) => {
                let l0 = load_u8(&b[64 * $half + 16 * $k..]);
                let l1 = load_u8(&b[64 * $half + 32 + 16 * $k..]);
                let qh = load_u8(&b[128 + 32 * $half + 16 * $k..]);
                let hb = |n: u32| shl_small(shr_mask(qh, n, three), 4);
                let at = 128 * $half + 16 * $k;
                isum = I::dot16_scaled(v128_or(v128_and(l0, m4), hb(0)), x(at), splat16!($s, $g0), isum);
                isum = I::dot16_scaled(v128_or(v128_and(l1, m4), hb(2)), x(at + 32), splat16!($s, $g1), isum);
                isum = I::dot16_scaled(v128_or(shr_mask(l0, 4, m4), hb(4)), x(at + 64), splat16!($s, $g2), isum);
                isum = I::dot16_scaled(v128_or(shr_mask(l1, 4, m4), hb(6)), x(at + 96), splat16!($s, $g3), isum);
            };
        }
        chunk!(0, 0, s_lo, 0, 2, 4, 6);
        chunk!(0, 1, s_lo, 1, 3, 5, 7);
        chunk!(1, 0, s_hi, 0, 2, 4, 6);
        chunk!(1, 1, s_hi, 1, 3, 5, 7);
        finish_k::<false, 32, false>(&u, a, super::super::idot::simd::hsum_i32(isum), acc)
    }

    #[inline(always)]
    pub fn Q6_K(b: &[u8], u: &mut Unpacked) {
        let m4 = u8x16_splat(0xF);
        let three = u8x16_splat(3);
        for half in 0..2 {
            for k in 0..2 {
                let l0 = load_u8(&b[64 * half + 16 * k..]);
                let l1 = load_u8(&b[64 * half + 32 + 16 * k..]);
                let qh = load_u8(&b[128 + 32 * half + 16 * k..]);
                let hb = |s: u32| shl_small(shr_mask(qh, s, three), 4);
                let q = &mut u.q[128 * half + 16 * k..];
                store(&mut q[0..], v128_or(v128_and(l0, m4), hb(0)));
                store(&mut q[32..], v128_or(v128_and(l1, m4), hb(2)));
                store(&mut q[64..], v128_or(shr_mask(l0, 4, m4), hb(4)));
                store(&mut q[96..], v128_or(shr_mask(l1, 4, m4), hb(6)));
            }
        }
        let s = load_u8(&b[192..208]);
        store_i16(&mut u.sc[..8], i16x8_extend_low_i8x16(s));
        store_i16(&mut u.sc[8..], i16x8_extend_high_i8x16(s));
        u.d = h(b, 208);
    }
}
