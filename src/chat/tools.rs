//! Tool calling in OpenAI's shape: the request's `tools` and `tool_choice`, assistant messages
//! with `tool_calls` and `tool` messages in the conversation, and the reply parsed back into calls.
//!
//! The model's own chat template renders the tools and the tool messages when it knows how
//! ([`ToolSupport::of`] reads which form it uses from its source: Llama 3.1/3.2/3.3 JSON calls
//! (`{"name": .., "parameters": ..}`, also after `<|python_tag|>`), the ChatML/Hermes/Qwen
//! `<tool_call>` form, Mistral's `[TOOL_CALLS]`). A template that does not render tools gets them
//! the Hermes way instead ([`inject`]): a tools section in the system message, calls in
//! `<tool_call>` tags, results as `<tool_response>` user turns; so every model can call tools,
//! whatever its template.
//!
//! With `tool_choice` "required" or a named function, the prompt ends with the form's opening
//! (`<tool_call>\n`, `[TOOL_CALLS]`) and the reply is constrained by a grammar
//! ([`call_constraint`]) to a call whose arguments match the function's JSON schema.
//!
//! [`ToolParser`] reads the reply as it streams: text that is not a call is content, a call is
//! reported once its function's name is known, then its arguments as they arrive (OpenAI's
//! `delta.tool_calls`); text that may still turn out to start a call is held back until it is
//! known not to.

use super::json::Json;
use super::ChatMessage;
use crate::error::{HearthError, Result};
use crate::grammar::Constraint;
use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Deserializer, Serialize};

/// An assistant message's call, as OpenAI writes it: `{id, type: "function", function: {name,
/// arguments}}`, the arguments JSON text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text (OpenAI's); an object given instead is taken as its JSON.
    #[serde(default = "empty_object", deserialize_with = "arguments_text")]
    pub arguments: String,
}

fn function_kind() -> String {
    "function".into()
}

fn empty_object() -> String {
    "{}".into()
}

fn arguments_text<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(match Json::deserialize(d)? {
        Json::Str(s) => s,
        other => other.dumps(),
    })
}

impl ToolCall {
    pub fn new(id: &str, name: &str, arguments: &str) -> Self {
        Self { id: id.into(), kind: function_kind(), function: FunctionCall { name: name.into(), arguments: arguments.into() } }
    }

    /// The arguments as the template sees them: the parsed JSON (Hugging Face templates print
    /// `arguments | tojson`), or the text when it is not JSON.
    pub(super) fn arguments_json(&self) -> Json {
        Json::parse(&self.function.arguments).unwrap_or_else(|_| Json::Str(self.function.arguments.clone()))
    }
}

/// How a model writes its calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    /// Llama 3.1/3.2/3.3: the reply is `{"name": "f", "parameters": {..}}` (several separated by
    /// `;`), or follows `<|python_tag|>` (then also `f.call(k="v")`, or code for `python`).
    Llama3,
    /// Hermes, Qwen 2.5, ChatML tool models: `<tool_call>\n{"name": "f", "arguments": {..}}\n</tool_call>`.
    Hermes,
    /// Mistral: `[TOOL_CALLS][{"name": "f", "arguments": {..}}, ..]`.
    Mistral,
}

impl ToolFormat {
    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::Llama3 => "llama3",
            ToolFormat::Hermes => "hermes",
            ToolFormat::Mistral => "mistral",
        }
    }

    /// What the prompt ends with when a call is required: the form's opening.
    pub fn forced_prefix(self) -> &'static str {
        match self {
            ToolFormat::Llama3 => "",
            ToolFormat::Hermes => "<tool_call>\n",
            ToolFormat::Mistral => "[TOOL_CALLS]",
        }
    }

    fn args_key(self) -> &'static str {
        match self {
            ToolFormat::Llama3 => "parameters",
            _ => "arguments",
        }
    }
}

/// Whether a chat template renders tools itself (`native`) and the form its model calls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolSupport {
    pub format: ToolFormat,
    /// The template takes `tools` and renders tool calls and results; otherwise Hearth injects
    /// them in the Hermes form (`inject`).
    pub native: bool,
}

impl ToolSupport {
    /// Read from the template's source: one that uses the `tools` variable and writes one of the
    /// known forms renders tools itself.
    pub fn of(source: &str) -> Self {
        let tools = mentions(source, "tools");
        let native = |format| Self { format, native: true };
        if tools && source.contains("[TOOL_CALLS]") {
            native(ToolFormat::Mistral)
        } else if tools && source.contains("<tool_call>") {
            native(ToolFormat::Hermes)
        } else if tools && source.contains("<|start_header_id|>") && (source.contains("\"parameters\"") || source.contains("<|python_tag|>")) {
            native(ToolFormat::Llama3)
        } else {
            Self { format: ToolFormat::Hermes, native: false }
        }
    }
}

/// `word` appears as an identifier (not inside a longer one, such as `xml_tools`).
fn mentions(source: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    source.match_indices(word).any(|(i, _)| {
        !source[..i].chars().next_back().is_some_and(ident) && !source[i + word.len()..].chars().next().is_some_and(ident)
    })
}

/// One function the model may call: `{type: "function", function: {name, description,
/// parameters}}` as the request gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The parameters' JSON schema (an empty object schema when the tool has none).
    pub parameters: serde_json::Value,
    /// The whole tool object, its keys in the request's order (what the template prints).
    pub json: Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// No call: the reply is not read for calls (the tools are still shown).
    None,
    /// The model decides.
    Auto,
    /// A call to one of the tools, forced by a grammar.
    Required,
    /// A call to this function, forced by a grammar.
    Named(String),
}

/// The tool part of a chat request.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRequest {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    /// Whether a forced call may be several (Mistral's list form).
    pub parallel: bool,
}

fn bad(msg: impl Into<String>) -> HearthError {
    HearthError::InvalidArgument(msg.into())
}

/// OpenAI's function names: letters, digits, `_` and `-`, at most 64.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ToolRequest {
    /// OpenAI's `tools` (JSON text, so that the keys keep their order), `tool_choice` ("none",
    /// "auto" (the default), "required" or `{type: "function", function: {name}}`) and
    /// `parallel_tool_calls` (default true).
    pub fn parse(tools_json: &str, choice: Option<&serde_json::Value>, parallel: Option<bool>) -> Result<Self> {
        let list = Json::parse(tools_json).map_err(|e| bad(format!("tools must be JSON: {e}")))?;
        let Json::Arr(items) = list else { return Err(bad("tools must be an array of {type: \"function\", function: {name, description, parameters}}")) };
        let mut tools: Vec<Tool> = Vec::new();
        for (i, t) in items.into_iter().enumerate() {
            if t.get("type").and_then(Json::as_str) != Some("function") {
                return Err(bad(format!("tools[{i}].type must be \"function\"")));
            }
            let Some(f @ Json::Obj(_)) = t.get("function") else { return Err(bad(format!("tools[{i}].function must be an object {{name, description, parameters}}"))) };
            let name = f.get("name").and_then(Json::as_str).unwrap_or_default().to_string();
            if !valid_name(&name) {
                return Err(bad(format!("tools[{i}].function.name must be 1 to 64 letters, digits, '_' or '-', got {name:?}")));
            }
            if tools.iter().any(|x| x.name == name) {
                return Err(bad(format!("tools[{i}]: two tools are named {name:?}")));
            }
            let parameters = match f.get("parameters") {
                None | Some(Json::Null) => serde_json::json!({"type": "object", "properties": {}}),
                Some(p @ Json::Obj(_)) => p.to_serde(),
                Some(_) => return Err(bad(format!("tools[{i}].function.parameters must be a JSON schema object"))),
            };
            tools.push(Tool { name, parameters, json: t });
        }
        let choice = match choice {
            None | Some(serde_json::Value::Null) => ToolChoice::Auto,
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                _ => return Err(bad(format!("tool_choice must be \"none\", \"auto\", \"required\" or {{type: \"function\", function: {{name}}}}, got {s:?}"))),
            },
            Some(v) => match v.pointer("/function/name").and_then(|n| n.as_str()) {
                Some(n) if v.get("type").and_then(|t| t.as_str()) == Some("function") => {
                    if !tools.iter().any(|t| t.name == n) {
                        return Err(bad(format!("tool_choice names the function {n:?}, which is not in tools")));
                    }
                    ToolChoice::Named(n.to_string())
                }
                _ => return Err(bad(format!("tool_choice must be \"none\", \"auto\", \"required\" or {{type: \"function\", function: {{name}}}}, got {v}"))),
            },
        };
        if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Named(_)) {
            return Err(bad("tool_choice \"required\" needs tools"));
        }
        Ok(Self { tools, choice, parallel: parallel.unwrap_or(true) })
    }

    /// The tools are shown to the model (with `tool_choice` "none" too, as OpenAI shows them: the
    /// model knows what it called, and the prompt stays the same from turn to turn).
    pub fn offered(&self) -> bool {
        !self.tools.is_empty()
    }

    /// The reply is read for calls (not with `tool_choice` "none").
    pub fn parsed(&self) -> bool {
        self.offered() && self.choice != ToolChoice::None
    }

    /// The functions one of which must be called (`required`, or the named one), if a call is forced.
    pub fn forced(&self) -> Option<Vec<&Tool>> {
        match &self.choice {
            ToolChoice::Required => Some(self.tools.iter().collect()),
            ToolChoice::Named(n) => Some(self.tools.iter().filter(|t| &t.name == n).collect()),
            _ => None,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name.clone()).collect()
    }

    /// The tools as the template's `tools` variable: a list of the request's tool objects.
    pub(super) fn template_value(&self) -> minijinja::Value {
        minijinja::Value::from(self.tools.iter().map(|t| t.json.to_value()).collect::<Vec<_>>())
    }

    /// Bytes of the tools' JSON (for the rendering's limits).
    pub(super) fn bytes(&self) -> usize {
        self.tools.iter().map(|t| t.json.dumps().len()).sum()
    }
}

/// The grammar a forced call is generated under (None when no call is forced): one call to one of
/// the forced functions, name first, its arguments matching the function's parameter schema,
/// written as the format writes it after its opening (`ToolFormat::forced_prefix`, which ends the
/// prompt).
pub fn call_constraint(format: ToolFormat, req: &ToolRequest) -> Result<Option<Constraint>> {
    let Some(forced) = req.forced() else { return Ok(None) };
    let functions: Vec<(&str, &serde_json::Value)> = forced.iter().map(|t| (t.name.as_str(), &t.parameters)).collect();
    let list = (format == ToolFormat::Mistral).then_some(if req.parallel { 8 } else { 1 });
    Constraint::function_calls(&functions, "name", format.args_key(), list).map(Some)
}

/// The system message's tools section in the Hermes form (Qwen 2.5's words), for templates that
/// do not render tools themselves.
fn hermes_preamble(req: &ToolRequest) -> String {
    let mut s = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for t in &req.tools {
        s.push('\n');
        s.push_str(&t.json.dumps());
    }
    s.push_str("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    s
}

/// A call in the Hermes form, as Qwen 2.5's template writes one.
fn hermes_call(c: &ToolCall) -> String {
    format!("<tool_call>\n{{\"name\": \"{}\", \"arguments\": {}}}\n</tool_call>", c.function.name, c.arguments_json().dumps())
}

/// The conversation with its tools written the Hermes way, for a template that does not render
/// tools: the tools section goes into the system message (one is added if there is none), an
/// assistant's calls become `<tool_call>` blocks after its text, and each run of `tool` messages
/// one user message of `<tool_response>` blocks. `tools`: None when the model is not offered any
/// (the history's calls and results are written all the same).
pub fn inject(messages: &[ChatMessage], tools: Option<&ToolRequest>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(req) = tools.filter(|r| r.offered()) {
        let preamble = hermes_preamble(req);
        match messages.first() {
            Some(m) if m.role == "system" => out.push(ChatMessage::new("system", &format!("{}\n\n{preamble}", m.content))),
            _ => out.push(ChatMessage::new("system", &preamble)),
        }
    }
    let skip = usize::from(!out.is_empty() && messages.first().is_some_and(|m| m.role == "system"));
    let mut last_tool = false;
    for m in &messages[skip..] {
        if m.role == "tool" {
            let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
            match out.last_mut() {
                Some(prev) if last_tool => {
                    prev.content.push('\n');
                    prev.content.push_str(&block);
                }
                _ => out.push(ChatMessage::new("user", &block)),
            }
            last_tool = true;
            continue;
        }
        last_tool = false;
        if m.tool_calls.is_empty() {
            out.push(ChatMessage { tool_call_id: None, name: None, ..m.clone() });
        } else {
            let mut parts: Vec<String> = Vec::new();
            if !m.content.is_empty() {
                parts.push(m.content.clone());
            }
            parts.extend(m.tool_calls.iter().map(hermes_call));
            out.push(ChatMessage::new(&m.role, &parts.join("\n")));
        }
    }
    out
}

// ---- reading replies ----------------------------------------------------------------------------

/// A call read from a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParsedCall {
    pub name: String,
    /// JSON text, as the model wrote it (OpenAI's `arguments`).
    pub arguments: String,
}

/// A reply read whole: its text without the calls, and the calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub content: String,
    pub calls: Vec<ParsedCall>,
}

/// What a piece of the stream adds: content, and for calls (by index) their start (name, id) and
/// more of their arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub content: String,
    pub calls: Vec<CallDelta>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallDelta {
    pub index: usize,
    /// Set in a call's first delta only (the caller gives the call its id then).
    pub name: Option<String>,
    pub arguments: String,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.calls.is_empty()
    }
}

/// Control tokens that spell a form's markers: they have no text of their own in the output, so
/// the parser is told of them by id.
const MARKERS: &[&str] = &["<|python_tag|>", "[TOOL_CALLS]", "<tool_call>", "</tool_call>"];

/// Reads a reply as it streams (see the module's notes). Push each token's text (`push_token`
/// with its id, so that marker tokens count), then `finish`; the deltas add up to `reply()`.
#[derive(Clone, Debug)]
pub struct ToolParser {
    format: ToolFormat,
    names: Vec<String>,
    buf: String,
    /// Content bytes and each call's argument bytes reported so far.
    sent_content: usize,
    sent_args: Vec<usize>,
    markers: Vec<(u32, &'static str)>,
    /// `parallel_tool_calls: false`: the first call only.
    max_calls: usize,
    done: bool,
}

impl ToolParser {
    /// `names`: the functions offered (a bare Llama 3 JSON reply is a call only if it names one).
    /// A forced call starts inside the form's opening, which ended the prompt.
    pub fn new(format: ToolFormat, names: Vec<String>, forced: bool) -> Self {
        let buf = if forced { format.forced_prefix().to_string() } else { String::new() };
        Self { format, names, buf, sent_content: 0, sent_args: Vec::new(), markers: Vec::new(), max_calls: usize::MAX, done: false }
    }

    /// For the request: its format, offered names, whether the call is forced; and the
    /// tokenizer's marker tokens.
    pub fn for_request(format: ToolFormat, req: &ToolRequest, tok: &Tokenizer) -> Self {
        let mut p = Self::new(format, req.names(), req.forced().is_some());
        if !req.parallel {
            p.max_calls = 1;
        }
        for m in MARKERS {
            if let [id] = tok.encode(m, false, true)[..] {
                if tok.is_control(id) {
                    p.markers.push((id, m));
                }
            }
        }
        p
    }

    /// A token's text (as the output shows it, control tokens empty) and its id.
    pub fn push_token(&mut self, id: u32, text: &str) -> Delta {
        self.buf.push_str(text);
        if let Some(&(_, m)) = self.markers.iter().find(|(i, _)| *i == id) {
            self.buf.push_str(m);
        }
        self.emit(false)
    }

    pub fn push(&mut self, text: &str) -> Delta {
        self.buf.push_str(text);
        self.emit(false)
    }

    /// The end of the reply: what was held back.
    pub fn finish(&mut self) -> Delta {
        self.done = true;
        self.emit(true)
    }

    /// The reply so far read whole (after `finish`, all of it).
    pub fn reply(&self) -> Reply {
        self.scan(self.done)
    }

    fn scan(&self, at_end: bool) -> Reply {
        let mut r = scan(self.format, &self.names, &self.buf, at_end);
        r.calls.truncate(self.max_calls);
        r
    }

    /// The text pushed so far (with the forced opening and marker tokens).
    pub fn text(&self) -> &str {
        &self.buf
    }

    fn emit(&mut self, at_end: bool) -> Delta {
        let r = self.scan(at_end);
        let mut d = Delta::default();
        debug_assert!(r.content.len() >= self.sent_content, "content shrank: {:?}", r.content);
        if let Some(new) = r.content.get(self.sent_content..) {
            d.content = new.to_string();
            self.sent_content = r.content.len();
        }
        for (i, c) in r.calls.iter().enumerate() {
            if i >= self.sent_args.len() {
                self.sent_args.push(0);
                d.calls.push(CallDelta { index: i, name: Some(c.name.clone()), arguments: String::new() });
            }
            let new = c.arguments.get(self.sent_args[i]..).unwrap_or("");
            self.sent_args[i] = self.sent_args[i].max(c.arguments.len());
            if new.is_empty() {
                continue;
            }
            match d.calls.last_mut() {
                Some(last) if last.index == i => last.arguments.push_str(new),
                _ => d.calls.push(CallDelta { index: i, name: None, arguments: new.to_string() }),
            }
        }
        d
    }
}

/// Read a whole reply.
pub fn parse_reply(format: ToolFormat, names: &[String], text: &str) -> Reply {
    scan(format, names, text, true)
}

// The scanner. `scan(.., at_end: false)` reports only what no later text can change: content up
// to where a call might begin (and without trailing whitespace, which a call would swallow),
// calls once their name is known, their arguments as far as they go; so each scan extends the
// last, and the stream's deltas are differences of scans.

/// What scanning gives, before it is turned into a `Reply`.
struct Out {
    content: String,
    calls: Vec<ParsedCall>,
    /// Content segments after a call lose their leading whitespace.
    after_call: bool,
}

impl Out {
    fn content(&mut self, seg: &str, call_follows: bool) {
        let seg = if self.after_call { seg.trim_start() } else { seg };
        let seg = if call_follows { seg.trim_end() } else { seg };
        self.content.push_str(seg);
        if !seg.is_empty() {
            self.after_call = false;
        }
    }

    /// The tail of the text: content, except what may begin `marker` or is trailing whitespace,
    /// until the end.
    fn tail(&mut self, seg: &str, markers: &[&str], at_end: bool) {
        if at_end {
            return self.content(seg, false);
        }
        let mut cut = seg.len();
        for m in markers {
            for k in (1..m.len()).rev() {
                if seg.ends_with(&m[..k]) {
                    cut = cut.min(seg.len() - k);
                    break;
                }
            }
        }
        self.content(&seg[..cut], true);
    }

    fn call(&mut self, c: ParsedCall) {
        self.calls.push(c);
        self.after_call = true;
    }
}

fn scan(format: ToolFormat, names: &[String], buf: &str, at_end: bool) -> Reply {
    let mut out = Out { content: String::new(), calls: Vec::new(), after_call: false };
    match format {
        ToolFormat::Hermes => scan_hermes(buf, at_end, &mut out),
        ToolFormat::Mistral => scan_mistral(buf, at_end, &mut out),
        ToolFormat::Llama3 => scan_llama3(names, buf, at_end, &mut out),
    }
    Reply { content: out.content, calls: out.calls }
}

fn scan_hermes(buf: &str, at_end: bool, out: &mut Out) {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut i = 0;
    loop {
        let Some(k) = buf[i..].find(OPEN).map(|k| i + k) else {
            return out.tail(&buf[i..], &[OPEN], at_end);
        };
        let start = k + OPEN.len();
        let j = skip_ws(buf, start);
        if j == buf.len() && !at_end {
            return out.content(&buf[i..k], true);
        }
        if buf.as_bytes().get(j) != Some(&b'{') {
            // Not a call after all: the tag is text.
            out.content(&buf[i..start], false);
            i = start;
            continue;
        }
        let cs = scan_call(buf, j);
        let Some(name) = cs.name.clone() else {
            if cs.state == State::Incomplete && !at_end {
                return out.content(&buf[i..k], true);
            }
            out.content(&buf[i..start], false);
            i = start;
            continue;
        };
        out.content(&buf[i..k], true);
        // The block ends at its closing tag, else where the call's object ends.
        let close = buf[j..].find(CLOSE).map(|c| j + c);
        let limit = close.unwrap_or(buf.len());
        out.call(call_of(name, &cs, buf, limit, at_end, &[CLOSE]));
        match (cs.state, close) {
            (State::Complete(e), _) => {
                let after = skip_ws(buf, e);
                if buf[after..].starts_with(CLOSE) {
                    i = after + CLOSE.len();
                } else if CLOSE.starts_with(&buf[after..]) {
                    // The closing tag may still come (or was cut off).
                    if !at_end {
                        return;
                    }
                    i = buf.len();
                } else {
                    i = e;
                }
            }
            (_, Some(c)) => i = c + CLOSE.len(),
            (_, None) => return,
        }
    }
}

fn scan_mistral(buf: &str, at_end: bool, out: &mut Out) {
    const OPEN: &str = "[TOOL_CALLS]";
    let Some(k) = buf.find(OPEN) else {
        return out.tail(buf, &[OPEN], at_end);
    };
    out.content(&buf[..k], true);
    let mut i = skip_ws(buf, k + OPEN.len());
    let list = buf.as_bytes().get(i) == Some(&b'[');
    if list {
        i = skip_ws(buf, i + 1);
    }
    loop {
        if i == buf.len() {
            return;
        }
        if buf.as_bytes()[i] != b'{' {
            break;
        }
        let cs = scan_call(buf, i);
        let Some(name) = cs.name.clone() else {
            if cs.state == State::Incomplete && !at_end {
                return;
            }
            break;
        };
        out.call(call_of(name, &cs, buf, buf.len(), at_end, &[]));
        let State::Complete(e) = cs.state else { return };
        i = skip_ws(buf, e);
        match buf.as_bytes().get(i) {
            Some(b',') => i = skip_ws(buf, i + 1),
            Some(b']') if list => {
                i += 1;
                break;
            }
            None => return,
            _ => break,
        }
    }
    out.tail(&buf[i..], &[], at_end);
}

fn scan_llama3(names: &[String], buf: &str, at_end: bool, out: &mut Out) {
    const TAG: &str = "<|python_tag|>";
    if let Some(k) = buf.find(TAG) {
        out.content(&buf[..k], true);
        let start = skip_ws(buf, k + TAG.len());
        if buf.as_bytes().get(start) == Some(&b'{') {
            return llama3_calls(names, buf, start, true, at_end, out);
        }
        // `f.call(k="v", ..)`, or code: known only once the reply is whole.
        if at_end {
            let text = buf[start..].trim();
            if !text.is_empty() {
                out.call(builtin_call(text));
            }
        }
        return;
    }
    let start = skip_ws(buf, 0);
    if buf.as_bytes().get(start) == Some(&b'{') {
        return llama3_calls(names, buf, start, false, at_end, out);
    }
    out.tail(buf, &[TAG], at_end);
}

/// Llama 3 calls from `start` (a `{`), separated by `;` or `,` or whitespace. `tagged`: after
/// `<|python_tag|>`, where any name is a call; a bare reply is a call only if it names one of the
/// tools (else it is JSON content).
fn llama3_calls(names: &[String], buf: &str, start: usize, tagged: bool, at_end: bool, out: &mut Out) {
    let mut i = start;
    loop {
        let cs = scan_call(buf, i);
        let known = |n: &String| tagged || names.contains(n);
        let name = match &cs.name {
            Some(n) if known(n) && !cs.foreign_key => n.clone(),
            Some(_) => return out.tail(&buf[i..], &[], at_end),
            None if cs.state == State::Incomplete && !cs.foreign_key && !at_end => return,
            None => return out.tail(&buf[i..], &[], at_end),
        };
        out.call(call_of(name, &cs, buf, buf.len(), at_end, &[]));
        let State::Complete(e) = cs.state else { return };
        let mut j = skip_ws(buf, e);
        if matches!(buf.as_bytes().get(j), Some(b';' | b',')) {
            j = skip_ws(buf, j + 1);
        }
        match buf.as_bytes().get(j) {
            Some(b'{') => i = j,
            None if !at_end => return,
            _ => return out.tail(&buf[j..], &[], at_end),
        }
    }
}

/// `<|python_tag|>` followed by `name.call(k="v", ..)` (Llama 3.1's built-in tools), else code,
/// which is a call to `python` with `{"code": ..}` (as llama.cpp reads it).
fn builtin_call(text: &str) -> ParsedCall {
    if let Some((name, rest)) = text.split_once(".call(") {
        if valid_name(name) {
            if let Some(args) = rest.strip_suffix(')').and_then(kwargs) {
                return ParsedCall { name: name.into(), arguments: Json::Obj(args).dumps() };
            }
        }
    }
    ParsedCall { name: "python".into(), arguments: Json::Obj(vec![("code".into(), Json::Str(text.into()))]).dumps() }
}

/// `k="v", n=1` (Python keyword arguments of literals) as JSON members.
fn kwargs(s: &str) -> Option<Vec<(String, Json)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (k, v) = rest.split_once('=')?;
        let k = k.trim();
        if !valid_name(k) {
            return None;
        }
        let v = v.trim_start();
        let (value, after) = if let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let end = v[1..].find(q)? + 1;
            (Json::Str(v[1..end].to_string()), &v[end + 1..])
        } else {
            let end = v.find(',').unwrap_or(v.len());
            let lit = v[..end].trim();
            let value = match lit {
                "True" => Json::Bool(true),
                "False" => Json::Bool(false),
                "None" => Json::Null,
                _ => Json::parse(lit).ok().filter(|j| matches!(j, Json::Num(_)))?,
            };
            (value, &v[end..])
        };
        out.push((k.to_string(), value));
        rest = after.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// The call `cs` describes, its arguments as far as `limit` (where its block ends) at most.
fn call_of(name: String, cs: &CallScan, buf: &str, limit: usize, at_end: bool, markers: &[&str]) -> ParsedCall {
    let arguments = match cs.args {
        None if at_end || matches!(cs.state, State::Complete(_)) => "{}".to_string(),
        None => String::new(),
        Some((a, Some(e))) if cs.args_string => serde_json::from_str::<String>(&buf[a..e]).unwrap_or_else(|_| buf[a..e].to_string()),
        Some((_, None)) if cs.args_string && !at_end => String::new(),
        Some((a, Some(e))) => buf[a..e].to_string(),
        Some((a, None)) => {
            // Unfinished or broken: the text as far as the block goes (held back at the end
            // while it may be whitespace or the start of a closing tag).
            let mut text = &buf[a..limit.max(a)];
            if !at_end {
                text = text.trim_end();
                for m in markers {
                    for k in (1..m.len()).rev() {
                        if let Some(t) = text.strip_suffix(&m[..k]) {
                            text = t;
                            break;
                        }
                    }
                }
            } else {
                text = text.trim_end();
            }
            text.to_string()
        }
    };
    ParsedCall { name, arguments }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The object closed; the index after its `}`.
    Complete(usize),
    /// The text ends inside it.
    Incomplete,
    /// Not JSON (or not an object of a call) from here.
    Invalid,
}

/// A call object `{"name": .., "arguments"|"parameters": .., "id": ..}` scanned from its `{`.
#[derive(Clone, Debug)]
struct CallScan {
    name: Option<String>,
    /// The arguments value: where it starts, where it ends (None: not yet, or broken).
    args: Option<(usize, Option<usize>)>,
    /// The arguments are a JSON string (of JSON text) rather than an object.
    args_string: bool,
    /// A key other than name, arguments, parameters, id or type came before the name.
    foreign_key: bool,
    state: State,
}

fn skip_ws(s: &str, mut i: usize) -> usize {
    let b = s.as_bytes();
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

enum Lex {
    Done(usize),
    More,
    Bad,
}

/// The end of the JSON string starting at `i` (a `"`).
fn lex_string(b: &[u8], i: usize) -> Lex {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return Lex::Done(j + 1),
            b'\\' => j += 2,
            c if c < 0x20 => return Lex::Bad,
            _ => j += 1,
        }
    }
    Lex::More
}

/// The end of the JSON value starting at `i` (brackets balanced, strings skipped; scalars checked
/// only for their characters).
fn lex_value(b: &[u8], i: usize) -> Lex {
    match b.get(i) {
        None => Lex::More,
        Some(b'"') => lex_string(b, i),
        Some(b'{' | b'[') => {
            let mut stack = Vec::new();
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'{' => stack.push(b'}'),
                    b'[' => stack.push(b']'),
                    c @ (b'}' | b']') => {
                        if stack.pop() != Some(c) {
                            return Lex::Bad;
                        }
                        if stack.is_empty() {
                            return Lex::Done(j + 1);
                        }
                    }
                    b'"' => match lex_string(b, j) {
                        Lex::Done(e) => {
                            j = e;
                            continue;
                        }
                        other => return other,
                    },
                    _ => {}
                }
                j += 1;
            }
            Lex::More
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'+' | b'.')) {
                j += 1;
            }
            if j == b.len() {
                Lex::More
            } else if j == i {
                Lex::Bad
            } else {
                Lex::Done(j)
            }
        }
    }
}

fn scan_call(s: &str, start: usize) -> CallScan {
    let b = s.as_bytes();
    let mut cs = CallScan { name: None, args: None, args_string: false, foreign_key: false, state: State::Incomplete };
    let mut i = start + 1;
    let mut first = true;
    loop {
        i = skip_ws(s, i);
        let Some(&c) = b.get(i) else { return cs };
        if c == b'}' && first {
            cs.state = State::Complete(i + 1);
            return cs;
        }
        if c != b'"' {
            cs.state = State::Invalid;
            return cs;
        }
        let key_end = match lex_string(b, i) {
            Lex::Done(e) => e,
            Lex::More => return cs,
            Lex::Bad => {
                cs.state = State::Invalid;
                return cs;
            }
        };
        let key: String = serde_json::from_str(&s[i..key_end]).unwrap_or_default();
        i = skip_ws(s, key_end);
        match b.get(i) {
            None => return cs,
            Some(b':') => {}
            Some(_) => {
                cs.state = State::Invalid;
                return cs;
            }
        }
        i = skip_ws(s, i + 1);
        if i == b.len() {
            return cs;
        }
        let end = match lex_value(b, i) {
            Lex::Done(e) => e,
            Lex::More => {
                if key == "arguments" || key == "parameters" {
                    cs.args = Some((i, None));
                    cs.args_string = b[i] == b'"';
                }
                return cs;
            }
            Lex::Bad => {
                if key == "arguments" || key == "parameters" {
                    cs.args = Some((i, None));
                    cs.args_string = b[i] == b'"';
                }
                cs.state = State::Invalid;
                return cs;
            }
        };
        match key.as_str() {
            "name" => match serde_json::from_str::<String>(&s[i..end]) {
                Ok(v) => cs.name = Some(v),
                Err(_) => {
                    cs.state = State::Invalid;
                    return cs;
                }
            },
            // Mistral's call ids; the caller gives every call its own.
            "id" => {}
            "arguments" | "parameters" => {
                cs.args = Some((i, Some(end)));
                cs.args_string = b[i] == b'"';
            }
            "type" => {}
            _ => cs.foreign_key |= cs.name.is_none(),
        }
        first = false;
        i = skip_ws(s, end);
        match b.get(i) {
            None => return cs,
            Some(b',') => i += 1,
            Some(b'}') => {
                cs.state = State::Complete(i + 1);
                return cs;
            }
            Some(_) => {
                cs.state = State::Invalid;
                return cs;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["get_weather".into(), "search".into()]
    }

    /// Every way of cutting `text` in pieces streams to the same reply as reading it whole.
    fn streams_like_whole(format: ToolFormat, text: &str, forced: bool) -> Reply {
        let whole = {
            let mut p = ToolParser::new(format, names(), forced);
            p.push(text);
            p.finish();
            p.reply()
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for step in [1, 2, 3, 5, 8] {
            let mut p = ToolParser::new(format, names(), forced);
            let mut got = Reply::default();
            let apply = |d: Delta, got: &mut Reply| {
                got.content.push_str(&d.content);
                for c in d.calls {
                    if let Some(n) = c.name {
                        assert_eq!(c.index, got.calls.len());
                        got.calls.push(ParsedCall { name: n, arguments: String::new() });
                    }
                    got.calls[c.index].arguments.push_str(&c.arguments);
                }
            };
            let mut k = 0;
            while k < chars.len() {
                let end = chars.get(k + step).map_or(text.len(), |c| c.0);
                let d = p.push(&text[chars[k].0..end]);
                apply(d, &mut got);
                k += step;
            }
            let d = p.finish();
            apply(d, &mut got);
            assert_eq!(got, whole, "{text:?} in pieces of {step}");
        }
        whole
    }

    fn call(name: &str, args: &str) -> ParsedCall {
        ParsedCall { name: name.into(), arguments: args.into() }
    }

    #[test]
    fn hermes_calls_and_content() {
        let r = streams_like_whole(
            ToolFormat::Hermes,
            "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"a}\\\"b\"}}\n</tool_call>",
            false,
        );
        assert_eq!(r.content, "Let me look.");
        assert_eq!(r.calls, [call("get_weather", "{\"city\": \"Paris\"}"), call("search", "{\"q\": \"a}\\\"b\"}")]);
        let r = streams_like_whole(ToolFormat::Hermes, "No call here: <tool_ x < y.", false);
        assert_eq!(r, Reply { content: "No call here: <tool_ x < y.".into(), calls: vec![] });
        // Forced: the opening ended the prompt; the grammar ends the object (no closing tag).
        let r = streams_like_whole(ToolFormat::Hermes, "{\"name\": \"search\", \"arguments\": {\"q\": \"x\"}}", true);
        assert_eq!(r.calls, [call("search", "{\"q\": \"x\"}")]);
        // Cut off inside the arguments: the call with what it has.
        let r = streams_like_whole(ToolFormat::Hermes, "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"x", false);
        assert_eq!(r.calls, [call("search", "{\"q\": \"x")]);
        // Arguments as a JSON string of JSON.
        let r = streams_like_whole(ToolFormat::Hermes, "<tool_call>{\"arguments\": \"{\\\"q\\\": 1}\", \"name\": \"search\"}</tool_call> done", false);
        assert_eq!(r, Reply { content: "done".into(), calls: vec![call("search", "{\"q\": 1}")] });
    }

    #[test]
    fn llama3_json_and_python_tag() {
        let r = streams_like_whole(ToolFormat::Llama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 3}}", false);
        assert_eq!(r, Reply { content: String::new(), calls: vec![call("get_weather", "{\"city\": \"Paris\", \"days\": 3}")] });
        // JSON that names no tool is content.
        let r = streams_like_whole(ToolFormat::Llama3, "{\"name\": \"Bob\", \"age\": 3}", false);
        assert_eq!(r.content, "{\"name\": \"Bob\", \"age\": 3}");
        let r = streams_like_whole(ToolFormat::Llama3, "{\"colour\": \"red\"}", false);
        assert_eq!(r.content, "{\"colour\": \"red\"}");
        let r = streams_like_whole(ToolFormat::Llama3, "{\"type\": \"function\", \"name\": \"search\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", false);
        assert_eq!(r.calls, [call("search", "{}"), call("get_weather", "{\"city\": \"Oslo\"}")]);
        let r = streams_like_whole(ToolFormat::Llama3, "<|python_tag|>brave_search.call(query=\"weather in Menlo Park\")", false);
        assert_eq!(r.calls, [call("brave_search", "{\"query\": \"weather in Menlo Park\"}")]);
        let r = streams_like_whole(ToolFormat::Llama3, "<|python_tag|>import sys\nprint(sys.version)", false);
        assert_eq!(r.calls, [call("python", "{\"code\": \"import sys\\nprint(sys.version)\"}")]);
        let r = streams_like_whole(ToolFormat::Llama3, "Sure.<|python_tag|>{\"name\": \"anything\", \"parameters\": {\"a\": [1, {\"b\": null}]}}", false);
        assert_eq!(r, Reply { content: "Sure.".into(), calls: vec![call("anything", "{\"a\": [1, {\"b\": null}]}")] });
        let r = streams_like_whole(ToolFormat::Llama3, "The weather is {\"sunny\"}.", false);
        assert_eq!(r.content, "The weather is {\"sunny\"}.");
    }

    #[test]
    fn mistral_list() {
        let r = streams_like_whole(
            ToolFormat::Mistral,
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}, {\"name\": \"search\", \"arguments\": {}}]",
            false,
        );
        assert_eq!(r.calls, [call("get_weather", "{\"city\": \"Paris\"}"), call("search", "{}")]);
        let r = streams_like_whole(ToolFormat::Mistral, "Plain [TOOL answer", false);
        assert_eq!(r.content, "Plain [TOOL answer");
    }

    #[test]
    fn detects_forms_from_templates() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let of = |p: &str| ToolSupport::of(&std::fs::read_to_string(root.join(p)).unwrap());
        for (p, want) in [
            ("tests/golden/templates/llama-3.1.jinja", Some(ToolFormat::Llama3)),
            ("tests/golden/templates/llama-3.2.jinja", Some(ToolFormat::Llama3)),
            ("tests/golden/templates/llama-3.3.jinja", Some(ToolFormat::Llama3)),
            ("tests/golden/templates/qwen2.5-chatml.jinja", Some(ToolFormat::Hermes)),
            ("tests/golden/templates/mistral-nemo.jinja", Some(ToolFormat::Mistral)),
            ("tests/golden/templates/smollm3.jinja", None),
            ("tests/golden/templates/phi-3.5.jinja", None),
            ("tests/golden/templates/llama-2-chat.jinja", None),
            ("src/chat/templates/llama3.jinja", None),
            ("src/chat/templates/chatml.jinja", None),
        ] {
            let s = of(p);
            assert_eq!(s.native.then_some(s.format), want, "{p}");
        }
    }

    #[test]
    fn requests_are_checked() {
        let tools = r#"[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]"#;
        let ok = ToolRequest::parse(tools, Some(&serde_json::json!({"type": "function", "function": {"name": "f"}})), None).unwrap();
        assert_eq!(ok.choice, ToolChoice::Named("f".into()));
        for (t, c) in [
            (r#"{"type": "function"}"#, None),
            (r#"[{"type": "tool", "function": {"name": "f"}}]"#, None),
            (r#"[{"type": "function", "function": {"name": "a b"}}]"#, None),
            (r#"[{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]"#, None),
            (tools, Some(serde_json::json!("sometimes"))),
            (tools, Some(serde_json::json!({"type": "function", "function": {"name": "g"}}))),
            ("[]", Some(serde_json::json!("required"))),
        ] {
            assert_eq!(ToolRequest::parse(t, c.as_ref(), None).unwrap_err().code(), "invalid_argument", "{t} {c:?}");
        }
    }
}
