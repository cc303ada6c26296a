//! The operations the Llama forward pass needs, and nothing else. The model is written once
//! against this trait; each backend owns its tensors (CPU memory here, GPU buffers later) so a
//! GPU backend can record a whole step and read back only the logits.

pub mod cpu;
pub mod gpu;

use crate::error::Result;
use crate::gguf::TensorInfo;

/// Rotary embedding parameters, resolved from the GGUF (base, linear scaling, Llama 3.1 factors).
#[derive(Clone, Debug)]
pub struct Rope {
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// Per-pair divisors of the frequency (`rope_freqs.weight`), `n_rot / 2` of them.
    pub freq_factors: Option<Vec<f32>>,
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
    /// Keys and values of every layer for one sequence.
    type KvCache;

    /// Run one forward pass, `f` (a sequence of this backend's ops), where the backend wants it:
    /// the CPU backend moves it onto a thread of its pool (see `Cpu::pass`). `f` must use no
    /// values tied to the calling thread (thread-locals, JS objects).
    fn pass<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Place one tensor's GGUF bytes in the backend (as they arrive from the stream).
    fn upload(&self, info: &TensorInfo, data: &[u8]) -> Result<Self::Weight>;
    /// The weight dequantized to f32 (small tensors: norms, rope factors).
    fn read_weight(&self, w: &Self::Weight) -> Result<Vec<f32>>;
    /// Place a small f32 vector (a norm's weights) in the backend.
    fn vector(&self, v: Vec<f32>) -> Result<Self::Vector>;

    fn new_kv_cache(&self, n_layer: usize, n_ctx: usize, kv_dim: usize) -> Result<Self::KvCache>;

    /// Rows `ids` of an embedding table, read from its quantized form.
    fn embed(&self, table: &Self::Weight, ids: &[u32]) -> Result<Self::Tensor>;
    /// x · Wᵀ: `[rows, k]` by a `[n, k]` weight gives `[rows, n]`.
    fn matmul(&self, x: &Self::Tensor, w: &Self::Weight) -> Result<Self::Tensor>;
    /// RMS-normalize each row, then scale by `weight`.
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Vector, eps: f32) -> Result<Self::Tensor>;
    /// Rotate pairs (x[2i], x[2i+1]) of every head in place; row r is at position `pos0 + r`.
    fn rope(&self, x: &mut Self::Tensor, head_dim: usize, pos0: usize, rope: &Rope) -> Result<()>;
    /// Store k and v of the new rows at positions `pos0..` of `layer`, then causal attention of
    /// q over positions `0..pos0 + rows`.
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
    ) -> Result<Self::Tensor>;
    /// silu(gate) * up, elementwise.
    fn silu_mul(&self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;
    /// a += b.
    fn add_assign(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
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
