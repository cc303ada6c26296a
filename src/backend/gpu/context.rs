//! The device and what every op shares: compiled pipelines, a pool of activation buffers, and
//! the recorder that collects a pass's dispatches until a readback submits them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use super::kernels::{self, Kernel};
use crate::error::{HearthError, Result};
use crate::gguf::TensorType;

/// Uniform parameters of one dispatch: a 256-byte slot (WebGPU's largest offset alignment).
const PARAM_SLOT: usize = 256;
/// Dispatches recorded before the encoder is submitted anyway (a decode step is ~250).
const PARAM_SLOTS: usize = 2048;
/// Bytes of queue writes after which the queue is submitted (and natively waited for): wgpu
/// stages each write until a submission, so loading a model must not stage all of it at once.
const WRITE_FLUSH_BYTES: u64 = 64 << 20;
/// Bytes `upload_words` adds after the data: kernels read whole words, and the last block's
/// last word may begin inside the data and end past it.
const UPLOAD_PAD: u64 = 4;

#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Split weights into buffers of at most this many bytes (tests use it to exercise the split
    /// on small tensors); the adapter's own limit applies anyway.
    pub max_chunk_bytes: Option<u64>,
    /// Use the f32 kernels even where the adapter has shader-f16 (tests run both paths on one
    /// adapter; the f32 path is what headless Chromium's SwiftShader gets).
    pub disable_f16: bool,
    /// Run every matmul on the generic one-row-per-workgroup matvec (no fast decode kernels, no
    /// tiles): the baseline `hearth bench-gpu --generic` compares the kernels against.
    pub generic_kernels: bool,
}

/// What the adapter is and what it allows.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    /// The adapter has shader-f16.
    pub shader_f16: bool,
    /// The kernels use it: the KV cache in f16, F16 weights read as vec4<f16>.
    pub f16: bool,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
}

pub(super) struct Ctx {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: GpuInfo,
    chunk_limit: u64,
    pub generic_kernels: bool,
    pipelines: RefCell<HashMap<(Kernel, Option<TensorType>), wgpu::ComputePipeline>>,
    pool: Rc<RefCell<HashMap<u64, Vec<wgpu::Buffer>>>>,
    rec: RefCell<Option<Recorder>>,
    params: wgpu::Buffer,
    pub rope_table: RefCell<Option<(Vec<f32>, Rc<wgpu::Buffer>)>>,
    /// Bytes written by `write` since the queue was last submitted.
    written: std::cell::Cell<u64>,
    /// The first validation/out-of-memory error the device reported, and a device loss.
    error: Arc<Mutex<Option<String>>>,
    lost: Arc<Mutex<Option<String>>>,
}

struct Recorder {
    encoder: wgpu::CommandEncoder,
    params: Vec<u8>,
}

/// A storage buffer from the pool; it goes back when dropped (wgpu orders later writes after
/// the reads already recorded, so reuse within one encoder is safe).
pub(super) struct Pooled {
    buf: Option<wgpu::Buffer>,
    class: u64,
    pool: Rc<RefCell<HashMap<u64, Vec<wgpu::Buffer>>>>,
}

impl std::ops::Deref for Pooled {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        self.buf.as_ref().unwrap()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.borrow_mut().entry(self.class).or_default().push(b);
        }
    }
}

impl Ctx {
    pub async fn new(opts: GpuOptions) -> Result<Ctx> {
        let unavailable = |why: String| HearthError::BackendUnavailable(why);
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: if cfg!(target_arch = "wasm32") { wgpu::Backends::BROWSER_WEBGPU } else { wgpu::Backends::VULKAN },
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
            .await
            .map_err(|e| unavailable(format!("no WebGPU adapter: {e}")))?;
        let a_info = adapter.get_info();
        let shader_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        // Not even requested when unused, so an `enable f16` left in an f32 kernel fails here as
        // it would on an adapter without the feature.
        let f16 = shader_f16 && !opts.disable_f16;
        let features = if f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() };
        // Ask for everything the adapter allows: the binding size decides how weights split.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("hearth"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("the WebGPU adapter refused a device: {e}")))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let lost = Arc::new(Mutex::new(None::<String>));
        {
            let error = error.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                error.lock().unwrap().get_or_insert_with(|| e.to_string());
            }));
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                lost.lock().unwrap().get_or_insert_with(|| format!("{reason:?}: {msg}"));
            });
        }
        let info = GpuInfo {
            name: a_info.name.clone(),
            backend: format!("{:?}", a_info.backend),
            device_type: format!("{:?}", a_info.device_type),
            shader_f16,
            f16,
            max_storage_binding: limits.max_storage_buffer_binding_size as u64,
            max_buffer: limits.max_buffer_size,
        };
        // Weight chunks: whole words, within both limits once `upload_words` has added its pad.
        // (Under 4 GiB whatever the adapter says: the kernels index a binding's words in u32.)
        let mut chunk_limit = (info.max_storage_binding.min(info.max_buffer).min(u32::MAX as u64) - UPLOAD_PAD) & !3;
        if let Some(m) = opts.max_chunk_bytes {
            chunk_limit = chunk_limit.min(m.max(4));
        }
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (PARAM_SLOT * PARAM_SLOTS) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Ctx {
            device,
            queue,
            info,
            chunk_limit,
            generic_kernels: opts.generic_kernels,
            pipelines: RefCell::default(),
            pool: Rc::default(),
            rec: RefCell::default(),
            params,
            rope_table: RefCell::default(),
            written: Default::default(),
            error,
            lost,
        })
    }

    /// Bytes of weight one buffer may hold (so it can be bound whole).
    pub fn max_chunk_bytes(&self) -> u64 {
        self.chunk_limit
    }

    /// A failure the device reported since the last check, as a typed error.
    fn check(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().unwrap().clone() {
            return Err(HearthError::DeviceLost(why));
        }
        if let Some(why) = self.error.lock().unwrap().take() {
            return Err(HearthError::Gpu(why));
        }
        Ok(())
    }

    pub fn storage(&self, bytes: u64) -> Result<wgpu::Buffer> {
        self.check()?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A pooled buffer of at least `bytes` (sizes rounded to powers of two so they recur).
    pub fn alloc(&self, bytes: u64) -> Result<Pooled> {
        let class = bytes.max(256).next_power_of_two();
        let reused = self.pool.borrow_mut().get_mut(&class).and_then(|v| v.pop());
        let buf = match reused {
            Some(b) => b,
            None => self.storage(class)?,
        };
        Ok(Pooled { buf: Some(buf), class, pool: self.pool.clone() })
    }

    /// A new buffer holding `data` (padded to whole words, plus one so that a kernel's unaligned
    /// four-byte read at the very end stays inside).
    pub fn upload_words(&self, data: &[u8]) -> Result<wgpu::Buffer> {
        self.check()?;
        let mut padded = Vec::with_capacity(data.len() + 8);
        padded.extend_from_slice(data);
        padded.resize(data.len().next_multiple_of(4) + UPLOAD_PAD as usize, 0);
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: &padded,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        }))
    }

    /// A weight buffer for `bytes` of data, zeroed, with the same padding as `upload_words`;
    /// `write` fills it.
    pub fn weight_buffer(&self, bytes: u64) -> Result<wgpu::Buffer> {
        self.check()?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.next_multiple_of(4) + UPLOAD_PAD,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Write `data` (whole words) into `buf` at `at` (a multiple of 4). In the browser the data
    /// is copied out of the wasm heap at once; natively wgpu stages it until a submission, so
    /// every `WRITE_FLUSH_BYTES` the queue is submitted and waited for.
    pub fn write(&self, buf: &wgpu::Buffer, at: u64, data: &[u8]) -> Result<()> {
        self.check()?;
        self.queue.write_buffer(buf, at, data);
        let written = self.written.get() + data.len() as u64;
        self.written.set(written);
        if written >= WRITE_FLUSH_BYTES {
            self.written.set(0);
            self.queue.submit([]);
            #[cfg(not(target_arch = "wasm32"))]
            self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| HearthError::Gpu(e.to_string()))?;
        }
        Ok(())
    }

    pub fn upload_f32(&self, v: &[f32]) -> Result<wgpu::Buffer> {
        self.upload_words(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
    }

    /// A fresh buffer (never a pooled one: a queue write lands before the whole encoder runs).
    pub fn upload_u32(&self, v: &[u32]) -> Result<wgpu::Buffer> {
        self.upload_words(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
    }

    fn pipeline(&self, kernel: Kernel, ty: Option<TensorType>) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.borrow().get(&(kernel, ty)) {
            return Ok(p.clone());
        }
        let src = kernels::module_source(kernel, ty, self.info.f16)
            .ok_or_else(|| HearthError::Gpu(format!("no {kernel:?} kernel for {}", ty.map(|t| t.name()).unwrap_or_default())))?;
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&format!("{kernel:?}")),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{kernel:?}")),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        self.check()?;
        self.pipelines.borrow_mut().insert((kernel, ty), pipeline.clone());
        Ok(pipeline)
    }

    fn with_recorder<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> T {
        let mut rec = self.rec.borrow_mut();
        let r = rec.get_or_insert_with(|| Recorder {
            encoder: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }),
            params: Vec::new(),
        });
        f(r)
    }

    /// Record one dispatch binding whole buffers (binding 0 is the parameters).
    pub fn dispatch(&self, kernel: Kernel, ty: Option<TensorType>, params: &[u32], bufs: &[&wgpu::Buffer], groups: [u32; 3]) -> Result<()> {
        let ranges: Vec<(&wgpu::Buffer, u64, u64)> = bufs.iter().map(|b| (*b, 0, b.size())).collect();
        self.dispatch_ranges(kernel, ty, params, &ranges, groups)
    }

    /// Record one dispatch binding (buffer, offset, size) ranges.
    pub fn dispatch_ranges(&self, kernel: Kernel, ty: Option<TensorType>, params: &[u32], bufs: &[(&wgpu::Buffer, u64, u64)], groups: [u32; 3]) -> Result<()> {
        self.check()?;
        let pipeline = self.pipeline(kernel, ty)?;
        if self.rec.borrow().as_ref().is_some_and(|r| r.params.len() >= PARAM_SLOT * PARAM_SLOTS) {
            self.flush();
        }
        self.with_recorder(|r| {
            let offset = r.params.len() as u64;
            r.params.extend(params.iter().flat_map(|v| v.to_le_bytes()));
            r.params.resize(offset as usize + PARAM_SLOT, 0);
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.params, offset, size: wgpu::BufferSize::new(PARAM_SLOT as u64) }),
            }];
            for (i, (b, off, size)) in bufs.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b, offset: *off, size: wgpu::BufferSize::new(*size) }),
                });
            }
            let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            let mut pass = r.encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
        Ok(())
    }

    /// Record a copy of `bytes` from `src` at `from` to `dst` at `at`.
    pub fn copy_from(&self, src: &wgpu::Buffer, from: u64, dst: &wgpu::Buffer, at: u64, bytes: u64) -> Result<()> {
        self.check()?;
        self.with_recorder(|r| r.encoder.copy_buffer_to_buffer(src, from, dst, at, bytes));
        Ok(())
    }

    /// Submit what is recorded (its parameters are written first, in queue order).
    pub fn flush(&self) {
        if let Some(r) = self.rec.borrow_mut().take() {
            self.queue.write_buffer(&self.params, 0, &r.params);
            self.queue.submit([r.encoder.finish()]);
        }
    }

    /// Run everything recorded and read the first `bytes` of `buf`.
    pub async fn read(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        self.check()?;
        let bytes = bytes.next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.with_recorder(|r| r.encoder.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes));
        self.flush();
        let mapped = MapFuture::default();
        let done = mapped.0.clone();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |res| {
            let mut s = done.lock().unwrap();
            s.0 = Some(res.is_ok());
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| HearthError::Gpu(e.to_string()))?;
        let ok = mapped.await;
        if !ok {
            // Our staging buffer is neither unmapped nor destroyed while it maps, so a failed map
            // means the device is gone: Firefox fails the map (after a validation error about the
            // buffer) before it reports the loss.
            let seen = self.error.lock().unwrap().take().map(|e| format!(" ({e})")).unwrap_or_default();
            return Err(HearthError::DeviceLost(format!("reading results back from the GPU failed: the device stopped answering{seen}")));
        }
        self.check()?;
        let out = staging.slice(..).get_mapped_range().map_err(|e| HearthError::Gpu(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(out)
    }
}

/// Resolves when a buffer's `map_async` callback has run (with whether it succeeded).
#[derive(Default)]
struct MapFuture(Arc<Mutex<(Option<bool>, Option<Waker>)>>);

impl Future for MapFuture {
    type Output = bool;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.0.lock().unwrap();
        match s.0 {
            Some(ok) => Poll::Ready(ok),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
