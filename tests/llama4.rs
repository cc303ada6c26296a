//! Llama 4 (architecture llama4, as llama.cpp's `llama_model_llama4` builds it): the fixtures
//! (`hearth fixture --llama4`) against llama.cpp's goldens (tests/golden/model-llama4*.json,
//! scripts/goldens-llama4), the parts of the graph that move the output, and typed errors for
//! missing keys and the `llama4` pre-tokenizer, and a prompt past the 8192-token attention chunk.

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

/// Every key llama.cpp requires of a llama4 file is a typed error naming it when missing.
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
}

/// Past position 8190 llama.cpp's chunked attention (a RoPE layer's query sees only its
/// 8192-token chunk) and attention temperature (the NoPE layers' queries scaled) change the
/// output: an 8,300-token prompt of random ids against llama.cpp's top-K logits around and past
/// the chunk boundary and its greedy continuation (tests/golden/long-llama4-f32.json,
/// scripts/goldens-llama4). Measured: max |diff| 1.6e-3 (F16 KV cache), greedy 8/8; without the
/// chunks 9.2, without the temperature 0.075.
#[test]
fn long_context_matches_llama_cpp() {
    use hearth::model::Logits;
    let g = common::read_json("long-llama4-f32.json");
    let (quant, bytes) = common::golden_fixture(&g);
    let engine = common::load(&bytes, 1 << 20);
    let n_vocab = engine.model.config.n_vocab;
    let tokens = common::u32s(&g["prompt_tokens"]);
    let want = g["positions"].as_array().unwrap();
    let mut seq = engine.new_sequence(g["n_ctx"].as_u64().unwrap() as usize).unwrap();
    let (mut diffs, mut last) = (Vec::new(), Vec::new());
    for (i, batch) in tokens.chunks(512).enumerate() {
        let p0 = i * 512;
        let here: Vec<&serde_json::Value> = want.iter().filter(|p| (p0..p0 + batch.len()).contains(&(p["pos"].as_u64().unwrap() as usize))).collect();
        let logits = engine.model.forward(&mut seq, batch, Logits::All).unwrap();
        for p in here {
            let row = &logits[(p["pos"].as_u64().unwrap() as usize - p0) * n_vocab..][..n_vocab];
            diffs.push((p["pos"].as_u64().unwrap(), common::top_k_diff(row, p)));
        }
        last = logits[(batch.len() - 1) * n_vocab..].to_vec();
    }
    assert_eq!(diffs.len(), want.len(), "every golden position was compared");
    let (worst_pos, worst) = diffs.iter().copied().fold((0, 0f32), |a, b| if b.1 > a.1 { b } else { a });
    let (_, max_tol) = tolerance(&quant);
    assert!(worst < max_tol, "logits differ by {worst} at position {worst_pos} (tolerance {max_tol})");
    let (greedy, margins) = (common::u32s(&g["greedy"]), common::f32s(&g["greedy_margins"]));
    let mut same = 0;
    for (&id, &margin) in greedy.iter().zip(&margins) {
        let ours = hearth::sampler::argmax(&last);
        if ours != id {
            assert!(margin < max_tol, "greedy step {same}: {ours} where llama.cpp has {id} (margin {margin})");
            break;
        }
        same += 1;
        last = engine.model.forward(&mut seq, &[id], Logits::Last).unwrap();
    }
    eprintln!("long prompt: {} positions, max |logit diff| {worst} at {worst_pos}; greedy {same}/{} as llama.cpp's", diffs.len(), greedy.len());
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

/// A Llama 4 file without a template gets llama.cpp's `llama4` format (tests/chat_template.rs
/// holds the built-in to llama.cpp's rendering), its header tokens are single tokens of the
/// vocabulary, and `<|eot|>` (EOS, as in Llama 4 Instruct files) ends a reply: with a bias that
/// makes it the greedy choice at once, the reply is empty and stops on it.
#[test]
fn llama4_chat_renders_and_stops_at_eot() {
    use hearth::chat::{Builtin, ChatMessage, ChatTemplate, Date};
    use hearth::sampler::SamplerConfig;
    let bytes = common::fixture_bytes("llama4-q8_0.gguf");
    let engine = common::load(&bytes, 1 << 20);
    let h = parse_header(&bytes).unwrap();
    assert_eq!(h.metadata.opt_str("tokenizer.ggml.pre").unwrap(), Some("llama4"));
    let t = ChatTemplate::for_model(&h.metadata, &engine.tokenizer).unwrap();
    assert_eq!(t.builtin, Some(Builtin::Llama4));
    let text = t.render(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")], true, Date { year: 2026, month: 1, day: 1 }).unwrap();
    assert_eq!(text, "<|begin_of_text|><|header_start|>system<|header_end|>\n\nBe brief.<|eot|><|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\n");
    let ids = engine.tokenizer.encode(&text, false, true);
    let id = |s: &str| (0..engine.tokenizer.vocab_size() as u32).find(|&i| engine.tokenizer.token_text(i) == Some(s)).unwrap();
    let eot = id("<|eot|>");
    assert_eq!(engine.tokenizer.eos(), Some(eot));
    for s in ["<|begin_of_text|>", "<|header_start|>", "<|header_end|>", "<|eot|>"] {
        assert!(ids.contains(&id(s)), "{s} is one token of {ids:?}");
    }
    let opts = hearth::GenerateOptions { max_tokens: 8, sampler: SamplerConfig { logit_bias: vec![(eot, 100.0)], ..SamplerConfig::greedy() }, ..Default::default() };
    let g = engine.generate(&ids, 256, &opts, |_| true).unwrap();
    assert_eq!(g.stop, hearth::StopReason::Eos, "stopped at <|eot|>: {:?}", g.tokens);
    assert!(g.text.is_empty(), "{:?}", g.text);
    let free = engine.generate(&ids, 256, &hearth::GenerateOptions { max_tokens: 8, sampler: SamplerConfig::greedy(), ..Default::default() }, |_| true).unwrap();
    assert_eq!((free.stop, free.tokens.len()), (hearth::StopReason::Length, 8), "without the bias the reply runs to max_tokens");
}
