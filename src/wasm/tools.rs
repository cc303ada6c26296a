//! Tool calling over wasm (src/chat/tools.rs): the request's tool options, the template's tool
//! support, and `ToolCallParser`, which the Worker's host feeds each generated token to turn the
//! reply into content and OpenAI-style call deltas as it streams.

use super::{invalid, js_error, set, AnyCore, WasmEngine};
use crate::chat::tools::{call_constraint, Delta, ToolParser, ToolRequest};
use crate::grammar::Constraint;
use wasm_bindgen::prelude::*;

/// The tool options of `chatPrompt`, `start`, `renderChat` and `toolParser`, as host.js passes
/// them: `tools` is the request's `tools` array as JSON text (so that its keys keep their order
/// when the template prints them), `toolChoice` OpenAI's `tool_choice`.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ToolOptions {
    pub tools: Option<String>,
    pub tool_choice: Option<serde_json::Value>,
    pub parallel_tool_calls: Option<bool>,
}

impl ToolOptions {
    pub(super) fn from_js(options: &JsValue) -> Result<Self, JsValue> {
        if options.is_undefined() || options.is_null() {
            return Ok(Self::default());
        }
        serde_wasm_bindgen::from_value(options.clone()).map_err(|e| invalid(format!("bad tool options: {e}")))
    }

    /// The request's tools (None without any).
    pub(super) fn request(&self) -> Result<Option<ToolRequest>, JsValue> {
        match &self.tools {
            None => {
                if self.tool_choice.as_ref().is_some_and(|c| c.as_str() != Some("none") && !c.is_null()) {
                    return Err(invalid("tool_choice needs tools"));
                }
                Ok(None)
            }
            Some(t) => ToolRequest::parse(t, self.tool_choice.as_ref(), self.parallel_tool_calls).map(Some).map_err(js_error),
        }
    }
}

impl WasmEngine {
    /// The grammar of a forced call, if the options force one (`tool_choice` "required" or a named
    /// function); it cannot be combined with a `responseFormat` constraint.
    pub(super) fn tool_constraint(&self, options: &JsValue, other: &Option<Constraint>) -> Result<Option<Constraint>, JsValue> {
        let Some(req) = ToolOptions::from_js(options)?.request()? else { return Ok(None) };
        if !req.offered() {
            return Ok(None);
        }
        let c = call_constraint(self.template.tool_support().format, &req).map_err(js_error)?;
        if c.is_some() && other.is_some() {
            return Err(invalid("responseFormat cannot be combined with tool_choice \"required\" or a named function"));
        }
        Ok(c)
    }
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// How the model calls tools: {format: "llama3" | "hermes" | "mistral", native: whether its
    /// chat template renders tools itself (else Hearth writes them in the Hermes form)}.
    #[wasm_bindgen(js_name = toolSupport)]
    pub fn tool_support(&self) -> JsValue {
        let s = self.template.tool_support();
        let o = js_sys::Object::new();
        set(&o, "format", s.format.name());
        set(&o, "native", s.native);
        o.into()
    }

    /// A reader of the reply to a request with these tool options ({tools (JSON text),
    /// toolChoice, parallelToolCalls}); undefined without tools or with toolChoice "none".
    #[wasm_bindgen(js_name = toolParser)]
    pub fn tool_parser(&self, options: JsValue) -> Result<Option<ToolCallParser>, JsValue> {
        let Some(req) = ToolOptions::from_js(&options)?.request()? else { return Ok(None) };
        if !req.parsed() {
            return Ok(None);
        }
        let format = self.template.tool_support().format;
        let inner = core_do!(&self.core, c => ToolParser::for_request(format, &req, &c.engine.tokenizer));
        Ok(Some(ToolCallParser { inner, format: format.name() }))
    }
}

/// Reads a streaming reply into content and calls (`chat::tools::ToolParser`).
#[wasm_bindgen]
pub struct ToolCallParser {
    inner: ToolParser,
    format: &'static str,
}

fn delta_js(d: &Delta) -> JsValue {
    let o = js_sys::Object::new();
    set(&o, "content", d.content.clone());
    let calls = js_sys::Array::new();
    for c in &d.calls {
        let x = js_sys::Object::new();
        set(&x, "index", c.index as f64);
        if let Some(n) = &c.name {
            set(&x, "name", n.clone());
        }
        set(&x, "arguments", c.arguments.clone());
        calls.push(&x);
    }
    set(&o, "calls", calls);
    o.into()
}

#[wasm_bindgen]
impl ToolCallParser {
    /// "llama3" | "hermes" | "mistral".
    #[wasm_bindgen(getter)]
    pub fn format(&self) -> String {
        self.format.into()
    }

    /// A generated token (its id, and its text as the output shows it): {content, calls: [{index,
    /// name (a call's first delta), arguments}]}.
    pub fn push(&mut self, id: Option<u32>, text: &str) -> JsValue {
        let d = match id {
            Some(id) => self.inner.push_token(id, text),
            None => self.inner.push(text),
        };
        delta_js(&d)
    }

    /// The end of the reply: what was held back, as `push` gives it.
    pub fn finish(&mut self) -> JsValue {
        delta_js(&self.inner.finish())
    }
}
