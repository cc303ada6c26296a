//! Unit tests on small hand-made vocabularies (the llama.cpp comparisons live in tests/tokenizer.rs).

use super::*;
use crate::gguf::{Metadata, Value};

fn strs(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
}

/// A tiny SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then pieces.
fn spm_md(pieces: &[(&str, f32)], extra: &[(&str, Value)]) -> Metadata {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![token_type::UNKNOWN, token_type::CONTROL, token_type::CONTROL];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(token_type::BYTE);
        scores.push(0.0);
    }
    for &(p, s) in pieces {
        tokens.push(p.to_string());
        types.push(if p.starts_with("<|") { token_type::CONTROL } else { token_type::NORMAL });
        scores.push(s);
    }
    let mut m = Metadata::default();
    m.0.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    m.0.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::String).collect()));
    m.0.insert("tokenizer.ggml.scores".into(), Value::Array(scores.into_iter().map(Value::F32).collect()));
    m.0.insert("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().map(Value::I32).collect()));
    for (k, v) in extra {
        m.0.insert(k.to_string(), v.clone());
    }
    m
}

fn texts(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&i| tok.token_text(i).unwrap().to_string()).collect()
}

#[test]
fn spm_merges_by_score_and_falls_back_to_bytes() {
    let md = spm_md(&[("▁", -10.0), ("a", -11.0), ("b", -12.0), ("ab", -1.0), ("▁ab", -2.0), ("ba", -0.5)], &[]);
    let tok = Tokenizer::from_metadata(&md).unwrap();
    // "▁ab": ab (-1) merges first, then ▁ + ab -> ▁ab.
    assert_eq!(texts(&tok, &tok.encode("ab", false, false)), ["▁ab"]);
    // "aba": ba (-0.5) beats ab (-1): ▁, a, ba.
    assert_eq!(texts(&tok, &tok.encode("aba", false, false)), ["▁", "a", "ba"]);
    // "c" is not a piece: byte fallback.
    assert_eq!(texts(&tok, &tok.encode("c", false, false)), ["▁", "<0x63>"]);
    assert_eq!(tok.decode(&tok.encode("abc", false, false), false, false), "abc");
    // With a BOS in front the prefix space stays (only the first id is stripped), as in llama.cpp.
    assert_eq!(tok.decode(&tok.encode("abc", true, false), false, false), " abc");
    // BOS with add_special (llama default add_bos = true).
    assert_eq!(tok.encode("", true, false), vec![1]);
    assert!(tok.encode("", false, false).is_empty());
}

#[test]
fn spm_without_space_prefix() {
    let md = spm_md(&[("▁", -10.0), ("a", -11.0)], &[("tokenizer.ggml.add_space_prefix", Value::Bool(false))]);
    let tok = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(texts(&tok, &tok.encode("a a", false, false)), ["a", "▁", "a"]);
}

#[test]
fn control_tokens_need_parse_special_and_phi3_strips_spaces() {
    let md = spm_md(
        &[("▁", -10.0), ("x", -11.0), ("<|end|>", 0.0)],
        &[("general.name", Value::String("Phi-3 mini".into()))],
    );
    let tok = Tokenizer::from_metadata(&md).unwrap();
    let end = tok.encode("<|end|>", false, true);
    assert_eq!(texts(&tok, &end), ["<|end|>"]);
    assert!(tok.is_eog(end[0]));
    assert!(tok.encode("<|end|>", false, false).len() > 1);
    // RSTRIP (phi-3): the spaces after the token are dropped.
    assert_eq!(tok.encode("<|end|>   x", false, true), tok.encode("<|end|>x", false, true));
    // Control tokens render only with special = true.
    assert_eq!(tok.token_to_piece(end[0], false), b"");
    assert_eq!(tok.token_to_piece(end[0], true), b"<|end|>");
    assert_eq!(tok.token_to_piece(1, true), b"<s>");
    assert_eq!(tok.token_to_piece(3 + 0x41, false), b"A");
    assert_eq!(tok.token_to_piece(99_999, true), b"");
}

#[test]
fn metadata_errors_are_typed() {
    let mut md = spm_md(&[], &[]);
    md.0.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    assert!(matches!(Tokenizer::from_metadata(&md), Err(HearthError::UnsupportedTokenizer(_))));

    let mut md = spm_md(&[], &[]);
    md.0.remove("tokenizer.ggml.tokens");
    assert!(matches!(Tokenizer::from_metadata(&md), Err(HearthError::MissingMetadata(_))));

    let mut md = spm_md(&[], &[]);
    md.0.insert("tokenizer.ggml.scores".into(), Value::Array(vec![Value::F32(0.0)]));
    assert!(matches!(Tokenizer::from_metadata(&md), Err(HearthError::BadMetadata { .. })));

    let mut md = Metadata::default();
    md.0.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.0.insert("tokenizer.ggml.tokens".into(), strs(&["a", "b"]));
    assert!(matches!(Tokenizer::from_metadata(&md), Err(HearthError::MissingMetadata(_))));
    md.0.insert("tokenizer.ggml.merges".into(), strs(&["a b"]));
    assert!(Tokenizer::from_metadata(&md).is_ok());
    md.0.insert("tokenizer.ggml.pre".into(), Value::String("no-such-pre".into()));
    assert!(matches!(Tokenizer::from_metadata(&md), Err(HearthError::UnsupportedTokenizer(_))));
    md.0.insert("tokenizer.ggml.pre".into(), Value::String("qwen2".into()));
    assert!(matches!(Tokenizer::from_metadata(&md), Err(HearthError::UnsupportedTokenizer(_))));

    let md = Metadata::default();
    assert!(matches!(Tokenizer::from_metadata(&md), Err(HearthError::MissingMetadata(_))));
}

#[test]
fn bpe_lowest_rank_first_and_byte_tokens() {
    let table = unicode::byte_to_unicode_table();
    let mut tokens: Vec<String> = (0..=255u8).map(|b| table[b as usize].to_string()).collect();
    tokens.extend(["ab", "bc", "abc"].map(String::from));
    let mut md = Metadata::default();
    md.0.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.0.insert("tokenizer.ggml.pre".into(), Value::String("gpt-2".into()));
    md.0.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::String).collect()));
    md.0.insert("tokenizer.ggml.merges".into(), strs(&["b c", "a b", "ab c"]));
    let tok = Tokenizer::from_metadata(&md).unwrap();
    // "b c" has rank 0: a + bc, and "a bc" is not a merge, so "abc" is never reached.
    assert_eq!(texts(&tok, &tok.encode("abc", false, false)), ["a", "bc"]);
    assert_eq!(texts(&tok, &tok.encode("abx", false, false)), ["ab", "x"]);
    assert_eq!(tok.decode(&tok.encode("ab\n\u{0}é", false, false), false, false), "ab\n\u{0}é");
    // gpt-2 pre: no BOS by default.
    assert!(!tok.add_bos());
}

#[test]
fn clean_up_passes() {
    let clean = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        decode::clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    };
    assert_eq!(clean("Hello , world !"), "Hello, world!");
    assert_eq!(clean("a ' b"), "a'b");
    assert_eq!(clean("it 's we 're I 'm"), "it's we're I'm");
    assert_eq!(clean("don 't we 'll"), "don 't we 'll");
    assert_eq!(clean(" ."), "."); // (the first byte is not protected)
    assert_eq!(clean(""), "");
}

/// Streaming equals decoding for arbitrary id sequences, including ones that make invalid UTF-8
/// and ones that exercise the clean-up passes.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn stream_equals_decode_on_random_sequences() {
    use crate::fixture::vocab::{bpe_vocab, spm_vocab, BPE_MERGES, SPM_PIECES};
    for entries in [spm_vocab(SPM_PIECES), bpe_vocab(BPE_MERGES)] {
        let md = Metadata(entries.into_iter().collect());
        let tok = Tokenizer::from_metadata(&md).unwrap();
        let n = tok.vocab_size() as u64;
        // Tokens that matter most to the clean-up passes and to UTF-8 splitting.
        let interesting: Vec<u32> = [" ", " '", "'", "s", " ,", ",", "re", " .", "t", "😀"]
            .iter()
            .flat_map(|s| tok.encode(s, false, false))
            .collect();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let len = (next() % 24) as usize;
            let ids: Vec<u32> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        interesting[(r / 3 % interesting.len() as u64) as usize]
                    } else {
                        (r / 3 % n) as u32
                    }
                })
                .collect();
            for (remove, unparse) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut s = StreamDecoder::with_options(&tok, remove, unparse);
                let mut out = String::new();
                for &id in &ids {
                    out.push_str(&s.push(id));
                }
                out.push_str(&s.finish());
                assert_eq!(out, tok.decode(&ids, remove, unparse), "ids {ids:?} remove {remove} unparse {unparse}");
            }
        }
    }
}
