//! load -> prefill -> decode -> stream. The engine has no clock, threads or files: callers feed it
//! bytes and get tokens back through a callback, which is all the browser and the CLI both need.

use crate::backend::{now, Backend, KvType};
use crate::error::{HearthError, Result};
use crate::gguf::{GgufStream, Metadata};
use crate::grammar::{Constraint, TokenIndex};
use crate::model::{AdapterInfo, AdapterLoader, Llama, Logits, ModelLoader, Sequence};
use crate::sampler::{self, Sampler, SamplerConfig};
use crate::saved::{self, SavedHeader};
use crate::stop::StopStrings;
use crate::tokenizer::{StreamDecoder, Tokenizer};
use std::sync::{Arc, OnceLock};

pub struct Engine<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: Tokenizer,
    /// The metadata of the file (of its first shard, for a split model).
    pub metadata: Metadata,
    /// The vocabulary indexed for constrained output, built on first use.
    token_index: OnceLock<Arc<TokenIndex>>,
    /// The KV cache type of the sequences and sessions made without one (`new_sequence`,
    /// `new_session`, `generate`, `prompt_logits`, `Perplexity::new`): F16, llama.cpp's default.
    pub kv_type: KvType,
}

/// Feed the GGUF's bytes in chunks of any size; tensors are placed as they complete. A split
/// model (`name-00001-of-00003.gguf`, ...) is fed shard after shard, with `next_shard` between.
pub struct EngineLoader<B: Backend> {
    stream: GgufStream,
    model: ModelLoader<B>,
    /// The first shard's metadata, once that shard has ended.
    metadata: Option<Metadata>,
    /// Bytes of the shards before the current one.
    done: u64,
}

impl<B: Backend> EngineLoader<B> {
    pub fn new(backend: B) -> Self {
        Self { stream: GgufStream::new(), model: ModelLoader::new(backend), metadata: None, done: 0 }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        self.stream.feed(chunk, &mut self.model)
    }

    /// Bytes of the file the stream holds back (the header while incomplete, then at most a
    /// piece of a tensor): what loading keeps in memory besides the weights' own storage.
    pub fn buffered(&self) -> usize {
        self.stream.buffered()
    }

    /// Bytes fed so far (all shards), for progress reports.
    pub fn received(&self) -> u64 {
        self.done + self.stream.received()
    }

    /// How many files the model is split into (1 for a whole file), once the first header is read.
    pub fn shards(&self) -> Option<u32> {
        self.model.split_count()
    }

    /// The current shard has ended: check it arrived whole, then take the next shard's bytes.
    pub fn next_shard(&mut self) -> Result<()> {
        let header_received = self.stream.received();
        let header = std::mem::take(&mut self.stream).into_header()?;
        let count = self.model.split_count().unwrap_or(1);
        let seen = self.model.shards_seen();
        if seen >= count {
            return Err(HearthError::InvalidArgument(format!("the model has {count} shard(s); there is no shard {}", seen + 1)));
        }
        if self.metadata.is_none() {
            self.metadata = Some(header.metadata);
        }
        self.done += header_received;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Engine<B>> {
        let header = self.stream.into_header()?;
        let metadata = self.metadata.take().unwrap_or(header.metadata);
        let model = self.model.finish()?;
        let tokenizer = Tokenizer::from_metadata(&metadata)?;
        if tokenizer.vocab_size() != model.config.n_vocab {
            return Err(HearthError::BadMetadata {
                key: "tokenizer.ggml.tokens".into(),
                why: format!("{} tokens but the embedding table has {} rows", tokenizer.vocab_size(), model.config.n_vocab),
            });
        }
        Ok(Engine { model, tokenizer, metadata, token_index: OnceLock::new(), kv_type: KvType::default() })
    }
}

/// The file name of shard `i` (0-based) of a split model, from the name (or URL) of its first
/// shard: `llama.cpp`'s `name-00001-of-00003.gguf` naming. None when `first` is not so named.
pub fn shard_name(first: &str, i: u32, count: u32) -> Option<String> {
    // A URL may carry a query or fragment after the file name.
    let end = first.find(['?', '#']).unwrap_or(first.len());
    let (path, rest) = first.split_at(end);
    let stem = path.strip_suffix(".gguf")?;
    let (head, tail) = stem.rsplit_once("-of-")?;
    let (prefix, no) = head.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(tail) || no != "00001" || tail.parse::<u32>().ok()? != count || i >= count {
        return None;
    }
    Some(format!("{prefix}-{:05}-of-{count:05}.gguf{rest}", i + 1))
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop when the model emits an end-of-generation token (not emitted itself).
    pub stop_at_eos: bool,
    /// Prompt tokens per forward pass while prefilling.
    pub batch: usize,
    /// Text that ends the generation (not emitted), also when it spans tokens.
    pub stop: Vec<String>,
    /// Only text this allows (JSON mode, a JSON schema); it must close within `max_tokens`, and
    /// an end-of-generation token then always ends the generation.
    pub constraint: Option<Constraint>,
    /// Report log-probabilities: the chosen token's and this many most likely alternatives.
    pub logprobs: Option<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            sampler: SamplerConfig::default(),
            stop_at_eos: true,
            batch: 64,
            stop: Vec::new(),
            constraint: None,
            logprobs: None,
        }
    }
}

/// Log-probabilities of one generated token under the distribution it was drawn from (after any
/// constraint's mask, before penalties and temperature).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    /// The most likely tokens, best first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// max_tokens reached.
    Length,
    /// An end-of-generation token.
    Eos,
    /// The context is full.
    Context,
    /// A user stop string.
    StopString,
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

/// LoRA adapters (src/model/lora.rs). Changing them changes what every cached position means:
/// a `Session` re-prefills its prompt at its next `start`, and a `Sequence` computed under other
/// adapters refuses more tokens.
impl<B: Backend + Clone> Engine<B> {
    /// A loader for an adapter of this model: feed it the adapter's GGUF bytes (streamed, checked
    /// against the model once its header is in), then `add_adapter(loader.finish()?, scale)`.
    pub fn adapter_loader(&self) -> AdapterLoader<B> {
        AdapterLoader::new(self.model.backend.clone(), self.model.adapter_base())
    }

    /// Load an adapter from its whole GGUF bytes and use it with `scale`; returns its id.
    pub fn load_adapter(&self, bytes: &[u8], scale: f32) -> Result<u32> {
        let mut loader = self.adapter_loader();
        loader.feed(bytes)?;
        let adapter = loader.finish()?;
        self.add_adapter(adapter, scale)
    }
}

impl<B: Backend> Engine<B> {
    /// Use a loaded adapter with `scale` (llama.cpp's: the deltas are multiplied by scale ·
    /// alpha / rank); returns its id.
    pub fn add_adapter(&self, adapter: crate::model::Adapter<B>, scale: f32) -> Result<u32> {
        self.model.adapters_mut().add(adapter, scale)
    }

    pub fn set_adapter_scale(&self, id: u32, scale: f32) -> Result<()> {
        self.model.adapters_mut().set_scale(id, scale)
    }

    pub fn remove_adapter(&self, id: u32) -> Result<()> {
        self.model.adapters_mut().remove(id)
    }

    /// The adapters in use, in the order their deltas are added.
    pub fn adapters(&self) -> Vec<AdapterInfo> {
        self.model.adapters().info()
    }

    /// The vocabulary indexed for constrained output (built once, on first use).
    pub fn token_index(&self) -> Arc<TokenIndex> {
        self.token_index.get_or_init(|| Arc::new(TokenIndex::new(&self.tokenizer))).clone()
    }

    /// Tokenize a prompt: BOS as the model's metadata asks, special-token text kept as text.
    pub fn tokenize_prompt(&self, prompt: &str) -> Vec<u32> {
        self.tokenizer.encode(prompt, true, false)
    }

    /// A sequence of `n_ctx` positions with the engine's KV cache type (`kv_type`).
    pub fn new_sequence(&self, n_ctx: usize) -> Result<Sequence<B>> {
        self.new_sequence_with(n_ctx, self.kv_type)
    }

    /// A sequence of `n_ctx` positions whose KV cache stores `kv_type`.
    pub fn new_sequence_with(&self, n_ctx: usize, kv_type: KvType) -> Result<Sequence<B>> {
        self.model.new_sequence(n_ctx, kv_type)
    }

    /// Prefill `tokens` in chunks and return the logits after the last one.
    pub fn prefill(&self, seq: &mut Sequence<B>, tokens: &[u32], batch: usize) -> Result<Vec<f32>> {
        now(self.prefill_async(seq, tokens, batch))
    }

    /// `prefill`, waiting for the backend's readback.
    pub async fn prefill_async(&self, seq: &mut Sequence<B>, tokens: &[u32], batch: usize) -> Result<Vec<f32>> {
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
            logits = self.model.forward_async(seq, chunk, want).await?;
        }
        Ok(logits)
    }

    /// A session of `n_ctx` positions: a KV cache (of the engine's `kv_type`) reused across the
    /// generations started in it.
    pub fn new_session(&self, n_ctx: usize) -> Result<Session<B>> {
        self.new_session_with(n_ctx, self.kv_type)
    }

    /// `new_session` with a KV cache of `kv_type`.
    pub fn new_session_with(&self, n_ctx: usize, kv_type: KvType) -> Result<Session<B>> {
        Ok(Session {
            seq: self.new_sequence_with(n_ctx, kv_type)?,
            tokens: Vec::new(),
            logits: Vec::new(),
            sampler: Sampler::new(SamplerConfig::greedy()),
            n_prompt: 0,
            max_tokens: 0,
            stop_at_eos: true,
            stop: Some(StopReason::Length),
            constraint: None,
            logprobs: None,
            last_logprobs: None,
        })
    }

    /// Start generating from `prompt_tokens` in a fresh session of `n_ctx` positions.
    pub fn start(&self, prompt_tokens: &[u32], n_ctx: usize, opts: &GenerateOptions) -> Result<Session<B>> {
        let mut session = self.new_session(n_ctx)?;
        session.start(self, prompt_tokens, opts)?;
        Ok(session)
    }

    /// Generate to the end. `on_token` gets every token and its newly complete text as produced,
    /// and returns false to stop.
    pub fn generate(
        &self,
        prompt_tokens: &[u32],
        n_ctx: usize,
        opts: &GenerateOptions,
        mut on_token: impl FnMut(TokenEvent) -> bool,
    ) -> Result<Generation> {
        let mut gen = self.start(prompt_tokens, n_ctx, opts)?;
        let mut out = TextOutput::new(&self.tokenizer, &opts.stop);
        let mut text = String::new();
        while let Some(id) = gen.next(self)? {
            let piece = out.push(id);
            text.push_str(&piece);
            let go_on = on_token(TokenEvent { id: Some(id), text: &piece });
            if out.stopped() || !go_on {
                gen.cancel();
            }
        }
        let stopped = out.stopped();
        let rest = out.finish();
        if !rest.is_empty() {
            text.push_str(&rest);
            on_token(TokenEvent { id: None, text: &rest });
        }
        let stop = if stopped { StopReason::StopString } else { gen.stop_reason().unwrap_or(StopReason::Cancelled) };
        Ok(Generation { prompt_tokens: prompt_tokens.to_vec(), tokens: gen.generated().to_vec(), text, stop })
    }

    /// Logits for every prompt position (for golden checks).
    pub fn prompt_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut seq = self.new_sequence(tokens.len().max(1))?;
        self.model.forward(&mut seq, tokens, Logits::All)
    }
}

/// Generated ids to the text a user sees: UTF-8-safe decoding, then stop strings (text that may
/// begin one is held back; the stop text itself is never returned).
pub struct TextOutput<'a> {
    decoder: StreamDecoder<'a>,
    stops: StopStrings,
    stopped: bool,
}

impl<'a> TextOutput<'a> {
    pub fn new(tokenizer: &'a Tokenizer, stop: &[String]) -> Self {
        Self { decoder: StreamDecoder::new(tokenizer), stops: StopStrings::new(stop), stopped: false }
    }

    /// The text `id` completes. Once a stop string is hit, `stopped()` is true and the
    /// generation should end.
    pub fn push(&mut self, id: u32) -> String {
        let (text, hit) = self.stops.push(&self.decoder.push(id));
        self.stopped |= hit;
        text
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// What was held back, once the generation has ended (nothing after a stop string).
    pub fn finish(mut self) -> String {
        if self.stopped {
            return String::new();
        }
        self.stops.push(&self.decoder.finish()).0 + &self.stops.finish()
    }
}

/// A conversation's state: the KV cache, the tokens it holds, and the generation in progress.
/// `start` begins a generation from a new prompt, prefilling only what differs from the cached
/// tokens (a chat turn that extends the last one re-reads nothing); `next` then yields one token
/// per call, so a caller (the browser worker) can yield, stream and abort between tokens.
pub struct Session<B: Backend> {
    seq: Sequence<B>,
    /// What the sequence holds (`..seq.len`), then at most one sampled token not yet run.
    tokens: Vec<u32>,
    /// Logits for the next token.
    logits: Vec<f32>,
    sampler: Sampler,
    /// Where the current generation's prompt ends in `tokens`.
    n_prompt: usize,
    max_tokens: usize,
    stop_at_eos: bool,
    stop: Option<StopReason>,
    /// The constraint and the vocabulary index it masks with.
    constraint: Option<(Constraint, Arc<TokenIndex>)>,
    logprobs: Option<usize>,
    last_logprobs: Option<TokenLogprobs>,
}

impl<B: Backend> Session<B> {
    /// Begin generating from `prompt`. Returns how many prompt tokens were reused from the cache.
    /// On error the session keeps a consistent cache and can start again.
    pub fn start(&mut self, engine: &Engine<B>, prompt: &[u32], opts: &GenerateOptions) -> Result<usize> {
        now(self.start_async(engine, prompt, opts))
    }

    /// `start`, waiting for the backend's readback.
    pub async fn start_async(&mut self, engine: &Engine<B>, prompt: &[u32], opts: &GenerateOptions) -> Result<usize> {
        if prompt.is_empty() {
            return Err(HearthError::InvalidArgument("the prompt is empty".into()));
        }
        if prompt.len() > self.seq.n_ctx {
            return Err(HearthError::ContextOverflow { tokens: prompt.len(), context: self.seq.n_ctx });
        }
        let n_vocab = engine.model.config.n_vocab;
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(HearthError::InvalidArgument(format!("token id {bad} is outside the vocabulary of {n_vocab}")));
        }
        if self.seq.adapters != engine.model.adapters().epoch {
            // Computed under other adapters or scales: nothing in the cache can be reused.
            self.seq.len = 0;
        }
        let cached = &self.tokens[..self.seq.len];
        // Keep at least one prompt token to run: its logits start the generation.
        let reuse = cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len() - 1);
        self.seq.len = reuse;
        self.tokens = prompt.to_vec();
        self.stop = Some(StopReason::Cancelled); // until the prefill succeeds
        self.logits = engine.prefill_async(&mut self.seq, &prompt[reuse..], opts.batch).await?;
        self.sampler = Sampler::new(opts.sampler.clone());
        self.n_prompt = prompt.len();
        self.max_tokens = opts.max_tokens;
        self.stop_at_eos = opts.stop_at_eos;
        self.constraint = opts.constraint.clone().map(|mut c| {
            c.reset();
            c.set_token_budget(Some(opts.max_tokens));
            (c, engine.token_index())
        });
        self.logprobs = opts.logprobs;
        self.last_logprobs = None;
        self.stop = None;
        Ok(reuse)
    }

    /// What a saved session of this one records, its tokens aside.
    fn saved_header(&self, engine: &Engine<B>, model_sha256: [u8; 32], tokens: Vec<u32>) -> SavedHeader {
        let c = &engine.model.config;
        SavedHeader {
            model_sha256,
            n_layer: c.n_layer as u32,
            kv_dim: c.kv_dim() as u32,
            n_vocab: c.n_vocab as u32,
            n_ctx: self.seq.n_ctx as u32,
            kv_type: self.seq.kv_type,
            tokens,
        }
    }

    /// The cached tokens and their KV rows as bytes (`saved`), tied to the model file's SHA-256.
    /// A cache computed with LoRA adapters is not saved (the bytes do not record them).
    pub async fn save_async(&self, engine: &Engine<B>, model_sha256: [u8; 32]) -> Result<Vec<u8>> {
        let (adapters, epoch) = {
            let a = engine.model.adapters();
            (!a.list.is_empty(), a.epoch)
        };
        if adapters {
            return Err(HearthError::InvalidArgument("a conversation run with LoRA adapters cannot be saved: remove them and start it again".into()));
        }
        // A cache from before the adapters last changed is stale (the next start re-reads all).
        let n = if self.seq.adapters == epoch { self.seq.len } else { 0 };
        let kv = engine.model.backend.read_kv(&self.seq.cache, n).await?;
        Ok(saved::encode(&self.saved_header(engine, model_sha256, self.tokens[..n].to_vec()), &kv))
    }

    /// `save_async`, waiting for the backend's readback.
    pub fn save(&self, engine: &Engine<B>, model_sha256: [u8; 32]) -> Result<Vec<u8>> {
        now(self.save_async(engine, model_sha256))
    }

    /// Put a saved session's tokens and cache in this one (of the same context size and cache
    /// type, for the same model file); the next `start` reuses them as if they had never left.
    /// Returns how many tokens came back. A refusal (`bad_session`, `session_mismatch`) leaves the
    /// session as it was; a backend that fails while writing leaves it with an empty cache.
    pub fn restore(&mut self, engine: &Engine<B>, model_sha256: [u8; 32], bytes: &[u8]) -> Result<usize> {
        let (header, kv) = saved::decode(bytes)?;
        saved::check(&header, &self.saved_header(engine, model_sha256, Vec::new()))?;
        let n = header.tokens.len();
        crate::backend::kv_rows_bytes(self.seq.kv_type, engine.model.config.kv_dim(), self.seq.n_ctx, engine.model.config.n_layer, n, kv.len())?;
        if !engine.model.adapters().list.is_empty() {
            return Err(HearthError::InvalidArgument("a saved conversation runs without LoRA adapters: remove them first".into()));
        }
        if let Err(e) = engine.model.backend.write_kv(&mut self.seq.cache, n, kv) {
            self.seq.len = 0;
            return Err(e);
        }
        self.seq.len = n;
        self.seq.adapters = engine.model.adapters().epoch;
        self.tokens = header.tokens;
        self.logits.clear();
        self.stop = Some(StopReason::Length);
        Ok(n)
    }

    /// The next token, or None once stopped (see `stop_reason`).
    pub fn next(&mut self, engine: &Engine<B>) -> Result<Option<u32>> {
        now(self.next_async(engine))
    }

    /// `next`, waiting for the backend's readback.
    pub async fn next_async(&mut self, engine: &Engine<B>) -> Result<Option<u32>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        if self.generated().len() >= self.max_tokens {
            // A constrained value that closed on the last allowed token is whole, not cut off.
            let whole = self.constraint.as_ref().is_some_and(|(c, _)| c.is_complete());
            self.stop = Some(if whole { StopReason::Eos } else { StopReason::Length });
            return Ok(None);
        }
        // The previous token is in `tokens` but not yet in the cache: run it first. Done lazily
        // so that the last token of a generation costs no forward pass.
        if self.seq.len < self.tokens.len() {
            if self.seq.len >= self.seq.n_ctx {
                self.stop = Some(StopReason::Context);
                return Ok(None);
            }
            let last = self.tokens[self.tokens.len() - 1];
            let logits = engine.model.forward_tensor(&mut self.seq, &[last], Logits::Last)?.expect("logits were asked for");
            // Plain greedy decoding on a backend that can pick the token itself reads back its id.
            let plain = self.constraint.is_none() && self.logprobs.is_none() && self.sampler.config.is_argmax();
            let picked = if plain { engine.model.backend.argmax(&logits).await? } else { None };
            match picked {
                Some(id) => {
                    self.logits.clear();
                    return Ok(self.take(engine, id));
                }
                None => self.logits = engine.model.backend.read(&logits).await?,
            }
        }
        let masked;
        let logits = match &self.constraint {
            Some((c, ix)) => {
                let mut l = self.logits.clone();
                c.mask(ix, &mut l);
                masked = l;
                &masked
            }
            None => &self.logits,
        };
        let id = self.sampler.sample(logits, &self.tokens);
        self.last_logprobs = self.logprobs.map(|n| {
            let (logprob, top) = sampler::logprobs(logits, id, n);
            TokenLogprobs { logprob, top }
        });
        let eog = engine.tokenizer.is_eog(id);
        if let Some((c, ix)) = &mut self.constraint {
            // The mask allowed it, so the constraint takes it; an end token ends the value.
            c.accept(ix, id)?;
            if eog {
                self.stop = Some(StopReason::Eos);
                return Ok(None);
            }
        }
        Ok(self.take(engine, id))
    }

    /// Append a sampled token, or stop at an end token when asked to.
    fn take(&mut self, engine: &Engine<B>, id: u32) -> Option<u32> {
        if self.stop_at_eos && engine.tokenizer.is_eog(id) {
            self.stop = Some(StopReason::Eos);
            return None;
        }
        self.tokens.push(id);
        Some(id)
    }

    /// Log-probabilities of the token `next` last returned (when the options asked for them).
    pub fn last_logprobs(&self) -> Option<&TokenLogprobs> {
        self.last_logprobs.as_ref()
    }

    /// Whether the constrained output is a complete value (true without a constraint).
    pub fn constraint_complete(&self) -> bool {
        self.constraint.as_ref().is_none_or(|(c, _)| c.is_complete())
    }

    pub fn cancel(&mut self) {
        self.stop.get_or_insert(StopReason::Cancelled);
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Tokens generated since the last `start`.
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.n_prompt..]
    }

    pub fn prompt_len(&self) -> usize {
        self.n_prompt
    }

    /// Positions held by the KV cache.
    pub fn cached(&self) -> usize {
        self.seq.len
    }

    pub fn context_size(&self) -> usize {
        self.seq.n_ctx
    }

    /// How the session's KV cache stores keys and values.
    pub fn kv_type(&self) -> KvType {
        self.seq.kv_type
    }

    /// The distribution the next token was (or will be) sampled from (empty after a step that a
    /// GPU backend picked greedily on the device).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}
