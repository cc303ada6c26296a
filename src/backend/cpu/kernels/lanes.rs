//! Four-lane float and integer steps of the 32-value block kernels: four blocks' exact integer
//! sums finished together (lane i = block i of a unit). The scalar versions do the same IEEE
//! operations lane by lane, so both give identical results.

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
use crate::wasm_simd::*;

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
#[inline(always)]
fn v<T>(x: [T; 4]) -> v128
where
    [T; 4]: Copy,
{
    assert!(std::mem::size_of::<[T; 4]>() == 16);
    // SAFETY: 16 bytes of plain data either way.
    unsafe { std::mem::transmute_copy(&x) }
}

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
#[inline(always)]
fn f(x: v128) -> [f32; 4] {
    // SAFETY: as above.
    unsafe { std::mem::transmute(x) }
}

#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
#[inline(always)]
fn i(x: v128) -> [i32; 4] {
    // SAFETY: as above.
    unsafe { std::mem::transmute(x) }
}

/// acc + (d1 * d2) * isum, lane by lane: the product of the two scales first, as ggml's x86
/// kernels do.
#[inline(always)]
pub fn scaled_add(acc: [f32; 4], d1: [f32; 4], d2: [f32; 4], isum: [i32; 4]) -> [f32; 4] {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        f(f32x4_add(v(acc), f32x4_mul(f32x4_mul(v(d1), v(d2)), f32x4_convert_i32x4(v(isum)))))
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        std::array::from_fn(|l| acc[l] + (d1[l] * d2[l]) * isum[l] as f32)
    }
}

/// acc + a * b, lane by lane.
#[inline(always)]
pub fn mul_add(acc: [f32; 4], a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        f(f32x4_add(v(acc), f32x4_mul(v(a), v(b))))
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        std::array::from_fn(|l| acc[l] + a[l] * b[l])
    }
}

/// isum - (sum << shift), lane by lane: a symmetric type's offset (8 or 16 times the activations'
/// block sum) taken off the dot of its unsigned stored values.
#[inline(always)]
pub fn offset(isum: [i32; 4], sum: [i32; 4], shift: u32) -> [i32; 4] {
    #[cfg(all(target_family = "wasm", target_feature = "simd128"))]
    {
        i(i32x4_sub(v(isum), i32x4_shl(v(sum), shift)))
    }
    #[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
    {
        std::array::from_fn(|l| isum[l] - (sum[l] << shift))
    }
}

/// (a0 + a1) + (a2 + a3).
#[inline(always)]
pub fn reduce(a: [f32; 4]) -> f32 {
    (a[0] + a[1]) + (a[2] + a[3])
}
