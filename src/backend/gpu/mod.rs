//! WebGPU backend (wgpu: the browser's WebGPU on wasm32, Vulkan natively). Weights are uploaded
//! once as their GGUF blocks (u32 words, split by rows across buffers when a tensor exceeds the
//! adapter's binding limit) and dequantized inside the kernels; a forward pass records every
//! dispatch into one command encoder and only a readback (`to_vec`, `argmax`) submits it.
//! Kernels live in `wgsl/`, one per file; `wgsl/types/` gives each weight type's `dequant4`,
//! `wgsl/fast/` the decode matvec of the common types. `matmul` runs the tiled kernel for
//! prefill (4 or more rows) and a matvec for decode (see `kernels::pick_matmul`).

mod context;
mod kernels;

use std::rc::Rc;

use super::{Backend, Gating, KvType, Rope, Routing};
use crate::backend::cpu::kernels as cpu_kernels;
use crate::error::{HearthError, Result};
use crate::gguf::{TensorInfo, TensorType};
pub use context::{GpuInfo, GpuOptions};
use context::Ctx;
use kernels::{Kernel, FAST_ROWS, TILE};

/// The backend: a device, its queue and the recorder of the pass in progress.
#[derive(Clone)]
pub struct Gpu {
    ctx: Rc<Ctx>,
}

/// An activation tensor: `rows` x `cols` f32 in a pooled storage buffer.
pub struct GpuTensor {
    buf: context::Pooled,
    pub rows: usize,
    pub cols: usize,
}

/// A weight in its GGUF encoding, split by rows into buffers the adapter can bind.
pub struct GpuWeight {
    ty: TensorType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    chunks: Vec<Chunk>,
    /// The bytes of a 1-D tensor (norms, rope factors), which the model reads on the host.
    host: Option<Vec<u8>>,
}

/// A weight being received: its buffers, made when it began, and how far they are written.
pub struct GpuPending {
    w: GpuWeight,
    /// Rows written so far.
    row: usize,
    /// The bytes after the last whole word written (a queue write takes whole words; rows need
    /// not be): at most 3, written with the next piece or as the buffer's last word.
    carry: Vec<u8>,
    name: String,
}

/// Write `data` into `buf` at byte `at`, where `carry` holds the `at % 4` bytes before it that are
/// not written yet; leaves the bytes after the last whole word in `carry`.
fn put_words(ctx: &Ctx, buf: &wgpu::Buffer, at: u64, mut data: &[u8], carry: &mut Vec<u8>) -> Result<()> {
    assert_eq!(at % 4, carry.len() as u64);
    let mut at = at;
    if !carry.is_empty() {
        let n = (4 - carry.len()).min(data.len());
        carry.extend_from_slice(&data[..n]);
        data = &data[n..];
        at += n as u64;
        if carry.len() < 4 {
            return Ok(());
        }
        ctx.write(buf, at - 4, carry)?;
        carry.clear();
    }
    let whole = data.len() & !3;
    if whole > 0 {
        ctx.write(buf, at, &data[..whole])?;
    }
    carry.extend_from_slice(&data[whole..]);
    Ok(())
}

struct Chunk {
    buf: wgpu::Buffer,
    row0: usize,
    rows: usize,
}

/// A mixture-of-experts routing on the GPU: `rows · k` expert ids, then as many weights' bits.
pub struct GpuRoute {
    buf: context::Pooled,
    pub rows: usize,
    pub k: usize,
    pub n_expert: usize,
}

/// A small f32 vector (norm weights) on the GPU.
pub struct GpuVector {
    buf: wgpu::Buffer,
}

/// Per layer, positions x kv_dim values of the cache's type (the `wgsl/kv/*.wgsl` modules: f32;
/// f16, as vec4<f16> or packed in u32 words without shader-f16; Q8_0, every value's byte and
/// then the blocks' f16 scales).
pub struct GpuKvCache {
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    kv_dim: usize,
    n_ctx: usize,
    ty: KvType,
    /// Q8_0: the word index of the first scale in each layer's buffers (0 otherwise).
    scales: usize,
}

impl GpuKvCache {
    /// The cache type as the KV kernels are specialized for it.
    fn kernel_type(&self) -> TensorType {
        match self.ty {
            KvType::F32 => TensorType::F32,
            KvType::F16 => TensorType::F16,
            KvType::Q8_0 => TensorType::Q8_0,
        }
    }
}

impl GpuWeight {
    /// Bytes of the weight as stored (what one matvec reads).
    pub fn bytes(&self) -> u64 {
        self.rows as u64 * self.row_bytes as u64
    }
}

impl Gpu {
    /// Open the first adapter (asynchronous: the browser's WebGPU only answers that way).
    pub async fn new(opts: GpuOptions) -> Result<Gpu> {
        Ok(Gpu { ctx: Rc::new(Ctx::new(opts).await?) })
    }

    /// `new`, waited for (native only).
    #[cfg(not(target_family = "wasm"))]
    pub fn new_blocking(opts: GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::new(opts))
    }

    pub fn info(&self) -> &GpuInfo {
        &self.ctx.info
    }

    /// A software rasterizer (SwiftShader, lavapipe, a browser's fallback adapter): correct but
    /// slower than the CPU backend's SIMD kernels, so "auto" does not choose it.
    pub fn is_software(&self) -> bool {
        let name = self.ctx.info.name.to_lowercase();
        self.ctx.info.device_type == "Cpu" || ["swiftshader", "llvmpipe", "lavapipe"].iter().any(|s| name.contains(s))
    }

    /// Make the device lost, as a driver reset would (tests of the CPU fallback).
    pub fn lose_device(&self) {
        self.ctx.device.destroy();
    }

    /// Whether `ty` has GPU kernels.
    pub fn supports(ty: TensorType) -> bool {
        kernels::type_source(ty).is_some()
    }

    /// Whether this adapter can run the model a GGUF header describes: every weight type has
    /// kernels and every row fits a buffer the adapter can bind (a tensor is split by rows).
    pub fn check_model(&self, header: &crate::gguf::Header) -> Result<()> {
        for t in &header.tensors {
            if t.dims.len() == 1 {
                continue; // read on the host
            }
            if !Gpu::supports(t.ty) {
                return Err(HearthError::UnsupportedTensorType { name: t.name.clone(), ty: format!("{} (on the GPU)", t.ty.name()) });
            }
            let row = t.ty.byte_size(t.dims[0], t.dims[0]).unwrap_or(u64::MAX);
            if row > self.ctx.max_chunk_bytes() {
                return Err(HearthError::ModelTooBig { needed: row, limit: self.ctx.max_chunk_bytes() });
            }
        }
        Ok(())
    }

    /// The index of the largest value of the last row (a greedy step reads back four bytes).
    pub async fn argmax_last(&self, x: &GpuTensor) -> Result<u32> {
        let out = self.ctx.alloc(4)?;
        let n = x.cols as u32;
        let off = ((x.rows - 1) * x.cols) as u64 * 4;
        // The kernel reads from the start of its binding: bind the last row.
        self.ctx.dispatch_ranges(Kernel::Argmax, None, &[n], &[(&x.buf, off, x.cols as u64 * 4), (&out, 0, 4)], [1, 1, 1])?;
        let bytes = self.ctx.read(&out, 4).await?;
        Ok(u32::from_le_bytes(bytes[..4].try_into().unwrap()))
    }

    /// `to_vec`, asynchronous (what the browser needs).
    pub async fn read_all(&self, x: &GpuTensor) -> Result<Vec<f32>> {
        let n = x.rows * x.cols;
        let bytes = self.ctx.read(&x.buf, n as u64 * 4).await?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
    }

    /// An activation tensor holding `data` (tests and callers that start from host values).
    pub fn tensor_from(&self, rows: usize, cols: usize, data: &[f32]) -> Result<GpuTensor> {
        if data.len() != rows * cols {
            return Err(HearthError::InvalidArgument(format!("{} values for a {rows}x{cols} tensor", data.len())));
        }
        let t = self.tensor(rows, cols)?;
        // Submit what is recorded first: the write lands before the next submission only.
        self.ctx.flush();
        self.ctx.queue.write_buffer(&t.buf, 0, &data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
        Ok(t)
    }

    fn tensor(&self, rows: usize, cols: usize) -> Result<GpuTensor> {
        Ok(GpuTensor { buf: self.ctx.alloc(rows as u64 * cols as u64 * 4)?, rows, cols })
    }

    /// The rope table (theta_scale^i as ggml iterates it, frequency factor i), made once.
    fn rope_table(&self, rope: &Rope) -> Result<Rc<wgpu::Buffer>> {
        let theta_scale = rope.freq_base.powf(-2.0 / rope.n_rot as f32);
        let mut table = Vec::with_capacity(rope.n_rot);
        let mut t = 1f32;
        for i in 0..rope.n_rot / 2 {
            table.push(t);
            table.push(rope.freq_factors.as_ref().map_or(1.0, |f| f[i]));
            t *= theta_scale;
        }
        let mut cached = self.ctx.rope_table.borrow_mut();
        if let Some((key, buf)) = cached.as_ref() {
            if *key == table {
                return Ok(buf.clone());
            }
        }
        let buf = Rc::new(self.ctx.upload_f32(&table)?);
        *cached = Some((table, buf.clone()));
        Ok(buf)
    }
}

/// Split `n` workgroups into a grid no dimension of which exceeds WebGPU's 65535.
fn grid(n: usize) -> (u32, u32) {
    const MAX: usize = 65535;
    if n <= MAX {
        (n.max(1) as u32, 1)
    } else {
        (MAX as u32, n.div_ceil(MAX) as u32)
    }
}

impl Backend for Gpu {
    type Tensor = GpuTensor;
    type Weight = GpuWeight;
    type Vector = GpuVector;
    type KvCache = GpuKvCache;
    type Route = GpuRoute;
    type Pending = GpuPending;

    fn begin_weight(&self, info: &TensorInfo) -> Result<GpuPending> {
        if cpu_kernels::block_values(info.ty).is_none() || !Gpu::supports(info.ty) {
            return Err(HearthError::UnsupportedTensorType { name: info.name.clone(), ty: info.ty.name() });
        }
        let cols = info.dims[0] as usize;
        let rows = (info.elements() / info.dims[0]) as usize;
        let size = super::stored_bytes(info)?;
        let row_bytes = usize::try_from(size / rows.max(1) as u64).map_err(|_| HearthError::ModelTooBig { needed: size, limit: usize::MAX as u64 })?;
        let mut w = GpuWeight { ty: info.ty, rows, cols, row_bytes, chunks: Vec::new(), host: None };
        if info.dims.len() == 1 {
            // Norms and rope factors are read on the host; they never enter a matmul.
            w.host = Some(Vec::with_capacity(row_bytes));
            return Ok(GpuPending { w, row: 0, carry: Vec::new(), name: info.name.clone() });
        }
        let limit = self.ctx.max_chunk_bytes();
        if w.row_bytes as u64 > limit {
            return Err(HearthError::ModelTooBig { needed: w.row_bytes as u64, limit });
        }
        // The buffers, split by rows, made up front; the pieces are written into them in place.
        let per_chunk = (limit / w.row_bytes as u64).max(1) as usize;
        for row0 in (0..rows).step_by(per_chunk) {
            let n = per_chunk.min(rows - row0);
            w.chunks.push(Chunk { buf: self.ctx.weight_buffer((n * w.row_bytes) as u64)?, row0, rows: n });
        }
        Ok(GpuPending { w, row: 0, carry: Vec::with_capacity(4), name: info.name.clone() })
    }

    fn write_weight(&self, p: &mut GpuPending, mut data: &[u8]) -> Result<()> {
        let rb = p.w.row_bytes;
        let overflow = || HearthError::Corrupt(format!("tensor '{}' received bytes that do not fit its shape", p.name));
        if let Some(host) = p.w.host.as_mut() {
            if host.len() + data.len() > rb * p.w.rows {
                return Err(overflow());
            }
            host.extend_from_slice(data);
            return Ok(());
        }
        if !data.len().is_multiple_of(rb) || p.row + data.len() / rb > p.w.rows {
            return Err(overflow());
        }
        while !data.is_empty() {
            // The buffer holding row `p.row`, and the rows of `data` that go into it.
            let c = &p.w.chunks[p.row / p.w.chunks[0].rows];
            let n = (c.row0 + c.rows - p.row).min(data.len() / rb);
            let at = ((p.row - c.row0) * rb) as u64;
            put_words(&self.ctx, &c.buf, at, &data[..n * rb], &mut p.carry)?;
            p.row += n;
            data = &data[n * rb..];
            if p.row == c.row0 + c.rows && !p.carry.is_empty() {
                // The buffer's last word, completed with zeros.
                let at = ((c.rows * rb) as u64) & !3;
                p.carry.resize(4, 0);
                self.ctx.write(&c.buf, at, &p.carry)?;
                p.carry.clear();
            }
        }
        Ok(())
    }

    fn finish_weight(&self, p: GpuPending) -> Result<GpuWeight> {
        let done = match &p.w.host {
            Some(h) => h.len() == p.w.row_bytes * p.w.rows,
            None => p.row == p.w.rows,
        };
        if !done {
            return Err(HearthError::Corrupt(format!("tensor '{}' ended before all its bytes arrived", p.name)));
        }
        Ok(p.w)
    }

    fn read_weight(&self, w: &GpuWeight) -> Result<Vec<f32>> {
        let bytes = w.host.as_ref().ok_or_else(|| HearthError::Compute("a 2-D GPU weight cannot be read back".into()))?;
        Ok(cpu_kernels::dequantize_any(w.ty, bytes, w.cols, &(0..w.rows).collect::<Vec<_>>()))
    }

    fn vector(&self, v: Vec<f32>) -> Result<GpuVector> {
        Ok(GpuVector { buf: self.ctx.upload_f32(&v)? })
    }

    fn new_kv_cache(&self, n_layer: usize, n_ctx: usize, kv_dim: usize, kv: KvType) -> Result<GpuKvCache> {
        let block = kv.block_values().max(4);
        if !kv_dim.is_multiple_of(block) {
            return Err(HearthError::InvalidArgument(format!("a {} KV cache on the GPU needs rows of a multiple of {block} values, not {kv_dim}", kv.name())));
        }
        let values = n_ctx as u64 * kv_dim as u64;
        // Q8_0: the values' bytes (whole words: rows are whole blocks), then two scales a word.
        let (bytes, scales) = match kv {
            KvType::Q8_0 => (values + (values / 32).div_ceil(2) * 4, values / 4),
            _ => (kv.bytes(values), 0),
        };
        if bytes > self.ctx.max_chunk_bytes() {
            return Err(HearthError::ModelTooBig { needed: bytes, limit: self.ctx.max_chunk_bytes() });
        }
        let mut k = Vec::with_capacity(n_layer);
        let mut v = Vec::with_capacity(n_layer);
        for _ in 0..n_layer {
            k.push(self.ctx.storage(bytes)?);
            v.push(self.ctx.storage(bytes)?);
        }
        Ok(GpuKvCache { k, v, kv_dim, n_ctx, ty: kv, scales: scales as usize })
    }

    async fn read_kv(&self, cache: &GpuKvCache, len: usize) -> Result<Vec<u8>> {
        let n = len.min(cache.n_ctx) * cache.kv_dim;
        let mut out = Vec::new();
        for (k, v) in cache.k.iter().zip(&cache.v) {
            for buf in [k, v] {
                match cache.ty {
                    KvType::Q8_0 => {
                        // Values' bytes, then two f16 scales a word: as ggml's blocks, scale first.
                        let at = 4 * cache.scales;
                        let words = self.ctx.read(buf, (at + (n / 32).div_ceil(2) * 4) as u64).await?;
                        for (b, qs) in words[..n].chunks_exact(32).enumerate() {
                            out.extend_from_slice(&words[at + 2 * b..at + 2 * b + 2]);
                            out.extend_from_slice(qs);
                        }
                    }
                    ty => out.extend_from_slice(&self.ctx.read(buf, ty.bytes(n as u64)).await?[..ty.bytes(n as u64) as usize]),
                }
            }
        }
        Ok(out)
    }

    fn write_kv(&self, cache: &mut GpuKvCache, len: usize, bytes: &[u8]) -> Result<()> {
        let rows = super::kv_rows_bytes(cache.ty, cache.kv_dim, cache.n_ctx, cache.k.len(), len, bytes.len())?;
        for ((k, v), layer) in cache.k.iter().zip(&cache.v).zip(bytes.chunks_exact(2 * rows)) {
            for (buf, saved) in [(k, &layer[..rows]), (v, &layer[rows..])] {
                if cache.ty != KvType::Q8_0 {
                    self.ctx.write(buf, 0, saved)?;
                    continue;
                }
                let blocks = saved.len() / 34;
                let (mut qs, mut ds) = (Vec::with_capacity(blocks * 32), vec![0u8; blocks.div_ceil(2) * 4]);
                for (b, block) in saved.chunks_exact(34).enumerate() {
                    ds[2 * b..2 * b + 2].copy_from_slice(&block[..2]);
                    qs.extend_from_slice(&block[2..]);
                }
                self.ctx.write(buf, 0, &qs)?;
                self.ctx.write(buf, 4 * cache.scales as u64, &ds)?;
            }
        }
        Ok(())
    }

    fn embed(&self, table: &GpuWeight, ids: &[u32]) -> Result<GpuTensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(HearthError::InvalidArgument(format!("token id {bad} is outside the vocabulary of {}", table.rows)));
        }
        let out = self.tensor(ids.len(), table.cols)?;
        let ids_buf = self.ctx.upload_u32(ids)?;
        let n = ids.len() * table.cols / 4;
        let (gx, gy) = grid(n.div_ceil(64));
        for c in &table.chunks {
            let p = [ids.len() as u32, table.cols as u32, table.row_bytes as u32, c.row0 as u32, c.rows as u32, gx * 64];
            self.ctx.dispatch(Kernel::Embed, Some(table.ty), &p, &[&c.buf, &ids_buf, &out.buf], [gx, gy, 1])?;
        }
        Ok(out)
    }

    fn matmul(&self, x: &GpuTensor, w: &GpuWeight) -> Result<GpuTensor> {
        if x.cols != w.cols || !w.cols.is_multiple_of(4) {
            return Err(HearthError::Compute(format!("matmul: input has {} columns, weight rows are {} long", x.cols, w.cols)));
        }
        let out = self.tensor(x.rows, w.rows)?;
        let kernel = if self.ctx.generic_kernels { Kernel::Matvec } else { kernels::pick_matmul(w.ty, x.rows, w.cols) };
        for c in &w.chunks {
            let bufs = [&c.buf, &x.buf, &out.buf];
            match kernel {
                Kernel::Matmul => {
                    let p = [x.rows as u32, c.rows as u32, w.cols as u32, w.row_bytes as u32, c.row0 as u32, w.rows as u32];
                    let groups = [c.rows.div_ceil(TILE) as u32, x.rows.div_ceil(TILE) as u32, 1];
                    self.ctx.dispatch(kernel, Some(w.ty), &p, &bufs, groups)?;
                }
                _ => {
                    // Matvec: one workgroup per row; MatvecFast: per FAST_ROWS rows; z = token.
                    let (gx, gy) = grid(if kernel == Kernel::MatvecFast { c.rows.div_ceil(FAST_ROWS) } else { c.rows });
                    let p = [c.rows as u32, w.cols as u32, w.row_bytes as u32, c.row0 as u32, w.rows as u32];
                    self.ctx.dispatch(kernel, Some(w.ty), &p, &bufs, [gx, gy, x.rows as u32])?;
                }
            }
        }
        Ok(out)
    }

    fn route(&self, logits: &GpuTensor, r: &Routing) -> Result<GpuRoute> {
        if logits.cols != r.n_expert || r.k == 0 || r.k > r.n_expert {
            return Err(HearthError::Compute(format!("route: {} logits per token for {} experts, {} chosen", logits.cols, r.n_expert, r.k)));
        }
        let n = logits.rows * r.k;
        let route = GpuRoute { buf: self.ctx.alloc(2 * n as u64 * 4)?, rows: logits.rows, k: r.k, n_expert: r.n_expert };
        let p = [logits.rows as u32, r.n_expert as u32, r.k as u32, (r.gating == Gating::Sigmoid) as u32, r.normalize as u32, r.scale.to_bits()];
        self.ctx.dispatch(Kernel::MoeRoute, None, &p, &[&logits.buf, &route.buf], [logits.rows.div_ceil(64) as u32, 1, 1])?;
        Ok(route)
    }

    fn matmul_experts(&self, x: &GpuTensor, w: &GpuWeight, route: &GpuRoute) -> Result<GpuTensor> {
        let choices = route.rows * route.k;
        let x_div = match x.rows {
            r if r == choices => 1,
            r if r == route.rows => route.k,
            r => return Err(HearthError::Compute(format!("matmul_experts: {r} input rows for {} tokens of {} experts", route.rows, route.k))),
        };
        if x.cols != w.cols || !w.cols.is_multiple_of(4) || !w.rows.is_multiple_of(route.n_expert) || choices > 65535 {
            return Err(HearthError::Compute(format!("matmul_experts: {choices} choices of {} columns against {} rows of {}", x.cols, w.rows, w.cols)));
        }
        let n = w.rows / route.n_expert;
        let out = self.tensor(choices, n)?;
        let (gx, gy) = grid(n);
        // Each chunk of rows in its own dispatch; a workgroup whose expert row lies elsewhere idles.
        for c in &w.chunks {
            let p = [n as u32, w.cols as u32, w.row_bytes as u32, c.row0 as u32, c.rows as u32, x_div as u32];
            self.ctx.dispatch(Kernel::MatvecExperts, Some(w.ty), &p, &[&c.buf, &x.buf, &route.buf, &out.buf], [gx, gy, choices as u32])?;
        }
        Ok(out)
    }

    fn moe_combine(&self, y: &GpuTensor, route: &GpuRoute, weighted: bool) -> Result<GpuTensor> {
        if y.rows != route.rows * route.k {
            return Err(HearthError::Compute(format!("moe_combine: {} rows for {} tokens of {} experts", y.rows, route.rows, route.k)));
        }
        let out = self.tensor(route.rows, y.cols)?;
        let (gx, gy) = grid((route.rows * y.cols).div_ceil(64));
        let p = [y.cols as u32, route.rows as u32, route.k as u32, weighted as u32, gx * 64];
        self.ctx.dispatch(Kernel::MoeCombine, None, &p, &[&y.buf, &route.buf, &out.buf], [gx, gy, 1])?;
        Ok(out)
    }

    fn moe_weigh_input(&self, x: &GpuTensor, route: &GpuRoute) -> Result<GpuTensor> {
        if x.rows != route.rows {
            return Err(HearthError::Compute(format!("moe_weigh_input: {} rows for {} tokens", x.rows, route.rows)));
        }
        let choices = route.rows * route.k;
        let out = self.tensor(choices, x.cols)?;
        let (gx, gy) = grid((choices * x.cols).div_ceil(64));
        let p = [x.cols as u32, choices as u32, route.k as u32, gx * 64];
        self.ctx.dispatch(Kernel::MoeWeigh, None, &p, &[&x.buf, &route.buf, &out.buf], [gx, gy, 1])?;
        Ok(out)
    }

    fn route_experts(&self, route: &GpuRoute) -> Result<Vec<u32>> {
        let n = route.rows * route.k;
        let bytes = super::now(self.ctx.read(&route.buf, n as u64 * 4))?;
        Ok(bytes.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect())
    }

    fn rms_norm(&self, x: &GpuTensor, weight: &GpuVector, eps: f32) -> Result<GpuTensor> {
        let out = self.tensor(x.rows, x.cols)?;
        self.ctx.dispatch(Kernel::RmsNorm, None, &[x.cols as u32, eps.to_bits()], &[&x.buf, &weight.buf, &out.buf], [x.rows as u32, 1, 1])?;
        Ok(out)
    }

    fn rms_norm_heads(&self, x: &GpuTensor, head_dim: usize, eps: f32) -> Result<GpuTensor> {
        if head_dim == 0 || !x.cols.is_multiple_of(head_dim) {
            return Err(HearthError::Compute(format!("rms_norm_heads: rows of {} values do not split into heads of {head_dim}", x.cols)));
        }
        // The row kernel over one head per workgroup, times a weight of ones.
        let ones = self.vector(vec![1.0; head_dim])?;
        let heads = x.rows * x.cols / head_dim;
        let out = self.tensor(x.rows, x.cols)?;
        self.ctx.dispatch(Kernel::RmsNorm, None, &[head_dim as u32, eps.to_bits()], &[&x.buf, &ones.buf, &out.buf], [heads as u32, 1, 1])?;
        Ok(out)
    }

    fn rope(&self, x: &mut GpuTensor, head_dim: usize, pos0: usize, rope: &Rope) -> Result<()> {
        let table = self.rope_table(rope)?;
        let heads = x.cols / head_dim;
        let n = x.rows * heads * rope.n_rot / 2;
        let p = [x.rows as u32, heads as u32, head_dim as u32, (rope.n_rot / 2) as u32, pos0 as u32, rope.freq_scale.to_bits()];
        self.ctx.dispatch(Kernel::Rope, None, &p, &[&table, &x.buf], [n.div_ceil(64) as u32, 1, 1])
    }

    fn hadamard(&self, x: &mut GpuTensor, n: usize) -> Result<()> {
        if !n.is_power_of_two() || !x.cols.is_multiple_of(n) {
            return Err(HearthError::Compute(format!("hadamard: rows of {} values do not split into {n}-value groups", x.cols)));
        }
        let groups = x.rows * x.cols / n;
        let (gx, gy) = grid(groups.div_ceil(64));
        self.ctx.dispatch(Kernel::Fwht, None, &[groups as u32, n as u32, gx * 64], &[&x.buf], [gx, gy, 1])
    }

    fn attention(
        &self,
        cache: &mut GpuKvCache,
        layer: usize,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        pos0: usize,
        n_head: usize,
        n_head_kv: usize,
        scale: f32,
        chunk: usize,
    ) -> Result<GpuTensor> {
        let (kv_dim, n_new) = (cache.kv_dim, q.rows);
        if pos0 + n_new > cache.n_ctx {
            return Err(HearthError::ContextOverflow { tokens: pos0 + n_new, context: cache.n_ctx });
        }
        let head_dim = q.cols / n_head;
        if !head_dim.is_multiple_of(4) || head_dim > 256 {
            return Err(HearthError::Compute(format!("GPU attention takes heads of a multiple of 4 up to 256 values, not {head_dim}")));
        }
        if !head_dim.is_multiple_of(cache.ty.block_values()) {
            return Err(HearthError::InvalidArgument(format!("a {} KV cache needs heads of a multiple of {} values, not {head_dim}", cache.ty.name(), cache.ty.block_values())));
        }
        // New rows into the cache (converted to its type), then one dispatch for all rows.
        let ty = Some(cache.kernel_type());
        let bufs = [&k.buf, &v.buf, &cache.k[layer], &cache.v[layer]];
        if cache.ty == KvType::Q8_0 {
            // One thread per scale word (two blocks) the new blocks touch.
            let (b0, n_blocks) = (pos0 * kv_dim / 32, n_new * kv_dim / 32);
            let words = (b0 + n_blocks).div_ceil(2) - b0 / 2;
            let (gx, gy) = grid(words.div_ceil(64));
            let p = [n_blocks as u32, b0 as u32, gx * 64, cache.scales as u32];
            self.ctx.dispatch(Kernel::KvStore, ty, &p, &bufs, [gx, gy, 1])?;
        } else {
            let n4 = n_new * kv_dim / 4;
            let (gx, gy) = grid(n4.div_ceil(64));
            let p = [n4 as u32, (pos0 * kv_dim / 4) as u32, gx * 64, 0];
            self.ctx.dispatch(Kernel::KvStore, ty, &p, &bufs, [gx, gy, 1])?;
        }
        let out = self.tensor(n_new, q.cols)?;
        let p = [n_head as u32, (n_head / n_head_kv) as u32, head_dim as u32, kv_dim as u32, pos0 as u32, scale.to_bits(), cache.scales as u32, chunk as u32];
        let bufs = [&q.buf, &cache.k[layer], &cache.v[layer], &out.buf];
        self.ctx.dispatch(Kernel::Attention, ty, &p, &bufs, [n_head as u32, n_new as u32, 1])?;
        Ok(out)
    }

    fn scale_rows(&self, x: &mut GpuTensor, factors: &[f32]) -> Result<()> {
        if factors.len() != x.rows {
            return Err(HearthError::Compute(format!("scale_rows: {} factors for {} rows", factors.len(), x.rows)));
        }
        let f = self.ctx.upload_f32(factors)?;
        let n = x.rows * x.cols;
        let (gx, gy) = grid(n.div_ceil(64));
        self.ctx.dispatch(Kernel::ScaleRows, None, &[n as u32, x.cols as u32, gx * 64], &[&f, &x.buf], [gx, gy, 1])
    }

    fn silu_mul(&self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        let out = self.tensor(gate.rows, gate.cols)?;
        let n = gate.rows * gate.cols;
        let (gx, gy) = grid(n.div_ceil(64));
        self.ctx.dispatch(Kernel::SiluMul, None, &[n as u32, gx * 64], &[&gate.buf, &up.buf, &out.buf], [gx, gy, 1])?;
        Ok(out)
    }

    fn add_assign(&self, a: &mut GpuTensor, b: &GpuTensor) -> Result<()> {
        let n = a.rows * a.cols;
        let (gx, gy) = grid(n.div_ceil(64));
        self.ctx.dispatch(Kernel::Add, None, &[n as u32, gx * 64], &[&b.buf, &a.buf], [gx, gy, 1])
    }

    fn add_scaled(&self, a: &mut GpuTensor, b: &GpuTensor, s: f32) -> Result<()> {
        let n = a.rows * a.cols;
        if n != b.rows * b.cols {
            return Err(HearthError::Compute(format!("add_scaled: {n} values and {}", b.rows * b.cols)));
        }
        let (gx, gy) = grid(n.div_ceil(64));
        self.ctx.dispatch(Kernel::AddScaled, None, &[n as u32, gx * 64, s.to_bits()], &[&b.buf, &a.buf], [gx, gy, 1])
    }

    fn last_row(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let out = self.tensor(1, x.cols)?;
        let bytes = x.cols as u64 * 4;
        self.ctx.copy_from(&x.buf, (x.rows as u64 - 1) * bytes, &out.buf, 0, bytes)?;
        Ok(out)
    }

    /// Natively the readback waits for the device inside; in the browser this is an error (use
    /// `read`).
    fn to_vec(&self, x: &GpuTensor) -> Result<Vec<f32>> {
        super::now(self.read_all(x))
    }

    async fn read(&self, x: &GpuTensor) -> Result<Vec<f32>> {
        self.read_all(x).await
    }

    async fn argmax(&self, x: &GpuTensor) -> Result<Option<u32>> {
        self.argmax_last(x).await.map(Some)
    }
}
