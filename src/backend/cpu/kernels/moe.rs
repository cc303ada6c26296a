//! Mixture-of-experts routing and combining, as llama.cpp's `build_moe_ffn` computes them on the
//! CPU: soft_max (max-shifted, f64 sum, times 1/sum) or sigmoid (1 / (1 + e^-x)), argsort
//! descending and the first k, get_rows of the weights, sum_rows (f64) clamped at 2^-14 and a
//! division, ggml_scale; then each expert's output times its weight (ggml_mul) added in slot
//! order (ggml_add). Plain loops over rows: they vectorize, and are tiny next to the matmuls.

use super::attn;
use crate::backend::{Gating, Routing};

/// Route one token: its `n_expert` router logits to `k` (expert, weight) pairs in `ids` / `w`.
pub fn route_row(logits: &[f32], r: &Routing, probs: &mut Vec<f32>, ids: &mut [u32], w: &mut [f32]) {
    probs.clear();
    probs.extend_from_slice(logits);
    match r.gating {
        Gating::Softmax => {
            let inv = attn::softmax(probs);
            probs.iter_mut().for_each(|p| *p *= inv);
        }
        Gating::Sigmoid => probs.iter_mut().for_each(|p| *p = 1.0 / (1.0 + (-*p).exp())),
    }
    let select: &[f32] = if r.gating == Gating::Sigmoid { logits } else { probs };
    // Top k by repeated maximum: descending, the lower index first among equals.
    for s in 0..r.k {
        let mut best = None::<usize>;
        for (e, &v) in select.iter().enumerate() {
            if ids[..s].contains(&(e as u32)) {
                continue;
            }
            if best.is_none_or(|b| v > select[b]) {
                best = Some(e);
            }
        }
        let e = best.unwrap_or(0);
        ids[s] = e as u32;
        w[s] = probs[e];
    }
    if r.normalize {
        let sum = (w.iter().map(|&v| v as f64).sum::<f64>() as f32).max(6.103_515_6e-5);
        w.iter_mut().for_each(|v| *v /= sum);
    }
    if r.scale != 0.0 && r.scale != 1.0 {
        w.iter_mut().for_each(|v| *v *= r.scale);
    }
}

/// out (one token's row) = Σ_s y_s · w_s (or Σ_s y_s), products rounded before each sum.
pub fn combine_row(ys: &[f32], n: usize, w: Option<&[f32]>, out: &mut [f32]) {
    for (s, y) in ys.chunks_exact(n).enumerate() {
        let ws = w.map_or(1.0, |w| w[s]);
        if s == 0 {
            for (o, &v) in out.iter_mut().zip(y) {
                *o = if w.is_some() { v * ws } else { v };
            }
        } else {
            for (o, &v) in out.iter_mut().zip(y) {
                *o += if w.is_some() { v * ws } else { v };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_routing_chooses_the_largest_and_renormalizes() {
        let r = Routing { n_expert: 4, k: 2, gating: Gating::Softmax, normalize: true, scale: 0.0 };
        let (mut ids, mut w) = ([0u32; 2], [0f32; 2]);
        route_row(&[0.1, 2.0, -1.0, 1.0], &r, &mut Vec::new(), &mut ids, &mut w);
        assert_eq!(ids, [1, 3]);
        let e = (2.0f32 - 1.0).exp();
        assert!((w[0] - e / (e + 1.0)).abs() < 1e-6 && (w[0] + w[1] - 1.0).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn sigmoid_routing_selects_on_logits_and_keeps_raw_weights() {
        let r = Routing { n_expert: 3, k: 1, gating: Gating::Sigmoid, normalize: false, scale: 0.0 };
        let (mut ids, mut w) = ([0u32; 1], [0f32; 1]);
        // sigmoid(40) and sigmoid(30) are both 1.0 in f32: the logits decide.
        route_row(&[30.0, 40.0, -1.0], &r, &mut Vec::new(), &mut ids, &mut w);
        assert_eq!((ids, w), ([1], [1.0]));
    }
}
