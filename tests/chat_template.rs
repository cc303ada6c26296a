//! Chat templates rendered by Hearth against the same templates rendered by jinja2 configured as
//! Hugging Face transformers does (tests/golden/chat-templates.json, scripts/goldens-chat.py): the
//! built-in fallbacks and the official Llama 2 chat, Qwen2.5 (ChatML), Llama 3.1/3.2/3.3, Mistral Nemo, Phi-3.5, SmolLM3 and
//! DeepSeek-R1-Distill-Llama templates, on conversations with and without a system prompt, an
//! assistant turn last, unicode, and roles out of order (which must fail as the template says).

mod common;

use hearth::chat::{ChatMessage, ChatTemplate, Date};

#[test]
fn renders_like_hugging_face_jinja() {
    let g = common::read_json("chat-templates.json");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let today = Date { year: 2026, month: 11, day: 26 };
    assert_eq!(g["today"], "2026-11-26");
    let mut failures = Vec::new();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    for c in cases {
        let path = c["template"].as_str().unwrap();
        let source = std::fs::read_to_string(root.join(path)).unwrap();
        let t = ChatTemplate::new(&source, c["bos_token"].as_str().unwrap(), c["eos_token"].as_str().unwrap());
        let messages: Vec<ChatMessage> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let got = t.render(&messages, c["add_generation_prompt"].as_bool().unwrap(), today);
        let what = format!("{path} / {}", c["conversation"].as_str().unwrap());
        match (&got, c.get("expected").and_then(|e| e.as_str()), c.get("error").and_then(|e| e.as_str())) {
            (Ok(text), Some(want), _) if text == want => {}
            (Err(e), None, Some(msg)) if e.to_string().contains(msg) => {}
            _ => failures.push(format!("{what}:\n  ours:   {got:?}\n  jinja2: {:?}", c.get("expected").or(c.get("error")))),
        }
    }
    assert!(failures.is_empty(), "{} of {} renderings differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn fixtures_pick_the_fallback_their_vocabulary_calls_for() {
    for (file, want) in [("bpe-q8_0.gguf", hearth::chat::Builtin::Llama3), ("spm-q8_0.gguf", hearth::chat::Builtin::Llama2)] {
        let bytes = common::fixture_bytes(file);
        let h = hearth::gguf::parse_header(&bytes).unwrap();
        let tok = hearth::tokenizer::Tokenizer::from_metadata(&h.metadata).unwrap();
        let t = ChatTemplate::for_model(&h.metadata, &tok).unwrap();
        assert_eq!(t.builtin, Some(want), "{file}");
        let text = t.render(&[ChatMessage::new("user", "Hi")], true, Date { year: 2026, month: 1, day: 1 }).unwrap();
        // The rendered prompt's special tokens must be single tokens of the vocabulary.
        let ids = tok.encode(&text, false, true);
        let bos = tok.bos().unwrap();
        assert_eq!(ids[0], bos, "{file}: {text:?} -> {ids:?}");
    }
}
