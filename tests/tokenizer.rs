//! The tokenizer against llama.cpp: goldens in tests/golden/tokenizer-{spm,bpe}.json were made by
//! scripts/goldens-tokenizer.py from vocab-only GGUF files that `write_vocab_files` writes from the
//! fixture builders. The tests rebuild those files and check their sha256 against the golden first.

use hearth::fixture::vocab::{bpe_vocab, spm_vocab, BPE_MERGES, SPM_PIECES, SPM_USER_DEFINED};
use hearth::gguf::{parse_header, GgufWriter, Value};
use hearth::tokenizer::{StreamDecoder, Tokenizer};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

const REGENERATE: &str = "regenerate with:\n  HEARTH_VOCAB_DIR=/tmp/hearth-vocab cargo test --test all tokenizer::write_vocab_files -- --ignored\n  $(scripts/llama-cpp-venv) scripts/goldens-tokenizer.py /tmp/hearth-vocab/vocab-spm.gguf /tmp/hearth-vocab/vocab-bpe.gguf /tmp/hearth-vocab/vocab-bpe-llama4.gguf";

/// A vocabulary-only GGUF: the fixture's tokenizer metadata plus the llama hyper-parameters
/// llama.cpp wants to see before it loads a vocabulary.
fn vocab_gguf(kind: &str) -> Vec<u8> {
    let entries = match kind {
        "spm" => spm_vocab(SPM_PIECES),
        "bpe" => bpe_vocab(BPE_MERGES),
        // The same vocabulary under Llama 4's pre-tokenizer (llama.cpp's GPT4O regex).
        "bpe-llama4" => bpe_vocab(BPE_MERGES)
            .into_iter()
            .map(|(k, v)| if k == "tokenizer.ggml.pre" { (k, Value::String("llama4".into())) } else { (k, v) })
            .collect(),
        _ => unreachable!(),
    };
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()));
    w.meta("general.name", Value::String(format!("hearth-tokenizer-{kind}")));
    w.meta("llama.block_count", Value::U32(1));
    w.meta("llama.context_length", Value::U32(256));
    w.meta("llama.embedding_length", Value::U32(64));
    w.meta("llama.feed_forward_length", Value::U32(128));
    w.meta("llama.attention.head_count", Value::U32(4));
    w.meta("llama.attention.head_count_kv", Value::U32(4));
    w.meta("llama.rope.dimension_count", Value::U32(16));
    w.meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    for (k, v) in entries {
        w.meta(&k, v);
    }
    w.to_bytes()
}

fn tokenizer_of(bytes: &[u8]) -> Tokenizer {
    let header = parse_header(bytes).expect("fixture GGUF parses");
    Tokenizer::from_metadata(&header.metadata).expect("fixture vocabulary loads")
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The golden for `kind` and the tokenizer built from freshly generated vocabulary bytes, after
/// checking that the golden was made from exactly those bytes.
fn load(kind: &str) -> (Json, Tokenizer) {
    let path = format!("{}/tests/golden/tokenizer-{kind}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}\n{REGENERATE}"));
    let golden: Json = serde_json::from_str(&text).expect("golden is JSON");
    let bytes = vocab_gguf(kind);
    let sha = sha256_hex(&bytes);
    assert_eq!(
        golden["vocab_sha256"].as_str().unwrap(),
        sha,
        "{path} is stale: it was made from a different {kind} vocabulary than src/fixture/vocab.rs builds now; {REGENERATE}"
    );
    (golden, tokenizer_of(&bytes))
}

fn opt_id(v: &Json) -> Option<u32> {
    v.as_u64().map(|x| x as u32)
}

fn check_against_golden(kind: &str) {
    let (g, tok) = load(kind);
    assert_eq!(tok.vocab_size(), g["vocab_size"].as_u64().unwrap() as usize);
    assert_eq!(tok.bos(), opt_id(&g["bos"]), "bos");
    assert_eq!(tok.eos(), opt_id(&g["eos"]), "eos");
    assert_eq!(tok.eot(), opt_id(&g["eot"]), "eot");
    assert_eq!(tok.add_bos(), g["add_bos"].as_bool().unwrap(), "add_bos");
    assert_eq!(tok.add_eos(), g["add_eos"].as_bool().unwrap(), "add_eos");
    let eog = ids(&g["eog_ids"]);
    assert_eq!(tok.eog_ids(), eog, "end-of-generation ids");
    for id in 0..tok.vocab_size() as u32 {
        assert_eq!(tok.is_eog(id), eog.contains(&id));
    }
    let control = ids(&g["control_ids"]);
    for id in 0..tok.vocab_size() as u32 {
        assert_eq!(tok.is_control(id), control.contains(&id), "is_control({id})");
    }
    for (id, (ps, pp)) in g["pieces_special_hex"]
        .as_array()
        .unwrap()
        .iter()
        .zip(g["pieces_plain_hex"].as_array().unwrap())
        .enumerate()
    {
        let id = id as u32;
        assert_eq!(tok.token_to_piece(id, true), unhex(ps.as_str().unwrap()), "token_to_piece({id}, true)");
        assert_eq!(tok.token_to_piece(id, false), unhex(pp.as_str().unwrap()), "token_to_piece({id}, false)");
    }

    let mut failures = Vec::new();
    let cases = g["cases"].as_array().unwrap();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let mut check = |what: &str, ours: String, theirs: String| {
            if ours != theirs {
                failures.push(format!("{what} of {text:?}:\n    hearth:    {ours}\n    llama.cpp: {theirs}"));
            }
        };
        let (want, want_special, want_add) =
            (ids(&c["ids"]), ids(&c["ids_parse_special"]), ids(&c["ids_add_special"]));
        check("encode(add_special=false, parse_special=false)", format!("{:?}", tok.encode(text, false, false)), format!("{want:?}"));
        check("encode(add_special=false, parse_special=true)", format!("{:?}", tok.encode(text, false, true)), format!("{want_special:?}"));
        check("encode(add_special=true, parse_special=false)", format!("{:?}", tok.encode(text, true, false)), format!("{want_add:?}"));

        for (list, remove, unparse, key) in [
            (&want, false, false, "decoded_hex"),
            (&want_special, false, true, "decoded_parse_special_hex"),
            (&want_add, true, false, "decoded_add_special_hex"),
        ] {
            let expect = String::from_utf8_lossy(&unhex(c[key].as_str().unwrap())).into_owned();
            let ours = tok.decode(list, remove, unparse);
            check(&format!("decode({list:?}, {remove}, {unparse})"), format!("{ours:?}"), format!("{expect:?}"));

            // Streaming gives the same text, and never a replacement character the full text lacks.
            let mut s = StreamDecoder::with_options(&tok, remove, unparse);
            let mut streamed = String::new();
            for &id in list.iter() {
                let part = s.push(id);
                if part.contains('\u{FFFD}') && !expect.contains('\u{FFFD}') {
                    check(&format!("stream of {list:?} split a character"), format!("{part:?}"), String::new());
                }
                streamed.push_str(&part);
            }
            streamed.push_str(&s.finish());
            check(&format!("stream({list:?}, {remove}, {unparse})"), format!("{streamed:?}"), format!("{expect:?}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches with llama.cpp ({kind}):\n{}", failures.len(), failures.join("\n"));
    eprintln!("{kind}: {} strings match llama.cpp", cases.len());
}

#[test]
fn spm_matches_llama_cpp() {
    check_against_golden("spm");
}

#[test]
fn bpe_matches_llama_cpp() {
    check_against_golden("bpe");
}

#[test]
fn llama4_pre_tokenizer_matches_llama_cpp() {
    check_against_golden("bpe-llama4");
}

/// Writes the vocab-only GGUF files the golden script reads: see scripts/goldens-tokenizer.py.
#[test]
#[ignore]
fn write_vocab_files() {
    let dir = std::env::var("HEARTH_VOCAB_DIR").expect("set HEARTH_VOCAB_DIR to the output directory");
    std::fs::create_dir_all(&dir).unwrap();
    for kind in ["spm", "bpe", "bpe-llama4"] {
        let path = format!("{dir}/vocab-{kind}.gguf");
        std::fs::write(&path, vocab_gguf(kind)).unwrap();
        eprintln!("wrote {path}");
    }
}

#[test]
fn fixture_vocabularies_are_deterministic_and_sized() {
    assert_eq!(vocab_gguf("spm"), vocab_gguf("spm"));
    assert_eq!(vocab_gguf("bpe"), vocab_gguf("bpe"));
    let spm = tokenizer_of(&vocab_gguf("spm"));
    let bpe = tokenizer_of(&vocab_gguf("bpe"));
    assert!((900..=1100).contains(&spm.vocab_size()), "spm vocab size {}", spm.vocab_size());
    assert!((1400..=1600).contains(&bpe.vocab_size()), "bpe vocab size {}", bpe.vocab_size());
}

#[test]
fn spm_byte_fallback_and_merges() {
    let tok = tokenizer_of(&vocab_gguf("spm"));
    // "界" (E7 95 8C) is not a piece: three byte tokens, after the "▁" prefix piece.
    let ids = tok.encode("界", false, false);
    let texts: Vec<&str> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["▁", "<0xE7>", "<0x95>", "<0x8C>"]);
    assert_eq!(tok.decode(&ids, false, false), "界");
    // Frequent corpus words are single pieces: merging works.
    let ids = tok.encode("the hearth", false, false);
    let texts: Vec<&str> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["▁the", "▁hearth"]);
    // The prefix space is dropped on decode, except (as in llama.cpp) after a removed BOS.
    assert_eq!(tok.decode(&ids, false, false), "the hearth");
    let ids = tok.encode("the hearth", true, false);
    assert_eq!(ids[0], tok.bos().unwrap());
    assert_eq!(tok.decode(&ids, true, false), " the hearth");
    // The user-defined token is matched even with parse_special off; control tokens are not.
    let ud = tok.encode(SPM_USER_DEFINED, false, false);
    assert_eq!(ud.len(), 1, "{ud:?}");
    assert_eq!(tok.token_text(ud[0]), Some(SPM_USER_DEFINED));
    assert_eq!(tok.encode("</s>", false, true), vec![2]);
    assert!(tok.encode("</s>", false, false).len() > 1);
    assert!(tok.is_eog(2));
}

#[test]
fn bpe_merges_and_specials() {
    let tok = tokenizer_of(&vocab_gguf("bpe"));
    let ids = tok.encode("the hearth", false, false);
    assert!(ids.len() <= 3, "merges not applied: {ids:?}");
    assert_eq!(tok.decode(&ids, false, false), "the hearth");
    // Every byte round-trips through byte-level tokens.
    let all: String = "\u{0}\u{1}\t\n\r \u{7f}ÿ€😀".to_string();
    assert_eq!(tok.decode(&tok.encode(&all, false, false), false, false), all);
    let eot = tok.encode("<|eot_id|>", false, true);
    assert_eq!(eot.len(), 1);
    assert!(tok.is_eog(eot[0]));
    assert_eq!(tok.eos(), Some(eot[0]));
    let eot_text = tok.encode("<|end_of_text|>", false, true);
    assert!(tok.is_eog(eot_text[0]));
    assert!(tok.encode("<|eot_id|>", false, false).len() > 1);
    assert_eq!(tok.token_to_piece(eot[0], false), b"");
    assert_eq!(tok.token_to_piece(eot[0], true), b"<|eot_id|>");
    let with_bos = tok.encode("hi", true, false);
    assert_eq!(with_bos[0], tok.bos().unwrap());
}

#[test]
fn stream_holds_split_characters() {
    for kind in ["spm", "bpe"] {
        let tok = tokenizer_of(&vocab_gguf(kind));
        let text = "a😀b界";
        let ids = tok.encode(text, false, false);
        let mut s = StreamDecoder::new(&tok);
        let mut out = Vec::new();
        for &id in &ids {
            out.push(s.push(id));
        }
        let rest = s.finish();
        assert!(out.iter().all(|p| !p.contains('\u{FFFD}')), "{kind}: {out:?}");
        assert_eq!(out.concat() + &rest, tok.decode(&ids, false, false), "{kind}");
        // An incomplete character at the end comes out lossy from finish().
        let mut s = StreamDecoder::new(&tok);
        let cut: Vec<u32> = tok.encode("😀", false, false);
        let mut got = String::new();
        for &id in &cut[..cut.len() - 1] {
            got.push_str(&s.push(id));
        }
        let end = s.finish();
        assert!(end.ends_with('\u{FFFD}') || cut.len() == 1, "{kind}: {got:?} {end:?}");
    }
}

#[test]
fn encoding_a_long_prompt_is_fast_enough() {
    // ~20 kB through both tokenizers; a quadratic algorithm would take seconds here.
    let text = hearth::fixture::vocab::CORPUS.repeat(4);
    for kind in ["spm", "bpe"] {
        let tok = tokenizer_of(&vocab_gguf(kind));
        let ids = tok.encode(&text, true, false);
        assert!(ids.len() > 1000);
        if kind == "spm" {
            assert!(tok.decode(&ids, true, false) == format!(" {text}"), "spm long text does not round-trip");
        }
    }
}
