//! Constrained output: the automaton on hand-written text, schemas compiled or refused, and
//! generation on the random-weight fixtures whose (gibberish) output must always parse/validate.

use crate::common;

use hearth::backend::cpu::Cpu;
use hearth::grammar::{Constraint, TokenIndex};
use hearth::model::Logits;
use hearth::sampler::{argmax, Sampler, SamplerConfig};
use hearth::Engine;
use serde_json::{json, Value};
use std::time::Instant;

fn valid(c: &Constraint, text: &[u8]) -> bool {
    let mut c = c.clone();
    c.accept_bytes(text).is_ok() && c.is_complete()
}

// ---------------------------------------------------------------- a tiny validator (the supported subset)

fn resolve<'a>(root: &'a Value, r: &str) -> &'a Value {
    if r == "#" {
        return root;
    }
    let (dir, name) = r.strip_prefix("#/$defs/").map(|n| ("$defs", n)).unwrap_or_else(|| ("definitions", r.strip_prefix("#/definitions/").unwrap()));
    &root[dir][name]
}

fn validate(root: &Value, s: &Value, v: &Value) -> Result<(), String> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return validate(root, resolve(root, r), v);
    }
    for kw in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(kw).and_then(Value::as_array) {
            let n = alts.iter().filter(|a| validate(root, a, v).is_ok()).count();
            return if n >= 1 { Ok(()) } else { Err(format!("{v} matches no {kw} alternative")) };
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{v} not in enum {e:?}"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return Err(format!("{v} != const {c}"));
        }
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{v} is not of type {types:?}"));
        }
    }
    match v {
        Value::Object(o) => {
            let empty = serde_json::Map::new();
            let props = s.get("properties").and_then(Value::as_object).unwrap_or(&empty);
            for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !o.contains_key(r.as_str().unwrap()) {
                    return Err(format!("missing required {r} in {v}"));
                }
            }
            for (k, x) in o {
                match props.get(k) {
                    Some(ps) => validate(root, ps, x)?,
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(true)) => {}
                        Some(a @ Value::Object(_)) => validate(root, a, x)?,
                        _ if s.get("type").is_none() && props.is_empty() => {}
                        _ => return Err(format!("additional property {k} in {v}")),
                    },
                }
            }
        }
        Value::Array(a) => {
            if let Some(m) = s.get("minItems").and_then(Value::as_u64) {
                if (a.len() as u64) < m {
                    return Err(format!("fewer than {m} items: {v}"));
                }
            }
            if let Some(m) = s.get("maxItems").and_then(Value::as_u64) {
                if a.len() as u64 > m {
                    return Err(format!("more than {m} items: {v}"));
                }
            }
            if let Some(items) = s.get("items") {
                for x in a {
                    validate(root, items, x)?;
                }
            }
        }
        Value::String(t) => {
            let n = t.chars().count() as u64;
            if s.get("minLength").and_then(Value::as_u64).is_some_and(|m| n < m) || s.get("maxLength").and_then(Value::as_u64).is_some_and(|m| n > m) {
                return Err(format!("string length {n} out of bounds: {v}"));
            }
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------- the automaton on hand-written text

#[test]
fn json_mode_accepts_valid_objects() {
    let c = Constraint::json_object();
    for text in [
        r#"{}"#,
        r#"{"a":1}"#,
        r#" { "a" : true , "b" : [ ] }"#,
        "{\n  \"a\": [1, 2, {\"b\": null}],\n  \"c\": false\n}",
        r#"{"s":"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#,
        r#"{"n":-0.5e+10,"m":0,"k":1E5,"j":-0,"i":12.25e-3,"h":[0.0,-1,1e0]}"#,
        "{\"u\":\"h\u{e9}llo \u{1F600} \u{4e2d}\"}",
        r#"{"a":{"b":{"c":{"d":[[[["deep"]]]]}}}}"#,
        r#"{"dup":1,"dup":2}"#,
        r#"{"big":-123456789012345678,"e":1.5e-99}"#,
    ] {
        assert!(valid(&c, text.as_bytes()), "should accept {text}");
        let v: Value = serde_json::from_str(text).unwrap();
        assert!(v.is_object());
    }
}

#[test]
fn json_mode_rejects_invalid_text() {
    let c = Constraint::json_object();
    for text in [
        &b"[]"[..],
        b"1",
        b"\"a\"",
        br#"{"a":01}"#,
        br#"{"a":-01}"#,
        br#"{"a":1,}"#,
        br#"{"a":[1,]}"#,
        br#"{,}"#,
        br#"{"a":-}"#,
        br#"{"a":1.}"#,
        br#"{"a":.5}"#,
        br#"{"a":1e}"#,
        br#"{"a":+1}"#,

        br#"{"a":"\x"}"#,
        br#"{"a":"\u12"}"#,
        br#"{"a":"\ud800"}"#,
        br#"{"a":"\ud800\u0041"}"#,
        br#"{"a":"\udc00"}"#,
        b"{\"a\":\"\xff\"}",
        b"{\"a\":\"\xc0\xaf\"}",
        b"{\"a\":\"\xed\xa0\x80\"}",
        b"{\"a\":\"\xe2\x82\"}",
        b"{\"a\":\"line\nbreak\"}",
        br#"{'a':1}"#,
        br#"{"a" 1}"#,
        br#"{"a":tru}"#,
        br#"{"a":nul}"#,
        br#"{"a":True}"#,
        br#"{a:1}"#,
        br#"{}x"#,
        br#"{} {}"#,
        br#"{}}"#,
        br#"{"a":1"#,
    ] {
        assert!(!valid(&c, text), "should reject {}", String::from_utf8_lossy(text));
        assert!(serde_json::from_slice::<serde_json::Map<String, Value>>(text).is_err(), "serde agrees: {}", String::from_utf8_lossy(text));
    }
}

#[test]
fn numbers_are_bounded_so_that_they_fit_i64_and_finite_f64() {
    let c = Constraint::json_object();
    assert!(valid(&c, br#"{"a":123456789012345678,"b":1e99,"c":-1.5E-99}"#));
    assert!(!valid(&c, br#"{"a":1e100}"#));
    assert!(!valid(&c, br#"{"a":1234567890123456789}"#));
    // serde_json reads "-0" as a float, so an integer may not be written so.
    let i = Constraint::json_schema(&json!({"type": "integer"})).unwrap();
    assert!(valid(&i, b"0") && valid(&i, b"-7"));
    assert!(!valid(&i, b"-0"));
}

#[test]
fn bytes_of_one_character_may_come_in_separate_tokens() {
    let mut c = Constraint::json_object();
    for piece in [&b"{\"a\":\"caf"[..], b"\xc3", b"\xa9 \xf0\x9f", b"\x98", b"\x80\\u00", b"e9\\ud83d", b"\\ude00\"}"] {
        c.accept_bytes(piece).unwrap();
    }
    assert!(c.is_complete());
    // A bad continuation byte is refused and leaves the state as it was.
    let mut c = Constraint::json_object();
    c.accept_bytes(b"{\"a\":\"\xe2\x82").unwrap();
    assert!(c.accept_bytes(b"A").is_err());
    c.accept_bytes(b"\xac\"}").unwrap();
    assert!(c.is_complete());
}

#[test]
fn nesting_deeper_than_the_limit_is_a_typed_error() {
    let c = Constraint::json_object().with_max_depth(4);
    assert!(valid(&c, br#"{"a":{"b":[{"d":1}]}}"#));
    let mut c2 = c.clone();
    let err = c2.accept_bytes(br#"{"a":{"b":[{"d":["#).unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("nesting deeper than 4"), "{err}");
    // The default limit (32) is enforced too.
    let mut d = Constraint::json_object();
    let mut text = b"{\"a\":".to_vec();
    text.extend(std::iter::repeat_n(b'[', 31));
    d.accept_bytes(&text).unwrap();
    assert!(d.accept_bytes(b"[").unwrap_err().to_string().contains("nesting"));
}

#[test]
fn whitespace_runs_are_bounded() {
    let c = Constraint::json_object();
    assert!(valid(&c, format!("{{{}}}", " ".repeat(8)).as_bytes()));
    assert!(!valid(&c, format!("{{{}}}", " ".repeat(9)).as_bytes()));
    assert!(!valid(&c, b"{} "), "nothing after the value is complete");
    // Spaces inside strings are content, not whitespace.
    assert!(valid(&c, format!("{{\"a\":\"{}\"}}", " ".repeat(50)).as_bytes()));
    let wide = Constraint::json_object().with_max_whitespace(20);
    assert!(valid(&wide, format!("{{{}}}", "\n ".repeat(10)).as_bytes()));
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer"},
            "member": {"type": "boolean"},
            "role": {"enum": ["admin", "user", "guest"]},
            "nick": {"type": ["string", "null"]}
        },
        "required": ["name", "age", "member", "role"]
    })
}

fn list_schema() -> Value {
    json!({
        "type": "array",
        "minItems": 2,
        "maxItems": 4,
        "items": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "score": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3}},
            "required": ["id", "score"],
            "additionalProperties": false
        }
    })
}

fn tree_schema() -> Value {
    json!({
        "$defs": {
            "leaf": {"type": "object", "properties": {"value": {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 8}, {"const": "none"}]}}, "required": ["value"]},
            "node": {
                "type": "object",
                "properties": {"kind": {"const": "node"}, "children": {"type": "array", "items": {"$ref": "#/$defs/child"}, "maxItems": 3}},
                "required": ["kind", "children"]
            },
            "child": {"anyOf": [{"$ref": "#/$defs/leaf"}, {"$ref": "#/$defs/node"}, {"type": "null"}]}
        },
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/node"}, "version": {"enum": [1, 12, 2.5, "x", true, null]}},
        "required": ["root", "version"],
        "additionalProperties": false
    })
}

#[test]
fn schema_mode_accepts_and_rejects_by_the_schema() {
    let p = Constraint::json_schema(&person_schema()).unwrap();
    assert!(valid(&p, br#"{"name":"Ann","age":31,"member":true,"role":"user"}"#));
    assert!(valid(&p, br#"{ "role": "guest", "nick": null, "member": false, "age": -7, "name": "\u00e9" }"#));
    assert!(valid(&p, br#"{"nick":"a","name":"B","age":0,"member":true,"role":"admin"}"#));
    for bad in [
        &br#"{"name":"Ann","age":31,"member":true}"#[..], // role missing
        br#"{"name":"Ann","age":31.5,"member":true,"role":"user"}"#,
        br#"{"name":"Ann","age":31,"member":1,"role":"user"}"#,
        br#"{"name":"Ann","age":31,"member":true,"role":"root"}"#,
        br#"{"name":"","age":31,"member":true,"role":"user"}"#, // minLength
        br#"{"name":"Ann Ann Ann Ann","age":31,"member":true,"role":"user"}"#, // maxLength
        br#"{"name":"Ann","age":31,"member":true,"role":"user","x":1}"#, // additional
        br#"{"name":"Ann","name":"Bob","age":31,"member":true,"role":"user"}"#, // duplicate
        br#"{"name":"Ann","age":1e3,"member":true,"role":"user"}"#,
        br#"{"name":"Ann","age":31,"member":true,"role":"user","nick":3}"#,
    ] {
        assert!(!valid(&p, bad), "should reject {}", String::from_utf8_lossy(bad));
    }

    let l = Constraint::json_schema(&list_schema()).unwrap();
    assert!(valid(&l, br#"[{"id":1,"score":0.5},{"score":-2e3,"id":2,"tags":["a","bb"]}]"#));
    assert!(!valid(&l, br#"[{"id":1,"score":0.5}]"#), "minItems");
    assert!(!valid(&l, br#"[{"id":1,"score":1},{"id":1,"score":1},{"id":1,"score":1},{"id":1,"score":1},{"id":1,"score":1}]"#), "maxItems");
    assert!(!valid(&l, br#"[{"id":1,"score":1},{"id":1,"score":1,"tags":["toolong"]}]"#));

    let t = Constraint::json_schema(&tree_schema()).unwrap();
    for good in [
        &br#"{"root":{"kind":"node","children":[]},"version":1}"#[..],
        br#"{"version":12,"root":{"kind":"node","children":[null,{"value":"none"},{"kind":"node","children":[{"value":"nonesuch"},{"value":3}]}]}}"#,
        br#"{"root":{"kind":"node","children":[{"value":-1.5}]},"version":2.5}"#,
        br#"{"root":{"kind":"node","children":[]},"version":null}"#,
    ] {
        let mut c = t.clone();
        c.accept_bytes(good).unwrap();
        assert!(c.is_complete(), "should accept {}", String::from_utf8_lossy(good));
        validate(&tree_schema(), &tree_schema(), &serde_json::from_slice(good).unwrap()).unwrap();
    }
    for bad in [
        &br#"{"root":{"kind":"leaf","children":[]},"version":1}"#[..],
        br#"{"root":{"kind":"node","children":[{"value":"ninechars"}]},"version":1}"#,
        br#"{"root":{"kind":"node","children":[]},"version":2}"#,
        br#"{"root":{"kind":"node","children":[]},"version":123}"#,
        br#"{"root":{"kind":"node","children":[1]},"version":1}"#,
    ] {
        assert!(!valid(&t, bad), "should reject {}", String::from_utf8_lossy(bad));
    }
    // A number enum value that is a prefix of another (1 and 12) ends where the text says.
    let mut c = t.clone();
    c.accept_bytes(br#"{"root":{"kind":"node","children":[]},"version":1"#).unwrap();
    assert!(!c.is_complete());
    c.accept_bytes(b"2}").unwrap();
    assert!(c.is_complete());

    // A bare top-level number is complete while it could still go on.
    let mut n = Constraint::json_schema(&json!({"type": "integer"})).unwrap();
    n.accept_bytes(b"-12").unwrap();
    assert!(n.is_complete());
    assert!(n.accept_bytes(b".").is_err());
}

#[test]
fn unsupported_schema_keywords_are_typed_errors() {
    for (schema, kw) in [
        (json!({"type": "string", "pattern": "^a+$"}), "pattern"),
        (json!({"type": "string", "format": "date-time"}), "format"),
        (json!({"type": "number", "minimum": 0}), "minimum"),
        (json!({"type": "integer", "multipleOf": 2}), "multipleOf"),
        (json!({"allOf": [{"type": "string"}]}), "allOf"),
        (json!({"not": {"type": "string"}}), "not"),
        (json!({"type": "array", "prefixItems": [{"type": "string"}]}), "prefixItems"),
        (json!({"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {}}), "patternProperties"),
        (json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true}), "additionalProperties"),
        (json!({"$ref": "https://example.com/schema"}), "$ref"),
        (json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}), "required"),
    ] {
        let err = Constraint::json_schema(&schema).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{schema}");
        assert!(err.to_string().contains(&format!("'{kw}'")), "{schema}: {err}");
    }
    // Schemas that admit no value, or loop without structure, are refused too.
    for schema in [
        json!({"$defs": {"a": {"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}, "required": ["x"]}}, "$ref": "#/$defs/a"}),
        json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"}),
        json!({"type": "bogus"}),
        json!(false),
    ] {
        assert_eq!(Constraint::json_schema(&schema).unwrap_err().code(), "invalid_argument", "{schema}");
    }
    // Annotations are fine.
    Constraint::json_schema(&json!({"title": "T", "description": "d", "type": "boolean", "default": true})).unwrap();
}

// ---------------------------------------------------------------- generation on the fixtures

struct Out {
    text: Vec<u8>,
    tokens: usize,
    eog: bool,
    complete: bool,
}

/// Drive the model token by token: mask, pick (greedy or sampled), accept, forward.
fn generate(e: &Engine<Cpu>, mut c: Constraint, prompt: &str, seed: Option<u64>, budget: usize) -> Out {
    let ix = e.token_index();
    let prompt = e.tokenize_prompt(prompt);
    let mut seq = e.new_sequence(512).unwrap();
    let mut logits = e.prefill(&mut seq, &prompt, 16).unwrap();
    c.set_token_budget(Some(budget));
    let mut sampler = seed.map(|s| Sampler::new(SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: s, ..Default::default() }));
    let mut history = prompt.clone();
    let mut text = Vec::new();
    let mut tokens = 0;
    loop {
        let mut l = logits.clone();
        c.mask(&ix, &mut l);
        let id = match sampler.as_mut() {
            Some(s) => s.sample(&l, &history),
            None => argmax(&l),
        };
        assert!(l[id as usize].is_finite(), "picked a masked token {id} after {:?}", String::from_utf8_lossy(&text));
        if e.tokenizer.is_eog(id) {
            return Out { text, tokens, eog: true, complete: c.is_complete() };
        }
        c.accept(&ix, id).unwrap();
        text.extend(e.tokenizer.token_to_piece(id, false));
        tokens += 1;
        history.push(id);
        if tokens > budget {
            return Out { text, tokens, eog: false, complete: c.is_complete() };
        }
        logits = e.model.forward(&mut seq, &[id], Logits::Last).unwrap();
    }
}

const FIXTURES: [&str; 2] = ["spm-q4_0.gguf", "bpe-q4_k_m.gguf"];
const SEEDS: [Option<u64>; 6] = [None, Some(1), Some(2), Some(3), Some(42), Some(0xdead_beef)];

fn check_runs(c: &Constraint, schema: Option<&Value>, budget: usize) {
    for file in FIXTURES {
        let e = common::load(&common::fixture_bytes(file), 1 << 20);
        for seed in SEEDS {
            let out = generate(&e, c.clone(), "Answer in JSON: {", seed, budget);
            let text = String::from_utf8(out.text.clone()).unwrap_or_else(|_| panic!("{file} {seed:?}: not UTF-8: {:?}", out.text));
            assert!(out.complete && out.eog, "{file} {seed:?}: stopped without a complete value after {} tokens: {text}", out.tokens);
            assert!(out.tokens <= budget, "{file} {seed:?}: {} tokens", out.tokens);
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{file} {seed:?}: {err}: {text}"));
            match schema {
                None => assert!(v.is_object(), "{file} {seed:?}: {text}"),
                Some(s) => validate(s, s, &v).unwrap_or_else(|err| panic!("{file} {seed:?}: {err}")),
            }
            println!("{file} seed {seed:?}: {} tokens: {text}", out.tokens);
        }
    }
}

#[test]
fn json_mode_output_always_parses_as_an_object() {
    check_runs(&Constraint::json_object(), None, 200);
}

#[test]
fn json_mode_closes_out_within_a_small_budget() {
    check_runs(&Constraint::json_object(), None, 12);
}

#[test]
fn schema_mode_output_always_validates() {
    for schema in [person_schema(), list_schema(), tree_schema()] {
        check_runs(&Constraint::json_schema(&schema).unwrap(), Some(&schema), 200);
    }
}

// ---------------------------------------------------------------- mask speed on a 128k vocabulary

/// A synthetic Llama-3-sized vocabulary: every byte, then words, punctuation runs, numbers and
/// some non-ASCII, most with a leading space, as byte-level BPE vocabularies look.
fn synthetic_pieces(n: usize) -> Vec<Option<Vec<u8>>> {
    let mut pieces: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
    let mut rng = hearth::sampler::Rng::new(7);
    let letters = b"etaoinshrdlucmfwypvbgkjqxz";
    let punct: [&[u8]; 12] = [b"{\"", b"\":", b"\",", b"\"}", b"},", b"[", b"]", b"\": \"", b"\n", b"  ", b"\\n", b"\":\""];
    let utf8 = ["é", "ü", "中", "文", "😀", "ñ", "ß", "л", "и"];
    while pieces.len() < n {
        let r = rng.next_u64();
        let mut p = Vec::new();
        match r % 10 {
            0 => p.extend_from_slice(punct[(r >> 8) as usize % punct.len()]),
            1 => p.extend((0..1 + (r >> 8) % 4).map(|i| b'0' + ((r >> (12 + 4 * i)) % 10) as u8)),
            2 => {
                p.push(b' ');
                p.extend(utf8[(r >> 8) as usize % utf8.len()].as_bytes());
            }
            _ => {
                if r >> 60 < 11 {
                    p.push(b' ');
                }
                let len = 1 + (rng.next_u64() % 9) as usize;
                for _ in 0..len {
                    p.push(letters[((rng.next_u64() % 676) as f64).sqrt() as usize]);
                }
            }
        }
        pieces.push(Some(p));
    }
    pieces.push(None); // an EOG id
    pieces
}

#[test]
fn mask_timing_on_a_128k_vocabulary() {
    let pieces = synthetic_pieces(128_255);
    let eog = (pieces.len() - 1) as u32;
    let t = Instant::now();
    let ix = TokenIndex::from_pieces(pieces, vec![eog]);
    println!("index of {} tokens: {} trie nodes, built in {:?}", ix.vocab_size(), ix.trie_nodes(), t.elapsed());
    let schema = person_schema();
    for (what, mut c, prefix) in [
        ("json start", Constraint::json_object(), &b""[..]),
        ("json after {", Constraint::json_object(), b"{"),
        ("json in string", Constraint::json_object(), b"{\"key\":\"some text"),
        ("json in number", Constraint::json_object(), b"{\"key\":12"),
        ("schema at key", Constraint::json_schema(&schema).unwrap(), b"{\"name\":\"A\","),
        ("schema in string", Constraint::json_schema(&schema).unwrap(), b"{\"name\":\"Ab"),
        ("schema budgeted", Constraint::json_schema(&schema).unwrap(), b"{\"name\":\"Ab"),
    ] {
        c.accept_bytes(prefix).unwrap();
        if what.contains("budget") {
            c.set_token_budget(Some(40));
        }
        let mut logits = vec![0.0f32; ix.vocab_size()];
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            c.mask(&ix, &mut logits);
        }
        let per = t.elapsed() / reps;
        let allowed = logits.iter().filter(|l| l.is_finite()).count();
        println!("mask {what:>16}: {per:?} per call, {allowed} tokens allowed");
        assert!(allowed > 0);
    }
}

#[test]
fn the_mask_allows_exactly_the_tokens_that_accept_takes() {
    let pieces = synthetic_pieces(8_000);
    let eog = (pieces.len() - 1) as u32;
    let ix = TokenIndex::from_pieces(pieces, vec![eog]);
    let schema = tree_schema();
    for (mut c, prefix) in [
        (Constraint::json_object(), &b""[..]),
        (Constraint::json_object(), b"{\"a\":[1,"),
        (Constraint::json_object(), b"{\"a\":\"x\xe4\xb8"),
        (Constraint::json_object(), b"{\"a\":-0.5e"),
        (Constraint::json_object(), b"{\"a\":{}"),
        (Constraint::json_schema(&schema).unwrap(), b"{\"root\":{\"kind\":\"node\",\"children\":[{"),
        (Constraint::json_schema(&schema).unwrap(), b"{\"version\":1"),
        (Constraint::json_schema(&person_schema()).unwrap(), b"{\"role\":\"ad"),
    ] {
        c.accept_bytes(prefix).unwrap();
        let allowed = c.allowed(&ix);
        let mut n = 0;
        for id in 0..ix.vocab_size() as u32 {
            let Some(p) = ix.piece(id) else { continue };
            let ok = c.clone().accept_bytes(p).is_ok();
            assert_eq!(allowed[id as usize], ok, "after {:?}: token {:?}", String::from_utf8_lossy(prefix), String::from_utf8_lossy(p));
            n += ok as usize;
        }
        assert!(n > 0);
        assert_eq!(allowed[eog as usize], c.is_complete());
    }
}
