//! Llama 4 (architecture llama4, as llama.cpp's `llama_model_llama4` builds it): the fixtures
//! (`hearth fixture --llama4`) against llama.cpp's goldens (tests/golden/model-llama4*.json,
//! scripts/goldens-llama4), the parts of the graph that move the output, and typed errors for
//! missing keys, the `llama4` pre-tokenizer and contexts past what is implemented.

use crate::common;

use hearth::backend::cpu::Cpu;
use hearth::gguf::{parse_header, GgufWriter, Value};
use hearth::model::Ffn;
use hearth::HearthError;

fn goldens() -> Vec<String> {
    common::model_goldens(|n| n.starts_with("model-llama4"))
}

#[test]
fn every_llama4_fixture_has_goldens() {
    common::assert_goldens_exist(&goldens(), &hearth::fixture::llama4_specs(), &hearth::fixture::LLAMA4_QUANTS, "scripts/goldens-llama4");
}

/// (median, max) |logit difference| allowed: as tests/moe.rs, float weights to rounding, the
/// quantized ones where an 8-bit activation may round across a boundary and route differently.
/// Measured (x86-64 llama.cpp, F16 KV cache): F32 median 3.2e-4 / 8.3e-4 (llama4 / llama4s),
/// max 1.8e-3; Q8_0 and Q4_K_M medians below 3e-6, max 0.06-0.37 after a routing flip.
fn tolerance(quant: &str) -> (f32, f32) {
    match quant {
        "f32" => (2e-3, 5e-3),
        _ => (0.05, 0.5),
    }
}

#[test]
fn llama4_matches_llama_cpp() {
    let mut failures = Vec::new();
    eprintln!("|logit diff| vs llama.cpp (F16 KV cache): fixture, median, max; greedy tokens agreeing");
    for file in goldens() {
        let g = common::read_json(&file);
        let fixture = g["fixture"].as_str().unwrap();
        let (quant, bytes) = common::golden_fixture(&g);
        let engine = common::load(&bytes, 1_000_003);
        assert!(engine.model.config.llama4.is_some(), "{fixture}: architecture llama4");
        common::compare_golden(&engine, &g, tolerance(&quant), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The layers are what the file says: dense and MoE interleaved by interleave_moe_layer_step,
/// a shared expert in each MoE layer.
#[test]
fn layers_interleave_dense_and_moe() {
    let bytes = hearth::fixture::build(&hearth::fixture::spec("llama4").unwrap(), "q8_0").unwrap();
    let engine = common::load(&bytes, 1 << 20);
    let kinds: Vec<&str> = engine
        .model
        .layers
        .iter()
        .map(|l| match &l.ffn {
            Ffn::Dense { .. } => "dense",
            Ffn::Moe { shared: Some(_), .. } => "moe+shared",
            Ffn::Moe { shared: None, .. } => "moe",
        })
        .collect();
    assert_eq!(kinds, ["dense", "moe+shared", "dense", "moe+shared"]);
    let l4 = engine.model.config.llama4.unwrap();
    assert_eq!((0..4).map(|il| l4.uses_rope(il)).collect::<Vec<_>>(), [true, true, true, false], "NoPE every fourth layer");
    assert!(l4.kq_norm);
}

/// `bytes` rewritten with metadata `md` set (None: removed).
fn rewrite(bytes: &[u8], md: &[(&str, Option<Value>)]) -> Vec<u8> {
    let h = parse_header(bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &h.metadata.0 {
        if k != "general.alignment" && !md.iter().any(|(m, _)| m == k) {
            w.meta(k, v.clone());
        }
    }
    for (k, v) in md {
        if let Some(v) = v {
            w.meta(k, v.clone());
        }
    }
    for t in &h.tensors {
        w.tensor(&t.name, t.dims.clone(), t.ty, h.tensor_bytes(bytes, t).to_vec());
    }
    w.to_bytes()
}

/// Every key llama.cpp requires of a llama4 file is a typed error naming it when missing; a
/// context past what is implemented (chunked attention, temperature tuning) is refused.
#[test]
fn missing_llama4_keys_are_typed_errors() {
    let bytes = hearth::fixture::build(&hearth::fixture::spec("llama4").unwrap(), "q8_0").unwrap();
    let load = |b: &[u8]| {
        let mut l = hearth::EngineLoader::new(Cpu);
        l.feed(b).and_then(|_| l.finish())
    };
    for key in ["llama4.expert_count", "llama4.expert_used_count", "llama4.expert_feed_forward_length", "llama4.interleave_moe_layer_step", "llama4.feed_forward_length"] {
        match load(&rewrite(&bytes, &[(key, None)])).err() {
            Some(HearthError::MissingMetadata(k)) => assert_eq!(k, key),
            e => panic!("without {key}: {e:?}"),
        }
    }
    match load(&rewrite(&bytes, &[("llama4.attention.sliding_window", Some(Value::U32(0)))])).err() {
        Some(HearthError::BadMetadata { key, .. }) => assert_eq!(key, "llama4.attention.sliding_window"),
        e => panic!("sliding_window 0: {e:?}"),
    }
    // A real Llama 4 file names the `llama4` pre-tokenizer (llama.cpp's GPT-4o regex): it loads
    // (tests/tokenizer.rs holds its splits to llama.cpp's); an unknown pre-tokenizer is refused by name.
    load(&rewrite(&bytes, &[("tokenizer.ggml.pre", Some(Value::String("llama4".into())))])).expect("pre llama4 loads");
    match load(&rewrite(&bytes, &[("tokenizer.ggml.pre", Some(Value::String("no-such-pre".into())))])).err() {
        Some(HearthError::UnsupportedTokenizer(m)) => assert!(m.contains("no-such-pre"), "{m}"),
        e => panic!("an unknown pre-tokenizer: {e:?}"),
    }
    let engine = load(&bytes).unwrap();
    assert!(engine.new_sequence(8191).is_ok());
    match engine.new_sequence(8192).err() {
        Some(HearthError::InvalidArgument(m)) => assert!(m.contains("8191"), "{m}"),
        e => panic!("a context of 8192: {e:?}"),
    }
}

/// The shared expert is part of the output: zeroing one layer's changes the logits.
#[test]
fn shared_expert_moves_the_output() {
    let spec = hearth::fixture::spec("llama4").unwrap();
    let bytes = hearth::fixture::build(&spec, "f32").unwrap();
    let engine = common::load(&bytes, 1 << 20);
    let tokens = engine.tokenize_prompt("Once upon a time");
    let base = engine.prompt_logits(&tokens).unwrap();
    // Zero the shared expert's down projection of layer 1: the logits change.
    let h = parse_header(&bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &h.metadata.0 {
        if k != "general.alignment" {
            w.meta(k, v.clone());
        }
    }
    for t in &h.tensors {
        let mut data = h.tensor_bytes(&bytes, t).to_vec();
        if t.name == "blk.1.ffn_down_shexp.weight" {
            data.fill(0);
        }
        w.tensor(&t.name, t.dims.clone(), t.ty, data);
    }
    let other = common::load(&w.to_bytes(), 1 << 20).prompt_logits(&tokens).unwrap();
    let diff = base.iter().zip(&other).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff > 1e-3, "the shared expert moves the logits ({diff})");
}
