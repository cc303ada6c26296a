//! The `hearth` binary: JSON output shapes outside tools rely on, agreement with the library, and
//! errors as one `hearth: error [code]: ...` line with a non-zero exit, never a panic.

use crate::common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURE: &str = "spm-q4_0";

/// A file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("hearth-cli-test-{}-{tag}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn fixture(tag: &str) -> (TempFile, Vec<u8>) {
    let spec = hearth::fixture::spec("spm").unwrap();
    let bytes = hearth::fixture::build(&spec, "q4_0").unwrap();
    (TempFile::new(&format!("{tag}-{FIXTURE}.gguf"), &bytes), bytes)
}

fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().expect("run hearth")
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Stdout of a successful run, parsed as exactly one JSON value on one line.
fn json_ok(out: &Output) -> Value {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hearth failed: {stderr}");
    assert!(!stdout.contains("panicked") && !stderr.contains("panicked"));
    assert_eq!(stdout.lines().count(), 1, "one JSON line expected: {stdout:?}");
    serde_json::from_str(stdout.trim_end()).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().expect("a JSON object").keys().map(|s| s.as_str()).collect();
    k.sort();
    k
}


#[test]
fn tokenize_json_matches_the_library() {
    let (file, bytes) = fixture("tokenize");
    let header = hearth::gguf::parse_file(&bytes).unwrap();
    let tok = hearth::tokenizer::Tokenizer::from_metadata(&header.metadata).unwrap();
    for text in ["Hello world", "The quick brown fox jumps over the lazy dog.", "  leading spaces\nand <s> text", "Ünïcödé ✓ 12345"] {
        let out = hearth(&["tokenize", "--model", path_str(&file.0), "--text", text, "--json"]);
        let want = tok.encode(text, false, false);
        let stdout = String::from_utf8(out.stdout.clone()).unwrap();
        assert_eq!(stdout, format!("{}\n", serde_json::json!({ "tokens": want })), "exact output for {text:?}");
        let v = json_ok(&out);
        assert_eq!(keys(&v), ["tokens"]);
        assert_eq!(common::u32s(&v["tokens"]), want);
    }
}

#[test]
fn generate_json_is_the_greedy_continuation() {
    let (file, bytes) = fixture("generate");
    let golden = common::read_json(&format!("model-{FIXTURE}.json"));
    let case = &golden["cases"][0];
    let prompt = case["prompt"].as_str().unwrap();
    let out = hearth(&["generate", "--model", path_str(&file.0), "--prompt", prompt, "--temperature", "0", "--max-tokens", "8", "--json"]);
    let v = json_ok(&out);
    assert_eq!(keys(&v), ["prompt_tokens", "text", "tokens"]);

    let engine = common::load(&bytes, 1 << 20);
    let prompt_tokens = common::u32s(&v["prompt_tokens"]);
    assert_eq!(prompt_tokens[0], engine.tokenizer.bos().unwrap(), "prompt starts with BOS");
    assert_eq!(prompt_tokens, engine.tokenize_prompt(prompt));
    assert_eq!(prompt_tokens, common::u32s(&case["prompt_tokens"]), "llama.cpp's tokens for the prompt");

    let tokens = common::u32s(&v["tokens"]);
    assert_eq!(tokens.len(), 8);
    // The same as the library's greedy run...
    let opts = hearth::GenerateOptions { max_tokens: 8, sampler: hearth::sampler::SamplerConfig::greedy(), stop_at_eos: false, batch: 64, ..Default::default() };
    let lib = engine.generate(&prompt_tokens, 512, &opts, |_| true).unwrap();
    assert_eq!(tokens, lib.tokens, "CLI and library greedy tokens");
    // ...and as llama.cpp's.
    let want: Vec<u32> = common::u32s(&case["greedy"])[..8].to_vec();
    assert_eq!(tokens, want, "llama.cpp's greedy tokens (goldens model-{FIXTURE}.json)");

    assert_eq!(v["text"].as_str().unwrap(), engine.tokenizer.decode(&tokens, false, false));
    assert_eq!(v["text"].as_str().unwrap(), lib.text);
}

#[test]
fn logits_json_has_sorted_top_k_per_position() {
    let (file, bytes) = fixture("logits");
    let prompt = "Once upon a time";
    let out = hearth(&["logits", "--model", path_str(&file.0), "--prompt", prompt, "--top", "5", "--json"]);
    let v = json_ok(&out);
    assert_eq!(keys(&v), ["positions", "prompt_tokens"]);
    let engine = common::load(&bytes, 1 << 20);
    let tokens = engine.tokenize_prompt(prompt);
    assert_eq!(common::u32s(&v["prompt_tokens"]), tokens);
    let positions = v["positions"].as_array().unwrap();
    assert_eq!(positions.len(), tokens.len(), "one entry per prompt position");
    let n_vocab = engine.model.config.n_vocab;
    let logits = engine.prompt_logits(&tokens).unwrap();
    for (pos, p) in positions.iter().enumerate() {
        assert_eq!(keys(p), ["ids", "logits"]);
        let ids = common::u32s(&p["ids"]);
        let ls: Vec<f32> = p["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(ids.len(), 5);
        assert_eq!(ls.len(), 5);
        assert!(ls.windows(2).all(|w| w[0] >= w[1]), "position {pos}: logits not sorted: {ls:?}");
        let row = &logits[pos * n_vocab..(pos + 1) * n_vocab];
        for (&id, &l) in ids.iter().zip(&ls) {
            assert!((row[id as usize] - l).abs() <= 1e-6 * l.abs().max(1.0), "position {pos}, id {id}: {l} vs {}", row[id as usize]);
        }
        // Really the top 5: nothing outside them is larger than the 5th.
        let fifth = ls[4];
        let above = row.iter().enumerate().filter(|(i, &x)| x > fifth && !ids.contains(&(*i as u32))).count();
        assert_eq!(above, 0, "position {pos}: a logit above the 5th is missing");
    }
}

/// A failing run: non-zero exit, exactly one stderr line "hearth: error [code]: ...", no panic.
fn assert_fails_with(out: &Output, code: &str, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: exit status {:?}", out.status);
    assert!(!stderr.contains("panicked") && !stdout.contains("panicked"), "{what}: panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one stderr line expected: {stderr:?}");
    assert!(lines[0].starts_with("hearth: error ["), "{what}: {:?}", lines[0]);
    assert!(lines[0].contains(&format!("[{code}]")), "{what}: code {code} expected in {:?}", lines[0]);
}

#[test]
fn errors_are_one_line_with_a_code() {
    let missing = std::env::temp_dir().join(format!("hearth-cli-test-{}-does-not-exist.gguf", std::process::id()));
    let not_gguf = TempFile::new("not-gguf.gguf", b"<!DOCTYPE html><html><body>404</body></html>\n");
    let (_, bytes) = fixture("truncated");
    let half = TempFile::new("truncated-half.gguf", &bytes[..bytes.len() / 2]);
    let header_only = TempFile::new("truncated-header.gguf", &bytes[..1000]);

    for (file, code) in [
        (missing.as_path(), "io"),
        (not_gguf.0.as_path(), "bad_magic"),
        (half.0.as_path(), "truncated"),
        (header_only.0.as_path(), "truncated"),
    ] {
        let m = path_str(file);
        let what = |cmd: &str| format!("{cmd} on {}", file.display());
        assert_fails_with(&hearth(&["generate", "--model", m, "--prompt", "Hi", "--max-tokens", "2", "--json"]), code, &what("generate"));
        assert_fails_with(&hearth(&["logits", "--model", m, "--prompt", "Hi", "--json"]), code, &what("logits"));
        // tokenize reads only the header: a file cut inside its tensor data still tokenizes.
        if file != half.0.as_path() {
            assert_fails_with(&hearth(&["tokenize", "--model", m, "--text", "Hi", "--json"]), code, &what("tokenize"));
        }
    }
    // The header is all tokenize needs.
    let out = hearth(&["tokenize", "--model", path_str(&half.0), "--text", "Hi", "--json"]);
    json_ok(&out);
}

#[test]
fn split_writes_shards_that_generate_loads_from_the_first() {
    let (file, _) = fixture("split");
    let prefix = std::env::temp_dir().join(format!("hearth-cli-test-{}-shards", std::process::id()));
    let out = hearth(&["split", "--model", path_str(&file.0), "--shards", "3", "--out", path_str(&prefix)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    let _cleanup: Vec<TempFile> = names.iter().map(|n| TempFile(PathBuf::from(n))).collect();
    assert_eq!(names.len(), 3);
    assert!(names[0].ends_with("-shards-00001-of-00003.gguf"), "{names:?}");
    let args = |model: &str| {
        let a = ["generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "6", "--temperature", "0", "--json"];
        json_ok(&hearth(&a))["tokens"].clone()
    };
    assert_eq!(args(&names[0]), args(path_str(&file.0)), "the split model generates what the whole file does");
    // Without its last shard the model does not load, and says which shard is missing.
    std::fs::remove_file(&names[2]).unwrap();
    let out = hearth(&["generate", "--model", &names[0], "--prompt", "x", "--max-tokens", "1", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.starts_with("hearth: error [io]:") && stderr.contains("00003-of-00003"), "{stderr}");
}

/// `bench-gpu` (on lavapipe here): a JSON line for the adapter, one per timed matrix and rows,
/// and one for the model; an unknown weight type fails before any GPU work.
#[test]
fn bench_gpu_prints_a_json_line_per_measurement() {
    let (model, _) = fixture("bench-gpu");
    let args = ["bench-gpu", "--types", "q8_0", "--rows", "4", "--no-output", "--seconds", "0.01", "--prompt-tokens", "6", "--decode-tokens", "2"];
    let out = hearth(&[&args[..], &["--model", path_str(&model.0)]].concat());
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(out.status.success(), "hearth failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1 + 3 * 2 + 1, "{stdout}");
    assert_eq!(keys(&lines[0]), ["adapter", "backend", "device_type", "f16", "generic_kernels"]);
    for (l, rows) in lines[1..7].iter().zip([1, 4, 1, 4, 1, 4]) {
        assert_eq!(keys(l), ["gb_per_s", "gflop_per_s", "k", "matrix", "ms_per_call", "n", "reps", "rows", "type"]);
        assert_eq!((l["type"].as_str(), l["rows"].as_u64()), (Some("Q8_0"), Some(rows)));
        assert!(l["gb_per_s"].as_f64().unwrap() > 0.0 && l["gflop_per_s"].as_f64().unwrap() > 0.0, "{l}");
    }
    let m = &lines[7];
    assert_eq!(keys(m), ["decode_tok_per_s", "decode_tokens", "load_s", "model", "prefill_tok_per_s", "prompt_tokens"]);
    assert_eq!((m["prompt_tokens"].as_u64(), m["decode_tokens"].as_u64()), (Some(6), Some(2)));
    assert!(m["prefill_tok_per_s"].as_f64().unwrap() > 0.0 && m["decode_tok_per_s"].as_f64().unwrap() > 0.0, "{m}");
    assert_fails_with(&hearth(&["bench-gpu", "--types", "iq2_xxs"]), "invalid_argument", "bench-gpu of a type without GPU kernels");
}

#[test]
fn perplexity_json_is_llama_perplexity_computed_independently() {
    let (file, bytes) = fixture("ppl");
    let text_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fixture/corpus.txt");
    let text = std::fs::read_to_string(&text_path).unwrap();
    let ctx = 64;
    let out = hearth(&["perplexity", "--model", path_str(&file.0), "--file", path_str(&text_path), "--ctx", "64", "--batch", "24", "--json"]);
    let v = json_ok(&out);
    for k in ["perplexity", "uncertainty", "tokens", "chunks", "scored", "ctx", "batch", "chunk_perplexities", "seconds", "tokens_per_second"] {
        assert!(v.get(k).is_some(), "perplexity JSON lacks {k}: {v}");
    }

    // The same figure from whole-chunk logits: chunks of ctx tokens (the rest left out), BOS
    // first in each (this vocabulary adds one), positions ctx/2 .. ctx-2 scored.
    let engine = common::load(&bytes, 1 << 20);
    let tokens = engine.tokenize_prompt(&text);
    let n_vocab = engine.model.config.n_vocab;
    let chunks = tokens.len() / ctx;
    let (mut nll, mut count) = (0f64, 0usize);
    for c in 0..chunks {
        let mut chunk = tokens[c * ctx..(c + 1) * ctx].to_vec();
        chunk[0] = engine.tokenizer.bos().unwrap();
        let logits = engine.prompt_logits(&chunk).unwrap();
        for j in ctx / 2..ctx - 1 {
            let row = &logits[j * n_vocab..(j + 1) * n_vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
            nll -= (row[tokens[c * ctx + j + 1] as usize] - max) as f64 - sum.ln();
            count += 1;
        }
    }
    let want = (nll / count as f64).exp();
    assert_eq!(v["tokens"].as_u64().unwrap() as usize, tokens.len());
    assert_eq!(v["chunks"].as_u64().unwrap() as usize, chunks);
    assert_eq!(v["scored"].as_u64().unwrap() as usize, count);
    assert!(chunks >= 2, "the corpus should give several chunks of {ctx}");
    let got = v["perplexity"].as_f64().unwrap();
    assert!((got - want).abs() / want < 1e-4, "perplexity {got}, computed from whole-chunk logits {want}");
    assert_eq!(v["chunk_perplexities"].as_array().unwrap().len(), chunks);

    // Too short a text for two chunks, and a missing text file: one-line typed errors.
    let short = TempFile::new("short.txt", b"Only a few words here.");
    assert_fails_with(&hearth(&["perplexity", "--model", path_str(&file.0), "--file", path_str(&short.0), "--json"]), "invalid_argument", "short text");
    assert_fails_with(&hearth(&["perplexity", "--model", path_str(&file.0), "--file", "/nonexistent/t.txt", "--json"]), "io", "missing text");
}

#[test]
fn quantize_writes_what_the_fixture_writer_encodes() {
    let spec = hearth::fixture::spec("bpe").unwrap();
    let f32_file = TempFile::new("quantize-bpe-f32.gguf", &hearth::fixture::build(&spec, "f32").unwrap());
    for quant in ["q8_0", "q4_k_m"] {
        let out = std::env::temp_dir().join(format!("hearth-cli-test-{}-quantized-{quant}.gguf", std::process::id()));
        let run = hearth(&["quantize", "--model", path_str(&f32_file.0), "--type", quant, "--out", path_str(&out)]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let got = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        // Dequantizing F32 is exact, so every tensor must be byte for byte what the fixture
        // writer encodes from the same values in that type (and the mix assigns the same types).
        let want = hearth::fixture::build(&spec, quant).unwrap();
        let (g, w) = (hearth::gguf::parse_file(&got).unwrap(), hearth::gguf::parse_file(&want).unwrap());
        assert_eq!(g.tensors.len(), w.tensors.len());
        for (a, b) in g.tensors.iter().zip(&w.tensors) {
            assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty), "{quant}: tensor info");
            assert!(g.tensor_bytes(&got, a) == w.tensor_bytes(&want, b), "{quant}: {} differs", a.name);
        }
        let file_type = g.metadata.get("general.file_type").and_then(|v| v.as_u64());
        assert_eq!(file_type, Some(if quant == "q8_0" { 7 } else { 15 }));
    }
    assert_fails_with(&hearth(&["quantize", "--model", path_str(&f32_file.0), "--type", "q3_xs", "--out", "/tmp/x.gguf"]), "invalid_argument", "unknown type");
}

/// `hearth inspect --json`: what a load will need, from the header; its figures add up, follow the
/// context size and KV type, and the weights are what the file holds.
#[test]
fn inspect_json_sizes_a_load_from_the_header() {
    let (file, bytes) = fixture("inspect");
    let header = hearth::gguf::parse_header(&bytes).unwrap();
    let c = hearth::model::LlamaConfig::from_metadata(&header.metadata).unwrap();
    let run = |ctx: &str, kv: &str| json_ok(&hearth(&["inspect", "--model", path_str(&file.0), "--ctx", ctx, "--kv-type", kv, "--json"]));
    let v = run("256", "f16");
    assert_eq!(
        keys(&v),
        ["context_size", "cpu", "file_bytes", "gpu", "gpu_heap", "gpu_largest_buffer", "kv_bytes_per_value", "kv_type"]
    );
    for part in ["cpu", "gpu"] {
        let n = &v[part];
        assert_eq!(keys(n), ["kv_cache", "other", "scratch", "total", "weights"]);
        let sum: u64 = ["kv_cache", "other", "scratch", "weights"].iter().map(|k| n[k].as_u64().unwrap()).sum();
        assert_eq!(n["total"].as_u64().unwrap(), sum, "{part}");
    }
    assert_eq!(v["file_bytes"].as_u64().unwrap(), bytes.len() as u64);
    let kv = 2 * c.n_layer as u64 * 256 * c.kv_dim() as u64;
    assert_eq!(v["cpu"]["kv_cache"].as_u64().unwrap(), kv * 2, "f16: 2 bytes a value");
    // The quantized weights as the file holds them, the F32 norms padded to 32-value rows.
    let data: u64 = header.tensors.iter().map(|t| t.size).sum();
    let w = v["cpu"]["weights"].as_u64().unwrap();
    assert!(w >= data && w < data + data / 50, "{w} vs {data}");
    let q8 = run("512", "q8_0");
    assert_eq!(q8["cpu"]["kv_cache"].as_u64().unwrap(), (2 * kv * 34).div_ceil(32), "q8_0: 34 bytes per 32 values, twice the context");
    assert_eq!(q8["cpu"]["weights"], v["cpu"]["weights"]);
    let out = hearth(&["inspect", "--model", path_str(&file.0), "--kv-type", "q4_0"]);
    assert_fails_with(&out, "invalid_argument", "kvType");
}

/// `--kv-type` picks the KV cache type: the CLI's logits equal the library's with that cache (and
/// differ between types), `bench` reports the cache's bytes (34 per 32 values for q8_0), and an
/// unknown type is a usage error naming the choices.
#[test]
fn kv_type_flag_picks_the_cache_type() {
    use hearth::backend::KvType;
    let (file, bytes) = fixture("kvtype");
    let prompt = "Once upon a time";
    let mut engine = common::load(&bytes, 1 << 20);
    let tokens = engine.tokenize_prompt(prompt);
    let n_vocab = engine.model.config.n_vocab;
    let mut tops = Vec::new();
    for kv in KvType::ALL {
        let v = json_ok(&hearth(&["logits", "--model", path_str(&file.0), "--prompt", prompt, "--top", "3", "--json", "--kv-type", kv.name()]));
        engine.kv_type = kv;
        let logits = engine.prompt_logits(&tokens).unwrap();
        let last = v["positions"].as_array().unwrap().last().unwrap().clone();
        let row = &logits[(tokens.len() - 1) * n_vocab..];
        for (id, l) in common::u32s(&last["ids"]).into_iter().zip(common::f32s(&last["logits"])) {
            assert_eq!(row[id as usize], l, "{kv}: token {id}");
        }
        tops.push(common::f32s(&last["logits"]));
    }
    assert!(tops[0] != tops[1] && tops[1] != tops[2], "the cache types round differently: {tops:?}");

    let c = &engine.model.config;
    for (kv, bytes_per_32) in [("f32", 128), ("f16", 64), ("q8_0", 34)] {
        let v = json_ok(&hearth(&["bench", "--model", path_str(&file.0), "--kv-type", kv, "--prompt-tokens", "8", "--decode-tokens", "2", "--runs", "1"]));
        assert_eq!(v["kv_type"], kv);
        assert_eq!(v["ctx_size"], 10);
        let per_token = 2 * c.n_layer * c.kv_dim() / 32 * bytes_per_32;
        assert_eq!(v["kv_bytes_per_token"].as_u64().unwrap() as usize, per_token, "{kv}");
        assert_eq!(v["kv_cache_bytes"].as_u64().unwrap() as usize, 10 * per_token, "{kv}");
        assert!(v["prefill_tok_per_s"].as_f64().unwrap() > 0.0 && v["decode_tok_per_s"].as_f64().unwrap() > 0.0);
    }

    let out = hearth(&["generate", "--model", path_str(&file.0), "--prompt", prompt, "--kv-type", "q4_0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kvType must be \"f16\", \"q8_0\" or \"f32\"") && !stderr.contains("panicked"), "{stderr}");
}

/// `bench --json` reports the bytes of weights read per decoded token: for a dense model every
/// matrix once (the output projection included, the embedding only where it is tied), for a
/// mixture of experts only the router and the chosen experts (ARCHITECTURE.md "Mixture of
/// experts": moe-q4_k_m reads 931,336 bytes a token, where every expert would be 2,343,432).
#[test]
fn bench_reports_weight_bytes_per_token() {
    let run = |file: &TempFile| json_ok(&hearth(&["bench", "--model", path_str(&file.0), "--prompt-tokens", "4", "--decode-tokens", "3", "--runs", "2"]));
    let (file, bytes) = fixture("weight-bytes");
    let h = hearth::gguf::parse_header(&bytes).unwrap();
    let tied = h.tensor("output.weight").is_none();
    let matrices: u64 = h.tensors.iter().filter(|t| t.dims.len() >= 2 && (t.name != "token_embd.weight" || tied)).map(|t| t.size).sum();
    let v = run(&file);
    assert_eq!(v["weight_bytes_per_token"].as_u64().unwrap(), matrices, "spm-q4_0: every matrix once a token");
    assert!(v["decode_tok_per_s"].as_f64().unwrap() > 0.0, "the other fields stay");

    let moe = hearth::fixture::build(&hearth::fixture::spec("moe").unwrap(), "q4_k_m").unwrap();
    let file = TempFile::new(&format!("weight-bytes-moe-{FIXTURE}.gguf"), &moe);
    assert_eq!(run(&file)["weight_bytes_per_token"].as_u64().unwrap(), 931_336, "moe-q4_k_m: 2 of 8 experts");
}

/// `logits --ctx-size N` runs the prompt in a context of N positions: the same logits as the
/// prompt's own length when it fits, context_overflow when it does not.
#[test]
fn logits_ctx_size_sizes_the_context() {
    let (file, _) = fixture("logits-ctx");
    let run = |extra: &[&str]| {
        let mut args = vec!["logits", "--model", path_str(&file.0), "--prompt", "Once upon a time", "--top", "3", "--json"];
        args.extend_from_slice(extra);
        hearth(&args)
    };
    let own = json_ok(&run(&[]));
    assert_eq!(json_ok(&run(&["--ctx-size", "64"])), own);
    assert_fails_with(&run(&["--ctx-size", "2"]), "context_overflow", "a context of 2 tokens");
}
