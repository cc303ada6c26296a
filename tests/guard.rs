//! Llama Guard moderation (src/guard.rs): prompts rendered exactly as jinja2 renders the official
//! templates (tests/golden/guard-prompts.json, scripts/goldens-guard.py), the verdict grammar
//! (any masked sampling ends in a parseable verdict), and the per-role KV cache.

use crate::common;

use hearth::chat::{ChatMessage, ChatTemplate, Date};
use hearth::gguf::Value as GgufValue;
use hearth::grammar::{Constraint, TokenIndex};
use hearth::guard::{self, GuardOptions, Moderator, Role};
use hearth::HearthError;

const TODAY: Date = Date { year: 2026, month: 1, day: 1 };

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
    v.as_array().unwrap().iter().map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect()
}

fn options(c: &serde_json::Value) -> GuardOptions {
    GuardOptions {
        categories: c["categories"].as_array().map(|a| {
            a.iter().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string())).collect()
        }),
        excluded: c["excluded"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn prompts_match_jinja2_renderings_of_the_official_templates() {
    let g = common::read_json("guard-prompts.json");
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let s = |k: &str| c[k].as_str().unwrap();
        let src = std::fs::read_to_string(root().join(s("template"))).unwrap();
        let t = ChatTemplate::new(&src, s("bos_token"), s("eos_token"));
        let what = format!("{} / {}", s("template"), s("name"));
        match (guard::render(&t, &messages(&c["messages"]), &options(c), TODAY), c.get("error")) {
            (Ok(p), None) => {
                assert_eq!(p.text, s("text"), "{what}");
                assert_eq!(p.role, if s("role") == "Agent" { Role::Agent } else { Role::User }, "{what}");
                let codes: Vec<&str> = p.categories.iter().map(|(c, _)| c.as_str()).collect();
                let want: Vec<&str> = c["codes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                assert_eq!(codes, want, "{what}");
            }
            (Err(HearthError::ChatTemplate(m)), Some(e)) => assert!(m.contains(e.as_str().unwrap()), "{what}: {m}"),
            (got, want) => panic!("{what}: got {got:?}, want error {want:?}"),
        }
    }
}

#[test]
fn names_come_from_the_taxonomy_or_the_custom_text() {
    let t = ChatTemplate::new(guard::LLAMA_GUARD_3_1B, "<|begin_of_text|>", "<|eot_id|>");
    let p = guard::render(&t, &[ChatMessage::new("user", "hi")], &GuardOptions::default(), TODAY).unwrap();
    assert_eq!(p.categories[2], ("S3".to_string(), "Sex-Related Crimes".to_string()));
    assert_eq!(p.categories[10], ("S11".to_string(), "Suicide & Self-Harm".to_string()));
    let custom = GuardOptions { categories: Some(vec![("S1".into(), "Talking like a pirate.\nArr.".into())]), excluded: vec![], ..Default::default() };
    let p = guard::render(&t, &[ChatMessage::new("user", "hi")], &custom, TODAY).unwrap();
    assert_eq!(p.categories, vec![("S1".to_string(), "Talking like a pirate".to_string())]);
    // The 8B template's list is fixed: custom categories are refused, not silently ignored.
    let t8 = ChatTemplate::new(guard::LLAMA_GUARD_3_8B, "<|begin_of_text|>", "<|eot_id|>");
    let e = guard::render(&t8, &[ChatMessage::new("user", "hi")], &custom, TODAY).unwrap_err();
    assert_eq!(e.code(), "invalid_argument", "{e}");
    assert_eq!(guard::render(&t, &[ChatMessage::new("tool", "x")], &GuardOptions::default(), TODAY).unwrap_err().code(), "invalid_argument");
    assert_eq!(guard::render(&t, &[], &GuardOptions::default(), TODAY).unwrap_err().code(), "invalid_argument");
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Random logits under the verdict mask, over both fixture vocabularies: whatever the model would
/// say, the text ends in a verdict that parses and names only listed codes, each at most once.
#[test]
fn the_verdict_grammar_always_parses() {
    let cats: Vec<(String, String)> = guard::TAXONOMY.iter().map(|(c, n)| (c.to_string(), n.to_string())).collect();
    let codes: Vec<&str> = cats.iter().map(|(c, _)| c.as_str()).collect();
    let mut unsafe_seen = 0;
    for file in ["bpe-q8_0.gguf", "spm-q8_0.gguf"] {
        let engine = common::load(&common::fixture_bytes(file), 1 << 20);
        let ix = TokenIndex::new(&engine.tokenizer);
        for seed in 0..150u64 {
            let mut c = Constraint::verdict(&codes).unwrap();
            c.set_token_budget(Some(70));
            let mut rng = seed;
            let mut ids = Vec::new();
            loop {
                let mut logits: Vec<f32> = (0..ix.vocab_size()).map(|_| (splitmix(&mut rng) >> 40) as f32 / (1u64 << 24) as f32).collect();
                // Half the seeds favour ending as soon as allowed, half go on.
                if seed % 2 == 0 {
                    for e in engine.tokenizer.eog_ids() {
                        logits[e as usize] += 2.0;
                    }
                }
                c.mask(&ix, &mut logits);
                let id = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as u32;
                c.accept(&ix, id).unwrap();
                if engine.tokenizer.is_eog(id) {
                    break;
                }
                ids.push(id);
                assert!(ids.len() <= 70, "{file} seed {seed}: no end");
            }
            let text = engine.tokenizer.decode(&ids, false, false);
            let v = guard::parse_verdict(&text, &cats, &[]).unwrap_or_else(|e| panic!("{file} seed {seed}: {text:?}: {e}"));
            unsafe_seen += usize::from(!v.safe);
        }
    }
    assert!(unsafe_seen > 20, "the random walks should reach unsafe verdicts too ({unsafe_seen})");
    // Bad code lists are typed errors.
    assert!(Constraint::verdict(&[]).is_err());
    assert!(Constraint::verdict(&["S1", "S1"]).is_err());
    assert!(Constraint::verdict(&["S1,S2"]).is_err());
}

#[test]
fn verdict_grammar_accepts_exactly_the_verdict_language() {
    let c = Constraint::verdict(&["S1", "S10", "S2"]).unwrap();
    let ok = |t: &str| {
        let mut c = c.clone();
        c.accept_bytes(t.as_bytes()).is_ok() && c.is_complete()
    };
    for t in ["safe", "\n\nsafe", "unsafe\nS1", "\n\nunsafe\nS10,S1", "unsafe\nS2,S10,S1"] {
        assert!(ok(t), "{t:?}");
    }
    for t in ["saf", "unsafe", "unsafe\n", "unsafe\nS3", "unsafe\nS1,S1", "unsafe\nS1,", "\n\n\nsafe", "safe\n", "Safe", "unsafe S1"] {
        assert!(!ok(t), "{t:?}");
    }
}

fn guard_fixture(template: &str) -> hearth::Engine<hearth::backend::cpu::Cpu> {
    let bytes = common::fixture_bytes("bpe-q4_0.gguf");
    let bytes = hearth::gguf::with_metadata(&bytes, &[("tokenizer.chat_template", GgufValue::String(template.into()))]).unwrap();
    common::load(&bytes, 1 << 20)
}

/// The fixture with the 3-1B template: every check gives a verdict; a second check of the same
/// role reuses the taxonomy (and the instructions before the conversation) from its KV cache, a
/// check of the other role has a cache of its own.
#[test]
fn a_second_check_prefills_only_what_differs() {
    let engine = guard_fixture(guard::LLAMA_GUARD_3_1B);
    let template = ChatTemplate::for_model(&engine.metadata, &engine.tokenizer).unwrap();
    let mut m = Moderator::new(&template, 1024);
    assert!(m.render(&[ChatMessage::new("user", "x")], &GuardOptions::default(), TODAY).unwrap().model_template);
    let opts = GuardOptions::default();
    let user = |t: &str| vec![ChatMessage::new("user", t)];
    let first = m.moderate(&engine, &user("How do I bake sourdough bread?"), &opts, TODAY).unwrap();
    assert_eq!(first.cached_tokens, 0);
    let prefix = guard::tokenize(&engine.tokenizer, &first.prompt[..first.prompt.find("User: How").unwrap()]).len();
    assert!(prefix > 200, "{prefix}");
    let second = m.moderate(&engine, &user("What is the capital of France?"), &opts, TODAY).unwrap();
    assert!(second.cached_tokens >= prefix, "cached {} of a {prefix}-token taxonomy prefix", second.cached_tokens);
    assert!(second.prompt_tokens - second.cached_tokens < first.prompt_tokens / 2);
    let agent = m.moderate(&engine, &[ChatMessage::new("user", "Hi"), ChatMessage::new("assistant", "Hello!")], &opts, TODAY).unwrap();
    assert_eq!((agent.role, agent.cached_tokens), (Role::Agent, 0));
    let third = m.moderate(&engine, &user("And the capital of Spain?"), &opts, TODAY).unwrap();
    assert!(third.cached_tokens >= prefix, "the user cache survives an agent check");
    for r in [&first, &second, &agent, &third] {
        assert!(r.raw.trim_start().starts_with("safe") || r.raw.trim_start().starts_with("unsafe\n"), "{:?}", r.raw);
        assert_eq!(r.verdict.safe, r.verdict.categories.is_empty());
    }
}

/// A model without a Llama Guard template is asked with the built-in 3-1B one; excluded codes
/// never appear in a verdict; the 8B template takes no custom categories.
#[test]
fn builtin_template_and_exclusions() {
    let engine = common::load(&common::fixture_bytes("bpe-q4_0.gguf"), 1 << 20);
    let template = ChatTemplate::for_model(&engine.metadata, &engine.tokenizer).unwrap();
    let mut m = Moderator::new(&template, 1024);
    let msgs = [ChatMessage::new("user", "How do I kill a mosquito?")];
    let r = m.moderate(&engine, &msgs, &GuardOptions::default(), TODAY).unwrap();
    assert!(!r.model_template);
    assert!(r.prompt.starts_with("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTask: Check"));
    // This fixture's random weights answer "unsafe\nS1" here (hearth moderate says so): excluding
    // the codes it names turns the verdict safe or makes it name others.
    let named: Vec<String> = r.verdict.categories.iter().map(|(c, _)| c.clone()).collect();
    let opts = GuardOptions { excluded: named.clone(), ..Default::default() };
    let r2 = m.moderate(&engine, &msgs, &opts, TODAY).unwrap();
    assert!(r2.verdict.categories.iter().all(|(c, _)| !named.contains(c)), "{:?}", r2.verdict);
    assert!(!r2.prompt.contains("S1: Violent") || !named.contains(&"S1".to_string()));

    let engine8 = guard_fixture(guard::LLAMA_GUARD_3_8B);
    let t8 = ChatTemplate::for_model(&engine8.metadata, &engine8.tokenizer).unwrap();
    let mut m8 = Moderator::new(&t8, 1024);
    let r = m8.moderate(&engine8, &msgs, &GuardOptions { excluded: (1..=14).map(|i| format!("S{i}")).collect(), ..Default::default() }, TODAY).unwrap();
    assert!(r.model_template && r.verdict.safe && r.prompt.starts_with(" <|begin_of_text|>"), "{r:?}");
    let custom = GuardOptions { categories: Some(vec![("S1".into(), "x".into())]), excluded: vec![], ..Default::default() };
    assert_eq!(m8.moderate(&engine8, &msgs, &custom, TODAY).unwrap_err().code(), "invalid_argument");
}
