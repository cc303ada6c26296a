//! Chat templates: the GGUF's own `tokenizer.chat_template` (Jinja, rendered with minijinja the way
//! Hugging Face renders it), or a built-in fallback chosen from the vocabulary (Llama 3 header
//! tokens, ChatML, else Llama 2 `[INST]`).

pub mod json;
mod python;
pub mod tools;

use crate::error::{HearthError, Result};
use crate::gguf::Metadata;
use crate::tokenizer::Tokenizer;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Deserializer, Serialize};
pub use tools::{ToolCall, ToolRequest, ToolSupport};

/// A message of the conversation, as OpenAI's chat API has it: an assistant message may carry
/// `tool_calls`, a `tool` message answers one (`tool_call_id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// Text (null reads as empty: an assistant message with calls and no text).
    #[serde(default, deserialize_with = "text_or_null")]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn text_or_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None, name: None }
    }

    /// The message as a template sees it: `role` and `content`, and only when present
    /// `tool_calls` (arguments parsed, as Hugging Face passes them), `tool_call_id` and `name`
    /// (templates test `'tool_calls' in message`). An assistant message with calls and no text
    /// has `content` none.
    fn template_value(&self) -> Value {
        let content = if self.content.is_empty() && !self.tool_calls.is_empty() { Value::from(()) } else { Value::from(self.content.as_str()) };
        let mut pairs: Vec<(&str, Value)> = vec![("role", Value::from(self.role.as_str())), ("content", content)];
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(|c| {
                let function = Value::from_pairs([("name", Value::from(c.function.name.as_str())), ("arguments", c.arguments_json().to_value())]);
                Value::from_pairs([("id", Value::from(c.id.as_str())), ("type", Value::from(c.kind.as_str())), ("function", function)])
            });
            pairs.push(("tool_calls", Value::from(calls.collect::<Vec<_>>())));
        }
        if let Some(id) = &self.tool_call_id {
            pairs.push(("tool_call_id", Value::from(id.as_str())));
        }
        if let Some(n) = &self.name {
            pairs.push(("name", Value::from(n.as_str())));
        }
        Value::from_pairs(pairs)
    }

    /// Bytes of text the message carries (for the rendering's limits).
    fn bytes(&self) -> usize {
        self.role.len()
            + self.content.len()
            + self.tool_calls.iter().map(|c| c.id.len() + c.function.name.len() + c.function.arguments.len()).sum::<usize>()
            + self.tool_call_id.as_ref().map_or(0, |s| s.len())
            + self.name.as_ref().map_or(0, |s| s.len())
    }
}

/// The date `strftime_now` formats: passed in by the caller (the engine core has no clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Llama2,
    Llama3,
    /// Llama 4's turns (`<|header_start|>`, `<|eot|>`), as llama.cpp's built-in `llama4` format.
    Llama4,
    ChatMl,
}

impl Builtin {
    fn source(self) -> &'static str {
        match self {
            Builtin::Llama2 => include_str!("templates/llama2.jinja"),
            Builtin::Llama3 => include_str!("templates/llama3.jinja"),
            Builtin::Llama4 => include_str!("templates/llama4.jinja"),
            Builtin::ChatMl => include_str!("templates/chatml.jinja"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ChatTemplate {
    pub source: String,
    /// Which fallback, when the model carries no template.
    pub builtin: Option<Builtin>,
    pub bos_token: String,
    pub eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Self {
        Self { source: source.into(), builtin: None, bos_token: bos_token.into(), eos_token: eos_token.into() }
    }

    pub fn builtin(b: Builtin, bos_token: &str, eos_token: &str) -> Self {
        Self { builtin: Some(b), ..Self::new(b.source(), bos_token, eos_token) }
    }

    /// The model's own template, else the fallback its vocabulary calls for.
    pub fn for_model(md: &Metadata, tok: &Tokenizer) -> Result<Self> {
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        let (bos, eos) = (text(tok.bos()), text(tok.eos()));
        if let Some(src) = md.opt_str("tokenizer.chat_template")? {
            return Ok(Self::new(src, &bos, &eos));
        }
        let has = |t: &str| (0..tok.vocab_size() as u32).any(|i| tok.token_text(i) == Some(t));
        let b = if has("<|header_start|>") {
            Builtin::Llama4
        } else if has("<|start_header_id|>") {
            Builtin::Llama3
        } else if has("<|im_start|>") {
            Builtin::ChatMl
        } else {
            Builtin::Llama2
        };
        Ok(Self::builtin(b, &bos, &eos))
    }

    /// Render a conversation; `add_generation_prompt` opens the assistant's turn. The template
    /// is code from the model file, so the rendering runs within `RenderLimits::for_input`: a
    /// template that runs too long or writes too much fails with `HearthError::ChatTemplate`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool, today: Date) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt, today)
    }

    /// Whether this template renders tools itself, and the form its model calls them in.
    pub fn tool_support(&self) -> ToolSupport {
        ToolSupport::of(&self.source)
    }

    /// `render` with the request's tools (`tools::ToolRequest`): a template that renders tools
    /// gets them as `tools` (whatever the `tool_choice`, as OpenAI shows them), and the
    /// conversation's calls and results as they are; any other gets them injected in the Hermes
    /// form (`tools::inject`). When a call is forced, the prompt ends with the form's opening.
    pub fn render_with_tools(&self, messages: &[ChatMessage], tools: Option<&ToolRequest>, add_generation_prompt: bool, today: Date) -> Result<String> {
        let support = self.tool_support();
        let has_tool_turns = messages.iter().any(|m| !m.tool_calls.is_empty() || m.role == "tool");
        let injected;
        let messages = if !support.native && (has_tool_turns || tools.is_some_and(|t| t.offered())) {
            injected = tools::inject(messages, tools);
            &injected[..]
        } else {
            messages
        };
        let offered = tools.filter(|t| support.native && t.offered());
        let mut limits = RenderLimits::for_input(messages, &self.bos_token, &self.eos_token);
        if let Some(t) = offered {
            limits = limits.grow(t.bytes());
        }
        let (mut text, _) = self.render_within(messages, offered, add_generation_prompt, today, limits)?;
        if add_generation_prompt && tools.is_some_and(|t| t.offered() && t.forced().is_some()) {
            text.push_str(support.format.forced_prefix());
        }
        Ok(text)
    }

    /// `render` under the given limits; also returns the steps (minijinja fuel) it took.
    fn render_within(&self, messages: &[ChatMessage], tools: Option<&ToolRequest>, add_generation_prompt: bool, today: Date, limits: RenderLimits) -> Result<(String, u64)> {
        let messages = Value::from(messages.iter().map(ChatMessage::template_value).collect::<Vec<Value>>());
        self.render_value(messages, tools, Vec::new(), add_generation_prompt, today, limits)
    }

    /// Render a conversation given as the template's `messages` value, with more variables
    /// (`extra`: Llama Guard's `categories`, `excluded_category_keys`), within limits sized for
    /// `input_bytes` of conversation and options. `crate::guard` renders moderation prompts so.
    pub(crate) fn render_extra(&self, messages: Value, count: usize, input_bytes: usize, extra: Vec<(&'static str, Value)>, today: Date) -> Result<String> {
        let limits = RenderLimits::for_bytes(count, input_bytes + self.bos_token.len() + self.eos_token.len());
        Ok(self.render_value(messages, None, extra, true, today, limits)?.0)
    }

    fn render_value(
        &self,
        messages: Value,
        tools: Option<&ToolRequest>,
        extra: Vec<(&'static str, Value)>,
        add_generation_prompt: bool,
        today: Date,
        limits: RenderLimits,
    ) -> Result<(String, u64)> {
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks on.
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.map_err(|e| HearthError::ChatTemplate(e.to_string()))?);
        env.set_fuel(Some(limits.steps));
        env.set_unknown_method_callback(python::unknown_method);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", move |fmt: String| python::strftime(&fmt, today));
        env.add_filter("tojson", python::tojson);
        let mut out = CappedWriter { buf: Vec::new(), limit: limits.output_bytes, over: false };
        let fail = |e: Error, over: bool| {
            HearthError::ChatTemplate(if e.kind() == ErrorKind::OutOfFuel {
                format!(
                    "the model's chat template ran too long (over {} steps); the template in the model file is broken or hostile",
                    limits.steps
                )
            } else if over {
                format!(
                    "the model's chat template produced more than {} bytes; the template in the model file is broken or hostile",
                    limits.output_bytes
                )
            } else {
                python::describe(&e)
            })
        };
        let tmpl = env.template_from_str(&self.source).map_err(|e| fail(e, false))?;
        let mut ctx = vec![
            ("messages", messages),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ];
        // As transformers passes it: the list, or None when no tools are offered.
        ctx.push(("tools", tools.map_or(Value::from(()), ToolRequest::template_value)));
        ctx.extend(extra);
        let ctx = Value::from_pairs(ctx);
        let state = tmpl.render_captured_to(ctx, &mut out);
        let steps = match &state {
            Ok(s) => s.state().fuel_levels().map_or(0, |(used, _)| used),
            Err(_) => 0,
        };
        state.map_err(|e| fail(e, out.over))?;
        // minijinja writes whole `str`s, so the bytes are UTF-8.
        let text = String::from_utf8(out.buf).map_err(|e| HearthError::ChatTemplate(e.to_string()))?;
        Ok((text, steps))
    }
}

/// How far one rendering of a chat template may go. Real templates are a few dozen lines that loop
/// once or twice over the messages; a hostile one can loop 10^10 times (`range` allows 100 000
/// items per loop), double a string 64 times or recurse. minijinja's fuel (`steps` here) counts
/// one per instruction and one per 64 bytes the template creates (strings, lists, output; checked
/// before a large allocation), so the step limit bounds both time and memory (64 bytes a step).
/// Recursion is bounded by minijinja's own recursion limit (500 levels, where a macro call counts
/// double the depth so far; see `set_recursion_limit`), the prompt's size by `output_bytes`.
///
/// What minijinja 3.1 left unpaid is paid in our patched copy (vendor/README.md): lazily
/// concatenated and repeated lists are charged as if materialized, formatting a container pays
/// from the fuel as it goes, comparing and hashing visit at most 65 536 items and 256 levels, and
/// nested containers are freed from a queue rather than recursively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RenderLimits {
    /// minijinja fuel.
    steps: u64,
    /// Bytes of rendered prompt.
    output_bytes: usize,
}

impl RenderLimits {
    /// Steps for any conversation. The real templates (tests/golden/templates, templates/) take at
    /// most 260 steps on the conversations of tests/golden/chat-templates.json; this is ~770x that.
    /// A hostile loop uses it up in ~4 ms natively, ~45 ms in wasm; it lets a template create at
    /// most ~13 MB.
    const BASE_STEPS: u64 = 200_000;
    /// Steps per message and per byte of the conversation, so that long chats render: on a
    /// 202-message, 415 kB conversation the real templates take at most 44 656 steps (~50 a
    /// message, and each pass over a message's text costs 1/64 step a byte); these give 120x that
    /// (`limits_leave_real_templates_a_wide_margin` checks both margins).
    const STEPS_PER_MESSAGE: u64 = 5_000;
    const STEPS_PER_INPUT_BYTE: u64 = 10;
    /// A prompt is the conversation plus the template's own text (the largest real one adds
    /// 1.3 kB): 1 MiB is far more than any template writes of its own, 4x the input allows for
    /// templates that repeat a message. The context size bounds the prompt that is kept anyway.
    const BASE_OUTPUT: usize = 1 << 20;
    const OUTPUT_PER_INPUT_BYTE: usize = 4;

    /// The limits for rendering `messages`: fixed, plus room that grows with the conversation so
    /// that long chats are not refused.
    fn for_input(messages: &[ChatMessage], bos: &str, eos: &str) -> Self {
        let bytes = messages.iter().map(ChatMessage::bytes).sum::<usize>() + bos.len() + eos.len();
        Self::for_bytes(messages.len(), bytes)
    }

    /// The limits with room for `bytes` more of input (the tools' definitions).
    fn grow(self, bytes: usize) -> Self {
        let more = Self::for_bytes(0, bytes);
        Self {
            steps: self.steps.saturating_add(more.steps - Self::BASE_STEPS),
            output_bytes: self.output_bytes.saturating_add(more.output_bytes - Self::BASE_OUTPUT),
        }
    }

    fn for_bytes(messages: usize, bytes: usize) -> Self {
        Self {
            steps: Self::BASE_STEPS
                .saturating_add(Self::STEPS_PER_MESSAGE.saturating_mul(messages as u64))
                .saturating_add(Self::STEPS_PER_INPUT_BYTE.saturating_mul(bytes as u64)),
            output_bytes: Self::BASE_OUTPUT.saturating_add(Self::OUTPUT_PER_INPUT_BYTE.saturating_mul(bytes)),
        }
    }
}

/// The rendered prompt, refusing to grow past `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("the rendered prompt is too long"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What to do when a conversation no longer fits the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextPolicy {
    /// Fail with `ContextOverflow`.
    Error,
    /// Drop the oldest turns after the system prompt until it fits.
    Shift,
}

/// A conversation rendered and tokenized for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatPrompt {
    pub tokens: Vec<u32>,
    /// Messages left out (oldest first, after the system prompt) to fit the context.
    pub dropped: usize,
}

/// Render and tokenize `messages` so that the prompt plus `reserve` tokens for the reply fit in
/// `n_ctx`. Special-token text in the rendering becomes special tokens; a BOS the template wrote
/// is not doubled by the tokenizer's own.
pub fn build_prompt(
    template: &ChatTemplate,
    tok: &Tokenizer,
    messages: &[ChatMessage],
    today: Date,
    n_ctx: usize,
    reserve: usize,
    policy: ContextPolicy,
) -> Result<ChatPrompt> {
    build_prompt_with_tools(template, tok, messages, None, today, n_ctx, reserve, policy)
}

/// `build_prompt` with the request's tools (`ChatTemplate::render_with_tools`).
#[allow(clippy::too_many_arguments)]
pub fn build_prompt_with_tools(
    template: &ChatTemplate,
    tok: &Tokenizer,
    messages: &[ChatMessage],
    tools: Option<&ToolRequest>,
    today: Date,
    n_ctx: usize,
    reserve: usize,
    policy: ContextPolicy,
) -> Result<ChatPrompt> {
    let keep = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let mut dropped = 0;
    loop {
        let kept: Vec<ChatMessage> = messages[..keep].iter().chain(&messages[keep + dropped..]).cloned().collect();
        let text = template.render_with_tools(&kept, tools, true, today)?;
        let mut tokens = tok.encode(&text, true, true);
        if tokens.len() >= 2 && tok.bos().is_some() && tokens[0] == tokens[1] && Some(tokens[0]) == tok.bos() {
            tokens.remove(0);
        }
        if tokens.len() + reserve <= n_ctx {
            return Ok(ChatPrompt { tokens, dropped });
        }
        // Drop whole turns: a user message and the replies that follow it.
        let rest = &messages[keep + dropped..];
        let turn = 1 + rest.iter().skip(1).take_while(|m| m.role != "user").count();
        if policy == ContextPolicy::Error || turn >= rest.len() {
            return Err(HearthError::ContextOverflow { tokens: tokens.len() + reserve, context: n_ctx });
        }
        dropped += turn;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = Date { year: 2026, month: 11, day: 26 };

    #[test]
    fn builtins_render_their_families() {
        let msgs = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
        let l3 = ChatTemplate::builtin(Builtin::Llama3, "<|begin_of_text|>", "<|eot_id|>").render(&msgs, true, TODAY).unwrap();
        assert_eq!(l3, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        let l2 = ChatTemplate::builtin(Builtin::Llama2, "<s>", "</s>").render(&msgs, true, TODAY).unwrap();
        assert_eq!(l2, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
        let cm = ChatTemplate::builtin(Builtin::ChatMl, "", "").render(&msgs, false, TODAY).unwrap();
        assert_eq!(cm, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn template_errors_are_typed() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "");
        match t.render(&[], true, TODAY) {
            Err(HearthError::ChatTemplate(m)) => assert!(m.contains("roles must alternate"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(ChatTemplate::new("{% for %}", "", "").render(&[], true, TODAY).unwrap_err().code(), "chat_template");
    }

    /// Every golden rendering of tests/golden/chat-templates.json succeeds with 1/100 of its limits,
    /// and so does a long conversation (steps; the output limit only grows 4x with the input).
    #[test]
    fn limits_leave_real_templates_a_wide_margin() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let g: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("tests/golden/chat-templates.json")).unwrap()).unwrap();
        let load = |path: &str, bos: &str, eos: &str| ChatTemplate::new(&std::fs::read_to_string(root.join(path)).unwrap(), bos, eos);
        let mut most = 0;
        let mut templates = Vec::new();
        for c in g["cases"].as_array().unwrap() {
            let s = |k: &str| c[k].as_str().unwrap();
            let t = load(s("template"), s("bos_token"), s("eos_token"));
            let messages: Vec<ChatMessage> =
                c["messages"].as_array().unwrap().iter().map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
            let limits = RenderLimits::for_input(&messages, &t.bos_token, &t.eos_token);
            let tight = RenderLimits { steps: limits.steps / 100, output_bytes: limits.output_bytes / 100 };
            match t.render_within(&messages, None, c["add_generation_prompt"].as_bool().unwrap(), TODAY, tight) {
                Ok((_, steps)) => most = most.max(steps),
                // The conversations the template itself refuses (roles out of order).
                Err(e) => assert!(c.get("error").is_some() && !e.to_string().contains("hostile"), "{}: {e}", s("template")),
            }
            if !templates.contains(&s("template")) {
                templates.push(s("template"));
            }
        }
        eprintln!("golden conversations: at most {most} steps");
        // 202 messages, 415 kB.
        let mut long = vec![ChatMessage::new("system", &"Be brief. ".repeat(200))];
        for i in 0..201 {
            long.push(ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, &format!("{i}: {}", "lorem ipsum ".repeat(170))));
        }
        for path in templates {
            let t = load(path, "<s>", "</s>");
            let limits = RenderLimits::for_input(&long, &t.bos_token, &t.eos_token);
            let (text, steps) = t.render_within(&long, None, true, TODAY, RenderLimits { steps: limits.steps / 100, ..limits }).unwrap();
            eprintln!("long conversation: {steps} steps, {} bytes, limits {limits:?}: {path}", text.len());
        }
    }

    #[test]
    fn helpers_behave_like_python() {
        let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}|{{ {'a': [1, 2.5, none, true], 'é': 'x\"'} | tojson }}|{{ ' x '.strip() }}", "", "");
        assert_eq!(t.render(&[], false, TODAY).unwrap(), "26 Nov 2026|{\"a\": [1, 2.5, null, true], \"é\": \"x\\\"\"}|x");
        let t = ChatTemplate::new("{{ messages[0].content | tojson }}|{{ [[1], {'k': 'v'}] | tojson(indent=2) }}", "", "");
        let json = t.render(&[ChatMessage::new("user", "a\tb\u{1}é\"\\\n\r\u{8}\u{c}z")], false, TODAY).unwrap();
        assert_eq!(json, "\"a\\tb\\u0001é\\\"\\\\\\n\\r\\b\\fz\"|[\n  [\n    1\n  ],\n  {\n    \"k\": \"v\"\n  }\n]");
    }
}
