//! Chat templates: the GGUF's own `tokenizer.chat_template` (Jinja, rendered with minijinja the way
//! Hugging Face renders it), or a built-in fallback chosen from the vocabulary (Llama 3 header
//! tokens, ChatML, else Llama 2 `[INST]`).

mod python;

use crate::error::{HearthError, Result};
use crate::gguf::Metadata;
use crate::tokenizer::Tokenizer;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
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
    ChatMl,
}

impl Builtin {
    fn source(self) -> &'static str {
        match self {
            Builtin::Llama2 => include_str!("templates/llama2.jinja"),
            Builtin::Llama3 => include_str!("templates/llama3.jinja"),
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
        let b = if has("<|start_header_id|>") {
            Builtin::Llama3
        } else if has("<|im_start|>") {
            Builtin::ChatMl
        } else {
            Builtin::Llama2
        };
        Ok(Self::builtin(b, &bos, &eos))
    }

    /// Render a conversation; `add_generation_prompt` opens the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool, today: Date) -> Result<String> {
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks on.
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.map_err(|e| HearthError::ChatTemplate(e.to_string()))?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", move |fmt: String| python::strftime(&fmt, today));
        env.add_filter("tojson", python::tojson);
        let fail = |e: Error| HearthError::ChatTemplate(python::describe(&e));
        let tmpl = env.template_from_str(&self.source).map_err(fail)?;
        let ctx = minijinja::context! {
            messages => messages.iter().map(|m| Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())])).collect::<Vec<Value>>(),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        tmpl.render(ctx).map_err(fail)
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
    let keep = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let mut dropped = 0;
    loop {
        let kept: Vec<ChatMessage> = messages[..keep].iter().chain(&messages[keep + dropped..]).cloned().collect();
        let text = template.render(&kept, true, today)?;
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

    #[test]
    fn helpers_behave_like_python() {
        let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}|{{ {'a': [1, 2.5, none, true], 'é': 'x\"'} | tojson }}|{{ ' x '.strip() }}", "", "");
        assert_eq!(t.render(&[], false, TODAY).unwrap(), "26 Nov 2026|{\"a\": [1, 2.5, null, true], \"é\": \"x\\\"\"}|x");
    }
}
