//! Split models (llama.cpp's `name-00001-of-0000N.gguf` shards): loaded shard after shard they
//! give the same model as the whole file; a missing, repeated or foreign shard is a typed error.

use crate::common;

use hearth::backend::cpu::Cpu;
use hearth::gguf::split_file;
use hearth::{shard_name, EngineLoader, HearthError};

fn load_shards(shards: &[Vec<u8>]) -> Result<hearth::Engine<Cpu>, HearthError> {
    let mut loader = EngineLoader::new(Cpu);
    for (i, s) in shards.iter().enumerate() {
        if i > 0 {
            loader.next_shard()?;
        }
        // Odd chunk sizes: headers and tensors arrive in pieces.
        for c in s.chunks(7919) {
            loader.feed(c)?;
        }
    }
    loader.finish()
}

#[test]
fn a_split_model_loads_shard_by_shard_and_equals_the_whole_file() {
    for file in ["bpe-q4_k_m.gguf", "spm-q8_0.gguf"] {
        let whole = common::fixture_bytes(file);
        let reference = common::load(&whole, 1 << 20);
        let tokens = reference.tokenize_prompt("Once upon a time, far away");
        let want = reference.prompt_logits(&tokens).unwrap();
        for n in [1, 2, 3, 5] {
            let shards = split_file(&whole, n).unwrap();
            assert_eq!(shards.len(), n);
            let mut first = EngineLoader::new(Cpu);
            first.feed(&shards[0]).unwrap();
            assert_eq!(first.shards(), Some(n as u32), "the first shard says how many there are");
            let e = load_shards(&shards).unwrap_or_else(|e| panic!("{file} in {n} shards: {e}"));
            assert_eq!(e.prompt_logits(&tokens).unwrap(), want, "{file} in {n} shards");
            assert_eq!(e.tokenizer.vocab_size(), reference.tokenizer.vocab_size());
            // Only the first shard carries the model's metadata.
            if n > 1 {
                let second = hearth::gguf::parse_file(&shards[1]).unwrap();
                assert!(second.metadata.get("general.architecture").is_none());
                assert_eq!(second.metadata.get("split.no").and_then(|v| v.as_u64()), Some(1));
            }
        }
    }
}

#[test]
fn missing_repeated_or_foreign_shards_are_typed_errors() {
    let whole = common::fixture_bytes("spm-q4_0.gguf");
    let shards = split_file(&whole, 3).unwrap();

    // Only two of three shards.
    match load_shards(&shards[..2]) {
        Err(HearthError::Truncated { what, .. }) => assert!(what.contains("shard 3 of 3"), "{what}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Shard 2 twice.
    let twice = vec![shards[0].clone(), shards[1].clone(), shards[1].clone()];
    match load_shards(&twice) {
        Err(HearthError::BadMetadata { key, why }) => assert!(key == "split.no" && why.contains("shard 2 but shard 3"), "{key}: {why}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A shard of a model split another way.
    let other = split_file(&whole, 2).unwrap();
    let mixed = vec![shards[0].clone(), other[1].clone()];
    assert_eq!(load_shards(&mixed).map(|_| ()).unwrap_err().code(), "bad_metadata");
    // More shards than the model has.
    let mut loader = EngineLoader::new(Cpu);
    loader.feed(&whole).unwrap();
    assert_eq!(loader.shards(), Some(1));
    assert_eq!(loader.next_shard().unwrap_err().code(), "invalid_argument");
    // A truncated shard is reported when the next one is asked for.
    let mut loader = EngineLoader::new(Cpu);
    loader.feed(&shards[0][..shards[0].len() - 10]).unwrap();
    assert_eq!(loader.next_shard().unwrap_err().code(), "truncated");
}

#[test]
fn shard_names_follow_llama_cpp() {
    assert_eq!(shard_name("m-00001-of-00003.gguf", 2, 3).as_deref(), Some("m-00003-of-00003.gguf"));
    assert_eq!(
        shard_name("https://h.co/a/Llama-3.1-8B-Q4_K_M-00001-of-00002.gguf?download=true", 1, 2).as_deref(),
        Some("https://h.co/a/Llama-3.1-8B-Q4_K_M-00002-of-00002.gguf?download=true")
    );
    assert_eq!(shard_name("m-00001-of-00003.gguf", 3, 3), None, "index past the end");
    assert_eq!(shard_name("m-00001-of-00003.gguf", 1, 4), None, "count disagrees with the name");
    assert_eq!(shard_name("m-00002-of-00003.gguf", 2, 3), None, "not the first shard");
    assert_eq!(shard_name("model.gguf", 1, 2), None);
}
