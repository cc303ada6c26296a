//! load -> prefill -> decode -> stream. The engine has no clock, threads or files: callers feed it
//! bytes and get tokens back through a callback, which is all the browser and the CLI both need.

use crate::backend::Backend;
use crate::error::{HearthError, Result};
use crate::gguf::{GgufStream, Metadata};
use crate::model::{Llama, Logits, ModelLoader, Sequence};
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};

pub struct Engine<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: Tokenizer,
    pub metadata: Metadata,
}

/// Feed the GGUF's bytes in chunks of any size; tensors are placed as they complete.
pub struct EngineLoader<B: Backend> {
    stream: GgufStream,
    model: ModelLoader<B>,
}

impl<B: Backend> EngineLoader<B> {
    pub fn new(backend: B) -> Self {
        Self { stream: GgufStream::new(), model: ModelLoader::new(backend) }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        self.stream.feed(chunk, &mut self.model)
    }

    /// Bytes fed so far, for progress reports.
    pub fn received(&self) -> u64 {
        self.stream.received()
    }

    pub fn finish(self) -> Result<Engine<B>> {
        let header = self.stream.finish()?;
        let tokenizer = Tokenizer::from_metadata(&header.metadata)?;
        let metadata = header.metadata.clone();
        let model = self.model.finish()?;
        if tokenizer.vocab_size() != model.config.n_vocab {
            return Err(HearthError::BadMetadata {
                key: "tokenizer.ggml.tokens".into(),
                why: format!("{} tokens but the embedding table has {} rows", tokenizer.vocab_size(), model.config.n_vocab),
            });
        }
        Ok(Engine { model, tokenizer, metadata })
    }
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop when the model emits an end-of-generation token (not emitted itself).
    pub stop_at_eos: bool,
    /// Prompt tokens per forward pass while prefilling.
    pub batch: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: 128, sampler: SamplerConfig::default(), stop_at_eos: true, batch: 64 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// max_tokens reached.
    Length,
    /// An end-of-generation token.
    Eos,
    /// The context is full.
    Context,
    /// The callback asked to stop.
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
}

/// What the callback sees for each generated token.
pub struct TokenEvent<'a> {
    /// None for the final flush of bytes that never completed a character.
    pub id: Option<u32>,
    /// Newly complete text (may be empty while a character spans tokens).
    pub text: &'a str,
}

impl<B: Backend> Engine<B> {
    /// Tokenize a prompt: BOS as the model's metadata asks, special-token text kept as text.
    pub fn tokenize_prompt(&self, prompt: &str) -> Vec<u32> {
        self.tokenizer.encode(prompt, true, false)
    }

    pub fn new_sequence(&self, n_ctx: usize) -> Result<Sequence<B>> {
        self.model.new_sequence(n_ctx)
    }

    /// Prefill `tokens` in chunks and return the logits after the last one.
    pub fn prefill(&self, seq: &mut Sequence<B>, tokens: &[u32], batch: usize) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(HearthError::InvalidArgument("the prompt is empty".into()));
        }
        if seq.len + tokens.len() > seq.n_ctx {
            return Err(HearthError::ContextOverflow { tokens: seq.len + tokens.len(), context: seq.n_ctx });
        }
        let chunks: Vec<&[u32]> = tokens.chunks(batch.max(1)).collect();
        let mut logits = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let want = if i + 1 == chunks.len() { Logits::Last } else { Logits::None };
            logits = self.model.forward(seq, chunk, want)?;
        }
        Ok(logits)
    }

    /// Generate from `prompt_tokens` into a fresh sequence of `n_ctx` positions. `on_token` gets
    /// every token as it is produced and returns false to stop.
    pub fn generate(
        &self,
        prompt_tokens: &[u32],
        n_ctx: usize,
        opts: &GenerateOptions,
        mut on_token: impl FnMut(TokenEvent) -> bool,
    ) -> Result<Generation> {
        let mut seq = self.new_sequence(n_ctx)?;
        let mut logits = self.prefill(&mut seq, prompt_tokens, opts.batch)?;
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut history = prompt_tokens.to_vec();
        let mut decoder = StreamDecoder::new(&self.tokenizer);
        let mut tokens = Vec::new();
        let mut text = String::new();
        let stop = loop {
            if tokens.len() >= opts.max_tokens {
                break StopReason::Length;
            }
            let id = sampler.sample(&logits, &history);
            if opts.stop_at_eos && self.tokenizer.is_eog(id) {
                break StopReason::Eos;
            }
            tokens.push(id);
            history.push(id);
            let piece = decoder.push(id);
            text.push_str(&piece);
            if !on_token(TokenEvent { id: Some(id), text: &piece }) {
                break StopReason::Cancelled;
            }
            if tokens.len() >= opts.max_tokens {
                break StopReason::Length;
            }
            if seq.len >= seq.n_ctx {
                break StopReason::Context;
            }
            logits = self.model.forward(&mut seq, &[id], Logits::Last)?;
        };
        let rest = decoder.finish();
        if !rest.is_empty() {
            text.push_str(&rest);
            on_token(TokenEvent { id: None, text: &rest });
        }
        Ok(Generation { prompt_tokens: prompt_tokens.to_vec(), tokens, text, stop })
    }

    /// Logits for every prompt position (for golden checks).
    pub fn prompt_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut seq = self.new_sequence(tokens.len().max(1))?;
        self.model.forward(&mut seq, tokens, Logits::All)
    }
}
