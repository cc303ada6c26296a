//! The operations the Llama forward pass needs, and nothing else. The model is written once
//! against this trait; each backend owns its tensors (CPU memory here, GPU buffers later) so a
//! GPU backend can record a whole step and read back only the logits.

pub mod cpu;
pub mod gpu;

use crate::error::{HearthError, Result};
use crate::gguf::TensorInfo;

/// How the KV cache stores keys and values, as llama.cpp's `cache_type_k` / `cache_type_v` (one
/// type for both here). F16 is llama.cpp's default, and so ours. Each type also fixes how
/// attention rounds, as llama.cpp's CPU backend computes it for that type (see
/// `cpu::attention`): F32 and F16 as its plain path (flash attention off, llama-cpp-python's
/// default), Q8_0 as its flash-attention path, which llama.cpp needs for a quantized V cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// 4 bytes per value.
    F32,
    /// IEEE half, 2 bytes per value.
    #[default]
    F16,
    /// ggml's block_q8_0: 32 values in 34 bytes (an f16 scale and 32 signed bytes).
    Q8_0,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

    /// The name the CLI and the JS API use: "f32", "f16", "q8_0".
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// A type by its name (any case).
    pub fn parse(name: &str) -> Result<KvType> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| HearthError::InvalidArgument(format!("kvType must be \"f16\", \"q8_0\" or \"f32\", got {name:?}")))
    }

    /// llama.cpp rotates queries, keys and values by a Walsh-Hadamard matrix around a quantized
    /// cache (and the attention output back) when heads are a multiple of 64 values, so that
    /// outliers spread over a block before it is quantized: the rotation sizes for keys (and
    /// queries: the largest power of two from 64 that divides the head) and for values (64), or
    /// None. (llama_kv_cache's attn_rot_k / attn_rot_v; the dot products are unchanged, since the
    /// matrix is orthonormal and symmetric.)
    pub fn rotation(self, head_dim: usize) -> Option<(usize, usize)> {
        if self != KvType::Q8_0 || !head_dim.is_multiple_of(64) {
            return None;
        }
        let mut k = 64;
        while head_dim.is_multiple_of(2 * k) {
            k *= 2;
        }
        Some((k, 64))
    }

    /// Values per block: a row of the cache must be a whole number of them (and for Q8_0, so must
    /// each head, as llama.cpp requires).
    pub fn block_values(self) -> usize {
        match self {
            KvType::Q8_0 => 32,
            _ => 1,
        }
    }

    /// Bytes of `n` cached values (`n` a multiple of `block_values`).
    pub fn bytes(self, n: u64) -> u64 {
        match self {
            KvType::F32 => 4 * n,
            KvType::F16 => 2 * n,
            KvType::Q8_0 => n / 32 * 34,
        }
    }

    /// Bytes per cached value: 4, 2, or 34/32.
    pub fn bytes_per_value(self) -> f64 {
        self.bytes(32) as f64 / 32.0
    }

    /// Bytes of a whole cache: K and V of `n_layer` layers, `n_ctx` positions of `kv_dim` values.
    pub fn cache_bytes(self, n_layer: usize, n_ctx: usize, kv_dim: usize) -> u64 {
        2 * n_layer as u64 * n_ctx as u64 * self.bytes(kv_dim as u64)
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = HearthError;
    fn from_str(s: &str) -> Result<KvType> {
        KvType::parse(s)
    }
}

/// Rotary embedding parameters, resolved from the GGUF (base, linear scaling, Llama 3.1 factors).
#[derive(Clone, Debug)]
pub struct Rope {
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// Per-pair divisors of the frequency (`rope_freqs.weight`), `n_rot / 2` of them.
    pub freq_factors: Option<Vec<f32>>,
}

/// How a mixture-of-experts router's logits become the chosen experts and their weights
/// (llama.cpp's `build_moe_ffn`: gating, top-k, `norm_w`, `w_scale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Routing {
    pub n_expert: usize,
    /// Experts chosen per token.
    pub k: usize,
    pub gating: Gating,
    /// Divide the chosen weights by their sum (clamped below at 2^-14, as llama.cpp).
    pub normalize: bool,
    /// Multiply the weights by this, unless it is 0 or 1.
    pub scale: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Weights from a softmax over all experts; the top k of those are chosen (Mixtral).
    Softmax,
    /// Weights are sigmoid(logit); the top k logits are chosen (Llama 4: sigmoid saturates to
    /// ties in f32, so llama.cpp selects on the logits).
    Sigmoid,
}

/// The bytes of `len` positions of one layer's keys (or values) in a saved cache, after checking
/// that `got` bytes are `n_layer` layers of both at most `n_ctx` positions.
pub fn kv_rows_bytes(ty: KvType, kv_dim: usize, n_ctx: usize, n_layer: usize, len: usize, got: usize) -> Result<usize> {
    let rows = ty.bytes((len * kv_dim) as u64) as usize;
    if len > n_ctx || got != 2 * n_layer * rows {
        return Err(HearthError::BadSession(format!("{got} bytes of cache for {len} positions; {n_layer} layers of {kv_dim} {} values need {} (context {n_ctx})", ty.name(), 2 * n_layer * rows)));
    }
    Ok(rows)
}

// The async methods are only awaited on one thread (the engine's worker): no Send bound wanted.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// Activations: `rows` tokens of `cols` values each.
    type Tensor;
    /// A weight matrix (any supported GGUF type), kept in its stored encoding.
    type Weight;
    /// A small f32 vector the ops read (norm weights).
    type Vector;
    /// A mixture-of-experts routing: per token, the chosen experts and their weights.
    type Route;
    /// Keys and values of every layer for one sequence.
    type KvCache;
    /// A weight whose bytes are arriving (`begin_weight`, `write_weight`, `finish_weight`).
    type Pending;

    /// Run one forward pass, `f` (a sequence of this backend's ops), where the backend wants it:
    /// the CPU backend moves it onto a thread of its pool (see `Cpu::pass`). `f` must use no
    /// values tied to the calling thread (thread-locals, JS objects).
    fn pass<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Start placing a tensor whose GGUF bytes will come in pieces: its final storage is made
    /// here, so that each piece goes straight to its place and no whole copy is ever held.
    fn begin_weight(&self, info: &TensorInfo) -> Result<Self::Pending>;
    /// The tensor's next bytes, whole rows (`TensorInfo::row_bytes`), in order.
    fn write_weight(&self, w: &mut Self::Pending, data: &[u8]) -> Result<()>;
    /// Every byte has been written.
    fn finish_weight(&self, w: Self::Pending) -> Result<Self::Weight>;
    /// Place one tensor's GGUF bytes in the backend at once.
    fn upload(&self, info: &TensorInfo, data: &[u8]) -> Result<Self::Weight> {
        let mut w = self.begin_weight(info)?;
        self.write_weight(&mut w, data)?;
        self.finish_weight(w)
    }
    /// The weight dequantized to f32 (small tensors: norms, rope factors).
    fn read_weight(&self, w: &Self::Weight) -> Result<Vec<f32>>;
    /// Place a small f32 vector (a norm's weights) in the backend.
    fn vector(&self, v: Vec<f32>) -> Result<Self::Vector>;

    /// A cache of `n_ctx` positions of `kv_dim` keys and values per layer, stored as `kv`
    /// (`kv_dim` a multiple of `kv.block_values()`).
    fn new_kv_cache(&self, n_layer: usize, n_ctx: usize, kv_dim: usize, kv: KvType) -> Result<Self::KvCache>;

    /// Positions `0..len` of the cache, for a saved session: per layer its keys' rows, then its
    /// values', each row as ggml stores the cache's type (f32, f16, block_q8_0), so the bytes are
    /// the same from every backend.
    async fn read_kv(&self, cache: &Self::KvCache, len: usize) -> Result<Vec<u8>>;
    /// Put bytes `read_kv` gave back at positions `0..len`.
    fn write_kv(&self, cache: &mut Self::KvCache, len: usize, bytes: &[u8]) -> Result<()>;

    /// Rows `ids` of an embedding table, read from its quantized form.
    fn embed(&self, table: &Self::Weight, ids: &[u32]) -> Result<Self::Tensor>;
    /// x · Wᵀ: `[rows, k]` by a `[n, k]` weight gives `[rows, n]`.
    fn matmul(&self, x: &Self::Tensor, w: &Self::Weight) -> Result<Self::Tensor>;
    /// RMS-normalize each row, then scale by `weight`.
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Vector, eps: f32) -> Result<Self::Tensor>;
    /// RMS-normalize every `head_dim` values of each row, no weight (ggml_rms_norm of a
    /// `[head_dim, n_head, rows]` view: Llama 4's q/k norm).
    fn rms_norm_heads(&self, x: &Self::Tensor, head_dim: usize, eps: f32) -> Result<Self::Tensor>;
    /// Rotate pairs (x[2i], x[2i+1]) of every head in place; row r is at position `pos0 + r`.
    fn rope(&self, x: &mut Self::Tensor, head_dim: usize, pos0: usize, rope: &Rope) -> Result<()>;
    /// Multiply every `n` consecutive values of `x` (n a power of two) by the orthonormal
    /// Walsh-Hadamard matrix of size n, as ggml's CPU backend does (`ggml_compute_forward_fwht`:
    /// each value times 1/sqrt(n), then butterflies of width 1, 2, 4, ...).
    fn hadamard(&self, x: &mut Self::Tensor, n: usize) -> Result<()>;
    /// Store k and v of the new rows at positions `pos0..` of `layer`, then causal attention of
    /// q over the cache: row r, at position p = `pos0 + r`, sees positions `..=p`, from 0, or
    /// with `chunk` > 0 from `(p / chunk) · chunk` (Llama 4's chunked attention: llama.cpp's
    /// LLAMA_SWA_TYPE_CHUNKED mask).
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        cache: &mut Self::KvCache,
        layer: usize,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        pos0: usize,
        n_head: usize,
        n_head_kv: usize,
        scale: f32,
        chunk: usize,
    ) -> Result<Self::Tensor>;
    /// Multiply row r of `x` by `factors[r]` (Llama 4's attention temperature on the queries of
    /// its NoPE layers).
    fn scale_rows(&self, x: &mut Self::Tensor, factors: &[f32]) -> Result<()>;
    /// Route each row of router logits (`[rows, n_expert]`): per row, the `k` experts with the
    /// largest selection score, in descending order, and their weights (see `Routing`).
    fn route(&self, logits: &Self::Tensor, routing: &Routing) -> Result<Self::Route>;
    /// The chosen experts' matmuls, reading only their rows: `w` stacks `n_expert` matrices of
    /// `n` rows (a GGUF 3-D expert tensor); output row `t·k + s` is x-row · W_eᵀ for the `s`-th
    /// expert `e` chosen for token `t`, where the x-row is row `t` when `x` has one row per token,
    /// row `t·k + s` when it has one per choice. `[rows·k, n]`.
    fn matmul_experts(&self, x: &Self::Tensor, w: &Self::Weight, route: &Self::Route) -> Result<Self::Tensor>;
    /// Per token, the sum over its `k` choices (in order) of their rows of `y` (`[rows·k, n]`),
    /// each times its weight first when `weighted` (ggml_mul, then ggml_add in slot order).
    fn moe_combine(&self, y: &Self::Tensor, route: &Self::Route, weighted: bool) -> Result<Self::Tensor>;
    /// Llama 4 weighs the experts' input instead of their output: row `t·k + s` is x-row `t`
    /// times the `s`-th weight of token `t`. `[rows·k, cols]`.
    fn moe_weigh_input(&self, x: &Self::Tensor, route: &Self::Route) -> Result<Self::Tensor>;
    /// The chosen experts, `k` per token (tests and tools; a GPU reads them back).
    fn route_experts(&self, route: &Self::Route) -> Result<Vec<u32>>;
    /// silu(gate) * up, elementwise.
    fn silu_mul(&self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;
    /// a += b.
    fn add_assign(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// a += s·b, the product rounded to f32 before the sum (ggml_scale, then ggml_add: how
    /// llama.cpp adds a LoRA delta).
    fn add_scaled(&self, a: &mut Self::Tensor, b: &Self::Tensor, s: f32) -> Result<()>;
    /// Keep only the last row.
    fn last_row(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    fn to_vec(&self, x: &Self::Tensor) -> Result<Vec<f32>>;

    /// `to_vec` for callers that can wait: the browser's WebGPU only reads back asynchronously.
    async fn read(&self, x: &Self::Tensor) -> Result<Vec<f32>> {
        self.to_vec(x)
    }

    /// The index of the largest value in the last row when the backend finds it without reading
    /// the row back (a GPU reads four bytes instead of the vocabulary); None: read the logits.
    async fn argmax(&self, _x: &Self::Tensor) -> Result<Option<u32>> {
        Ok(None)
    }
}

/// Bytes of a tensor in its GGUF encoding, from its type and shape (u64: a tensor may be larger
/// than a wasm32 address space when it goes to a GPU).
pub(crate) fn stored_bytes(info: &TensorInfo) -> Result<u64> {
    info.ty.byte_size(info.dims[0], info.elements()).ok_or_else(|| HearthError::Corrupt(format!("tensor '{}': rows of {} values are not whole {} blocks", info.name, info.dims[0], info.ty.name())))
}

/// The result of a future that is ready at its first poll: every backend future is, except a
/// WebGPU readback in the browser, which gets an error here (callers there use the async API).
pub fn now<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(crate::error::HearthError::Compute(
            "this backend answers asynchronously here: use the async API".into(),
        )),
    }
}
