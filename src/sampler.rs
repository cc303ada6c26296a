//! Token sampling. The chain follows llama.cpp's default order: logit bias, penalties
//! (repetition, frequency, presence over a window), top-k, typical-p, top-p, min-p, temperature,
//! then a draw. The RNG is our own so that a seed gives the same tokens
//! natively and in wasm.

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 or less: greedy (argmax).
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1: off.
    pub top_p: f32,
    /// 0: off.
    pub min_p: f32,
    /// 1: off. Locally typical sampling.
    pub typical_p: f32,
    /// 1: off.
    pub repeat_penalty: f32,
    /// 0: off. Subtracted once per earlier occurrence.
    pub frequency_penalty: f32,
    /// 0: off. Subtracted once if the token occurred.
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Added to the logits of these tokens before anything else.
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            repeat_last_n: 64,
            logit_bias: Vec::new(),
            seed: 0x5eed,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Whether sampling is a plain argmax of the logits (greedy, no bias or penalties): a GPU
    /// backend can then pick the token itself and read back its id alone.
    pub fn is_argmax(&self) -> bool {
        let penalize = self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0;
        self.temperature <= 0.0 && self.logit_bias.is_empty() && !(penalize && self.repeat_last_n > 0)
    }
}

/// splitmix64: tiny, fast and identical on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct Sampler {
    pub config: SamplerConfig,
    rng: Rng,
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = Rng::new(config.seed);
        Self { config, rng }
    }

    /// Pick the next token given the logits and the tokens so far (prompt and generated).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = &self.config;
        let mut logits = logits.to_vec();
        for &(t, b) in &c.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        let penalize = c.repeat_penalty != 1.0 || c.frequency_penalty != 0.0 || c.presence_penalty != 0.0;
        if penalize && c.repeat_last_n > 0 {
            let recent = &history[history.len().saturating_sub(c.repeat_last_n)..];
            let mut counts = std::collections::HashMap::new();
            for &t in recent {
                *counts.entry(t).or_insert(0u32) += 1;
            }
            for (t, n) in counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / c.repeat_penalty } else { *l * c.repeat_penalty };
                    *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
                }
            }
        }
        if c.temperature <= 0.0 {
            return argmax(&logits);
        }
        // Masked tokens (-inf, e.g. by a grammar) are never candidates.
        let mut cand: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, &l)| l > f32::NEG_INFINITY).map(|(i, &l)| (i as u32, l)).collect();
        if cand.is_empty() {
            return argmax(&logits);
        }
        // Most likely first (ties: lower id first). A total order, so with top-k, partitioning out
        // the k best and sorting only those gives the same list as sorting the whole vocabulary
        // (128K entries for Llama 3, every token) and cutting it.
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if c.top_k > 0 && c.top_k < cand.len() {
            cand.select_nth_unstable_by(c.top_k - 1, order);
            cand.truncate(c.top_k);
        }
        cand.sort_by(order);
        let probs = |cand: &[(u32, f32)]| -> Vec<f64> {
            let max = cand[0].1 as f64;
            let e: Vec<f64> = cand.iter().map(|&(_, l)| (l as f64 - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        };
        if c.typical_p < 1.0 {
            // Keep the tokens whose surprise is closest to the entropy, up to typical_p mass.
            let p = probs(&cand);
            let entropy: f64 = p.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum();
            let mut order: Vec<usize> = (0..cand.len()).collect();
            order.sort_by(|&a, &b| (-p[a].ln() - entropy).abs().total_cmp(&(-p[b].ln() - entropy).abs()));
            let mut acc = 0.0;
            let mut keep = order.len();
            for (i, &j) in order.iter().enumerate() {
                acc += p[j];
                if acc >= c.typical_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            let kept: Vec<(u32, f32)> = order[..keep].iter().map(|&j| cand[j]).collect();
            cand = kept;
        }
        if c.top_p < 1.0 {
            let p = probs(&cand);
            let mut acc = 0.0;
            let mut keep = cand.len();
            for (i, pi) in p.iter().enumerate() {
                acc += pi;
                if acc >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if c.min_p > 0.0 {
            let p = probs(&cand);
            let floor = p[0] * c.min_p as f64;
            let keep = p.iter().take_while(|&&pi| pi >= floor).count();
            cand.truncate(keep.max(1));
        }
        let scaled: Vec<(u32, f32)> = cand.iter().map(|&(i, l)| (i, l / c.temperature)).collect();
        let p = probs(&scaled);
        let r = self.rng.next_f64();
        let mut acc = 0.0;
        for (i, pi) in p.iter().enumerate() {
            acc += pi;
            if r < acc {
                return scaled[i].0;
            }
        }
        scaled[scaled.len() - 1].0
    }
}

/// Log-probabilities of the model's distribution: the chosen token's and the `n` most likely.
pub fn logprobs(logits: &[f32], chosen: u32, n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let log_z = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
    let lp = |l: f32| (l as f64 - log_z) as f32;
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let n = n.min(idx.len());
    if n > 0 {
        idx.select_nth_unstable_by(n - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    }
    let mut top: Vec<(u32, f32)> = idx[..n].iter().map(|&i| (i, lp(logits[i as usize]))).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    (lp(logits[chosen as usize]), top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, 2.0, -1.0], &[]), 1);
    }

    #[test]
    fn repeat_penalty_changes_the_greedy_choice() {
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() });
        assert_eq!(s.sample(&[1.0, 1.5, -3.0], &[1]), 0);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 42, ..Default::default() };
        let draw = |cfg: SamplerConfig| {
            let mut s = Sampler::new(cfg);
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(cfg.clone()), draw(cfg.clone()));
        assert_ne!(draw(cfg.clone()), draw(SamplerConfig { seed: 43, ..cfg.clone() }));
        let top1 = draw(SamplerConfig { top_k: 1, ..cfg });
        assert!(top1.iter().all(|&t| t == argmax(&logits)));
    }

    /// Top-k keeps exactly the k best of the full order (ties by id), so sampling draws what it
    /// draws from those k alone with the rest masked out.
    #[test]
    fn top_k_keeps_the_k_best_of_the_whole_order() {
        let mut rng = Rng::new(7);
        // Few distinct values: many ties, also across the k-th place.
        let logits: Vec<f32> = (0..1000).map(|_| (rng.next_u64() % 13) as f32 * 0.25).collect();
        let k = 40;
        let mut order: Vec<u32> = (0..1000).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        let mut masked = vec![f32::NEG_INFINITY; 1000];
        for &i in &order[..k] {
            masked[i as usize] = logits[i as usize];
        }
        let cfg = SamplerConfig { temperature: 1.0, top_k: k, top_p: 0.9, min_p: 0.02, seed: 11, ..Default::default() };
        let (mut a, mut b) = (Sampler::new(cfg.clone()), Sampler::new(SamplerConfig { top_k: 0, ..cfg }));
        let got: Vec<u32> = (0..200).map(|_| a.sample(&logits, &[])).collect();
        let want: Vec<u32> = (0..200).map(|_| b.sample(&masked, &[])).collect();
        assert_eq!(got, want);
        assert!(got.iter().all(|t| order[..k].contains(t)));
        assert!(got.iter().collect::<std::collections::HashSet<_>>().len() > 5);
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        // One dominant token: min_p 0.5 and top_p 0.5 must both leave only it.
        let logits = [10.0, 0.0, 0.0, 0.0];
        for cfg in [
            SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.5, seed: 1, ..Default::default() },
            SamplerConfig { temperature: 1.0, top_k: 0, top_p: 0.5, min_p: 0.0, seed: 1, ..Default::default() },
        ] {
            let mut s = Sampler::new(cfg);
            assert!((0..50).all(|_| s.sample(&logits, &[]) == 0));
        }
    }

    #[test]
    fn frequency_presence_and_bias_shift_the_choice() {
        let logits = [2.0, 1.8, 0.0];
        let mut s = Sampler::new(SamplerConfig { frequency_penalty: 0.15, ..SamplerConfig::greedy() });
        assert_eq!(s.sample(&logits, &[0]), 0); // 2.0 - 0.15 > 1.8
        assert_eq!(s.sample(&logits, &[0, 0]), 1); // 2.0 - 0.3 < 1.8
        let mut s = Sampler::new(SamplerConfig { presence_penalty: 0.3, ..SamplerConfig::greedy() });
        assert_eq!(s.sample(&logits, &[0]), 1);
        let mut s = Sampler::new(SamplerConfig { logit_bias: vec![(2, 5.0)], ..SamplerConfig::greedy() });
        assert_eq!(s.sample(&logits, &[]), 2);
        let mut s = Sampler::new(SamplerConfig { repeat_last_n: 1, frequency_penalty: 1.0, ..SamplerConfig::greedy() });
        assert_eq!(s.sample(&logits, &[0, 1]), 0, "only the last token is in the window");
    }

    #[test]
    fn typical_p_keeps_the_typical_tokens() {
        // A near-uniform head and a tail of unlikely tokens: typical_p drops the tail.
        let mut logits = vec![1.0f32; 4];
        logits.extend([-6.0; 4]);
        let mut s = Sampler::new(SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, typical_p: 0.5, seed: 3, ..Default::default() });
        assert!((0..200).all(|_| s.sample(&logits, &[]) < 4));
    }

    #[test]
    fn logprobs_are_normalized_and_ranked() {
        let logits = [0.0f32, 2.0, 1.0, 2.0];
        let (chosen, top) = logprobs(&logits, 2, 3);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((chosen - (1.0f32.exp() / z).ln()).abs() < 1e-6);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        let total: f32 = logits.iter().map(|&l| (l - z.ln()).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
