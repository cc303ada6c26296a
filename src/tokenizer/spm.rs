//! SentencePiece-style tokenization for `llama` vocabularies: a port of llama.cpp's
//! `llm_tokenizer_spm_session`. Start from single UTF-8 characters, repeatedly merge the adjacent
//! pair whose concatenation is the highest-scoring vocabulary entry (ties: leftmost), then emit
//! each final symbol as its token or, when it is not one, as `<0xXX>` byte tokens.

use super::Vocab;
use std::collections::{BinaryHeap, HashMap};
use std::cmp::Ordering;

#[derive(Clone, Copy)]
struct Symbol {
    prev: isize,
    next: isize,
    start: usize,
    n: usize,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The heap's top is llama.cpp's: the highest score, then the lowest left index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let mut offs = 0;
    while offs < bytes.len() {
        let len = super::unicode::utf8_len(bytes[offs]).min(bytes.len() - offs);
        let index = symbols.len() as isize;
        offs += len;
        symbols.push(Symbol {
            prev: index - 1,
            next: if offs == bytes.len() { -1 } else { index + 1 },
            start: offs - len,
            n: len,
        });
    }
    if symbols.is_empty() {
        return;
    }

    let mut session = Session { vocab, text, symbols, queue: BinaryHeap::new(), rev_merge: HashMap::new() };
    for i in 1..session.symbols.len() {
        session.try_add_bigram(i as isize - 1, i as isize);
    }

    while let Some(bigram) = session.queue.pop() {
        let (l, r) = (session.symbols[bigram.left], session.symbols[bigram.right]);
        // Skip pairs where one side has since been merged away or grown.
        if l.n == 0 || r.n == 0 || l.n + r.n != bigram.size {
            continue;
        }
        session.symbols[bigram.left].n += r.n;
        session.symbols[bigram.right].n = 0;
        session.symbols[bigram.left].next = r.next;
        if r.next >= 0 {
            session.symbols[r.next as usize].prev = bigram.left as isize;
        }
        let left = session.symbols[bigram.left];
        session.try_add_bigram(left.prev, bigram.left as isize);
        session.try_add_bigram(bigram.left as isize, left.next);
    }

    let mut i: isize = 0;
    while i != -1 {
        session.resegment(i as usize, out, 0);
        i = session.symbols[i as usize].next;
    }
}

struct Session<'a> {
    vocab: &'a Vocab,
    text: &'a str,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
    rev_merge: HashMap<&'a str, (usize, usize)>,
}

impl<'a> Session<'a> {
    fn sym_text(&self, s: &Symbol) -> &'a str {
        &self.text[s.start..s.start + s.n]
    }

    fn try_add_bigram(&mut self, left: isize, right: isize) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (self.symbols[left as usize], self.symbols[right as usize]);
        let text = &self.text[l.start..l.start + l.n + r.n];
        let Some(id) = self.vocab.text_to_token(text) else { return };
        self.queue.push(Bigram {
            left: left as usize,
            right: right as usize,
            score: self.vocab.tokens[id as usize].score,
            size: text.len(),
        });
        self.rev_merge.insert(text, (left as usize, right as usize));
    }

    fn resegment(&self, index: usize, out: &mut Vec<u32>, depth: usize) {
        let sym = self.symbols[index];
        let text = self.sym_text(&sym);
        if let Some(id) = self.vocab.text_to_token(text) {
            out.push(id);
            return;
        }
        match self.rev_merge.get(text) {
            // (the depth guard only matters for vocabularies llama.cpp would loop on)
            Some(&(l, r)) if depth < 64 => {
                self.resegment(l, out, depth + 1);
                self.resegment(r, out, depth + 1);
            }
            _ => {
                for &b in text.as_bytes() {
                    if let Some(id) = self.vocab.byte_to_token(b) {
                        out.push(id);
                    }
                }
            }
        }
    }
}
