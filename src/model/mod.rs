//! The Llama model: weights placed in a backend as the GGUF streams in, and the forward pass,
//! written once against `Backend`.

mod config;
mod loader;
mod lora;
mod name;

pub use config::{Arch, Llama4, LlamaConfig};
pub use loader::ModelLoader;
use loader::tensor_shapes;
pub use lora::{Adapter, AdapterBase, AdapterInfo, AdapterLoader, Adapters, LoraPair, Target, LAYER_MATRICES};
pub use name::{display_name, split_file_name};

use crate::backend::{Backend, Gating, KvType, Rope, Routing};
use crate::error::{HearthError, Result};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct Layer<B: Backend> {
    pub attn_norm: B::Vector,
    pub wq: B::Weight,
    pub wk: B::Weight,
    pub wv: B::Weight,
    pub wo: B::Weight,
    pub ffn_norm: B::Vector,
    pub ffn: Ffn<B>,
}

/// A layer's feed-forward: one SwiGLU, or a mixture of experts.
pub enum Ffn<B: Backend> {
    Dense { gate: B::Weight, up: B::Weight, down: B::Weight },
    /// `ffn_gate_inp` (the router, `[n_expert, n_embd]`) and the experts' SwiGLU matrices
    /// stacked (`ffn_{gate,up,down}_exps`, GGUF 3-D tensors).
    /// Llama 4 adds a shared expert every token goes through.
    Moe { router: B::Weight, gate: B::Weight, up: B::Weight, down: B::Weight, shared: Option<SharedExpert<B>> },
}

/// Llama 4's shared expert (`ffn_{gate,up,down}_shexp`): a SwiGLU added to the routed experts'.
pub struct SharedExpert<B: Backend> {
    pub gate: B::Weight,
    pub up: B::Weight,
    pub down: B::Weight,
}

pub struct Llama<B: Backend> {
    pub config: LlamaConfig,
    pub backend: B,
    pub tok_embd: B::Weight,
    /// None when the output projection is tied to the embedding table.
    pub output: Option<B::Weight>,
    pub output_norm: B::Vector,
    pub layers: Vec<Layer<B>>,
    pub rope: Rope,
    /// LoRA adapters in use (none after a load). Behind a lock so that they can change while the
    /// model is shared (the browser engine's `Rc`): a pass reads them under the lock, and a
    /// change waits for no pass since both happen on the engine's one thread.
    pub adapters: RwLock<Adapters<B>>,
}

/// What a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    /// The last row's logits, `n_vocab` values.
    Last,
    /// Every row's logits.
    All,
    /// Every row's hidden state after the output norm, `n_embd` values per row, no projection:
    /// what llama.cpp's embeddings mode reads for a llama model (`t_embd`, "result_norm").
    Embeddings,
}

/// The per-sequence state: the KV cache and how many positions it holds.
pub struct Sequence<B: Backend> {
    pub cache: B::KvCache,
    pub n_ctx: usize,
    pub len: usize,
    pub kv_type: KvType,
    /// The `Adapters::epoch` its cache was computed under: positions computed with other
    /// adapters (or scales) cannot be extended.
    pub adapters: u64,
}

impl<B: Backend> Llama<B> {
    /// A sequence of `n_ctx` positions whose KV cache stores `kv_type`.
    pub fn new_sequence(&self, n_ctx: usize, kv_type: KvType) -> Result<Sequence<B>> {
        if n_ctx == 0 {
            return Err(HearthError::InvalidArgument("context size must be at least 1".into()));
        }
        let block = kv_type.block_values();
        if !self.config.head_dim.is_multiple_of(block) {
            // As llama.cpp: a quantized cache's blocks must not straddle heads.
            return Err(HearthError::InvalidArgument(format!(
                "a {} KV cache needs attention heads of a multiple of {block} values; this model's have {}: use kvType \"f16\"",
                kv_type.name(),
                self.config.head_dim
            )));
        }
        let cache = self.backend.new_kv_cache(self.config.n_layer, n_ctx, self.config.kv_dim(), kv_type)?;
        Ok(Sequence { cache, n_ctx, len: 0, kv_type, adapters: self.adapters().epoch })
    }

    /// Run `tokens` at positions `seq.len..`, appending them to the sequence. Returns the logits
    /// asked for, `n_vocab` per row (or the normed hidden states, `n_embd` per row).
    pub fn forward(&self, seq: &mut Sequence<B>, tokens: &[u32], logits: Logits) -> Result<Vec<f32>> {
        crate::backend::now(self.forward_async(seq, tokens, logits))
    }

    /// `forward`, waiting for the backend's readback.
    pub async fn forward_async(&self, seq: &mut Sequence<B>, tokens: &[u32], logits: Logits) -> Result<Vec<f32>> {
        match self.forward_tensor(seq, tokens, logits)? {
            Some(t) => self.backend.read(&t).await,
            None => Ok(Vec::new()),
        }
    }

    /// `forward` without the readback: the logits stay in the backend (None for `Logits::None`).
    pub fn forward_tensor(&self, seq: &mut Sequence<B>, tokens: &[u32], logits: Logits) -> Result<Option<B::Tensor>> {
        if tokens.is_empty() {
            return Ok(None);
        }
        if seq.len + tokens.len() > seq.n_ctx {
            return Err(HearthError::ContextOverflow { tokens: seq.len + tokens.len(), context: seq.n_ctx });
        }
        let epoch = self.adapters().epoch;
        if seq.len == 0 {
            seq.adapters = epoch;
        } else if seq.adapters != epoch {
            return Err(HearthError::InvalidArgument(
                "the LoRA adapters changed since this sequence's KV cache was computed: start it again".into(),
            ));
        }
        self.backend.pass(|| self.run(seq, tokens, logits))
    }

    /// The adapters in use (a poisoned lock still holds a consistent set: every change is one
    /// push, store or remove).
    pub fn adapters(&self) -> RwLockReadGuard<'_, Adapters<B>> {
        self.adapters.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn adapters_mut(&self) -> RwLockWriteGuard<'_, Adapters<B>> {
        self.adapters.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The base model's matrices an adapter is checked against.
    pub fn adapter_base(&self) -> AdapterBase {
        AdapterBase::new(&self.config, self.output.is_none())
    }

    /// x · Wᵀ plus every adapter's scaled B (A x) for `t`, added in the adapters' order.
    fn mm(&self, ad: &Adapters<B>, x: &B::Tensor, w: &B::Weight, t: Target) -> Result<B::Tensor> {
        let be = &self.backend;
        let mut y = be.matmul(x, w)?;
        for (p, factor) in ad.for_target(t) {
            let d = be.matmul(&be.matmul(x, &p.a)?, &p.b)?;
            be.add_scaled(&mut y, &d, factor)?;
        }
        Ok(y)
    }

    /// Embedding rows plus every adapter's scaled B (A[ids]) (llama.cpp's build_inp_embd).
    fn embed(&self, ad: &Adapters<B>, tokens: &[u32]) -> Result<B::Tensor> {
        let be = &self.backend;
        let mut x = be.embed(&self.tok_embd, tokens)?;
        for (p, factor) in ad.for_target(Target::TokEmbd) {
            let d = be.matmul(&be.embed(&p.a, tokens)?, &p.b)?;
            be.add_scaled(&mut x, &d, factor)?;
        }
        Ok(x)
    }

    fn run(&self, seq: &mut Sequence<B>, tokens: &[u32], logits: Logits) -> Result<Option<B::Tensor>> {
        let (c, be) = (&self.config, &self.backend);
        let pos0 = seq.len;
        let ad = &*self.adapters();
        let mut x = self.embed(ad, tokens)?;
        for (il, l) in self.layers.iter().enumerate() {
            let at = |m: usize| Target::Layer(il, m);
            let h = be.rms_norm(&x, &l.attn_norm, c.rms_eps)?;
            let mut q = self.mm(ad, &h, &l.wq, at(0))?;
            let mut k = self.mm(ad, &h, &l.wk, at(1))?;
            let v = self.mm(ad, &h, &l.wv, at(2))?;
            // Llama 4: every fourth layer has no RoPE and sees the whole context, its queries
            // scaled by the attention temperature (1 before position 8191); the others
            // RMS-normalize each q and k head after RoPE and see only their 8192-token chunk.
            let mut chunk = 0;
            if c.llama4.is_none_or(|l4| l4.uses_rope(il)) {
                be.rope(&mut q, c.head_dim, pos0, &self.rope)?;
                be.rope(&mut k, c.head_dim, pos0, &self.rope)?;
                if let Some(l4) = c.llama4 {
                    chunk = Llama4::ATTN_CHUNK;
                    if l4.kq_norm {
                        q = be.rms_norm_heads(&q, c.head_dim, c.rms_eps)?;
                        k = be.rms_norm_heads(&k, c.head_dim, c.rms_eps)?;
                    }
                }
            } else if Llama4::attn_temperature(pos0 + tokens.len() - 1) != 1.0 {
                // It never falls with the position: 1 at the last row is 1 at every row.
                let t: Vec<f32> = (pos0..pos0 + tokens.len()).map(Llama4::attn_temperature).collect();
                be.scale_rows(&mut q, &t)?;
            }
            let a = match seq.kv_type.rotation(c.head_dim) {
                None => be.attention(&mut seq.cache, il, &q, &k, &v, pos0, c.n_head, c.n_head_kv, c.attention_scale, chunk)?,
                // A quantized cache holds rotated keys and values, as llama.cpp's (see KvType::rotation).
                Some((rk, rv)) => {
                    let mut v = v;
                    be.hadamard(&mut q, rk)?;
                    be.hadamard(&mut k, rk)?;
                    be.hadamard(&mut v, rv)?;
                    let mut a = be.attention(&mut seq.cache, il, &q, &k, &v, pos0, c.n_head, c.n_head_kv, c.attention_scale, chunk)?;
                    be.hadamard(&mut a, rv)?;
                    a
                }
            };
            be.add_assign(&mut x, &self.mm(ad, &a, &l.wo, at(3))?)?;

            let h = be.rms_norm(&x, &l.ffn_norm, c.rms_eps)?;
            let y = match &l.ffn {
                Ffn::Dense { gate, up, down } => {
                    let g = be.silu_mul(&self.mm(ad, &h, gate, at(4))?, &self.mm(ad, &h, up, at(5))?)?;
                    self.mm(ad, &g, down, at(6))?
                }
                // llama.cpp's build_moe_ffn for llama: softmax over every expert, the top k
                // renormalized, each chosen expert's SwiGLU times its weight, summed.
                Ffn::Moe { router, gate, up, down, shared: None } => {
                    let routing = Routing { n_expert: c.n_expert, k: c.n_expert_used, gating: Gating::Softmax, normalize: true, scale: c.expert_weights_scale };
                    let route = be.route(&be.matmul(&h, router)?, &routing)?;
                    let g = be.silu_mul(&be.matmul_experts(&h, gate, &route)?, &be.matmul_experts(&h, up, &route)?)?;
                    be.moe_combine(&be.matmul_experts(&g, down, &route)?, &route, true)?
                }
                // For llama4: the top k by router logit, sigmoid(logit) weighing each expert's
                // input (not its output), no renormalization; plus the shared expert.
                Ffn::Moe { router, gate, up, down, shared: Some(sh) } => {
                    let routing = Routing { n_expert: c.n_expert, k: c.n_expert_used, gating: Gating::Sigmoid, normalize: false, scale: c.expert_weights_scale };
                    let route = be.route(&be.matmul(&h, router)?, &routing)?;
                    let hw = be.moe_weigh_input(&h, &route)?;
                    let g = be.silu_mul(&be.matmul_experts(&hw, gate, &route)?, &be.matmul_experts(&hw, up, &route)?)?;
                    let mut y = be.moe_combine(&be.matmul_experts(&g, down, &route)?, &route, false)?;
                    let gs = be.silu_mul(&be.matmul(&h, &sh.gate)?, &be.matmul(&h, &sh.up)?)?;
                    be.add_assign(&mut y, &be.matmul(&gs, &sh.down)?)?;
                    y
                }
            };
            be.add_assign(&mut x, &y)?;
        }
        seq.len += tokens.len();
        let x = match logits {
            Logits::None => return Ok(None),
            Logits::Last => be.last_row(&x)?,
            Logits::All | Logits::Embeddings => x,
        };
        let x = be.rms_norm(&x, &self.output_norm, c.rms_eps)?;
        if logits == Logits::Embeddings {
            return Ok(Some(x));
        }
        match &self.output {
            Some(w) => self.mm(ad, &x, w, Target::Output).map(Some),
            // Tied: no adapter can hold a pair for it (AdapterBase refuses the embedding's).
            None => be.matmul(&x, &self.tok_embd).map(Some),
        }
    }
}
