//! What a load will need, from the GGUF header alone: weights as each backend keeps them, the KV
//! cache for a context size, scratch for a forward pass, the vocabulary. `Hearth.inspect`, the
//! preflight of every browser load (a model that cannot fit fails before its weights download)
//! and `hearth inspect` use it. The figures are estimates that err on the high side; the tests
//! check them against what loading and generating really take.

use crate::backend::KvType;
use crate::error::Result;
use crate::gguf::{Header, TensorType, PIECE_BYTES};
use crate::model::LlamaConfig;

/// The wasm32 engine's memory limit (both builds link a 4 GiB maximum).
pub const WASM32_LIMIT: u64 = 4 << 30;

/// Tokens per forward pass when generating (`GenerateOptions::batch`), for the scratch estimate.
const BATCH: u64 = 64;

/// The allocator's slack, the JS glue's buffers, thread stacks: what the engine's heap holds
/// besides the model (measured: a fixture model's wasm memory is 7 MiB before loading).
const OVERHEAD: u64 = 32 << 20;

/// Bytes one backend needs for a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Needs {
    /// The weights as the backend keeps them.
    pub weights: u64,
    /// K and V for every layer and position of the context.
    pub kv_cache: u64,
    /// Activations of a forward pass of `BATCH` tokens, logits.
    pub scratch: u64,
    /// The metadata and the tokenizer built from it, plus fixed overhead; on the CPU also the
    /// stream's piece of the tensor arriving.
    pub other: u64,
}

impl Needs {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch + self.other
    }
}

/// What loading a model will need, on each backend.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Plan {
    pub context_size: u64,
    /// Bytes per cached K or V value (4: f32, 2: f16, 34/32: q8_0).
    pub kv_bytes_per_value: f64,
    /// Bytes of the file (whole model: every shard) as the header describes it.
    pub file_bytes: u64,
    /// The CPU backend: everything in the engine's (wasm) heap.
    pub cpu: Needs,
    /// The WebGPU backend: in GPU buffers.
    pub gpu: Needs,
    /// The WebGPU backend: what stays in the engine's heap (the vocabulary, the tensors that are
    /// read on the host, the stream's piece of the tensor arriving, logits): the weights go from
    /// the stream straight into GPU buffers.
    pub gpu_heap: u64,
    /// The largest buffer the GPU backend must bind whole (a weight matrix's row, a layer's K
    /// cache; matrices are split by rows into buffers the adapter can bind).
    pub gpu_largest_buffer: u64,
}

/// The plan for `header` (a whole file's, or the first shard's of a split model) with a context of
/// `n_ctx` positions (0: the model's, capped at `default_ctx`) and a `kv` cache.
pub fn plan(header: &Header, n_ctx: u64, default_ctx: u64, kv: KvType) -> Result<Plan> {
    let c = LlamaConfig::from_metadata(&header.metadata)?;
    let n_ctx = match n_ctx {
        0 if c.context_length == 0 => default_ctx,
        0 => (c.context_length as u64).min(default_ctx),
        n => n,
    };
    // A split model's first shard lists its own tensors; the others are assumed alike.
    let listed = header.tensors.len().max(1) as f64;
    let all = header.metadata.opt_u64("split.tensors.count")?.map_or(listed, |n| (n as f64).max(listed));
    let scale = all / listed;
    let scaled = |b: u64| (b as f64 * scale).ceil() as u64;

    let (mut cpu_w, mut gpu_w, mut host_w, mut largest_row, mut file) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for t in &header.tensors {
        file += t.size;
        let cols = t.dims.first().copied().unwrap_or(1).max(1);
        // The GPU splits a matrix by rows into buffers it can bind: a row must fit one.
        largest_row = largest_row.max(t.ty.byte_size(cols, cols).unwrap_or(t.size));
        // The CPU pads float rows to a multiple of 32 values (kernels work in 32-wide blocks).
        let rows = t.elements() / cols;
        cpu_w += match t.ty {
            TensorType::F32 => rows * cols.next_multiple_of(32) * 4,
            TensorType::F16 | TensorType::BF16 => rows * cols.next_multiple_of(32) * 2,
            _ => t.size,
        };
        if t.dims.len() == 1 {
            host_w += t.size; // norms are read on the host
        } else {
            gpu_w += t.size;
        }
    }
    let kv_dim = c.kv_dim() as u64;
    let kv_value = kv.bytes_per_value();
    let kv_cache = 2 * c.n_layer as u64 * n_ctx * kv.bytes(kv_dim.next_multiple_of(kv.block_values() as u64));
    let (e, q, ff, v) = (c.n_embd as u64, (c.n_head * c.head_dim) as u64, c.n_ff as u64, c.n_vocab as u64);
    let activations = BATCH * (4 * e + 2 * q + 2 * kv_dim + 3 * ff) * 4;
    // Each pool thread keeps a row of attention scores; logits of the last row, twice (sampling).
    let scratch = activations + 8 * n_ctx * 4 + 2 * v * 4;
    // The tokenizer keeps every token's text, a lookup table and merges: about 3x their bytes
    // in the header. While a tensor arrives the stream holds at most a piece of it (a row when
    // one is larger than `PIECE_BYTES`; a 1-D tensor is one row), and each backend writes the
    // pieces straight into the weight's own storage, so no tensor is ever held twice. (When the
    // stream handed on whole tensors the largest was there twice: 8.85 GiB of wasm memory for
    // `hearth fixture --big`'s 4.5 GB file; in pieces the native CPU load peaks at 4.38 GiB of
    // RSS for it, tests/gpu_big.rs.)
    // And while the browser's loader chooses a backend it gathers the header's bytes (grown by
    // doubling: up to twice them) and parses them once more (measured with the 14 MB header of
    // `hearth fixture --big` on WebGPU in Chromium: 91 MiB of wasm memory, 11 MiB past the
    // estimate without this).
    let other = 5 * header.data_offset + OVERHEAD;
    let piece = PIECE_BYTES.max(largest_row);
    // The allocator's slack grows with what it holds: the 4.5 GB model's wasm64 memory ran 27 MB
    // (0.6%) past the estimate without this 1% of the weights.
    let cpu_other = other + piece + scaled(cpu_w) / 100;
    let gpu_layer_kv = n_ctx * kv.bytes(kv_dim.next_multiple_of(kv.block_values() as u64));
    Ok(Plan {
        context_size: n_ctx,
        kv_bytes_per_value: kv_value,
        file_bytes: header.data_offset + scaled(file),
        cpu: Needs { weights: scaled(cpu_w), kv_cache, scratch, other: cpu_other },
        gpu: Needs { weights: scaled(gpu_w), kv_cache, scratch: activations, other: 0 },
        gpu_heap: scaled(host_w) + piece + 2 * v * 4 + other,
        gpu_largest_buffer: largest_row.max(gpu_layer_kv),
    })
}
