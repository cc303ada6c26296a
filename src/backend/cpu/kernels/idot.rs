//! Integer dot products shared by the quantized families. A weight block is unpacked to one byte
//! per value, and every type but Q8_0 unpacks to *unsigned* values in 0..=63: the offset of the
//! symmetric types (Q4_0's 8, Q5_0's 16, Q3_K's 4, Q6_K's 32) is taken off afterwards with the
//! activations' block sums, as ggml's x86 code does around pmaddubsw. A 7-bit operand is what the
//! relaxed-SIMD dot instruction needs to give the same result on every CPU (with the top bit set
//! it is implementation-defined), so the same unpacking serves the SIMD128 and the relaxed build;
//! below 64, two of its i16 pair sums can be added before widening (see `Dot16::dot32`).
//! Integer sums are exact, so every version (scalar, SIMD128, relaxed SIMD, AVX2) returns the same
//! integers.
//!
//! The relaxed build (cargo feature `relaxed`, wasm32 only) adds the `Relaxed` instruction set,
//! which the matmul driver runs inside a `#[target_feature(enable = "relaxed-simd")]` function:
//! only these kernels change, so the build shares every compiled dependency with the plain one.

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
use crate::wasm_simd::v128;

// Scalar reference: what runs off wasm, and what the wasm tests compare against.
#[cfg_attr(all(target_family = "wasm", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot32_ref(a: &[i8; 32], b: &[i8; 32]) -> i32 {
    let mut s = 0i32;
    for i in 0..32 {
        s += a[i] as i32 * b[i] as i32;
    }
    s
}

/// Σ_g sc[g] * Σ_l u[16g + l] * a[16g + l] over one 256-value super-block of 16 groups; u in
/// 0..=63. `PAIRED`: 8 groups of 32 values instead (Q4_K / Q5_K), scales in `sc[..8]`.
#[inline(always)]
pub fn dot256<const PAIRED: bool>(u: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        simd::dot256::<PAIRED>(u, a, sc)
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        dot256_ref::<PAIRED>(u, a, sc)
    }
}

// Scalar reference: what runs off wasm, and what the wasm tests compare against.
#[cfg_attr(all(target_family = "wasm", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot256_ref<const PAIRED: bool>(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
    let size = if PAIRED { 32 } else { 16 };
    let mut sum = 0i32;
    for (g, (qg, ag)) in q.chunks_exact(size).zip(a.chunks_exact(size)).enumerate() {
        let t: i32 = qg.iter().zip(ag).map(|(&q, &a)| q as i32 * a as i32).sum();
        sum += t * sc[g] as i32;
    }
    sum
}

/// Σ_g m[g] * bsums[g]: the K-quants' minimum and offset terms.
#[inline(always)]
pub fn dot16_i16(m: &[i16; 16], bsums: &[i16; 16]) -> i32 {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        simd::dot16_i16(m, bsums)
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        dot16_i16_ref(m, bsums)
    }
}

#[cfg_attr(all(target_family = "wasm", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot16_i16_ref(m: &[i16; 16], bsums: &[i16; 16]) -> i32 {
    m.iter().zip(bsums).map(|(&m, &b)| m as i32 * b as i32).sum()
}

/// Σ_j m[j] * bsums[j] over 8 groups of 32 (Q4_K / Q5_K minimums).
#[inline(always)]
pub fn dot8_i16(m: &[i16; 8], bsums: &[i16; 8]) -> i32 {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        simd::hsum_i32(crate::wasm_simd::i32x4_dot_i16x8(simd::load_i16(m), simd::load_i16(bsums)))
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        dot8_i16_ref(m, bsums)
    }
}

#[cfg_attr(all(target_family = "wasm", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot8_i16_ref(m: &[i16; 8], bsums: &[i16; 8]) -> i32 {
    m.iter().zip(bsums).map(|(&m, &b)| m as i32 * b as i32).sum()
}

/// Exact sums of the four 32-value blocks of a unit, block by block (lane i = block i).
#[cfg_attr(all(target_family = "wasm", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot4x32_ref(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
    std::array::from_fn(|b| dot32_ref(w[32 * b..32 * b + 32].try_into().unwrap(), a[32 * b..32 * b + 32].try_into().unwrap()))
}

/// The integer primitives, chosen per instruction set by the matmul driver.
pub trait Isa {
    /// Per-block sums of a unit of four 32-value blocks; u in 0..=63.
    fn dot4x32(u: &[i8; 128], a: &[i8; 128]) -> [i32; 4];
    /// The same for full-range signed weights (Q8_0).
    fn dot4x32_signed(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4];
    /// dot4x32_signed where no operand is -128 (so either can be negated): the relaxed build's
    /// Q8_0 dot, Σ |w| * (±a).
    #[inline(always)]
    fn dot4x32_symmetric(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        Self::dot4x32_signed(w, a)
    }
    fn dot256<const PAIRED: bool>(u: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32;
    /// acc + Σ over 16 value pairs of u * a * s, in i32 lanes (`s`: a scale in every i16 lane;
    /// u below 64): the fused K-quant decode kernels' step.
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    fn dot16_scaled(u: v128, a: v128, s: v128, acc: v128) -> v128;
    /// The same over 32 pairs sharing one scale (u0, a0 the first 16).
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    #[inline(always)]
    fn dot32_scaled(u0: v128, u1: v128, a0: v128, a1: v128, s: v128, acc: v128) -> v128 {
        Self::dot16_scaled(u1, a1, s, Self::dot16_scaled(u0, a0, s, acc))
    }
    /// dot256 against two activation rows (each weight vector loaded once).
    #[inline(always)]
    fn dot256_2<const PAIRED: bool>(u: &[i8; 256], a: [&[i8; 256]; 2], sc: &[i16; 16]) -> [i32; 2] {
        a.map(|a| Self::dot256::<PAIRED>(u, a, sc))
    }
}

/// Scalar, or SIMD128 on wasm (wasm32 and wasm64).
pub struct Portable;

impl Isa for Portable {
    #[inline(always)]
    fn dot4x32(u: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
        {
            simd::dot4x32::<simd::Plain>(u, a)
        }
        #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
        {
            dot4x32_ref(u, a)
        }
    }
    #[inline(always)]
    fn dot4x32_signed(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
        {
            simd::dot4x32_signed(w, a)
        }
        #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
        {
            dot4x32_ref(w, a)
        }
    }
    #[inline(always)]
    fn dot256<const PAIRED: bool>(u: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        dot256::<PAIRED>(u, a, sc)
    }
    /// Widened to i16, the weights times the scale (fits: 63 * 128), then pairs into i32.
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    #[inline(always)]
    fn dot16_scaled(u: v128, a: v128, s: v128, acc: v128) -> v128 {
        use crate::wasm_simd::*;
        let lo = i32x4_dot_i16x8(i16x8_mul(i16x8_extend_low_i8x16(u), s), i16x8_extend_low_i8x16(a));
        let hi = i32x4_dot_i16x8(i16x8_mul(i16x8_extend_high_i8x16(u), s), i16x8_extend_high_i8x16(a));
        i32x4_add(acc, i32x4_add(lo, hi))
    }
}

/// Relaxed SIMD: only inside the driver's `relaxed-simd` function (the relaxed build).
#[cfg(all(target_family = "wasm", target_feature = "simd128", feature = "relaxed"))]
pub struct Relaxed;

#[cfg(all(target_family = "wasm", target_feature = "simd128", feature = "relaxed"))]
impl Isa for Relaxed {
    #[inline(always)]
    fn dot4x32(u: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        simd::dot4x32::<simd::Relaxed>(u, a)
    }
    #[inline(always)]
    fn dot4x32_signed(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        simd::dot4x32_signed(w, a)
    }
    #[inline(always)]
    fn dot4x32_symmetric(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        simd::dot4x32_symmetric(w, a)
    }
    #[inline(always)]
    fn dot256<const PAIRED: bool>(u: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        simd::dot256_relaxed::<PAIRED, 1>(u, [a], sc)[0]
    }
    #[inline(always)]
    fn dot256_2<const PAIRED: bool>(u: &[i8; 256], a: [&[i8; 256]; 2], sc: &[i16; 16]) -> [i32; 2] {
        simd::dot256_relaxed::<PAIRED, 2>(u, a, sc)
    }
    /// One pmaddubsw, one pmaddwd with the scale.
    #[inline(always)]
    fn dot16_scaled(u: v128, a: v128, s: v128, acc: v128) -> v128 {
        use crate::wasm_simd::*;
        i32x4_add(acc, i32x4_dot_i16x8(i16x8_relaxed_dot_i8x16_i7x16(a, u), s))
    }
    /// Two pmaddubsw summed in i16 (u below 64), one pmaddwd with the scale.
    #[inline(always)]
    fn dot32_scaled(u0: v128, u1: v128, a0: v128, a1: v128, s: v128, acc: v128) -> v128 {
        use crate::wasm_simd::*;
        let p = i16x8_add(i16x8_relaxed_dot_i8x16_i7x16(a0, u0), i16x8_relaxed_dot_i8x16_i7x16(a1, u1));
        i32x4_add(acc, i32x4_dot_i16x8(p, s))
    }
}

/// AVX2. Only the driver's AVX2 build uses it, after checking that the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
pub struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    #[inline(always)]
    fn dot4x32(u: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        Self::dot4x32_signed(u, a)
    }
    #[inline(always)]
    fn dot4x32_signed(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        // SAFETY: reached only from code that checked for AVX2 (matmul::rows). avx2::dot32 widens
        // both operands as signed.
        std::array::from_fn(|b| unsafe {
            avx2::dot32(w[32 * b..32 * b + 32].try_into().unwrap(), a[32 * b..32 * b + 32].try_into().unwrap())
        })
    }
    #[inline(always)]
    fn dot256<const PAIRED: bool>(u: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        // SAFETY: as above.
        unsafe { avx2::dot256::<PAIRED>(u, a, sc) }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn widen(p: *const i8) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const __m128i))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01001110>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10110001>(s));
        _mm_cvtsi128_si32(s)
    }

    /// Any signed bytes (both operands sign-extended to i16).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let lo = _mm256_madd_epi16(widen(a), widen(b));
        let hi = _mm256_madd_epi16(widen(a.add(16)), widen(b.add(16)));
        hsum(_mm256_add_epi32(lo, hi))
    }

    /// q * scale fits i16 (q in 0..=127, |scale| <= 128), and pairs of (q * scale) * a fit i32.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot256<const PAIRED: bool>(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        let mut acc = _mm256_setzero_si256();
        for g in 0..16 {
            let s = sc[if PAIRED { g / 2 } else { g }];
            let qs = _mm256_mullo_epi16(widen(q.as_ptr().add(16 * g)), _mm256_set1_epi16(s));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(qs, widen(a.as_ptr().add(16 * g))));
        }
        hsum(acc)
    }
}

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
pub mod simd {
    use crate::wasm_simd::*;

    /// acc + Σ u[i] * a[i] over 16 byte pairs, spread over the 4 lanes; u must be in 0..=127.
    pub trait Dot16 {
        fn dot16(u: v128, a: v128, acc: v128) -> v128;
        /// acc + Σ over 32 byte pairs (u0, a0 the first 16, u1, a1 the next); u below 64.
        #[inline(always)]
        fn dot32(u0: v128, u1: v128, a0: v128, a1: v128, acc: v128) -> v128 {
            Self::dot16(u1, a1, Self::dot16(u0, a0, acc))
        }
    }

    /// SIMD128: widen to i16 and multiply-add pairs (x86: pmovsxbw, pmaddwd).
    pub struct Plain;
    impl Dot16 for Plain {
        #[inline(always)]
        fn dot16(u: v128, a: v128, acc: v128) -> v128 {
            dot16_signed(u, a, acc)
        }
    }

    /// One relaxed-SIMD instruction (x86 in V8: vpdpbusd with AVX-VNNI, else pmaddubsw +
    /// pmaddwd + paddd). Exact because u, the unsigned operand, is below 128. Only inlined into
    /// code compiled with the relaxed-simd target feature.
    #[cfg(feature = "relaxed")]
    pub struct Relaxed;
    #[cfg(feature = "relaxed")]
    impl Dot16 for Relaxed {
        #[inline(always)]
        fn dot16(u: v128, a: v128, acc: v128) -> v128 {
            i32x4_relaxed_dot_i8x16_i7x16_add(a, u, acc)
        }
        /// Two pmaddubsw, their i16 sum (below 64 * 128 * 4 in magnitude), one pmaddwd.
        #[inline(always)]
        fn dot32(u0: v128, u1: v128, a0: v128, a1: v128, acc: v128) -> v128 {
            let p = i16x8_add(i16x8_relaxed_dot_i8x16_i7x16(a0, u0), i16x8_relaxed_dot_i8x16_i7x16(a1, u1));
            i32x4_add(acc, i32x4_extadd_pairwise_i16x8(p))
        }
    }

    /// acc + Σ w[i] * a[i] over 16 pairs of any signed bytes.
    #[inline(always)]
    pub fn dot16_signed(w: v128, a: v128, acc: v128) -> v128 {
        let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(a));
        let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(a));
        i32x4_add(acc, i32x4_add(lo, hi))
    }

    /// (v >> n) & mask in every byte, with a 16-bit shift: the bits it brings in from the next
    /// byte land above `mask` (which must be below 256 >> n). V8 lowers an 8-bit shift to this
    /// shift plus a mask it rebuilds at every use.
    #[inline(always)]
    pub fn shr_mask(v: v128, n: u32, mask: v128) -> v128 {
        v128_and(u16x8_shr(v, n), mask)
    }

    /// v << n in every byte whose value is below 256 >> n (so no bit crosses into the next byte),
    /// with a 16-bit shift (see shr_mask).
    #[inline(always)]
    pub fn shl_small(v: v128, n: u32) -> v128 {
        i16x8_shl(v, n)
    }

    #[inline(always)]
    pub fn hsum_i32(v: v128) -> i32 {
        let v = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        let v = i32x4_add(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
        i32x4_extract_lane::<0>(v)
    }

    /// [Σ a, Σ b, Σ c, Σ d] (lane sums of four vectors at once).
    #[inline(always)]
    pub fn hsum4(a: v128, b: v128, c: v128, d: v128) -> v128 {
        let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
        let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(c, d), i32x4_shuffle::<2, 6, 3, 7>(c, d));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
    }

    /// 16 bytes at `p` (any alignment).
    #[inline(always)]
    pub fn load(p: &[i8]) -> v128 {
        assert!(p.len() >= 16);
        // SAFETY: 16 readable bytes; v128_load takes unaligned addresses.
        unsafe { v128_load(p.as_ptr() as *const v128) }
    }

    #[inline(always)]
    pub fn load_u8(p: &[u8]) -> v128 {
        assert!(p.len() >= 16);
        // SAFETY: as above.
        unsafe { v128_load(p.as_ptr() as *const v128) }
    }

    #[inline(always)]
    pub fn load_i16(p: &[i16]) -> v128 {
        assert!(p.len() >= 8);
        // SAFETY: as above.
        unsafe { v128_load(p.as_ptr() as *const v128) }
    }

    #[inline(always)]
    pub fn store(p: &mut [i8], v: v128) {
        assert!(p.len() >= 16);
        // SAFETY: 16 writable bytes; unaligned stores are allowed.
        unsafe { v128_store(p.as_mut_ptr() as *mut v128, v) }
    }

    #[inline(always)]
    pub fn store_i16(p: &mut [i16], v: v128) {
        assert!(p.len() >= 8);
        // SAFETY: as above.
        unsafe { v128_store(p.as_mut_ptr() as *mut v128, v) }
    }

    #[inline(always)]
    fn lanes(v: v128) -> [i32; 4] {
        // SAFETY: 16 bytes either way.
        unsafe { core::mem::transmute(v) }
    }

    /// Per-block sums of four 32-value blocks: each block's partial sums spread over four lanes,
    /// then the four reduced together.
    #[inline(always)]
    pub fn dot4x32<D: Dot16>(u: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        let z = i32x4_splat(0);
        let g = |b: usize| D::dot32(load(&u[32 * b..]), load(&u[32 * b + 16..]), load(&a[32 * b..]), load(&a[32 * b + 16..]), z);
        lanes(hsum4(g(0), g(1), g(2), g(3)))
    }

    #[inline(always)]
    pub fn dot4x32_signed(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        let z = i32x4_splat(0);
        let g = |b: usize| {
            dot16_signed(load(&w[32 * b + 16..]), load(&a[32 * b + 16..]), dot16_signed(load(&w[32 * b..]), load(&a[32 * b..]), z))
        };
        lanes(hsum4(g(0), g(1), g(2), g(3)))
    }

    /// Σ w * a as Σ |w| * (a negated where w < 0): |w| is the 7-bit operand. Exact when no
    /// operand is -128 (|-128| has the top bit set, and -(-128) does not fit).
    #[cfg(feature = "relaxed")]
    #[inline(always)]
    pub fn dot4x32_symmetric(w: &[i8; 128], a: &[i8; 128]) -> [i32; 4] {
        let half = |w: v128, a: v128, acc: v128| {
            // All ones where w < 0 (a compare: V8 has no 8-bit arithmetic shift on x86).
            let neg = i8x16_lt(w, i8x16_splat(0));
            Relaxed::dot16(i8x16_abs(w), i8x16_sub(v128_xor(a, neg), neg), acc)
        };
        let z = i32x4_splat(0);
        let g = |b: usize| half(load(&w[32 * b + 16..]), load(&a[32 * b + 16..]), half(load(&w[32 * b..]), load(&a[32 * b..]), z));
        lanes(hsum4(g(0), g(1), g(2), g(3)))
    }

    /// The relaxed dot256: `Relaxed::dot32_scaled` (or `dot16_scaled`) per group, so the scales
    /// cost no separate step.
    #[cfg(feature = "relaxed")]
    #[inline(always)]
    pub fn dot256_relaxed<const PAIRED: bool, const R: usize>(u: &[i8; 256], a: [&[i8; 256]; R], sc: &[i16; 16]) -> [i32; R] {
        let (s_lo, s_hi) = (load_i16(&sc[..8]), load_i16(&sc[8..]));
        let mut acc = [i32x4_splat(0); R];
        // Unrolled by hand: the scale splats need constant lanes. Group g: values at g * width;
        // each weight vector and scale splat is loaded once for the R rows.
        macro_rules! groups {
            ($s:ident, $first:literal: $($l:literal)*) => {$(
                let s = i16x8_shuffle::<$l, $l, $l, $l, $l, $l, $l, $l>($s, $s);
                let g = $first + $l;
                if PAIRED {
                    let (u0, u1) = (load(&u[32 * g..]), load(&u[32 * g + 16..]));
                    for r in 0..R {
                        acc[r] = <super::Relaxed as super::Isa>::dot32_scaled(u0, u1, load(&a[r][32 * g..]), load(&a[r][32 * g + 16..]), s, acc[r]);
                    }
                } else {
                    let u0 = load(&u[16 * g..]);
                    for r in 0..R {
                        acc[r] = <super::Relaxed as super::Isa>::dot16_scaled(u0, load(&a[r][16 * g..]), s, acc[r]);
                    }
                }
            )*};
        }
        groups!(s_lo, 0: 0 1 2 3 4 5 6 7);
        if !PAIRED {
            groups!(s_hi, 8: 0 1 2 3 4 5 6 7);
        }
        acc.map(hsum_i32)
    }

    /// Group sums first (four groups' lanes reduced together), then one multiply by the scales per
    /// four groups.
    #[inline(always)]
    pub fn dot256<const PAIRED: bool>(u: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        let z = i32x4_splat(0);
        let s_lo = load_i16(&sc[..8]);
        let mut acc = z;
        if PAIRED {
            let s = s_lo;
            for h in 0..2 {
                let g = |j: usize| {
                    let at = (4 * h + j) * 32;
                    Plain::dot16(load(&u[at + 16..]), load(&a[at + 16..]), Plain::dot16(load(&u[at..]), load(&a[at..]), z))
                };
                let sums = hsum4(g(0), g(1), g(2), g(3));
                let scales = if h == 0 { i32x4_extend_low_i16x8(s) } else { i32x4_extend_high_i16x8(s) };
                acc = i32x4_add(acc, i32x4_mul(sums, scales));
            }
        } else {
            let s_hi = load_i16(&sc[8..]);
            for q in 0..4 {
                let g = |j: usize| {
                    let at = (4 * q + j) * 16;
                    Plain::dot16(load(&u[at..]), load(&a[at..]), z)
                };
                let sums = hsum4(g(0), g(1), g(2), g(3));
                let scales = match q {
                    0 => i32x4_extend_low_i16x8(s_lo),
                    1 => i32x4_extend_high_i16x8(s_lo),
                    2 => i32x4_extend_low_i16x8(s_hi),
                    _ => i32x4_extend_high_i16x8(s_hi),
                };
                acc = i32x4_add(acc, i32x4_mul(sums, scales));
            }
        }
        hsum_i32(acc)
    }

    #[inline(always)]
    pub fn dot16_i16(m: &[i16; 16], b: &[i16; 16]) -> i32 {
        let lo = i32x4_dot_i16x8(load_i16(&m[..8]), load_i16(&b[..8]));
        hsum_i32(i32x4_add(lo, i32x4_dot_i16x8(load_i16(&m[8..]), load_i16(&b[8..]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Rng;

    /// The unsigned operand at its extremes (0, 63) and random below 64, against signed activations
    /// at theirs (-128, 127) and random; signed weights over the whole i8 range.
    #[test]
    fn dots_match_the_reference_on_extremes() {
        let mut rng = Rng::new(3);
        for round in 0..300 {
            let mut u = [0i8; 256];
            let mut w = [0i8; 256];
            let mut a = [0i8; 256];
            let mut sc = [0i16; 16];
            for i in 0..256 {
                u[i] = match round % 3 {
                    0 => 0,
                    1 => 127,
                    _ => (rng.next_u64() >> 57) as i8,
                };
                w[i] = match round % 3 {
                    0 => -128,
                    1 => 127,
                    _ => (rng.next_u64() >> 7) as i8,
                };
                a[i] = match round % 5 {
                    0 => -128,
                    1 => 127,
                    _ => (rng.next_u64() >> 9) as i8,
                };
            }
            for s in sc.iter_mut() {
                *s = ((rng.next_u64() >> 20) as i8) as i16;
            }
            // Q4_K / Q5_K: 8 6-bit scales (groups of 32).
            let mut paired = [0i16; 16];
            for j in 0..8 {
                paired[j] = sc[j] & 63;
            }
            // Unpacked weights are below 64 (Q6_K's 6 bits at most) and Q6_K's scales reach -128:
            // the relaxed i16 steps at their limits.
            let u63 = u.map(|v| v & 63);
            let sc = sc.map(|v| if round % 7 == 0 { -128 } else { v });
            check_isa::<Portable>(&u63, &w, &a, &sc, &paired);
            // Block sums of 16 and 32 activations at their extremes.
            let (b16, b32): ([i16; 16], [i16; 8]) = (std::array::from_fn(|i| a[i] as i16 * 16), std::array::from_fn(|i| a[i] as i16 * 32));
            assert_eq!(dot16_i16(&sc, &b16), dot16_i16_ref(&sc, &b16));
            let m8: [i16; 8] = std::array::from_fn(|i| paired[i]);
            assert_eq!(dot8_i16(&m8, &b32), dot8_i16_ref(&m8, &b32));
            #[cfg(all(target_family = "wasm", target_feature = "simd128", feature = "relaxed"))]
            relaxed::check(&u63, &w, &a, &sc, &paired);
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                check_isa::<Avx2>(&u63, &w, &a, &sc, &paired);
            }
            let direct: i64 = (0..256).map(|i| u[i] as i64 * a[i] as i64 * sc[i / 16] as i64).sum();
            assert_eq!(dot256_ref::<false>(&u, &a, &sc) as i64, direct);
            let direct: i64 = (0..256).map(|i| u[i] as i64 * a[i] as i64 * paired[i / 32] as i64).sum();
            assert_eq!(dot256_ref::<true>(&u, &a, &paired) as i64, direct);
        }
    }

    /// One instruction set's primitives against the scalar references: units of four blocks
    /// (unsigned below 64, signed, symmetric), super-blocks (16 groups, 8 pairs), two rows.
    #[inline(always)]
    fn check_isa<I: Isa>(u: &[i8; 256], w: &[i8; 256], a: &[i8; 256], sc: &[i16; 16], paired: &[i16; 16]) {
        let u4: &[i8; 128] = u[..128].try_into().unwrap();
        let (w4, a4): (&[i8; 128], &[i8; 128]) = (w[..128].try_into().unwrap(), a[..128].try_into().unwrap());
        assert_eq!(I::dot4x32(u4, a4), dot4x32_ref(u4, a4));
        assert_eq!(I::dot4x32_signed(w4, a4), dot4x32_ref(w4, a4));
        // Signed weights and activations in -127..=127, extremes included.
        let (ws, as_) = (w4.map(|v| v.max(-127)), a4.map(|v| v.max(-127)));
        assert_eq!(I::dot4x32_symmetric(&ws, &as_), dot4x32_ref(&ws, &as_));
        assert_eq!(I::dot256::<false>(u, a, sc), dot256_ref::<false>(u, a, sc));
        assert_eq!(I::dot256::<true>(u, a, paired), dot256_ref::<true>(u, a, paired));
        // Two rows: the second is the first reversed.
        let mut b = *a;
        b.reverse();
        assert_eq!(I::dot256_2::<false>(u, [a, &b], sc), [dot256_ref::<false>(u, a, sc), dot256_ref::<false>(u, &b, sc)]);
        assert_eq!(I::dot256_2::<true>(u, [a, &b], paired), [dot256_ref::<true>(u, a, paired), dot256_ref::<true>(u, &b, paired)]);
    }

    /// The relaxed instructions, run from a function compiled with them (as the driver does).
    #[cfg(all(target_family = "wasm", target_feature = "simd128", feature = "relaxed"))]
    mod relaxed {
        #[target_feature(enable = "relaxed-simd")]
        pub fn check(u: &[i8; 256], w: &[i8; 256], a: &[i8; 256], sc: &[i16; 16], paired: &[i16; 16]) {
            super::check_isa::<super::super::Relaxed>(u, w, a, sc, paired)
        }
    }
}
