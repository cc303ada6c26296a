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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Rng;

    /// ggml's reference: dequantize the weight (dequantize_row_q4_1/q5_1), quantize the
    /// activation (quantize_row_q8_1), and take the block dot products d*d*sumi + m*s in f64.
    fn reference(w: &[u8], five_bits: bool, x: &[f32]) -> f64 {
        let bs = if five_bits { 24 } else { 20 };
        let mut xq = vec![Q8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; 32] }; x.len() / 32];
        quantize(x, &mut xq);
        let mut sum = 0f64;
        for (b, y) in w.chunks_exact(bs).zip(&xq) {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f64();
            let m = f16::from_le_bytes([b[2], b[3]]).to_f64();
            let (qh, qs) = if five_bits { (u32::from_le_bytes([b[4], b[5], b[6], b[7]]), &b[8..]) } else { (0, &b[4..]) };
            let mut sumi = 0i64;
            for j in 0..16 {
                let x0 = (qs[j] & 0xF) as i64 | (((qh >> j) & 1) << 4) as i64;
                let x1 = (qs[j] >> 4) as i64 | (((qh >> (j + 16)) & 1) << 4) as i64;
                sumi += x0 * y.qs[j] as i64 + x1 * y.qs[j + 16] as i64;
            }
            sum += d * y.d.to_f64() * sumi as f64 + m * y.s.to_f64();
        }
        sum
    }

    #[test]
    fn q8_1_activation_blocks_are_ggmls() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.5) * 0.37).collect();
        let mut q = vec![Q8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; 32] }; 2];
        quantize(&x, &mut q);
        for (b, xs) in q.iter().zip(x.chunks_exact(32)) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let sum: i32 = b.qs.iter().map(|&v| v as i32).sum();
            assert_eq!(b.d, f16::from_f32(amax / 127.0));
            assert_eq!(b.s, f16::from_f32(sum as f32 * (amax / 127.0)), "s is f16(sum * d) with d in f32");
            assert!(b.qs.iter().any(|&v| v == 127 || v == -127));
        }
    }

    #[test]
    fn matmul_matches_the_reference_formula() {
        let mut rng = Rng::new(7);
        for five_bits in [false, true] {
            let (k, n, m) = (256, 8, 3);
            let bs = if five_bits { 24 } else { 20 };
            let mut w = vec![0u8; n * k / 32 * bs];
            for (i, b) in w.iter_mut().enumerate() {
                *b = (rng.next_u64() >> 13) as u8;
                // Keep the f16 scales d and m small and finite.
                if i % bs == 1 || i % bs == 3 {
                    *b &= 0x2f;
                }
            }
            let x: Vec<f32> = (0..m * k).map(|_| (rng.next_f64() as f32 - 0.5) * 4.0).collect();
            let weight = if five_bits { Q8_1Weight::q5_1(&w) } else { Q8_1Weight::q4_1(&w) };
            let mut out = vec![0f32; m * n];
            weight.matmul((m, k, n), &x, &mut out);
            for r in 0..m {
                for j in 0..n {
                    let want = reference(&w[j * k / 32 * bs..(j + 1) * k / 32 * bs], five_bits, &x[r * k..(r + 1) * k]);
                    let got = out[r * n + j] as f64;
                    assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "five_bits={five_bits} [{r},{j}]: {got} vs {want}");
                }
            }
        }
    }
}
