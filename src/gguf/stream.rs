//! Push-style GGUF reading: bytes arrive in chunks of any size (a fetch stream, a File read in
//! slices, or one buffer) and each tensor goes to the sink as soon as its bytes are complete. At
//! most one tensor's bytes are buffered here, so a multi-GB model never sits in memory twice.

use super::{parse_header, Header, TensorInfo};
use crate::error::{HearthError, Result};

pub trait TensorSink {
    /// Called once, before any tensor, when the header has been parsed.
    fn header(&mut self, header: &Header) -> Result<()>;
    /// Called for each tensor in file order with exactly its bytes.
    fn tensor(&mut self, info: &TensorInfo, data: &[u8]) -> Result<()>;
}

#[derive(Default)]
pub struct GgufStream {
    buf: Vec<u8>,
    /// Absolute file offset of buf[0].
    base: u64,
    header: Option<Header>,
    next: usize,
    received: u64,
    /// While the header is incomplete: the bytes the last parse said it needs. Parsing again
    /// before they are here would find the same gap, and re-parsing a large header on every small
    /// chunk costs the square of its size.
    header_needed: u64,
}

impl GgufStream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Bytes fed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn TensorSink) -> Result<()> {
        self.received += chunk.len() as u64;
        let need = self.buf.len() + chunk.len();
        if need > self.buf.capacity() {
            // Doubling, but never past the end of the tensor being received: a 4 GiB tensor
            // would otherwise reserve 8 GiB (the end is only a cap, so a hostile size in the
            // header makes this reserve no more than plain doubling would).
            let mut want = need.max(2 * self.buf.capacity());
            if let Some(t) = self.header.as_ref().and_then(|h| h.tensors.get(self.next).map(|t| h.data_offset + t.offset + t.size)) {
                let end = usize::try_from(t.saturating_sub(self.base)).unwrap_or(usize::MAX);
                want = want.min(end.max(need));
            }
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(chunk);
        if self.header.is_none() {
            if (self.buf.len() as u64) < self.header_needed {
                return Ok(());
            }
            match parse_header(&self.buf) {
                Ok(h) => {
                    sink.header(&h)?;
                    // The header's bytes are parsed: keep only what follows the data offset, in a
                    // buffer that does not keep the header's capacity (a header can be most of a
                    // hostile file).
                    let data = (h.data_offset as usize).min(self.buf.len());
                    self.buf = self.buf.split_off(data);
                    self.base = data as u64;
                    self.header = Some(h);
                }
                Err(HearthError::Truncated { needed, .. }) => {
                    self.header_needed = needed;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        let h = self.header.as_ref().unwrap();
        while let Some(t) = h.tensors.get(self.next) {
            let start = h.data_offset + t.offset;
            let end = start + t.size;
            if self.base + (self.buf.len() as u64) < end {
                break;
            }
            let (s, e) = ((start - self.base) as usize, (end - self.base) as usize);
            sink.tensor(t, &self.buf[s..e])?;
            self.buf.drain(..e);
            self.base = end;
            self.next += 1;
        }
        // `drain` keeps the capacity the largest tensor so far needed; give back what a big one
        // left behind (the sink has copied it).
        if self.buf.capacity() > (64 << 20).max(4 * self.buf.len()) {
            self.buf.shrink_to(2 * self.buf.len());
        }
        Ok(())
    }

    /// The source has ended: everything announced must have arrived.
    pub fn finish(&self) -> Result<&Header> {
        self.complete()?;
        Ok(self.header.as_ref().expect("complete() checked the header"))
    }

    /// `finish`, giving up the header (its metadata is not copied).
    pub fn into_header(mut self) -> Result<Header> {
        self.complete()?;
        Ok(self.header.take().expect("complete() checked the header"))
    }

    fn complete(&self) -> Result<()> {
        let available = self.received;
        let Some(h) = &self.header else {
            // Re-parse to report what exactly is missing (or a better error than "truncated").
            return Err(match parse_header(&self.buf) {
                Err(e) => e,
                Ok(_) => HearthError::Truncated { what: "header".into(), needed: available + 1, available },
            });
        };
        if let Some(t) = h.tensors.get(self.next) {
            return Err(HearthError::Truncated {
                what: format!("tensor '{}'", t.name),
                needed: h.data_offset + t.offset + t.size,
                available,
            });
        }
        Ok(())
    }
}
