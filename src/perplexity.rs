//! Perplexity of a text, computed exactly as llama.cpp's `llama-perplexity` does: the text is
//! tokenized whole (BOS as the model asks), cut into `tokens / n_ctx` chunks of `n_ctx` tokens
//! (the rest is left out), each chunk run from an empty KV cache (its first token replaced by BOS
//! when the model adds one), and only the second half of each chunk scored: position j predicts
//! token j + 1 for j in n_ctx/2 .. n_ctx-1, so every scored token has at least n_ctx/2 tokens of
//! context. The negative log-likelihoods are summed in f64 over a max-shifted softmax, as there.
//!
//! `Perplexity` advances one prefill batch per `step`, so a caller (the browser's Worker) can
//! report progress and honour an abort between batches.

use crate::backend::{Backend, KvType};
use crate::engine::Engine;
use crate::error::{HearthError, Result};
use crate::model::{Logits, Sequence};
use serde::Serialize;

/// The figures `hearth perplexity --json` prints and `llm.perplexity()` returns. Outside tools rely
/// on `perplexity`, `tokens` and `chunks`.
#[derive(Clone, Debug, Serialize)]
pub struct PerplexityReport {
    /// exp(mean negative log-likelihood of the scored tokens).
    pub perplexity: f64,
    /// llama.cpp's "+/-": the standard error of the mean NLL, times the perplexity.
    pub uncertainty: f64,
    /// Tokens in the whole text.
    pub tokens: usize,
    /// Chunks of `ctx` tokens evaluated.
    pub chunks: usize,
    /// Tokens scored (`chunks * (ctx - 1 - ctx / 2)`).
    pub scored: usize,
    pub ctx: usize,
    pub batch: usize,
    /// The running estimate after each chunk (llama.cpp prints these as `[1]x,[2]y,...`).
    pub chunk_perplexities: Vec<f64>,
}

pub struct Perplexity<B: Backend> {
    tokens: Vec<u32>,
    n_ctx: usize,
    batch: usize,
    n_chunks: usize,
    bos: Option<u32>,
    seq: Sequence<B>,
    /// The chunk being evaluated and the next position in it.
    chunk: usize,
    pos: usize,
    nll: f64,
    nll2: f64,
    count: usize,
    running: Vec<f64>,
}

impl<B: Backend> Perplexity<B> {
    /// Prepare to score `text` in chunks of `n_ctx` tokens, prefilled `batch` tokens at a time,
    /// with the engine's KV cache type.
    pub fn new(engine: &Engine<B>, text: &str, n_ctx: usize, batch: usize) -> Result<Self> {
        Self::with_kv_type(engine, text, n_ctx, batch, engine.kv_type)
    }

    /// `new` with a KV cache of `kv_type`.
    pub fn with_kv_type(engine: &Engine<B>, text: &str, n_ctx: usize, batch: usize, kv_type: KvType) -> Result<Self> {
        if n_ctx < 4 {
            return Err(HearthError::InvalidArgument(format!("a perplexity context of {n_ctx} tokens is too small (at least 4)")));
        }
        let tokens = engine.tokenize_prompt(text);
        if tokens.len() < 2 * n_ctx {
            return Err(HearthError::InvalidArgument(format!(
                "the text is {} tokens; perplexity with a context of {n_ctx} needs at least {} (two chunks): use a longer text or a smaller context",
                tokens.len(),
                2 * n_ctx
            )));
        }
        let bos = if engine.tokenizer.add_bos() { engine.tokenizer.bos() } else { None };
        Ok(Self {
            n_chunks: tokens.len() / n_ctx,
            tokens,
            n_ctx,
            batch: batch.clamp(1, n_ctx),
            bos,
            seq: engine.new_sequence_with(n_ctx, kv_type)?,
            chunk: 0,
            pos: 0,
            nll: 0.0,
            nll2: 0.0,
            count: 0,
            running: Vec::new(),
        })
    }

    pub fn tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn chunks(&self) -> usize {
        self.n_chunks
    }

    /// Chunks finished so far.
    pub fn chunks_done(&self) -> usize {
        self.chunk
    }

    /// Tokens evaluated so far, of `chunks() * ctx`.
    pub fn evaluated(&self) -> usize {
        self.chunk * self.n_ctx + self.pos
    }

    pub fn done(&self) -> bool {
        self.chunk == self.n_chunks
    }

    /// Evaluate the next batch (scoring it when it reaches the chunk's second half). Returns
    /// whether more remains.
    pub fn step(&mut self, engine: &Engine<B>) -> Result<bool> {
        crate::backend::now(self.step_async(engine))
    }

    pub async fn step_async(&mut self, engine: &Engine<B>) -> Result<bool> {
        if self.done() {
            return Ok(false);
        }
        let (n_ctx, first) = (self.n_ctx, self.n_ctx / 2);
        let start = self.chunk * n_ctx;
        let (b0, b1) = (self.pos, (self.pos + self.batch).min(n_ctx));
        let mut ids = self.tokens[start + b0..start + b1].to_vec();
        if b0 == 0 {
            self.seq.len = 0;
            if let Some(bos) = self.bos {
                ids[0] = bos;
            }
        }
        // Scored positions j (first <= j < n_ctx - 1) predict token j + 1.
        let (s0, s1) = (b0.max(first), b1.min(n_ctx - 1));
        let want = if s0 < s1 { Logits::All } else { Logits::None };
        let logits = engine.model.forward_async(&mut self.seq, &ids, want).await?;
        let n_vocab = engine.model.config.n_vocab;
        for j in s0..s1 {
            let row = &logits[(j - b0) * n_vocab..(j - b0 + 1) * n_vocab];
            let v = -log_softmax(row, self.tokens[start + j + 1] as usize);
            self.nll += v;
            self.nll2 += v * v;
            self.count += 1;
        }
        self.pos = b1;
        if self.pos == n_ctx {
            self.running.push((self.nll / self.count as f64).exp());
            self.chunk += 1;
            self.pos = 0;
        }
        Ok(!self.done())
    }

    /// The figures so far (all of them once `done`).
    pub fn report(&self) -> PerplexityReport {
        let n = self.count.max(1) as f64;
        let mean = self.nll / n;
        let ppl = mean.exp();
        let var = self.nll2 / n - mean * mean;
        let uncertainty = if var > 0.0 && self.count > 1 { (var / (n - 1.0)).sqrt() * ppl } else { 0.0 };
        PerplexityReport {
            perplexity: ppl,
            uncertainty,
            tokens: self.tokens.len(),
            chunks: self.chunk,
            scored: self.count,
            ctx: self.n_ctx,
            batch: self.batch,
            chunk_perplexities: self.running.clone(),
        }
    }

    /// Run to the end.
    pub fn run(mut self, engine: &Engine<B>, mut on_chunk: impl FnMut(&Self)) -> Result<PerplexityReport> {
        while !self.done() {
            let chunk = self.chunk;
            self.step(engine)?;
            if self.chunk != chunk {
                on_chunk(&self);
            }
        }
        Ok(self.report())
    }
}

/// log p(tok) under softmax(logits), as llama.cpp's perplexity computes it: f32 max, f64 sum of
/// expf(l - max).
fn log_softmax(logits: &[f32], tok: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    (logits[tok] - max) as f64 - sum.ln()
}
