//! Writes GGUF v3 files: used for the project's own test fixtures and the bundled demo model.

use super::{align_up, TensorType, Value, DEFAULT_ALIGNMENT, MAGIC};

#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, TensorType, Vec<u8>)>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
        self
    }

    /// `dims` in ggml order (row length first); `data` already encoded in `ty`.
    pub fn tensor(&mut self, name: &str, dims: Vec<u64>, ty: TensorType, data: Vec<u8>) -> &mut Self {
        let expect = ty.byte_size(dims[0], dims.iter().product()).expect("dims fit the type's blocks");
        assert_eq!(expect, data.len() as u64, "tensor '{name}' data size");
        self.tensors.push((name.to_string(), dims, ty, data));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header_bytes(&[]);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(align_up(out.len() as u64, DEFAULT_ALIGNMENT) as usize, 0);
        }
        out
    }

    /// Write the file to `out` without holding it: the tensors given to `tensor` first, then
    /// `streamed` (name, dims, type), whose data `data(i, out)` writes for the i-th of them (exactly
    /// its size, checked), for files larger than memory should hold (models over 4 GiB).
    pub fn write_streamed(
        &self,
        out: &mut impl std::io::Write,
        streamed: &[(String, Vec<u64>, TensorType)],
        mut data: impl FnMut(usize, &mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let header = self.header_bytes(streamed);
        out.write_all(&header)?;
        let mut at = header.len() as u64;
        let pad = |out: &mut dyn std::io::Write, at: &mut u64| -> std::io::Result<()> {
            let end = align_up(*at, DEFAULT_ALIGNMENT);
            out.write_all(&vec![0; (end - *at) as usize])?;
            *at = end;
            Ok(())
        };
        for (_, _, _, bytes) in &self.tensors {
            out.write_all(bytes)?;
            at += bytes.len() as u64;
            pad(out, &mut at)?;
        }
        for (i, (name, dims, ty)) in streamed.iter().enumerate() {
            let want = ty.byte_size(dims[0], dims.iter().product()).expect("dims fit the type's blocks");
            let mut counted = Counted { inner: &mut *out, n: 0 };
            data(i, &mut counted)?;
            assert_eq!(counted.n, want, "tensor '{name}' data size");
            at += want;
            pad(out, &mut at)?;
        }
        out.flush()
    }

    /// Everything before the tensor data: metadata and the tensor index (the tensors given to
    /// `tensor`, then `streamed`), padded to the alignment.
    fn header_bytes(&self, streamed: &[(String, Vec<u64>, TensorType)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&((self.tensors.len() + streamed.len()) as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_str(&mut out, k);
            out.extend_from_slice(&v.type_id().to_le_bytes());
            write_value(&mut out, v);
        }
        let held = self.tensors.iter().map(|(n, d, t, data)| (n, d, *t, data.len() as u64));
        let later = streamed.iter().map(|(n, d, t)| (n, d, *t, t.byte_size(d[0], d.iter().product()).expect("dims fit the type's blocks")));
        let mut offset = 0u64;
        for (name, dims, ty, size) in held.chain(later) {
            write_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.0.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = align_up(offset + size, DEFAULT_ALIGNMENT);
        }
        out.resize(align_up(out.len() as u64, DEFAULT_ALIGNMENT) as usize, 0);
        out
    }
}

/// Counts the bytes written through it (`write_streamed` checks each tensor's size).
struct Counted<'a> {
    inner: &'a mut dyn std::io::Write,
    n: u64,
}

impl std::io::Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => write_str(out, s),
        Value::Packed { elem, data } => {
            let width = super::packed_width(*elem).expect("a packed array of numbers or booleans");
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&((data.len() / width) as u64).to_le_bytes());
            out.extend_from_slice(data);
        }
        Value::Array(items) => {
            // An empty array is written as an array of strings: its element type is unknowable.
            let elem = items.first().map_or(8, |i| i.type_id());
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                write_value(out, i);
            }
        }
    }
}

/// Split a whole GGUF file into `shards` files the way llama.cpp's `gguf-split` does: every shard
/// carries `split.no`, `split.count` and `split.tensors.count`; the first also all the metadata;
/// the tensors, in file order, are spread so that the shards hold about the same bytes.
pub fn split_file(file: &[u8], shards: usize) -> crate::error::Result<Vec<Vec<u8>>> {
    use crate::error::HearthError;
    let header = super::parse_file(file)?;
    if shards == 0 || shards > header.tensors.len().max(1) || shards > 9999 {
        return Err(HearthError::InvalidArgument(format!(
            "cannot split {} tensors into {shards} shards",
            header.tensors.len()
        )));
    }
    let total: u64 = header.tensors.iter().map(|t| t.size).sum();
    let mut out = Vec::with_capacity(shards);
    let mut next = 0;
    let mut written = 0u64;
    for no in 0..shards {
        let mut w = GgufWriter::new();
        if no == 0 {
            copy_metadata(&mut w, &header);
        }
        w.meta("split.no", Value::U16(no as u16));
        w.meta("split.count", Value::U16(shards as u16));
        w.meta("split.tensors.count", Value::I32(header.tensors.len() as i32));
        // Fill this shard up to its share of the bytes, leaving a tensor for each later shard.
        let share = total * (no as u64 + 1) / shards as u64;
        while next < header.tensors.len() && header.tensors.len() - next > shards - no - 1 {
            let t = &header.tensors[next];
            if written >= share && no + 1 < shards && !w.tensors.is_empty() {
                break;
            }
            copy_tensor(&mut w, &header, t, file);
            written += t.size;
            next += 1;
        }
        out.push(w.to_bytes());
    }
    Ok(out)
}

/// The file with metadata `set` added or replaced (tensors and other metadata as they were).
pub fn with_metadata(file: &[u8], set: &[(&str, Value)]) -> crate::error::Result<Vec<u8>> {
    let header = super::parse_file(file)?;
    let mut w = GgufWriter::new();
    copy_metadata(&mut w, &header);
    for (k, v) in set {
        w.meta(k, v.clone());
    }
    for t in &header.tensors {
        copy_tensor(&mut w, &header, t, file);
    }
    Ok(w.to_bytes())
}

/// All metadata but the alignment: the writer always uses the default one.
fn copy_metadata(w: &mut GgufWriter, header: &super::Header) {
    for (k, v) in &header.metadata.0 {
        if k != "general.alignment" {
            w.meta(k, v.clone());
        }
    }
}

fn copy_tensor(w: &mut GgufWriter, header: &super::Header, t: &super::TensorInfo, file: &[u8]) {
    w.tensor(&t.name, t.dims.clone(), t.ty, header.tensor_bytes(file, t).to_vec());
}
