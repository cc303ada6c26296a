//! The 32-value block types: Q4_0, Q5_0, Q8_0 (against Q8_0 activations) and Q4_1, Q5_1
//! (against Q8_1). Per block: d_w * d_a * Σ q_w q_a, accumulated like ggml's x86 kernels (the
//! product of the two scales first; Q4_1/Q5_1 sum their m * s terms apart and add them last).
//! Q4_0 / Q5_0 dot their unsigned stored values and take 8 / 16 times the activations' block sum
//! off, which is the same integer.

#![allow(non_camel_case_types)] // ggml's type names

use super::f16_bits_to_f32 as h2f;
use super::idot::Isa;
use super::quantize::{self, BlockQ8_0, BlockQ8_1};
use super::Kernel;

/// A weight block unpacked to one i8 per value: the stored unsigned values (0..=31, offsets not
/// taken off: see idot) for Q4_0..Q5_1, the signed quants for Q8_0.
#[derive(PartialEq, Debug)]
pub struct Unpacked {
    pub q: [i8; 32],
    pub d: f32,
    pub m: f32,
    /// Q8_0: some quant is -128 (see Isa::dot32_symmetric).
    pub has_min: bool,
}

fn h(b: &[u8], at: usize) -> f32 {
    h2f(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn qh32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// How a type's integer sum is formed: `offset N` (value = q - N, N * Σa taken off the 7-bit
/// dot), `min` (value = q * d + m; Q8_1's stored sum carries the m terms), `signed` (Q8_0).
macro_rules! legacy_kernel {
    ($name:ident, $bytes:expr, $act:ty, $quantize:path, $kind:ident $($off:literal)?) => {
        pub struct $name;
        impl Kernel for $name {
            const QK: usize = 32;
            const BYTES: usize = $bytes;
            type Act = $act;
            type Unpacked = Unpacked;
            type Acc = [f32; 2];
            const ACT_ZERO: $act = <$act>::ZERO;
            const ACC_ZERO: [f32; 2] = [0.0; 2];
            fn unpacked() -> Unpacked {
                Unpacked { q: [0; 32], d: 0.0, m: 0.0, has_min: false }
            }
            #[inline(always)]
            fn quantize(x: &[f32], out: &mut [$act]) {
                $quantize(x, out)
            }
            #[inline(always)]
            fn unpack(b: &[u8], u: &mut Unpacked) {
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                simd::$name(b, u);
                #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
                Self::unpack_ref(b, u);
            }
            #[inline(always)]
            fn dot<I: Isa>(u: &Unpacked, a: &$act, acc: &mut [f32; 2]) {
                legacy_kernel!(@dot $kind $($off)?, u, a, acc);
            }
            #[inline(always)]
            fn finish(acc: [f32; 2]) -> f32 {
                acc[0] + acc[1]
            }
            fn dequantize(b: &[u8], out: &mut [f32]) {
                let mut u = Self::unpacked();
                Self::unpack_ref(b, &mut u);
                for (o, &q) in out.iter_mut().zip(&u.q) {
                    *o = legacy_kernel!(@deq $kind $($off)?, q, u);
                }
            }
            #[inline(always)]
            fn unpack_ref(b: &[u8], u: &mut Unpacked) {
                scalar::$name(b, u)
            }
        }
    };
    // The product of the two scales first, as ggml's x86 kernels do.
    (@dot offset $off:literal, $u:ident, $a:ident, $acc:ident) => {
        $acc[0] += ($u.d * $a.d) * (I::dot32(&$u.q, &$a.qs) - $off * $a.sum) as f32;
    };
    (@dot min, $u:ident, $a:ident, $acc:ident) => {
        $acc[0] += ($u.d * $a.d) * I::dot32(&$u.q, &$a.qs) as f32;
        $acc[1] += $u.m * $a.s;
    };
    (@dot signed, $u:ident, $a:ident, $acc:ident) => {
        let isum = if $u.has_min || $a.has_min { I::dot32_signed(&$u.q, &$a.qs) } else { I::dot32_symmetric(&$u.q, &$a.qs) };
        $acc[0] += ($u.d * $a.d) * isum as f32;
    };
    // dequantize_row_*: x*d (+ m).
    (@deq offset $off:literal, $q:ident, $u:ident) => { ($q as i32 - $off) as f32 * $u.d };
    (@deq min, $q:ident, $u:ident) => { $q as f32 * $u.d + $u.m };
    (@deq signed, $q:ident, $u:ident) => { $q as f32 * $u.d };
}

legacy_kernel!(Q4_0, 18, BlockQ8_0, quantize::q8_0, offset 8);
legacy_kernel!(Q4_1, 20, BlockQ8_1, quantize::q8_1, min);
legacy_kernel!(Q5_0, 22, BlockQ8_0, quantize::q8_0, offset 16);
legacy_kernel!(Q5_1, 24, BlockQ8_1, quantize::q8_1, min);
legacy_kernel!(Q8_0, 34, BlockQ8_0, quantize::q8_0, signed);

/// Scalar unpacking, transcribed from ggml's dequantize_row_* (value j and j + 16 share byte j).
#[allow(non_snake_case)]
mod scalar {
    use super::*;

    #[inline(always)]
    pub fn Q4_0(b: &[u8], u: &mut Unpacked) {
        u.d = h(b, 0);
        for j in 0..16 {
            u.q[j] = (b[2 + j] & 0xF) as i8;
            u.q[j + 16] = (b[2 + j] >> 4) as i8;
        }
    }

    #[inline(always)]
    pub fn Q4_1(b: &[u8], u: &mut Unpacked) {
        (u.d, u.m) = (h(b, 0), h(b, 2));
        for j in 0..16 {
            u.q[j] = (b[4 + j] & 0xF) as i8;
            u.q[j + 16] = (b[4 + j] >> 4) as i8;
        }
    }

    #[inline(always)]
    pub fn Q5_0(b: &[u8], u: &mut Unpacked) {
        u.d = h(b, 0);
        let qh = qh32(b, 2);
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            u.q[j] = ((b[6 + j] & 0xF) | h0) as i8;
            u.q[j + 16] = ((b[6 + j] >> 4) | h1) as i8;
        }
    }

    #[inline(always)]
    pub fn Q5_1(b: &[u8], u: &mut Unpacked) {
        (u.d, u.m) = (h(b, 0), h(b, 2));
        let qh = qh32(b, 4);
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            u.q[j] = ((b[8 + j] & 0xF) | h0) as i8;
            u.q[j + 16] = ((b[8 + j] >> 4) | h1) as i8;
        }
    }

    #[inline(always)]
    pub fn Q8_0(b: &[u8], u: &mut Unpacked) {
        u.d = h(b, 0);
        for j in 0..32 {
            u.q[j] = b[2 + j] as i8;
        }
        u.has_min = u.q.contains(&i8::MIN);
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[allow(non_snake_case)]
pub(super) mod simd {
    use super::super::idot::simd::{load_u8, shr_mask, store};
    use super::*;
    use core::arch::wasm32::*;

    /// Low and high nibbles of 16 bytes.
    #[inline(always)]
    fn nibbles(b: &[u8]) -> (v128, v128) {
        let v = load_u8(b);
        let m4 = u8x16_splat(0x0F);
        (v128_and(v, m4), shr_mask(v, 4, m4))
    }

    /// The fifth bits of values 0..16 and 16..32 as 0x10 bytes.
    #[inline(always)]
    fn high_bits(qh: u32) -> (v128, v128) {
        let v = u32x4_splat(qh);
        let bits = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        let lo = i8x16_swizzle(v, u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        let hi = i8x16_swizzle(v, u8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        let set = |x: v128| v128_and(i8x16_eq(v128_and(x, bits), bits), u8x16_splat(0x10));
        (set(lo), set(hi))
    }

    #[inline(always)]
    pub fn Q4_0(b: &[u8], u: &mut Unpacked) {
        u.d = h(b, 0);
        let (lo, hi) = nibbles(&b[2..18]);
        store(&mut u.q[..16], lo);
        store(&mut u.q[16..], hi);
    }

    #[inline(always)]
    pub fn Q4_1(b: &[u8], u: &mut Unpacked) {
        (u.d, u.m) = (h(b, 0), h(b, 2));
        let (lo, hi) = nibbles(&b[4..20]);
        store(&mut u.q[..16], lo);
        store(&mut u.q[16..], hi);
    }

    #[inline(always)]
    pub fn Q5_0(b: &[u8], u: &mut Unpacked) {
        u.d = h(b, 0);
        let (hl, hh) = high_bits(qh32(b, 2));
        let (lo, hi) = nibbles(&b[6..22]);
        store(&mut u.q[..16], v128_or(lo, hl));
        store(&mut u.q[16..], v128_or(hi, hh));
    }

    #[inline(always)]
    pub fn Q5_1(b: &[u8], u: &mut Unpacked) {
        (u.d, u.m) = (h(b, 0), h(b, 2));
        let (hl, hh) = high_bits(qh32(b, 4));
        let (lo, hi) = nibbles(&b[8..24]);
        store(&mut u.q[..16], v128_or(lo, hl));
        store(&mut u.q[16..], v128_or(hi, hh));
    }

    #[inline(always)]
    pub fn Q8_0(b: &[u8], u: &mut Unpacked) {
        u.d = h(b, 0);
        let (lo, hi) = (load_u8(&b[2..18]), load_u8(&b[18..34]));
        store(&mut u.q[..16], lo);
        store(&mut u.q[16..], hi);
        let min = i8x16_splat(i8::MIN);
        u.has_min = v128_any_true(v128_or(i8x16_eq(lo, min), i8x16_eq(hi, min)));
    }
}
