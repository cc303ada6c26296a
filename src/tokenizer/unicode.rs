//! Code point classification and GPT-2's byte <-> unicode mapping, following llama.cpp's
//! `unicode.cpp` so that splits and byte encodings match it bit for bit.

use super::unicode_data::{RANGES, WHITESPACE};

pub(crate) const UNDEFINED: u16 = 0x0001;
pub(crate) const NUMBER: u16 = 0x0002;
pub(crate) const LETTER: u16 = 0x0004;
#[allow(dead_code)]
pub(crate) const ACCENT_MARK: u16 = 0x0010;
pub(crate) const PUNCTUATION: u16 = 0x0020;
#[allow(dead_code)]
pub(crate) const SYMBOL: u16 = 0x0040;
pub(crate) const WHITESPACE_FLAG: u16 = 0x0100;

/// llama.cpp's `unicode_cpt_flags` for one code point, as a plain bit set. A position outside the
/// text being split has flags 0 (llama.cpp's `unicode_cpt_flags{}`), every real code point has at
/// least one category bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(pub u16);

impl Flags {
    pub fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    pub fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE_FLAG != 0
    }
    #[allow(dead_code)]
    pub fn is_accent_mark(self) -> bool {
        self.0 & ACCENT_MARK != 0
    }
    pub fn is_punctuation(self) -> bool {
        self.0 & PUNCTUATION != 0
    }
    #[allow(dead_code)]
    pub fn is_symbol(self) -> bool {
        self.0 & SYMBOL != 0
    }
    pub fn any(self) -> bool {
        self.0 != 0
    }
}

/// Flags of a code point (llama.cpp's `unicode_cpt_flags_from_cpt`).
pub(crate) fn flags(cpt: u32) -> Flags {
    if cpt >= 0x110000 {
        return Flags(UNDEFINED);
    }
    // The last range entry starting at or before `cpt`.
    let i = RANGES.partition_point(|&(start, _)| start <= cpt) - 1;
    let mut f = RANGES[i].1 as u16;
    if WHITESPACE.binary_search(&cpt).is_ok() {
        f |= WHITESPACE_FLAG;
    }
    Flags(f)
}

/// llama.cpp's `unicode_len_utf8`: the sequence length announced by a lead byte (1 for stray
/// continuation bytes).
pub(crate) fn utf8_len(b: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize]
}

/// The byte each of GPT-2's 256 printable stand-in characters represents, in GPT-2's order:
/// printable Latin-1 bytes map to themselves, the rest to U+0100 and up.
pub(crate) fn byte_to_unicode_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut assigned = [false; 256];
    for b in (0x21u32..=0x7E).chain(0xA1..=0xAC).chain(0xAE..=0xFF) {
        table[b as usize] = char::from_u32(b).unwrap();
        assigned[b as usize] = true;
    }
    let mut n = 0u32;
    for b in 0..256usize {
        if !assigned[b] {
            table[b] = char::from_u32(256 + n).unwrap();
            n += 1;
        }
    }
    table
}

/// The inverse of `byte_to_unicode_table`: the byte a stand-in character encodes.
pub(crate) fn unicode_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x143 => {
            // The 68 bytes that are not printable, in ascending order.
            let n = (cp - 0x100) as usize;
            (0u32..256)
                .filter(|&b| !matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF))
                .nth(n)
                .map(|b| b as u8)
        }
        _ => None,
    }
}

/// GPT-2 byte encoding of a string: each UTF-8 byte becomes its stand-in character.
pub(crate) fn byte_encode(s: &str, table: &[char; 256]) -> String {
    s.bytes().map(|b| table[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_mapping_round_trips() {
        let t = byte_to_unicode_table();
        for b in 0..=255u8 {
            assert_eq!(unicode_to_byte(t[b as usize]), Some(b));
        }
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn categories() {
        assert!(flags('a' as u32).is_letter());
        assert!(flags('é' as u32).is_letter());
        assert!(flags('中' as u32).is_letter());
        assert!(flags('7' as u32).is_number());
        assert!(flags(' ' as u32).is_whitespace());
        assert!(flags(0x3000).is_whitespace());
        assert!(flags(0xA0).is_whitespace());
        assert!(!flags('x' as u32).is_whitespace());
        assert!(flags(0x301).is_accent_mark());
        assert!(flags('!' as u32).is_punctuation());
        assert!(flags('$' as u32).is_symbol());
    }
}
