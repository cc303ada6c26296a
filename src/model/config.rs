//! Llama hyperparameters read from GGUF metadata, the way llama.cpp reads them.

use crate::embed::Pooling;
use crate::error::{HearthError, Result};
use crate::gguf::Metadata;

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// Linear rope scaling (1 / factor); 1 when none.
    pub rope_freq_scale: f32,
    pub context_length: usize,
    pub attention_scale: f32,
    /// How embeddings pool the tokens' hidden states (`llama.pooling_type`): None (one vector per
    /// token) when the file does not say, as llama.cpp's default for a llama model.
    pub pooling: Pooling,
    /// Mixture of experts (`llama.expert_count`): 0 for a dense model; then every layer's
    /// feed-forward is `n_expert` stacked experts of `n_ff` and a router choosing `n_expert_used`.
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// `expert_weights_scale`: the chosen experts' weights times this (0 and 1: unscaled).
    pub expert_weights_scale: f32,
    /// Rows of each expert's gate/up (`n_ff` for llama; `llama4.expert_feed_forward_length`).
    pub n_ff_exp: usize,
    /// `general.architecture`, and what Llama 4 (`llama4`) adds to llama's graph.
    pub arch: Arch,
    pub llama4: Option<Llama4>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Llama4,
}

/// Llama 4 as llama.cpp's `llama_model_llama4` builds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Llama4 {
    /// Layer `il` is a mixture of experts (with a shared expert) when `(il + 1) % step == 0`,
    /// a dense SwiGLU of `n_ff` otherwise (`interleave_moe_layer_step`; 0: none is).
    pub moe_layer_step: usize,
    /// Every `no_rope_layer_step`-th layer has no RoPE (llama.cpp hard-codes 4).
    pub no_rope_layer_step: usize,
    /// Weightless RMS norm of each q and k head after RoPE (all but the 128-expert model).
    pub kq_norm: bool,
}

impl Llama4 {
    /// llama.cpp's chunked attention: on the RoPE layers a query at position p sees only the
    /// positions from `(p / ATTN_CHUNK) · ATTN_CHUNK` (hard-coded there: no GGUF key holds it).
    pub const ATTN_CHUNK: usize = 8192;

    /// llama.cpp's attention temperature tuning: the NoPE layers' queries at position `pos` times
    /// log(floor((pos + 1) / 8192) + 1) · 0.1 + 1, in llama.cpp's mix of float and double; 1
    /// below position 8191.
    pub fn attn_temperature(pos: usize) -> f32 {
        let floor = ((pos as f32 + 1.0) / 8192.0).floor() as f64;
        ((floor + 1.0).ln() * (0.1f32 as f64) + 1.0) as f32
    }

    pub fn is_moe_layer(&self, il: usize) -> bool {
        self.moe_layer_step > 0 && (il + 1).is_multiple_of(self.moe_layer_step)
    }

    pub fn uses_rope(&self, il: usize) -> bool {
        !(il + 1).is_multiple_of(self.no_rope_layer_step)
    }
}

fn bad(key: &str, why: impl Into<String>) -> HearthError {
    HearthError::BadMetadata { key: key.into(), why: why.into() }
}

/// Upper bounds on the hyperparameters, far above any real model (Llama 3.1 405B: 126 layers,
/// 16,384 wide, 53,248 feed-forward, 128 heads, 128k context; Llama 4 Scout: 10M context), so a
/// corrupt count fails here instead of sizing work and memory. 512 layers is llama.cpp's own
/// LLAMA_MAX_LAYERS.
const MAX_LAYERS: u64 = 512;
const MAX_WIDTH: u64 = 1 << 17;
const MAX_HEADS: u64 = 1 << 12;
const MAX_CONTEXT: u64 = 1 << 24;
const MAX_VOCAB: u64 = 1 << 22;
/// llama.cpp's LLAMA_MAX_EXPERTS.
const MAX_EXPERTS: u64 = 512;

fn usize_of(md: &Metadata, key: &str, max: u64) -> Result<usize> {
    let v = md.u64(key)?;
    if v == 0 || v > max {
        return Err(bad(key, format!("{v} is out of range (1 to {max})")));
    }
    Ok(v as usize)
}

impl LlamaConfig {
    pub fn from_metadata(md: &Metadata) -> Result<Self> {
        let arch_name = md.str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "llama4" => Arch::Llama4,
            _ => return Err(HearthError::UnsupportedArchitecture(arch_name.to_string())),
        };
        let k = |s: &str| format!("{arch_name}.{s}");
        // llama.cpp refuses a llama4 model without experts, and requires the keys below.
        if arch == Arch::Llama4 && md.opt_u64(&k("expert_count"))?.unwrap_or(0) == 0 {
            return Err(HearthError::MissingMetadata(k("expert_count")));
        }
        // As llama.cpp: expert_count 0 (or absent) is a dense model; otherwise the router chooses
        // expert_used_count of them, which must be given.
        let n_expert = match md.opt_u64(&k("expert_count"))?.unwrap_or(0) {
            0 => 0,
            _ => usize_of(md, &k("expert_count"), MAX_EXPERTS)?,
        };
        let n_expert_used = match (n_expert, md.opt_u64(&k("expert_used_count"))?) {
            (0, _) => 0,
            (_, None) => return Err(HearthError::MissingMetadata(k("expert_used_count"))),
            (n, Some(_)) => usize_of(md, &k("expert_used_count"), n as u64)?,
        };
        if arch == Arch::Llama && md.opt_u64(&k("expert_shared_feed_forward_length"))?.unwrap_or(0) > 0 {
            return Err(bad(&k("expert_shared_feed_forward_length"), "shared experts in a llama model (Granite MoE) are not supported"));
        }
        let expert_weights_scale = md.opt_f64(&k("expert_weights_scale"))?.unwrap_or(0.0) as f32;
        let n_embd = usize_of(md, &k("embedding_length"), MAX_WIDTH)?;
        let n_layer = usize_of(md, &k("block_count"), MAX_LAYERS)?;
        let llama4 = match arch {
            Arch::Llama => None,
            Arch::Llama4 => {
                let moe_layer_step = match md.opt_u64(&k("interleave_moe_layer_step"))? {
                    None => return Err(HearthError::MissingMetadata(k("interleave_moe_layer_step"))),
                    Some(v) if v > MAX_LAYERS => return Err(bad(&k("interleave_moe_layer_step"), format!("{v} is out of range"))),
                    Some(v) => v as usize,
                };
                // sliding_window 0 makes llama.cpp rope every layer but the last, whose NoPE
                // temperature input it then asserts on: not a model anyone ships.
                if md.opt_u64(&k("attention.sliding_window"))? == Some(0) {
                    return Err(bad(&k("attention.sliding_window"), "0 (no chunked attention) is not supported"));
                }
                Some(Llama4 { moe_layer_step, no_rope_layer_step: 4, kq_norm: n_expert != 128 })
            }
        };
        // A dense layer's width: every layer of a llama model without experts, and llama4's
        // layers between the MoE ones (none when every layer is MoE: then llama.cpp needs none).
        let has_dense = match llama4 {
            Some(l) => (0..n_layer).any(|il| !l.is_moe_layer(il)),
            None => true,
        };
        let n_ff = match md.get(&k("feed_forward_length")) {
            Some(v) if v.is_array() => return Err(bad(&k("feed_forward_length"), "per-layer sizes are not supported")),
            None if !has_dense => 0,
            _ => usize_of(md, &k("feed_forward_length"), MAX_WIDTH)?,
        };
        let n_ff_exp = match arch {
            Arch::Llama => n_ff,
            Arch::Llama4 => match md.get(&k("expert_feed_forward_length")) {
                Some(v) if v.is_array() => return Err(bad(&k("expert_feed_forward_length"), "per-layer sizes are not supported")),
                _ => usize_of(md, &k("expert_feed_forward_length"), MAX_WIDTH)?,
            },
        };
        let n_head = usize_of(md, &k("attention.head_count"), MAX_HEADS)?;
        let n_head_kv = match md.opt_u64(&k("attention.head_count_kv"))? {
            Some(_) => usize_of(md, &k("attention.head_count_kv"), MAX_HEADS)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(bad(&k("attention.head_count_kv"), format!("{n_head} heads do not split into {n_head_kv} groups")));
        }
        let head_dim = match md.opt_u64(&k("attention.key_length"))? {
            Some(_) => usize_of(md, &k("attention.key_length"), MAX_WIDTH)?,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => return Err(bad(&k("attention.head_count"), "embedding length is not a multiple of the head count")),
        };
        if let Some(vl) = md.opt_u64(&k("attention.value_length"))? {
            if vl as usize != head_dim {
                return Err(bad(&k("attention.value_length"), "must equal the key length"));
            }
        }
        let n_rot = md.opt_u64(&k("rope.dimension_count"))?.map_or(head_dim, |v| v as usize);
        if n_rot != head_dim {
            return Err(bad(&k("rope.dimension_count"), format!("{n_rot} differs from the head size {head_dim}")));
        }
        let rms_eps = md.opt_f64(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5) as f32;
        let rope_base = md.opt_f64(&k("rope.freq_base"))?.unwrap_or(10000.0) as f32;
        // As llama.cpp: a scaling factor means linear scaling whatever the declared type, except
        // for the schemes that need more than a factor.
        let scaling = md.opt_str(&k("rope.scaling.type"))?.unwrap_or("none");
        if !matches!(scaling, "none" | "linear" | "llama3") {
            return Err(bad(&k("rope.scaling.type"), format!("'{scaling}' rope scaling is not supported (none, linear and Llama 3 rope_freqs are)")));
        }
        let factor = match md.opt_f64(&k("rope.scaling.factor"))? {
            Some(f) => Some(f),
            None => md.opt_f64(&k("rope.scale_linear"))?,
        };
        let rope_freq_scale = match factor {
            Some(f) if f > 0.0 => (1.0 / f) as f32,
            _ => 1.0,
        };
        let context_length = usize_of(md, &k("context_length"), MAX_CONTEXT)?;
        let attention_scale = match md.opt_f64(&k("attention.scale"))? {
            Some(s) if s != 0.0 => s as f32,
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        let n_vocab = match md.opt_u64(&k("vocab_size"))? {
            Some(_) => usize_of(md, &k("vocab_size"), MAX_VOCAB)?,
            None => md.opt_array("tokenizer.ggml.tokens")?.map(|a| a.len()).ok_or_else(|| HearthError::MissingMetadata("tokenizer.ggml.tokens".into()))?,
        };
        let pooling = match md.opt_u64(&k("pooling_type"))? {
            None => Pooling::None,
            Some(v) => Pooling::from_gguf(v).ok_or_else(|| bad(&k("pooling_type"), format!("{v} is not a pooling type (0 none, 1 mean, 2 cls, 3 last, 4 rank)")))?,
        };
        // llama.cpp reads this for every architecture; our attention is causal only, so a file
        // asking for bidirectional attention (an embedding model) would be computed wrongly.
        if md.opt_bool(&k("attention.causal"))? == Some(false) {
            return Err(bad(&k("attention.causal"), "non-causal (bidirectional) attention is not supported"));
        }
        Ok(Self {
            n_vocab,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rms_eps,
            rope_base,
            rope_freq_scale,
            context_length,
            attention_scale,
            pooling,
            n_expert,
            n_expert_used,
            expert_weights_scale,
            n_ff_exp,
            arch,
            llama4,
        })
    }

    pub fn is_moe(&self) -> bool {
        self.n_expert > 0
    }

    /// Whether layer `il`'s feed-forward is a mixture of experts.
    pub fn is_moe_layer(&self, il: usize) -> bool {
        match self.llama4 {
            Some(l) => l.is_moe_layer(il),
            None => self.is_moe(),
        }
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
