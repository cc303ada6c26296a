//! Splitting text around special tokens before tokenization: a port of llama.cpp's
//! `tokenizer_st_partition`. Special tokens (CONTROL, USER_DEFINED and UNKNOWN ones) are tried
//! longest text first; each occurrence in a still-raw text fragment becomes a token fragment.
//! With `parse_special == false` CONTROL and UNKNOWN tokens are skipped but USER_DEFINED ones
//! are still matched. LSTRIP / RSTRIP tokens eat ASCII whitespace on that side.

use super::{Vocab, ATTR_CONTROL, ATTR_LSTRIP, ATTR_RSTRIP, ATTR_UNKNOWN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// A byte range of the input text, still to be tokenized.
    Text(usize, usize),
    Token(u32),
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

pub(crate) fn partition(vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
    let mut buffer = Vec::new();
    if text.is_empty() {
        return buffer;
    }
    buffer.push(Fragment::Text(0, text.len()));
    let bytes = text.as_bytes();

    for &special_id in &vocab.special_cache {
        let data = &vocab.tokens[special_id as usize];
        if !parse_special && data.attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
            continue;
        }
        let needle = data.text.as_bytes();
        if needle.is_empty() {
            continue;
        }
        // Quick reject: most special tokens never occur.
        if memfind(bytes, needle, 0, bytes.len()).is_none() {
            continue;
        }

        let mut next = Vec::with_capacity(buffer.len() + 2);
        for frag in buffer.drain(..) {
            let Fragment::Text(mut base, mut len) = frag else {
                next.push(frag);
                continue;
            };
            loop {
                let Some(m) = memfind(bytes, needle, base, base + len) else {
                    next.push(Fragment::Text(base, len));
                    break;
                };
                if m > base {
                    let left_off = base;
                    let mut left_len = m - base;
                    if data.attr & ATTR_LSTRIP != 0 {
                        while left_len > 0 && is_space(bytes[left_off + left_len - 1]) {
                            left_len -= 1;
                        }
                    }
                    if left_len > 0 {
                        next.push(Fragment::Text(left_off, left_len));
                    }
                }
                next.push(Fragment::Token(special_id));
                if m + needle.len() < base + len {
                    let mut right_off = m + needle.len();
                    let mut right_len = len - ((m - base) + needle.len());
                    if data.attr & ATTR_RSTRIP != 0 {
                        while right_len > 0 && is_space(bytes[right_off]) {
                            right_off += 1;
                            right_len -= 1;
                        }
                    }
                    base = right_off;
                    len = right_len;
                    if len == 0 {
                        break;
                    }
                } else {
                    break;
                }
            }
        }
        buffer = next;
    }
    buffer
}

/// First occurrence of `needle` within `hay[from..to]`, as an absolute offset.
fn memfind(hay: &[u8], needle: &[u8], from: usize, to: usize) -> Option<usize> {
    if needle.len() > to.saturating_sub(from) {
        return None;
    }
    let first = needle[0];
    let last_start = to - needle.len();
    let mut i = from;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}
