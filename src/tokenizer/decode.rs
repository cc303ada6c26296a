//! Token ids back to bytes: ports of llama.cpp's `token_to_piece` and `detokenize`, including the
//! `clean_up_tokenization_spaces` passes BPE vocabularies get.

use super::unicode::unicode_to_byte;
use super::{Kind, Tokenizer, ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_USER_DEFINED};

pub(crate) fn token_to_piece(tok: &Tokenizer, id: u32, special: bool) -> Vec<u8> {
    let Some(data) = tok.vocab.tokens.get(id as usize) else { return Vec::new() };
    let attr = data.attr;
    if !special && attr & (ATTR_UNKNOWN | ATTR_CONTROL) != 0 {
        return Vec::new();
    }
    if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
        return data.text.as_bytes().to_vec();
    }
    if attr & ATTR_NORMAL != 0 {
        return match tok.kind {
            Kind::Spm => data.text.replace('\u{2581}', " ").into_bytes(),
            Kind::Bpe(_) => decode_byte_level(&data.text),
        };
    }
    if attr & ATTR_BYTE != 0 {
        return vec![hex_byte(&data.text)];
    }
    Vec::new()
}

/// `strtol(text.substr(3, 2), 16)` for `<0xXX>` byte tokens.
fn hex_byte(text: &str) -> u8 {
    let mut v = 0u32;
    for c in text.bytes().skip(3).take(2) {
        match (c as char).to_digit(16) {
            Some(d) => v = v * 16 + d,
            None => break,
        }
    }
    v as u8
}

/// llama.cpp's `llama_decode_text`: GPT-2 stand-in characters back to bytes; a character that is
/// not a stand-in becomes `[UNK_BYTE_0x..<token text>]`.
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// What `detokenize` does before looking at pieces: which ids take part and whether the first
/// one loses a leading space.
pub(crate) fn trim_ids<'a>(tok: &Tokenizer, mut ids: &'a [u32], remove_special: bool) -> (&'a [u32], bool) {
    let mut remove_space = tok.add_space_prefix;
    if remove_special && tok.add_bos && !ids.is_empty() && Some(ids[0]) == tok.bos {
        remove_space = false;
        ids = &ids[1..];
    }
    if remove_special && tok.add_eos && !ids.is_empty() && Some(ids[ids.len() - 1]) == tok.eos {
        ids = &ids[..ids.len() - 1];
    }
    (ids, remove_space)
}

/// Piece of one token with up to one leading space stripped when `lstrip`.
pub(crate) fn piece_stripped(tok: &Tokenizer, id: u32, lstrip: bool, unparse_special: bool) -> Vec<u8> {
    let mut p = token_to_piece(tok, id, unparse_special);
    if lstrip && p.first() == Some(&b' ') {
        p.remove(0);
    }
    p
}

pub(crate) fn detokenize(tok: &Tokenizer, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
    let (ids, mut remove_space) = trim_ids(tok, ids, remove_special);
    let mut text = Vec::new();
    for &id in ids {
        text.extend_from_slice(&piece_stripped(tok, id, remove_space, unparse_special));
        remove_space = false;
    }
    if tok.clean_spaces {
        clean_spaces(&mut text);
    }
    text
}

/// The three clean-up passes of llama.cpp's `detokenize`, ported literally (in place).
pub(crate) fn clean_spaces(text: &mut Vec<u8>) {
    // first pass: " ?", " !", " .", " ," lose the space
    let total1 = text.len();
    let mut total = usize::from(total1 > 0);
    for i in 1..total1 {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // second pass: " ' " loses both spaces
    let total2 = text.len();
    let mut total = usize::from(total2 > 0);
    let mut i = 1;
    while i < total2 {
        let x = text[i];
        if x == b'\'' && i + 1 < total2 && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // third pass: " 's", " 'm", " 're", " 've" lose the space
    let total3 = text.len();
    let mut total = usize::from(total3 > 0);
    for i in 1..total3 {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < total3 {
            let x1 = text[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if i + 2 < total3 {
                let x2 = text[i + 2];
                if (x1 == b'r' && x2 == b'e') || (x1 == b'v' && x2 == b'e') {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}
