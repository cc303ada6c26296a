// Preflight: what a model will need, from its GGUF header alone (the engine's `inspectHeader`),
// set against what this browser can hold, before any weight is downloaded. `Hearth.inspect`
// returns it; every load runs it and refuses a model that cannot fit with "model_too_big".

import { fetchModel, readPrefix } from "./store.js";

/** Both wasm32 builds link a 4 GiB memory maximum. */
export const WASM_LIMIT = 4 * 2 ** 30;
/**
 * The memory64 build (pkg/wasm64/, for models past wasm32's 4 GiB): V8's limit for a 64-bit
 * memory, further bounded by navigator.deviceMemory where the browser reports it.
 */
export const WASM64_LIMIT = 16 * 2 ** 30;

/**
 * Whether this browser runs memory64 modules (WebAssembly.validate of a module with a 64-bit
 * memory and a 64-bit table, as rustc's wasm64 output has): Chrome 133+, Firefox 134+.
 */
export function memory64Works() {
  try {
    return WebAssembly.validate(
      new Uint8Array([
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
        0x04, 0x04, 0x01, 0x70, 0x04, 0x00, // table section: one funcref table, i64 index, min 0
        0x05, 0x03, 0x01, 0x04, 0x00, // memory section: one memory, i64 index, min 0
      ]),
    );
  } catch {
    return false;
  }
}

/** First read of a URL's or File's header; doubled (or the header's own count) until whole. */
const FIRST_READ = 1 << 20;
/** A header needing more than this is refused here (the load itself would say why). */
const MAX_HEADER = 1 << 30;

function codeError(code, message) {
  return Object.assign(new Error(message), { code });
}

/** "4.9 GB", "512 MB": decimal units, as download sizes are shown. */
export function formatBytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${Math.round(n / 1e6)} MB`;
  return `${Math.max(1, Math.round(n / 1e3))} kB`;
}

/**
 * The first bytes of `source` (a URL, Blob or bytes) until `inspect(bytes)` stops asking for
 * more. A URL is read with Range requests (a server that ignores them sends the whole file: the
 * read stops after the bytes it needs). Returns {result, size} (size: the file's, when known).
 */
export async function readHeader(source, inspect, signal) {
  let want = FIRST_READ;
  for (;;) {
    let bytes;
    let size = null;
    if (typeof source === "string" || source instanceof URL) {
      ({ bytes, size } = await fetchPrefix(String(source), want, signal));
    } else if (typeof source.readPrefix === "function") {
      ({ bytes, size } = await source.readPrefix(want));
    } else if (typeof Blob !== "undefined" && source instanceof Blob) {
      size = source.size;
      bytes = new Uint8Array(await source.slice(0, want).arrayBuffer());
    } else {
      // Bytes may be only the head of a file (the client sends that much): no size.
      const all = source instanceof ArrayBuffer ? new Uint8Array(source) : new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
      bytes = all.subarray(0, want);
    }
    const result = inspect(bytes);
    if (result.needed === undefined) return { result, size };
    // The file ended inside its header: nothing to plan; the load reports what is missing.
    if (bytes.byteLength < want || (size !== null && want >= size)) return { result: null, size };
    want = Math.max(result.needed, want * 2);
    if (want > MAX_HEADER) return { result: null, size };
  }
}

async function fetchPrefix(url, want, signal) {
  const res = await fetchModel(url, { headers: { Range: `bytes=0-${want - 1}` }, signal });
  let size = null;
  const range = res.headers.get("Content-Range");
  if (res.status === 206 && range) size = Number(/\/(\d+)\s*$/.exec(range)?.[1] ?? NaN);
  else if (res.headers.get("Content-Length")) size = Number(res.headers.get("Content-Length"));
  if (!Number.isFinite(size)) size = null;
  // A server that ignored the Range sends the whole file: the read stops after `want` bytes.
  try {
    return { bytes: await readPrefix(res, want), size };
  } catch (e) {
    if (signal?.aborted) throw codeError("aborted", "loading was aborted");
    throw codeError("network", `the download of ${url} broke off: ${e.message || e}`);
  }
}

/**
 * What this browser can hold: the engine's memory, the WebGPU adapter's limits, hints. `inUse`:
 * what the model already loaded holds in the running build (`engine`: "wasm32" or "wasm64").
 */
export async function browserLimits(inUse = 0, engine = "wasm32") {
  const limits = { wasmBytes: WASM_LIMIT, wasm64Bytes: null, engine, wasmInUse: inUse, webgpu: null, deviceMemoryBytes: null, storageQuotaBytes: null, storageFreeBytes: null };
  const nav = typeof navigator !== "undefined" ? navigator : {};
  if (typeof nav.deviceMemory === "number") limits.deviceMemoryBytes = nav.deviceMemory * 2 ** 30;
  if (memory64Works()) limits.wasm64Bytes = Math.min(WASM64_LIMIT, limits.deviceMemoryBytes ?? Infinity);
  try {
    const est = await nav.storage?.estimate?.();
    if (est && typeof est.quota === "number") {
      limits.storageQuotaBytes = est.quota;
      limits.storageFreeBytes = Math.max(0, est.quota - (est.usage || 0));
    }
  } catch {}
  try {
    const adapter = await nav.gpu?.requestAdapter?.();
    if (adapter) {
      limits.webgpu = {
        maxBufferSize: adapter.limits.maxBufferSize,
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        // "auto" runs a software adapter's models on the CPU (the engine decides the same way).
        software: Boolean(adapter.info?.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe|software/i.test(`${adapter.info?.vendor} ${adapter.info?.architecture} ${adapter.info?.description}`),
      };
    }
  } catch {}
  return limits;
}

/**
 * The plan set against the limits: {…plan, limits, fits: {cpu, webgpu}, warnings}. `cache`:
 * the model is to be kept in the model store (its quota matters then).
 */
export function judge(plan, limits, { cache = false } = {}) {
  const { wasm32: heap, wasm64: heap64 } = heaps(limits);
  const gpu = limits.webgpu;
  const binding = gpu ? Math.min(gpu.maxBufferSize, gpu.maxStorageBufferBindingSize) : 0;
  const fits = {
    cpu: plan.cpu.total <= Math.max(heap, heap64),
    webgpu: Boolean(gpu) && plan.webgpuHeap <= heap && plan.webgpuLargestBuffer <= binding,
  };
  // The build a CPU load runs on: wasm32 (SIMD, threads) where the model fits it, else memory64.
  const cpuEngine = plan.cpu.total <= heap ? "wasm32" : fits.cpu ? "wasm64" : null;
  const warnings = [];
  if (limits.deviceMemoryBytes && Math.min(plan.cpu.total, plan.webgpuHeap + plan.webgpu.total) > limits.deviceMemoryBytes / 2) {
    warnings.push(`this device reports about ${formatBytes(limits.deviceMemoryBytes)} of memory: a model this size may get the tab closed by the browser`);
  }
  if (cache && limits.storageFreeBytes !== null && plan.fileBytes > limits.storageFreeBytes) {
    warnings.push(`the browser allows this site ${formatBytes(limits.storageFreeBytes)} more storage: the model (${formatBytes(plan.fileBytes)}) cannot be kept for offline use`);
  }
  return { ...plan, limits, fits, cpuEngine, warnings };
}

/**
 * Engine memory free for a new model in each build. The model already loaded stays while the
 * next one loads in the same build; the other build starts without it.
 */
function heaps(limits) {
  const inUse = (engine) => ((limits.engine ?? "wasm32") === engine ? limits.wasmInUse : 0);
  return {
    wasm32: limits.wasmBytes - inUse("wasm32"),
    wasm64: limits.wasm64Bytes ? limits.wasm64Bytes - inUse("wasm64") : 0,
  };
}

/**
 * Throws "model_too_big" when the judged plan does not fit `backend` ("cpu", "webgpu", "auto"),
 * saying what it needs and what would fit.
 */
export function assertFits(p, backend) {
  const ok = backend === "cpu" ? p.fits.cpu : backend === "webgpu" ? p.fits.webgpu : p.fits.cpu || (p.fits.webgpu && !p.limits.webgpu.software);
  if (ok) return;
  // No adapter at all is not a size problem: say so with the code a missing backend has.
  if (backend === "webgpu" && !p.limits.webgpu) throw codeError("backend_unavailable", 'this browser has no WebGPU adapter: use backend "cpu" or "auto"');
  const { wasm32, wasm64 } = heaps(p.limits);
  // The WebGPU engine's heap is a wasm32 one; the CPU gets the larger of the two builds.
  const heap = backend === "webgpu" ? wasm32 : Math.max(wasm32, wasm64);
  const cpu = p.cpu;
  const held = p.limits.wasmInUse > 0 ? ` (${formatBytes(heap)} with the model already loaded)` : "";
  let msg;
  if (backend === "webgpu") {
    const gpu = p.limits.webgpu;
    msg =
      p.webgpuLargestBuffer > Math.min(gpu.maxBufferSize, gpu.maxStorageBufferBindingSize)
        ? `this model needs a GPU buffer of ${formatBytes(p.webgpuLargestBuffer)} and this adapter binds at most ${formatBytes(Math.min(gpu.maxBufferSize, gpu.maxStorageBufferBindingSize))}`
        : `this model needs ${formatBytes(p.webgpuHeap)} of engine memory beside the GPU and a browser engine holds at most ${formatBytes(heap)}`;
  } else {
    msg =
      `this model needs ${formatBytes(cpu.total)} of memory on the CPU (weights ${formatBytes(cpu.weights)}, ` +
      `KV cache ${formatBytes(cpu.kvCache)} for ${p.contextSize} positions, scratch and vocabulary ${formatBytes(cpu.scratch + cpu.other)}) ` +
      `and a browser engine holds at most ${formatBytes(heap)}${held}` +
      // Past 4 GiB only a memory64 engine helps: say when this browser has none.
      (cpu.total > wasm32 && !wasm64 ? " (this browser runs no memory64 WebAssembly, which Chromium and Firefox do)" : "");
  }
  const options = [];
  const rest = cpu.total - cpu.kvCache;
  const perPosition = cpu.kvCache / p.contextSize;
  if (backend !== "webgpu" && rest < heap) {
    const ctx = Math.floor((heap - rest) / perPosition);
    if (ctx >= 256 && ctx < p.contextSize) options.push(`a context of at most ${ctx} positions (contextSize: ${ctx})`);
    if (p.kvType !== "q8_0" && rest + (cpu.kvCache * (34 / 32)) / p.kvBytesPerValue <= heap) options.push('a q8_0 KV cache (kvType: "q8_0")');
  }
  if (backend !== "webgpu" && p.fits.webgpu && !p.limits.webgpu.software) options.push('the WebGPU backend (backend: "webgpu")');
  if (!options.length) options.push(rest >= heap ? "a smaller quantization of this model (its weights alone do not fit)" : "a smaller model");
  throw codeError("model_too_big", `${msg}; what would fit: ${options.join(", or ")}`);
}
