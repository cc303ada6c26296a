//! Bad input gives the right typed error, never a panic, and the engine stays usable afterwards.
//! Every broken file here is derived from the spm-q4_0 fixture: cut short, patched in place, or
//! rebuilt through `GgufWriter` with one thing changed.

use crate::common;

use hearth::backend::cpu::Cpu;
use hearth::gguf::{align_up, parse_file, GgufWriter, TensorType, Value};
use hearth::sampler::SamplerConfig;
use hearth::{Engine, EngineLoader, GenerateOptions, HearthError};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

const FIXTURE: &str = "spm-q4_0.gguf";

fn base() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| common::fixture_bytes(FIXTURE))
}

/// Feed `bytes` in chunks of `chunk`, then finish: the whole streaming path, errors returned.
fn try_load(bytes: &[u8], chunk: usize) -> Result<Engine<Cpu>, HearthError> {
    let mut loader = EngineLoader::new(Cpu);
    for c in bytes.chunks(chunk.max(1)) {
        loader.feed(c)?;
    }
    loader.finish()
}

/// The error of a load that must fail, in every chunking (errors must not depend on how the bytes
/// arrive).
fn load_err(bytes: &[u8]) -> HearthError {
    let mut first: Option<HearthError> = None;
    for chunk in [usize::MAX, 100_003, 4096, 777] {
        let e = match try_load(bytes, chunk) {
            Ok(_) => panic!("loading succeeded (chunk {chunk}) but must fail"),
            Err(e) => e,
        };
        match &first {
            None => first = Some(e),
            Some(f) => assert_eq!(f, &e, "the error depends on the chunk size ({chunk})"),
        }
    }
    first.unwrap()
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { max_tokens, sampler: SamplerConfig::greedy(), stop_at_eos: false, batch: 5, ..Default::default() }
}

/// A fixture taken apart: metadata and tensors (in file order) ready to be changed and rewritten.
struct Parts {
    meta: BTreeMap<String, Value>,
    tensors: Vec<(String, Vec<u64>, TensorType, Vec<u8>)>,
}

impl Parts {
    fn of(bytes: &[u8]) -> Self {
        let h = parse_file(bytes).unwrap();
        let tensors = h.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.ty, h.tensor_bytes(bytes, t).to_vec())).collect();
        Self { meta: h.metadata.0.clone(), tensors }
    }

    fn tensor_mut(&mut self, name: &str) -> &mut (String, Vec<u64>, TensorType, Vec<u8>) {
        self.tensors.iter_mut().find(|t| t.0 == name).unwrap_or_else(|| panic!("fixture has no {name}"))
    }

    fn bytes(&self) -> Vec<u8> {
        let mut w = GgufWriter::new();
        for (k, v) in &self.meta {
            w.meta(k, v.clone());
        }
        for (name, dims, ty, data) in &self.tensors {
            w.tensor(name, dims.clone(), *ty, data.clone());
        }
        w.to_bytes()
    }
}

fn rebuilt(change: impl FnOnce(&mut Parts)) -> Vec<u8> {
    let mut p = Parts::of(base());
    change(&mut p);
    p.bytes()
}

fn assert_message_names(e: &HearthError, what: &str) {
    let msg = e.to_string();
    assert!(msg.contains(what), "message {msg:?} does not name {what:?}");
}

// ---------------------------------------------------------------------------------------------
// The rebuild helper itself: an unchanged rebuild must be the same model.

#[test]
fn unchanged_rebuild_is_the_same_model() {
    let a = try_load(base(), usize::MAX).unwrap();
    let b = try_load(&rebuilt(|_| {}), 65536).unwrap();
    let tokens = a.tokenize_prompt("The quick brown fox");
    assert_eq!(tokens, b.tokenize_prompt("The quick brown fox"));
    assert_eq!(a.prompt_logits(&tokens).unwrap(), b.prompt_logits(&tokens).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Truncation.

/// Where the fixture's regions are: (start of the tensor index, its end, start of the data).
fn layout() -> (usize, usize, usize) {
    let bytes = base();
    let h = parse_file(bytes).unwrap();
    // The writer lays the index out in data order, so the first index entry names the first tensor.
    let first = &h.tensors[0].name;
    let mut pat = (first.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(first.as_bytes());
    let index_start = bytes.windows(pat.len()).position(|w| w == pat.as_slice()).expect("index entry of the first tensor");
    let index_len: usize = h.tensors.iter().map(|t| 8 + t.name.len() + 4 + 8 * t.dims.len() + 4 + 8).sum();
    let index_end = index_start + index_len;
    assert_eq!(align_up(index_end as u64, h.alignment), h.data_offset, "index layout as computed");
    (index_start, index_end, h.data_offset as usize)
}

fn truncated(e: HearthError, cut: usize) -> (String, u64, u64) {
    match e {
        HearthError::Truncated { what, needed, available } => {
            assert_eq!(available, cut as u64, "available bytes reported for a cut at {cut}");
            assert!(needed > available, "needed {needed} <= available {available}");
            (what, needed, available)
        }
        other => panic!("cut at {cut}: expected Truncated, got {other:?} ({})", other.code()),
    }
}

#[test]
fn truncated_inside_the_header() {
    let bytes = base();
    let (index_start, _, _) = layout();
    for (cut, what) in [
        (0, "magic"),
        (2, "magic"),
        (6, "version"),
        (12, "tensor count"),
        (20, "metadata count"),
        (30, "metadata key #0"),
        (index_start / 2, "metadata"),
        (index_start - 1, "metadata"),
    ] {
        let e = load_err(&bytes[..cut]);
        assert_eq!(e.code(), "truncated");
        let (w, _, _) = truncated(e.clone(), cut);
        assert!(w.contains(what), "cut at {cut}: '{w}' should mention {what:?}");
        assert_message_names(&e, &w);
    }
}

#[test]
fn truncated_inside_the_tensor_index() {
    let bytes = base();
    let h = parse_file(bytes).unwrap();
    let (index_start, index_end, _) = layout();
    let last = &h.tensors.last().unwrap().name;
    // Each cut's `what` must contain one of the strings listed with it.
    for (cut, what) in [
        (index_start + 1, vec!["tensor name #0".to_string()]),
        (index_start + 8 + h.tensors[0].name.len() + 2, vec![format!("dimension count of '{}'", h.tensors[0].name)]),
        ((index_start + index_end) / 2, vec!["tensor name #".to_string(), " of '".to_string()]),
        (index_end - 1, vec![format!("offset of '{last}'")]),
    ] {
        let e = load_err(&bytes[..cut]);
        let (w, _, _) = truncated(e.clone(), cut);
        assert!(what.iter().any(|x| w.contains(x.as_str())), "cut at {cut}: '{w}' should mention one of {what:?}");
        assert_message_names(&e, &w);
    }
}

#[test]
fn truncated_inside_tensor_data_names_the_tensor() {
    let bytes = base();
    let h = parse_file(bytes).unwrap();
    assert_eq!(h.file_size(), bytes.len() as u64, "the fixture ends with its last tensor");
    let first = &h.tensors[0];
    let first_end = (h.data_offset + first.offset + first.size) as usize;
    let mut cuts = vec![
        (h.data_offset as usize - 1, 0), // the header parses, the padding before the data does not matter
        (h.data_offset as usize, 0),
        (h.data_offset as usize + 1, 0),
        (h.data_offset as usize + first.size as usize / 2, 0),
        (first_end - 1, 0),
        (bytes.len() - 1, h.tensors.len() - 1),
    ];
    // One cut inside every tensor.
    for (i, t) in h.tensors.iter().enumerate() {
        cuts.push(((h.data_offset + t.offset + t.size / 3) as usize, i));
    }
    for (cut, i) in cuts {
        let t = &h.tensors[i];
        let e = load_err(&bytes[..cut]);
        let (what, needed, _) = truncated(e.clone(), cut);
        assert_eq!(what, format!("tensor '{}'", t.name), "cut at {cut}");
        assert_eq!(needed, h.data_offset + t.offset + t.size, "cut at {cut}");
        assert_message_names(&e, &t.name);
    }
}

#[test]
fn truncated_anywhere_is_truncated_and_never_panics() {
    let bytes = base();
    let mut cuts: Vec<usize> = (0..64).collect();
    let step = bytes.len() / 150;
    cuts.extend((1..150).map(|i| i * step + i % 7));
    cuts.push(bytes.len() - 1);
    let mut panicked = Vec::new();
    for cut in cuts {
        match catch_unwind(AssertUnwindSafe(|| try_load(&bytes[..cut], 50_000).map(|_| ()))) {
            Err(_) => panicked.push(cut),
            Ok(Ok(())) => panic!("a file cut at {cut} of {} loaded", bytes.len()),
            Ok(Err(e)) => assert_eq!(e.code(), "truncated", "cut at {cut}: {e}"),
        }
    }
    assert!(panicked.is_empty(), "loading panicked for cuts at {panicked:?}");
}

// ---------------------------------------------------------------------------------------------
// Wrong kind of file.

#[test]
fn bad_magic() {
    let mut bytes = base().to_vec();
    bytes[..4].copy_from_slice(b"GGML");
    let e = load_err(&bytes);
    assert_eq!(e, HearthError::BadMagic(*b"GGML"));
    assert_eq!(e.code(), "bad_magic");
    assert!(e.to_string().contains("GGUF"), "{e}");
    // Not a model at all.
    let e = load_err(b"<!DOCTYPE html><html>404 not found</html>");
    assert_eq!(e.code(), "bad_magic");
}

#[test]
fn unsupported_version() {
    for v in [0u32, 1, 4, 0xffff_ffff] {
        let mut bytes = base().to_vec();
        bytes[4..8].copy_from_slice(&v.to_le_bytes());
        let e = load_err(&bytes);
        assert_eq!(e, HearthError::UnsupportedVersion(v));
        assert_eq!(e.code(), "unsupported_version");
        assert_message_names(&e, &v.to_string());
    }
}

#[test]
fn wrong_architecture() {
    let bytes = rebuilt(|p| {
        p.meta.insert("general.architecture".into(), Value::String("gpt2".into()));
    });
    let e = load_err(&bytes);
    assert_eq!(e, HearthError::UnsupportedArchitecture("gpt2".into()));
    assert_eq!(e.code(), "unsupported_architecture");
    assert_message_names(&e, "gpt2");

    let bytes = rebuilt(|p| {
        p.meta.remove("general.architecture");
    });
    assert_eq!(load_err(&bytes), HearthError::MissingMetadata("general.architecture".into()));
}

// ---------------------------------------------------------------------------------------------
// Tensors.

#[test]
fn unsupported_tensor_type_is_named() {
    let bytes = rebuilt(|p| {
        let t = p.tensor_mut("blk.0.attn_q.weight");
        let elements: u64 = t.1.iter().product();
        t.2 = TensorType(20); // IQ4_NL: 32-element blocks of 18 bytes
        t.3 = vec![0; (elements / 32 * 18) as usize];
    });
    let e = load_err(&bytes);
    assert_eq!(e, HearthError::UnsupportedTensorType { name: "blk.0.attn_q.weight".into(), ty: "IQ4_NL".into() });
    assert_eq!(e.code(), "unsupported_tensor_type");
    assert_message_names(&e, "blk.0.attn_q.weight");
    assert_message_names(&e, "IQ4_NL");
}

#[test]
fn unknown_tensor_type_id_is_corrupt() {
    let bytes = base().to_vec();
    let h = parse_file(&bytes).unwrap();
    let (index_start, _, _) = layout();
    // The type id of the first index entry: after its name and dims.
    let t = &h.tensors[0];
    let at = index_start + 8 + t.name.len() + 4 + 8 * t.dims.len();
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), t.ty.0);
    let mut bad = bytes.clone();
    bad[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
    let e = load_err(&bad);
    assert_eq!(e.code(), "corrupt", "{e}");
    assert_message_names(&e, &t.name);
}

#[test]
fn missing_tensor_is_named() {
    let bytes = rebuilt(|p| p.tensors.retain(|t| t.0 != "blk.1.ffn_down.weight"));
    let e = load_err(&bytes);
    assert_eq!(e, HearthError::MissingTensor("blk.1.ffn_down.weight".into()));
    assert_eq!(e.code(), "missing_tensor");
    assert_message_names(&e, "blk.1.ffn_down.weight");
}

/// Of several missing tensors the first in the graph is named, every time (the fuzzer's seed
/// 1001747 named one of them at random: the check walked a HashMap).
#[test]
fn of_several_missing_tensors_the_first_is_named() {
    let gone = ["blk.1.ffn_down.weight", "token_embd.weight", "blk.0.attn_k.weight"];
    let bytes = rebuilt(|p| p.tensors.retain(|t| !gone.contains(&t.0.as_str())));
    for _ in 0..8 {
        assert_eq!(load_err(&bytes), HearthError::MissingTensor("token_embd.weight".into()));
    }
}

#[test]
fn shape_mismatch_is_named() {
    let bytes = rebuilt(|p| {
        let t = p.tensor_mut("blk.0.attn_k.weight");
        let (cols, rows) = (t.1[0], t.1[1]);
        // Half the rows: a file whose K projection is too small for its head count.
        t.1[1] = rows / 2;
        let size = t.2.byte_size(cols, cols * rows / 2).unwrap() as usize;
        t.3.truncate(size);
    });
    let e = load_err(&bytes);
    match &e {
        HearthError::ShapeMismatch { name, expected, actual } => {
            assert_eq!(name, "blk.0.attn_k.weight");
            assert_eq!(expected, &vec![256, 256]);
            assert_eq!(actual, &vec![128, 256]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    assert_eq!(e.code(), "shape_mismatch");
    assert_message_names(&e, "blk.0.attn_k.weight");
    assert_message_names(&e, "[128, 256]");
}

#[test]
fn missing_metadata_is_named() {
    for key in ["llama.embedding_length", "llama.block_count", "llama.context_length", "tokenizer.ggml.model"] {
        let bytes = rebuilt(|p| {
            p.meta.remove(key).expect("fixture has the key");
        });
        let e = load_err(&bytes);
        assert_eq!(e, HearthError::MissingMetadata(key.into()), "dropping {key}");
        assert_eq!(e.code(), "missing_metadata");
        assert_message_names(&e, key);
    }
}

#[test]
fn bad_metadata_is_named() {
    for (key, value) in [
        ("llama.embedding_length", Value::String("256".into())),
        ("llama.attention.head_count", Value::U32(0)),
        ("llama.attention.head_count", Value::U32(3)),
        ("llama.attention.head_count_kv", Value::U32(3)),
        ("llama.rope.scaling.type", Value::String("yarn".into())),
    ] {
        let bytes = rebuilt(|p| {
            p.meta.insert(key.into(), value.clone());
        });
        let e = load_err(&bytes);
        assert_eq!(e.code(), "bad_metadata", "{key} = {value:?}: {e}");
        assert_message_names(&e, key);
    }
}

#[test]
fn bias_tensor_is_rejected() {
    let bytes = rebuilt(|p| {
        let data = vec![0u8; 256 * 4];
        p.tensors.push(("blk.0.attn_q.bias".into(), vec![256], TensorType::F32, data));
    });
    let e = load_err(&bytes);
    assert_eq!(e.code(), "bad_metadata", "{e}");
    assert_message_names(&e, "blk.0.attn_q.bias");
    assert_message_names(&e, "bias");
}

// ---------------------------------------------------------------------------------------------
// Vocabulary and embedding table disagree.

fn n_vocab() -> usize {
    match parse_file(base()).unwrap().metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => panic!("fixture has tokens"),
    }
}

/// Grow (or shrink) the tokenizer arrays together, as a tokenizer with added tokens would.
fn resize_vocab(p: &mut Parts, n: usize) {
    for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
        match p.meta.get_mut(key) {
            Some(Value::Array(a)) => {
                let mut i = a.len();
                while a.len() < n {
                    a.push(Value::String(format!("<added_{i}>")));
                    i += 1;
                }
                a.truncate(n);
            }
            // Numbers are packed: repeat the last element's bytes.
            Some(Value::Packed { elem, data }) => {
                let width = if *elem == 6 || *elem == 5 { 4 } else { panic!("{key}: element type {elem}") };
                let last = data[data.len() - width..].to_vec();
                while data.len() < n * width {
                    data.extend_from_slice(&last);
                }
                data.truncate(n * width);
            }
            _ => panic!("fixture has {key}"),
        }
    }
}

#[test]
fn tokenizer_with_more_tokens_than_the_embedding_table() {
    // llama.vocab_size still says n (and the tables have n rows), the tokenizer has n + 5 tokens.
    let n = n_vocab();
    let bytes = rebuilt(|p| resize_vocab(p, n + 5));
    let e = load_err(&bytes);
    assert_eq!(e.code(), "bad_metadata", "{e}");
    assert_message_names(&e, "tokenizer.ggml.tokens");
    assert_message_names(&e, &(n + 5).to_string());
}

#[test]
fn tokenizer_with_fewer_tokens_than_the_embedding_table() {
    let n = n_vocab();
    let bytes = rebuilt(|p| resize_vocab(p, n - 3));
    let e = load_err(&bytes);
    assert_eq!(e.code(), "bad_metadata", "{e}");
    assert_message_names(&e, "tokenizer.ggml.tokens");
}

#[test]
fn vocab_size_key_disagrees_with_the_embedding_table() {
    // No llama.vocab_size: the vocabulary size comes from the token list, which now disagrees
    // with the rows of token_embd and output.
    let n = n_vocab();
    let bytes = rebuilt(|p| {
        p.meta.remove("llama.vocab_size");
        resize_vocab(p, n + 5);
    });
    let e = load_err(&bytes);
    assert_eq!(e.code(), "shape_mismatch", "{e}");
    assert_message_names(&e, "token_embd.weight");

    // llama.vocab_size itself wrong.
    let bytes = rebuilt(|p| {
        p.meta.insert("llama.vocab_size".into(), Value::U32(n as u32 - 1));
    });
    let e = load_err(&bytes);
    assert_eq!(e.code(), "shape_mismatch", "{e}");
}

#[test]
fn scores_shorter_than_tokens() {
    let bytes = rebuilt(|p| {
        let Some(Value::Packed { elem: 6, data }) = p.meta.get_mut("tokenizer.ggml.scores") else { panic!() };
        data.truncate(data.len() - 4);
    });
    let e = load_err(&bytes);
    assert_eq!(e.code(), "bad_metadata", "{e}");
    assert_message_names(&e, "tokenizer.ggml.scores");
}

// ---------------------------------------------------------------------------------------------
// Bad arguments to a loaded engine: a typed error, and the engine is still usable.

fn engine() -> &'static Engine<Cpu> {
    static ENGINE: OnceLock<Engine<Cpu>> = OnceLock::new();
    ENGINE.get_or_init(|| try_load(base(), 1 << 20).unwrap())
}

/// What a freshly loaded engine produces: the reference to compare a reused engine with.
fn fresh_tokens(prompt: &[u32], n: usize) -> Vec<u32> {
    let e = try_load(base(), 1 << 20).unwrap();
    e.generate(prompt, 64, &greedy(n), |_| true).unwrap().tokens
}

#[test]
fn prompt_longer_than_the_context() {
    // Its own engine: this test checks that a failed call leaves it usable.
    let e = try_load(base(), 1 << 20).unwrap();
    let prompt = e.tokenize_prompt("The quick brown fox jumps over the lazy dog.");
    assert!(prompt.len() > 6);
    for n_ctx in [1, 5, prompt.len() - 1] {
        let err = e.generate(&prompt, n_ctx, &greedy(4), |_| true).unwrap_err();
        assert_eq!(err, HearthError::ContextOverflow { tokens: prompt.len(), context: n_ctx });
        assert_eq!(err.code(), "context_overflow");
        assert_message_names(&err, &prompt.len().to_string());
        assert_message_names(&err, &n_ctx.to_string());
    }
    // Exactly full is fine: the prompt fits, no token can follow.
    let g = e.generate(&prompt, prompt.len(), &greedy(4), |_| true).unwrap();
    assert_eq!(g.tokens.len(), 1, "one token sampled from the last prompt logits");
    assert_eq!(g.stop, hearth::StopReason::Context);
    // The engine still generates exactly what a fresh one does.
    let got = e.generate(&prompt, 64, &greedy(8), |_| true).unwrap().tokens;
    assert_eq!(got, fresh_tokens(&prompt, 8));

    // The same through a sequence the caller drives.
    let mut seq = e.new_sequence(4).unwrap();
    let err = e.prefill(&mut seq, &prompt, 2).unwrap_err();
    assert_eq!(err.code(), "context_overflow");
    assert_eq!(seq.len, 0, "a rejected prefill leaves the sequence empty");
    e.prefill(&mut seq, &prompt[..4], 2).unwrap();
    let err = e.model.forward(&mut seq, &prompt[4..5], hearth::model::Logits::Last).unwrap_err();
    assert_eq!(err, HearthError::ContextOverflow { tokens: 5, context: 4 });
}

#[test]
fn out_of_vocabulary_token() {
    let e = try_load(base(), 1 << 20).unwrap();
    let n = e.model.config.n_vocab as u32;
    let prompt = e.tokenize_prompt("Once upon a time");
    for bad in [n, n + 1, u32::MAX] {
        let mut p = prompt.clone();
        p.insert(2, bad);
        let err = e.generate(&p, 64, &greedy(4), |_| true).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{err}");
        assert!(matches!(err, HearthError::InvalidArgument(_)));
        assert_message_names(&err, &bad.to_string());
        // Alone, first and last too.
        assert_eq!(e.generate(&[bad], 64, &greedy(4), |_| true).unwrap_err().code(), "invalid_argument");
        let mut p = prompt.clone();
        p.push(bad);
        assert_eq!(e.prompt_logits(&p).unwrap_err().code(), "invalid_argument");
    }
    // n - 1 is a real token.
    e.generate(&[n - 1], 8, &greedy(2), |_| true).unwrap();
    let got = e.generate(&prompt, 64, &greedy(8), |_| true).unwrap().tokens;
    assert_eq!(got, fresh_tokens(&prompt, 8));
}

#[test]
fn empty_prompt() {
    let e = engine();
    let err = e.generate(&[], 64, &greedy(4), |_| true).unwrap_err();
    assert!(matches!(err, HearthError::InvalidArgument(_)), "{err:?}");
    assert_eq!(err.code(), "invalid_argument");
    assert_message_names(&err, "empty");
    let mut seq = e.new_sequence(8).unwrap();
    assert_eq!(e.prefill(&mut seq, &[], 4).unwrap_err().code(), "invalid_argument");
}

#[test]
fn zero_and_absurd_context_sizes() {
    let e = engine();
    let prompt = e.tokenize_prompt("Hello");
    let err = e.generate(&prompt, 0, &greedy(4), |_| true).unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    // A KV cache that cannot be allocated (or whose size overflows) is an error, not an abort.
    for n_ctx in [1usize << 40, usize::MAX / 2] {
        let err = e.generate(&prompt, n_ctx, &greedy(4), |_| true).unwrap_err();
        assert!(matches!(err.code(), "model_too_big" | "invalid_argument"), "n_ctx {n_ctx}: {err}");
    }
    assert_eq!(e.generate(&prompt, 64, &greedy(4), |_| true).unwrap().tokens.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Fuzz: single-byte corruptions of the header region.

#[test]
fn single_byte_corruptions_of_the_header_never_panic() {
    let bytes = base();
    let region = 40_000.min(bytes.len());
    // xorshift64*, fixed seed: the same 300 corruptions every run.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut panicked = Vec::new();
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..300 {
        let r = next();
        let offset = (r % region as u64) as usize;
        let xor = ((r >> 32) % 255 + 1) as u8; // never 0: the byte always changes
        let mut b = bytes.to_vec();
        b[offset] ^= xor;
        let result = catch_unwind(AssertUnwindSafe(|| match try_load(&b, 65_536) {
            Err(e) => Err(e.code()),
            // A corruption the loader cannot see (a score, a token's text): the model must still run.
            Ok(engine) => {
                let tokens = engine.tokenize_prompt("Hello world, once upon a time");
                let g = engine.generate(&tokens, 64, &greedy(3), |_| true);
                let _ = engine.tokenizer.decode(&engine.tokenizer.encode("x y z", true, true), false, false);
                g.map(|_| ()).map_err(|e| e.code())
            }
        }));
        match result {
            Err(_) => panicked.push(format!("offset {offset} ^ {xor:#04x}")),
            Ok(Ok(())) => *outcomes.entry("ok").or_default() += 1,
            Ok(Err(code)) => *outcomes.entry(code).or_default() += 1,
        }
    }
    eprintln!("300 corruptions of the first {region} bytes: {outcomes:?}");
    assert!(panicked.is_empty(), "panicked on {} corruptions: {}", panicked.len(), panicked.join(", "));
}

// ---------------------------------------------------------------------------------------------
// Issue 15's reproductions: hostile values that once panicked, hung or wrote multi-line errors.

/// The u64 offset field of the first tensor's index entry.
fn first_offset_field() -> usize {
    let (index_start, _, _) = layout();
    let h = parse_file(base()).unwrap();
    let t = &h.tensors[0];
    index_start + 8 + t.name.len() + 4 + 8 * t.dims.len() + 4
}

#[test]
fn a_tensor_offset_near_u64_max_is_corrupt_not_a_panic() {
    let at = first_offset_field();
    for offset in [u64::MAX - 63, u64::MAX & !31, 1u64 << 60] {
        let mut bytes = base().to_vec();
        bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        let e = catch_unwind(AssertUnwindSafe(|| load_err(&bytes))).unwrap_or_else(|_| panic!("offset {offset} panicked"));
        assert_eq!(e.code(), "corrupt", "offset {offset}: {e}");
        assert_message_names(&e, "token_embd.weight");
    }
}

#[test]
fn a_layer_count_the_file_cannot_hold_fails_at_once() {
    for layers in [1_000_000u32, i32::MAX as u32, 600, 3] {
        let bytes = rebuilt(|p| {
            p.meta.insert("llama.block_count".into(), Value::U32(layers));
        });
        let t = std::time::Instant::now();
        let e = load_err(&bytes);
        assert_eq!(e.code(), "bad_metadata", "{layers} layers: {e}");
        assert_message_names(&e, "llama.block_count");
        assert!(t.elapsed().as_secs_f64() < 1.0, "{layers} layers took {:?}", t.elapsed());
    }
}

#[test]
fn strings_from_the_file_never_break_the_one_line_message() {
    for arch in ["llama\n", "ll\0ama", "x\r\ny"] {
        let bytes = rebuilt(|p| {
            p.meta.insert("general.architecture".into(), Value::String(arch.into()));
        });
        let e = load_err(&bytes);
        assert_eq!(e.code(), "unsupported_architecture");
        let m = e.message();
        assert!(!m.chars().any(char::is_control), "{m:?}");
    }
    let bytes = rebuilt(|p| p.tensor_mut("blk.0.attn_q.weight").0 = "blk.0.attn_q.weight\nsecond line".into());
    let m = load_err(&bytes).message();
    assert!(!m.contains('\n') && m.contains("blk.0.attn_q.weight"), "{m:?}");
}
