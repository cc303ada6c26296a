//! Push-style GGUF reading: bytes arrive in chunks of any size (a fetch stream, a File read in
//! slices, or one buffer) and each tensor goes to the sink as its bytes arrive: whole, or, where
//! the sink asks for it (the model loader does), in pieces of whole rows that the backend writes
//! straight into the tensor's final place (a CPU allocation, GPU buffers). With pieces at most a
//! piece of weights is buffered here, so a model never sits in memory twice, and a tensor larger
//! than wasm32's 4 GiB can go to the GPU through a wasm32 engine.

use super::{parse_header, Header, TensorInfo};
use crate::error::{HearthError, Result};

/// Bytes of the pieces the model loader asks for: large enough that a piece costs one call into
/// the backend (a GPU queue write) per few MiB, small beside any model.
pub const PIECE_BYTES: u64 = 4 << 20;

/// How a sink wants one tensor's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// In one `tensor` call.
    Whole,
    /// In `piece` calls of whole rows (`TensorInfo::row_bytes`), each as many rows as fit this
    /// many bytes (at least one), the last the rest, then `end`. Pieces are cut the same whatever
    /// the chunking of the input.
    Pieces(u64),
    /// Not at all: its bytes are dropped as they pass.
    Skip,
}

pub trait TensorSink {
    /// Called once, before any tensor, when the header has been parsed.
    fn header(&mut self, header: &Header) -> Result<()>;
    /// Called for each tensor in file order when the stream reaches its first byte.
    fn begin(&mut self, _info: &TensorInfo) -> Result<Take> {
        Ok(Take::Whole)
    }
    /// `Take::Whole`: exactly the tensor's bytes.
    fn tensor(&mut self, info: &TensorInfo, data: &[u8]) -> Result<()>;
    /// `Take::Pieces`: the next piece of the tensor's bytes, in order.
    fn piece(&mut self, info: &TensorInfo, _data: &[u8]) -> Result<()> {
        Err(HearthError::Compute(format!("tensor '{}' was delivered in pieces to a sink that takes it whole", info.name)))
    }
    /// `Take::Pieces`: every piece has been given.
    fn end(&mut self, _info: &TensorInfo) -> Result<()> {
        Ok(())
    }
}

#[derive(Default)]
pub struct GgufStream {
    /// Bytes of the header while it is incomplete; afterwards the start of a piece (or a whole
    /// tensor) that has not fully arrived.
    buf: Vec<u8>,
    /// Absolute file offset of the next byte to be consumed (`buf` holds what precedes it back to
    /// the start of the pending piece).
    pos: u64,
    header: Option<Header>,
    next: usize,
    /// How the sink takes tensor `next`, once the stream has reached it.
    take: Option<Take>,
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

    /// Bytes held back: the header while it is incomplete, then the start of a piece.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes fed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn TensorSink) -> Result<()> {
        self.received += chunk.len() as u64;
        if self.header.is_some() {
            return self.consume(chunk, sink);
        }
        // The header: parsed from the chunk itself when it holds it all (no copy of what follows
        // it), else from the bytes gathered so far.
        let (h, prefix) = if self.buf.is_empty() && self.header_needed <= chunk.len() as u64 {
            match parse_header(chunk) {
                Ok(h) => (h, None),
                Err(HearthError::Truncated { needed, .. }) => {
                    self.header_needed = needed;
                    self.buf.extend_from_slice(chunk);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        } else {
            self.buf.extend_from_slice(chunk);
            if (self.buf.len() as u64) < self.header_needed {
                return Ok(());
            }
            match parse_header(&self.buf) {
                Ok(h) => (h, Some(std::mem::take(&mut self.buf))),
                Err(HearthError::Truncated { needed, .. }) => {
                    self.header_needed = needed;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        sink.header(&h)?;
        // The header's bytes are parsed: only what follows them is consumed (a header can be most
        // of a hostile file, and `prefix`, which held it, is dropped here).
        let data = h.data_offset;
        self.header = Some(h);
        let bytes = prefix.as_deref().unwrap_or(chunk);
        let rest = &bytes[(data as usize).min(bytes.len())..];
        self.pos = data.min(bytes.len() as u64);
        self.consume(rest, sink)
    }

    /// Hand `input` (the bytes from `pos` on) to the sink as the tensors and their pieces fill.
    fn consume(&mut self, input: &[u8], sink: &mut dyn TensorSink) -> Result<()> {
        let h = self.header.take().expect("consume runs after the header");
        let r = self.consume_with(&h, input, sink);
        self.header = Some(h);
        r
    }

    fn consume_with(&mut self, h: &Header, mut input: &[u8], sink: &mut dyn TensorSink) -> Result<()> {
        while let Some(t) = h.tensors.get(self.next) {
            let start = h.data_offset + t.offset;
            let end = start + t.size;
            if self.pos < start {
                // Alignment padding (or bytes no tensor claims) before the tensor.
                let n = (start - self.pos).min(input.len() as u64) as usize;
                input = &input[n..];
                self.pos += n as u64;
                if self.pos < start {
                    return Ok(());
                }
            }
            let take = match self.take {
                Some(t) => t,
                None => *self.take.insert(sink.begin(t)?),
            };
            if start == end {
                match take {
                    Take::Whole => sink.tensor(t, &[])?,
                    Take::Pieces(_) => sink.end(t)?,
                    Take::Skip => {}
                }
                self.take = None;
                self.next += 1;
                continue;
            }
            // The piece now being received: [piece_start, piece_end) of the file.
            let piece_start = self.pos - self.buf.len() as u64;
            let piece_end = match take {
                Take::Whole | Take::Skip => end,
                Take::Pieces(bytes) => {
                    let row = t.row_bytes().max(1);
                    let rows = (bytes / row).max(1);
                    end.min(piece_start + rows * row)
                }
            };
            let wanted = (piece_end - self.pos).min(input.len() as u64) as usize;
            if take == Take::Skip {
                self.pos += wanted as u64;
            } else if self.buf.is_empty() && wanted as u64 == piece_end - piece_start {
                // The whole piece is in the input: handed on without a copy.
                self.deliver(t, take, &input[..wanted], sink)?;
                self.pos += wanted as u64;
            } else {
                self.gather(&input[..wanted], piece_end - piece_start);
                self.pos += wanted as u64;
                if self.pos == piece_end {
                    let piece = std::mem::take(&mut self.buf);
                    self.deliver(t, take, &piece, sink)?;
                    self.buf = piece;
                    self.buf.clear();
                    // A whole tensor's buffer is not kept for the next (a piece's is reused).
                    if self.buf.capacity() as u64 > (2 * PIECE_BYTES).max(64 << 20) {
                        self.buf = Vec::new();
                    }
                }
            }
            input = &input[wanted..];
            if self.pos < piece_end {
                return Ok(()); // the input is spent
            }
            if self.pos == end {
                if let Take::Pieces(_) = take {
                    sink.end(t)?;
                }
                self.take = None;
                self.next += 1;
            }
        }
        // Bytes after the last tensor belong to nothing.
        self.pos += input.len() as u64;
        Ok(())
    }

    fn deliver(&self, t: &TensorInfo, take: Take, data: &[u8], sink: &mut dyn TensorSink) -> Result<()> {
        match take {
            Take::Whole => sink.tensor(t, data),
            Take::Pieces(_) => sink.piece(t, data),
            Take::Skip => Ok(()),
        }
    }

    /// Append `bytes` to the piece being gathered, `size` bytes in all.
    fn gather(&mut self, bytes: &[u8], size: u64) {
        let need = self.buf.len() + bytes.len();
        if need > self.buf.capacity() {
            // Doubling, but never past the end of the piece: a 4 GiB tensor taken whole would
            // otherwise reserve 8 GiB (the end is only a cap, so a hostile size in the header
            // makes this reserve no more than plain doubling would).
            let end = usize::try_from(size).unwrap_or(usize::MAX);
            let want = need.max(2 * self.buf.capacity()).min(end.max(need));
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
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
