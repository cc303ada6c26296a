//! LoRA adapters against llama.cpp (tests/golden/lora-*.json, scripts/goldens-lora): adapters
//! written by our own `fixture::build_lora` (F32, F16, Q8_0 halves) at scales 0, 0.5, 1 and two at
//! once, on the dense fixture spm-f32 and on the real SmolLM2-135M Q4_1, on the CPU and on
//! WebGPU; adapters switched at run time (the KV cache re-prefilled); typed errors for adapters
//! that do not fit the model.

use crate::common;

use hearth::backend::cpu::Cpu;
use hearth::backend::gpu::{Gpu, GpuOptions};
use hearth::backend::Backend;
use hearth::fixture::{build_lora, lora_spec};
use hearth::gguf::{GgufWriter, TensorType, Value};
use hearth::model::Logits;
use hearth::sampler::SamplerConfig;
use hearth::{Engine, GenerateOptions, HearthError};
use std::collections::HashMap;

/// The base model and the adapters of a golden file, rebuilt and checked against its sha256s.
fn golden_inputs(g: &serde_json::Value, base: Vec<u8>) -> (Vec<u8>, HashMap<String, Vec<u8>>) {
    assert_eq!(common::sha256_hex(&base), g["sha256"].as_str().unwrap(), "the base differs from the goldens': run scripts/goldens-lora");
    let header = hearth::gguf::parse_file(&base).unwrap();
    let strength = g["strength"].as_f64().unwrap() as f32;
    let mut adapters = HashMap::new();
    for (name, sha) in g["adapters"].as_object().unwrap() {
        let bytes = build_lora(&header, &lora_spec(name).unwrap(), strength).unwrap();
        assert_eq!(common::sha256_hex(&bytes), sha.as_str().unwrap(), "adapter {name} differs from the goldens': run scripts/goldens-lora");
        adapters.insert(name.clone(), bytes);
    }
    (base, adapters)
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_tokens: n, sampler: SamplerConfig::greedy(), stop_at_eos: false, batch: 5, ..Default::default() }
}

/// Per case: the largest |ours - llama.cpp| over the top-10 logits of every prompt position, the
/// median over positions, and greedy steps that differ (a failure unless llama.cpp's top-2 margin
/// there is under `max_tol`: a near tie the logit differences may flip).
struct CaseReport {
    what: String,
    median: f32,
    max: f32,
    greedy: String,
}

/// Run every case of golden `g` on `engine` (adapters replaced per case), with tolerances by the
/// adapter types of the case.
fn check<B: Backend + Clone>(engine: &mut Engine<B>, g: &serde_json::Value, adapters: &HashMap<String, Vec<u8>>, tol: impl Fn(&[String]) -> (f32, f32), failures: &mut Vec<String>) -> Vec<CaseReport> {
    let n_vocab = engine.model.config.n_vocab;
    let mut reports = Vec::new();
    for case in g["cases"].as_array().unwrap() {
        for a in engine.adapters() {
            engine.remove_adapter(a.id).unwrap();
        }
        let mut names = Vec::new();
        for pair in case["adapters"].as_array().unwrap() {
            let (name, scale) = (pair[0].as_str().unwrap().to_string(), pair[1].as_f64().unwrap() as f32);
            engine.load_adapter(&adapters[&name], scale).unwrap();
            names.push(format!("{name}:{scale}"));
        }
        let what = names.join("+");
        let types: Vec<String> = case["adapters"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap().to_string()).collect();
        let (median_tol, max_tol) = tol(&types);
        let mut diffs = Vec::new();
        let mut greedy_notes = Vec::new();
        for p in case["prompts"].as_array().unwrap() {
            let tokens = common::u32s(&p["prompt_tokens"]);
            assert_eq!(engine.tokenize_prompt(p["prompt"].as_str().unwrap()), tokens);
            let logits = engine.prompt_logits(&tokens).unwrap();
            diffs.extend(common::top_k_diffs(&logits, n_vocab, &p["positions"]));
            let want = common::u32s(&p["greedy"]);
            let margins = common::f32s(&p["greedy_margins"]);
            let got = engine.generate(&tokens, 256, &greedy(want.len()), |_| true).unwrap().tokens;
            match (0..want.len()).find(|&i| got.get(i) != Some(&want[i])) {
                None => greedy_notes.push(format!("{}/{}", want.len(), want.len())),
                Some(i) if margins[i] < max_tol => greedy_notes.push(format!("{i}/{} (tie {:.3})", want.len(), margins[i])),
                Some(i) => failures.push(format!("{what}: greedy differs at step {i} (llama.cpp margin {}): ours {got:?}, llama.cpp {want:?}", margins[i])),
            }
        }
        diffs.sort_by(f32::total_cmp);
        let (median, max) = (diffs[diffs.len() / 2], *diffs.last().unwrap());
        if median > median_tol || max > max_tol {
            failures.push(format!("{what}: logit difference median {median}, max {max}; tolerances {median_tol}, {max_tol}"));
        }
        reports.push(CaseReport { what, median, max, greedy: greedy_notes.join(" ") });
    }
    reports
}

fn print(title: &str, reports: &[CaseReport]) {
    eprintln!("{title}: adapters:scale, |logit diff| vs llama.cpp median / max, greedy steps equal");
    for r in reports {
        eprintln!("  {:<12} {:<10.6} {:<10.6} {}", r.what, r.median, r.max, r.greedy);
    }
}

/// Tolerances on the F32 fixture (tests/golden_model.rs's, by what rounds activations): an F32
/// adapter keeps the f32 arithmetic, so its deltas add no rounding of their own (F16 cache:
/// 1e-4 / 5e-3); F16 halves round their inputs to f16 (1e-2 / 0.05), Q8_0 halves quantize them
/// to 8 bits per block, where a last-bit difference can cross a step (1e-3 / 0.5).
fn fixture_tolerance(types: &[String]) -> (f32, f32) {
    let mut t = (1e-4f32, 5e-3f32);
    for ty in types {
        let (m, x) = match ty.as_str() {
            "b" => (1e-2, 0.05),
            "c" => (1e-3, 0.5),
            _ => (1e-4, 5e-3),
        };
        t = (t.0.max(m), t.1.max(x));
    }
    t
}

#[test]
fn matches_llama_cpp_on_the_dense_fixture() {
    let g = common::read_json("lora-spm-f32.json");
    let (base, adapters) = golden_inputs(&g, common::fixture_bytes(g["base"].as_str().unwrap()));
    let mut engine = common::load(&base, 1 << 20);
    let mut failures = Vec::new();
    let reports = check(&mut engine, &g, &adapters, fixture_tolerance, &mut failures);
    print("spm-f32 on the CPU", &reports);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The real model: tests/real_model.rs's Q4_1 tolerances (activation quantization flips on
/// SmolLM2's outliers: median 0.5, max 1.5, near ties under 1.0), while the adapters at scale 1
/// move its logits by several units.
#[test]
fn matches_llama_cpp_on_the_real_model() {
    let Ok(path) = std::env::var("HEARTH_REAL_MODEL") else {
        eprintln!("real-model LoRA test not run: set HEARTH_REAL_MODEL (scripts/test does)");
        return;
    };
    let g = common::read_json("lora-real-smollm2-q4_1.json");
    let (base, adapters) = golden_inputs(&g, std::fs::read(path).unwrap());
    let mut engine = common::load(&base, 4 << 20);
    let mut failures = Vec::new();
    let reports = check(&mut engine, &g, &adapters, |_| (0.5, 1.5), &mut failures);
    print("SmolLM2-135M Q4_1 on the CPU", &reports);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The goldens' adapters really change the outputs: every case's logits differ from the base's
/// far beyond the tolerances, except scale 0, which is the base exactly.
#[test]
fn adapters_move_the_logits_and_scale_zero_is_the_base() {
    let g = common::read_json("lora-spm-f32.json");
    let (base, adapters) = golden_inputs(&g, common::fixture_bytes(g["base"].as_str().unwrap()));
    let engine = common::load(&base, 1 << 20);
    let tokens = engine.tokenize_prompt("Once upon a time");
    let plain = engine.prompt_logits(&tokens).unwrap();
    for (name, bytes) in &adapters {
        let id = engine.load_adapter(bytes, 0.0).unwrap();
        assert_eq!(engine.prompt_logits(&tokens).unwrap(), plain, "{name} at scale 0");
        engine.set_adapter_scale(id, 1.0).unwrap();
        let moved = engine.prompt_logits(&tokens).unwrap();
        let d = plain.iter().zip(&moved).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d > 1.0, "adapter {name} moves the logits by only {d}");
        engine.remove_adapter(id).unwrap();
        assert_eq!(engine.prompt_logits(&tokens).unwrap(), plain, "{name} removed");
    }
}

/// A session's cache computed under other adapters or scales is not reused: the next start
/// re-prefills, and gives what a fresh session gives. A bare sequence refuses more tokens.
#[test]
fn changing_adapters_drops_the_kv_cache() {
    let g = common::read_json("lora-spm-f32.json");
    let (base, adapters) = golden_inputs(&g, common::fixture_bytes(g["base"].as_str().unwrap()));
    let engine = common::load(&base, 1 << 20);
    let prompt = engine.tokenize_prompt("Once upon a time there was");
    let opts = greedy(8);
    let mut session = engine.new_session(128).unwrap();
    session.start(&engine, &prompt, &opts).unwrap();
    while session.next(&engine).unwrap().is_some() {}
    let plain = session.generated().to_vec();
    // Same prompt, same adapters: the cache is reused.
    assert_eq!(session.start(&engine, &prompt, &opts).unwrap(), prompt.len() - 1);

    let id = engine.load_adapter(&adapters["a"], 1.0).unwrap();
    let fresh = engine.generate(&prompt, 128, &opts, |_| true).unwrap().tokens;
    assert_ne!(fresh, plain, "adapter a changes the greedy tokens");
    assert_eq!(session.start(&engine, &prompt, &opts).unwrap(), 0, "a new adapter: nothing reused");
    while session.next(&engine).unwrap().is_some() {}
    assert_eq!(session.generated(), fresh);

    engine.set_adapter_scale(id, 0.5).unwrap();
    assert_eq!(session.start(&engine, &prompt, &opts).unwrap(), 0, "a new scale: nothing reused");
    engine.set_adapter_scale(id, 0.5).unwrap();
    assert_eq!(session.start(&engine, &prompt, &opts).unwrap(), prompt.len() - 1, "the same scale again: reused");
    engine.remove_adapter(id).unwrap();
    assert_eq!(session.start(&engine, &prompt, &opts).unwrap(), 0);
    while session.next(&engine).unwrap().is_some() {}
    assert_eq!(session.generated(), plain, "removed: the base model's tokens again");

    let mut seq = engine.new_sequence(64).unwrap();
    engine.model.forward(&mut seq, &prompt, Logits::Last).unwrap();
    engine.load_adapter(&adapters["b"], 1.0).unwrap();
    let e = engine.model.forward(&mut seq, &[5], Logits::Last).unwrap_err();
    assert_eq!(e.code(), "invalid_argument", "{e}");
}

fn err(engine: &mut Engine<Cpu>, bytes: &[u8]) -> HearthError {
    engine.load_adapter(bytes, 1.0).unwrap_err()
}

/// An adapter GGUF with these metadata (over the usual ones) and tensors (F32 values of 0.01).
fn adapter(meta: &[(&str, Value)], tensors: &[(&str, Vec<u64>)]) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta("general.type", Value::String("adapter".into()))
        .meta("adapter.type", Value::String("lora".into()))
        .meta("adapter.lora.alpha", Value::F32(8.0));
    for (k, v) in meta {
        w.meta(k, v.clone());
    }
    for (name, dims) in tensors {
        let n = dims.iter().product::<u64>() as usize;
        w.tensor(name, dims.clone(), TensorType::F32, std::iter::repeat_n(0.01f32.to_le_bytes(), n).flatten().collect());
    }
    w.to_bytes()
}

#[test]
fn adapters_that_do_not_fit_are_typed_errors_naming_the_tensor() {
    let spm = common::fixture_bytes("spm-f32.gguf");
    let bpe = common::fixture_bytes("bpe-q4_0.gguf");
    let mut engine = common::load(&spm, 1 << 20);
    let q = |l: u32, s: &str| format!("blk.{l}.attn_q.weight.{s}");
    let (qa, qb) = (q(0, "lora_a"), q(0, "lora_b"));
    let good = [(qa.as_str(), vec![256, 4]), (qb.as_str(), vec![4, 256])];
    assert!(engine.load_adapter(&adapter(&[], &good), 1.0).is_ok(), "a well-formed adapter loads");

    // A model file is not an adapter.
    let e = err(&mut engine, &spm);
    assert_eq!(e.code(), "not_an_adapter", "{e}");
    assert!(e.message().contains("general.type"), "{e}");
    // An adapter for another architecture.
    let e = err(&mut engine, &adapter(&[("general.architecture", Value::String("qwen2".into()))], &good));
    assert_eq!(e.code(), "adapter_mismatch", "{e}");
    assert!(e.message().contains("general.architecture") && e.message().contains("qwen2"), "{e}");
    // Not LoRA, or activated LoRA.
    assert_eq!(err(&mut engine, &adapter(&[("adapter.type", Value::String("control_vector".into()))], &good)).code(), "not_an_adapter");
    let alora = [("adapter.alora.invocation_tokens", Value::Array(vec![Value::U32(1)]))];
    assert_eq!(err(&mut engine, &adapter(&alora, &good)).code(), "not_an_adapter");
    // An adapter made for another base (the bpe fixture: other K/V and FFN sizes).
    let header = hearth::gguf::parse_file(&bpe).unwrap();
    let e = err(&mut engine, &build_lora(&header, &lora_spec("a").unwrap(), 0.5).unwrap());
    assert_eq!(e.code(), "adapter_mismatch", "{e}");
    assert!(e.message().contains("tensor 'blk.0.attn_k.weight.lora_b'"), "{e}");
    // A tensor the model does not have (a third layer of a two-layer model).
    let (a2, b2) = (q(2, "lora_a"), q(2, "lora_b"));
    let e = err(&mut engine, &adapter(&[], &[(a2.as_str(), vec![256, 4]), (b2.as_str(), vec![4, 256])]));
    assert_eq!(e.code(), "adapter_mismatch", "{e}");
    assert!(e.message().contains("'blk.2.attn_q.weight'"), "{e}");
    // Wrong shapes: A's input size, a rank that differs between A and B.
    let e = err(&mut engine, &adapter(&[], &[(qa.as_str(), vec![128, 4]), (qb.as_str(), vec![4, 256])]));
    assert!(e.code() == "adapter_mismatch" && e.message().contains(&qa), "{e}");
    let e = err(&mut engine, &adapter(&[], &[(qa.as_str(), vec![256, 4]), (qb.as_str(), vec![8, 256])]));
    assert!(e.code() == "adapter_mismatch" && e.message().contains(&qa), "{e}");
    // Half a pair; a tensor that is no half.
    let e = err(&mut engine, &adapter(&[], &good[..1]));
    assert!(e.code() == "not_an_adapter" && e.message().contains("blk.0.attn_q.weight.lora_b"), "{e}");
    let e = err(&mut engine, &adapter(&[], &[(qa.as_str(), vec![256, 4]), (qb.as_str(), vec![4, 256]), ("blk.0.attn_q.weight", vec![256, 256])]));
    assert!(e.code() == "not_an_adapter" && e.message().contains("'blk.0.attn_q.weight'"), "{e}");
    // A pair for a norm vector, which no matmul uses.
    let e = err(&mut engine, &adapter(&[], &[("output_norm.weight.lora_a", vec![256, 4]), ("output_norm.weight.lora_b", vec![4, 256])]));
    assert!(e.code() == "adapter_mismatch" && e.message().contains("output_norm.weight"), "{e}");
    // Truncated.
    let bytes = adapter(&[], &good);
    assert_eq!(err(&mut engine, &bytes[..bytes.len() - 100]).code(), "truncated");
    // The embedding of a tied model (bpe): it is also the output projection.
    let mut tied = common::load(&bpe, 1 << 20);
    let emb = [("token_embd.weight.lora_a", vec![4, tied.model.config.n_vocab as u64]), ("token_embd.weight.lora_b", vec![4, 256])];
    let e = err(&mut tied, &adapter(&[], &emb));
    assert!(e.code() == "adapter_mismatch" && e.message().contains("token_embd.weight"), "{e}");
    // Bad scales and ids.
    assert_eq!(engine.load_adapter(&adapter(&[], &good), f32::NAN).unwrap_err().code(), "invalid_argument");
    assert_eq!(engine.set_adapter_scale(999, 1.0).unwrap_err().code(), "invalid_argument");
    assert_eq!(engine.remove_adapter(999).unwrap_err().code(), "invalid_argument");
    // Only the good adapter was added, with its metadata.
    let list = engine.adapters();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].alpha, list[0].rank, list[0].tensors, list[0].scale), (8.0, 4, 1, 1.0));
}

/// On WebGPU (lavapipe natively), both kernel paths: the fixture's goldens, against llama.cpp and
/// The GPU does not round activations (tests/gpu.rs): F16 and Q8_0 halves' inputs stay f32 where
/// llama.cpp rounds them to f16 or quantizes them to 8 bits per block, and the F16 cache's query
/// and softmax weights are not rounded either. So every case gets tests/gpu.rs's F16-cache bound
/// for F32 weights (0.02 / 0.05; measured up to 0.002 / 0.004 without the Q8_0 adapter), and a
/// case with Q8_0 halves, whose 8-bit rounding llama.cpp has and we do not at every one of its
/// matmuls, a median of 0.05 (measured c:1 0.027 / 0.063).
#[test]
fn matches_llama_cpp_on_webgpu() {
    let g = common::read_json("lora-spm-f32.json");
    let (base, adapters) = golden_inputs(&g, common::fixture_bytes(g["base"].as_str().unwrap()));
    let mut failures = Vec::new();
    for disable_f16 in [false, true] {
        let gpu = Gpu::new_blocking(GpuOptions { disable_f16, ..GpuOptions::default() }).expect("a Vulkan adapter (lavapipe)");
        let mut engine = common::load_with(gpu, &base, 1 << 20);
        let gpu_tolerance = |types: &[String]| {
            let (m, x) = fixture_tolerance(types);
            let q8 = if types.iter().any(|t| t == "c") { 0.05 } else { 0.02 };
            (m.max(q8), x.max(0.05))
        };
        let reports = check(&mut engine, &g, &adapters, gpu_tolerance, &mut failures);
        print(&format!("spm-f32 on WebGPU ({} kernels)", if disable_f16 { "f32" } else { "f16" }), &reports);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `hearth logits` and `generate` with `--lora F[:scale]` (repeatable): the same JSON shapes as
/// without, llama.cpp's logits and greedy tokens for two adapters at once; `lora-fixture` writes
/// the goldens' adapters; a mismatched adapter is one typed error line.
#[test]
fn cli_takes_lora_adapters() {
    let g = common::read_json("lora-spm-f32.json");
    let (base, adapters) = golden_inputs(&g, common::fixture_bytes(g["base"].as_str().unwrap()));
    let dir = std::env::temp_dir().join(format!("hearth-lora-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("spm-f32.gguf");
    std::fs::write(&model, &base).unwrap();
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    for name in ["a", "b"] {
        let out = run(&["lora-fixture", "--model", &p("spm-f32.gguf"), "--spec", name, "--strength", "0.5", "--out", &p(&format!("lora-{name}.gguf"))]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(p(&format!("lora-{name}.gguf"))).unwrap(), adapters[name], "lora-fixture writes the goldens' adapter {name}");
    }
    let case = g["cases"].as_array().unwrap().iter().find(|c| c["adapters"] == serde_json::json!([["a", 1.0], ["b", 0.5]])).unwrap();
    let want = &case["prompts"][0];
    let (la, lb) = (format!("{}:1", p("lora-a.gguf")), format!("{}:0.5", p("lora-b.gguf")));
    let prompt = want["prompt"].as_str().unwrap();
    let out = run(&["logits", "--model", &p("spm-f32.gguf"), "--prompt", prompt, "--top", "10", "--json", "--lora", &la, "--lora", &lb]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["positions", "prompt_tokens"]);
    assert_eq!(v["prompt_tokens"], want["prompt_tokens"]);
    for (ours, theirs) in v["positions"].as_array().unwrap().iter().zip(want["positions"].as_array().unwrap()) {
        assert_eq!(ours["ids"], theirs["ids"]);
        let d = common::f32s(&ours["logits"]).iter().zip(common::f32s(&theirs["logits"])).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d < 0.05, "{d}");
    }
    let n = want["greedy"].as_array().unwrap().len().to_string();
    let out = run(&["generate", "--model", &p("spm-f32.gguf"), "--prompt", prompt, "--max-tokens", &n, "--temperature", "0", "--json", "--lora", &la, "--lora", &lb]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["prompt_tokens", "text", "tokens"]);
    assert_eq!(v["tokens"], want["greedy"]);
    // No scale: 1. A model as an adapter: one error line.
    let plain = run(&["generate", "--model", &p("spm-f32.gguf"), "--prompt", prompt, "--max-tokens", "4", "--temperature", "0", "--json", "--lora", &p("lora-a.gguf")]);
    let one = run(&["generate", "--model", &p("spm-f32.gguf"), "--prompt", prompt, "--max-tokens", "4", "--temperature", "0", "--json", "--lora", &format!("{}:1", p("lora-a.gguf"))]);
    assert_eq!(plain.stdout, one.stdout);
    let out = run(&["logits", "--model", &p("spm-f32.gguf"), "--prompt", prompt, "--json", "--lora", &p("spm-f32.gguf")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.starts_with("hearth: error [not_an_adapter]: ") && stderr.lines().count() == 1, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
