//! GGUF: header, metadata and tensor index parsed from bytes, every count, size and offset checked
//! against what is actually there. Tensor data is not read here: `stream` hands tensors to a sink
//! as their bytes arrive, so no second full copy of the weights is ever held.

mod stream;
mod types;
mod writer;

pub use stream::{GgufStream, Take, TensorSink, PIECE_BYTES};
pub use types::TensorType;
pub use writer::{split_file, with_metadata, GgufWriter};

use crate::error::{HearthError, Result};
use std::collections::BTreeMap;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: usize = 4;
/// No GGUF file is larger (2^50 bytes, a petabyte): offsets and sizes beyond it are corrupt,
/// and below it their sums cannot overflow.
const MAX_FILE_BYTES: u64 = 1 << 50;

/// A metadata value. Arrays keep their element type even when empty.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    /// An array of fixed-width numbers or booleans (element type `elem`: any but string and
    /// array), kept as its little-endian bytes: as `Array` each element would take a 32-byte
    /// `Value`, so a file could make the parser allocate up to 32 times its own size.
    Packed { elem: u32, data: Vec<u8> },
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) | Value::Packed { .. } => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// Any integer type as u64 (negative values are rejected).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_) | Value::Packed { .. })
    }

    /// The elements of an array of numbers or booleans, however it is stored; None for strings and
    /// anything else.
    pub fn numbers(&self) -> Option<Box<dyn Iterator<Item = Value> + '_>> {
        match self {
            Value::Array(a) if a.iter().all(|v| !matches!(v, Value::String(_) | Value::Array(_) | Value::Packed { .. })) => {
                Some(Box::new(a.iter().cloned()))
            }
            Value::Packed { elem, data } => {
                let width = packed_width(*elem)?;
                let elem = *elem;
                Some(Box::new(data.chunks_exact(width).map(move |b| {
                    let mut r = Reader { buf: b, pos: 0 };
                    r.value(elem, "", 1).expect("a packed element decodes (checked when parsed)")
                })))
            }
            _ => None,
        }
    }
}

/// Bytes per element of an array of GGUF type `elem` that is kept packed; None for strings and
/// arrays (and unknown types).
fn packed_width(elem: u32) -> Option<usize> {
    match elem {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4 | 5 | 6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Metadata with typed getters that name the key in their errors.
#[derive(Clone, Debug, Default)]
pub struct Metadata(pub BTreeMap<String, Value>);

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    fn bad(key: &str, why: &str) -> HearthError {
        HearthError::BadMetadata { key: key.to_string(), why: why.to_string() }
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| HearthError::MissingMetadata(key.to_string()))
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.required(key)?.as_u64().ok_or_else(|| Self::bad(key, "expected a non-negative integer"))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| v.as_u64().ok_or_else(|| Self::bad(key, "expected a non-negative integer")))
            .transpose()
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        self.get(key).map(|v| v.as_i64().ok_or_else(|| Self::bad(key, "expected an integer"))).transpose()
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| Self::bad(key, "expected a number"))).transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| Self::bad(key, "expected a boolean"))).transpose()
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.required(key)?.as_str().ok_or_else(|| Self::bad(key, "expected a string"))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| Self::bad(key, "expected a string"))).transpose()
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<&[Value]>> {
        self.get(key).map(|v| v.as_array().ok_or_else(|| Self::bad(key, "expected an array"))).transpose()
    }

    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(a) = self.opt_array(key)? else { return Ok(None) };
        a.iter()
            .map(|v| v.as_str().ok_or_else(|| Self::bad(key, "expected an array of strings")))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The elements of a numeric array (packed or not), or None when the key is absent.
    fn opt_numbers(&self, key: &str, what: &str) -> Result<Option<Box<dyn Iterator<Item = Value> + '_>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if !v.is_array() => Err(Self::bad(key, "expected an array")),
            Some(v) => v.numbers().map(Some).ok_or_else(|| Self::bad(key, what)),
        }
    }

    pub fn opt_f32s(&self, key: &str) -> Result<Option<Vec<f32>>> {
        const WHAT: &str = "expected an array of numbers";
        let Some(a) = self.opt_numbers(key, WHAT)? else { return Ok(None) };
        a.map(|v| v.as_f64().map(|x| x as f32).ok_or_else(|| Self::bad(key, WHAT))).collect::<Result<Vec<_>>>().map(Some)
    }

    pub fn opt_i64s(&self, key: &str) -> Result<Option<Vec<i64>>> {
        const WHAT: &str = "expected an array of integers";
        let Some(a) = self.opt_numbers(key, WHAT)? else { return Ok(None) };
        a.map(|v| v.as_i64().ok_or_else(|| Self::bad(key, WHAT))).collect::<Result<Vec<_>>>().map(Some)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: dims[0] is the row length (fastest varying).
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of one row (`dims[0]` values), or of the whole tensor when its rows are not whole
    /// blocks of its type (no backend takes such a tensor; the stream then hands it on whole).
    pub fn row_bytes(&self) -> u64 {
        let row = self.dims.first().copied().unwrap_or(1);
        let rows = self.elements().checked_div(row).unwrap_or(0);
        match self.ty.byte_size(row, row) {
            Some(b) if b.checked_mul(rows) == Some(self.size) => b,
            _ => self.size,
        }
    }

    /// Row-major shape as candle wants it (slowest dimension first).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

#[derive(Clone, Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    /// In file order of their data.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl Header {
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of tensor `t` in `file` (the whole file, checked by `parse_file`).
    pub fn tensor_bytes<'a>(&self, file: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        let start = (self.data_offset + t.offset) as usize;
        &file[start..start + t.size as usize]
    }

    /// Bytes the whole file must have: the end of the last tensor.
    pub fn file_size(&self) -> u64 {
        self.data_offset + self.tensors.iter().map(|t| t.offset + t.size).max().unwrap_or(0)
    }

    /// Check the tensors against the real file length.
    pub fn check_file_size(&self, file_len: u64) -> Result<()> {
        for t in &self.tensors {
            let end = self.data_offset + t.offset + t.size;
            if end > file_len {
                return Err(HearthError::Truncated {
                    what: format!("tensor '{}'", t.name),
                    needed: end,
                    available: file_len,
                });
            }
        }
        Ok(())
    }
}

/// Bounds-checked little-endian reader. Running out of bytes is `Truncated`, which a streaming
/// caller reads as "wait for more".
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = (self.pos as u64).checked_add(n).ok_or_else(|| corrupt(format!("{what}: size overflows")))?;
        if end > self.buf.len() as u64 {
            return Err(HearthError::Truncated { what: what.to_string(), needed: end, available: self.buf.len() as u64 });
        }
        let s = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.u8(what)?),
            1 => Value::I8(self.u8(what)? as i8),
            2 => Value::U16(self.u16(what)?),
            3 => Value::I16(self.u16(what)? as i16),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(self.u32(what)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(what)?)),
            7 => match self.u8(what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(corrupt(format!("{what}: boolean byte {b}"))),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth > 0 {
                    return Err(corrupt(format!("{what}: nested arrays are not allowed")));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte: a count beyond the bytes left is corrupt
                // (or truncated), and must not drive an allocation.
                let min = match (elem, packed_width(elem)) {
                    (_, Some(width)) => width as u64,
                    (8, None) => 8,
                    _ => return Err(corrupt(format!("{what}: unknown array element type {elem}"))),
                };
                if n.checked_mul(min).map_or(true, |b| b > self.remaining()) {
                    return Err(HearthError::Truncated {
                        what: format!("{what} ({n} elements)"),
                        needed: (self.pos as u64).saturating_add(n.saturating_mul(min)),
                        available: self.buf.len() as u64,
                    });
                }
                if elem != 8 {
                    let data = self.take(n * min, what)?.to_vec();
                    if elem == 7 && data.iter().any(|&b| b > 1) {
                        return Err(corrupt(format!("{what}: a boolean array holds a byte other than 0 and 1")));
                    }
                    return Ok(Value::Packed { elem, data });
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(what)?)),
            _ => return Err(corrupt(format!("{what}: unknown value type {ty}"))),
        })
    }
}

fn corrupt(msg: String) -> HearthError {
    HearthError::Corrupt(msg)
}

pub fn align_up(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

/// Parse the header from a prefix of the file. Returns `Truncated` when the prefix is too short;
/// a streaming caller retries with more bytes. Tensor data is not looked at.
pub fn parse_header(buf: &[u8]) -> Result<Header> {
    let mut r = Reader { buf, pos: 0 };
    let magic: [u8; 4] = r.take(4, "magic")?.try_into().unwrap();
    if magic != MAGIC {
        return Err(HearthError::BadMagic(magic));
    }
    let version = r.u32("version")?;
    if version != 2 && version != 3 {
        return Err(HearthError::UnsupportedVersion(version));
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    // A metadata entry takes at least 13 bytes, a tensor entry at least 24: bound the counts by
    // what could possibly fit in a file, so garbage counts fail fast instead of allocating.
    const MAX_ENTRIES: u64 = 1 << 24;
    if n_tensors > MAX_ENTRIES || n_kv > MAX_ENTRIES {
        return Err(corrupt(format!("{n_tensors} tensors and {n_kv} metadata entries is not plausible")));
    }

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.string(&format!("metadata key #{i}"))?;
        let ty = r.u32(&format!("type of '{key}'"))?;
        let value = r.value(ty, &format!("metadata '{key}'"), 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(corrupt(format!("metadata key '{key}' appears twice")));
        }
    }
    let metadata = Metadata(metadata);
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
            _ => return Err(corrupt(format!("general.alignment {v:?} is not a power of two"))),
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors.min(r.remaining() / 24) as usize);
    let mut names = std::collections::HashSet::new();
    for i in 0..n_tensors {
        let name = r.string(&format!("tensor name #{i}"))?;
        let n_dims = r.u32(&format!("dimension count of '{name}'"))? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(corrupt(format!("tensor '{name}' has {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(r.u64(&format!("dimensions of '{name}'"))?);
        }
        let ty = TensorType(r.u32(&format!("type of '{name}'"))?);
        let offset = r.u64(&format!("offset of '{name}'"))?;
        if !ty.is_known() {
            return Err(corrupt(format!("tensor '{name}' has unknown type id {}", ty.0)));
        }
        if dims.iter().any(|&d| d == 0) {
            return Err(corrupt(format!("tensor '{name}' has a zero dimension {dims:?}")));
        }
        let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let size = elements.and_then(|e| ty.byte_size(dims[0], e)).ok_or_else(|| {
            corrupt(format!("tensor '{name}' of type {ty} has dimensions {dims:?} that do not fit its blocks"))
        })?;
        if offset % alignment != 0 {
            return Err(corrupt(format!("tensor '{name}' starts at offset {offset}, not a multiple of {alignment}")));
        }
        if !names.insert(name.clone()) {
            return Err(corrupt(format!("tensor '{name}' appears twice")));
        }
        tensors.push(TensorInfo { name, dims, ty, offset, size });
    }
    let data_offset = align_up(r.pos as u64, alignment);
    // Every tensor's end must be a real file offset: readers add these without further checks.
    for t in &tensors {
        if data_offset.checked_add(t.offset).and_then(|x| x.checked_add(t.size)).is_none_or(|end| end > MAX_FILE_BYTES) {
            return Err(corrupt(format!("tensor '{}' at offset {} with {} bytes ends past any possible file", t.name, t.offset, t.size)));
        }
    }

    tensors.sort_by_key(|t| t.offset);
    for w in tensors.windows(2) {
        if w[0].offset + w[0].size > w[1].offset {
            return Err(corrupt(format!("tensors '{}' and '{}' overlap", w[0].name, w[1].name)));
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}

/// Parse a complete file held in memory and check that all tensor data is present.
pub fn parse_file(buf: &[u8]) -> Result<Header> {
    let h = parse_header(buf)?;
    h.check_file_size(buf.len() as u64)?;
    Ok(h)
}



#[cfg(test)]
mod tests;
