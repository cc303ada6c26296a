//! Saved sessions: a conversation's cached tokens and their KV rows as bytes, so that it can be
//! put back later (the browser keeps them in OPFS) and go on with exactly the tokens an unbroken
//! session gives. The bytes are tied to the model file (its SHA-256, given by the caller, who has
//! the file), the context size and the cache type; anything else is refused with a typed error
//! (`bad_session` for bytes that are not a whole saved session, `session_mismatch` for one made
//! with another model, context or cache type).
//!
//! Format, version 1, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | `HEARTHKV` |
//! | 4 | version (1) |
//! | 32 | SHA-256 of the model file |
//! | 4 × 5 | layers, KV row values (`kv_dim`), vocabulary size, context size, cache type (0 f32, 1 f16, 2 q8_0) |
//! | 4 | n, the cached tokens |
//! | 4 × n | their ids |
//! | 8 | bytes of cache that follow |
//! | … | per layer the keys' rows `0..n`, then the values', as ggml stores the cache type (`Backend::read_kv`) |

use crate::backend::KvType;
use crate::error::{HearthError, Result};

pub const MAGIC: &[u8; 8] = b"HEARTHKV";
pub const VERSION: u32 = 1;

/// What a saved session was made with, and its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedHeader {
    pub model_sha256: [u8; 32],
    pub n_layer: u32,
    pub kv_dim: u32,
    pub n_vocab: u32,
    pub n_ctx: u32,
    pub kv_type: KvType,
    pub tokens: Vec<u32>,
}

fn kv_code(t: KvType) -> u32 {
    match t {
        KvType::F32 => 0,
        KvType::F16 => 1,
        KvType::Q8_0 => 2,
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The header, then the cache's bytes.
pub fn encode(h: &SavedHeader, kv: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + 4 * h.tokens.len() + kv.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&h.model_sha256);
    for v in [h.n_layer, h.kv_dim, h.n_vocab, h.n_ctx, kv_code(h.kv_type), h.tokens.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    h.tokens.iter().for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    out.extend_from_slice(kv);
    out
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            HearthError::BadSession(format!("cut short: {what} needs bytes up to {}, but there are {}", self.at as u64 + n as u64, self.b.len()))
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
}

/// The header and the cache's bytes (their length checked against the header by the backend).
pub fn decode(bytes: &[u8]) -> Result<(SavedHeader, &[u8])> {
    let mut r = Reader { b: bytes, at: 0 };
    let magic = r.take(8, "the format's name")?;
    if magic != MAGIC {
        return Err(HearthError::BadSession(format!("the first bytes are {magic:02x?}, expected \"HEARTHKV\"")));
    }
    let version = r.u32("the version")?;
    if version != VERSION {
        return Err(HearthError::BadSession(format!("format version {version}; this Hearth reads version {VERSION}")));
    }
    let model_sha256: [u8; 32] = r.take(32, "the model's SHA-256")?.try_into().unwrap();
    let n_layer = r.u32("the layer count")?;
    let kv_dim = r.u32("the row size")?;
    let n_vocab = r.u32("the vocabulary size")?;
    let n_ctx = r.u32("the context size")?;
    let kv = r.u32("the cache type")?;
    let kv_type = match kv {
        0 => KvType::F32,
        1 => KvType::F16,
        2 => KvType::Q8_0,
        c => return Err(HearthError::BadSession(format!("unknown cache type {c}"))),
    };
    let n = r.u32("the token count")? as usize;
    if n > n_ctx as usize {
        return Err(HearthError::BadSession(format!("{n} tokens in a context of {n_ctx}")));
    }
    let tokens: Vec<u32> = r.take(4 * n, "the tokens")?.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    if let Some(bad) = tokens.iter().find(|&&t| t >= n_vocab) {
        return Err(HearthError::BadSession(format!("token id {bad} is outside the vocabulary of {n_vocab}")));
    }
    let len = u64::from_le_bytes(r.take(8, "the cache's length")?.try_into().unwrap());
    let kv_bytes = r.take(usize::try_from(len).unwrap_or(usize::MAX), "the cache")?;
    if r.at != bytes.len() {
        return Err(HearthError::BadSession(format!("{} bytes after the end", bytes.len() - r.at)));
    }
    Ok((SavedHeader { model_sha256, n_layer, kv_dim, n_vocab, n_ctx, kv_type, tokens }, kv_bytes))
}

/// Why `saved` cannot go into a session made as `ours` describes (its tokens aside), if it cannot.
pub fn check(saved: &SavedHeader, ours: &SavedHeader) -> Result<()> {
    let mismatch = |m: String| Err(HearthError::SessionMismatch(m));
    if saved.model_sha256 != ours.model_sha256 {
        return mismatch(format!(
            "it was saved with another model file (SHA-256 {}…; this one is {}…)",
            &hex(&saved.model_sha256)[..16],
            &hex(&ours.model_sha256)[..16]
        ));
    }
    if (saved.n_layer, saved.kv_dim, saved.n_vocab) != (ours.n_layer, ours.kv_dim, ours.n_vocab) {
        return mismatch(format!(
            "its model has {} layers, rows of {} and {} tokens; this one {}, {} and {}",
            saved.n_layer, saved.kv_dim, saved.n_vocab, ours.n_layer, ours.kv_dim, ours.n_vocab
        ));
    }
    if saved.n_ctx != ours.n_ctx {
        return mismatch(format!("it was saved with a context of {} tokens; this session's is {}: load the model with that context size", saved.n_ctx, ours.n_ctx));
    }
    if saved.kv_type != ours.kv_type {
        return mismatch(format!("it was saved with a {} KV cache; this session's is {}: load the model with that kvType", saved.kv_type.name(), ours.kv_type.name()));
    }
    Ok(())
}
