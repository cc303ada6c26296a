//! The native `hearth` CLI: the same engine as the browser build, for tests, goldens and benches.
//! Commands and JSON shapes are relied on by outside tools: keep them stable.

#[path = "hearth/fuzz.rs"]
mod fuzz;

use clap::{Parser, Subcommand};
use hearth::backend::cpu::Cpu;
use hearth::backend::{Backend, KvType};
use hearth::embed::{EmbedOptions, Pooling};
use hearth::sampler::SamplerConfig;
use hearth::{Engine, EngineLoader, GenerateOptions, HearthError, Result};
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "hearth", version, about = "Run Llama-family GGUF models (the engine behind the Hearth web runtime)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Sampling flags of `generate`.
#[derive(clap::Args)]
struct SamplingArgs {
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    typical_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Tokens the penalties look back over.
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
}

impl From<SamplingArgs> for SamplerConfig {
    fn from(a: SamplingArgs) -> Self {
        SamplerConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            typical_p: a.typical_p,
            repeat_penalty: a.repeat_penalty,
            frequency_penalty: a.frequency_penalty,
            presence_penalty: a.presence_penalty,
            repeat_last_n: a.repeat_last_n,
            seed: a.seed,
            logit_bias: Vec::new(),
        }
    }
}

/// The KV cache type flag of the commands that run the model.
#[derive(clap::Args)]
struct KvArg {
    /// KV cache type: f16 (llama.cpp's default), q8_0 (34 bytes per 32 values; attention as
    /// llama.cpp's flash attention computes it) or f32.
    #[arg(long = "kv-type", default_value = "f16", value_parser = parse_kv_type)]
    kv_type: KvType,
}

/// `--lora FILE[:SCALE]` (repeatable): LoRA adapters in llama.cpp's GGUF adapter format, applied
/// in the order given, each with its scale (default 1).
#[derive(clap::Args)]
struct LoraArg {
    #[arg(long = "lora", value_parser = parse_lora)]
    lora: Vec<(PathBuf, f32)>,
}

fn parse_lora(s: &str) -> std::result::Result<(PathBuf, f32), String> {
    // The scale follows the last ':' when it reads as a number (a path may hold ':' itself).
    if let Some((path, scale)) = s.rsplit_once(':') {
        if let Ok(x) = scale.parse::<f32>() {
            if !x.is_finite() {
                return Err(format!("--lora {s}: the scale must be a finite number"));
            }
            return Ok((PathBuf::from(path), x));
        }
    }
    Ok((PathBuf::from(s), 1.0))
}

/// Load the `--lora` adapters into the engine, streamed from their files.
fn load_loras<B: Backend + Clone>(engine: &Engine<B>, loras: &[(PathBuf, f32)]) -> Result<()> {
    for (path, scale) in loras {
        let mut f = std::fs::File::open(path).map_err(|e| HearthError::Io(format!("{}: {e}", path.display())))?;
        let mut loader = engine.adapter_loader();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            loader.feed(&chunk[..n])?;
        }
        engine.add_adapter(loader.finish()?, *scale)?;
    }
    Ok(())
}

fn parse_kv_type(s: &str) -> std::result::Result<KvType, String> {
    KvType::parse(s).map_err(|e| match e {
        hearth::HearthError::InvalidArgument(why) => why,
        e => e.message(),
    })
}

fn parse_pooling(s: &str) -> std::result::Result<Pooling, String> {
    Pooling::parse(s).map_err(|e| match e {
        hearth::HearthError::InvalidArgument(why) => why,
        e => e.message(),
    })
}

#[derive(Subcommand)]
enum Command {
    /// Tokenize text (no BOS, special-token text treated as plain text).
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Generate a continuation of a prompt.
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Stop when this text is generated (not printed); repeatable.
        #[arg(long)]
        stop: Vec<String>,
        /// Context size (default: the model's, at most 4096).
        #[arg(long)]
        ctx_size: Option<usize>,
        /// Stop at an end-of-generation token (greedy runs never stop early otherwise).
        #[arg(long)]
        stop_at_eos: bool,
        #[command(flatten)]
        kv: KvArg,
        #[command(flatten)]
        lora: LoraArg,
        #[arg(long)]
        json: bool,
    },
    /// Embeddings of texts, as llama.cpp's embeddings mode computes them: the hidden states
    /// after the output norm, pooled as the GGUF's pooling_type says (none: one vector per
    /// token) and normalized to unit length. JSON: {"embedding": [...]} for one --text,
    /// {"embeddings": [[...], ...]} for several (with pooling none each is a list of per-token
    /// vectors).
    Embed {
        #[arg(long)]
        model: PathBuf,
        /// A text to embed (BOS as the model asks, special-token text as plain text); repeatable.
        #[arg(long, required = true)]
        text: Vec<String>,
        /// Override the model's pooling: none, mean, cls or last.
        #[arg(long, value_parser = parse_pooling)]
        pooling: Option<Pooling>,
        /// Leave the vectors as the model makes them (not scaled to unit length).
        #[arg(long)]
        no_normalize: bool,
        /// The most tokens a text may have (default: the model's context, at most 4096).
        #[arg(long)]
        ctx_size: Option<usize>,
        #[command(flatten)]
        kv: KvArg,
        #[arg(long)]
        json: bool,
    },
    /// Llama Guard moderation of conversations, one JSON line per --messages, checked in turn by
    /// one moderator (so the second check reuses the taxonomy's KV cache): {"safe", "categories":
    /// [{"code", "name"}], "role": "User" | "Agent", "raw", "prompt_tokens", "cached_tokens",
    /// "generated_tokens", "ms", "model_template"}. The model's own Llama Guard template, else
    /// the built-in Llama Guard 3 1B one.
    Moderate {
        #[arg(long)]
        model: PathBuf,
        /// A conversation as JSON: [{"role": "user", "content": "..."}, ...]; repeatable.
        #[arg(long, required = true)]
        messages: Vec<String>,
        /// Custom categories as a JSON object {"S1": "description", ...} (in order).
        #[arg(long)]
        categories: Option<String>,
        /// A category code not to check; repeatable.
        #[arg(long)]
        exclude: Vec<String>,
        #[arg(long, default_value_t = 2048)]
        ctx_size: usize,
        /// Print the rendered prompt of each check (JSON: a "prompt" field).
        #[arg(long)]
        print_prompt: bool,
        #[arg(long)]
        json: bool,
    },
    /// Top-K logits at every prompt position.
    Logits {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// The context the prompt runs in (its KV cache's positions); the prompt's length when
        /// not given. A prompt longer is context_overflow.
        #[arg(long)]
        ctx_size: Option<usize>,
        #[command(flatten)]
        kv: KvArg,
        #[command(flatten)]
        lora: LoraArg,
        #[arg(long)]
        json: bool,
    },
    /// Second-turn time to first token against history length, with and without KV reuse.
    BenchChat {
        #[arg(long)]
        model: PathBuf,
        /// History lengths in tokens.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,3000")]
        history: Vec<usize>,
        #[arg(long, default_value_t = 4096)]
        ctx_size: usize,
        #[command(flatten)]
        kv: KvArg,
    },
    /// Prefill and decode speed on the CPU backend, and the KV cache's size: a prompt of
    /// --prompt-tokens fixed token ids prefilled in batches of --batch, then --decode-tokens
    /// greedy steps (EOS ignored). One JSON line on stdout.
    Bench {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 128)]
        decode_tokens: usize,
        /// Prompt tokens per forward pass.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Context size (default: prompt + decode tokens).
        #[arg(long)]
        ctx_size: Option<usize>,
        /// Runs (each from an empty cache); the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[command(flatten)]
        kv: KvArg,
    },
    /// WebGPU kernel throughput (native wgpu on Vulkan) on Llama-3.2-1B's matrix shapes: the
    /// decode matvec and the prefill matmul per weight type, in GB/s of weights and GFLOP/s; with
    /// --model, whole-model prefill and decode speed too. JSON lines on stdout, a table on stderr.
    BenchGpu(BenchGpuArgs),
    /// Split a GGUF file into shards named like llama.cpp's gguf-split output
    /// (OUT-00001-of-0000N.gguf, ...); load a split model by its first shard.
    Split {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        shards: usize,
        /// Path prefix of the shards.
        #[arg(long)]
        out: String,
    },
    /// Perplexity of a text file, as llama.cpp's llama-perplexity computes it (chunks of --ctx
    /// tokens, the second half of each scored).
    Perplexity {
        #[arg(long)]
        model: PathBuf,
        /// The text (UTF-8).
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// Tokens per prefill batch (default: the whole chunk, as llama.cpp).
        #[arg(long)]
        batch: Option<usize>,
        #[command(flatten)]
        kv: KvArg,
        #[arg(long)]
        json: bool,
    },
    /// What loading a model will need (weights per backend, KV cache, scratch), from its header
    /// alone: one JSON object (bytes) with --json.
    Inspect {
        #[arg(long)]
        model: PathBuf,
        /// Context size (0: the model's, capped at 2048 as the browser does).
        #[arg(long, default_value_t = 0)]
        ctx: u64,
        /// KV cache type: f16 (default, as llama.cpp), q8_0 or f32.
        #[arg(long = "kv-type", default_value = "f16", value_parser = parse_kv_type)]
        kv_type: KvType,
        #[arg(long)]
        json: bool,
    },
    /// Re-encode a model's matrices in another weight type (f32, f16, bf16, q8_0, q4_0, q4_1,
    /// q5_0, or q4_k_m: llama.cpp's mix, K-quants where rows fill 256-value super-blocks).
    Quantize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long = "type")]
        ty: String,
    },
    /// Write the test fixtures (small random-weight Llama GGUFs) into a directory.
    Fixture {
        #[arg(long)]
        out: PathBuf,
        /// Only fixtures whose file name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Write the benchmark models (Llama-3.2-1B's shape, hundreds of MB each) instead.
        #[arg(long)]
        bench: bool,
        /// Write the model over 4 GiB instead (big-f16.gguf, 4.5 GB: one layer, hidden 4096,
        /// vocabulary 532,480, tied F16 embeddings), for loads past wasm32's 4 GiB.
        #[arg(long, conflicts_with = "bench")]
        big: bool,
        /// Write the mixture-of-experts fixtures instead (moe-*, moe1-*: architecture llama with
        /// expert_count 8 / 4).
        #[arg(long, conflicts_with_all = ["bench", "big"])]
        moe: bool,
        /// Write the Llama 4 fixtures instead (llama4-*, llama4s-*: architecture llama4).
        #[arg(long, conflicts_with_all = ["bench", "big", "moe"])]
        llama4: bool,
        /// Give the models this chat template (tokenizer.chat_template), read from a file.
        #[arg(long)]
        chat_template: Option<PathBuf>,
        /// Give the models this general.name.
        #[arg(long)]
        name: Option<String>,
        /// Give the models this llama.pooling_type (none, mean, cls or last), for embeddings.
        #[arg(long, value_parser = parse_pooling)]
        pooling_type: Option<Pooling>,
    },
    /// Write a test LoRA adapter for a model (llama.cpp's GGUF adapter format; deterministic
    /// random A and B): --spec a (F32, rank 16, alpha 32, every matrix), b (F16, rank 8, alpha 0,
    /// attn_q/attn_v/ffn_up) or c (Q8_0, rank 32, alpha 16, every matrix).
    LoraFixture {
        /// The base model.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        spec: String,
        /// About how much each delta adds per value at scale 1.
        #[arg(long, default_value_t = 0.5)]
        strength: f32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fuzz the loader with hostile GGUF files (mutations of the fixtures, from seeds), each case
    /// in a child process under a timeout and a memory cap. One summary JSON line on stdout;
    /// failing cases kept in --out; exits 1 when any case panicked, crashed, hung, over-allocated,
    /// or failed with a malformed error.
    Fuzz(fuzz::FuzzArgs),
    /// One child of `fuzz`: runs the given case seeds, one JSON line each.
    #[command(hide = true)]
    FuzzCase(fuzz::FuzzCaseArgs),
}

fn read_header(path: &Path) -> Result<hearth::gguf::Header> {
    let mut f = std::fs::File::open(path).map_err(|e| HearthError::Io(format!("{}: {e}", path.display())))?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        match hearth::gguf::parse_header(&buf) {
            Err(HearthError::Truncated { .. }) if n > 0 => continue,
            other => return other,
        }
    }
}

/// Load a model file; for a split model, the first shard's path (the others are found beside it).
fn load(path: &Path) -> Result<Engine<Cpu>> {
    load_with(Cpu, path)
}

fn load_with<B: Backend>(backend: B, path: &Path) -> Result<Engine<B>> {
    let mut loader = EngineLoader::new(backend);
    let mut chunk = vec![0u8; 4 << 20];
    let mut feed = |loader: &mut EngineLoader<B>, path: &Path| -> Result<()> {
        let mut f = std::fs::File::open(path).map_err(|e| HearthError::Io(format!("{}: {e}", path.display())))?;
        loop {
            let n = f.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            loader.feed(&chunk[..n])?;
        }
    };
    feed(&mut loader, path)?;
    let count = loader.shards().unwrap_or(1);
    for i in 1..count {
        let first = path.to_string_lossy();
        let next = hearth::shard_name(&first, i, count).ok_or_else(|| {
            HearthError::InvalidArgument(format!(
                "{first} is shard 1 of a model split into {count} files, but is not named like name-00001-of-{count:05}.gguf, so the other shards cannot be found"
            ))
        })?;
        loader.next_shard()?;
        feed(&mut loader, Path::new(&next))?;
    }
    loader.finish()
}

/// Turn 1 prefills `h` tokens of history and replies; turn 2 appends a short user message. The
/// second turn's time to first token with the session's cache is compared with a fresh prefill.
fn bench_chat(engine: &Engine<Cpu>, history: &[usize], n_ctx: usize) -> Result<()> {
    use std::time::Instant;
    let text = "The quick brown fox jumps over the lazy dog while the hearth keeps the kitchen warm. ";
    let filler = engine.tokenizer.encode(&text.repeat(800), false, false);
    let greedy = |n| GenerateOptions { max_tokens: n, sampler: SamplerConfig::greedy(), stop_at_eos: false, ..GenerateOptions::default() };
    for &h in history {
        if h + 64 > n_ctx || h > filler.len() {
            return Err(HearthError::InvalidArgument(format!("history {h} does not fit a context of {n_ctx}")));
        }
        let turn1 = [engine.tokenize_prompt("").as_slice(), &filler[..h]].concat();
        let mut session = engine.new_session(n_ctx)?;
        session.start(engine, &turn1, &greedy(16))?;
        while session.next(engine)?.is_some() {}
        let turn2 = [turn1.clone(), session.generated().to_vec(), engine.tokenizer.encode(" Tell me more.", false, false)].concat();
        let t = Instant::now();
        let reused = session.start(engine, &turn2, &greedy(1))?;
        session.next(engine)?;
        let with_reuse = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let mut fresh = engine.new_session(n_ctx)?;
        fresh.start(engine, &turn2, &greedy(1))?;
        fresh.next(engine)?;
        let without = t.elapsed().as_secs_f64() * 1e3;
        print(json!({ "history_tokens": turn2.len(), "reused_tokens": reused, "second_turn_ttft_ms": with_reuse, "without_reuse_ms": without }));
    }
    Ok(())
}

/// `hearth bench`: prefill then greedy decode from an empty cache, `runs` times; the best run's
/// speeds and the KV cache's bytes (the whole context's and per token).
fn bench(engine: &Engine<Cpu>, prompt_tokens: usize, decode_tokens: usize, batch: usize, n_ctx: usize, runs: usize) -> Result<()> {
    use std::time::Instant;
    if prompt_tokens == 0 || prompt_tokens + decode_tokens > n_ctx {
        return Err(HearthError::InvalidArgument(format!("{prompt_tokens} prompt and {decode_tokens} decode tokens do not fit a context of {n_ctx}")));
    }
    let c = &engine.model.config;
    let n_vocab = c.n_vocab as u32;
    let prompt: Vec<u32> = (0..prompt_tokens as u32).map(|i| (i * 7919 + 13) % n_vocab).collect();
    let (mut prefill_best, mut decode_best, mut weight_bytes) = (0f64, 0f64, 0u64);
    for _ in 0..runs.max(1) {
        let mut seq = engine.new_sequence(n_ctx)?;
        let t = Instant::now();
        let mut logits = engine.prefill(&mut seq, &prompt, batch)?;
        prefill_best = prefill_best.max(prompt_tokens as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let read_before = hearth::backend::cpu::weight_bytes_read();
        for _ in 0..decode_tokens {
            let next = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0) as u32;
            logits = engine.model.forward(&mut seq, &[next], hearth::model::Logits::Last)?;
        }
        // Every run decodes the same greedy tokens, so the last run's count stands for all.
        weight_bytes = hearth::backend::cpu::weight_bytes_read() - read_before;
        if decode_tokens > 0 {
            decode_best = decode_best.max(decode_tokens as f64 / t.elapsed().as_secs_f64());
        }
    }
    let kv = engine.kv_type;
    let kv_bytes = kv.cache_bytes(c.n_layer, n_ctx, c.kv_dim());
    print(json!({
        "kv_type": kv.name(), "ctx_size": n_ctx, "kv_cache_bytes": kv_bytes, "kv_bytes_per_token": kv_bytes / n_ctx as u64,
        "prompt_tokens": prompt_tokens, "batch": batch, "prefill_tok_per_s": prefill_best,
        "decode_tokens": decode_tokens, "decode_tok_per_s": decode_best, "threads": rayon::current_num_threads(),
        // Bytes of weights the matmuls read per decoded token (a MoE model reads only its chosen
        // experts); 0 without decode tokens.
        "weight_bytes_per_token": weight_bytes.checked_div(decode_tokens as u64).unwrap_or(0),
    }));
    Ok(())
}

/// Options of `bench-gpu`.
#[derive(clap::Args)]
struct BenchGpuArgs {
    /// Weight types to time.
    #[arg(long, value_delimiter = ',', default_value = "q4_0,q4_k,q6_k,q8_0,f16")]
    types: Vec<String>,
    /// Activation rows of the prefill matmul (1: time the decode matvec only).
    #[arg(long, default_value_t = 64)]
    rows: usize,
    /// GPU time to aim for per measurement (repeats are chosen from a first run).
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Leave out the 128256 x 2048 output projection.
    #[arg(long)]
    no_output: bool,
    /// Use the f32 kernels even where the adapter has shader-f16.
    #[arg(long)]
    no_f16: bool,
    /// Time the generic matvec (one row per workgroup) for every matmul instead, as a baseline.
    #[arg(long)]
    generic: bool,
    /// A model (e.g. from `hearth fixture --bench`) to time prefill and decode on.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 16)]
    decode_tokens: usize,
    #[command(flatten)]
    kv: KvArg,
}

/// Llama-3.2-1B's matrices: (rows, columns, name).
const BENCH_SHAPES: [(usize, usize, &str); 4] =
    [(2048, 2048, "attn_q/o 2048x2048"), (8192, 2048, "ffn_gate/up 8192x2048"), (2048, 8192, "ffn_down 2048x8192"), (128256, 2048, "output 128256x2048")];

fn bench_gpu(o: &BenchGpuArgs) -> Result<()> {
    use hearth::backend::gpu::{Gpu, GpuOptions};
    use hearth::gguf::{TensorInfo, TensorType};
    let types = o
        .types
        .iter()
        .map(|name| {
            TensorType::from_name(name)
                .filter(|&t| Gpu::supports(t))
                .ok_or_else(|| HearthError::InvalidArgument(format!("'{name}' is not a weight type the GPU backend runs")))
        })
        .collect::<Result<Vec<_>>>()?;
    let gpu = Gpu::new_blocking(GpuOptions { disable_f16: o.no_f16, generic_kernels: o.generic, ..GpuOptions::default() })?;
    let info = gpu.info().clone();
    print(json!({ "adapter": info.name, "backend": info.backend, "device_type": info.device_type, "f16": info.f16, "generic_kernels": o.generic }));
    eprintln!("{} ({}, {}), f16 kernels: {}, generic kernels only: {}", info.name, info.backend, info.device_type, info.f16, o.generic);
    eprintln!("{:<6} {:<22} {:>5} {:>10} {:>8} {:>9}", "type", "matrix", "rows", "ms/call", "GB/s", "GFLOP/s");
    let mut rng = hearth::sampler::Rng::new(1);
    let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f64() as f32 - 0.5).collect() };
    for ty in types {
        for &(n, k, label) in &BENCH_SHAPES {
            if o.no_output && n == 128256 {
                continue;
            }
            // Quantize 64 random rows and repeat them: the bytes, not the values, set the speed.
            let block = hearth::fixture::encode(&random(64 * k), &[k as u64, 64], ty)?;
            let bytes = block.repeat(n / 64);
            let w = gpu.upload(&TensorInfo { name: label.into(), dims: vec![k as u64, n as u64], ty, offset: 0, size: bytes.len() as u64 }, &bytes)?;
            drop(bytes);
            // Prefill sends only its last row through the output projection (Logits::Last).
            let prefill = o.rows > 1 && n != 128256;
            for rows in if prefill { vec![1, o.rows] } else { vec![1] } {
                let x = gpu.tensor_from(rows, k, &random(rows * k))?;
                // Record `reps` calls, then time from their submission to a 4-byte readback: the
                // GPU's time, not the recording's (a real GPU runs a small matvec faster than
                // the CPU records it). The first batch also compiles the pipeline.
                let run = |reps: usize| -> Result<f64> {
                    let mut out = gpu.matmul(&x, &w)?;
                    for _ in 1..reps {
                        out = gpu.matmul(&x, &w)?;
                    }
                    let t = std::time::Instant::now();
                    pollster::block_on(gpu.argmax_last(&out))?;
                    Ok(t.elapsed().as_secs_f64())
                };
                run(1)?;
                let once = run(1)?;
                let reps = ((o.seconds / once) as usize).clamp(1, 1000);
                let per_call = run(reps)? / reps as f64;
                let gbps = w.bytes() as f64 / per_call / 1e9;
                let gflops = 2.0 * (n * k * rows) as f64 / per_call / 1e9;
                print(json!({ "type": ty.name(), "matrix": label, "rows": rows, "k": k, "n": n, "reps": reps, "ms_per_call": per_call * 1e3, "gb_per_s": gbps, "gflop_per_s": gflops }));
                eprintln!("{:<6} {:<22} {:>5} {:>10.3} {:>8.2} {:>9.2}", ty.name(), label, rows, per_call * 1e3, gbps, gflops);
            }
        }
    }
    if let Some(path) = &o.model {
        let t = std::time::Instant::now();
        let mut engine = load_with(gpu, path)?;
        engine.kv_type = o.kv.kv_type;
        let load_s = t.elapsed().as_secs_f64();
        let n_vocab = engine.model.config.n_vocab as u32;
        let prompt: Vec<u32> = (0..o.prompt_tokens as u32).map(|i| (i * 7919 + 13) % n_vocab).collect();
        let n_ctx = o.prompt_tokens + o.decode_tokens + 8;
        // Warm-up: compiles every pipeline both phases use.
        let mut seq = engine.new_sequence(n_ctx)?;
        engine.prefill(&mut seq, &prompt[..4.min(prompt.len())], 4)?;
        engine.model.forward(&mut seq, &[1], hearth::model::Logits::Last)?;
        let mut seq = engine.new_sequence(n_ctx)?;
        let t = std::time::Instant::now();
        let mut logits = engine.prefill(&mut seq, &prompt, prompt.len())?;
        let prefill_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..o.decode_tokens {
            let next = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0) as u32;
            logits = engine.model.forward(&mut seq, &[next], hearth::model::Logits::Last)?;
        }
        let decode_s = t.elapsed().as_secs_f64();
        let (prefill_tps, decode_tps) = (prompt.len() as f64 / prefill_s, o.decode_tokens as f64 / decode_s);
        print(json!({ "model": path.display().to_string(), "load_s": load_s, "prompt_tokens": prompt.len(), "prefill_tok_per_s": prefill_tps, "decode_tokens": o.decode_tokens, "decode_tok_per_s": decode_tps }));
        eprintln!("{}: load {load_s:.2} s, prefill {} tokens {prefill_tps:.2} tok/s, decode {} tokens {decode_tps:.2} tok/s (logits read back each step)", path.display(), prompt.len(), o.decode_tokens);
    }
    Ok(())
}

fn print(value: serde_json::Value) {
    println!("{value}");
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tokenize { model, text, json } => {
            let header = read_header(&model)?;
            let tok = hearth::tokenizer::Tokenizer::from_metadata(&header.metadata)?;
            let tokens = tok.encode(&text, false, false);
            if json {
                print(json!({ "tokens": tokens }));
            } else {
                for t in tokens {
                    let piece = String::from_utf8_lossy(&tok.token_to_piece(t, true)).into_owned();
                    println!("{t:>8} {piece:?}");
                }
            }
        }
        Command::Generate { model, prompt, max_tokens, sampling, stop, ctx_size, stop_at_eos, kv, lora, json } => {
            let mut engine = load(&model)?;
            engine.kv_type = kv.kv_type;
            load_loras(&engine, &lora.lora)?;
            let prompt_tokens = engine.tokenize_prompt(&prompt);
            let n_ctx = ctx_size.unwrap_or(engine.model.config.context_length.min(4096));
            let opts = GenerateOptions {
                max_tokens,
                sampler: sampling.into(),
                stop_at_eos,
                stop,
                ..GenerateOptions::default()
            };
            let mut stdout = std::io::stdout();
            let g = engine.generate(&prompt_tokens, n_ctx, &opts, |ev| {
                if !json {
                    let _ = stdout.write_all(ev.text.as_bytes());
                    let _ = stdout.flush();
                }
                true
            })?;
            if json {
                print(json!({ "prompt_tokens": g.prompt_tokens, "tokens": g.tokens, "text": g.text }));
            } else {
                println!();
            }
        }
        Command::Moderate { model, messages, categories, exclude, ctx_size, print_prompt, json } => {
            use hearth::chat::{ChatMessage, ChatTemplate};
            use hearth::guard::{GuardOptions, Moderator};
            let engine = load(&model)?;
            let template = ChatTemplate::for_model(&engine.metadata, &engine.tokenizer)?;
            let categories = match categories {
                None => None,
                Some(c) => {
                    let v: serde_json::Value = serde_json::from_str(&c).map_err(|e| HearthError::InvalidArgument(format!("--categories: {e}")))?;
                    // serde_json's map is sorted: read the object's order from the text instead.
                    let obj = v.as_object().ok_or_else(|| HearthError::InvalidArgument("--categories must be a JSON object".into()))?;
                    let mut pairs: Vec<(String, String)> = obj
                        .iter()
                        .map(|(k, d)| Ok((k.clone(), d.as_str().ok_or_else(|| HearthError::InvalidArgument(format!("--categories: {k} must be a string")))?.to_string())))
                        .collect::<Result<_>>()?;
                    pairs.sort_by_key(|(k, _)| c.find(&serde_json::to_string(k).unwrap()).unwrap_or(usize::MAX));
                    Some(pairs)
                }
            };
            let opts = GuardOptions { categories, excluded: exclude, ..Default::default() };
            let mut moderator = Moderator::new(&template, ctx_size);
            let today = hearth::chat::Date { year: 2026, month: 1, day: 1 }; // Llama Guard templates print no date
            for m in &messages {
                let conv: Vec<ChatMessage> = serde_json::from_str(m).map_err(|e| HearthError::InvalidArgument(format!("--messages: {e}")))?;
                let t0 = std::time::Instant::now();
                let r = moderator.moderate(&engine, &conv, &opts, today)?;
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let cats: Vec<_> = r.verdict.categories.iter().map(|(c, n)| json!({"code": c, "name": n})).collect();
                if json {
                    let mut o = json!({
                        "safe": r.verdict.safe, "categories": cats, "role": r.role.as_str(), "raw": r.raw,
                        "prompt_tokens": r.prompt_tokens, "cached_tokens": r.cached_tokens,
                        "generated_tokens": r.generated_tokens, "ms": ms, "model_template": r.model_template,
                    });
                    if print_prompt {
                        o["prompt"] = json!(r.prompt);
                    }
                    print(o);
                } else {
                    if print_prompt {
                        println!("{}", r.prompt);
                    }
                    let names: Vec<String> = r.verdict.categories.iter().map(|(c, n)| format!("{c} {n}")).collect();
                    println!(
                        "{} {}{} ({} prompt tokens, {} cached, {ms:.1} ms)",
                        r.role.as_str(),
                        if r.verdict.safe { "safe" } else { "unsafe: " },
                        names.join(", "),
                        r.prompt_tokens,
                        r.cached_tokens
                    );
                }
            }
        }
        Command::Embed { model, text, pooling, no_normalize, ctx_size, kv, json } => {
            let engine = load(&model)?;
            let opts = EmbedOptions {
                kv_type: Some(kv.kv_type),
                pooling,
                normalize: !no_normalize,
                n_ctx: ctx_size.unwrap_or(engine.model.config.context_length.min(4096)),
                ..EmbedOptions::default()
            };
            let texts: Vec<&str> = text.iter().map(String::as_str).collect();
            let embeddings = engine.embed(&texts, &opts)?;
            // A pooled embedding is one vector; with pooling none, one vector per token. Serialized
            // as f32 (shortest round-trip digits), not widened to f64 as json! would.
            #[derive(serde::Serialize)]
            #[serde(untagged)]
            enum Vector<'a> {
                Pooled(&'a [f32]),
                PerToken(Vec<&'a [f32]>),
            }
            fn vector(e: &hearth::embed::Embedding) -> Vector<'_> {
                match e.pooling {
                    Pooling::None => Vector::PerToken(e.rows().collect()),
                    _ => Vector::Pooled(&e.values),
                }
            }
            if json {
                use std::collections::BTreeMap;
                let line = match embeddings.as_slice() {
                    [one] => serde_json::to_string(&BTreeMap::from([("embedding", vector(one))])),
                    many => serde_json::to_string(&BTreeMap::from([("embeddings", many.iter().map(vector).collect::<Vec<_>>())])),
                };
                println!("{}", line.expect("vectors serialize"));
            } else {
                for (t, e) in texts.iter().zip(&embeddings) {
                    println!("{t:?}: {} tokens, pooling {}, {} values", e.tokens, e.pooling, e.n_embd);
                    for row in e.rows() {
                        println!("{}", row.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(" "));
                    }
                }
            }
        }
        Command::Logits { model, prompt, top, ctx_size, kv, lora, json } => {
            let mut engine = load(&model)?;
            engine.kv_type = kv.kv_type;
            load_loras(&engine, &lora.lora)?;
            let tokens = engine.tokenize_prompt(&prompt);
            let logits = match ctx_size {
                None => engine.prompt_logits(&tokens)?,
                Some(n) => engine.model.forward(&mut engine.new_sequence(n)?, &tokens, hearth::model::Logits::All)?,
            };
            let n_vocab = engine.model.config.n_vocab;
            let positions: Vec<_> = logits
                .chunks_exact(n_vocab)
                .map(|row| {
                    let mut idx: Vec<usize> = (0..n_vocab).collect();
                    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                    idx.truncate(top);
                    json!({ "ids": idx, "logits": idx.iter().map(|&i| row[i]).collect::<Vec<_>>() })
                })
                .collect();
            if json {
                print(json!({ "prompt_tokens": tokens, "positions": positions }));
            } else {
                for (t, p) in tokens.iter().zip(&positions) {
                    println!("{t:>8} -> {}", p);
                }
            }
        }
        Command::BenchChat { model, history, ctx_size, kv } => {
            let mut engine = load(&model)?;
            engine.kv_type = kv.kv_type;
            bench_chat(&engine, &history, ctx_size)?
        }
        Command::Bench { model, prompt_tokens, decode_tokens, batch, ctx_size, runs, kv } => {
            let mut engine = load(&model)?;
            engine.kv_type = kv.kv_type;
            bench(&engine, prompt_tokens, decode_tokens, batch, ctx_size.unwrap_or(prompt_tokens + decode_tokens), runs)?
        }
        Command::BenchGpu(args) => bench_gpu(&args)?,
        Command::Split { model, shards, out } => {
            let bytes = std::fs::read(&model).map_err(|e| HearthError::Io(format!("{}: {e}", model.display())))?;
            for (i, shard) in hearth::gguf::split_file(&bytes, shards)?.iter().enumerate() {
                let path = format!("{out}-{:05}-of-{shards:05}.gguf", i + 1);
                std::fs::write(&path, shard).map_err(|e| HearthError::Io(format!("{path}: {e}")))?;
                println!("{path}");
            }
        }
        Command::Perplexity { model, file, ctx, batch, kv, json } => {
            let text = std::fs::read_to_string(&file).map_err(|e| HearthError::Io(format!("{}: {e}", file.display())))?;
            let mut engine = load(&model)?;
            engine.kv_type = kv.kv_type;
            let run = hearth::Perplexity::new(&engine, &text, ctx, batch.unwrap_or(ctx))?;
            let t = std::time::Instant::now();
            eprintln!("perplexity: {} tokens, {} chunks of {ctx}", run.tokens(), run.chunks());
            let report = run.run(&engine, |p| eprint!("[{}]{:.4},", p.chunks_done(), p.report().perplexity))?;
            let secs = t.elapsed().as_secs_f64();
            eprintln!();
            if json {
                let mut v = serde_json::to_value(&report).expect("report serializes");
                v["seconds"] = json!(secs);
                v["tokens_per_second"] = json!((report.chunks * report.ctx) as f64 / secs);
                v["kv_type"] = json!(kv.kv_type.name());
                print(v);
            } else {
                println!("Final estimate: PPL = {:.4} +/- {:.5}", report.perplexity, report.uncertainty);
            }
        }
        Command::Inspect { model, ctx, kv_type, json } => {
            let header = read_header(&model)?;
            let plan = hearth::memory::plan(&header, ctx, 2048, kv_type)?;
            if json {
                let mut v = serde_json::to_value(&plan).expect("plan serializes");
                v["cpu"]["total"] = json!(plan.cpu.total());
                v["gpu"]["total"] = json!(plan.gpu.total());
                v["kv_type"] = json!(kv_type.name());
                print(v);
            } else {
                let mib = |b: u64| b as f64 / (1 << 20) as f64;
                println!("context {} positions, {kv_type} KV cache", plan.context_size);
                for (name, n) in [("CPU (engine heap)", plan.cpu), ("WebGPU (GPU buffers)", plan.gpu)] {
                    println!(
                        "{name}: {:.1} MiB = weights {:.1} + KV cache {:.1} + scratch {:.1} + other {:.1}",
                        mib(n.total()),
                        mib(n.weights),
                        mib(n.kv_cache),
                        mib(n.scratch),
                        mib(n.other)
                    );
                }
                println!("WebGPU engine heap: {:.1} MiB; largest GPU buffer {:.1} MiB", mib(plan.gpu_heap), mib(plan.gpu_largest_buffer));
            }
        }
        Command::Quantize { model, out, ty } => {
            let bytes = std::fs::read(&model).map_err(|e| HearthError::Io(format!("{}: {e}", model.display())))?;
            let q = hearth::fixture::requantize(&bytes, &ty)?;
            std::fs::write(&out, q).map_err(|e| HearthError::Io(format!("{}: {e}", out.display())))?;
            println!("{}", out.display());
        }
        Command::LoraFixture { model, spec, strength, out } => {
            let header = read_header(&model)?;
            let spec = hearth::fixture::lora_spec(&spec).ok_or_else(|| HearthError::InvalidArgument(format!("--spec must be a, b or c, got {spec:?}")))?;
            let bytes = hearth::fixture::build_lora(&header, &spec, strength)?;
            std::fs::write(&out, bytes).map_err(|e| HearthError::Io(format!("{}: {e}", out.display())))?;
            println!("{}", out.display());
        }
        Command::Fuzz(args) => std::process::exit(fuzz::fuzz(&args)),
        Command::FuzzCase(args) => fuzz::fuzz_case(&args),
        Command::Fixture { out, only, bench, big, moe, llama4, chat_template, name, pooling_type } => {
            let mut set = Vec::new();
            if let Some(p) = pooling_type {
                set.push(("llama.pooling_type", hearth::gguf::Value::U32(p.gguf())));
            }
            if let Some(path) = chat_template {
                let text = std::fs::read_to_string(&path).map_err(|e| HearthError::Io(format!("{}: {e}", path.display())))?;
                set.push(("tokenizer.chat_template", hearth::gguf::Value::String(text)));
            }
            if let Some(name) = name {
                set.push(("general.name", hearth::gguf::Value::String(name)));
            }
            for p in hearth::fixture::write_all(&out, only.as_deref(), match (bench, big, moe, llama4) {
                (true, ..) => hearth::fixture::Set::Bench,
                (_, true, ..) => hearth::fixture::Set::Big,
                (_, _, true, _) => hearth::fixture::Set::Moe,
                (.., true) => hearth::fixture::Set::Llama4,
                _ => hearth::fixture::Set::Test,
            })? {
                if !set.is_empty() {
                    let bytes = std::fs::read(&p)?;
                    std::fs::write(&p, hearth::gguf::with_metadata(&bytes, &set)?)?;
                }
                println!("{}", p.display());
            }
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // A value our own parser refused (a KV cache type...) is a typed error like any other;
        // clap reports the rest of the usage errors (and --help) itself.
        if e.kind() == clap::error::ErrorKind::ValueValidation {
            if let Some(why) = std::error::Error::source(&e) {
                eprintln!("hearth: error [invalid_argument]: {why}");
                std::process::exit(2);
            }
        }
        e.exit()
    });
    if let Err(e) = run(cli) {
        eprintln!("hearth: error [{}]: {}", e.code(), e.message());
        std::process::exit(1);
    }
}
