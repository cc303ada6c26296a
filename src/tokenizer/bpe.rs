//! Byte-level BPE for `gpt2` vocabularies: a port of llama.cpp's `llm_tokenizer_bpe_session`.
//! Each pre-tokenized word is GPT-2 byte-encoded, split into characters, and the adjacent pair with
//! the lowest merge rank (ties: leftmost) is merged until no ranked pair is left.

use super::Vocab;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

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
    rank: u32,
    /// The pair's text when it was queued (start, length): stale entries are skipped.
    start: usize,
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
    /// The heap's top is llama.cpp's: the lowest rank, then the lowest left index.
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenize one pre-tokenized, byte-encoded word, appending ids to `out`.
pub(crate) fn tokenize_word(vocab: &Vocab, word: &str, ignore_merges: bool, key: &mut String, out: &mut Vec<u32>) {
    if word.is_empty() {
        return;
    }
    if ignore_merges {
        if let Some(id) = vocab.text_to_token(word) {
            out.push(id);
            return;
        }
    }

    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    let mut index = 0isize;
    for (i, c) in word.char_indices() {
        let n = c.len_utf8();
        symbols.push(Symbol {
            prev: index - 1,
            next: if i + n == word.len() { -1 } else { index + 1 },
            start: i,
            n,
        });
        index += 1;
    }

    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        add_bigram(vocab, word, &symbols, i as isize - 1, i as isize, key, &mut queue);
    }

    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.n == 0 || r.n == 0 {
            continue;
        }
        // llama.cpp compares the pair's current text with the text it had when queued.
        let current = &word[l.start..l.start + l.n];
        let current_r = &word[r.start..r.start + r.n];
        let queued = &word[b.start..b.start + b.size];
        if current.len() + current_r.len() != queued.len()
            || !queued.starts_with(current)
            || &queued[current.len()..] != current_r
        {
            continue;
        }
        symbols[b.left].n += r.n;
        symbols[b.right].n = 0;
        symbols[b.left].next = r.next;
        if r.next >= 0 {
            symbols[r.next as usize].prev = b.left as isize;
        }
        let left = symbols[b.left];
        add_bigram(vocab, word, &symbols, left.prev, b.left as isize, key, &mut queue);
        add_bigram(vocab, word, &symbols, b.left as isize, left.next, key, &mut queue);
    }

    for s in symbols.iter().filter(|s| s.n > 0) {
        let text = &word[s.start..s.start + s.n];
        match vocab.text_to_token(text) {
            Some(id) => out.push(id),
            None => {
                // llama.cpp looks each raw byte of the encoded text up as a one-byte token; that
                // only finds something for bytes whose stand-in is ASCII.
                for &b in text.as_bytes() {
                    if b < 0x80 {
                        if let Some(id) = vocab.text_to_token(std::str::from_utf8(&[b]).unwrap()) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}

fn add_bigram(
    vocab: &Vocab,
    word: &str,
    symbols: &[Symbol],
    left: isize,
    right: isize,
    key: &mut String,
    queue: &mut BinaryHeap<Bigram>,
) {
    if left < 0 || right < 0 {
        return;
    }
    let (l, r) = (symbols[left as usize], symbols[right as usize]);
    let lt = &word[l.start..l.start + l.n];
    let rt = &word[r.start..r.start + r.n];
    let Some(rank) = vocab.bpe_rank(lt, rt, key) else { return };
    queue.push(Bigram { left: left as usize, right: right as usize, rank, start: l.start, size: l.n + r.n });
}
