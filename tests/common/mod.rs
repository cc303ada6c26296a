//! Shared by the integration tests: fixtures rebuilt in memory and checked against the goldens.
#![allow(dead_code)]

use hearth::backend::cpu::Cpu;
use hearth::{Engine, EngineLoader};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

pub fn read_json(name: &str) -> serde_json::Value {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The bytes of fixture `spm-q4_k.gguf`, built by the project's own generator.
pub fn fixture_bytes(file: &str) -> Vec<u8> {
    let stem = file.trim_end_matches(".gguf");
    let (spec, quant) = stem.split_once('-').expect("fixture name is SPEC-QUANT.gguf");
    let spec = hearth::fixture::spec(spec).expect("known fixture spec");
    hearth::fixture::build(&spec, quant).expect("fixture builds")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Fixture bytes, failing clearly when the generator no longer produces what the goldens saw.
pub fn checked_fixture(file: &str, sha: &str) -> Vec<u8> {
    let bytes = fixture_bytes(file);
    assert_eq!(
        sha256_hex(&bytes),
        sha,
        "fixture {file} differs from the one the goldens were made from: run scripts/goldens to regenerate them"
    );
    bytes
}

/// The model goldens (`model-*.json` in tests/golden) whose file names `keep` accepts, sorted.
pub fn model_goldens(keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("model-") && n.ends_with(".json") && keep(n))
        .collect();
    v.sort();
    v
}

/// Every spec in `specs` has a golden among `files` in each of `quants`; `how` says how to make
/// a missing one.
pub fn assert_goldens_exist(files: &[String], specs: &[hearth::fixture::Spec], quants: &[&str], how: &str) {
    for spec in specs {
        for q in quants {
            let name = format!("model-{}-{q}.json", spec.name);
            assert!(files.contains(&name), "missing golden {name}: run {how}");
        }
    }
}

/// A model golden's fixture: its quant type (`spm-q4_k.gguf`: "q4_k") and its bytes, checked
/// against the sha256 the golden records.
pub fn golden_fixture(g: &serde_json::Value) -> (String, Vec<u8>) {
    let fixture = g["fixture"].as_str().unwrap();
    let quant = fixture.trim_end_matches(".gguf").split_once('-').unwrap().1.to_string();
    (quant, checked_fixture(fixture, g["sha256"].as_str().unwrap()))
}

/// Load through the streaming path, in chunks that split headers and tensors at odd places.
pub fn load(bytes: &[u8], chunk: usize) -> Engine<Cpu> {
    load_with(Cpu, bytes, chunk)
}

pub fn load_with<B: hearth::backend::Backend>(backend: B, bytes: &[u8], chunk: usize) -> Engine<B> {
    let mut loader = EngineLoader::new(backend);
    for c in bytes.chunks(chunk) {
        loader.feed(c).unwrap();
    }
    loader.finish().unwrap()
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Per prompt position, the largest |ours - llama.cpp| over a golden case's top-K logits
/// (`positions`: [{ids, logits}] per position; `logits`: ours, `n_vocab` per position).
pub fn top_k_diffs(logits: &[f32], n_vocab: usize, positions: &serde_json::Value) -> Vec<f32> {
    positions
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(pos, p)| top_k_diff(&logits[pos * n_vocab..(pos + 1) * n_vocab], p))
        .collect()
}

/// The largest |ours - llama.cpp| over one position's golden top-K logits (`p`: {ids, logits};
/// `row`: our logits there).
pub fn top_k_diff(row: &[f32], p: &serde_json::Value) -> f32 {
    u32s(&p["ids"]).into_iter().zip(f32s(&p["logits"])).map(|(id, want)| (row[id as usize] - want).abs()).fold(0f32, f32::max)
}

/// One golden file of a fixture against llama.cpp: its prompts' tokens must be equal, the median
/// and largest top-k logit differences over every position must be within the tolerances, and
/// greedy continuations must agree until a step where llama.cpp's own top-two margin is under
/// `max_tol`. Prints the fixture's figures and pushes what failed to `failures`.
pub fn compare_golden(engine: &Engine<Cpu>, g: &serde_json::Value, (median_tol, max_tol): (f32, f32), failures: &mut Vec<String>) {
    use hearth::{sampler::SamplerConfig, GenerateOptions};
    let fixture = g["fixture"].as_str().unwrap();
    let n_vocab = engine.model.config.n_vocab;
    let (mut agree, mut total, mut diffs) = (0, 0, Vec::new());
    for case in g["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let tokens = u32s(&case["prompt_tokens"]);
        assert_eq!(engine.tokenize_prompt(prompt), tokens, "{fixture}: tokens of {prompt:?}");
        let logits = engine.prompt_logits(&tokens).unwrap();
        diffs.extend(top_k_diffs(&logits, n_vocab, &case["positions"]));
        let want = u32s(&case["greedy"]);
        let margins = f32s(&case["greedy_margins"]);
        let opts = GenerateOptions { max_tokens: want.len(), sampler: SamplerConfig::greedy(), stop_at_eos: false, batch: 7, ..Default::default() };
        let got = engine.generate(&tokens, 512, &opts, |_| true).unwrap().tokens;
        let same = (0..want.len()).take_while(|&i| got.get(i) == Some(&want[i])).count();
        (agree, total) = (agree + same, total + want.len());
        if same < want.len() && margins[same] >= max_tol {
            failures.push(format!("{fixture}: greedy of {prompt:?} differs at step {same} (llama.cpp margin {})", margins[same]));
        }
    }
    diffs.sort_by(f32::total_cmp);
    let (median, max) = (diffs[diffs.len() / 2], *diffs.last().unwrap());
    eprintln!("{:<14} {median:<10.6} {max:<10.6} {agree}/{total}", fixture.trim_end_matches(".gguf"));
    if median > median_tol || max > max_tol {
        failures.push(format!("{fixture}: logit difference median {median}, anywhere {max}; tolerances {median_tol}, {max_tol}"));
    }
}
