//! Incremental detokenization for generation: ids go in one at a time, text comes out only once
//! it is complete UTF-8, and the concatenation of everything returned equals
//! `Tokenizer::decode` of all the ids.

use super::decode::{clean_spaces, piece_stripped};
use super::Tokenizer;

pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    remove_special: bool,
    unparse_special: bool,
    /// No id seen yet (the first may be a BOS to drop, or lose a leading space).
    at_start: bool,
    remove_space: bool,
    /// An EOS held back: `decode` drops a trailing one when removing specials.
    held_eos: Option<u32>,
    /// Raw bytes not yet run through the clean-up passes (BPE vocabularies only).
    raw: Vec<u8>,
    /// Final bytes not yet returned (an incomplete UTF-8 sequence at most, after each call).
    ready: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// Same text as `tok.decode(ids, false, false)`: control tokens are not rendered.
    pub fn new(tok: &'a Tokenizer) -> Self {
        Self::with_options(tok, false, false)
    }

    /// Same text as `tok.decode(ids, remove_special, unparse_special)`.
    pub fn with_options(tok: &'a Tokenizer, remove_special: bool, unparse_special: bool) -> Self {
        StreamDecoder {
            tok,
            remove_special,
            unparse_special,
            at_start: true,
            remove_space: tok.add_space_prefix,
            held_eos: None,
            raw: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// Feed one id; returns the text that became complete (often empty mid-character).
    pub fn push(&mut self, id: u32) -> String {
        let tok = self.tok;
        if self.at_start {
            self.at_start = false;
            if self.remove_special && tok.add_bos && Some(id) == tok.bos {
                self.remove_space = false;
                return String::new();
            }
        }
        if self.remove_special && tok.add_eos && Some(id) == tok.eos {
            // Only a *trailing* EOS is dropped: hold it until we know whether more follows.
            if let Some(prev) = self.held_eos.replace(id) {
                self.append(prev);
            }
            return self.take(false);
        }
        if let Some(prev) = self.held_eos.take() {
            self.append(prev);
        }
        self.append(id);
        self.take(false)
    }

    /// Everything still held back (an incomplete character comes out as U+FFFD).
    pub fn finish(mut self) -> String {
        self.held_eos = None;
        self.take(true)
    }

    fn append(&mut self, id: u32) {
        let p = piece_stripped(self.tok, id, self.remove_space, self.unparse_special);
        self.remove_space = false;
        if self.tok.clean_spaces {
            self.raw.extend_from_slice(&p);
        } else {
            self.ready.extend_from_slice(&p);
        }
    }

    /// Move cleaned bytes to `ready` and return its complete UTF-8 prefix (all of it when `all`).
    fn take(&mut self, all: bool) -> String {
        if self.tok.clean_spaces {
            // The clean-up passes only look a few bytes around spaces and apostrophes, so text
            // can be cleaned in pieces cut where 4 bytes in a row are neither.
            let cut = if all { self.raw.len() } else { safe_cut(&self.raw) };
            if cut > 0 {
                let mut head: Vec<u8> = self.raw.drain(..cut).collect();
                clean_spaces(&mut head);
                self.ready.extend_from_slice(&head);
            }
        }
        let mut out = String::new();
        let mut consumed = 0;
        loop {
            match std::str::from_utf8(&self.ready[consumed..]) {
                Ok(s) => {
                    out.push_str(s);
                    consumed = self.ready.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.ready[consumed..consumed + valid]).unwrap());
                    consumed += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            consumed += n;
                        }
                        None if all => {
                            out.push('\u{FFFD}');
                            consumed = self.ready.len();
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        self.ready.drain(..consumed);
        out
    }
}

/// The largest p such that raw[p-3..=p] holds no space or apostrophe (0 when none): cleaning
/// raw[..p] and raw[p..] separately then gives the same bytes as cleaning all of it.
fn safe_cut(raw: &[u8]) -> usize {
    let quiet = |b: u8| b != b' ' && b != b'\'';
    let mut p = raw.len().saturating_sub(1);
    while p >= 3 {
        if raw[p - 3..=p].iter().all(|&b| quiet(b)) {
            return p;
        }
        p -= 1;
    }
    0
}
