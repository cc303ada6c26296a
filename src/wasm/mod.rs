//! The browser surface: a thin wasm-bindgen layer over `EngineLoader`, `Engine` and `Session`.
//! The JS client (www/hearth/) drives it from a Worker; each call does one bounded piece of work
//! (a chunk of the file, one prompt prefill, one token), so the caller can yield, report progress
//! and abort in between. `start` and `step` return Promises: the WebGPU backend reads results
//! back asynchronously (on the CPU they are resolved at once).
//!
//! Errors cross as JS `Error` objects with a `code` property (`HearthError::code()`). Nothing
//! here panics on bad input; a panic would still reach the console readably (panic hook).

use wasm_bindgen::prelude::*;

use crate::wasm_simd as arch;

mod alloc;
mod inspect;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::backend::cpu::Cpu;
use crate::backend::gpu::{Gpu, GpuOptions};
use crate::backend::{Backend, KvType};
use crate::chat::{build_prompt_with_tools, ChatMessage, ChatTemplate, ContextPolicy, Date};
use crate::embed::{EmbedOptions, Pooling};
use crate::engine::{Engine, EngineLoader, GenerateOptions, Session, StopReason, TextOutput};
use crate::perplexity::Perplexity;
use crate::error::HearthError;
use crate::grammar::Constraint;
use crate::sampler::SamplerConfig;
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;

/// Context size used when neither the caller nor the model says otherwise, and the cap on the
/// default (a model's training context can be 128k positions: too much KV cache for a tab).
const DEFAULT_CONTEXT: usize = 2048;
/// KV cache ceiling (K and V for every layer, in the cache's type): stays well inside wasm32's 4 GiB.
const KV_LIMIT_BYTES: u64 = 1 << 30;

/// The `kvType` option: "f16" (the default, llama.cpp's), "q8_0" or "f32".
fn kv_type(v: Option<&str>) -> Result<KvType, JsValue> {
    v.map_or(Ok(KvType::default()), |s| KvType::parse(s).map_err(js_error))
}

/// Evaluates `$body` with `$c` bound to the engine's `Core`, whichever backend it runs on.
macro_rules! core_do {
    ($core:expr, $c:ident => $body:expr) => {
        match $core {
            AnyCore::Cpu($c) => $body,
            AnyCore::Gpu($c) => $body,
        }
    };
}

mod tools;

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        // A panic aborts (wasm `unreachable`) and the instance cannot be asked anything after it:
        // host.js reads the message from here to say what crashed (HearthError "engine_crashed").
        let _ = js_sys::Reflect::set(&js_sys::global(), &"__hearthLastPanic".into(), &info.to_string().into());
    }));
}

/// Tests only (like `Engine.debugLoseDevice`): crash the engine on purpose, as a bug would, so
/// that the client's crash containment can be tested (host.js turns the trap into HearthError
/// "engine_crashed" and the client replaces the engine). `kind`: "panic" (a Rust panic: wasm
/// `unreachable`), "stack" (unbounded recursion: the JS engine's stack overflow, a RangeError),
/// "oob" (a load past the end of linear memory: "memory access out of bounds"), "oom"
/// (allocations until memory.grow fails: the allocator aborts), "async-panic" (a panic inside a
/// future, as one inside `step` would: the returned Promise never settles and the trap surfaces
/// as an uncaught error), "pool-panic" (a panic on a thread of rayon's pool: a pool Worker in the
/// threaded build). Any other kind is an "invalid_argument" error.
#[wasm_bindgen(js_name = debugTrap)]
pub fn debug_trap(kind: &str) -> Result<js_sys::Promise, JsValue> {
    use std::hint::black_box;
    match kind {
        "panic" => panic!("debugTrap(\"panic\"): a deliberate panic (a test of crash containment)"),
        "stack" => {
            debug_recurse();
            Err(invalid("debugTrap(\"stack\"): the recursion ended"))
        }
        "oob" => {
            let end = arch::memory_size(0) as u64 * 65536;
            if end >= 1 << 32 {
                return Err(invalid("debugTrap(\"oob\"): the memory spans the whole 32-bit address space"));
            }
            // SAFETY: none; the load traps, which is its purpose.
            let v = unsafe { core::ptr::read_volatile(black_box(end as usize) as *const u8) };
            Err(invalid(format!("debugTrap(\"oob\"): read {v} past the end of memory")))
        }
        "oom" => {
            // Reserved, never touched: the browser maps fresh wasm pages lazily.
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(black_box(Vec::with_capacity(256 << 20)));
                black_box(&held);
            }
        }
        "pool-panic" => {
            // On the last thread of rayon's pool: a pool Worker in the threaded build (this
            // thread in the single-thread one).
            rayon::broadcast(|ctx| {
                if ctx.index() + 1 == ctx.num_threads() {
                    panic!("debugTrap(\"pool-panic\"): a deliberate panic on a pool thread (a test of crash containment)");
                }
            });
            Err(invalid("debugTrap(\"pool-panic\"): the pool thread did not panic"))
        }
        "async-panic" => Ok(wasm_bindgen_futures::future_to_promise(async {
            if black_box(true) {
                panic!("debugTrap(\"async-panic\"): a deliberate panic inside a future (a test of crash containment)");
            }
            Ok(JsValue::UNDEFINED)
        })),
        _ => Err(invalid(format!("debugTrap: kind must be panic, stack, oob, oom, async-panic or pool-panic, got {kind:?}"))),
    }
}

static DEBUG_DEPTH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Recursion without a bound (`debug_trap("stack")`): the atomics keep it from being a loop.
#[inline(never)]
fn debug_recurse() {
    use std::sync::atomic::Ordering::Relaxed;
    if DEBUG_DEPTH.fetch_add(1, Relaxed) == u32::MAX {
        return;
    }
    debug_recurse();
    DEBUG_DEPTH.fetch_sub(1, Relaxed);
}

// The threaded build (feature `threads`): `initThreadPool(n)` starts rayon's global pool on n Web
// Workers sharing this module's memory; host.js calls it once before any other work.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threads in rayon's global pool, counted by running a task on each of them (so a pool whose
/// workers never started would hang here rather than report a number it does not have). 1 in
/// the single-thread build.
#[wasm_bindgen(js_name = threadCount)]
pub fn thread_count() -> u32 {
    let mut seen = rayon::broadcast(|ctx| ctx.index());
    seen.sort_unstable();
    seen.dedup();
    seen.len() as u32
}

/// Current size of the wasm linear memory in bytes. Memory only grows, so this is also the peak.
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    (arch::memory_size(0) * 65536) as f64
}

fn js_error(e: HearthError) -> JsValue {
    let err = js_sys::Error::new(&e.message());
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

fn invalid(msg: impl Into<String>) -> JsValue {
    js_error(HearthError::InvalidArgument(msg.into()))
}

fn set(obj: &js_sys::Object, key: &str, value: impl Into<JsValue>) {
    let _ = js_sys::Reflect::set(obj, &key.into(), &value.into());
}

/// Where a load stands: waiting for the GGUF header to choose the backend, or feeding one.
enum LoadState {
    /// "auto"/"webgpu" before the header is complete: the bytes so far, and the GPU if one opened
    /// (with why not, if none did).
    Choosing { prefix: Vec<u8>, gpu: Result<Gpu, HearthError>, strict: bool },
    Cpu(EngineLoader<Cpu>),
    Gpu(EngineLoader<Gpu>),
}

/// Feeds a GGUF file to the engine chunk by chunk; tensors are placed as their bytes arrive.
#[wasm_bindgen]
pub struct Loader {
    inner: Option<LoadState>,
    /// Why "auto" runs on the CPU (no adapter, a type without GPU kernels, ...).
    fallback: Option<String>,
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl Loader {
    /// A loader for the CPU backend.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Loader {
        Loader { inner: Some(LoadState::Cpu(EngineLoader::new(Cpu))), fallback: None }
    }

    /// A loader for `backend`: "cpu", "webgpu" (an error if the adapter is missing or cannot run
    /// the model) or "auto" (WebGPU when an adapter exists and can run the model, else the CPU).
    /// The choice is made once the GGUF header has arrived, before any weight is placed.
    pub async fn create(backend: String) -> Result<Loader, JsValue> {
        let strict = match backend.as_str() {
            "cpu" => return Ok(Loader::new()),
            "webgpu" => true,
            "auto" => false,
            b => return Err(invalid(format!("backend must be \"auto\", \"cpu\" or \"webgpu\", got {b:?}"))),
        };
        let mut gpu = Gpu::new(GpuOptions::default()).await;
        if strict {
            if let Err(e) = gpu {
                return Err(js_error(e));
            }
        } else if gpu.as_ref().is_ok_and(|g| g.is_software()) {
            // SwiftShader in Chromium reports no name.
            let name = gpu.as_ref().map(|g| g.info().name.trim().to_string()).unwrap_or_default();
            let named = if name.is_empty() { String::new() } else { format!(" ({name})") };
            gpu = Err(HearthError::BackendUnavailable(format!("this browser's WebGPU adapter{named} is a software renderer, slower than the CPU")));
        }
        Ok(Loader { inner: Some(LoadState::Choosing { prefix: Vec::new(), gpu, strict }), fallback: None })
    }

    /// Feed the next chunk of the file. After an error the loader is spent (its memory freed).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        let r = self.feed_inner(chunk);
        if r.is_err() {
            self.inner = None;
        }
        r.map_err(js_error)
    }

    /// Bytes fed so far (all shards).
    pub fn received(&self) -> f64 {
        match &self.inner {
            Some(LoadState::Choosing { prefix, .. }) => prefix.len() as f64,
            Some(LoadState::Cpu(l)) => l.received() as f64,
            Some(LoadState::Gpu(l)) => l.received() as f64,
            None => 0.0,
        }
    }

    /// How many files the model is split into (1: a whole file), 0 until the first header is read.
    pub fn shards(&self) -> u32 {
        match &self.inner {
            Some(LoadState::Cpu(l)) => l.shards(),
            Some(LoadState::Gpu(l)) => l.shards(),
            _ => None,
        }
        .unwrap_or(0)
    }

    /// The current shard has ended (checked whole); the next `feed` starts the next shard.
    #[wasm_bindgen(js_name = nextShard)]
    pub fn next_shard(&mut self) -> Result<(), JsValue> {
        let r = match self.inner.as_mut() {
            Some(LoadState::Cpu(l)) => l.next_shard(),
            Some(LoadState::Gpu(l)) => l.next_shard(),
            Some(LoadState::Choosing { .. }) => Err(HearthError::Truncated { what: "the GGUF header".into(), needed: 0, available: 0 }),
            None => return Err(invalid("this loader has already finished or failed")),
        };
        if let Err(e) = r {
            self.inner = None;
            return Err(js_error(e));
        }
        Ok(())
    }

    /// The URL or file name of shard `i` (0-based) given the first's (`name-00001-of-0000N.gguf`).
    #[wasm_bindgen(js_name = shardName)]
    pub fn shard_name(first: &str, i: u32, count: u32) -> Option<String> {
        crate::engine::shard_name(first, i, count)
    }

    /// End of file: checks that everything arrived and builds the engine. Spends the loader.
    pub fn finish(&mut self) -> Result<WasmEngine, JsValue> {
        let fallback = self.fallback.take();
        let core = match self.inner.take() {
            Some(LoadState::Cpu(l)) => AnyCore::Cpu(Core::new(l.finish().map_err(js_error)?)),
            Some(LoadState::Gpu(l)) => AnyCore::Gpu(Core::new(l.finish().map_err(js_error)?)),
            Some(LoadState::Choosing { prefix, .. }) => {
                // The file ended inside its header: report it as the CPU loader would.
                let mut l = EngineLoader::new(Cpu);
                l.feed(&prefix).map_err(js_error)?;
                l.finish().map_err(js_error)?;
                return Err(invalid("the GGUF file ended inside its header"));
            }
            None => return Err(invalid("this loader has already finished or failed")),
        };
        let template = core_do!(&core, c => ChatTemplate::for_model(&c.engine.metadata, &c.engine.tokenizer)).map_err(js_error)?;
        Ok(WasmEngine { core, cancel: Rc::new(Cell::new(false)), template, fallback })
    }
}

/// Why "auto" runs on the CPU, in words for the person at the page (the page adds "running on
/// the CPU, N threads").
fn fallback_reason(e: &HearthError) -> String {
    match e {
        HearthError::BackendUnavailable(why) if why.starts_with("no WebGPU adapter") => "WebGPU is not available in this browser".into(),
        HearthError::BackendUnavailable(why) if why.contains("refused a device") => "this browser's WebGPU adapter could not open a device".into(),
        HearthError::BackendUnavailable(why) => why.clone(),
        HearthError::UnsupportedTensorType { ty, .. } => {
            format!("WebGPU has no kernels yet for this model's {} weights", ty.trim_end_matches(" (on the GPU)"))
        }
        HearthError::ModelTooBig { .. } => "this model's weight rows are larger than this GPU can hold in one buffer".into(),
        e => e.message(),
    }
}

impl Loader {
    fn feed_inner(&mut self, chunk: &[u8]) -> Result<(), HearthError> {
        match self.inner.as_mut() {
            None => Err(HearthError::InvalidArgument("this loader has already finished or failed".into())),
            Some(LoadState::Cpu(l)) => l.feed(chunk),
            Some(LoadState::Gpu(l)) => l.feed(chunk),
            Some(LoadState::Choosing { prefix, .. }) => {
                prefix.extend_from_slice(chunk);
                let header = match crate::gguf::parse_header(prefix) {
                    Err(HearthError::Truncated { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                    Ok(h) => h,
                };
                let Some(LoadState::Choosing { prefix, gpu, strict }) = self.inner.take() else { unreachable!() };
                let fits = gpu.and_then(|g| g.check_model(&header).map(|_| g));
                match fits {
                    Ok(g) => {
                        let mut l = EngineLoader::new(g);
                        let r = l.feed(&prefix);
                        self.inner = Some(LoadState::Gpu(l));
                        r
                    }
                    Err(e) if strict => Err(e),
                    Err(e) => {
                        self.fallback = Some(fallback_reason(&e));
                        let mut l = EngineLoader::new(Cpu);
                        let r = l.feed(&prefix);
                        self.inner = Some(LoadState::Cpu(l));
                        r
                    }
                }
            }
        }
    }
}


/// A loaded model on one backend, and its generation state. The engine is shared (immutable) so
/// that tokenizing, rendering chats and info work while a step waits for the GPU; the session and
/// the running generation sit behind a RefCell that a step holds across its await.
struct Core<B: Backend> {
    engine: Rc<Engine<B>>,
    gen: Rc<RefCell<GenState<B>>>,
    /// A perplexity run in progress (its own KV cache, beside the chat session's).
    ppl: Rc<RefCell<Option<Perplexity<B>>>>,
    /// Llama Guard moderation: its KV caches (one per role), beside the chat session's.
    guard: Rc<RefCell<Option<crate::guard::Moderator<B>>>>,
}

impl<B: Backend> Clone for Core<B> {
    fn clone(&self) -> Self {
        Core { engine: self.engine.clone(), gen: self.gen.clone(), ppl: self.ppl.clone(), guard: self.guard.clone() }
    }
}

struct GenState<B: Backend> {
    // Field order matters: `run` borrows the engine's tokenizer and is dropped first.
    run: Option<Run>,
    session: Option<Session<B>>,
    /// Prompt tokens the last `start` found in the cache.
    reused: u32,
    /// Keeps the engine (and so the tokenizer `run` borrows) alive as long as this state.
    _engine: Rc<Engine<B>>,
}

enum AnyCore {
    Cpu(Core<Cpu>),
    Gpu(Core<Gpu>),
}

impl<B: Backend> Core<B> {
    fn new(engine: Engine<B>) -> Self {
        let engine = Rc::new(engine);
        let gen = GenState { run: None, session: None, reused: 0, _engine: engine.clone() };
        Core { engine, gen: Rc::new(RefCell::new(gen)), ppl: Rc::new(RefCell::new(None)), guard: Rc::new(RefCell::new(None)) }
    }
}

/// Generation options as the JS side passes them (all optional).
#[derive(serde::Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct StartOptions {
    max_tokens: Option<f64>,
    temperature: Option<f64>,
    top_k: Option<f64>,
    top_p: Option<f64>,
    min_p: Option<f64>,
    typical_p: Option<f64>,
    repeat_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    repeat_last_n: Option<f64>,
    seed: Option<f64>,
    stop_at_eos: Option<bool>,
    context_size: Option<f64>,
    /// The KV cache type: "f16" (default), "q8_0" or "f32".
    kv_type: Option<String>,
    batch: Option<f64>,
    stop: Option<Vec<String>>,
    /// OpenAI's `response_format`: {type: "text" | "json_object" | "json_schema", json_schema: {schema}}.
    response_format: Option<serde_json::Value>,
    /// Report log-probabilities with this many alternatives per token.
    logprobs: Option<f64>,
    /// {token id: bias added to its logit}, as OpenAI's `logit_bias`.
    logit_bias: Option<HashMap<String, f64>>,
}

/// The constraint a `response_format` asks for (None for plain text).
fn constraint(format: &serde_json::Value) -> Result<Option<Constraint>, JsValue> {
    let bad = |why: &str| invalid(format!("responseFormat {why}"));
    match format.get("type").and_then(|t| t.as_str()) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Constraint::json_object())),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(|| bad("of type json_schema needs json_schema.schema"))?;
            Constraint::json_schema(schema).map(Some).map_err(js_error)
        }
        Some(t) => Err(bad(&format!("type must be \"text\", \"json_object\" or \"json_schema\", got {t:?}"))),
    }
}

/// Options of `chatPrompt`.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ChatOptions {
    context_size: Option<f64>,
    /// The reply's token limit (default: `GenerateOptions`'): room is kept for all of it, up to
    /// half the context.
    max_tokens: Option<f64>,
    /// "error" (default) or "shift": drop the oldest turns after the system prompt to fit.
    context_policy: Option<String>,
    /// Today as [year, month, day], for templates that print the date.
    date: Option<(i32, u32, u32)>,
}

fn messages_from(messages: JsValue) -> Result<Vec<ChatMessage>, JsValue> {
    serde_wasm_bindgen::from_value(messages).map_err(|e| invalid(format!("messages must be an array of {{role, content}} strings: {e}")))
}

fn date_from(date: Option<(i32, u32, u32)>) -> Date {
    let (year, month, day) = date.unwrap_or((2026, 1, 1));
    Date { year, month, day }
}

fn count(name: &str, v: Option<f64>, default: usize, min: usize) -> Result<usize, JsValue> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x.fract() == 0.0 && x >= min as f64 && x <= u32::MAX as f64 => Ok(x as usize),
        Some(x) => Err(invalid(format!("{name} must be an integer >= {min}, got {x}"))),
    }
}

fn real(name: &str, v: Option<f64>, default: f32, lo: f64, hi: f64) -> Result<f32, JsValue> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x as f32),
        Some(x) => Err(invalid(format!("{name} must be a number in [{lo}, {hi}], got {x}"))),
    }
}

/// A generation in progress: its text output (decoder and stop strings).
struct Run {
    /// Borrows the engine's tokenizer (see the safety note in `Core::start`).
    out: TextOutput<'static>,
}

/// A loaded model. Holds one session (KV cache) that successive generations reuse: a chat turn
/// that extends the previous prompt and reply prefills only the new tokens. At most one
/// generation runs at a time (`start` replaces it).
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    core: AnyCore,
    /// Set by `cancel` (which may come while a step waits for the GPU); the next step stops.
    cancel: Rc<Cell<bool>>,
    /// The model's chat template (or the built-in one its vocabulary calls for).
    template: ChatTemplate,
    /// Why "auto" chose the CPU, if it did.
    fallback: Option<String>,
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// {name, nVocab, nCtxTrain, nLayer, nEmbd, nHead, nHeadKv, bos, eos, eog: [..], addBos,
    /// backend: "cpu" | "webgpu", gpu: {name, backend, deviceType, shaderF16} | null,
    /// fallback: why "auto" chose the CPU | null}
    pub fn info(&self) -> JsValue {
        let o = js_sys::Object::new();
        core_do!(&self.core, c => {
            let e = &c.engine;
            let cfg = &e.model.config;
            let t = &e.tokenizer;
            let name = e.metadata.opt_str("general.name").ok().flatten().unwrap_or("").to_string();
            set(&o, "name", name);
            set(&o, "architecture", e.metadata.opt_str("general.architecture").ok().flatten().unwrap_or("").to_string());
            set(&o, "nVocab", cfg.n_vocab as f64);
            set(&o, "nCtxTrain", cfg.context_length as f64);
            set(&o, "nLayer", cfg.n_layer as f64);
            set(&o, "nEmbd", cfg.n_embd as f64);
            set(&o, "nHead", cfg.n_head as f64);
            set(&o, "nHeadKv", cfg.n_head_kv as f64);
            set(&o, "bos", t.bos().map_or(JsValue::NULL, |v| (v as f64).into()));
            set(&o, "eos", t.eos().map_or(JsValue::NULL, |v| (v as f64).into()));
            set(&o, "addBos", t.add_bos());
            set(&o, "pooling", e.pooling().name());
            let eog = js_sys::Array::new();
            for id in t.eog_ids() {
                eog.push(&(id as f64).into());
            }
            set(&o, "eog", eog);
        });
        match &self.core {
            AnyCore::Cpu(_) => {
                set(&o, "backend", "cpu");
                set(&o, "gpu", JsValue::NULL);
            }
            AnyCore::Gpu(c) => {
                let i = c.engine.model.backend.info();
                let g = js_sys::Object::new();
                set(&g, "name", i.name.clone());
                set(&g, "backend", i.backend.clone());
                set(&g, "deviceType", i.device_type.clone());
                set(&g, "shaderF16", i.shader_f16);
                set(&o, "backend", "webgpu");
                set(&o, "gpu", g);
            }
        }
        set(&o, "fallback", self.fallback.clone().map_or(JsValue::NULL, JsValue::from));
        o.into()
    }

    /// {source, builtin: "llama2" | "llama3" | "chatml" | null (the model's own template)}
    #[wasm_bindgen(js_name = chatTemplate)]
    pub fn chat_template(&self) -> JsValue {
        let o = js_sys::Object::new();
        set(&o, "source", self.template.source.clone());
        let builtin = self.template.builtin.map(|b| format!("{b:?}").to_lowercase());
        set(&o, "builtin", builtin.map_or(JsValue::NULL, JsValue::from));
        o.into()
    }

    /// Render `messages` ([{role, content}]) with the chat template and tokenize them so that the
    /// prompt plus room for the reply fit the context: {tokens: Uint32Array, dropped}.
    #[wasm_bindgen(js_name = chatPrompt)]
    pub fn chat_prompt(&self, messages: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
        let messages = messages_from(messages)?;
        if messages.is_empty() {
            return Err(invalid("messages must not be empty"));
        }
        let tools = tools::ToolOptions::from_js(&options)?.request()?;
        let o: ChatOptions = if options.is_undefined() || options.is_null() {
            ChatOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| invalid(format!("bad chat options: {e}")))?
        };
        let policy = match o.context_policy.as_deref() {
            None | Some("error") => ContextPolicy::Error,
            Some("shift") => ContextPolicy::Shift,
            Some(p) => return Err(invalid(format!("contextPolicy must be \"error\" or \"shift\", got {p:?}"))),
        };
        let today = date_from(o.date);
        let n_ctx = count("contextSize", o.context_size, self.default_context(), 1)?;
        let max_tokens = count("maxTokens", o.max_tokens, GenerateOptions::default().max_tokens, 0)?;
        let reserve = max_tokens.min(n_ctx / 2);
        let p = core_do!(&self.core, c => build_prompt_with_tools(&self.template, &c.engine.tokenizer, &messages, tools.as_ref(), today, n_ctx, reserve, policy)).map_err(js_error)?;
        let r = js_sys::Object::new();
        set(&r, "tokens", js_sys::Uint32Array::from(p.tokens.as_slice()));
        set(&r, "dropped", p.dropped as f64);
        Ok(r.into())
    }

    /// The chat template's text for `messages`; `addGenerationPrompt` opens the assistant's turn.
    /// `date` is [year, month, day] for templates that print it; `tools`: {tools (JSON text),
    /// toolChoice} as `chatPrompt` takes them.
    #[wasm_bindgen(js_name = renderChat)]
    pub fn render_chat(&self, messages: JsValue, add_generation_prompt: bool, date: Option<Vec<u32>>, tools: JsValue) -> Result<String, JsValue> {
        let messages = messages_from(messages)?;
        let date = date.filter(|d| d.len() == 3).map(|d| (d[0] as i32, d[1], d[2]));
        let tools = tools::ToolOptions::from_js(&tools)?.request()?;
        self.template.render_with_tools(&messages, tools.as_ref(), add_generation_prompt, date_from(date)).map_err(js_error)
    }

    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        core_do!(&self.core, c => c.engine.tokenizer.encode(text, add_special, parse_special))
    }

    /// Text of `ids` (control tokens not rendered, ids out of range ignored).
    pub fn decode(&self, ids: &[u32]) -> String {
        core_do!(&self.core, c => c.engine.tokenizer.decode(ids, false, false))
    }

    /// Start a generation (replacing any running one): `prompt` is text (tokenized with BOS as the
    /// model asks, special-token text kept as text) or token ids (array or Uint32Array). Prefills
    /// the prompt; resolves to the number of prompt tokens. Then call `step` until `done`.
    pub fn start(&self, prompt: JsValue, options: JsValue) -> js_sys::Promise {
        self.cancel.set(false);
        let prepared = self.prepare(prompt, options);
        match &self.core {
            AnyCore::Cpu(c) => start_promise(c.clone(), prepared),
            AnyCore::Gpu(c) => start_promise(c.clone(), prepared),
        }
    }

    /// One token: {id, text, done: false}; at the end {id: null, text (any held-back text),
    /// done: true, finishReason: "length"|"eos"|"context"|"stop"|"abort", completionTokens}.
    /// Text that could begin a stop string is held back until it is known not to be one.
    pub fn step(&self) -> js_sys::Promise {
        let cancel = self.cancel.clone();
        match &self.core {
            AnyCore::Cpu(c) => {
                let c = c.clone();
                wasm_bindgen_futures::future_to_promise(async move { c.step(&cancel).await })
            }
            AnyCore::Gpu(c) => {
                let c = c.clone();
                wasm_bindgen_futures::future_to_promise(async move { c.step(&cancel).await })
            }
        }
    }

    /// Stop the running generation: the next `step` returns done with finishReason "abort".
    pub fn cancel(&self) {
        if self.running() {
            self.cancel.set(true);
        }
    }

    /// Prompt tokens the last `start` reused from the KV cache (not prefilled again).
    #[wasm_bindgen(getter, js_name = reusedTokens)]
    pub fn reused_tokens(&self) -> u32 {
        core_do!(&self.core, c => c.gen.try_borrow().map_or(0, |g| g.reused))
    }

    /// Whether a generation is running.
    #[wasm_bindgen(getter)]
    pub fn running(&self) -> bool {
        core_do!(&self.core, c => c.gen.try_borrow().map_or(true, |g| g.run.is_some()))
    }

    /// The chat session as saved-session bytes (`crate::saved`: its cached tokens and their KV
    /// rows), tied to `modelSha256` (the model file's SHA-256, 64 hex digits). Resolves to
    /// {bytes: Uint8Array, tokens}. Not while a generation runs, nor before the first one.
    #[wasm_bindgen(js_name = saveSession)]
    pub fn save_session(&self, model_sha256: &str) -> js_sys::Promise {
        let sha = sha256_arg(model_sha256);
        match &self.core {
            AnyCore::Cpu(c) => save_session_promise(c.clone(), sha),
            AnyCore::Gpu(c) => save_session_promise(c.clone(), sha),
        }
    }

    /// Put saved-session bytes in place of the chat session, for the context size and cache type
    /// generations use (`options`: {contextSize, kvType}, as `start`'s); the next generation whose
    /// prompt begins with the saved tokens reuses their cache. Returns how many tokens came back.
    /// `bad_session` / `session_mismatch` leave the chat session as it was.
    #[wasm_bindgen(js_name = restoreSession)]
    pub fn restore_session(&self, model_sha256: &str, bytes: &[u8], options: JsValue) -> Result<u32, JsValue> {
        let sha = sha256_arg(model_sha256)?;
        let o: SessionOptions = if options.is_undefined() || options.is_null() {
            SessionOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| invalid(format!("session options: {e}")))?
        };
        let n_ctx = count("contextSize", o.context_size, self.default_context(), 1)?;
        let kv = kv_type(o.kv_type.as_deref())?;
        core_do!(&self.core, c => c.restore_session(sha, bytes, n_ctx, kv))
    }

    /// Tests: lose the GPU device as a driver reset would (nothing on the CPU).
    #[wasm_bindgen(js_name = debugLoseDevice)]
    pub fn debug_lose_device(&self) {
        if let AnyCore::Gpu(c) = &self.core {
            c.engine.model.backend.lose_device();
        }
    }

    /// The name people know the model by ("SmolLM2 135M Instruct"), from its metadata and the
    /// name of the file or URL it came from (`model::display_name`).
    #[wasm_bindgen(js_name = displayName)]
    pub fn display_name(&self, file_name: Option<String>) -> String {
        core_do!(&self.core, c => crate::model::display_name(&c.engine.metadata, file_name.as_deref()))
    }

    /// Start measuring the perplexity of `text` as llama.cpp's llama-perplexity does (options:
    /// {contextSize: chunk length, default 512; batch: tokens per step, default the chunk;
    /// kvType: "f16" (default) | "q8_0" | "f32"}).
    /// Returns {tokens, chunks, contextSize}; then call `perplexityStep` until `done`.
    #[wasm_bindgen(js_name = perplexityStart)]
    pub fn perplexity_start(&self, text: &str, options: JsValue) -> Result<JsValue, JsValue> {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct PplOptions {
            context_size: Option<f64>,
            batch: Option<f64>,
            kv_type: Option<String>,
        }
        let opts: PplOptions = if options.is_undefined() || options.is_null() {
            PplOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| invalid(format!("bad perplexity options: {e}")))?
        };
        let n_ctx = count("contextSize", opts.context_size, 512, 4)?;
        let batch = count("batch", opts.batch, n_ctx, 1)?;
        let kv = kv_type(opts.kv_type.as_deref())?;
        core_do!(&self.core, c => {
            let run = Perplexity::with_kv_type(&c.engine, text, n_ctx, batch, kv).map_err(js_error)?;
            let o = js_sys::Object::new();
            set(&o, "tokens", run.tokens() as f64);
            set(&o, "chunks", run.chunks() as f64);
            set(&o, "contextSize", n_ctx as f64);
            *c.ppl.try_borrow_mut().map_err(|_| invalid("a perplexity step is still running: await it first"))? = Some(run);
            Ok(o.into())
        })
    }

    /// One batch of the perplexity run: {done, evaluated, total, chunksDone, chunks, perplexity
    /// (the estimate so far)}; when done, also llama.cpp's figures (uncertainty, scored,
    /// chunkPerplexities, ...).
    #[wasm_bindgen(js_name = perplexityStep)]
    pub fn perplexity_step(&self) -> js_sys::Promise {
        match &self.core {
            AnyCore::Cpu(c) => perplexity_step_promise(c.clone()),
            AnyCore::Gpu(c) => perplexity_step_promise(c.clone()),
        }
    }

    /// Drop the perplexity run (and its KV cache).
    #[wasm_bindgen(js_name = perplexityCancel)]
    pub fn perplexity_cancel(&self) {
        core_do!(&self.core, c => {
            if let Ok(mut p) = c.ppl.try_borrow_mut() {
                *p = None;
            }
        })
    }

    /// A loader for a LoRA adapter of this model (llama.cpp's GGUF adapter format): feed it the
    /// adapter's bytes, then `addAdapter(loader, scale)`. The header is checked against the model
    /// as soon as it is in (`not_an_adapter`, `adapter_mismatch` naming the tensor).
    #[wasm_bindgen(js_name = adapterLoader)]
    pub fn adapter_loader(&self) -> WasmAdapterLoader {
        let inner = match &self.core {
            AnyCore::Cpu(c) => AnyAdapterLoader::Cpu(c.engine.adapter_loader()),
            AnyCore::Gpu(c) => AnyAdapterLoader::Gpu(c.engine.adapter_loader()),
        };
        WasmAdapterLoader { inner: Some(inner) }
    }

    /// Use the adapter a loader has read whole, with `scale`; returns its id. Spends the loader.
    /// The chat session's KV cache is recomputed at the next generation.
    #[wasm_bindgen(js_name = addAdapter)]
    pub fn add_adapter(&self, loader: &mut WasmAdapterLoader, scale: f64) -> Result<u32, JsValue> {
        let r = match (&self.core, loader.inner.take()) {
            (AnyCore::Cpu(c), Some(AnyAdapterLoader::Cpu(l))) => l.finish().and_then(|a| c.engine.add_adapter(a, scale as f32)),
            (AnyCore::Gpu(c), Some(AnyAdapterLoader::Gpu(l))) => l.finish().and_then(|a| c.engine.add_adapter(a, scale as f32)),
            (_, None) => return Err(invalid("this adapter loader has already finished or failed")),
            _ => return Err(invalid("this adapter loader belongs to another engine")),
        };
        r.map_err(js_error)
    }

    /// Change an adapter's scale (0 turns it off without unloading it).
    #[wasm_bindgen(js_name = setAdapterScale)]
    pub fn set_adapter_scale(&self, id: u32, scale: f64) -> Result<(), JsValue> {
        core_do!(&self.core, c => c.engine.set_adapter_scale(id, scale as f32)).map_err(js_error)
    }

    #[wasm_bindgen(js_name = removeAdapter)]
    pub fn remove_adapter(&self, id: u32) -> Result<(), JsValue> {
        core_do!(&self.core, c => c.engine.remove_adapter(id)).map_err(js_error)
    }

    /// [{id, name, scale, alpha, rank, tensors}] in the order their deltas are added.
    pub fn adapters(&self) -> js_sys::Array {
        let list = core_do!(&self.core, c => c.engine.adapters());
        let out = js_sys::Array::new();
        for a in list {
            let o = js_sys::Object::new();
            set(&o, "id", a.id);
            set(&o, "name", a.name);
            set(&o, "scale", a.scale as f64);
            set(&o, "alpha", a.alpha as f64);
            set(&o, "rank", a.rank as f64);
            set(&o, "tensors", a.tensors as f64);
            out.push(&o);
        }
        out
    }

    /// Check one input to embed and tokenize it: `input` is text (tokenized as a prompt) or token
    /// ids; options as `embed`'s. Returns its ids (Uint32Array), or fails as `embed` would (empty,
    /// over the context: "context_overflow", ids outside the vocabulary, a pooling Hearth does not
    /// compute), so that a batch can be checked whole before any of it runs.
    #[wasm_bindgen(js_name = embedPrepare)]
    pub fn embed_prepare(&self, input: JsValue, options: JsValue) -> Result<js_sys::Uint32Array, JsValue> {
        let opts = self.embed_options(&options)?;
        let ids = self.prompt_ids(&input, "input")?;
        core_do!(&self.core, c => c.engine.check_embed_input(&ids, &opts)).map_err(js_error)?;
        Ok(js_sys::Uint32Array::from(ids.as_slice()))
    }

    /// The embedding of one input (text or token ids), as llama.cpp's embeddings mode computes
    /// it (`crate::embed`: the hidden states after the output norm, from an empty cache of their
    /// own, pooled, normalized). Options: {pooling: "none" | "mean" | "cls" | "last" (default:
    /// the model's, `info().pooling`), normalize (default true), contextSize (the most tokens an
    /// input may have; default as generation's), batch, kvType (default "f16")}. Resolves to {embedding: Float32Array
    /// (nEmbd values; with pooling none, nEmbd per token), tokens, pooling, nEmbd}.
    pub fn embed(&self, input: JsValue, options: JsValue) -> js_sys::Promise {
        let prepared = self.embed_options(&options).and_then(|o| Ok((self.prompt_ids(&input, "input")?, o)));
        match &self.core {
            AnyCore::Cpu(c) => embed_promise(c.engine.clone(), prepared),
            AnyCore::Gpu(c) => embed_promise(c.engine.clone(), prepared),
        }
    }

    /// Llama Guard moderation of the last message of `messages` ([{role, content}]; system
    /// messages left out): rendered with the model's Llama Guard template (else the built-in
    /// Llama Guard 3 1B one), the answer constrained to a verdict. Options: {categories: [[code,
    /// description], ...] (custom, in order), excluded: [code, ...], contextSize, render (only
    /// render: resolve to {prompt, role, categories})}. Resolves to {safe, categories: [{code,
    /// name}], role: "User" | "Agent", raw, promptTokens, cachedTokens (found in the role's KV
    /// cache), generatedTokens, modelTemplate, prompt}.
    pub fn moderate(&self, messages: JsValue, options: JsValue) -> js_sys::Promise {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Opts {
            categories: Option<Vec<(String, String)>>,
            excluded: Vec<String>,
            context_size: Option<f64>,
            render: bool,
            logit_bias: Option<HashMap<String, f64>>,
        }
        let prepared = (|| {
            let messages = messages_from(messages)?;
            let o: Opts = if options.is_undefined() || options.is_null() {
                Opts::default()
            } else {
                serde_wasm_bindgen::from_value(options).map_err(|e| invalid(format!("bad moderation options: {e}")))?
            };
            let n_ctx = count("contextSize", o.context_size, self.default_context(), 1)?;
            let mut logit_bias = Vec::new();
            for (k, v) in o.logit_bias.unwrap_or_default() {
                let id = k.parse::<u32>().map_err(|_| invalid(format!("logitBias keys must be token ids, got {k:?}")))?;
                logit_bias.push((id, real("logitBias", Some(v), 0.0, -1000.0, 1000.0)?));
            }
            Ok((messages, crate::guard::GuardOptions { categories: o.categories, excluded: o.excluded, logit_bias }, n_ctx, o.render))
        })();
        match &self.core {
            AnyCore::Cpu(c) => moderate_promise(c.clone(), self.template.clone(), prepared),
            AnyCore::Gpu(c) => moderate_promise(c.clone(), self.template.clone(), prepared),
        }
    }

    /// "cpu" or "webgpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        match self.core {
            AnyCore::Cpu(_) => "cpu".into(),
            AnyCore::Gpu(_) => "webgpu".into(),
        }
    }
}

enum AnyAdapterLoader {
    Cpu(crate::model::AdapterLoader<Cpu>),
    Gpu(crate::model::AdapterLoader<Gpu>),
}

/// Feeds a LoRA adapter's GGUF to the engine chunk by chunk (`Engine.adapterLoader`).
#[wasm_bindgen(js_name = AdapterLoader)]
pub struct WasmAdapterLoader {
    inner: Option<AnyAdapterLoader>,
}

#[wasm_bindgen(js_class = AdapterLoader)]
impl WasmAdapterLoader {
    /// The next chunk of the adapter file. After an error the loader is spent.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        let r = match self.inner.as_mut() {
            Some(AnyAdapterLoader::Cpu(l)) => l.feed(chunk),
            Some(AnyAdapterLoader::Gpu(l)) => l.feed(chunk),
            None => return Err(invalid("this adapter loader has already finished or failed")),
        };
        if r.is_err() {
            self.inner = None;
        }
        r.map_err(js_error)
    }

    /// Bytes fed so far.
    pub fn received(&self) -> f64 {
        match &self.inner {
            Some(AnyAdapterLoader::Cpu(l)) => l.received() as f64,
            Some(AnyAdapterLoader::Gpu(l)) => l.received() as f64,
            None => 0.0,
        }
    }
}

/// {contextSize, kvType} of `Engine.restoreSession`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SessionOptions {
    context_size: Option<f64>,
    kv_type: Option<String>,
}

/// A model file's SHA-256 from its 64 hex digits.
fn sha256_arg(hex: &str) -> Result<[u8; 32], JsValue> {
    let bad = || invalid(format!("the model's SHA-256 must be 64 hex digits, got {hex:?}"));
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn save_session_promise<B: Backend + 'static>(c: Core<B>, sha: Result<[u8; 32], JsValue>) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let sha = sha?;
        let g = c.gen.try_borrow().map_err(|_| Core::<B>::busy())?;
        if g.run.is_some() {
            return Err(invalid("a generation is running: let it finish (or abort it) before saving the session"));
        }
        let s = g.session.as_ref().ok_or_else(|| invalid("there is no conversation to save yet: generate first"))?;
        let bytes = s.save_async(&c.engine, sha).await.map_err(js_error)?;
        let (header, _) = crate::saved::decode(&bytes).map_err(js_error)?;
        let o = js_sys::Object::new();
        set(&o, "bytes", js_sys::Uint8Array::from(bytes.as_slice()));
        set(&o, "tokens", header.tokens.len() as f64);
        Ok(o.into())
    })
}

impl<B: Backend> Core<B> {
    fn restore_session(&self, sha: [u8; 32], bytes: &[u8], n_ctx: usize, kv: KvType) -> Result<u32, JsValue> {
        let mut g = self.gen.try_borrow_mut().map_err(|_| Self::busy())?;
        if g.run.is_some() {
            return Err(invalid("a generation is running: let it finish (or abort it) before restoring a session"));
        }
        // Into the chat session when it has the same shape (a refusal leaves it as it was), else
        // into a new one that replaces it only once restored.
        if let Some(s) = g.session.as_mut().filter(|s| s.context_size() == n_ctx && s.kv_type() == kv) {
            let n = s.restore(&self.engine, sha, bytes).map_err(js_error)?;
            g.reused = 0;
            return Ok(n as u32);
        }
        let mut s = self.engine.new_session_with(n_ctx, kv).map_err(js_error)?;
        let n = s.restore(&self.engine, sha, bytes).map_err(js_error)?;
        g.session = Some(s);
        g.reused = 0;
        Ok(n as u32)
    }
}

fn embed_promise<B: Backend + 'static>(engine: Rc<Engine<B>>, prepared: Result<(Vec<u32>, EmbedOptions), JsValue>) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let (ids, opts) = prepared?;
        let e = engine.embed_tokens_async(&ids, &opts).await.map_err(js_error)?;
        let o = js_sys::Object::new();
        set(&o, "embedding", js_sys::Float32Array::from(e.values.as_slice()));
        set(&o, "tokens", e.tokens as f64);
        set(&o, "pooling", e.pooling.name());
        set(&o, "nEmbd", e.n_embd as f64);
        Ok(o.into())
    })
}

fn perplexity_step_promise<B: Backend + 'static>(c: Core<B>) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let mut slot = c.ppl.try_borrow_mut().map_err(|_| invalid("a perplexity step is still running: await it first"))?;
        let run = slot.as_mut().ok_or_else(|| invalid("no perplexity run (call perplexityStart first)"))?;
        if let Err(e) = run.step_async(&c.engine).await {
            *slot = None;
            return Err(js_error(e));
        }
        let r = run.report();
        let o = js_sys::Object::new();
        set(&o, "done", run.done());
        set(&o, "evaluated", run.evaluated() as f64);
        set(&o, "total", (run.chunks() * r.ctx) as f64);
        set(&o, "chunksDone", r.chunks as f64);
        set(&o, "chunks", run.chunks() as f64);
        set(&o, "perplexity", if r.scored > 0 { r.perplexity.into() } else { JsValue::NULL });
        if run.done() {
            set(&o, "uncertainty", r.uncertainty);
            set(&o, "tokens", r.tokens as f64);
            set(&o, "scored", r.scored as f64);
            set(&o, "contextSize", r.ctx as f64);
            set(&o, "batch", r.batch as f64);
            let running = js_sys::Array::new();
            for p in &r.chunk_perplexities {
                running.push(&(*p).into());
            }
            set(&o, "chunkPerplexities", running);
            *slot = None;
        }
        Ok(o.into())
    })
}

fn moderate_promise<B: Backend + 'static>(
    c: Core<B>,
    template: ChatTemplate,
    prepared: Result<(Vec<ChatMessage>, crate::guard::GuardOptions, usize, bool), JsValue>,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let (messages, opts, n_ctx, render_only) = prepared?;
        let today = date_from(None); // the Llama Guard templates print no date
        let cats = |cs: &[(String, String)]| {
            let a = js_sys::Array::new();
            for (code, name) in cs {
                let o = js_sys::Object::new();
                set(&o, "code", code.as_str());
                set(&o, "name", name.as_str());
                a.push(&o);
            }
            a
        };
        // The moderator (and its caches) is kept while the context size stays the same.
        let mut slot = c.guard.try_borrow_mut().map_err(|_| invalid("a moderation is already running on this model"))?;
        if slot.as_ref().is_some_and(|m| m.context_size() != n_ctx) {
            *slot = None;
        }
        let template = &template;
        let m = slot.get_or_insert_with(|| crate::guard::Moderator::new(template, n_ctx));
        let o = js_sys::Object::new();
        if render_only {
            let p = m.render(&messages, &opts, today).map_err(js_error)?;
            set(&o, "prompt", p.text.as_str());
            set(&o, "role", p.role.as_str());
            set(&o, "categories", cats(&p.categories));
            set(&o, "modelTemplate", p.model_template);
            return Ok(o.into());
        }
        let r = m.moderate_async(&c.engine, &messages, &opts, today).await.map_err(js_error)?;
        set(&o, "safe", r.verdict.safe);
        set(&o, "categories", cats(&r.verdict.categories));
        set(&o, "role", r.role.as_str());
        set(&o, "raw", r.raw.as_str());
        set(&o, "promptTokens", r.prompt_tokens as f64);
        set(&o, "cachedTokens", r.cached_tokens as f64);
        set(&o, "generatedTokens", r.generated_tokens as f64);
        set(&o, "modelTemplate", r.model_template);
        set(&o, "prompt", r.prompt.as_str());
        Ok(o.into())
    })
}

/// A generation's prompt ids, options and context size, checked.
struct Prepared {
    ids: Vec<u32>,
    opts: GenerateOptions,
    n_ctx: usize,
    kv: KvType,
}

fn start_promise<B: Backend + 'static>(c: Core<B>, prepared: Result<Prepared, JsValue>) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let p = prepared?;
        c.start(p).await.map(|n| JsValue::from(n as f64))
    })
}

impl WasmEngine {
    /// The context size used when the caller names none: the model's, capped at 2048.
    fn default_context(&self) -> usize {
        match core_do!(&self.core, c => c.engine.model.config.context_length) {
            0 => DEFAULT_CONTEXT,
            c => c.min(DEFAULT_CONTEXT),
        }
    }

    /// Text (tokenized with BOS as the model asks, special-token text kept as text) or token ids
    /// (an array or a Uint32Array); `what` names it in errors.
    fn prompt_ids(&self, prompt: &JsValue, what: &str) -> Result<Vec<u32>, JsValue> {
        if let Some(text) = prompt.as_string() {
            Ok(core_do!(&self.core, c => c.engine.tokenize_prompt(&text)))
        } else if let Some(arr) = prompt.dyn_ref::<js_sys::Uint32Array>() {
            Ok(arr.to_vec())
        } else if js_sys::Array::is_array(prompt) {
            let arr: &js_sys::Array = prompt.unchecked_ref();
            let mut v = Vec::with_capacity(arr.length() as usize);
            for x in arr.iter() {
                match x.as_f64() {
                    Some(f) if f.fract() == 0.0 && f >= 0.0 && f <= u32::MAX as f64 => v.push(f as u32),
                    _ => return Err(invalid(format!("{what} token ids must be non-negative integers"))),
                }
            }
            Ok(v)
        } else {
            Err(invalid(format!("the {what} must be a string or an array of token ids")))
        }
    }

    /// `embed`'s options, checked.
    fn embed_options(&self, options: &JsValue) -> Result<EmbedOptions, JsValue> {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Opts {
            pooling: Option<String>,
            normalize: Option<bool>,
            context_size: Option<f64>,
            batch: Option<f64>,
            kv_type: Option<String>,
        }
        let o: Opts = if options.is_undefined() || options.is_null() {
            Opts::default()
        } else {
            serde_wasm_bindgen::from_value(options.clone()).map_err(|e| invalid(format!("bad embedding options: {e}")))?
        };
        let d = EmbedOptions::default();
        Ok(EmbedOptions {
            pooling: o.pooling.as_deref().map(Pooling::parse).transpose().map_err(js_error)?,
            normalize: o.normalize.unwrap_or(d.normalize),
            n_ctx: count("contextSize", o.context_size, self.default_context(), 1)?,
            batch: count("batch", o.batch, d.batch, 1)?,
            kv_type: Some(kv_type(o.kv_type.as_deref())?),
        })
    }

    fn prepare(&self, prompt: JsValue, options: JsValue) -> Result<Prepared, JsValue> {
        let opts: StartOptions = if options.is_undefined() || options.is_null() {
            StartOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options.clone()).map_err(|e| invalid(format!("bad generation options: {e}")))?
        };
        // Ids are checked against the vocabulary by `Session::start`.
        let ids = self.prompt_ids(&prompt, "prompt")?;
        let (n_vocab, n_layer, kv_dim) = core_do!(&self.core, c => {
            let cfg = &c.engine.model.config;
            (cfg.n_vocab, cfg.n_layer, cfg.kv_dim())
        });
        let d = SamplerConfig::default();
        let sampler = SamplerConfig {
            temperature: real("temperature", opts.temperature, d.temperature, 0.0, 1e6)?,
            top_k: count("topK", opts.top_k, d.top_k, 0)?,
            top_p: real("topP", opts.top_p, d.top_p, 0.0, 1.0)?,
            min_p: real("minP", opts.min_p, d.min_p, 0.0, 1.0)?,
            typical_p: real("typicalP", opts.typical_p, d.typical_p, 0.0, 1.0)?,
            repeat_penalty: real("repeatPenalty", opts.repeat_penalty, d.repeat_penalty, 1e-6, 1e6)?,
            frequency_penalty: real("frequencyPenalty", opts.frequency_penalty, d.frequency_penalty, -2.0, 2.0)?,
            presence_penalty: real("presencePenalty", opts.presence_penalty, d.presence_penalty, -2.0, 2.0)?,
            logit_bias: match &opts.logit_bias {
                None => Vec::new(),
                Some(map) => {
                    let n_vocab = n_vocab;
                    let mut v = Vec::with_capacity(map.len());
                    for (k, &b) in map {
                        match k.parse::<u32>() {
                            Ok(id) if (id as usize) < n_vocab && b.is_finite() && (-100.0..=100.0).contains(&b) => v.push((id, b as f32)),
                            _ => return Err(invalid(format!("logitBias maps token ids below {n_vocab} to numbers in [-100, 100]; got {k:?}: {b}"))),
                        }
                    }
                    v.sort_by_key(|&(id, _)| id);
                    v
                }
            },
            repeat_last_n: count("repeatLastN", opts.repeat_last_n, d.repeat_last_n, 0)?,
            seed: match opts.seed {
                None => d.seed,
                Some(s) if s.is_finite() && s.fract() == 0.0 && s >= 0.0 && s <= 9007199254740991.0 => s as u64,
                Some(s) => return Err(invalid(format!("seed must be a non-negative integer, got {s}"))),
            },
        };
        let gd = GenerateOptions::default();
        let gopts = GenerateOptions {
            max_tokens: count("maxTokens", opts.max_tokens, gd.max_tokens, 0)?,
            sampler,
            stop_at_eos: opts.stop_at_eos.unwrap_or(gd.stop_at_eos),
            batch: count("batch", opts.batch, gd.batch, 1)?,
            stop: opts.stop.unwrap_or_default(),
            constraint: {
                let format = match &opts.response_format {
                    Some(f) => constraint(f)?,
                    None => None,
                };
                // A forced tool call (`toolChoice` "required" or a function) has its grammar.
                self.tool_constraint(&options, &format)?.or(format)
            },
            logprobs: match opts.logprobs {
                None => None,
                Some(n) => Some(count("logprobs", Some(n), 0, 0)?.min(20)),
            },
        };
        let n_ctx = count("contextSize", opts.context_size, self.default_context(), 1)?;
        let kv = kv_type(opts.kv_type.as_deref())?;
        let kv_bytes = kv.cache_bytes(n_layer, n_ctx, kv_dim);
        if kv_bytes > KV_LIMIT_BYTES {
            return Err(js_error(HearthError::ModelTooBig { needed: kv_bytes, limit: KV_LIMIT_BYTES }));
        }
        Ok(Prepared { ids, opts: gopts, n_ctx, kv })
    }
}

impl<B: Backend> Core<B> {
    fn busy() -> JsValue {
        invalid("a generation step is still running on this engine: await it first")
    }

    async fn start(&self, p: Prepared) -> Result<usize, JsValue> {
        let mut g = self.gen.try_borrow_mut().map_err(|_| Self::busy())?;
        let g = &mut *g;
        g.run = None;
        // Keep the session (and its cache) unless the context size or the cache type changed.
        if g.session.as_ref().is_some_and(|s| s.context_size() != p.n_ctx || s.kv_type() != p.kv) {
            g.session = None;
        }
        let session = match g.session.take() {
            Some(s) => s,
            None => self.engine.new_session_with(p.n_ctx, p.kv).map_err(js_error)?,
        };
        let session = g.session.insert(session);
        let reused = session.start_async(&self.engine, &p.ids, &p.opts).await.map_err(js_error)?;
        // SAFETY: the tokenizer lives inside the `Engine` behind `self.engine`, an Rc whose
        // contents never move; `GenState` holds a clone of that Rc (declared after `run`, so
        // dropped after it), so the tokenizer outlives every `Run`. The 'static lifetime never
        // escapes `Run`.
        let tok: &'static Tokenizer = unsafe { &*(&self.engine.tokenizer as *const Tokenizer) };
        g.run = Some(Run { out: TextOutput::new(tok, &p.opts.stop) });
        g.reused = reused as u32;
        Ok(p.ids.len())
    }

    async fn step(&self, cancel: &Cell<bool>) -> Result<JsValue, JsValue> {
        let mut g = self.gen.try_borrow_mut().map_err(|_| Self::busy())?;
        let g = &mut *g;
        let (Some(run), Some(session)) = (g.run.as_mut(), g.session.as_mut()) else {
            return Err(invalid("no generation is running (call start first)"));
        };
        if cancel.take() {
            session.cancel();
        }
        let o = js_sys::Object::new();
        let next = match session.next_async(&self.engine).await {
            Ok(n) => n,
            Err(e) => {
                g.run = None;
                return Err(js_error(e));
            }
        };
        if let Some(id) = next {
            let text = run.out.push(id);
            if run.out.stopped() {
                session.cancel();
            }
            set(&o, "id", id as f64);
            set(&o, "text", text);
            set(&o, "done", false);
            if let Some(lp) = session.last_logprobs() {
                let tok = &self.engine.tokenizer;
                let entry = |id: u32, logprob: f32| {
                    let e = js_sys::Object::new();
                    set(&e, "id", id as f64);
                    set(&e, "logprob", logprob as f64);
                    set(&e, "bytes", js_sys::Uint8Array::from(tok.token_to_piece(id, false).as_slice()));
                    e
                };
                set(&o, "logprob", entry(id, lp.logprob));
                let top = js_sys::Array::new();
                for &(t, l) in &lp.top {
                    top.push(&entry(t, l));
                }
                set(&o, "topLogprobs", top);
            }
            return Ok(o.into());
        }
        let run = g.run.take().expect("checked above");
        let reason = match session.stop_reason().unwrap_or(StopReason::Cancelled) {
            _ if run.out.stopped() => "stop",
            StopReason::Length => "length",
            StopReason::Eos => "eos",
            StopReason::Context => "context",
            StopReason::StopString => "stop",
            StopReason::Cancelled => "abort",
        };
        let rest = run.out.finish();
        set(&o, "id", JsValue::NULL);
        set(&o, "completionTokens", session.generated().len() as f64);
        set(&o, "text", rest);
        set(&o, "done", true);
        set(&o, "finishReason", reason);
        Ok(o.into())
    }
}
