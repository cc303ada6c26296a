//! KV reuse across turns: a session re-reads only what differs from what it has cached, and its
//! results equal a fresh session's on the whole prompt.

use crate::common;

use hearth::sampler::SamplerConfig;
use hearth::GenerateOptions;

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_tokens: n, sampler: SamplerConfig::greedy(), stop_at_eos: false, batch: 16, ..Default::default() }
}

fn run<B: hearth::backend::Backend>(s: &mut hearth::Session<B>, e: &hearth::Engine<B>) -> Vec<u32> {
    while s.next(e).unwrap().is_some() {}
    s.generated().to_vec()
}

#[test]
fn a_follow_up_turn_reuses_the_cache_and_matches_a_fresh_run() {
    for file in ["bpe-q4_k_m.gguf", "spm-q8_0.gguf"] {
        let e = common::load(&common::fixture_bytes(file), 1 << 20);
        let turn1 = e.tokenize_prompt("Once upon a time");
        let mut s = e.new_session(512).unwrap();
        assert_eq!(s.start(&e, &turn1, &greedy(10)).unwrap(), 0);
        let reply = run(&mut s, &e);
        assert_eq!(reply.len(), 10);

        // Turn 2 extends turn 1 and its reply: all of it but the reply's last token is cached.
        let mut turn2 = [turn1.clone(), reply.clone()].concat();
        turn2.extend(e.tokenizer.encode(" and then", false, false));
        let reused = s.start(&e, &turn2, &greedy(8)).unwrap();
        assert_eq!(reused, turn1.len() + reply.len() - 1, "{file}");
        let cont = run(&mut s, &e);

        let mut fresh = e.new_session(512).unwrap();
        fresh.start(&e, &turn2, &greedy(8)).unwrap();
        assert_eq!(cont, run(&mut fresh, &e), "{file}: reused cache gives other tokens");

        // A prompt that diverges early reuses only the shared prefix, and is still right.
        let other = e.tokenize_prompt("Once upon a rainy day");
        let shared = turn2.iter().zip(&other).take_while(|(a, b)| a == b).count();
        assert_eq!(s.start(&e, &other, &greedy(6)).unwrap(), shared);
        let a = run(&mut s, &e);
        let mut fresh = e.new_session(512).unwrap();
        fresh.start(&e, &other, &greedy(6)).unwrap();
        assert_eq!(a, run(&mut fresh, &e), "{file}: after divergence");

        // The same prompt again re-runs only its last token.
        assert_eq!(s.start(&e, &other, &greedy(6)).unwrap(), other.len() - 1);
        assert_eq!(run(&mut s, &e), a);
    }
}

#[test]
fn a_failed_start_leaves_the_session_usable() {
    let e = common::load(&common::fixture_bytes("spm-q4_0.gguf"), 1 << 20);
    let prompt = e.tokenize_prompt("The quick brown fox");
    let mut s = e.new_session(64).unwrap();
    s.start(&e, &prompt, &greedy(4)).unwrap();
    let first = run(&mut s, &e);
    let too_long: Vec<u32> = prompt.iter().cycle().take(65).copied().collect();
    assert_eq!(s.start(&e, &too_long, &greedy(4)).unwrap_err().code(), "context_overflow");
    assert_eq!(s.start(&e, &[1, 999_999], &greedy(4)).unwrap_err().code(), "invalid_argument");
    assert_eq!(s.start(&e, &[], &greedy(4)).unwrap_err().code(), "invalid_argument");
    assert!(s.next(&e).unwrap().is_none(), "a failed start leaves nothing to generate");
    assert_eq!(s.start(&e, &prompt, &greedy(4)).unwrap(), prompt.len() - 1);
    assert_eq!(run(&mut s, &e), first);
}

#[test]
fn a_stop_string_ends_generation_without_being_emitted() {
    let e = common::load(&common::fixture_bytes("bpe-q4_k_m.gguf"), 1 << 20);
    let prompt = e.tokenize_prompt("Once upon a time");
    let full = e.generate(&prompt, 512, &greedy(24), |_| true).unwrap();
    // A stop string from the middle of the greedy text, likely spanning a token boundary.
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() > 12, "{:?}", full.text);
    let stop: String = chars[8..12].iter().collect();
    let before: String = full.text[..full.text.find(&stop).unwrap()].to_string();
    let mut streamed = String::new();
    let opts = GenerateOptions { stop: vec![stop.clone()], ..greedy(24) };
    let g = e.generate(&prompt, 512, &opts, |ev| {
        streamed.push_str(ev.text);
        true
    }).unwrap();
    assert_eq!(g.stop, hearth::StopReason::StopString);
    assert_eq!(g.text, before);
    assert_eq!(streamed, before, "the stop text must never be streamed");
    assert!(g.tokens.len() < full.tokens.len());
}

#[test]
fn a_full_context_errors_or_shifts_out_old_turns_and_keeps_the_cache_valid() {
    use hearth::chat::{build_prompt, ChatMessage, ChatTemplate, ContextPolicy, Date};
    let e = common::load(&common::fixture_bytes("bpe-q4_k_m.gguf"), 1 << 20);
    let tmpl = ChatTemplate::for_model(&e.metadata, &e.tokenizer).unwrap();
    let today = Date { year: 2026, month: 11, day: 26 };
    let long = "the hearth keeps the kitchen warm ".repeat(6);
    let mut msgs = vec![ChatMessage::new("system", "You are brief.")];
    for i in 0..6 {
        msgs.push(ChatMessage::new("user", &format!("question {i}: {long}")));
        msgs.push(ChatMessage::new("assistant", &format!("answer {i}: {long}")));
    }
    msgs.push(ChatMessage::new("user", "last question"));
    let all = build_prompt(&tmpl, &e.tokenizer, &msgs, today, 4096, 32, ContextPolicy::Error).unwrap();
    assert_eq!((all.dropped, all.tokens.iter().filter(|&&t| Some(t) == e.tokenizer.bos()).count()), (0, 1), "one BOS");
    let n_ctx = all.tokens.len() / 2;
    let err = build_prompt(&tmpl, &e.tokenizer, &msgs, today, n_ctx, 32, ContextPolicy::Error).unwrap_err();
    assert_eq!(err.code(), "context_overflow");
    let shifted = build_prompt(&tmpl, &e.tokenizer, &msgs, today, n_ctx, 32, ContextPolicy::Shift).unwrap();
    assert!(shifted.dropped >= 2 && shifted.dropped % 2 == 0, "whole turns: {}", shifted.dropped);
    assert!(shifted.tokens.len() + 32 <= n_ctx);
    let system = build_prompt(&tmpl, &e.tokenizer, &msgs[..1], today, 4096, 0, ContextPolicy::Error).unwrap().tokens;
    // The system prompt stays first, so a session that held the full conversation reuses it.
    // Up to the end of the system turn (the render then opens the assistant's turn).
    let eot = system.iter().position(|&t| Some(t) == e.tokenizer.eos()).expect("the system turn ends with <|eot_id|>");
    let header = &system[..=eot];
    assert!(shifted.tokens.starts_with(header));
    let mut s = e.new_session(4096).unwrap();
    s.start(&e, &all.tokens, &greedy(2)).unwrap();
    run(&mut s, &e);
    let reused = s.start(&e, &shifted.tokens, &greedy(6)).unwrap();
    assert!(reused >= header.len(), "reused {reused} of a {}-token system prompt", header.len());
    let mut fresh = e.new_session(4096).unwrap();
    fresh.start(&e, &shifted.tokens, &greedy(6)).unwrap();
    assert_eq!(run(&mut s, &e), run(&mut fresh, &e));
    // Nothing fits when the last message alone is too long.
    assert_eq!(build_prompt(&tmpl, &e.tokenizer, &msgs, today, 20, 32, ContextPolicy::Shift).unwrap_err().code(), "context_overflow");
}

fn sampled(n: usize, seed: u64) -> GenerateOptions {
    let sampler = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() };
    GenerateOptions { max_tokens: n, sampler, stop_at_eos: true, batch: 16, ..Default::default() }
}

fn text_of(e: &hearth::Engine<hearth::backend::cpu::Cpu>, ids: &[u32]) -> String {
    e.tokenizer.decode(ids, false, false)
}

#[test]
fn a_response_format_constraint_makes_the_session_emit_json_and_end_it() {
    use hearth::grammar::Constraint;
    use hearth::StopReason;
    let e = common::load(&common::fixture_bytes("bpe-q4_k_m.gguf"), 1 << 20);
    let prompt = e.tokenize_prompt("Reply in JSON:");
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}, "ok": {"type": "boolean"}},
        "required": ["name", "age", "ok"]
    });
    let mut s = e.new_session(1024).unwrap();
    for seed in 0..6 {
        for (c, schema) in [(Constraint::json_object(), None), (Constraint::json_schema(&schema).unwrap(), Some(&schema))] {
            let opts = GenerateOptions { constraint: Some(c), ..sampled(60, seed) };
            s.start(&e, &prompt, &opts).unwrap();
            let ids = run(&mut s, &e);
            let text = text_of(&e, &ids);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("seed {seed}: {text:?} is not JSON: {err}"));
            assert!(v.is_object(), "{text}");
            assert_eq!(s.stop_reason(), Some(StopReason::Eos), "a complete value ends with an end token: {text}");
            assert!(s.constraint_complete());
            if let Some(schema) = schema {
                let obj = v.as_object().unwrap();
                assert_eq!(obj.len(), 3, "{text}");
                assert!(obj["name"].as_str().is_some_and(|n| n.chars().count() <= 8) && obj["age"].is_i64() && obj["ok"].is_boolean(), "{text} vs {schema}");
            }
        }
    }
    // A small budget still closes the value; then an unconstrained start is free text again.
    let opts = GenerateOptions { constraint: Some(Constraint::json_object()), ..sampled(12, 3) };
    s.start(&e, &prompt, &opts).unwrap();
    let ids = run(&mut s, &e);
    assert!(ids.len() <= 12);
    serde_json::from_str::<serde_json::Value>(&text_of(&e, &ids)).unwrap();
    s.start(&e, &prompt, &sampled(12, 3)).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&text_of(&e, &run(&mut s, &e))).is_err());
}

#[test]
fn logprobs_logit_bias_and_seeds() {
    let e = common::load(&common::fixture_bytes("spm-q8_0.gguf"), 1 << 20);
    let prompt = e.tokenize_prompt("Once upon a time");
    let mut s = e.new_session(256).unwrap();

    // Greedy with logprobs: the chosen token is the most likely, probabilities are normalized.
    let opts = GenerateOptions { logprobs: Some(5), ..greedy(4) };
    s.start(&e, &prompt, &opts).unwrap();
    let mut n = 0;
    while let Some(id) = s.next(&e).unwrap() {
        let lp = s.last_logprobs().expect("asked for logprobs");
        assert_eq!(lp.top.len(), 5);
        assert_eq!(lp.top[0], (id, lp.logprob));
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1) && lp.logprob <= 0.0);
        let mass: f32 = lp.top.iter().map(|&(_, l)| l.exp()).sum();
        assert!(mass > 0.0 && mass <= 1.0 + 1e-5);
        n += 1;
    }
    assert_eq!(n, 4);
    s.start(&e, &prompt, &greedy(1)).unwrap();
    s.next(&e).unwrap();
    assert!(s.last_logprobs().is_none(), "not asked for");

    // A logit bias of +100 on one token makes greedy pick it every time.
    let target = e.tokenizer.encode(" hearth", false, false)[0];
    let mut biased = greedy(3);
    biased.sampler.logit_bias = vec![(target, 100.0)];
    s.start(&e, &prompt, &biased).unwrap();
    assert_eq!(run(&mut s, &e), vec![target; 3]);

    // Same seed, same tokens (also across sessions); another seed, other tokens.
    let mut a = e.new_session(256).unwrap();
    a.start(&e, &prompt, &sampled(16, 42)).unwrap();
    let first = run(&mut a, &e);
    s.start(&e, &prompt, &sampled(16, 42)).unwrap();
    assert_eq!(run(&mut s, &e), first);
    s.start(&e, &prompt, &sampled(16, 43)).unwrap();
    assert_ne!(run(&mut s, &e), first);
}

#[test]
fn every_end_of_turn_token_of_llama_3_ends_the_generation() {
    use hearth::StopReason;
    let e = common::load(&common::fixture_bytes("bpe-q4_k_m.gguf"), 1 << 20);
    let prompt = e.tokenize_prompt("Hi");
    let mut s = e.new_session(128).unwrap();
    for text in ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"] {
        let ids = e.tokenizer.encode(text, false, true);
        assert_eq!(ids.len(), 1, "{text} is one special token");
        let id = ids[0];
        assert!(e.tokenizer.eog_ids().contains(&id), "{text} is an end-of-generation token");
        // Force it as the first token: the generation ends at once, emitting nothing.
        let mut opts = sampled(8, 1);
        opts.sampler.logit_bias = vec![(id, 100.0)];
        s.start(&e, &prompt, &opts).unwrap();
        assert_eq!(run(&mut s, &e), Vec::<u32>::new(), "{text}");
        assert_eq!(s.stop_reason(), Some(StopReason::Eos), "{text}");
        // Unless asked not to stop at end tokens.
        opts.stop_at_eos = false;
        s.start(&e, &prompt, &opts).unwrap();
        assert_eq!(run(&mut s, &e), vec![id; 8]);
        assert_eq!(s.stop_reason(), Some(StopReason::Length));
    }
}

/// Every KV cache type: a session of that type (`new_session_with`) reports it, a follow-up turn
/// on its cache equals a fresh session's, prefill in batches equals token by token, and a
/// Q8_0 cache on a model whose heads are no multiple of 32 values is refused up front.
#[test]
fn every_kv_cache_type_reuses_its_cache() {
    use hearth::backend::KvType;
    let e = common::load(&common::fixture_bytes("bpe-q4_0.gguf"), 1 << 20);
    let turn1 = e.tokenize_prompt("Once upon a time");
    for kv in KvType::ALL {
        let mut s = e.new_session_with(256, kv).unwrap();
        assert_eq!(s.kv_type(), kv);
        s.start(&e, &turn1, &greedy(6)).unwrap();
        let reply = run(&mut s, &e);
        let turn2 = [turn1.clone(), reply, e.tokenizer.encode(" and then", false, false)].concat();
        assert!(s.start(&e, &turn2, &greedy(6)).unwrap() > turn1.len());
        let cont = run(&mut s, &e);
        let mut fresh = e.new_session_with(256, kv).unwrap();
        fresh.start(&e, &turn2, &greedy(6)).unwrap();
        assert_eq!(cont, run(&mut fresh, &e), "{kv}: reused cache gives other tokens");
        let mut one_by_one = e.new_session_with(256, kv).unwrap();
        one_by_one.start(&e, &turn2, &GenerateOptions { batch: 1, ..greedy(6) }).unwrap();
        assert_eq!(cont, run(&mut one_by_one, &e), "{kv}: batch 1 prefill gives other tokens");
    }
    // Heads of 16 values (the spm shape with 16 heads) would split Q8_0 blocks across heads.
    let spec = hearth::fixture::Spec { name: "narrow", n_head: 16, ..hearth::fixture::spec("spm").unwrap() };
    let narrow = common::load(&hearth::fixture::build(&spec, "f32").unwrap(), 1 << 20);
    assert_eq!(narrow.model.config.head_dim, 16);
    let err = narrow.new_session_with(64, KvType::Q8_0).err().unwrap();
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.message().contains("multiple of 32"), "{}", err.message());
    narrow.new_session_with(64, KvType::F16).unwrap();
}

const SHA: [u8; 32] = [7; 32];

/// Turn 1, saved; turn 2 in a session restored from the bytes gives exactly the unbroken
/// session's tokens (greedy, then sampled), reusing as much of the cache.
fn a_restored_session_goes_on_like_an_unbroken_one<B: hearth::backend::Backend>(e: &hearth::Engine<B>, what: &str) -> Vec<u8> {
    let turn1 = e.tokenize_prompt("Once upon a time");
    let mut s = e.new_session(128).unwrap();
    s.start(e, &turn1, &greedy(10)).unwrap();
    let reply = run(&mut s, e);
    let saved = s.save(e, SHA).unwrap();
    assert!(saved.starts_with(b"HEARTHKV"));

    let mut turn2 = [turn1.clone(), reply].concat();
    turn2.extend(e.tokenizer.encode(" and then", false, false));
    let sampled = GenerateOptions { sampler: SamplerConfig { seed: 11, temperature: 0.9, ..Default::default() }, ..greedy(12) };
    for opts in [greedy(12), sampled] {
        let mut restored = e.new_session(128).unwrap();
        assert_eq!(restored.restore(e, SHA, &saved).unwrap(), turn1.len() + 9, "{what}: the tokens the cache holds come back");
        let mut unbroken = e.new_session(128).unwrap();
        unbroken.restore(e, SHA, &s.save(e, SHA).unwrap()).unwrap();
        let (a, b) = (restored.start(e, &turn2, &opts).unwrap(), s.start(e, &turn2, &opts).unwrap());
        assert_eq!(a, b, "{what}: as much of the cache is reused");
        assert_eq!(run(&mut restored, e), run(&mut s, e), "{what}: a restored session continues with the unbroken one's tokens");
        // Back to where turn 1 ended, for the next round.
        s = e.new_session(128).unwrap();
        s.restore(e, SHA, &saved).unwrap();
    }
    saved
}

#[test]
fn a_saved_session_restores_and_continues_with_identical_tokens() {
    for kv in hearth::backend::KvType::ALL {
        let mut e = common::load(&common::fixture_bytes("bpe-q4_k_m.gguf"), 1 << 20);
        e.kv_type = kv;
        let saved = a_restored_session_goes_on_like_an_unbroken_one(&e, kv.name());
        // Header, token ids, then per layer keys and values of the n cached positions.
        let c = &e.model.config;
        let n = u32::from_le_bytes(saved[64..68].try_into().unwrap()) as usize;
        assert_eq!(saved.len(), 68 + 4 * n + 8 + 2 * c.n_layer * kv.bytes((n * c.kv_dim()) as u64) as usize, "{kv}");
    }
}

#[test]
fn a_saved_session_for_another_model_context_or_cache_is_refused_and_the_session_goes_on() {
    let e = common::load(&common::fixture_bytes("spm-q4_0.gguf"), 1 << 20);
    let prompt = e.tokenize_prompt("The quick brown fox");
    let mut s = e.new_session(64).unwrap();
    s.start(&e, &prompt, &greedy(4)).unwrap();
    let first = run(&mut s, &e);
    let saved = s.save(&e, SHA).unwrap();
    let code = |r: hearth::Result<usize>| r.map_err(|e| (e.code(), e.message())).unwrap_err();

    let mut other = e.new_session(64).unwrap();
    let (c, m) = code(other.restore(&e, [8; 32], &saved));
    assert_eq!(c, "session_mismatch");
    assert!(m.contains("another model file (SHA-256 0707070707070707…; this one is 0808080808080808…)"), "{m}");
    let (c, m) = code(e.new_session(128).unwrap().restore(&e, SHA, &saved));
    assert!(c == "session_mismatch" && m.contains("context of 64 tokens; this session's is 128"), "{m}");
    let (c, m) = code(e.new_session_with(64, hearth::backend::KvType::Q8_0).unwrap().restore(&e, SHA, &saved));
    assert!(c == "session_mismatch" && m.contains("f16 KV cache; this session's is q8_0"), "{m}");
    let bpe = common::load(&common::fixture_bytes("bpe-q4_0.gguf"), 1 << 20);
    let (c, m) = code(bpe.new_session(64).unwrap().restore(&bpe, SHA, &saved));
    assert!(c == "session_mismatch" && m.contains("layers"), "{m}");

    // Cut anywhere, or with a byte changed where the format is checked: bad_session.
    for cut in [0, 7, 12, 44, 66, 70, 80, saved.len() / 2, saved.len() - 1] {
        assert_eq!(code(other.restore(&e, SHA, &saved[..cut])).0, "bad_session", "cut at {cut}");
    }
    let mut longer = saved.clone();
    longer.push(0);
    assert_eq!(code(other.restore(&e, SHA, &longer)).0, "bad_session");
    for (at, byte) in [(0, b'G'), (8, 2), (60, 9)] {
        let mut bad = saved.clone();
        bad[at] = byte;
        let (c, m) = code(other.restore(&e, SHA, &bad));
        assert_eq!(c, "bad_session", "{m}");
    }
    let mut bad = saved.clone();
    bad[68..72].copy_from_slice(&u32::MAX.to_le_bytes()); // the first token id
    assert!(code(other.restore(&e, SHA, &bad)).1.contains("outside the vocabulary"));

    // Neither session was changed by the refusals.
    assert_eq!(other.restore(&e, SHA, &saved).unwrap(), prompt.len() + 3);
    assert_eq!(s.start(&e, &prompt, &greedy(4)).unwrap(), prompt.len() - 1);
    assert_eq!(run(&mut s, &e), first);
    assert_eq!(other.start(&e, &prompt, &greedy(4)).unwrap(), prompt.len() - 1);
    assert_eq!(run(&mut other, &e), first);
}
