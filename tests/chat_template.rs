//! Chat templates rendered by Hearth against the same templates rendered by jinja2 configured as
//! Hugging Face transformers does (tests/golden/chat-templates.json, scripts/goldens-chat.py): the
//! built-in fallbacks and the official Llama 2 chat, Qwen2.5 (ChatML), Llama 3.1/3.2/3.3, Mistral Nemo, Phi-3.5, SmolLM3 and
//! DeepSeek-R1-Distill-Llama templates, on conversations with and without a system prompt, an
//! assistant turn last, unicode, and roles out of order (which must fail as the template says).

use crate::common;

use hearth::chat::{ChatMessage, ChatTemplate, Date};

/// The built-in templates that stand for one of llama.cpp's own chat formats
/// (scripts/goldens-chat.py LLAMA_CPP_FORMATS).
const LLAMA_CPP_FORMATS: [&str; 2] = ["src/chat/templates/llama3.jinja", "src/chat/templates/llama4.jinja"];

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
        // A built-in fallback standing for one of llama.cpp's formats renders as llama.cpp does
        // (which leaves BOS to the tokenizer): each of their cases carries llama.cpp's rendering.
        if LLAMA_CPP_FORMATS.contains(&path) && c.get("llama_cpp").is_none() {
            failures.push(format!("{what}: no llama.cpp rendering in the golden (scripts/goldens-chat.py)"));
        }
        if let (Ok(text), Some(l)) = (&got, c.get("llama_cpp").and_then(|e| e.as_str())) {
            if *text != format!("{}{l}", c["bos_token"].as_str().unwrap()) {
                failures.push(format!("{what}: ours {text:?}, llama.cpp {l:?}"));
            }
        }
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

/// Templates are code from the model file. Each of these must fail with a `chat_template` error
/// (not hang, exhaust memory, abort or overflow the stack) well within a second: they take at most
/// ~40 ms natively and ~60 ms in wasm (node), so the 3 s bound only allows for a busy machine.
/// (Numbers fit 32 bits where they may, so that the cases mean the same on wasm32.)
#[test]
fn hostile_templates_fail_fast() {
    let cases = [
        // 10^10 iterations: the step limit.
        ("nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "ran too long"),
        ("empty nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "ran too long"),
        // A string of 2^64 bytes: the data it creates is charged before it is allocated. (Without
        // a namespace, `{% set s = s ~ s %}` in a loop sets a loop-local `s`: see below.)
        ("string doubling", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}", "ran too long"),
        ("string multiplication", "{{ 'x' * 2000000000 }}", "ran too long"),
        ("list multiplication", "{{ ([1] * 10**12) | length }}", "ran too long"),
        // Lists are lazy when concatenated or repeated, but are charged as if they were not.
        ("list doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}", "ran too long"),
        ("list doubling, printed", "{% set ns = namespace(l=['x']) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l }}", "ran too long"),
        // One 1 MB string, repeated: each way of flattening it into a string pays as it goes.
        ("join of a repeated string", "{{ ([' ' * 1000000] * 10000) | join('') }}", "ran too long"),
        ("concatenation of a repeated string", "{{ ([' ' * 1000000] * 10000) ~ '' }}", "ran too long"),
        ("string of a repeated string", "{{ ([' ' * 1000000] * 10000) | string | length }}", "ran too long"),
        ("format of a repeated string", "{{ '%s' | format([' ' * 1000000] * 10000) }}", "ran too long"),
        ("set block of a repeated string", "{% set y %}{{ [' ' * 1000000] * 10000 }}{% endset %}{{ y | length }}", "ran too long"),
        ("lower of a repeated string", "{{ ([' ' * 1000000] * 10000) | lower | length }}", "ran too long"),
        // A list that holds itself twice, 40 times over: 2^40 items behind 80 lists.
        ("self-similar list, printed", "{% set ns = namespace(x=['x' * 1000]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}", "ran too long"),
        ("self-similar list, joined", "{% set ns = namespace(x=['x' * 1000]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x | join(',') }}", "ran too long"),
        // Deep nesting: printing it stops at 256 levels.
        ("deep list, printed", "{% set ns = namespace(x=[]) %}{% for i in range(20000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", "nested more than 256"),
        ("deep map, printed", "{% set ns = namespace(x={}) %}{% for i in range(20000) %}{% set ns.x = {'a': ns.x} %}{% endfor %}{{ ns.x }}", "nested more than 256"),
        // The output limit: 2 MB of prompt from a template that is otherwise cheap.
        ("huge output", "{{ 'x' * 2000000 }}", "produced more than"),
        ("many writes", "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "produced more than"),
        ("recursive macro", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
        ("branching macro", "{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
        ("recursive loop", "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "recursion"),
        ("huge range", "{% for i in range(10**12) %}x{% endfor %}", "too many elements|cannot convert"),
        ("long range", "{% for i in range(10**9) %}x{% endfor %}", "too many elements"),
        // Padding and indentation the template asks for by number.
        ("str.format width", "{{ '{:>2000000000}'.format('x') }}", "ran too long"),
        ("tojson indent", "{{ [[[1]]] | tojson(indent=2000000000) }}", "ran too long"),
        ("indent filter", "{{ 'a\nb' | indent(2000000000) }}", "ran too long"),
        ("deep tojson", "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x | tojson }}", "nested deeper"),
        ("tojson of a repeated string", "{{ ([' ' * 1000000] * 1000) | tojson }}", "ran too long"),
        ("tojson of a long lazy list", "{{ ([1] * 100000000) | tojson }}", "ran too long"),
        ("replace", "{{ ('x' * 10000).replace('x', 'y' * 100000) }}", "ran too long"),
    ];
    let messages = [ChatMessage::new("user", "Hello")];
    let today = Date { year: 2026, month: 11, day: 26 };
    let mut failures = Vec::new();
    for (what, source, says) in cases {
        let t0 = std::time::Instant::now();
        let got = ChatTemplate::new(source, "<s>", "</s>").render(&messages, true, today);
        let elapsed = t0.elapsed();
        eprintln!("{what}: {:.1} ms: {:?}", elapsed.as_secs_f64() * 1e3, got.as_ref().map(|s| s.len()));
        match got {
            Err(e) if e.code() == "chat_template" && says.split('|').any(|s| e.to_string().contains(s)) && elapsed.as_secs_f64() < 3.0 => {}
            other => failures.push(format!("{what}: {:?} after {elapsed:?}", other.map(|s| s.len()))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // As in Jinja2, a `set` inside a loop does not outlive the iteration: no doubling.
    let t = ChatTemplate::new("{% set s = 'x' %}{% for i in range(64) %}{% set s = s ~ s %}{% endfor %}{{ s }}", "", "");
    assert_eq!(t.render(&messages, true, today).unwrap(), "x");
}

/// Values a template builds cheaply but that recurse when compared, hashed, sorted or freed: each
/// stays bounded (by nesting depth and visits, see vendor/README.md) and renders on a 256 KiB
/// stack, a quarter of what wasm gives.
#[test]
fn hostile_values_stay_bounded_on_a_small_stack() {
    let cases = [
        // 20 000 nested lists, freed after rendering (recursively, that overflows an 8 MiB stack).
        ("deep list, freed", "{% set ns = namespace(x=[]) %}{% for i in range(20000) %}{% set ns.x = [ns.x] %}{% endfor %}ok", "ok"),
        // Compared past 256 levels, the rest is taken as equal.
        ("deep lists, compared", "{% set ns = namespace(x=[], y=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% set ns.y = [ns.y] %}{% endfor %}{{ ns.x == ns.y }}", "True"),
        ("deep lists, ordered", "{% set ns = namespace(x=[], y=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% set ns.y = [ns.y] %}{% endfor %}{{ ns.x < ns.y }}", "False"),
        // 2^40 items behind 80 lists: a comparison visits at most 65 536 of them.
        ("self-similar lists, compared", "{% set ns = namespace(x=[1], y=[1]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% set ns.y = [ns.y, ns.y] %}{% endfor %}{{ ns.x == ns.y }}", "True"),
        ("self-similar lists, hashed", "{% set ns = namespace(x=[1], y=[1]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% set ns.y = [ns.y, ns.y] %}{% endfor %}{{ ns.x in [ns.y] }}", "True"),
    ];
    let failing = [
        // Sorting checks before it starts that its comparisons can be paid for.
        ("self-similar lists, sorted", "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ([ns.x] * 1000) | sort | length }}", "ran too long"),
    ];
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let messages = [ChatMessage::new("user", "Hello")];
            let today = Date { year: 2026, month: 12, day: 5 };
            for (what, source, want) in cases {
                let t0 = std::time::Instant::now();
                let got = ChatTemplate::new(source, "<s>", "</s>").render(&messages, true, today);
                assert!(t0.elapsed().as_secs_f64() < 3.0, "{what}: {:?}", t0.elapsed());
                assert_eq!(got.as_deref().map_err(|e| e.to_string()), Ok(want), "{what}");
            }
            for (what, source, says) in failing {
                let t0 = std::time::Instant::now();
                let got = ChatTemplate::new(source, "<s>", "</s>").render(&messages, true, today);
                assert!(t0.elapsed().as_secs_f64() < 3.0, "{what}: {:?}", t0.elapsed());
                let e = got.expect_err(what);
                assert!(e.code() == "chat_template" && e.to_string().contains(says), "{what}: {e}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
