//! CPU backend: weights stay in their GGUF encoding and matmuls run our own kernels
//! (src/backend/cpu/kernels: activations quantized exactly as ggml's x86 build does, scalar and
//! SIMD128 dot products, batched prefill tiles, rows split across rayon's pool), so results track
//! llama.cpp closely. Element-wise ops are plain loops that mirror ggml's arithmetic (f64 sums in
//! RMSNorm and softmax, iterated rope angles); SiLU has its own exp (kernels/silu.rs); attention
//! is one rayon task per (row, head).

pub mod kernels;

use super::{kv_rows_bytes, Backend, KvType, Rope, Routing};
use std::sync::atomic::{AtomicU64, Ordering};
use kernels::attn;
use rayon::prelude::*;
use crate::error::{HearthError, Result};
use crate::gguf::{TensorInfo, TensorType};

#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// Bytes of weights the matmuls have read, all CPU backends of the process together: a
/// mixture-of-experts decode reads only its chosen experts' rows, and this measures it
/// (`weight_bytes_read`; `hearth logits --weight-bytes`, tests/moe.rs).
static WEIGHT_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes of weights every matmul so far has read (each weight row counted once per matmul).
pub fn weight_bytes_read() -> u64 {
    WEIGHT_BYTES.load(Ordering::Relaxed)
}

/// The chosen experts of each token, `k` per token, and their weights.
#[derive(Clone, Debug)]
pub struct CpuRoute {
    pub rows: usize,
    pub k: usize,
    pub n_expert: usize,
    pub ids: Vec<u32>,
    pub weights: Vec<f32>,
}

/// A value moved to a pool thread and back while its owner waits (`Cpu::pass`).
struct Unshared<T>(T);
// SAFETY: see `Cpu::pass`, the only user.
unsafe impl<T> Send for Unshared<T> {}

impl<T> Unshared<T> {
    fn into_inner(self) -> T {
        self.0
    }
}

/// Row-major activations.
#[derive(Clone, Debug)]
pub struct CpuTensor {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

pub struct CpuWeight {
    ty: TensorType,
    /// The tensor's GGUF bytes.
    data: Vec<u8>,
    /// Rows (output features) and row length (input features).
    pub rows: usize,
    pub cols: usize,
    /// Values per stored row: `cols`, or for a float matrix whose rows do not fill the kernels'
    /// 32-value blocks (a feed-forward size of 172, say), `cols` rounded up, zero-padded.
    stride: usize,
}

impl CpuWeight {
    /// Rows `ids` as f32.
    fn dequantize_rows(&self, ids: &[usize]) -> Vec<f32> {
        let rows = kernels::dequantize_any(self.ty, &self.data, self.stride, ids);
        if self.stride == self.cols {
            return rows;
        }
        rows.chunks_exact(self.stride).flat_map(|r| &r[..self.cols]).copied().collect()
    }
}

/// A weight being received: its final allocation, filled piece by piece.
pub struct CpuPending {
    w: CpuWeight,
    /// Bytes per value of a float type whose rows are padded (0: stored as given).
    elem: usize,
    /// Bytes of the weight as stored.
    bytes: usize,
    name: String,
}

/// One layer's keys or values: `n_ctx` rows of `kv_dim` values in the cache's type.
enum KvRows {
    F32(Vec<f32>),
    /// Half bits.
    F16(Vec<u16>),
    /// ggml's block_q8_0 bytes, `kv_dim / 32` blocks per row.
    Q8_0(Vec<u8>),
}

impl KvRows {
    /// `n` values of type `ty`, zero, or None when the memory cannot be had.
    fn zeroed(ty: KvType, n: usize) -> Option<KvRows> {
        fn vec<T: Clone + Default>(n: usize) -> Option<Vec<T>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).ok()?;
            v.resize(n, T::default());
            Some(v)
        }
        Some(match ty {
            KvType::F32 => KvRows::F32(vec(n)?),
            KvType::F16 => KvRows::F16(vec(n)?),
            KvType::Q8_0 => KvRows::Q8_0(vec(n / 32 * attn::Q8_0_BYTES)?),
        })
    }

    /// The first `n` values' bytes (little-endian, as ggml stores them), appended to `out`.
    fn save(&self, n: usize, out: &mut Vec<u8>) {
        match self {
            KvRows::F32(c) => c[..n].iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            KvRows::F16(c) => c[..n].iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            KvRows::Q8_0(c) => out.extend_from_slice(&c[..n / 32 * attn::Q8_0_BYTES]),
        }
    }

    /// The first values from `save`'s bytes.
    fn restore(&mut self, bytes: &[u8]) {
        match self {
            KvRows::F32(c) => c.iter_mut().zip(bytes.chunks_exact(4)).for_each(|(x, b)| *x = f32::from_le_bytes(b.try_into().unwrap())),
            KvRows::F16(c) => c.iter_mut().zip(bytes.chunks_exact(2)).for_each(|(x, b)| *x = u16::from_le_bytes(b.try_into().unwrap())),
            KvRows::Q8_0(c) => c[..bytes.len()].copy_from_slice(bytes),
        }
    }

    /// Rows `pos0..` from `x` (rows of `kv_dim` values), converted to the cache's type.
    fn store(&mut self, x: &[f32], pos0: usize, kv_dim: usize) {
        let at = pos0 * kv_dim;
        match self {
            KvRows::F32(c) => c[at..at + x.len()].copy_from_slice(x),
            KvRows::F16(c) => attn::store_f16(x, &mut c[at..at + x.len()]),
            KvRows::Q8_0(c) => {
                let row = kv_dim / 32 * attn::Q8_0_BYTES;
                for (r, xs) in x.chunks_exact(kv_dim).enumerate() {
                    attn::store_q8_0(xs, &mut c[(pos0 + r) * row..(pos0 + r + 1) * row]);
                }
            }
        }
    }
}

pub struct CpuKvCache {
    k: Vec<KvRows>,
    v: Vec<KvRows>,
    kv_dim: usize,
    n_ctx: usize,
    ty: KvType,
}

impl CpuKvCache {
    pub fn kv_type(&self) -> KvType {
        self.ty
    }
}

impl Backend for Cpu {
    type Tensor = CpuTensor;
    type Weight = CpuWeight;
    type Vector = Vec<f32>;
    type KvCache = CpuKvCache;
    type Route = CpuRoute;
    type Pending = CpuPending;

    /// The pass runs on a pool thread: a parallel op started there has its first worker running
    /// at once and wakes the others, where one started outside the pool waits for a worker to
    /// wake, then again for itself to be woken at the end (about 130 ops per decoded token).
    /// Without a pool (the single-thread wasm build) rayon runs it here.
    fn pass<R>(&self, f: impl FnOnce() -> R) -> R {
        let f = Unshared(f);
        // SAFETY: the calling thread waits inside `rayon::scope` until `f` has returned (rayon's
        // latch orders its writes before ours), so nothing `f` captures is used by two threads at
        // once; the trait's contract keeps thread-bound values (thread-locals, JS objects) out.
        rayon::scope(move |_| Unshared(f.into_inner()())).into_inner()
    }

    fn begin_weight(&self, info: &TensorInfo) -> Result<CpuPending> {
        if kernels::block_values(info.ty).is_none() {
            return Err(HearthError::UnsupportedTensorType { name: info.name.clone(), ty: info.ty.name() });
        }
        let cols = info.dims[0] as usize;
        let rows = (info.elements() / info.dims[0]) as usize;
        let (elem, stride) = match info.ty {
            TensorType::F32 => (4, cols.next_multiple_of(32)),
            TensorType::F16 | TensorType::BF16 => (2, cols.next_multiple_of(32)),
            _ => (0, cols),
        };
        let bytes = if elem == 0 { super::stored_bytes(info)? } else { rows as u64 * stride as u64 * elem as u64 };
        // The final allocation, made once: the pieces are copied into it as they arrive.
        let mut data = Vec::new();
        usize::try_from(bytes)
            .ok()
            .and_then(|n| data.try_reserve_exact(n).ok())
            .ok_or(HearthError::ModelTooBig { needed: bytes, limit: 0 })?;
        Ok(CpuPending { w: CpuWeight { ty: info.ty, data, rows, cols, stride }, elem, bytes: bytes as usize, name: info.name.clone() })
    }

    fn write_weight(&self, p: &mut CpuPending, data: &[u8]) -> Result<()> {
        let w = &mut p.w;
        let padded = p.elem > 0 && w.stride != w.cols;
        let row = w.cols * p.elem;
        let adds = if padded { data.len() / row * w.stride * p.elem } else { data.len() };
        if (padded && data.len() % row != 0) || w.data.len() + adds > p.bytes {
            return Err(HearthError::Corrupt(format!("tensor '{}' received bytes that do not fit its shape", p.name)));
        }
        if !padded {
            w.data.extend_from_slice(data);
            return Ok(());
        }
        // Float rows that fill no 32-value block: each zero-padded to `stride` values (zeros add
        // nothing to a dot product, so the kernels keep one shape).
        for r in data.chunks_exact(row) {
            w.data.extend_from_slice(r);
            w.data.resize(w.data.len() + (w.stride - w.cols) * p.elem, 0);
        }
        Ok(())
    }

    fn finish_weight(&self, p: CpuPending) -> Result<CpuWeight> {
        if p.w.data.len() != p.bytes {
            return Err(HearthError::Corrupt(format!("tensor '{}' ended after {} of its {} bytes", p.name, p.w.data.len(), p.bytes)));
        }
        Ok(p.w)
    }

    fn read_weight(&self, w: &CpuWeight) -> Result<Vec<f32>> {
        Ok(w.dequantize_rows(&(0..w.rows).collect::<Vec<_>>()))
    }

    fn vector(&self, v: Vec<f32>) -> Result<Vec<f32>> {
        Ok(v)
    }

    fn new_kv_cache(&self, n_layer: usize, n_ctx: usize, kv_dim: usize, kv: KvType) -> Result<CpuKvCache> {
        if !kv_dim.is_multiple_of(kv.block_values()) {
            return Err(HearthError::InvalidArgument(format!("a {} KV cache needs rows of a multiple of {} values, not {kv_dim}", kv.name(), kv.block_values())));
        }
        let per_layer = n_ctx.checked_mul(kv_dim).ok_or_else(|| HearthError::InvalidArgument("context too large".into()))?;
        let mut k = Vec::with_capacity(n_layer);
        let mut v = Vec::with_capacity(n_layer);
        for _ in 0..n_layer {
            match (KvRows::zeroed(kv, per_layer), KvRows::zeroed(kv, per_layer)) {
                (Some(kl), Some(vl)) => {
                    k.push(kl);
                    v.push(vl);
                }
                _ => return Err(HearthError::ModelTooBig { needed: kv.cache_bytes(n_layer, n_ctx, kv_dim), limit: 0 }),
            }
        }
        Ok(CpuKvCache { k, v, kv_dim, n_ctx, ty: kv })
    }

    async fn read_kv(&self, cache: &CpuKvCache, len: usize) -> Result<Vec<u8>> {
        let n = len.min(cache.n_ctx) * cache.kv_dim;
        let mut out = Vec::new();
        out.try_reserve_exact(2 * cache.k.len() * cache.ty.bytes(n as u64) as usize).map_err(|_| HearthError::ModelTooBig { needed: 2 * cache.k.len() as u64 * cache.ty.bytes(n as u64), limit: 0 })?;
        for (k, v) in cache.k.iter().zip(&cache.v) {
            k.save(n, &mut out);
            v.save(n, &mut out);
        }
        Ok(out)
    }

    fn write_kv(&self, cache: &mut CpuKvCache, len: usize, bytes: &[u8]) -> Result<()> {
        let rows = kv_rows_bytes(cache.ty, cache.kv_dim, cache.n_ctx, cache.k.len(), len, bytes.len())?;
        for ((k, v), layer) in cache.k.iter_mut().zip(cache.v.iter_mut()).zip(bytes.chunks_exact(2 * rows)) {
            k.restore(&layer[..rows]);
            v.restore(&layer[rows..]);
        }
        Ok(())
    }

    fn embed(&self, table: &CpuWeight, ids: &[u32]) -> Result<CpuTensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(HearthError::InvalidArgument(format!("token id {bad} is outside the vocabulary of {}", table.rows)));
        }
        let data = table.dequantize_rows(&ids.iter().map(|&id| id as usize).collect::<Vec<_>>());
        Ok(CpuTensor { data, rows: ids.len(), cols: table.cols })
    }

    fn matmul(&self, x: &CpuTensor, w: &CpuWeight) -> Result<CpuTensor> {
        let data = matmul_rows(&x.data, x.rows, x.cols, w, 0, w.rows)?;
        Ok(CpuTensor { data, rows: x.rows, cols: w.rows })
    }

    fn route(&self, logits: &CpuTensor, r: &Routing) -> Result<CpuRoute> {
        if logits.cols != r.n_expert || r.k == 0 || r.k > r.n_expert {
            return Err(HearthError::Compute(format!("route: {} logits per token for {} experts, {} chosen", logits.cols, r.n_expert, r.k)));
        }
        let mut ids = vec![0u32; logits.rows * r.k];
        let mut weights = vec![0f32; logits.rows * r.k];
        let mut probs = Vec::new();
        for ((row, id), w) in logits.data.chunks_exact(logits.cols).zip(ids.chunks_exact_mut(r.k)).zip(weights.chunks_exact_mut(r.k)) {
            kernels::moe::route_row(row, r, &mut probs, id, w);
        }
        Ok(CpuRoute { rows: logits.rows, k: r.k, n_expert: r.n_expert, ids, weights })
    }

    fn matmul_experts(&self, x: &CpuTensor, w: &CpuWeight, route: &CpuRoute) -> Result<CpuTensor> {
        let (k, n_out) = (route.k, route.rows * route.k);
        let per_choice = match x.rows {
            r if r == n_out => true,
            r if r == route.rows => false,
            r => return Err(HearthError::Compute(format!("matmul_experts: {r} input rows for {} tokens of {k} experts", route.rows))),
        };
        if !w.rows.is_multiple_of(route.n_expert) {
            return Err(HearthError::Compute(format!("matmul_experts: {} rows do not split into {} experts", w.rows, route.n_expert)));
        }
        let n = w.rows / route.n_expert;
        let mut out = vec![0f32; n_out * n];
        // One matmul per chosen expert over the rows routed to it (prefill keeps its tiles), its
        // results scattered back: an expert nobody chose is never read.
        for e in 0..route.n_expert as u32 {
            let rows: Vec<usize> = (0..n_out).filter(|&i| route.ids[i] == e).collect();
            if rows.is_empty() {
                continue;
            }
            let mut xs = Vec::with_capacity(rows.len() * x.cols);
            for &i in &rows {
                let r = if per_choice { i } else { i / k };
                xs.extend_from_slice(&x.data[r * x.cols..(r + 1) * x.cols]);
            }
            let y = matmul_rows(&xs, rows.len(), x.cols, w, e as usize * n, n)?;
            for (&i, yr) in rows.iter().zip(y.chunks_exact(n)) {
                out[i * n..(i + 1) * n].copy_from_slice(yr);
            }
        }
        Ok(CpuTensor { data: out, rows: n_out, cols: n })
    }

    fn moe_combine(&self, y: &CpuTensor, route: &CpuRoute, weighted: bool) -> Result<CpuTensor> {
        if y.rows != route.rows * route.k {
            return Err(HearthError::Compute(format!("moe_combine: {} rows for {} tokens of {} experts", y.rows, route.rows, route.k)));
        }
        let n = y.cols;
        let mut out = vec![0f32; route.rows * n];
        for (t, o) in out.chunks_exact_mut(n).enumerate() {
            let w = weighted.then(|| &route.weights[t * route.k..(t + 1) * route.k]);
            kernels::moe::combine_row(&y.data[t * route.k * n..(t + 1) * route.k * n], n, w, o);
        }
        Ok(CpuTensor { data: out, rows: route.rows, cols: n })
    }

    fn moe_weigh_input(&self, x: &CpuTensor, route: &CpuRoute) -> Result<CpuTensor> {
        if x.rows != route.rows {
            return Err(HearthError::Compute(format!("moe_weigh_input: {} rows for {} tokens", x.rows, route.rows)));
        }
        let mut data = Vec::with_capacity(x.data.len() * route.k);
        for (i, &w) in route.weights.iter().enumerate() {
            let t = i / route.k;
            data.extend(x.data[t * x.cols..(t + 1) * x.cols].iter().map(|&v| v * w));
        }
        Ok(CpuTensor { data, rows: route.rows * route.k, cols: x.cols })
    }

    fn route_experts(&self, route: &CpuRoute) -> Result<Vec<u32>> {
        Ok(route.ids.clone())
    }

    fn rms_norm(&self, x: &CpuTensor, weight: &Vec<f32>, eps: f32) -> Result<CpuTensor> {
        let mut out = vec![0f32; x.data.len()];
        for (src, dst) in x.data.chunks_exact(x.cols).zip(out.chunks_exact_mut(x.cols)) {
            let sum: f64 = src.iter().map(|&v| (v * v) as f64).sum();
            let scale = 1.0 / ((sum / x.cols as f64) as f32 + eps).sqrt();
            for ((d, &s), &w) in dst.iter_mut().zip(src).zip(weight) {
                *d = s * scale * w;
            }
        }
        Ok(CpuTensor { data: out, rows: x.rows, cols: x.cols })
    }

    fn rms_norm_heads(&self, x: &CpuTensor, head_dim: usize, eps: f32) -> Result<CpuTensor> {
        if head_dim == 0 || !x.cols.is_multiple_of(head_dim) {
            return Err(HearthError::Compute(format!("rms_norm_heads: rows of {} values do not split into heads of {head_dim}", x.cols)));
        }
        let heads = CpuTensor { data: x.data.clone(), rows: x.data.len() / head_dim, cols: head_dim };
        let normed = self.rms_norm(&heads, &vec![1.0; head_dim], eps)?;
        Ok(CpuTensor { data: normed.data, rows: x.rows, cols: x.cols })
    }

    fn rope(&self, x: &mut CpuTensor, head_dim: usize, pos0: usize, rope: &Rope) -> Result<()> {
        let theta_scale = rope.freq_base.powf(-2.0 / rope.n_rot as f32);
        let mut cos_sin = vec![(0f32, 0f32); rope.n_rot / 2];
        for (r, row) in x.data.chunks_exact_mut(x.cols).enumerate() {
            // ggml builds the angles by repeated multiplication; do the same to match its rounding.
            let mut theta = (pos0 + r) as f32;
            for (i, cs) in cos_sin.iter_mut().enumerate() {
                let ff = rope.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                let t = rope.freq_scale * (theta / ff);
                *cs = (t.cos(), t.sin());
                theta *= theta_scale;
            }
            for head in row.chunks_exact_mut(head_dim) {
                for (pair, &(c, s)) in head[..rope.n_rot].chunks_exact_mut(2).zip(&cos_sin) {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * c - x1 * s;
                    pair[1] = x0 * s + x1 * c;
                }
            }
        }
        Ok(())
    }

    fn hadamard(&self, x: &mut CpuTensor, n: usize) -> Result<()> {
        if !n.is_power_of_two() || !x.cols.is_multiple_of(n) {
            return Err(HearthError::Compute(format!("hadamard: rows of {} values do not split into {n}-value groups", x.cols)));
        }
        attn::fwht(&mut x.data, n);
        Ok(())
    }

    fn attention(
        &self,
        cache: &mut CpuKvCache,
        layer: usize,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        pos0: usize,
        n_head: usize,
        n_head_kv: usize,
        scale: f32,
        chunk: usize,
    ) -> Result<CpuTensor> {
        let kv_dim = cache.kv_dim;
        let n_new = q.rows;
        if pos0 + n_new > cache.n_ctx {
            return Err(HearthError::ContextOverflow { tokens: pos0 + n_new, context: cache.n_ctx });
        }
        let head_dim = q.cols / n_head;
        if !head_dim.is_multiple_of(cache.ty.block_values()) {
            return Err(HearthError::InvalidArgument(format!("a {} KV cache needs heads of a multiple of {} values, not {head_dim}", cache.ty.name(), cache.ty.block_values())));
        }
        let (kc, vc) = (&mut cache.k[layer], &mut cache.v[layer]);
        kc.store(&k.data, pos0, kv_dim);
        vc.store(&v.data, pos0, kv_dim);

        let group = n_head / n_head_kv;
        let mut out = vec![0f32; n_new * q.cols];
        // One task per (row, head): prefill has rows x heads of them, decode one per head. Row r
        // sees itself and everything before (causal) back to the start of its chunk, if any:
        // positions first(r)..pos0 + r + 1.
        let task = |i: usize| (i / n_head, i % n_head);
        let first = |r: usize| (pos0 + r).checked_div(chunk).map_or(0, |c| c * chunk);
        let qhead = |r: usize, h: usize| &q.data[r * q.cols + h * head_dim..][..head_dim];
        match (&*kc, &*vc) {
            (KvRows::F32(kc), KvRows::F32(vc)) => {
                out.par_chunks_mut(head_dim).enumerate().for_each_init(Vec::new, |scores, (i, oh)| {
                    let (r, h) = task(i);
                    let (qh, off, j0) = (qhead(r, h), (h / group) * head_dim, first(r));
                    scores.clear();
                    scores.resize(pos0 + r + 1 - j0, 0f32);
                    for (j, s) in scores.iter_mut().enumerate() {
                        *s = dot(qh, &kc[(j0 + j) * kv_dim + off..][..head_dim]) * scale;
                    }
                    let inv = attn::softmax(scores);
                    for (j, &s) in scores.iter().enumerate() {
                        let w = s * inv;
                        let vh = &vc[(j0 + j) * kv_dim + off..][..head_dim];
                        for (o, &vv) in oh.iter_mut().zip(vh) {
                            *o += w * vv;
                        }
                    }
                });
            }
            // llama.cpp's plain path over an F16 cache (see kernels/attn.rs).
            (KvRows::F16(kc), KvRows::F16(vc)) => {
                out.par_chunks_mut(head_dim).enumerate().for_each_init(attn::F16Scratch::default, |scratch, (i, oh)| {
                    let (r, h) = task(i);
                    let j0 = first(r) * kv_dim;
                    attn::attend_f16(qhead(r, h), &kc[j0..], &vc[j0..], kv_dim, (h / group) * head_dim, pos0 + r + 1 - first(r), scale, scratch, oh);
                });
            }
            // llama.cpp's flash attention over a Q8_0 cache (see kernels/attn.rs).
            (KvRows::Q8_0(kc), KvRows::Q8_0(vc)) => {
                let row = kv_dim / 32 * attn::Q8_0_BYTES;
                out.par_chunks_mut(head_dim).enumerate().for_each_init(Vec::new, |q8, (i, oh)| {
                    let (r, h) = task(i);
                    let j0 = first(r) * row;
                    attn::attend_q8_0(qhead(r, h), &kc[j0..], &vc[j0..], row, (h / group) * head_dim / 32 * attn::Q8_0_BYTES, pos0 + r + 1 - first(r), scale, q8, oh);
                });
            }
            _ => unreachable!("K and V of a layer have one type"),
        }
        Ok(CpuTensor { data: out, rows: n_new, cols: q.cols })
    }

    fn scale_rows(&self, x: &mut CpuTensor, factors: &[f32]) -> Result<()> {
        if factors.len() != x.rows {
            return Err(HearthError::Compute(format!("scale_rows: {} factors for {} rows", factors.len(), x.rows)));
        }
        for (row, &f) in x.data.chunks_exact_mut(x.cols).zip(factors) {
            row.iter_mut().for_each(|v| *v *= f);
        }
        Ok(())
    }

    fn silu_mul(&self, gate: &CpuTensor, up: &CpuTensor) -> Result<CpuTensor> {
        let mut data = vec![0f32; gate.data.len()];
        kernels::silu_mul(&gate.data, &up.data, &mut data);
        Ok(CpuTensor { data, rows: gate.rows, cols: gate.cols })
    }

    fn add_assign(&self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        for (x, &y) in a.data.iter_mut().zip(&b.data) {
            *x += y;
        }
        Ok(())
    }

    fn add_scaled(&self, a: &mut CpuTensor, b: &CpuTensor, s: f32) -> Result<()> {
        if a.data.len() != b.data.len() {
            return Err(HearthError::Compute(format!("add_scaled: {} values and {}", a.data.len(), b.data.len())));
        }
        kernels::add_scaled(&mut a.data, &b.data, s);
        Ok(())
    }

    fn last_row(&self, x: &CpuTensor) -> Result<CpuTensor> {
        Ok(CpuTensor { data: x.data[(x.rows - 1) * x.cols..].to_vec(), rows: 1, cols: x.cols })
    }

    fn to_vec(&self, x: &CpuTensor) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }
}

/// `m` rows of `x` (`cols` each) times weight rows `row0..row0 + n` (the kernels' padded rows
/// where a float weight has them), counted in `WEIGHT_BYTES`.
fn matmul_rows(x: &[f32], m: usize, cols: usize, w: &CpuWeight, row0: usize, n: usize) -> Result<Vec<f32>> {
    if cols != w.cols {
        return Err(HearthError::Compute(format!("matmul: input has {cols} columns, weight rows are {} long", w.cols)));
    }
    let qk = kernels::block_values(w.ty).unwrap_or(1);
    if !w.stride.is_multiple_of(qk) {
        return Err(HearthError::Compute(format!("matmul: {} rows of {} values do not split into {qk}-value blocks", w.ty, w.cols)));
    }
    let row_bytes = w.data.len() / w.rows;
    let wd = &w.data[row0 * row_bytes..(row0 + n) * row_bytes];
    WEIGHT_BYTES.fetch_add(wd.len() as u64, Ordering::Relaxed);
    let mut out = vec![0f32; m * n];
    if w.stride == w.cols {
        kernels::matmul(w.ty, wd, n, w.cols, x, m, &mut out);
    } else {
        let mut padded = vec![0f32; m * w.stride];
        for (src, dst) in x.chunks_exact(cols).zip(padded.chunks_exact_mut(w.stride)) {
            dst[..cols].copy_from_slice(src);
        }
        kernels::matmul(w.ty, wd, n, w.stride, &padded, m, &mut out);
    }
    Ok(out)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
