//! Integer dot products shared by the quantized families: the weight block is first unpacked to
//! one i8 per value, then multiplied with the i8 activation quants. Integer sums are exact, so the
//! SIMD128 versions return exactly what the scalar ones do.

/// Σ a[i] * b[i] over one 32-value block.
#[inline(always)]
pub fn dot32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::dot32(a, b)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        dot32_ref(a, b)
    }
}

// Scalar reference: what runs off wasm, and what the wasm tests compare against.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot32_ref(a: &[i8; 32], b: &[i8; 32]) -> i32 {
    let mut s = 0i32;
    for i in 0..32 {
        s += a[i] as i32 * b[i] as i32;
    }
    s
}

/// Σ_g sc[g] * Σ_l q[16g + l] * a[16g + l] over one 256-value super-block of 16 groups.
#[inline(always)]
pub fn dot256(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::dot256(q, a, sc)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        dot256_ref(q, a, sc)
    }
}

// Scalar reference: what runs off wasm, and what the wasm tests compare against.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128", not(test)), allow(dead_code))]
#[inline(always)]
pub fn dot256_ref(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
    let mut sums = [0i32; 16];
    for (g, s) in sums.iter_mut().enumerate() {
        let (qg, ag) = (&q[g * 16..g * 16 + 16], &a[g * 16..g * 16 + 16]);
        let mut t = 0i32;
        for l in 0..16 {
            t += qg[l] as i32 * ag[l] as i32;
        }
        *s = t * sc[g] as i32;
    }
    sums.iter().sum()
}

/// Σ_g m[g] * bsums[g]: the per-group minimum terms of the K-quants.
#[inline(always)]
pub fn dot16_i16(m: &[i16; 16], bsums: &[i16; 16]) -> i32 {
    let mut s = 0i32;
    for g in 0..16 {
        s += m[g] as i32 * bsums[g] as i32;
    }
    s
}

/// The integer primitives, chosen per instruction set by the matmul driver.
pub trait Isa {
    fn dot32(a: &[i8; 32], b: &[i8; 32]) -> i32;
    fn dot256(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32;
}

/// Scalar, or SIMD128 on wasm32.
pub struct Portable;

impl Isa for Portable {
    #[inline(always)]
    fn dot32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
        dot32(a, b)
    }
    #[inline(always)]
    fn dot256(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        dot256(q, a, sc)
    }
}

/// AVX2. Only the driver's AVX2 build uses it, after checking that the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
pub struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    #[inline(always)]
    fn dot32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
        // SAFETY: reached only from code that checked for AVX2 (matmul::rows).
        unsafe { avx2::dot32(a, b) }
    }
    #[inline(always)]
    fn dot256(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        // SAFETY: as above.
        unsafe { avx2::dot256(q, a, sc) }
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

    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let lo = _mm256_madd_epi16(widen(a), widen(b));
        let hi = _mm256_madd_epi16(widen(a.add(16)), widen(b.add(16)));
        hsum(_mm256_add_epi32(lo, hi))
    }

    /// q * scale fits i16 for every K-quant (|q| <= 32, |scale| <= 128 at most), and pairs of
    /// (q * scale) * a fit i32.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot256(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        let mut acc = _mm256_setzero_si256();
        for g in 0..16 {
            let qs = _mm256_mullo_epi16(widen(q.as_ptr().add(16 * g)), _mm256_set1_epi16(sc[g]));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(qs, widen(a.as_ptr().add(16 * g))));
        }
        hsum(acc)
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd {
    use core::arch::wasm32::*;

    /// Σ of the products of 16 i8 pairs, as 4 i32 partial sums.
    #[inline(always)]
    pub fn mul_i8(a: v128, b: v128) -> v128 {
        i32x4_add(
            i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(a, b)),
            i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(a, b)),
        )
    }

    #[inline(always)]
    pub fn hsum_i32(v: v128) -> i32 {
        let v = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        let v = i32x4_add(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
        i32x4_extract_lane::<0>(v)
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
    pub fn store(p: &mut [i8], v: v128) {
        assert!(p.len() >= 16);
        // SAFETY: 16 writable bytes; unaligned stores are allowed.
        unsafe { v128_store(p.as_mut_ptr() as *mut v128, v) }
    }

    #[inline(always)]
    pub fn dot32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
        hsum_i32(i32x4_add(mul_i8(load(&a[..16]), load(&b[..16])), mul_i8(load(&a[16..]), load(&b[16..]))))
    }

    #[inline(always)]
    pub fn dot256(q: &[i8; 256], a: &[i8; 256], sc: &[i16; 16]) -> i32 {
        let mut acc = i32x4_splat(0);
        for g in 0..16 {
            let p = mul_i8(load(&q[g * 16..]), load(&a[g * 16..]));
            acc = i32x4_add(acc, i32x4_mul(p, i32x4_splat(sc[g] as i32)));
        }
        hsum_i32(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Rng;

    #[test]
    fn dots_match_the_reference_on_extremes() {
        let mut rng = Rng::new(3);
        for round in 0..200 {
            let mut q = [0i8; 256];
            let mut a = [0i8; 256];
            let mut sc = [0i16; 16];
            for i in 0..256 {
                q[i] = match round % 3 {
                    0 => -128,
                    1 => 127,
                    _ => (rng.next_u64() >> 7) as i8,
                };
                a[i] = if round % 2 == 0 { (rng.next_u64() >> 9) as i8 } else { -127 };
            }
            for s in sc.iter_mut() {
                *s = ((rng.next_u64() >> 20) as i8) as i16;
            }
            let (q32, a32): (&[i8; 32], &[i8; 32]) = (q[..32].try_into().unwrap(), a[..32].try_into().unwrap());
            assert_eq!(dot32(q32, a32), dot32_ref(q32, a32));
            assert_eq!(dot256(&q, &a, &sc), dot256_ref(&q, &a, &sc));
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                unsafe {
                    assert_eq!(avx2::dot32(q32, a32), dot32_ref(q32, a32));
                    if round % 3 == 2 {
                        // |q| <= 32 as in every K-quant, for the i16 product with the scale.
                        let q6 = q.map(|v| v >> 2);
                        assert_eq!(avx2::dot256(&q6, &a, &sc), dot256_ref(&q6, &a, &sc));
                    }
                }
            }
            let direct: i64 = (0..256).map(|i| q[i] as i64 * a[i] as i64 * sc[i / 16] as i64).sum();
            assert_eq!(dot256_ref(&q, &a, &sc) as i64, direct);
        }
    }
}
