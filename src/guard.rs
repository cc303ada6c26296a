//! Llama Guard moderation: a conversation rendered as the official Llama Guard template renders
//! it, the answer constrained to a verdict (`safe`, or `unsafe` and category codes) so that it
//! always parses, and the prompt's taxonomy kept in a KV cache so a later check prefills only the
//! conversation.
//!
//! Which template: the model's own when it is a Llama Guard one (it lists `<BEGIN UNSAFE CONTENT
//! CATEGORIES>`), else the built-in Llama Guard 3 1B template (`chat/templates/`), so that any
//! model can be asked (a model that is not a Llama Guard gives a parseable but meaningless
//! verdict). Options: custom `categories` (templates that read them: 3-1B, 4) and `excluded`
//! codes (left out of the prompt by such templates; with the 8B template, whose list is fixed,
//! excluded codes are dropped from the verdict instead, as llama-stack does).
//!
//! Caching: the prompt names the role checked ('User' or 'Agent') before the taxonomy, so a user
//! check and a reply check share only a few tokens. A `Moderator` keeps one session (KV cache)
//! per role: consecutive checks of a role reuse the whole taxonomy and the conversation so far.

use crate::backend::{now, Backend};
use crate::chat::{ChatMessage, ChatTemplate, Date};
use crate::engine::{Engine, GenerateOptions, Session, StopReason, TextOutput};
use crate::error::{HearthError, Result};
use crate::grammar::Constraint;
use crate::sampler::SamplerConfig;
use crate::tokenizer::Tokenizer;
use minijinja::Value;

/// Meta's Llama Guard 3 1B template (the built-in one), 8B template, and a reconstruction of
/// Llama Guard 4's (see chat/templates/LLAMA-GUARD.md).
pub const LLAMA_GUARD_3_1B: &str = include_str!("chat/templates/llama-guard-3-1b.jinja");
pub const LLAMA_GUARD_3_8B: &str = include_str!("chat/templates/llama-guard-3-8b.jinja");
pub const LLAMA_GUARD_4_RECONSTRUCTED: &str = include_str!("chat/templates/llama-guard-4-12b.jinja");

/// The hazard taxonomy of the Llama Guard 3 model card (MLCommons), S1-S14.
pub const TAXONOMY: [(&str, &str); 14] = [
    ("S1", "Violent Crimes"),
    ("S2", "Non-Violent Crimes"),
    ("S3", "Sex-Related Crimes"),
    ("S4", "Child Sexual Exploitation"),
    ("S5", "Defamation"),
    ("S6", "Specialized Advice"),
    ("S7", "Privacy"),
    ("S8", "Intellectual Property"),
    ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"),
    ("S11", "Suicide & Self-Harm"),
    ("S12", "Sexual Content"),
    ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
];

const BEGIN: &str = "<BEGIN UNSAFE CONTENT CATEGORIES>";
const END: &str = "<END UNSAFE CONTENT CATEGORIES>";

/// Whether a template is a Llama Guard one.
pub fn is_guard_template(source: &str) -> bool {
    source.contains(BEGIN)
}

/// What to check against.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuardOptions {
    /// Custom categories (code, description), in order, replacing the template's; only for
    /// templates that read `categories`.
    pub categories: Option<Vec<(String, String)>>,
    /// Codes not to check.
    pub excluded: Vec<String>,
    /// Added to these tokens' logits before the verdict's greedy pick (OpenAI's `logit_bias`):
    /// a stricter or laxer guard, and the tests' way to force a verdict.
    pub logit_bias: Vec<(u32, f32)>,
}

/// Which role's last message is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "User",
            Role::Agent => "Agent",
        }
    }
}

/// A rendered moderation prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardPrompt {
    pub text: String,
    pub role: Role,
    /// The categories the prompt lists, (code, name), in its order: the codes a verdict may name.
    pub categories: Vec<(String, String)>,
    /// The model's own template (true) or the built-in Llama Guard 3 1B one.
    pub model_template: bool,
}

/// The template `moderate` renders with for a model whose chat template is `model`.
pub fn guard_template(model: &ChatTemplate) -> (ChatTemplate, bool) {
    if is_guard_template(&model.source) {
        (model.clone(), true)
    } else {
        (ChatTemplate::new(LLAMA_GUARD_3_1B, &model.bos_token, &model.eos_token), false)
    }
}

/// Render the moderation prompt of `messages` (system messages are left out: the templates
/// accept only alternating user and assistant turns) with `template` (a Llama Guard one).
pub fn render(template: &ChatTemplate, messages: &[ChatMessage], opts: &GuardOptions, today: Date) -> Result<GuardPrompt> {
    let msgs: Vec<&ChatMessage> = messages.iter().filter(|m| m.role != "system").collect();
    let Some(last) = msgs.last() else {
        return Err(HearthError::InvalidArgument("moderation needs a conversation with at least one user or assistant message".into()));
    };
    if let Some(m) = msgs.iter().find(|m| m.role != "user" && m.role != "assistant") {
        return Err(HearthError::InvalidArgument(format!(
            "Llama Guard checks user and assistant messages only, not {:?} ones (pass tool results as the assistant's text)",
            m.role
        )));
    }
    let src = &template.source;
    let reads_categories = src.contains("categories[");
    if opts.categories.is_some() && !reads_categories {
        return Err(HearthError::InvalidArgument(
            "this model's Llama Guard template has a fixed category list (Llama Guard 3 8B); custom categories need a template that reads `categories` (Llama Guard 3 1B, 4)".into(),
        ));
    }
    if let Some(cats) = &opts.categories {
        if cats.is_empty() {
            return Err(HearthError::InvalidArgument("categories must name at least one category".into()));
        }
        for (i, (code, _)) in cats.iter().enumerate() {
            if code.is_empty() || code.contains([',', ':']) || code.chars().any(char::is_whitespace) || cats[..i].iter().any(|(c, _)| c == code) {
                return Err(HearthError::InvalidArgument(format!("category code {code:?} is empty, repeated, or holds a comma, colon or whitespace")));
            }
        }
    }
    // The 1B and 4 templates read content as typed parts; the 8B one as a string.
    let parts = src.contains("['text']");
    let value = |m: &ChatMessage| {
        let content = if parts {
            Value::from(vec![Value::from_pairs([("type", Value::from("text")), ("text", Value::from(m.content.as_str()))])])
        } else {
            Value::from(m.content.as_str())
        };
        Value::from_pairs([("role", Value::from(m.role.as_str())), ("content", content)])
    };
    let mut extra: Vec<(&'static str, Value)> = Vec::new();
    let mut bytes: usize = msgs.iter().map(|m| m.role.len() + m.content.len()).sum();
    if let Some(cats) = &opts.categories {
        bytes += cats.iter().map(|(c, d)| c.len() + d.len()).sum::<usize>();
        extra.push(("categories", Value::from_pairs(cats.iter().map(|(c, d)| (c.as_str(), d.as_str())))));
    }
    bytes += opts.excluded.iter().map(String::len).sum::<usize>();
    // Always defined (as the model cards pass it), so `key not in excluded_category_keys` works.
    extra.push(("excluded_category_keys", Value::from(opts.excluded.clone())));
    let text = template.render_extra(Value::from(msgs.iter().map(|m| value(m)).collect::<Vec<_>>()), msgs.len(), bytes, extra, today)?;
    let listed = listed_codes(&text);
    let categories: Vec<(String, String)> = match &opts.categories {
        Some(cats) => cats.iter().filter(|(c, _)| listed.iter().any(|(l, _)| l == c)).map(|(c, d)| (c.clone(), short_name(d))).collect(),
        None => listed
            .into_iter()
            .map(|(c, d)| {
                let name = TAXONOMY.iter().find(|(t, _)| *t == c).map_or_else(|| short_name(&d), |(_, n)| n.to_string());
                (c, name)
            })
            .collect(),
    };
    if categories.is_empty() {
        return Err(HearthError::InvalidArgument("the moderation prompt lists no categories (all excluded?)".into()));
    }
    let role = if last.role == "assistant" { Role::Agent } else { Role::User };
    // `model_template` is set by the caller, which knows where the template came from.
    Ok(GuardPrompt { text, role, categories, model_template: false })
}

/// A description's first line without its final full stop: "Violent Crimes." -> "Violent Crimes".
fn short_name(d: &str) -> String {
    let line = d.lines().next().unwrap_or("").trim();
    line.strip_suffix('.').unwrap_or(line).trim().to_string()
}

/// The `CODE: description` lines of the prompt's category block.
fn listed_codes(text: &str) -> Vec<(String, String)> {
    let Some(start) = text.find(BEGIN) else { return Vec::new() };
    let block = &text[start + BEGIN.len()..];
    let block = &block[..block.find(END).unwrap_or(block.len())];
    block
        .lines()
        .filter_map(|l| {
            let (code, desc) = l.split_once(": ")?;
            let ok = !code.is_empty() && code.len() <= 16 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            ok.then(|| (code.to_string(), desc.to_string()))
        })
        .collect()
}

/// A verdict, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub safe: bool,
    /// The violated categories (code, name), in the order the model named them.
    pub categories: Vec<(String, String)>,
}

/// Parse a verdict (`safe`, or `unsafe\nS1,S2`, after optional whitespace) against the prompt's
/// categories; codes in `excluded` are dropped, and a verdict left with none is safe.
pub fn parse_verdict(text: &str, categories: &[(String, String)], excluded: &[String]) -> Result<Verdict> {
    let t = text.trim_start();
    if t.trim_end() == "safe" {
        return Ok(Verdict { safe: true, categories: Vec::new() });
    }
    let bad = || HearthError::InvalidArgument(format!("not a Llama Guard verdict: {text:?}"));
    let codes = t.strip_prefix("unsafe\n").ok_or_else(bad)?.trim_end();
    let mut out = Vec::new();
    for code in codes.split(',') {
        let (c, n) = categories.iter().find(|(c, _)| c == code.trim()).ok_or_else(bad)?;
        if !excluded.contains(c) && !out.iter().any(|(o, _): &(String, String)| o == c) {
            out.push((c.clone(), n.clone()));
        }
    }
    Ok(Verdict { safe: out.is_empty(), categories: out })
}

/// Tokenize a rendered prompt as `chat::build_prompt` does (special tokens parsed, the
/// tokenizer's BOS not doubled when the template wrote one).
pub fn tokenize(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let mut tokens = tok.encode(text, true, true);
    if tokens.len() >= 2 && tok.bos().is_some() && tokens[0] == tokens[1] && Some(tokens[0]) == tok.bos() {
        tokens.remove(0);
    }
    tokens
}

/// A moderation's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Moderation {
    pub verdict: Verdict,
    pub role: Role,
    /// The model's answer, as generated (`\n\nunsafe\nS1`).
    pub raw: String,
    pub prompt_tokens: usize,
    /// Prompt tokens found in the role's KV cache (not prefilled again).
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    /// The model's own Llama Guard template (else the built-in 3 1B one).
    pub model_template: bool,
    pub prompt: String,
}

/// Moderates with one engine, keeping a KV cache per role checked.
pub struct Moderator<B: Backend> {
    template: ChatTemplate,
    model_template: bool,
    n_ctx: usize,
    sessions: [Option<Session<B>>; 2],
}

impl<B: Backend> Moderator<B> {
    /// For a model whose chat template is `model_template`, with sessions of `n_ctx` positions.
    pub fn new(model_template: &ChatTemplate, n_ctx: usize) -> Self {
        let (template, own) = guard_template(model_template);
        Self { template, model_template: own, n_ctx, sessions: [None, None] }
    }

    pub fn context_size(&self) -> usize {
        self.n_ctx
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Render a conversation's moderation prompt (what `moderate` would run).
    pub fn render(&self, messages: &[ChatMessage], opts: &GuardOptions, today: Date) -> Result<GuardPrompt> {
        let mut p = render(&self.template, messages, opts, today)?;
        p.model_template = self.model_template;
        Ok(p)
    }

    pub fn moderate(&mut self, engine: &Engine<B>, messages: &[ChatMessage], opts: &GuardOptions, today: Date) -> Result<Moderation> {
        now(self.moderate_async(engine, messages, opts, today))
    }

    /// Check the last message of `messages`: render, prefill what the role's cache lacks, and
    /// generate a verdict greedily under the verdict grammar.
    pub async fn moderate_async(&mut self, engine: &Engine<B>, messages: &[ChatMessage], opts: &GuardOptions, today: Date) -> Result<Moderation> {
        let prompt = self.render(messages, opts, today)?;
        let tokens = tokenize(&engine.tokenizer, &prompt.text);
        let codes: Vec<&str> = prompt.categories.iter().map(|(c, _)| c.as_str()).collect();
        // Room for "\n\nunsafe\n" and every code once, a token per byte at worst.
        let budget = 10 + codes.iter().map(|c| c.len() + 1).sum::<usize>();
        let gen = GenerateOptions {
            max_tokens: budget,
            sampler: SamplerConfig { logit_bias: opts.logit_bias.clone(), ..SamplerConfig::greedy() },
            stop_at_eos: true,
            constraint: Some(Constraint::verdict(&codes)?),
            ..GenerateOptions::default()
        };
        if tokens.len() + budget > self.n_ctx {
            return Err(HearthError::ContextOverflow { tokens: tokens.len() + budget, context: self.n_ctx });
        }
        let slot = &mut self.sessions[prompt.role as usize];
        let session = match slot {
            Some(s) => s,
            None => slot.insert(engine.new_session(self.n_ctx)?),
        };
        let cached = session.start_async(engine, &tokens, &gen).await?;
        let mut out = TextOutput::new(&engine.tokenizer, &[]);
        let mut raw = String::new();
        while let Some(id) = session.next_async(engine).await? {
            raw.push_str(&out.push(id));
        }
        raw.push_str(&out.finish());
        if session.stop_reason() != Some(StopReason::Eos) || !session.constraint_complete() {
            return Err(HearthError::InvalidArgument(format!("the verdict did not complete within {budget} tokens: {raw:?}")));
        }
        let verdict = parse_verdict(&raw, &prompt.categories, &opts.excluded)?;
        Ok(Moderation {
            verdict,
            role: prompt.role,
            raw,
            prompt_tokens: tokens.len(),
            cached_tokens: cached,
            generated_tokens: session.generated().len(),
            model_template: self.model_template,
            prompt: prompt.text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse() {
        let cats: Vec<(String, String)> = TAXONOMY.iter().map(|(c, n)| (c.to_string(), n.to_string())).collect();
        assert_eq!(parse_verdict("\n\nsafe", &cats, &[]).unwrap(), Verdict { safe: true, categories: vec![] });
        let v = parse_verdict("\n\nunsafe\nS10,S1", &cats, &[]).unwrap();
        assert_eq!(v.categories, vec![("S10".into(), "Hate".into()), ("S1".into(), "Violent Crimes".into())]);
        assert!(!v.safe);
        assert!(parse_verdict("unsafe\nS6", &cats, &["S6".into()]).unwrap().safe);
        assert!(parse_verdict("unsafe\nS99", &cats, &[]).is_err());
        assert!(parse_verdict("maybe", &cats, &[]).is_err());
    }
}
