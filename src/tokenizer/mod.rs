//! Tokenizer: text <-> token ids for Llama-family GGUF vocabularies, a faithful port of llama.cpp's
//! `llama-vocab.cpp` built from GGUF metadata alone.
//!
//! * `llama` vocabularies: SentencePiece with scores (`spm`), byte fallback to `<0xXX>` tokens.
//! * `gpt2` vocabularies: byte-level BPE with merge ranks (`bpe`), split first by the
//!   pre-tokenizer `tokenizer.ggml.pre` names (`pretokenize`: llama3 / gpt2 / starcoder / default).
//! * Special tokens are cut out of the text first (`special`), as llama.cpp's
//!   `tokenizer_st_partition` does.
//! * `decode` / `token_to_piece` follow `llama_detokenize` / `llama_token_to_piece`, and
//!   `StreamDecoder` (`stream`) gives the same text one id at a time.
//!
//! No files, threads or clocks here: this module runs unchanged on wasm32.

mod bpe;
mod decode;
pub(crate) mod pretokenize;
mod special;
mod spm;
mod stream;
pub(crate) mod unicode;
mod unicode_data;

pub use stream::StreamDecoder;

use crate::error::{HearthError, Result};
use crate::gguf::Metadata;
use pretokenize::PreTokenizer;
use std::collections::{HashMap, HashSet};

// llama.cpp's llama_token_attr bits.
pub(crate) const ATTR_UNKNOWN: u32 = 1 << 0;
pub(crate) const ATTR_UNUSED: u32 = 1 << 1;
pub(crate) const ATTR_NORMAL: u32 = 1 << 2;
pub(crate) const ATTR_CONTROL: u32 = 1 << 3;
pub(crate) const ATTR_USER_DEFINED: u32 = 1 << 4;
pub(crate) const ATTR_BYTE: u32 = 1 << 5;
pub(crate) const ATTR_LSTRIP: u32 = 1 << 7;
pub(crate) const ATTR_RSTRIP: u32 = 1 << 8;

/// GGUF `tokenizer.ggml.token_type` values.
pub mod token_type {
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spm,
    Bpe(PreTokenizer),
}

#[derive(Clone, Debug)]
pub(crate) struct TokenData {
    pub text: String,
    pub score: f32,
    pub attr: u32,
}

/// The vocabulary proper: what the tokenizer algorithms look things up in.
#[derive(Clone, Debug)]
pub(crate) struct Vocab {
    pub tokens: Vec<TokenData>,
    token_to_id: HashMap<String, u32>,
    /// Merge "left right" -> rank (tokens never contain a space, so the key is unambiguous).
    bpe_ranks: HashMap<String, u32>,
    /// Token for each byte value (`<0xXX>` for SPM, the GPT-2 stand-in character for BPE).
    byte_tokens: [Option<u32>; 256],
    /// CONTROL / USER_DEFINED / UNKNOWN tokens, longest text first.
    pub special_cache: Vec<u32>,
}

impl Vocab {
    pub fn text_to_token(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    pub fn byte_to_token(&self, b: u8) -> Option<u32> {
        self.byte_tokens[b as usize]
    }

    /// Rank of merging `left` and `right`; `key` is a reusable scratch buffer.
    pub fn bpe_rank(&self, left: &str, right: &str, key: &mut String) -> Option<u32> {
        if left.contains(' ') || right.contains(' ') {
            return None;
        }
        key.clear();
        key.push_str(left);
        key.push(' ');
        key.push_str(right);
        self.bpe_ranks.get(key.as_str()).copied()
    }
}

/// A Llama-family tokenizer built from GGUF metadata.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    kind: Kind,
    ignore_merges: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    eog: HashSet<u32>,
    byte_table: [char; 256],
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] =
    &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"];
const FIM_SUF_TEXTS: &[&str] =
    &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"];
const FIM_MID_TEXTS: &[&str] =
    &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Tokens llama.cpp treats as end-of-generation by their text.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
];

fn bad(key: &str, why: impl Into<String>) -> HearthError {
    HearthError::BadMetadata { key: key.to_string(), why: why.into() }
}

impl Tokenizer {
    /// Build the tokenizer from a model's metadata (`tokenizer.ggml.*`), resolving defaults and
    /// special tokens the way llama.cpp's `llama_vocab::impl::load` does.
    pub fn from_metadata(md: &Metadata) -> Result<Self> {
        let model = md.str("tokenizer.ggml.model")?;
        let pre = md.opt_str("tokenizer.ggml.pre")?;

        // Per-model defaults.
        let (kind, mut bos, mut eos, mut unk, ignore_merges, mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces);
        match model {
            "llama" => {
                kind = Kind::Spm;
                (bos, eos, unk) = (Some(1i64), Some(2i64), Some(0i64));
                ignore_merges = false;
                (add_bos, add_eos, add_space_prefix, clean_spaces) = (true, false, true, false);
            }
            "gpt2" => {
                let Some((p, ignore)) = PreTokenizer::from_pre(pre) else {
                    return Err(HearthError::UnsupportedTokenizer(format!(
                        "gpt2 with pre-tokenizer '{}'",
                        pre.unwrap_or_default()
                    )));
                };
                kind = Kind::Bpe(p);
                (bos, eos, unk) = (Some(11), Some(11), None);
                ignore_merges = ignore;
                add_bos = p == PreTokenizer::Llama3 && ignore;
                // llama.cpp turns clean_spaces off for the GPT4O pre-tokenizers.
                (add_eos, add_space_prefix, clean_spaces) = (false, false, p != PreTokenizer::Gpt4o);
            }
            other => return Err(HearthError::UnsupportedTokenizer(other.to_string())),
        }
        if let Some(v) = md.opt_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        let texts = md
            .opt_strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| HearthError::MissingMetadata("tokenizer.ggml.tokens".into()))?;
        let n = texts.len();
        if n == 0 {
            return Err(bad("tokenizer.ggml.tokens", "the vocabulary is empty"));
        }
        let scores = md.opt_f32s("tokenizer.ggml.scores")?;
        if let Some(s) = &scores {
            if s.len() < n {
                return Err(bad("tokenizer.ggml.scores", format!("{} scores for {n} tokens", s.len())));
            }
        }
        let types = md.opt_i64s("tokenizer.ggml.token_type")?;
        if let Some(t) = &types {
            if t.len() < n {
                return Err(bad("tokenizer.ggml.token_type", format!("{} types for {n} tokens", t.len())));
            }
        }

        let mut tokens = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, &t) in texts.iter().enumerate() {
            let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { t.to_string() };
            if token_to_id.insert(text.clone(), i as u32).is_some() {
                return Err(bad("tokenizer.ggml.tokens", format!("token {i} ({text:?}) appears twice")));
            }
            let attr = match types.as_ref().map(|t| t[i]) {
                None => ATTR_NORMAL,
                Some(x) => match x as i32 {
                    token_type::UNKNOWN => ATTR_UNKNOWN,
                    token_type::UNUSED => ATTR_UNUSED,
                    token_type::NORMAL => ATTR_NORMAL,
                    token_type::CONTROL => ATTR_CONTROL,
                    token_type::USER_DEFINED => ATTR_USER_DEFINED,
                    token_type::BYTE => ATTR_BYTE,
                    _ => 0,
                },
            };
            tokens.push(TokenData { text, score: scores.as_ref().map_or(0.0, |s| s[i]), attr });
        }

        let mut bpe_ranks = HashMap::new();
        if matches!(kind, Kind::Bpe(_)) {
            let merges = md
                .opt_strings("tokenizer.ggml.merges")?
                .ok_or_else(|| HearthError::MissingMetadata("tokenizer.ggml.merges".into()))?;
            bpe_ranks.reserve(merges.len());
            for (rank, m) in merges.iter().enumerate() {
                // llama.cpp splits at the first space after the first byte.
                if m.len() > 1 && m.as_bytes()[1..].contains(&b' ') {
                    bpe_ranks.entry(m.to_string()).or_insert(rank as u32);
                }
            }
        }

        let byte_table = unicode::byte_to_unicode_table();
        let mut byte_tokens = [None; 256];
        for b in 0..256usize {
            byte_tokens[b] = match kind {
                Kind::Spm => token_to_id
                    .get(&format!("<0x{b:02X}>"))
                    .or_else(|| std::str::from_utf8(&[b as u8]).ok().and_then(|s| token_to_id.get(s)))
                    .copied(),
                Kind::Bpe(_) => token_to_id.get(byte_table[b].encode_utf8(&mut [0; 4]) as &str).copied(),
            };
        }

        // Special token ids: defaults out of range are dropped, metadata ids out of range ignored.
        let read_id = |key: &str, default: Option<i64>| -> Result<Option<u32>> {
            let mut id = default.filter(|&d| d >= 0 && (d as usize) < n).map(|d| d as u32);
            if let Some(v) = md.opt_i64(key)? {
                if v >= 0 && (v as usize) < n {
                    id = Some(v as u32);
                }
            }
            Ok(id)
        };
        let bos_id = read_id("tokenizer.ggml.bos_token_id", bos.take())?;
        let eos_id = read_id("tokenizer.ggml.eos_token_id", eos.take())?;
        let mut eot = read_id("tokenizer.ggml.eot_token_id", None)?;
        let mut eom = read_id("tokenizer.ggml.eom_token_id", None)?;
        let unk_id = read_id("tokenizer.ggml.unknown_token_id", unk.take())?;
        let pad = read_id("tokenizer.ggml.padding_token_id", None)?;
        let mut fim_pre = read_id("tokenizer.ggml.fim_pre_token_id", None)?;
        let mut fim_suf = read_id("tokenizer.ggml.fim_suf_token_id", None)?;
        let mut fim_mid = read_id("tokenizer.ggml.fim_mid_token_id", None)?;
        let mut fim_pad = read_id("tokenizer.ggml.fim_pad_token_id", None)?;
        let mut fim_rep = read_id("tokenizer.ggml.fim_rep_token_id", None)?;
        let mut fim_sep = read_id("tokenizer.ggml.fim_sep_token_id", None)?;

        if let Some(v) = md.opt_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = md.opt_bool("tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }

        // Auto-detect special tokens by their text (llama.cpp walks a hash map; we walk ids in
        // order, which only matters when a vocabulary has two candidates for one role).
        for (i, t) in tokens.iter_mut().enumerate() {
            let i = i as u32;
            for (slot, texts) in [
                (&mut eot, EOT_TEXTS),
                (&mut eom, EOM_TEXTS),
                (&mut fim_pre, FIM_PRE_TEXTS),
                (&mut fim_suf, FIM_SUF_TEXTS),
                (&mut fim_mid, FIM_MID_TEXTS),
                (&mut fim_pad, FIM_PAD_TEXTS),
                (&mut fim_rep, FIM_REP_TEXTS),
                (&mut fim_sep, FIM_SEP_TEXTS),
            ] {
                if slot.is_none() && texts.contains(&t.text.as_str()) {
                    *slot = Some(i);
                    t.attr |= ATTR_CONTROL;
                }
            }
        }
        // Control tokens named "unused".
        for t in tokens.iter_mut() {
            if t.attr & ATTR_CONTROL != 0 && t.text.contains("unused") {
                t.attr |= ATTR_UNUSED;
            }
        }
        // End-of-generation set.
        let mut eog = HashSet::new();
        eog.extend([fim_pad, fim_rep, fim_sep].into_iter().flatten());
        for (i, t) in tokens.iter_mut().enumerate() {
            if EOG_TEXTS.contains(&t.text.as_str()) {
                eog.insert(i as u32);
                t.attr |= ATTR_CONTROL;
            }
        }
        for t in tokens.iter_mut() {
            if matches!(t.text.as_str(), "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>") {
                t.attr = ATTR_USER_DEFINED;
            }
        }
        eog.extend([eos_id, eot, eom].into_iter().flatten());
        {
            let has = |s: &str| eog.iter().any(|&id| tokens[id as usize].text == s);
            let end_id = eog.iter().copied().find(|&id| tokens[id as usize].text == "<|end|>");
            let (ret, call, flush) = (has("<|return|>"), has("<|call|>") || has("<|calls|>"), has("<|flush|>"));
            let normal_s = has("<|tool_response>") || has("<|plamo:eos|>");
            let s_id = eog.iter().copied().find(|&id| tokens[id as usize].text == "</s>");
            if let Some(end_id) = end_id {
                if (ret && call) || (call && flush) {
                    eog.remove(&end_id);
                    tokens[end_id as usize].attr = ATTR_USER_DEFINED;
                }
            }
            if let (Some(s_id), true) = (s_id, normal_s) {
                eog.remove(&s_id);
                tokens[s_id as usize].attr = ATTR_NORMAL;
            }
        }

        // Special-token cache: longest text first (stable, so equal lengths keep id order).
        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&i| tokens[i as usize].attr & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0)
            .collect();
        special_cache.sort_by(|&a, &b| tokens[b as usize].text.len().cmp(&tokens[a as usize].text.len()));

        // Per-model strip attributes llama.cpp sets by name.
        let name = md.opt_str("general.name")?.unwrap_or_default().to_lowercase();
        let arch = md.opt_str("general.architecture")?.unwrap_or_default();
        let pre_s = pre.unwrap_or_default();
        let set_attr = |tokens: &mut Vec<TokenData>, text: &str, attr: u32, on: bool| {
            if let Some(&id) = token_to_id.get(text) {
                let a = &mut tokens[id as usize].attr;
                *a = if on { *a | attr } else { *a & !attr };
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"].iter().any(|s| pre_s.contains(s))
            || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|s| arch.contains(s))
        {
            set_attr(&mut tokens, "<mask>", ATTR_LSTRIP, true);
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_cache {
                tokens[id as usize].attr |= ATTR_RSTRIP;
            }
            set_attr(&mut tokens, "</s>", ATTR_RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set_attr(&mut tokens, t, ATTR_RSTRIP, false);
            }
        } else if name.contains("modern-bert") {
            set_attr(&mut tokens, "[MASK]", ATTR_LSTRIP, true);
        }

        Ok(Tokenizer {
            vocab: Vocab { tokens, token_to_id, bpe_ranks, byte_tokens, special_cache },
            kind,
            ignore_merges,
            bos: bos_id,
            eos: eos_id,
            eot,
            eom,
            unk: unk_id,
            pad,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            eog,
            byte_table,
        })
    }

    /// Text to token ids, as `llama_tokenize(vocab, text, add_special, parse_special)`:
    /// `add_special` adds BOS/EOS where the vocabulary says to; `parse_special` lets CONTROL
    /// tokens such as `<|eot_id|>` written in the text become those tokens.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = special::partition(&self.vocab, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            if let Some(bos) = self.bos {
                out.push(bos);
            }
        }
        match self.kind {
            Kind::Spm => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in &fragments {
                    match *f {
                        special::Fragment::Text(off, len) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[off..off + len].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm::tokenize(&self.vocab, &buf, &mut out);
                            prev_special = false;
                        }
                        special::Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Kind::Bpe(pre) => {
                let mut key = String::new();
                for f in &fragments {
                    match *f {
                        special::Fragment::Text(off, len) => {
                            for word in pre.split(&text[off..off + len]) {
                                let encoded = unicode::byte_encode(word, &self.byte_table);
                                bpe::tokenize_word(&self.vocab, &encoded, self.ignore_merges, &mut key, &mut out);
                            }
                        }
                        special::Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            if let Some(eos) = self.eos {
                out.push(eos);
            }
        }
        out
    }

    /// The bytes a token stands for, as `llama_token_to_piece(vocab, id, buf, len, 0, special)`:
    /// CONTROL and UNKNOWN tokens give their text only when `special` is set; ids out of range
    /// give nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        decode::token_to_piece(self, id, special)
    }

    /// Token ids to text, as `llama_detokenize(vocab, ids, .., remove_special, unparse_special)`
    /// (invalid UTF-8 is replaced with U+FFFD).
    pub fn decode(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        String::from_utf8_lossy(&decode::detokenize(self, ids, remove_special, unparse_special)).into_owned()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.tokens.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// Whether generating this token ends generation (eos, eot, eom and the tokens llama.cpp
    /// recognises by text, e.g. `<|eot_id|>`, `<|end_of_text|>`, `</s>`, `<|im_end|>`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.eog.iter().copied().collect();
        v.sort_unstable();
        v
    }
    /// The token's text as stored in the vocabulary (`▁`/`Ġ` escapes included).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(|t| t.text.as_str())
    }
    /// Whether the token is a CONTROL token (BOS, EOS, chat markers, ...).
    pub fn is_control(&self, id: u32) -> bool {
        self.attr(id) & ATTR_CONTROL != 0
    }

    pub(crate) fn attr(&self, id: u32) -> u32 {
        self.vocab.tokens.get(id as usize).map_or(0, |t| t.attr)
    }
}

#[cfg(test)]
mod tests;
