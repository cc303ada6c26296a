//! Tool calling (src/chat/tools.rs): prompts with tools, calls and results rendered against jinja2
//! (tests/golden/chat-tools.json, scripts/goldens-tools.py: the official Llama 3.1/3.2/3.3, Qwen2.5
//! and Mistral Nemo templates rendering tools themselves, and templates that do not (SmolLM2's,
//! Llama 2's, Phi-3.5's, the built-in fallbacks) given them the Hermes way); recorded replies of
//! each form parsed into content and calls, whole and streamed in pieces
//! (tests/golden/tool-outputs.json); and calls forced by `tool_choice` on the random-weight
//! fixtures over many seeds, which must always parse and validate against the function's schema.

use crate::common;

use hearth::chat::json::Json;
use hearth::chat::tools::{call_constraint, ParsedCall, Reply, ToolFormat, ToolParser, ToolRequest};
use hearth::chat::{build_prompt_with_tools, ChatMessage, ChatTemplate, ContextPolicy, Date};
use hearth::engine::{GenerateOptions, TextOutput};
use hearth::sampler::SamplerConfig;
use serde_json::{json, Value};

const TODAY: Date = Date { year: 2026, month: 11, day: 26 };

fn read_ordered(name: &str) -> Json {
    Json::parse(&std::fs::read_to_string(common::golden_dir().join(name)).unwrap()).unwrap()
}

fn messages_of(j: &Json) -> Vec<ChatMessage> {
    serde_json::from_str(&j.dumps()).unwrap()
}

#[test]
fn renders_tools_like_hugging_face_jinja() {
    let g = read_ordered("chat-tools.json");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(g.get("today").and_then(Json::as_str), Some("2026-11-26"));
    let Some(Json::Arr(cases)) = g.get("cases") else { panic!() };
    assert!(cases.len() >= 60, "{}", cases.len());
    let mut failures = Vec::new();
    let (mut native, mut injected) = (0, 0);
    for c in cases {
        let s = |k: &str| c.get(k).and_then(Json::as_str).unwrap().to_string();
        let path = s("template");
        let t = ChatTemplate::new(&std::fs::read_to_string(root.join(&path)).unwrap(), &s("bos_token"), &s("eos_token"));
        let mode = s("mode");
        assert_eq!(t.tool_support().native, mode == "native", "{path}");
        let messages = messages_of(c.get("messages").unwrap());
        let req = match c.get("tools") {
            Some(Json::Null) | None => None,
            Some(t) => Some(ToolRequest::parse(&t.dumps(), None, None).unwrap()),
        };
        let add = matches!(c.get("add_generation_prompt"), Some(Json::Bool(true)));
        let got = t.render_with_tools(&messages, req.as_ref(), add, TODAY);
        // "none" shows the tools all the same (only the reply is not read for calls).
        if let Some(r) = &req {
            let none = ToolRequest { choice: hearth::chat::tools::ToolChoice::None, ..r.clone() };
            assert_eq!(t.render_with_tools(&messages, Some(&none), add, TODAY).ok(), got.as_ref().ok().cloned(), "{path}");
        }
        let what = format!("{path} / {}", s("conversation"));
        match (&got, c.get("expected").and_then(Json::as_str), c.get("error").and_then(Json::as_str)) {
            (Ok(text), Some(want), _) if text == want => {
                if mode == "native" {
                    native += 1
                } else {
                    injected += 1
                }
            }
            (Err(e), None, Some(msg)) if e.to_string().contains(msg) => {}
            _ => failures.push(format!("{what}:\n  ours:   {got:?}\n  jinja2: {:?}", c.get("expected").or(c.get("error")))),
        }
    }
    assert!(failures.is_empty(), "{} of {} renderings differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    eprintln!("{native} native and {injected} injected renderings match jinja2");
}

/// A forced call ends the prompt with the form's opening; `auto` and `none` do not.
#[test]
fn forced_calls_open_the_call_in_the_prompt() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let load = |p: &str, bos: &str, eos: &str| ChatTemplate::new(&std::fs::read_to_string(root.join(p)).unwrap(), bos, eos);
    let tools = r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#;
    let msgs = [ChatMessage::new("user", "Weather in Paris?")];
    let req = |c: Value| ToolRequest::parse(tools, Some(&c), None).unwrap();
    for (t, ends) in [
        (load("tests/golden/templates/qwen2.5-chatml.jinja", "", "<|im_end|>"), "<|im_start|>assistant\n<tool_call>\n"),
        (load("tests/golden/templates/mistral-nemo.jinja", "<s>", "</s>"), "[/INST][TOOL_CALLS]"),
        (load("tests/golden/templates/llama-3.1.jinja", "<|begin_of_text|>", "<|eot_id|>"), "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        (load("tests/golden/templates/smollm2.jinja", "<|im_start|>", "<|im_end|>"), "<|im_start|>assistant\n<tool_call>\n"),
    ] {
        let forced = t.render_with_tools(&msgs, Some(&req(json!("required"))), true, TODAY).unwrap();
        assert!(forced.ends_with(ends), "{forced:?}");
        assert!(forced.contains("get_weather"));
        let named = t.render_with_tools(&msgs, Some(&req(json!({"type": "function", "function": {"name": "get_weather"}}))), true, TODAY).unwrap();
        assert_eq!(named, forced);
        let auto = t.render_with_tools(&msgs, Some(&req(json!("auto"))), true, TODAY).unwrap();
        assert_eq!(forced.strip_suffix(t.tool_support().format.forced_prefix()), Some(auto.as_str()));
        assert_eq!(t.render_with_tools(&msgs, Some(&req(json!("none"))), true, TODAY).unwrap(), auto);
        assert!(!t.render(&msgs, true, TODAY).unwrap().contains("get_weather"));
    }
}

fn format_of(name: &str) -> ToolFormat {
    match name {
        "llama3" => ToolFormat::Llama3,
        "hermes" => ToolFormat::Hermes,
        "mistral" => ToolFormat::Mistral,
        other => panic!("{other}"),
    }
}

#[test]
fn parses_recorded_replies_of_each_form() {
    let g = common::read_json("tool-outputs.json");
    let names: Vec<String> = g["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    let cases = g["cases"].as_array().unwrap();
    let mut forms = std::collections::BTreeMap::new();
    for c in cases {
        let format = format_of(c["format"].as_str().unwrap());
        let text = c["text"].as_str().unwrap();
        let want = Reply {
            content: c["content"].as_str().unwrap().into(),
            calls: c["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| ParsedCall { name: p[0].as_str().unwrap().into(), arguments: p[1].as_str().unwrap().into() })
                .collect(),
        };
        let what = c["what"].as_str().unwrap();
        assert_eq!(hearth::chat::tools::parse_reply(format, &names, text), want, "{what}");
        for call in &want.calls {
            // Every complete call's arguments are JSON (the cut-off one excepted).
            if !what.contains("cut off") {
                serde_json::from_str::<Value>(&call.arguments).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
        // Streamed in pieces of every size up to 7 characters, the deltas add up to the same.
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for step in 1..=7 {
            let mut p = ToolParser::new(format, names.clone(), false);
            let mut got = Reply::default();
            let mut pieces: Vec<&str> = chars.chunks(step).map(|ch| &text[ch[0].0..ch.last().map_or(0, |l| l.0 + l.1.len_utf8())]).collect();
            pieces.push("");
            for (i, piece) in pieces.iter().enumerate() {
                let d = if i + 1 == pieces.len() { p.finish() } else { p.push(piece) };
                got.content.push_str(&d.content);
                for cd in d.calls {
                    if let Some(n) = cd.name {
                        assert_eq!(cd.index, got.calls.len(), "{what}");
                        got.calls.push(ParsedCall { name: n, arguments: String::new() });
                    }
                    got.calls[cd.index].arguments.push_str(&cd.arguments);
                }
            }
            assert_eq!(got, want, "{what}: streamed in pieces of {step}");
        }
        *forms.entry(c["format"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    eprintln!("recorded replies per form: {forms:?}");
    assert!(forms.len() == 3 && forms.values().all(|&n| n >= 3));
}

/// Marker tokens are control tokens, whose text the output leaves out: the parser is told of them by
/// id (Llama 3's `<|python_tag|>` on the bpe fixture's Llama 3.1 vocabulary). With
/// `parallel_tool_calls: false` only the first call counts.
#[test]
fn marker_tokens_count_by_id() {
    let bytes = common::fixture_bytes("bpe-q8_0.gguf");
    let h = hearth::gguf::parse_header(&bytes).unwrap();
    let tok = hearth::tokenizer::Tokenizer::from_metadata(&h.metadata).unwrap();
    let tag = tok.encode("<|python_tag|>", false, true);
    assert_eq!(tag.len(), 1);
    assert!(tok.is_control(tag[0]) && tok.decode(&tag, false, false).is_empty());
    let tools = r#"[{"type": "function", "function": {"name": "get_weather"}}, {"type": "function", "function": {"name": "now"}}]"#;
    for (parallel, calls) in [(true, 2), (false, 1)] {
        let req = ToolRequest::parse(tools, None, Some(parallel)).unwrap();
        let mut p = ToolParser::for_request(ToolFormat::Llama3, &req, &tok);
        let mut d = p.push_token(tag[0], "");
        assert!(d.is_empty());
        for piece in ["{\"name\": \"get", "_weather\", \"parameters\": {\"city\": \"Oslo\"}}", "; {\"name\": \"now\", \"parameters\": {}}"] {
            let more = p.push(piece);
            d.content += &more.content;
            d.calls.extend(more.calls);
        }
        d.calls.extend(p.finish().calls);
        assert_eq!(d.content, "");
        assert_eq!(d.calls.iter().filter(|c| c.name.is_some()).count(), calls);
        assert_eq!(p.reply().calls.len(), calls);
        assert_eq!(p.reply().calls[0], ParsedCall { name: "get_weather".into(), arguments: "{\"city\": \"Oslo\"}".into() });
    }
    // Without the id the tag is lost and the bare JSON still names a tool: still a call.
    let req = ToolRequest::parse(tools, None, None).unwrap();
    let mut p = ToolParser::for_request(ToolFormat::Llama3, &req, &tok);
    p.push("{\"name\": \"now\", \"parameters\": {}}");
    p.finish();
    assert_eq!(p.reply().calls.len(), 1);
}

// ---- forced calls on the fixtures -------------------------------------------------------------

/// An independent check of a value against the JSON-schema subset the tools below use.
fn validate(root: &Value, s: &Value, v: &Value) -> Result<(), String> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").ok_or(format!("ref {r}"))?;
        return validate(root, &root["$defs"][name], v);
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{v} is not one of {e:?}"));
        }
    }
    let ty = s.get("type").and_then(Value::as_str);
    let ok = match ty {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(t) => return Err(format!("type {t}")),
    };
    if !ok {
        return Err(format!("{v} is not of type {ty:?}"));
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !o.contains_key(r.as_str().unwrap()) {
                return Err(format!("{v} lacks {r}"));
            }
        }
        for (k, x) in o {
            let sub = props.get(k).ok_or(format!("{v}: property {k} is not in the schema"))?;
            validate(root, sub, x)?;
        }
    }
    if let Some(a) = v.as_array() {
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if a.len() as u64 > max {
                return Err(format!("{v}: more than {max} items"));
            }
        }
        for x in a {
            validate(root, &s["items"], x)?;
        }
    }
    if let (Some(t), Some(max)) = (v.as_str(), s.get("maxLength").and_then(Value::as_u64)) {
        if t.chars().count() as u64 > max {
            return Err(format!("{v}: longer than {max}"));
        }
    }
    Ok(())
}

fn fixture_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"]}}},
        {"type": "function", "function": {"name": "search_flights", "parameters": {
            "type": "object",
            "properties": {
                "from": {"type": "string", "maxLength": 8}, "to": {"type": "string", "maxLength": 8},
                "passengers": {"type": "integer"},
                "options": {"type": "object", "properties": {"nonstop": {"type": "boolean"}, "cabins": {"type": "array", "items": {"$ref": "#/$defs/cabin"}, "maxItems": 2}}}},
            "required": ["from", "to", "passengers"],
            "$defs": {"cabin": {"type": "string", "enum": ["economy", "business"]}}}}},
        {"type": "function", "function": {"name": "now", "description": "The time; no parameters"}}
    ])
}

/// Calls forced by `tool_choice` ("required", or each function by name) on the random-weight
/// fixtures, sampled at temperature 1 over many seeds, in every form (a template that renders
/// Llama 3 JSON calls, Qwen's `<tool_call>`, Mistral's `[TOOL_CALLS]`, and the built-in fallbacks
/// given the Hermes form): every reply parses into calls to the allowed functions whose arguments
/// are JSON that validates against the function's schema.
#[test]
fn forced_calls_always_parse_and_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tools = fixture_tools();
    let by_name = |n: &str| tools.as_array().unwrap().iter().find(|t| t["function"]["name"] == n).unwrap()["function"]["parameters"].clone();
    let tools_json = serde_json::to_string(&tools).unwrap();
    let seeds: u64 = std::env::var("HEARTH_TOOL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let messages = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Weather in Paris, and flights to Oslo for two?")];
    let template = |p: &str, bos: &str, eos: &str| ChatTemplate::new(&std::fs::read_to_string(root.join(p)).unwrap(), bos, eos);
    let setups: Vec<(&str, &str, ChatTemplate)> = vec![
        ("bpe-q8_0.gguf", "Llama 3.1 template", template("tests/golden/templates/llama-3.1.jinja", "<|begin_of_text|>", "<|eot_id|>")),
        ("bpe-q8_0.gguf", "Qwen2.5 template", template("tests/golden/templates/qwen2.5-chatml.jinja", "", "<|im_end|>")),
        ("bpe-q8_0.gguf", "Mistral Nemo template", template("tests/golden/templates/mistral-nemo.jinja", "<s>", "</s>")),
        ("bpe-q8_0.gguf", "built-in Llama 3", ChatTemplate::builtin(hearth::chat::Builtin::Llama3, "<|begin_of_text|>", "<|eot_id|>")),
        ("spm-q8_0.gguf", "built-in Llama 2", ChatTemplate::builtin(hearth::chat::Builtin::Llama2, "<s>", "</s>")),
    ];
    let choices = [json!("required"), json!({"type": "function", "function": {"name": "search_flights"}}), json!({"type": "function", "function": {"name": "now"}})];
    let (mut total, mut calls_seen) = (0, 0);
    let mut failures = Vec::new();
    let mut engines = std::collections::HashMap::new();
    for (file, what, t) in &setups {
        let engine = engines.entry(*file).or_insert_with(|| common::load(&common::fixture_bytes(file), 1 << 20));
        let format = t.tool_support().format;
        for choice in &choices {
            let req = ToolRequest::parse(&tools_json, Some(choice), Some(false)).unwrap();
            let allowed: Vec<String> = req.forced().unwrap().iter().map(|t| t.name.clone()).collect();
            let prompt = build_prompt_with_tools(t, &engine.tokenizer, &messages, Some(&req), TODAY, 4096, 96, ContextPolicy::Error).unwrap();
            let constraint = call_constraint(format, &req).unwrap().expect("a forced call has a grammar");
            // One session: every seed after the first reads the prompt from the KV cache.
            let mut session = engine.new_session(4096).unwrap();
            for seed in 0..seeds {
                let opts = GenerateOptions {
                    max_tokens: 96,
                    sampler: SamplerConfig { temperature: 1.0, seed, ..SamplerConfig::default() },
                    constraint: Some(constraint.clone()),
                    ..GenerateOptions::default()
                };
                session.start(engine, &prompt.tokens, &opts).unwrap();
                let mut out = TextOutput::new(&engine.tokenizer, &[]);
                let mut parser = ToolParser::new(format, req.names(), true);
                let mut text = String::new();
                while let Some(id) = session.next(engine).unwrap() {
                    let piece = out.push(id);
                    text.push_str(&piece);
                    parser.push_token(id, &piece);
                }
                let rest = out.finish();
                text.push_str(&rest);
                parser.push(&rest);
                parser.finish();
                let reply = parser.reply();
                total += 1;
                let ok = (|| -> Result<(), String> {
                    if reply.calls.is_empty() || !reply.content.is_empty() {
                        return Err(format!("no call, or content {:?}", reply.content));
                    }
                    for c in &reply.calls {
                        if !allowed.contains(&c.name) {
                            return Err(format!("a call to {} (allowed: {allowed:?})", c.name));
                        }
                        let args: Value = serde_json::from_str(&c.arguments).map_err(|e| format!("arguments {:?}: {e}", c.arguments))?;
                        let schema = by_name(&c.name);
                        let schema = if schema.is_null() { json!({"type": "object", "properties": {}}) } else { schema };
                        validate(&schema, &schema, &args)?;
                    }
                    Ok(())
                })();
                calls_seen += reply.calls.len();
                if let Err(e) = ok {
                    failures.push(format!("{file} / {what} / {choice} / seed {seed}: {e}\n  text: {:?}", text));
                }
                if seed == 0 {
                    eprintln!("{what} / {choice}: {:?}", text);
                }
            }
        }
    }
    eprintln!("{total} forced replies, {calls_seen} calls, {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {total} forced replies failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(total, setups.len() * choices.len() * seeds as usize);
}
