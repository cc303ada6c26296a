//! Pre-tokenizers for byte-level BPE: split text into words before merging, exactly as llama.cpp's
//! `unicode_regex_split` does for the `pre` types Hearth supports. The llama3 and gpt2 splitters
//! are ports of llama.cpp's hand-written matchers (`unicode_regex_split_custom_llama3/gpt2`); the
//! few regexes llama.cpp runs through `std::regex` are written out as small matchers here.
//!
//! Every splitter works on code points and refines a list of chunk lengths (in code points), so
//! several can run in sequence, each within the chunks the previous one made.

use super::unicode::{flags, Flags};

/// Which splitting rules a `gpt2`-model vocabulary uses (from `tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreTokenizer {
    /// llama.cpp's LLAMA3 (also dbrx, smaug): the Llama 3 regex.
    Llama3,
    /// llama.cpp's GPT2 (gpt-2, mpt, olmo, ...): the GPT-2 regex.
    Gpt2,
    /// llama.cpp's STARCODER family: each digit alone, then the GPT-2 regex.
    Starcoder,
    /// llama.cpp's DEFAULT (missing or "default" pre): four regexes in sequence.
    Default,
    /// llama.cpp's GPT4O (gpt-4o, llama4, ...): the GPT-4o regex, with case runs (`match_gpt4o`).
    Gpt4o,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp picks for a `tokenizer.ggml.pre` value, and whether it sets
    /// `ignore_merges` (use a whole word directly when it is a token). None: llama.cpp would either
    /// refuse the value ("unknown pre-tokenizer type") or use a splitter Hearth does not have.
    pub fn from_pre(pre: Option<&str>) -> Option<(Self, bool)> {
        let Some(pre) = pre else { return Some((Self::Default, false)) };
        Some(match pre {
            "" | "default" => (Self::Default, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
            | "jina-v5-nano" => (Self::Llama3, true),
            "dbrx" | "smaug-bpe" => (Self::Llama3, false),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
            | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => (Self::Gpt2, false),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (Self::Starcoder, false)
            }
            "gpt-4o" | "llama4" | "kanana2" | "talkie" => (Self::Gpt4o, false),
            _ => return None,
        })
    }

    /// Split `text` into words (as byte ranges of `text`).
    pub fn split<'t>(self, text: &'t str) -> Vec<&'t str> {
        let mut cpts = Vec::with_capacity(text.len());
        let mut byte_at = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            cpts.push(c as u32);
            byte_at.push(i);
        }
        byte_at.push(text.len());
        let mut offsets = vec![cpts.len()];
        match self {
            Self::Llama3 => offsets = split_llama3(&cpts, &offsets),
            Self::Gpt2 => offsets = split_gpt2(&cpts, &offsets),
            Self::Starcoder => {
                offsets = split_matches(&cpts, &offsets, |c, p, _| flags(c[p]).is_number().then_some(1));
                offsets = split_gpt2(&cpts, &offsets);
            }
            Self::Gpt4o => offsets = split_matches(&cpts, &offsets, match_gpt4o),
            Self::Default => {
                // "[\p{P}\$\+<=>\^~\|]+"
                let punct = |c: u32| flags(c).is_punctuation() && !flags(c).is_whitespace()
                    || matches!(c, 0x24 | 0x2B | 0x3C | 0x3D | 0x3E | 0x5E | 0x7E | 0x7C);
                offsets = split_matches(&cpts, &offsets, |c, p, end| run(c, p, end, punct));
                // the GPT-2 regex (llama.cpp recognises it and uses its custom splitter)
                offsets = split_gpt2(&cpts, &offsets);
                // "\p{N}+"
                let number = |c: u32| flags(c).is_number() && !flags(c).is_whitespace();
                offsets = split_matches(&cpts, &offsets, |c, p, end| run(c, p, end, number));
                // "[0-9][0-9][0-9]"
                offsets = split_matches(&cpts, &offsets, |c, p, end| {
                    (p + 3 <= end && c[p..p + 3].iter().all(|&d| (0x30..=0x39).contains(&d))).then_some(3)
                });
            }
        }
        let mut words = Vec::with_capacity(offsets.len());
        let mut start = 0;
        for len in offsets {
            words.push(&text[byte_at[start]..byte_at[start + len]]);
            start += len;
        }
        words
    }
}

/// Length of the run of code points from `p` that satisfy `pred` (None when empty).
fn run(c: &[u32], p: usize, end: usize, pred: impl Fn(u32) -> bool) -> Option<usize> {
    let n = c[p..end].iter().take_while(|&&x| pred(x)).count();
    (n > 0).then_some(n)
}

/// llama.cpp's `unicode_regex_split_stl`: within each chunk, every leftmost match of `matcher`
/// becomes its own chunk, and so does each stretch between matches. `matcher(cpts, pos, end)`
/// returns the length of a non-empty match starting at `pos`.
fn split_matches(
    cpts: &[u32],
    offsets: &[usize],
    matcher: impl Fn(&[u32], usize, usize) -> Option<usize>,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0;
    for &len in offsets {
        let end = start + len;
        let mut prev = start;
        let mut pos = start;
        while pos < end {
            match matcher(cpts, pos, end) {
                Some(n) => {
                    if pos > prev {
                        out.push(pos - prev);
                    }
                    out.push(n);
                    pos += n;
                    prev = pos;
                }
                None => pos += 1,
            }
        }
        if end > prev {
            out.push(end - prev);
        }
        start = end;
    }
    out
}

/// llama.cpp's GPT4O regex, which it runs through `std::regex` over "collapsed" text (each code
/// point past ASCII replaced by a byte for its category: letters, numbers, punctuation, accent
/// marks, symbols, whitespace as \x0B, anything else as \xD0; `\p{L}` then means ASCII letters or
/// the letter byte). So a non-ASCII letter is both "not a-z" and "not A-Z", and a non-ASCII
/// symbol or mark is no letter. Returns the length of the first alternative that matches at `p`,
/// with ECMAScript's backtracking:
/// `[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?`
/// `|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|...)?`
/// `|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn match_gpt4o(c: &[u32], p: usize, end: usize) -> Option<usize> {
    let ascii = |x: u32| x < 0x80;
    // A class as the collapsed text sees it: ASCII as itself, other code points by category.
    let class = |x: u32, in_ascii: fn(&u8) -> bool, category: fn(Flags) -> bool| {
        if ascii(x) {
            in_ascii(&(x as u8))
        } else {
            let f = flags(x);
            category(f) && !f.is_whitespace()
        }
    };
    let letter = |x: u32| class(x, u8::is_ascii_alphabetic, Flags::is_letter);
    let number = |x: u32| class(x, u8::is_ascii_digit, Flags::is_number);
    // std::regex's \s in the "C" locale; other whitespace was collapsed to \x0B.
    let space = |x: u32| if ascii(x) { matches!(x, 0x09..=0x0D | 0x20) } else { flags(x).is_whitespace() };
    let newline = |x: u32| x == 0x0A || x == 0x0D;
    let upper = |x: u32| letter(x) && !(0x61..=0x7A).contains(&x); // (?=[\p{L}])([^a-z])
    let lower = |x: u32| letter(x) && !(0x41..=0x5A).contains(&x); // (?=[\p{L}])([^A-Z])
    let count = |from: usize, pred: &dyn Fn(u32) -> bool| c[from..end].iter().take_while(|&&x| pred(x)).count();
    let contraction = |q: usize| -> usize {
        if q + 1 < end && c[q] == '\'' as u32 {
            let l = |i: usize| if q + i < end { ascii_lower(c[q + i]) } else { 0 };
            if [b's', b't', b'm', b'd'].iter().any(|&k| l(1) == k as u32) {
                return 2;
            }
            if [(b'r', b'e'), (b'v', b'e'), (b'l', b'l')].iter().any(|&(a, b)| l(1) == a as u32 && l(2) == b as u32) {
                return 3;
            }
        }
        0
    };

    // The two letter alternatives, after the optional prefix (without it they would start at a
    // non-letter and fail, so only the prefixed try counts when there is one).
    let q = if !newline(c[p]) && !letter(c[p]) && !number(c[p]) { p + 1 } else { p };
    if q < end {
        let uppers = count(q, &upper);
        // U* then L+: U* gives back characters until L+ can take one.
        for j in (0..=uppers).rev() {
            let lowers = count(q + j, &lower);
            if lowers > 0 {
                let e = q + j + lowers;
                return Some(e + contraction(e) - p);
            }
        }
        // U+ then L*.
        if uppers > 0 {
            let e = q + uppers + count(q + uppers, &lower);
            return Some(e + contraction(e) - p);
        }
    }
    // \p{N}{1,3}
    let n = count(p, &number);
    if n > 0 {
        return Some(n.min(3));
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
    let other = |x: u32| !space(x) && !letter(x) && !number(x);
    let q = if c[p] == ' ' as u32 { p + 1 } else { p };
    let o = if q < end { count(q, &other) } else { 0 };
    if o > 0 {
        let e = q + o;
        return Some(e + count(e, &|x| newline(x) || x == '/' as u32) - p);
    }
    let ws = count(p, &space);
    if ws == 0 {
        return None;
    }
    // \s*[\r\n]+: up to the run's last newline.
    if let Some(last) = (0..ws).rev().find(|&i| newline(c[p + i])) {
        return Some(last + 1);
    }
    // \s+(?!\S), else \s+
    if p + ws == end || ws == 1 {
        return Some(ws);
    }
    Some(ws - 1)
}

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

/// The view of one chunk that llama.cpp's custom splitters use: positions outside the chunk read
/// as OUT_OF_RANGE with empty flags.
struct Chunk<'a> {
    cpts: &'a [u32],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Chunk<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    fn flags(&self, pos: usize) -> Flags {
        if self.ini <= pos && pos < self.end {
            flags(self.cpts[pos])
        } else {
            Flags(0)
        }
    }
    fn add_token(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

fn ascii_lower(c: u32) -> u32 {
    if (0x41..=0x5A).contains(&c) {
        c + 32
    } else {
        c
    }
}

/// Port of `unicode_regex_split_custom_llama3`:
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
pub(crate) fn split_llama3(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0;
    for &len in offsets {
        let (ini, end) = (start, start + len);
        start = end;
        let mut ch = Chunk { cpts, ini, end, prev_end: ini, out: &mut out };
        let mut pos = ini;
        while pos < end {
            let cpt = ch.cpt(pos);
            let fl = ch.flags(pos);

            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            // (no code point outside ASCII lowercases to one of these letters in llama.cpp's tables)
            if cpt == '\'' as u32 && pos + 1 < end {
                let next = ascii_lower(ch.cpt(pos + 1));
                if next == 's' as u32 || next == 't' as u32 || next == 'm' as u32 || next == 'd' as u32 {
                    pos += ch.add_token(pos + 2);
                    continue;
                }
                if pos + 2 < end {
                    let next2 = ascii_lower(ch.cpt(pos + 2));
                    if (next == 'r' as u32 && next2 == 'e' as u32)
                        || (next == 'v' as u32 && next2 == 'e' as u32)
                        || (next == 'l' as u32 && next2 == 'l' as u32)
                    {
                        pos += ch.add_token(pos + 3);
                        continue;
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(cpt == '\r' as u32 || cpt == '\n' as u32 || fl.is_number())
                && (fl.is_letter() || ch.flags(pos + 1).is_letter())
            {
                pos += 1;
                while ch.flags(pos).is_letter() {
                    pos += 1;
                }
                ch.add_token(pos);
                continue;
            }

            // \p{N}{1,3}
            if fl.is_number() {
                let mut ini = pos;
                while ch.flags(pos).is_number() {
                    pos += 1;
                    if pos - ini >= 3 {
                        ch.add_token(pos);
                        ini = pos;
                    }
                }
                ch.add_token(pos);
                continue;
            }

            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            let mut fl2 = if cpt == ' ' as u32 { ch.flags(pos + 1) } else { fl };
            if !(fl2.is_whitespace() || fl2.is_letter() || fl2.is_number()) && fl.any() {
                pos += (cpt == ' ' as u32) as usize;
                while !(fl2.is_whitespace() || fl2.is_letter() || fl2.is_number()) && fl2.any() {
                    pos += 1;
                    fl2 = ch.flags(pos);
                }
                let mut c2 = ch.cpt(pos);
                while c2 == '\r' as u32 || c2 == '\n' as u32 {
                    pos += 1;
                    c2 = ch.cpt(pos);
                }
                ch.add_token(pos);
                continue;
            }

            let mut num_ws = 0;
            let mut last_end_r_or_n = 0;
            while ch.flags(pos + num_ws).is_whitespace() {
                let c2 = ch.cpt(pos + num_ws);
                if c2 == '\r' as u32 || c2 == '\n' as u32 {
                    last_end_r_or_n = pos + num_ws + 1;
                }
                num_ws += 1;
            }

            // \s*[\r\n]+
            if last_end_r_or_n > 0 {
                pos = last_end_r_or_n;
                ch.add_token(pos);
                continue;
            }

            // \s+(?!\S)
            if num_ws > 1 && ch.cpt(pos + num_ws) != OUT_OF_RANGE {
                pos += num_ws - 1;
                ch.add_token(pos);
                continue;
            }

            // \s+
            if num_ws > 0 {
                pos += num_ws;
                ch.add_token(pos);
                continue;
            }

            // no match
            pos += 1;
            ch.add_token(pos);
        }
    }
    out
}

/// Port of `unicode_regex_split_custom_gpt2`:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
pub(crate) fn split_gpt2(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0;
    for &len in offsets {
        let (ini, end) = (start, start + len);
        start = end;
        let mut ch = Chunk { cpts, ini, end, prev_end: ini, out: &mut out };
        let mut pos = ini;
        while pos < end {
            let cpt = ch.cpt(pos);
            let fl = ch.flags(pos);

            // 's|'t|'re|'ve|'m|'ll|'d
            if cpt == '\'' as u32 && pos + 1 < end {
                let next = ch.cpt(pos + 1);
                if next == 's' as u32 || next == 't' as u32 || next == 'm' as u32 || next == 'd' as u32 {
                    pos += ch.add_token(pos + 2);
                    continue;
                }
                if pos + 2 < end {
                    let next2 = ch.cpt(pos + 2);
                    if (next == 'r' as u32 && next2 == 'e' as u32)
                        || (next == 'v' as u32 && next2 == 'e' as u32)
                        || (next == 'l' as u32 && next2 == 'l' as u32)
                    {
                        pos += ch.add_token(pos + 3);
                        continue;
                    }
                }
            }

            let mut fl2 = if cpt == ' ' as u32 { ch.flags(pos + 1) } else { fl };
            // <space>?\p{L}+
            if fl2.is_letter() {
                pos += (cpt == ' ' as u32) as usize;
                while fl2.is_letter() {
                    pos += 1;
                    fl2 = ch.flags(pos);
                }
                ch.add_token(pos);
                continue;
            }
            // <space>?\p{N}+
            if fl2.is_number() {
                pos += (cpt == ' ' as u32) as usize;
                while fl2.is_number() {
                    pos += 1;
                    fl2 = ch.flags(pos);
                }
                ch.add_token(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+
            if !(fl2.is_whitespace() || fl2.is_letter() || fl2.is_number()) && fl2.any() {
                pos += (cpt == ' ' as u32) as usize;
                while !(fl2.is_whitespace() || fl2.is_letter() || fl2.is_number()) && fl2.any() {
                    pos += 1;
                    fl2 = ch.flags(pos);
                }
                ch.add_token(pos);
                continue;
            }

            let mut num_ws = 0;
            while ch.flags(pos + num_ws).is_whitespace() {
                num_ws += 1;
            }

            // \s+(?!\S)
            if num_ws > 1 && ch.cpt(pos + num_ws) != OUT_OF_RANGE {
                pos += num_ws - 1;
                ch.add_token(pos);
                continue;
            }

            // \s+
            if num_ws > 0 {
                pos += num_ws;
                ch.add_token(pos);
                continue;
            }

            pos += 1;
            ch.add_token(pos);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_splits_like_the_regex() {
        let s = PreTokenizer::Llama3;
        assert_eq!(s.split("Hello world"), vec!["Hello", " world"]);
        assert_eq!(s.split("don't I'LL"), vec!["don", "'t", " I", "'LL"]);
        assert_eq!(s.split("1234567"), vec!["123", "456", "7"]);
        assert_eq!(s.split("a  b"), vec!["a", " ", " b"]);
        assert_eq!(s.split("x\n\n\ny"), vec!["x", "\n\n\n", "y"]);
        assert_eq!(s.split("  "), vec!["  "]);
        assert_eq!(s.split("(foo);\n"), vec!["(foo", ");\n"]);
        assert_eq!(s.split(""), Vec::<&str>::new());
    }

    #[test]
    fn gpt2_splits_like_the_regex() {
        let s = PreTokenizer::Gpt2;
        assert_eq!(s.split("Hello world!!"), vec!["Hello", " world", "!!"]);
        assert_eq!(s.split("I'll 12345"), vec!["I", "'ll", " 12345"]);
        assert_eq!(s.split("a   b"), vec!["a", "  ", " b"]);
    }

    #[test]
    fn gpt4o_splits_case_runs_like_the_regex() {
        let s = PreTokenizer::Gpt4o;
        assert_eq!(s.split("Hello World"), vec!["Hello", " World"]);
        assert_eq!(s.split("helloWorld HELLO"), vec!["hello", "World", " HELLO"]);
        assert_eq!(s.split("DON'T don't"), vec!["DON'T", " don't"]);
        assert_eq!(s.split("1234567"), vec!["123", "456", "7"]);
        assert_eq!(s.split("a/b//\n\nx"), vec!["a", "/b", "//\n\n", "x"]);
        assert_eq!(s.split("x  \n\n  y"), vec!["x", "  \n\n", " ", " y"]);
    }

    #[test]
    fn default_splits_punctuation_and_digit_triples() {
        let s = PreTokenizer::Default;
        assert_eq!(s.split("a+b 1234567"), vec!["a", "+", "b", " ", "123", "456", "7"]);
    }
}
