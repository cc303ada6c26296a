//! F32, F16 and BF16 weights. As ggml's vec_dot_type, F16 weights multiply f16-rounded
//! activations and BF16 weights bf16-rounded ones (products of two halves are exact in f32).
//! Sums run in 8 f32 lanes (value i into lane i % 8), reduced in a fixed tree at the end; the
//! SIMD128 version keeps the same lanes, so both give identical results.

use super::{bf16_bits_to_f32, f16_bits_to_f32, Kernel};
use half::{bf16, f16};

/// 32 consecutive values.
pub type Chunk = [f32; 32];

#[inline(always)]
fn lane_dot(u: &Chunk, a: &Chunk, acc: &mut [f32; 8]) {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    simd::lane_dot(u, a, acc);
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    lane_dot_ref(u, a, acc);
}

// Scalar reference: what runs off wasm, and what the wasm tests compare against.
#[cfg_attr(all(target_family = "wasm", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn lane_dot_ref(u: &Chunk, a: &Chunk, acc: &mut [f32; 8]) {
    for c in 0..4 {
        for l in 0..8 {
            acc[l] += u[8 * c + l] * a[8 * c + l];
        }
    }
}

/// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)).
#[inline(always)]
fn reduce(a: [f32; 8]) -> f32 {
    let t = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

macro_rules! float_kernel {
    ($name:ident, $bytes:expr, $round:expr, $unpack_ref:expr, $unpack_simd:path) => {
        pub struct $name;
        impl Kernel for $name {
            const QK: usize = 32;
            const BYTES: usize = $bytes;
            type Act = Chunk;
            type Unpacked = Chunk;
            type Acc = [f32; 8];
            const ACT_ZERO: Chunk = [0.0; 32];
            const ACC_ZERO: [f32; 8] = [0.0; 8];
            fn unpacked() -> Chunk {
                [0.0; 32]
            }
            #[inline(always)]
            fn quantize(x: &[f32], out: &mut [Chunk]) {
                let round: fn(f32) -> f32 = $round;
                for (o, x) in out.iter_mut().zip(x.chunks_exact(32)) {
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = round(x);
                    }
                }
            }
            #[inline(always)]
            fn unpack(b: &[u8], u: &mut Chunk) {
                #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
                $unpack_simd(b, u);
                #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
                Self::unpack_ref(b, u);
            }
            #[inline(always)]
            fn dot<I: super::idot::Isa>(u: &Chunk, a: &Chunk, acc: &mut [f32; 8]) {
                lane_dot(u, a, acc)
            }
            #[inline(always)]
            fn finish(acc: [f32; 8]) -> f32 {
                reduce(acc)
            }
            fn dequantize(b: &[u8], out: &mut [f32]) {
                let mut u = [0.0; 32];
                Self::unpack_ref(b, &mut u);
                out[..32].copy_from_slice(&u);
            }
            #[inline(always)]
            fn unpack_ref(b: &[u8], u: &mut Chunk) {
                let f: fn(&[u8]) -> f32 = $unpack_ref;
                for (u, c) in u.iter_mut().zip(b.chunks_exact($bytes / 32)) {
                    *u = f(c);
                }
            }
        }
    };
}

float_kernel!(F32, 128, |x| x, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]), simd::f32);
float_kernel!(F16, 64, |x| f16::from_f32(x).to_f32(), |c| f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])), simd::f16);
float_kernel!(BF16, 64, |x| bf16::from_f32(x).to_f32(), |c| bf16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])), simd::bf16);

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
pub(super) mod simd {
    use super::Chunk;
    use crate::wasm_simd::*;

    #[inline(always)]
    fn ld(b: &[u8]) -> v128 {
        assert!(b.len() >= 16);
        // SAFETY: 16 readable bytes, unaligned loads allowed.
        unsafe { v128_load(b.as_ptr() as *const v128) }
    }

    #[inline(always)]
    fn st(u: &mut [f32], v: v128) {
        assert!(u.len() >= 4);
        // SAFETY: 4 writable floats, unaligned stores allowed.
        unsafe { v128_store(u.as_mut_ptr() as *mut v128, v) }
    }

    #[inline(always)]
    pub fn lane_dot(u: &Chunk, a: &Chunk, acc: &mut [f32; 8]) {
        let ldf = |x: &[f32]| ld(bytemuck(x));
        let (mut lo, mut hi) = (ldf(&acc[..4]), ldf(&acc[4..]));
        for c in 0..4 {
            lo = f32x4_add(lo, f32x4_mul(ldf(&u[8 * c..]), ldf(&a[8 * c..])));
            hi = f32x4_add(hi, f32x4_mul(ldf(&u[8 * c + 4..]), ldf(&a[8 * c + 4..])));
        }
        st(&mut acc[..4], lo);
        st(&mut acc[4..], hi);
    }

    fn bytemuck(x: &[f32]) -> &[u8] {
        // SAFETY: f32s viewed as their bytes.
        unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, x.len() * 4) }
    }

    #[inline(always)]
    pub fn f32(b: &[u8], u: &mut Chunk) {
        for i in 0..8 {
            st(&mut u[4 * i..], ld(&b[16 * i..]));
        }
    }

    /// Four f16 (as u32 lanes) to f32, as super::f16_bits_to_f32.
    #[inline(always)]
    pub fn h2f(h: v128) -> v128 {
        let o = i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13);
        let scaled = f32x4_mul(o, f32x4_splat(f32::from_bits(0x7780_0000)));
        let special = i32x4_eq(v128_and(h, u32x4_splat(0x7c00)), u32x4_splat(0x7c00));
        let v = v128_bitselect(v128_or(o, u32x4_splat(0x7f80_0000)), scaled, special);
        v128_or(v, i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16))
    }

    #[inline(always)]
    pub fn f16(b: &[u8], u: &mut Chunk) {
        for i in 0..4 {
            let v = ld(&b[16 * i..]);
            st(&mut u[8 * i..], h2f(u32x4_extend_low_u16x8(v)));
            st(&mut u[8 * i + 4..], h2f(u32x4_extend_high_u16x8(v)));
        }
    }

    #[inline(always)]
    pub fn bf16(b: &[u8], u: &mut Chunk) {
        for i in 0..4 {
            let v = ld(&b[16 * i..]);
            st(&mut u[8 * i..], i32x4_shl(u32x4_extend_low_u16x8(v), 16));
            st(&mut u[8 * i + 4..], i32x4_shl(u32x4_extend_high_u16x8(v), 16));
        }
    }
}
