//! Q4_1 and Q5_1 matmuls with activations quantized exactly as ggml does. candle's Q8_1
//! quantizer stores the block sum as f16(sum) * f16(d) in half precision where ggml stores
//! f16(sum * d) with d in f32; the difference shifts every dot product by m * s, measurably
//! (0.05-0.4 on fixture logits). We quantize the activations ourselves and keep candle's
//! weight-side dot products.

use candle_core::quantized::k_quants::{BlockQ4_1, BlockQ5_1, BlockQ8_1, GgmlType};
use half::f16;

/// Same layout as candle's `BlockQ8_1` (repr(C): d, s, qs; 36 bytes), whose fields are private.
#[repr(C)]
#[derive(Clone, Copy)]
struct Q8_1 {
    d: f16,
    s: f16,
    qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<Q8_1>() == std::mem::size_of::<BlockQ8_1>());

/// ggml's quantize_row_q8_1 as its x86 SIMD build computes it (127 / amax, ties to even).
fn quantize(x: &[f32], out: &mut [Q8_1]) {
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(32)) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d);
        b.s = f16::from_f32(sum as f32 * d);
    }
}

/// Weight blocks of a type whose dot products take Q8_1 activations.
pub enum Q8_1Weight {
    Q4_1(Vec<BlockQ4_1>),
    Q5_1(Vec<BlockQ5_1>),
}

fn blocks<T: GgmlType>(data: &[u8]) -> Vec<T> {
    let n = data.len() / std::mem::size_of::<T>();
    let mut v: Vec<T> = Vec::with_capacity(n);
    // SAFETY: the block types are repr(C) plain data (f16 and byte fields); any bytes are valid.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), v.as_mut_ptr() as *mut u8, n * std::mem::size_of::<T>());
        v.set_len(n);
    }
    v
}

impl Q8_1Weight {
    pub fn q4_1(data: &[u8]) -> Self {
        Self::Q4_1(blocks(data))
    }

    pub fn q5_1(data: &[u8]) -> Self {
        Self::Q5_1(blocks(data))
    }

    /// out[r * n + j] = x[r] · w[j] for `m` rows of length `k` and `n` weight rows.
    pub fn matmul(&self, (m, k, n): (usize, usize, usize), x: &[f32], out: &mut [f32]) {
        let nb = k / 32;
        let mut xq = vec![Q8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; 32] }; nb];
        for r in 0..m {
            quantize(&x[r * k..(r + 1) * k], &mut xq);
            // SAFETY: identical layout, checked above.
            let y: &[BlockQ8_1] = unsafe { std::slice::from_raw_parts(xq.as_ptr() as *const BlockQ8_1, nb) };
            let row = &mut out[r * n..(r + 1) * n];
            match self {
                Self::Q4_1(w) => row.iter_mut().zip(w.chunks_exact(nb)).for_each(|(o, wj)| *o = BlockQ4_1::vec_dot(k, wj, y)),
                Self::Q5_1(w) => row.iter_mut().zip(w.chunks_exact(nb)).for_each(|(o, wj)| *o = BlockQ5_1::vec_dot(k, wj, y)),
            }
        }
    }

    /// Rows `ids` dequantized.
    pub fn rows(&self, ids: &[u32], k: usize) -> Vec<f32> {
        let nb = k / 32;
        let mut out = vec![0f32; ids.len() * k];
        for (dst, &id) in out.chunks_exact_mut(k).zip(ids) {
            let r = id as usize * nb..(id as usize + 1) * nb;
            match self {
                Self::Q4_1(w) => BlockQ4_1::to_float(&w[r], dst),
                Self::Q5_1(w) => BlockQ5_1::to_float(&w[r], dst),
            }
        }
        out
    }
}
