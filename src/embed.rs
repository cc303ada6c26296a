//! Embeddings, as llama.cpp computes them in embeddings mode for a llama model
//! (`llama_context` with `embeddings = true`, read by `llama_get_embeddings[_seq]`):
//!
//! - each input is tokenized as a prompt (BOS/EOS as the model's metadata asks, special-token
//!   text kept as text: llama-cpp-python's `embed`) and run from an empty KV cache, attention
//!   causal as in generation (llama.cpp only turns it off for models whose GGUF says
//!   `attention.causal = false`, which `LlamaConfig` refuses);
//! - the hidden states are taken after the output norm, before the output projection (`t_embd`,
//!   "result_norm" in llama.cpp's llama graph: `Logits::Embeddings`);
//! - pooled as the GGUF's `llama.pooling_type` says (llama.cpp's `build_pooling`): mean over the
//!   tokens, the first token (cls), the last token (last), or none: one vector per token. A file
//!   without the key gets none, as llama.cpp's default for a llama model (`hparams.pooling_type`);
//!   callers may override it, as llama.cpp's `pooling_type` context parameter does;
//! - normalized to unit Euclidean length as llama.cpp's `common_embd_normalize(.., 2)` (the
//!   default `embd_normalize` of llama-embedding and llama-server): an f64 sum of f32 squares.
//!
//! One difference: llama.cpp pools over one micro-batch (512 tokens by default), so a longer input
//! is pooled over its last micro-batch only; here the whole input is pooled.

use crate::backend::{now, Backend, KvType};
use crate::engine::Engine;
use crate::error::{HearthError, Result};
use crate::model::Logits;

/// How the tokens' hidden states become an embedding: llama.cpp's `llama_pooling_type`, with the
/// numbers the GGUF key uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// One vector per token (0).
    #[default]
    None,
    /// The mean over the tokens (1).
    Mean,
    /// The first token's (2).
    Cls,
    /// The last token's (3).
    Last,
    /// A reranker's classifier head (4): read from files, never computed here.
    Rank,
}

impl Pooling {
    /// The values an override may take (rank needs a classifier head a llama model lacks).
    pub const CHOICES: [Pooling; 4] = [Pooling::None, Pooling::Mean, Pooling::Cls, Pooling::Last];

    /// The name the CLI and the JS API use: "none", "mean", "cls", "last", "rank".
    pub fn name(self) -> &'static str {
        match self {
            Pooling::None => "none",
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
            Pooling::Rank => "rank",
        }
    }

    /// An override by name (any case): "none", "mean", "cls" or "last".
    pub fn parse(name: &str) -> Result<Pooling> {
        Pooling::CHOICES
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| HearthError::InvalidArgument(format!("pooling must be \"none\", \"mean\", \"cls\" or \"last\", got {name:?}")))
    }

    /// The GGUF's `{arch}.pooling_type` number (llama.cpp's enum: NONE 0, MEAN 1, CLS 2, LAST 3,
    /// RANK 4).
    pub fn from_gguf(v: u64) -> Option<Pooling> {
        Self::GGUF.get(usize::try_from(v).ok()?).copied()
    }

    /// The number the GGUF key stores.
    pub fn gguf(self) -> u32 {
        Self::GGUF.iter().position(|&p| p == self).expect("every pooling has a number") as u32
    }

    const GGUF: [Pooling; 5] = [Pooling::None, Pooling::Mean, Pooling::Cls, Pooling::Last, Pooling::Rank];
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// None: the model's own (`Engine::pooling`).
    pub pooling: Option<Pooling>,
    /// Scale each vector to unit Euclidean length (llama.cpp's default `embd_normalize` 2).
    pub normalize: bool,
    /// The most tokens an input may have (the context size); longer ones are `ContextOverflow`.
    pub n_ctx: usize,
    /// Tokens per forward pass.
    pub batch: usize,
    /// The KV cache type of the passes (None: the engine's, F16 unless set, as llama.cpp's).
    pub kv_type: Option<KvType>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self { pooling: None, normalize: true, n_ctx: 2048, batch: 64, kv_type: None }
    }
}

/// One input's embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// The pooling it was made with.
    pub pooling: Pooling,
    pub n_embd: usize,
    /// Tokens of the input.
    pub tokens: usize,
    /// `n_embd` values; with `Pooling::None`, `n_embd` per token.
    pub values: Vec<f32>,
}

impl Embedding {
    /// The vectors: one, or one per token with `Pooling::None`.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.values.chunks_exact(self.n_embd)
    }
}

/// Pool `hidden` (`n_embd` values per token) as llama.cpp's `build_pooling` does. Mean is its
/// product with a column of 1/n (`inp_mean`): each value times 1/n, summed in f32.
pub fn pool(hidden: &[f32], n_embd: usize, pooling: Pooling) -> Result<Vec<f32>> {
    let n = hidden.len() / n_embd;
    if n == 0 {
        return Err(HearthError::InvalidArgument("nothing to pool: the input has no tokens".into()));
    }
    let row = |i: usize| &hidden[i * n_embd..(i + 1) * n_embd];
    Ok(match pooling {
        Pooling::None => hidden.to_vec(),
        Pooling::Mean => {
            let div = 1.0 / n as f32;
            let mut out = vec![0f32; n_embd];
            for i in 0..n {
                for (o, x) in out.iter_mut().zip(row(i)) {
                    *o += x * div;
                }
            }
            out
        }
        Pooling::Cls => row(0).to_vec(),
        Pooling::Last => row(n - 1).to_vec(),
        Pooling::Rank => return Err(rank_unsupported()),
    })
}

fn rank_unsupported() -> HearthError {
    HearthError::InvalidArgument("this model's pooling is \"rank\" (a reranker's classifier head), which Hearth does not compute: pass pooling \"mean\", \"cls\" or \"last\"".into())
}

/// Scale `v` to unit Euclidean length as llama.cpp's `common_embd_normalize(v, v, n, 2)`: the
/// squares summed in f64, then each value times the f32 of 1/sqrt(sum); a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let sum: f64 = v.iter().map(|&x| (x * x) as f64).sum::<f64>().sqrt();
    let norm = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
    for x in v {
        *x *= norm;
    }
}

/// Cosine similarity of two vectors (f64 sums, as llama.cpp's `common_embd_similarity_cos`);
/// 1 when both are zero, 0 when one is.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        return if aa == 0.0 && bb == 0.0 { 1.0 } else { 0.0 };
    }
    ab / (aa.sqrt() * bb.sqrt())
}

impl<B: Backend> Engine<B> {
    /// The pooling the model's GGUF asks for (`Pooling::None` when it says nothing).
    pub fn pooling(&self) -> Pooling {
        self.model.config.pooling
    }

    /// Embeddings of several texts, each tokenized as a prompt (`tokenize_prompt`) and run from
    /// an empty cache. Every input is checked (empty, over the context) before any is run.
    pub fn embed(&self, texts: &[&str], opts: &EmbedOptions) -> Result<Vec<Embedding>> {
        let inputs: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize_prompt(t)).collect();
        for ids in &inputs {
            self.check_embed_input(ids, opts)?;
        }
        inputs.iter().map(|ids| self.embed_tokens(ids, opts)).collect()
    }

    /// The embedding of one input's token ids.
    pub fn embed_tokens(&self, tokens: &[u32], opts: &EmbedOptions) -> Result<Embedding> {
        now(self.embed_tokens_async(tokens, opts))
    }

    /// Whether `tokens` can be embedded with `opts`: not empty, within the context and the
    /// vocabulary, and a pooling Hearth computes.
    pub fn check_embed_input(&self, tokens: &[u32], opts: &EmbedOptions) -> Result<Pooling> {
        if tokens.is_empty() {
            return Err(HearthError::InvalidArgument("the input to embed is empty (no tokens)".into()));
        }
        if tokens.len() > opts.n_ctx {
            return Err(HearthError::ContextOverflow { tokens: tokens.len(), context: opts.n_ctx });
        }
        let n_vocab = self.model.config.n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(HearthError::InvalidArgument(format!("token id {bad} is outside the vocabulary of {n_vocab}")));
        }
        match opts.pooling.unwrap_or(self.pooling()) {
            Pooling::Rank => Err(rank_unsupported()),
            p => Ok(p),
        }
    }

    /// `embed_tokens`, waiting for the backend's readback: the hidden states after the output
    /// norm for every token (a fresh KV cache of the engine's type, just long enough), pooled,
    /// then normalized when asked (each token's vector with `Pooling::None`).
    pub async fn embed_tokens_async(&self, tokens: &[u32], opts: &EmbedOptions) -> Result<Embedding> {
        let pooling = self.check_embed_input(tokens, opts)?;
        let n_embd = self.model.config.n_embd;
        let mut seq = self.new_sequence_with(tokens.len(), opts.kv_type.unwrap_or(self.kv_type))?;
        let mut hidden = Vec::with_capacity(tokens.len() * n_embd);
        for chunk in tokens.chunks(opts.batch.max(1)) {
            hidden.extend(self.model.forward_async(&mut seq, chunk, Logits::Embeddings).await?);
        }
        let mut values = pool(&hidden, n_embd, pooling)?;
        if opts.normalize {
            values.chunks_exact_mut(n_embd).for_each(normalize);
        }
        Ok(Embedding { pooling, n_embd, tokens: tokens.len(), values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_names_and_gguf_numbers() {
        for (v, p) in [(0, Pooling::None), (1, Pooling::Mean), (2, Pooling::Cls), (3, Pooling::Last), (4, Pooling::Rank)] {
            assert_eq!(Pooling::from_gguf(v), Some(p));
            assert_eq!(p.gguf() as u64, v);
        }
        assert_eq!(Pooling::from_gguf(5), None);
        assert_eq!(Pooling::parse("MEAN").unwrap(), Pooling::Mean);
        assert_eq!(Pooling::parse("rank").unwrap_err().code(), "invalid_argument");
    }

    #[test]
    fn pools_and_normalizes_as_llama_cpp() {
        // Three tokens of two values.
        let h = [1.0, 2.0, 3.0, 4.0, 5.0, 9.0];
        let mean = pool(&h, 2, Pooling::Mean).unwrap();
        assert!((mean[0] - 3.0).abs() < 1e-6 && (mean[1] - 5.0).abs() < 1e-6, "{mean:?}");
        assert_eq!(pool(&h, 2, Pooling::Cls).unwrap(), vec![1.0, 2.0]);
        assert_eq!(pool(&h, 2, Pooling::Last).unwrap(), vec![5.0, 9.0]);
        assert_eq!(pool(&h, 2, Pooling::None).unwrap(), h.to_vec());
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
    }
}
