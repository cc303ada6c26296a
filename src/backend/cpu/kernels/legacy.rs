//! The 32-value block types: Q4_0, Q5_0, Q8_0 (against Q8_0 activations) and Q4_1, Q5_1
//! (against Q8_1), in units of four blocks. Per block: d_w * d_a * Σ q_w q_a (the product of the
//! two scales first, as ggml's x86 kernels do); the four exact block sums of a unit get that step
//! together, block i of every unit into float lane i, and the lanes are added at the end.
//! Q4_1/Q5_1 sum their m * s terms in lanes of their own, added last. Q4_0 / Q5_0 dot their
//! unsigned stored values and take 8 / 16 times the activations' block sum off, which is the
//! same integer.

#![allow(non_camel_case_types)] // ggml's type names

use super::f16_bits_to_f32 as h2f;
use super::idot::Isa;
use super::lanes;
use super::quantize::{self, Q8_0x4, Q8_1x4};
use super::Kernel;

/// Four weight blocks unpacked to one i8 per value: the stored unsigned values (0..=31, offsets
/// not taken off: see idot) for Q4_0..Q5_1, the signed quants for Q8_0.
#[derive(PartialEq, Debug)]
pub struct Unpacked {
    pub q: [i8; 128],
    pub d: [f32; 4],
    pub m: [f32; 4],
    /// Q8_0: some quant is -128 (see Isa::dot4x32_symmetric).
    pub has_min: bool,
}

/// Sums of one output: the d terms and (Q4_1 / Q5_1) the m terms, four lanes each.
pub type Acc = [[f32; 4]; 2];

fn h(b: &[u8], at: usize) -> f32 {
    h2f(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Some value is -128.
fn has_min_ref(q: &[i8; 128]) -> bool {
    q.contains(&i8::MIN)
}

fn qh32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// How a type's integer sum is formed: `offset N` (value = q - N, N * Σa taken off the 7-bit
/// dot; N = 1 << shift), `min` (value = q * d + m; Q8_1's stored sum carries the m terms),
/// `signed` (Q8_0).
macro_rules! legacy_kernel {
    ($name:ident, $bytes:expr, $act:ty, $quantize:path, $kind:ident $($shift:literal)?) => {
        pub struct $name;
        impl Kernel for $name {
            const QK: usize = 32;
            const BYTES: usize = $bytes;
            const UNIT: usize = 4;
            type Act = $act;
            type Unpacked = Unpacked;
            type Acc = Acc;
            const ACT_ZERO: $act = <$act>::ZERO;
            const ACC_ZERO: Acc = [[0.0; 4]; 2];
            fn unpacked() -> Unpacked {
                Unpacked { q: [0; 128], d: [0.0; 4], m: [0.0; 4], has_min: false }
            }
            #[inline(always)]
            fn quantize(x: &[f32], out: &mut [$act]) {
                $quantize(x, out)
            }
            #[inline(always)]
            fn unpack(unit: &[u8], u: &mut Unpacked) {
                #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
                {
                    for (i, b) in unit[..4 * $bytes].chunks_exact($bytes).enumerate() {
                        simd::$name(b, i, u);
                    }
                    simd::scales::<$bytes>(unit, u);
                    legacy_kernel!(@has_min $kind, u, simd::has_min);
                }
                #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
                Self::unpack_ref(unit, u);
            }
            #[inline(always)]
            fn dot<I: Isa>(u: &Unpacked, a: &$act, acc: &mut Acc) {
                legacy_kernel!(@dot $kind $($shift)?, u, a, acc);
            }
            #[inline(always)]
            fn finish(acc: Acc) -> f32 {
                lanes::reduce(acc[0]) + lanes::reduce(acc[1])
            }
            fn dequantize(b: &[u8], out: &mut [f32]) {
                let mut u = Self::unpacked();
                scalar::$name(b, 0, &mut u);
                for (o, &q) in out.iter_mut().zip(&u.q[..32]) {
                    *o = legacy_kernel!(@deq $kind $($shift)?, q, u);
                }
            }
            #[inline(always)]
            fn unpack_ref(unit: &[u8], u: &mut Unpacked) {
                for (i, b) in unit[..4 * $bytes].chunks_exact($bytes).enumerate() {
                    scalar::$name(b, i, u);
                }
                legacy_kernel!(@has_min $kind, u, has_min_ref);
            }
        }
    };
    (@has_min signed, $u:ident, $f:path) => {
        $u.has_min = $f(&$u.q);
    };
    (@has_min $kind:ident, $u:ident, $f:path) => {};
    (@dot offset $shift:literal, $u:ident, $a:ident, $acc:ident) => {
        $acc[0] = lanes::scaled_add($acc[0], $u.d, $a.d, lanes::offset(I::dot4x32(&$u.q, &$a.qs), $a.sum, $shift));
    };
    (@dot min, $u:ident, $a:ident, $acc:ident) => {
        $acc[0] = lanes::scaled_add($acc[0], $u.d, $a.d, I::dot4x32(&$u.q, &$a.qs));
        $acc[1] = lanes::mul_add($acc[1], $u.m, $a.s);
    };
    (@dot signed, $u:ident, $a:ident, $acc:ident) => {
        let isum = if $u.has_min || $a.has_min { I::dot4x32_signed(&$u.q, &$a.qs) } else { I::dot4x32_symmetric(&$u.q, &$a.qs) };
        $acc[0] = lanes::scaled_add($acc[0], $u.d, $a.d, isum);
    };
    // dequantize_row_*: x*d (+ m).
    (@deq offset $shift:literal, $q:ident, $u:ident) => { ($q as i32 - (1 << $shift)) as f32 * $u.d[0] };
    (@deq min, $q:ident, $u:ident) => { $q as f32 * $u.d[0] + $u.m[0] };
    (@deq signed, $q:ident, $u:ident) => { $q as f32 * $u.d[0] };
}

legacy_kernel!(Q4_0, 18, Q8_0x4, quantize::q8_0, offset 3);
legacy_kernel!(Q4_1, 20, Q8_1x4, quantize::q8_1, min);
legacy_kernel!(Q5_0, 22, Q8_0x4, quantize::q8_0, offset 4);
legacy_kernel!(Q5_1, 24, Q8_1x4, quantize::q8_1, min);
legacy_kernel!(Q8_0, 34, Q8_0x4, quantize::q8_0, signed);

/// Scalar unpacking of block `i` of a unit, transcribed from ggml's dequantize_row_* (value j and
/// j + 16 share byte j).
#[allow(non_snake_case)]
mod scalar {
    use super::*;

    #[inline(always)]
    pub fn Q4_0(b: &[u8], i: usize, u: &mut Unpacked) {
        u.d[i] = h(b, 0);
        let q = &mut u.q[32 * i..32 * i + 32];
        for j in 0..16 {
            q[j] = (b[2 + j] & 0xF) as i8;
            q[j + 16] = (b[2 + j] >> 4) as i8;
        }
    }

    #[inline(always)]
    pub fn Q4_1(b: &[u8], i: usize, u: &mut Unpacked) {
        (u.d[i], u.m[i]) = (h(b, 0), h(b, 2));
        let q = &mut u.q[32 * i..32 * i + 32];
        for j in 0..16 {
            q[j] = (b[4 + j] & 0xF) as i8;
            q[j + 16] = (b[4 + j] >> 4) as i8;
        }
    }

    #[inline(always)]
    pub fn Q5_0(b: &[u8], i: usize, u: &mut Unpacked) {
        u.d[i] = h(b, 0);
        let qh = qh32(b, 2);
        let q = &mut u.q[32 * i..32 * i + 32];
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            q[j] = ((b[6 + j] & 0xF) | h0) as i8;
            q[j + 16] = ((b[6 + j] >> 4) | h1) as i8;
        }
    }

    #[inline(always)]
    pub fn Q5_1(b: &[u8], i: usize, u: &mut Unpacked) {
        (u.d[i], u.m[i]) = (h(b, 0), h(b, 2));
        let qh = qh32(b, 4);
        let q = &mut u.q[32 * i..32 * i + 32];
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            q[j] = ((b[8 + j] & 0xF) | h0) as i8;
            q[j + 16] = ((b[8 + j] >> 4) | h1) as i8;
        }
    }

    #[inline(always)]
    pub fn Q8_0(b: &[u8], i: usize, u: &mut Unpacked) {
        u.d[i] = h(b, 0);
        for j in 0..32 {
            u.q[32 * i + j] = b[2 + j] as i8;
        }
    }
}

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
#[allow(non_snake_case)]
pub(super) mod simd {
    use super::super::idot::simd::{load, load_u8, shr_mask, store};
    use super::*;
    use crate::wasm_simd::*;

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

    /// The four blocks' f16 scales (and, for the types that have them, minimums: the next two
    /// bytes) converted together.
    #[inline(always)]
    pub fn scales<const BYTES: usize>(unit: &[u8], u: &mut Unpacked) {
        assert!(unit.len() >= 4 * BYTES);
        let word = |i: usize| u32::from_le_bytes([unit[i * BYTES], unit[i * BYTES + 1], unit[i * BYTES + 2], unit[i * BYTES + 3]]);
        let w = u32x4(word(0), word(1), word(2), word(3));
        let f = |v: v128| -> [f32; 4] {
            // SAFETY: 16 bytes either way.
            unsafe { core::mem::transmute(super::super::float::simd::h2f(v)) }
        };
        u.d = f(v128_and(w, u32x4_splat(0xffff)));
        if BYTES == 20 || BYTES == 24 {
            u.m = f(u32x4_shr(w, 16));
        }
    }

    /// The smallest value first, then one compare (OR-ing eight compares makes LLVM normalize
    /// the lanes with 8-bit shifts, which V8 expands on x86).
    #[inline(always)]
    pub fn has_min(q: &[i8; 128]) -> bool {
        let mut m = load(&q[..]);
        for c in 1..8 {
            m = i8x16_min(m, load(&q[16 * c..]));
        }
        v128_any_true(i8x16_eq(m, i8x16_splat(i8::MIN)))
    }

    #[inline(always)]
    pub fn Q4_0(b: &[u8], i: usize, u: &mut Unpacked) {
        let (lo, hi) = nibbles(&b[2..18]);
        store(&mut u.q[32 * i..], lo);
        store(&mut u.q[32 * i + 16..], hi);
    }

    #[inline(always)]
    pub fn Q4_1(b: &[u8], i: usize, u: &mut Unpacked) {
        let (lo, hi) = nibbles(&b[4..20]);
        store(&mut u.q[32 * i..], lo);
        store(&mut u.q[32 * i + 16..], hi);
    }

    #[inline(always)]
    pub fn Q5_0(b: &[u8], i: usize, u: &mut Unpacked) {
        let (hl, hh) = high_bits(qh32(b, 2));
        let (lo, hi) = nibbles(&b[6..22]);
        store(&mut u.q[32 * i..], v128_or(lo, hl));
        store(&mut u.q[32 * i + 16..], v128_or(hi, hh));
    }

    #[inline(always)]
    pub fn Q5_1(b: &[u8], i: usize, u: &mut Unpacked) {
        let (hl, hh) = high_bits(qh32(b, 4));
        let (lo, hi) = nibbles(&b[8..24]);
        store(&mut u.q[32 * i..], v128_or(lo, hl));
        store(&mut u.q[32 * i + 16..], v128_or(hi, hh));
    }

    #[inline(always)]
    pub fn Q8_0(b: &[u8], i: usize, u: &mut Unpacked) {
        store(&mut u.q[32 * i..], load_u8(&b[2..18]));
        store(&mut u.q[32 * i + 16..], load_u8(&b[18..34]));
    }
}
