//! Weight-matrix kernels of the CPU backend. Weights stay in their GGUF bytes; a matmul quantizes
//! the activation rows once (Q8_0 / Q8_1 / Q8_K, or f16 / bf16 rounding, exactly as ggml's x86
//! build does), then every weight block is unpacked once per tile of activation rows and dotted
//! with each. Output rows are split across rayon's global pool.
//!
//! Each type has a scalar reference (`unpack_ref` and the `*_ref` dots, the only code off wasm)
//! and a SIMD128 version on wasm32. The SIMD code computes the same integers and the same float
//! operations in the same order, so the two agree bit for bit (checked by the unit tests, which
//! run under node with `scripts/test-kernels-wasm`).

mod add_scaled;
pub mod attn;
mod float;
mod idot;
mod kquants;
mod lanes;
mod legacy;
mod matmul;
pub mod moe;
mod quantize;
mod silu;

pub use add_scaled::add_scaled;
pub use silu::silu_mul;

use crate::gguf::TensorType;

/// One weight type's block format and dot product. Kernels work in *units* of `UNIT` GGUF
/// blocks: the 32-value integer types take four blocks at a time, so that four exact block sums
/// get their float step together (one 4-lane multiply-add); the others one block. A row whose
/// block count is not a multiple of `UNIT` ends in a unit padded with zero bytes (zero scales),
/// and its activations are padded with zeros.
pub(crate) trait Kernel {
    /// Values and bytes per GGUF block.
    const QK: usize;
    const BYTES: usize;
    /// GGUF blocks per unit.
    const UNIT: usize = 1;
    /// One unit of quantized activations.
    type Act: Copy + Send + Sync;
    /// A weight unit unpacked for the dot product.
    type Unpacked;
    /// Running sums of one output.
    type Acc: Copy;
    const ACT_ZERO: Self::Act;
    const ACC_ZERO: Self::Acc;
    fn unpacked() -> Self::Unpacked;
    /// Quantize one activation row (a whole number of blocks) into `blocks.div_ceil(UNIT)` units.
    fn quantize(x: &[f32], out: &mut [Self::Act]);
    /// Unpack one unit (`UNIT * BYTES` bytes).
    fn unpack(unit: &[u8], u: &mut Self::Unpacked);
    /// The scalar reference of `unpack`.
    fn unpack_ref(unit: &[u8], u: &mut Self::Unpacked);
    fn dot<I: idot::Isa>(u: &Self::Unpacked, a: &Self::Act, acc: &mut Self::Acc);
    /// `dot` for two activation rows at once (prefill tiles): types that override it load each
    /// weight vector once for both. Same integers and float steps.
    #[inline(always)]
    fn dot2<I: idot::Isa>(u: &Self::Unpacked, a: [&Self::Act; 2], acc: [&mut Self::Acc; 2]) {
        let [a0, a1] = a;
        let [c0, c1] = acc;
        Self::dot::<I>(u, a0, c0);
        Self::dot::<I>(u, a1, c1);
    }
    /// `unpack` then `dot`, for a unit used once (decode); types with a fused version (the weights
    /// kept in registers) override it. Same integers and float steps.
    #[inline(always)]
    fn dot_packed<I: idot::Isa>(unit: &[u8], a: &Self::Act, acc: &mut Self::Acc) {
        let mut u = Self::unpacked();
        Self::unpack(unit, &mut u);
        Self::dot::<I>(&u, a, acc)
    }
    fn finish(acc: Self::Acc) -> f32;
    /// ggml's dequantize_row_* of one block (QK values).
    fn dequantize(block: &[u8], out: &mut [f32]);
}

/// Calls `$f::<Kernel>($args)` for a weight type, or evaluates `$none` for an unsupported one.
macro_rules! dispatch {
    ($ty:expr, $f:ident ( $($arg:expr),* ), $none:expr) => {
        match $ty {
            TensorType::F32 => $f::<float::F32>($($arg),*),
            TensorType::F16 => $f::<float::F16>($($arg),*),
            TensorType::BF16 => $f::<float::BF16>($($arg),*),
            TensorType::Q4_0 => $f::<legacy::Q4_0>($($arg),*),
            TensorType::Q4_1 => $f::<legacy::Q4_1>($($arg),*),
            TensorType::Q5_0 => $f::<legacy::Q5_0>($($arg),*),
            TensorType::Q5_1 => $f::<legacy::Q5_1>($($arg),*),
            TensorType::Q8_0 => $f::<legacy::Q8_0>($($arg),*),
            TensorType::Q2_K => $f::<kquants::Q2_K>($($arg),*),
            TensorType::Q3_K => $f::<kquants::Q3_K>($($arg),*),
            TensorType::Q4_K => $f::<kquants::Q4_K>($($arg),*),
            TensorType::Q5_K => $f::<kquants::Q5_K>($($arg),*),
            TensorType::Q6_K => $f::<kquants::Q6_K>($($arg),*),
            _ => $none,
        }
    };
}

fn block_size<K: Kernel>() -> usize {
    K::QK
}

/// Values per block the kernels work in for `ty` (32 for the float types), if supported.
pub fn block_values(ty: TensorType) -> Option<usize> {
    Some(dispatch!(ty, block_size(), return None))
}

/// out[r * n + j] = x[r] · w[j] for `m` activation rows of length `k` and `n` weight rows stored
/// as `ty` in `w`. `k` must be a multiple of [`block_values`].
pub fn matmul(ty: TensorType, w: &[u8], n: usize, k: usize, x: &[f32], m: usize, out: &mut [f32]) {
    dispatch!(ty, run_matmul(w, n, k, x, m, out), panic!("matmul: unsupported weight type {ty}"))
}

fn run_matmul<K: Kernel>(w: &[u8], n: usize, k: usize, x: &[f32], m: usize, out: &mut [f32]) {
    matmul::matmul::<K>(w, n, k, x, m, out)
}

/// Rows `ids` of a `[rows, k]` matrix of type `ty`, dequantized as ggml does.
pub fn dequantize_rows(ty: TensorType, w: &[u8], k: usize, ids: &[usize], out: &mut [f32]) {
    dispatch!(ty, run_dequantize(w, k, ids, out), panic!("dequantize: unsupported weight type {ty}"))
}

/// Rows `ids` of a `[rows, k]` tensor of any supported type as f32. Plain floats take any row
/// length (1-D tensors such as rope factors need not fill a block).
pub fn dequantize_any(ty: TensorType, w: &[u8], k: usize, ids: &[usize]) -> Vec<f32> {
    let mut out = vec![0f32; ids.len() * k];
    let elem = |i: usize| -> f32 {
        match ty {
            TensorType::F32 => f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]),
            TensorType::F16 => f16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])),
            _ => bf16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])),
        }
    };
    match ty {
        TensorType::F32 | TensorType::F16 | TensorType::BF16 => {
            for (dst, &id) in out.chunks_exact_mut(k).zip(ids) {
                for (c, d) in dst.iter_mut().enumerate() {
                    *d = elem(id * k + c);
                }
            }
        }
        ty => dequantize_rows(ty, w, k, ids, &mut out),
    }
    out
}

fn run_dequantize<K: Kernel>(w: &[u8], k: usize, ids: &[usize], out: &mut [f32]) {
    let nb = k / K::QK;
    let row_bytes = nb * K::BYTES;
    for (dst, &id) in out.chunks_exact_mut(k).zip(ids) {
        let row = &w[id * row_bytes..(id + 1) * row_bytes];
        for (o, b) in dst.chunks_exact_mut(K::QK).zip(row.chunks_exact(K::BYTES)) {
            K::dequantize(b, o);
        }
    }
}

/// IEEE half to f32, exactly (subnormals, infinities and NaN payloads included), written with
/// integer operations that vectorize: shift the exponent and mantissa into place, rescale by
/// 2^112, and patch infinities / NaNs.
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let o = (h & 0x7fff) << 13;
    let v = if h & 0x7c00 == 0x7c00 { o | 0x7f80_0000 } else { (f32::from_bits(o) * f32::from_bits(0x7780_0000)).to_bits() };
    f32::from_bits(v | ((h & 0x8000) << 16))
}

#[inline(always)]
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

#[cfg(test)]
mod tests;
