// The engine host: owns one wasm Engine and runs loads and generations against it. It runs inside
// the dedicated Worker (worker.js) by default, or in the caller's thread with `worker: false`.
// Everything here is plain data in, plain data out, so worker.js only has to relay messages.

import { ModelStore, contentLength, fetchModel, readChunk } from "./store.js";
import { assertFits, browserLimits, formatBytes, judge, readHeader } from "./preflight.js";
import { ToolStream, toolOptions } from "./tools.js";
import { Sha256 } from "./sha256.js";

/** The wasm-bindgen module in use (pkg/hearth_wasm.js, pkg/threads/ or pkg/wasm64/hearth_wasm.js). */
let wasm = null;
/** Threads in the engine's pool (1: the single-thread build). */
let poolThreads = 1;
/** "relaxed" when the relaxed-SIMD build runs, else "simd128". */
let simdLevel = "simd128";
/**
 * Which builds run: false the wasm32 ones (4 GiB of memory), true the memory64 one (pkg/wasm64/:
 * one thread, SIMD128, no WebGPU), which a CPU load past wasm32's 4 GiB switches to (`Host.preflight`).
 */
let memory64 = false;
/** The thread count initWasm was last asked for (a switch of builds starts the new one alike). */
let askedThreads;
/** Hosts with a model in the current instance (a switch of builds would take it). */
const loaded = new Set();
let ready = null;

// ---- crash containment -----------------------------------------------------------------------
//
// A trap in the engine (a Rust panic, which aborts as wasm `unreachable`; a failed allocation,
// which aborts the same way; "memory access out of bounds"; a stack overflow, RangeError) leaves
// the wasm instance in an undefined state: its stack pointer, allocator and RefCells are wherever
// the trap left them. Nothing may call into it again. The request that trapped, and every other
// one waiting on the engine, fails with "engine_crashed"; worker.js then asks the page to replace
// the Worker, and in the caller's thread (`worker: false`) the next initWasm starts a fresh
// instance (a new copy of the glue module: wasm-bindgen's cannot be initialised twice).

/** Which wasm instance is current: counts the instances started after a crash. */
let instance = 0;
/** The "engine_crashed" error of the crash that ended the current instance, or null. */
let crash = null;
/** The last crash's error (kept after a restart, for Hosts whose engine it took). */
let lastCrash = null;
/** Rejects with the crash error when the current instance crashes (engine calls race it). */
let crashSignal = null;
let crashReject = null;
/** Engine calls awaiting the instance (an uncaught trap while one waits is taken as ours). */
let waiting = 0;
const crashListeners = new Set();

/** Most threads used when the caller names none (decode is memory-bound well before this). */
export const DEFAULT_MAX_THREADS = 8;
/** How long the threaded build may take to start its workers before we fall back. */
const THREADS_START_MS = 20000;

function defaultThreads() {
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, DEFAULT_MAX_THREADS));
}

/**
 * Whether this browser runs relaxed-SIMD integer dot products, and runs them right. A module
 * using an opcode the engine lacks fails validation as a whole, so the relaxed builds are only
 * safe after this test. Beyond validating, the probe runs one i32x4.relaxed_dot_i8x16_i7x16_add_s
 * on known values (7-bit second operand, where every correct engine gives the exact sums) and
 * checks the answer: some V8 versions' baseline compiler emitted it over its own input register
 * on AVX-VNNI CPUs (node 20 does), and those get the plain build.
 */
export function relaxedSimdWorks() {
  try {
    const a = [-128, 127, -1, 5, 0, -77, 100, -128, 1, 2, 3, 4, -5, -6, -7, 127];
    const b = [127, 127, 3, 0, 9, 1, 127, 64, 2, 4, 8, 16, 127, 0, 1, 126];
    const c = [1, -2, 1000, -70000];
    const want = c.map((acc, i) => acc + [0, 1, 2, 3].reduce((s, j) => s + a[4 * i + j] * b[4 * i + j], 0));
    const i32 = (v) => [v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255];
    const v128 = (bytes) => [0xfd, 0x0c, ...bytes.map((x) => x & 255)];
    const body = [
      0x00, // no locals
      ...v128(a),
      ...v128(b),
      ...v128(c.flatMap(i32)),
      0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s
      ...v128(want.flatMap(i32)),
      0xfd, 0x37, // i32x4.eq
      0xfd, 0xa3, 0x01, // i32x4.all_true
      0x0b,
    ];
    const bytes = new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
      0x03, 0x02, 0x01, 0x00, // one function of that type
      0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export "f"
      0x0a, body.length + 2, 0x01, body.length, ...body,
    ]);
    if (!WebAssembly.validate(bytes)) return false;
    return new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f() === 1;
  } catch {
    return false;
  }
}

/**
 * Instantiate the wasm module once per realm. `threads` (default: the core count, at most 8):
 * above 1, in a cross-origin isolated Worker, the threaded build (pkg/threads/) starts that many
 * pool workers; otherwise, or if it fails to start, the single-thread build runs. Outside a Worker
 * it is always one thread (the page's thread may not block). Where relaxed SIMD works
 * (`relaxedSimdWorks`), each build's relaxed variant (hearth_wasm_relaxed_bg.wasm beside it, same
 * JS glue) is tried first. Resolves to the thread count.
 */
export function initWasm(threads) {
  askedThreads = threads;
  if (crash) {
    // The instance crashed: start a fresh one (its memory is never touched again).
    ready = null;
    wasm = null;
    crash = null;
    crashSignal = null;
    instance++;
  }
  watchUncaught();
  if (!ready) {
    ready = startWasm(threads).catch((e) => {
      ready = null;
      if (e && e.code === "invalid_argument") throw e;
      throw codeError("worker", `could not start the wasm engine: ${e && e.message ? e.message : e}`);
    });
  }
  return ready;
}

/** The wasm file of a build: pkg/{dir}hearth_wasm[_relaxed]_bg.wasm. */
function wasmUrl(dir, relaxed) {
  return new URL(`./${dir}hearth_wasm${relaxed ? "_relaxed" : ""}_bg.wasm`, import.meta.url);
}

/**
 * The glue module of a build in `dir` ("", "threads/" or "wasm64/"). After a crash or a switch of
 * builds (instance > 0) a new copy of it: an earlier copy's instance is never used again.
 */
function importGlue(dir) {
  if (instance === 0) return dir === "threads/" ? import("./threads/hearth_wasm.js") : dir === "wasm64/" ? import("./wasm64/hearth_wasm.js") : import("./hearth_wasm.js");
  const url = new URL(`./${dir}hearth_wasm.js?instance=${instance}`, import.meta.url).href;
  return import(/* webpackIgnore: true */ /* @vite-ignore */ url);
}

async function startWasm(threads) {
  if (threads != null && (!Number.isInteger(threads) || threads < 1)) throw codeError("invalid_argument", `threads must be a positive integer, got ${threads}`);
  const inWorker = typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope;
  const n = inWorker ? (threads ?? defaultThreads()) : 1;
  if (memory64) {
    // One build, one thread (wasm-bindgen-rayon's pool is wasm32-only), SIMD128.
    const m = await importGlue("wasm64/");
    await m.default({ module_or_path: wasmUrl("wasm64/", false) });
    wasm = m;
    poolThreads = 1;
    simdLevel = "simd128";
    return poolThreads;
  }
  const variants = relaxedSimdWorks() ? [true, false] : [false];
  if (n > 1 && globalThis.crossOriginIsolated && typeof SharedArrayBuffer !== "undefined") {
    try {
      const m = await importGlue("threads/");
      const relaxed = await initVariant(m, "threads/", variants);
      let timer;
      const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`its ${n} workers did not start in ${THREADS_START_MS / 1000} s`)), THREADS_START_MS)));
      try {
        await Promise.race([m.initThreadPool(n), late]);
      } finally {
        clearTimeout(timer);
      }
      wasm = m;
      poolThreads = m.threadCount();
      simdLevel = relaxed ? "relaxed" : "simd128";
      return poolThreads;
    } catch (e) {
      console.warn(`Hearth: the threaded engine did not start (${e && e.message ? e.message : e}); running on one thread`);
    }
  }
  const m = await importGlue("");
  const relaxed = await initVariant(m, "", variants);
  wasm = m;
  poolThreads = 1;
  simdLevel = relaxed ? "relaxed" : "simd128";
  return poolThreads;
}

/** Instantiate glue `m` with the first of `variants` (relaxed or not) that starts; returns which. */
async function initVariant(m, dir, variants) {
  for (const relaxed of variants) {
    try {
      await m.default({ module_or_path: wasmUrl(dir, relaxed) });
      return relaxed;
    } catch (e) {
      if (!relaxed) throw e;
      console.warn(`Hearth: the relaxed-SIMD engine did not start (${e && e.message ? e.message : e}); using the SIMD128 one`);
    }
  }
}

export function codeError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

/**
 * Whether `e` is the engine trapping (or an "engine_crashed" error made of one): a
 * WebAssembly.RuntimeError ("unreachable": a panic or a failed allocation; "memory access out of
 * bounds"; ...), a stack overflow (RangeError "Maximum call stack size exceeded"; Firefox's
 * InternalError "too much recursion"), or an out-of-memory error.
 */
export function isEngineCrash(e) {
  if (!e || typeof e !== "object") return false;
  if (isCrashCode(e.code)) return true;
  if (typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError) return true;
  const message = String(e.message || "");
  if (e instanceof RangeError || e.name === "InternalError") return /maximum call stack|too much recursion|out of memory/i.test(message);
  return false;
}

/**
 * The codes of a crashed engine: "out_of_memory" when an allocation failed (the allocator
 * remembers it: `lastFailedAllocation`), else "engine_crashed".
 */
export function isCrashCode(code) {
  return code === "engine_crashed" || code === "out_of_memory";
}

/** Bytes of the allocation the engine could not make (0: none failed). */
function failedAllocation() {
  try {
    return wasm.lastFailedAllocation();
  } catch {
    return 0;
  }
}

/** One line, at most `max` characters: control characters shown as escapes, as the engine's messages do. */
export function oneLine(text, max = 1000) {
  let s = String(text)
    .replace(/\r?\n/g, " ")
    .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
  if (s.length > max) s = s.slice(0, max - 1) + "\u2026";
  return s;
}

/** What a trap means, in words: "a bug in the engine: panicked at ...", "it ran out of stack", ... */
function describeCrash(e) {
  const message = String((e && e.message) || e);
  const panic = globalThis.__hearthLastPanic;
  if (panic !== undefined) {
    try {
      delete globalThis.__hearthLastPanic;
    } catch {
      globalThis.__hearthLastPanic = undefined;
    }
  }
  if (panic) return `a bug in the engine: ${oneLine(panic, 600)}`;
  if (/maximum call stack|too much recursion/i.test(message)) return `it ran out of stack: ${oneLine(message, 200)}`;
  if (/out of memory/i.test(message)) return `it ran out of memory: ${oneLine(message, 200)}`;
  if (/unreachable/i.test(message)) {
    // Without a panic message, an abort: nearly always an allocation the memory could not hold.
    let mib = 0;
    try {
      mib = Math.round(wasm.memoryBytes() / 2 ** 20);
    } catch {}
    return `it aborted, most likely out of memory (${mib ? `wasm memory at ${mib} MiB; ` : ""}${oneLine(message, 200)})`;
  }
  return `WebAssembly trap: ${oneLine(message, 300)}`;
}

/**
 * Record that the engine trapped with `e` (a no-op for an error that already is the crash's):
 * the current instance is dead from now on. Returns the "engine_crashed" error every request on
 * it fails with.
 */
export function engineCrashed(e) {
  if (e && isCrashCode(e.code)) return e;
  if (!crash) {
    const failed = failedAllocation();
    if (failed > 0) {
      let mib = 0;
      try {
        mib = Math.round(wasm.memoryBytes() / 2 ** 20);
      } catch {}
      delete globalThis.__hearthLastPanic;
      crash = codeError(
        "out_of_memory",
        `the engine ran out of memory (it could not allocate ${Math.ceil(failed / 2 ** 20)} MiB with ${mib} MiB in use) and was restarted: ` +
          "load the model again, with a shorter context or a smaller model",
      );
    } else {
      crash = codeError("engine_crashed", `the engine crashed (${describeCrash(e)}) and was restarted: load the model again`);
    }
    lastCrash = crash;
    crashReject?.(crash);
    for (const f of crashListeners) {
      try {
        f(crash);
      } catch {}
    }
  }
  return crash;
}

/** `e` as an "engine_crashed" error when it is a trap, else as it is. */
export function crashOr(e) {
  return isEngineCrash(e) ? engineCrashed(e) : e;
}

/** Call `f(error)` when the engine crashes (worker.js: to fail its requests and be replaced). */
export function onEngineCrash(f) {
  crashListeners.add(f);
}

/**
 * A trap inside a future (a step or a load's GPU setup) is not thrown to the caller: it surfaces
 * as an uncaught error, and the call's Promise never settles. Catch those: in the engine's Worker
 * any is the engine's; in a page only while an engine call waits (the page's own errors are not).
 */
let watching = false;
function watchUncaught() {
  if (watching || typeof globalThis.addEventListener !== "function") return;
  watching = true;
  const inWorker = typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope;
  const check = (err, ev) => {
    if (!isEngineCrash(err) || crash || !(inWorker || waiting > 0)) return;
    engineCrashed(err);
    if (inWorker) ev.preventDefault();
  };
  globalThis.addEventListener("error", (ev) => check(ev.error, ev));
  globalThis.addEventListener("unhandledrejection", (ev) => check(ev.reason, ev));
}

/** Settles as `promise` does, or rejects with the crash error if the instance crashes first. */
async function raceCrash(promise) {
  if (crash) throw crash;
  if (!crashSignal) {
    crashSignal = new Promise((_, reject) => (crashReject = reject));
    crashSignal.catch(() => {});
  }
  waiting++;
  try {
    return await Promise.race([promise, crashSignal]);
  } finally {
    waiting--;
  }
}

/** Turn anything thrown (wasm Error with .code, DOMException, TypeError) into {code, message}. */
export function toPlainError(e, fallback = "worker") {
  if (e && typeof e === "object") {
    if (e.name === "AbortError") return { code: "aborted", message: "aborted" };
    return { code: typeof e.code === "string" ? e.code : fallback, message: String(e.message || e) };
  }
  return { code: fallback, message: String(e) };
}

const DEFAULT_CONTEXT = 2048;
/** The KV cache type when none is asked for: F16, llama.cpp's default. */
const DEFAULT_KV_TYPE = "f16";
const KV_TYPES = ["f16", "q8_0", "f32"];

/** A `kvType` option, checked ("f16" when absent). */
function checkKvType(kvType) {
  if (kvType == null) return DEFAULT_KV_TYPE;
  if (!KV_TYPES.includes(kvType)) throw codeError("invalid_argument", `kvType must be "f16", "q8_0" or "f32", got ${JSON.stringify(kvType)}`);
  return kvType;
}
/** Slice size when feeding bytes we already hold (keeps each wasm call short). */
export const FEED_SLICE = 4 << 20;

/** The model tag of stashed conversations (Host.stashChat): they never leave this engine. */
const STASH_SHA = "0".repeat(64);

/** Let queued messages (abort) run: a MessageChannel hop, not clamped like nested setTimeout. */
export function yieldToEventLoop() {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      resolve();
    };
    ch.port2.postMessage(null);
  });
}

export class Host {
  constructor() {
    this.engine = null;
    this.loader = null;
    this.contextSize = DEFAULT_CONTEXT;
    /** The KV cache type of generations (and, unless asked otherwise, perplexity runs). */
    this.kvType = DEFAULT_KV_TYPE;
    this.info = null;
    /** The wasm instance this Host's loader and engine live in. */
    this.instance = instance;
  }

  /** Whether this Host's engine lives in the current, uncrashed instance. */
  alive() {
    return this.instance === instance && !crash;
  }

  /** Refuse to call into a crashed instance (the error the crash gave, again). */
  check() {
    if (crash) throw crash;
    if (this.instance !== instance) {
      // The instance this Host used crashed and a fresh one runs now: its model is gone.
      this.engine = null;
      this.loader = null;
      this.instance = instance;
      throw lastCrash;
    }
  }

  // ---- loading -------------------------------------------------------------------------------

  /**
   * A fresh loader for `backend` ("auto", "cpu" or "webgpu"). WebGPU needs an adapter; "auto"
   * decides once the GGUF header has arrived (every weight type must have GPU kernels).
   */
  async beginLoad(backend = "auto") {
    if (crash) throw crash;
    if (this.instance !== instance) {
      // A crash took this Host's model; a fresh instance runs now (initWasm started it).
      this.engine = null;
      this.loader = null;
      this.instance = instance;
    }
    if (this.loader) this.loader.free();
    this.loader = null;
    this.askedBackend = backend;
    const gpu = typeof navigator !== "undefined" && navigator.gpu;
    if (backend === "webgpu" && !gpu) throw codeError("backend_unavailable", "this browser has no WebGPU (navigator.gpu): use backend \"cpu\" or \"auto\"");
    // Without navigator.gpu the engine never looks for an adapter, so it cannot say why.
    this.noGpu = backend === "auto" && !gpu;
    if (memory64 && backend === "webgpu") throw codeError("invalid_argument", "the memory64 engine runs on the CPU only");
    // The memory64 build has no WebGPU backend (preflight chose it for a CPU load).
    this.loader = backend === "cpu" || this.noGpu || memory64 ? new wasm.Loader() : await this.guard(wasm.Loader.create(backend));
  }

  /** Feed one chunk; returns bytes received so far. */
  feed(bytes) {
    this.check();
    if (!this.loader) throw codeError("invalid_argument", "no load in progress");
    try {
      this.loader.feed(bytes);
    } catch (e) {
      this.loader = null; // spent by the error (its memory is freed on the Rust side)
      throw e;
    }
    return this.loader.received();
  }

  abortLoad() {
    if (this.loader && !this.alive()) this.loader = null;
    if (this.loader) {
      try {
        this.loader.free();
      } catch {}
      this.loader = null;
    }
  }

  /** Build the engine; `fileName` (the URL's last segment or the File's name) names the model. */
  finishLoad(contextSize, fileName, kvType) {
    this.check();
    if (!this.loader) throw codeError("invalid_argument", "no load in progress");
    const loader = this.loader;
    this.loader = null;
    const engine = loader.finish();
    this.instance = instance;
    if (this.engine) this.engine.free();
    this.engine = engine;
    // A new engine has no adapters: ids the page holds start again (reloadOnCpu puts them back).
    this.adapterKeep = new Map();
    this.nextAdapterId = 1; // as the engine counts them
    loaded.add(this);
    const raw = engine.info();
    const train = raw.nCtxTrain || 0;
    let ctx = contextSize == null ? Math.min(train || DEFAULT_CONTEXT, DEFAULT_CONTEXT) : contextSize;
    if (!Number.isInteger(ctx) || ctx < 1) throw codeError("invalid_argument", `contextSize must be a positive integer, got ${contextSize}`);
    this.contextSize = ctx;
    this.kvType = checkKvType(kvType);
    this.info = {
      name: raw.name,
      // The name people know it by ("SmolLM2 135M Instruct"), from the metadata and the file name.
      displayName: engine.displayName(fileName),
      quant: quantOf(fileName),
      architecture: raw.architecture,
      nVocab: raw.nVocab,
      contextLength: train,
      contextSize: ctx,
      kvType: this.kvType,
      nLayer: raw.nLayer,
      nEmbd: raw.nEmbd,
      nHead: raw.nHead,
      nHeadKv: raw.nHeadKv,
      bos: raw.bos,
      eos: raw.eos,
      // How embeddings pool tokens, as the GGUF's pooling_type says: "none" (a vector per token:
      // also when the file says nothing, as llama.cpp), "mean", "cls", "last" or "rank".
      pooling: raw.pooling,
      backend: raw.backend,
      // The adapter ({name, backend, deviceType, shaderF16}) on WebGPU; why "auto" chose the CPU.
      gpu: raw.gpu,
      backendFallback:
        raw.fallback ??
        (this.noGpu ? "WebGPU is not available in this browser" : memory64 && raw.backend === "cpu" && this.askedBackend === "auto" ? "the model needs the memory64 engine, which runs on the CPU" : null),
      // The built-in template the vocabulary called for, or "model" (the GGUF's own).
      chatTemplate: engine.chatTemplate().builtin ?? "model",
      threads: poolThreads,
      // Which build's kernels run: "relaxed" (relaxed-SIMD integer dots) or "simd128".
      simd: simdLevel,
      // Which build: "wasm32" (at most 4 GiB) or "wasm64" (memory64, for models past that).
      engine: memory64 ? "wasm64" : "wasm32",
    };
    return this.info;
  }

  /** Engine threads, SIMD build and the wasm memory's size (it never shrinks: this is its peak). */
  stats() {
    return { threads: poolThreads, simd: simdLevel, engine: memory64 ? "wasm64" : "wasm32", wasmMemoryBytes: wasm ? wasm.memoryBytes() : 0 };
  }

  /**
   * Stream `source` into a fresh loader and build the engine. `source` is a URL (string or URL),
   * a Blob/File, bytes (ArrayBuffer / typed array), or an array of those: the shards of a split
   * model in order. A split model given by the URL of its first shard (`name-00001-of-0000N.gguf`)
   * fetches the other shards itself. `isAborted()` is polled between chunks; `fetchSignal` aborts
   * downloads.
   */
  async load(source, { backend = "auto", contextSize, kvType, onProgress, isAborted = () => false, fetchSignal, cache = false, sha256 } = {}) {
    // Before any weight is downloaded: refuse a model that cannot fit (model_too_big).
    const plan = await this.preflight(source, { backend, contextSize, kvType, cache, signal: fetchSignal });
    await this.beginLoad(backend);
    // URLs go through the model store (kept for offline use, resumable, verified) when asked.
    this.cache = cache ? { sha256 } : null;
    this.modelSha = null;
    // At most one progress report per MiB or 50 ms (a big model arrives in many small chunks);
    // the first and the last are always reported.
    const report = onProgress || (() => {});
    let lastAt = -Infinity;
    let lastLoaded = -1;
    let lastKey = "";
    const progress = (p, force = false) => {
      const now = performance.now();
      const key = `${p.phase} ${p.loaded} ${p.total} ${p.shard}`;
      if (key === lastKey) return;
      if (force || p.loaded === 0 || p.loaded === p.total || p.loaded - lastLoaded >= 1 << 20 || now - lastAt >= 50) {
        lastAt = now;
        lastLoaded = p.loaded;
        lastKey = key;
        report(p);
      }
    };
    const check = () => {
      if (isAborted()) throw codeError("aborted", "loading was aborted");
    };
    // What the model will need, before the download starts (the page shows it).
    if (plan) report({ phase: "inspect", loaded: 0, total: plan.fileBytes, plan });
    try {
      const given = Array.isArray(source) ? source : [source];
      if (given.length === 0) throw codeError("invalid_argument", "no model source given");
      // Bytes of the shards already fed, and the sizes known so far (for progress totals).
      let before = 0;
      let shards = 1;
      for (let i = 0; i < shards; i++) {
        let src = given[i];
        if (i > 0) {
          this.loader.nextShard();
          if (src === undefined) {
            const first = given[0];
            const name = typeof first === "string" || first instanceof URL ? wasm.Loader.shardName(String(first), i, shards) : undefined;
            if (!name) {
              throw codeError(
                "truncated",
                `this model is split into ${shards} files and only the first was given: load it by the URL of its first shard (name-00001-of-${String(shards).padStart(5, "0")}.gguf), or pass all ${shards} files in order`,
              );
            }
            src = name;
          }
        }
        const tag = shards > 1 ? { shard: i + 1, shards } : {};
        before = await this.feedSource(src, (p, force) => progress({ ...p, loaded: before + p.loaded, total: p.total ? before + p.total : 0, ...tag }, force), check, fetchSignal);
        if (i === 0) {
          shards = this.loader.shards() || 1;
          if (given.length > 1 && given.length !== shards) {
            throw codeError("invalid_argument", `${given.length} files were given but the model is split into ${shards}`);
          }
        }
      }
      const info = this.finishLoad(contextSize, fileNameOf(given[0]), kvType);
      // What this model holds of the engine's memory, for the next load's preflight.
      this.need = plan ? (info.backend === "webgpu" ? plan.webgpuHeap : plan.cpu.total) : 0;
      // Kept so that a lost GPU can be replaced by the CPU on the next request.
      this.source = { source, contextSize, kvType, cache, sha256 };
      this.deviceLost = false;
      return info;
    } catch (e) {
      this.abortLoad();
      throw e;
    }
  }

  /**
   * What loading `source` (a URL, Blob or bytes; the first of several shards) will need, set
   * against what this browser holds (preflight.js), from its GGUF header alone: a URL is read
   * with Range requests. null when the header cannot be read whole (the load then says why).
   */
  async inspect(source, { contextSize, kvType, cache = false, signal } = {}) {
    if (crash) throw crash;
    let src = Array.isArray(source) ? source[0] : source;
    const name = fileNameOf(src);
    // A model in the store is read from there (offline too).
    if (cache && (typeof src === "string" || src instanceof URL)) {
      try {
        src = (await (await ModelStore.open()).stored(String(src))) ?? src;
      } catch {}
    }
    const { result, size } = await readHeader(src, (bytes) => wasm.inspectHeader(bytes, contextSize ?? undefined, kvType ?? undefined, name), signal);
    if (!result) return null;
    // A whole file's own size (the header only describes where its tensors end).
    if (size && result.splitCount === 1) result.fileBytes = size;
    const inUse = this.engine && this.alive() ? this.need || 0 : 0;
    return judge(result, await browserLimits(inUse, memory64 ? "wasm64" : "wasm32"), { cache });
  }

  /** `inspect` then refuse what cannot fit `backend`; a header out of reach (offline, the model
   * in the store) is left to the load. Then start the build the load needs: the memory64 one for
   * a CPU load past wasm32's 4 GiB, the wasm32 ones (faster: relaxed SIMD, threads) otherwise. */
  async preflight(source, { backend = "auto", contextSize, kvType, cache, signal } = {}) {
    let plan;
    try {
      plan = await this.inspect(source, { contextSize, kvType, cache, signal });
    } catch (e) {
      if (e && e.code === "network") return null;
      throw e;
    }
    if (plan) {
      assertFits(plan, backend);
      // "auto" takes a hardware adapter that holds the model; the GPU engine's heap is wasm32's.
      const gpu = backend === "webgpu" || (backend === "auto" && plan.fits.webgpu && !plan.limits.webgpu.software);
      const want64 = !gpu && plan.cpuEngine === "wasm64";
      if (want64 !== memory64) await this.switchBuild(want64, plan);
    }
    return plan;
  }

  /**
   * Start the memory64 build (`want64`) or the wasm32 one in place of the one running. A model
   * loaded in this instance would be lost (and its memory kept: a wasm memory is never given
   * back), so then the Worker is replaced instead: "engine_switch" asks the page to (hearth.js
   * loads again in a fresh Worker); outside a Worker the load is refused.
   */
  async switchBuild(want64, plan) {
    for (const h of loaded) if (!h.engine || !h.alive()) loaded.delete(h);
    if (loaded.size > 0) {
      const inWorker = typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope;
      const what = want64 ? `the memory64 engine (it needs ${formatBytes(plan.cpu.total)} on the CPU, past wasm32's 4 GiB)` : "the wasm32 engine";
      throw codeError(
        inWorker ? "engine_switch" : "model_too_big",
        `this model needs ${what}, which cannot start in this thread while a model is loaded in it` + (inWorker ? "" : ": unload the other models first, or load in a Worker (the default)"),
      );
    }
    memory64 = want64;
    ready = null;
    wasm = null;
    crash = null;
    crashSignal = null;
    instance++;
    this.instance = instance;
    this.loader = null;
    this.engine = null;
    try {
      await initWasm(askedThreads);
    } catch (e) {
      if (!want64) throw e;
      // The package was built without it (HEARTH_WASM64=0), or it did not start: back to wasm32.
      memory64 = false;
      ready = null;
      instance++;
      this.instance = instance;
      await initWasm(askedThreads);
      throw codeError("model_too_big", `this model needs ${formatBytes(plan.cpu.total)} of memory on the CPU, past wasm32's 4 GiB, and the memory64 engine did not start (${e && e.message ? e.message : e})`);
    }
  }

  /** Feed one file (URL, Blob or bytes) to the loader; returns the bytes received in all. */
  async feedSource(source, progress, check, fetchSignal) {
    if ((typeof source === "string" || source instanceof URL) && this.cache) {
      const url = String(source);
      const store = await ModelStore.open();
      try {
        const got = await store.fetch(url, { sha256: this.cache.sha256, signal: fetchSignal, check, onChunk: (b) => this.feed(b), onProgress: (p) => progress(p) });
        // The store hashes what it keeps: a saved session's tie to this file (one-file models).
        if (this.loader.shards() <= 1) this.modelSha = got.sha256;
      } catch (e) {
        // A file the engine rejects is no use stored; an interrupted download stays, to resume.
        if (!["aborted", "network", "quota_exceeded", "storage_unavailable", "checksum_mismatch"].includes(e && e.code)) await store.delete(url).catch(() => {});
        throw e;
      }
      return this.loader.received();
    }
    if (typeof source === "string" || source instanceof URL) {
      const resp = await fetchModel(source, { signal: fetchSignal, check });
      let total = contentLength(resp);
      let loaded = 0;
      progress({ phase: "download", loaded, total });
      const start = this.loader.received();
      const reader = resp.body.getReader();
      try {
        for (;;) {
          const r = await readChunk(reader, source, loaded, check);
          if (r.done) break;
          // Each network chunk goes straight into the loader: no second copy of the file.
          loaded = this.feed(r.value) - start;
          if (loaded > total && total) total = loaded;
          progress({ phase: "download", loaded, total });
        }
      } finally {
        reader.releaseLock?.();
      }
      if (!total || loaded > total) total = loaded;
      progress({ phase: "download", loaded, total }, true);
      return start + loaded;
    }
    if (typeof Blob !== "undefined" && source instanceof Blob) {
      const total = source.size;
      const start = this.loader.received();
      progress({ phase: "load", loaded: 0, total });
      const reader = source.stream().getReader();
      for (;;) {
        const r = await reader.read();
        check();
        if (r.done) break;
        progress({ phase: "load", loaded: this.feed(r.value) - start, total });
      }
      return this.loader.received();
    }
    const bytes = toBytes(source);
    const total = bytes.byteLength;
    const start = this.loader.received();
    progress({ phase: "load", loaded: 0, total });
    for (let off = 0; off < total || off === 0; off += FEED_SLICE) {
      const loaded = this.feed(bytes.subarray(off, Math.min(total, off + FEED_SLICE))) - start;
      progress({ phase: "load", loaded, total });
      if (total === 0) break;
      await yieldToEventLoop();
      check();
    }
    return this.loader.received();
  }

  // ---- generation ----------------------------------------------------------------------------

  /** Today as [year, month, day], for chat templates that print the date. */
  static today() {
    const d = new Date();
    return [d.getFullYear(), d.getMonth() + 1, d.getDate()];
  }

  /** The chat template's text for [{role, content}] (the assistant's turn opened); `tools`: {tools, toolChoice}. */
  renderChat(messages, addGenerationPrompt = true, tools = undefined) {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    return this.engine.renderChat(messages, !!addGenerationPrompt, Host.today(), toolOptions(tools));
  }

  /**
   * Prompt token ids for a request {prompt} or {messages}, and how many old messages a context
   * shift left out. Chats are rendered with the model's own template (GGUF
   * `tokenizer.chat_template`) or the built-in one its vocabulary calls for.
   */
  promptIds(req) {
    const e = this.engine;
    const o = req.options || {};
    if (req.messages) {
      const p = e.chatPrompt(req.messages, { contextSize: this.contextSize, maxTokens: o.maxTokens, contextPolicy: o.contextPolicy, date: Host.today(), ...toolOptions(o) });
      return { ids: p.tokens, dropped: p.dropped };
    }
    const p = req.prompt;
    if (typeof p === "string") return { ids: e.tokenize(p, true, false), dropped: 0 };
    if (Array.isArray(p) || p instanceof Uint32Array) return { ids: p, dropped: 0 };
    throw codeError("invalid_argument", "the prompt must be a string or an array of token ids");
  }

  /**
   * Run one generation. `onChunk(chunk)` gets each {text, tokenIds, done: false}; returns the final
   * chunk. `isAborted()` is checked after every token, with an event-loop hop in between so that
   * an abort message can arrive.
   */
  async generate(req, { onChunk, isAborted = () => false } = {}) {
    this.check();
    if (this.deviceLost) await this.reloadOnCpu();
    const e = this.engine;
    if (!e) throw codeError("invalid_argument", "no model is loaded");
    const o = req.options || {};
    const t0 = performance.now();
    const { ids, dropped } = this.promptIds(req);
    const opts = {
      maxTokens: o.maxTokens,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      minP: o.minP,
      typicalP: o.typicalP,
      repeatPenalty: o.repeatPenalty,
      frequencyPenalty: o.frequencyPenalty,
      presencePenalty: o.presencePenalty,
      repeatLastN: o.repeatLastN,
      // Without a seed every run draws anew (greedy runs do not draw at all).
      seed: o.seed ?? Math.floor(Math.random() * 2 ** 32),
      stop: typeof o.stop === "string" ? [o.stop] : o.stop,
      stopAtEos: o.stopAtEos ?? (req.messages ? true : undefined),
      responseFormat: o.responseFormat,
      logprobs: o.logprobs === true ? 0 : o.logprobs === false ? undefined : o.logprobs,
      logitBias: o.logitBias,
      contextSize: this.contextSize,
      kvType: this.kvType,
      ...toolOptions(req.messages ? o : null),
    };
    for (const k of Object.keys(opts)) if (opts[k] === undefined || opts[k] === null) delete opts[k];
    const promptTokens = await this.guard(e.start(ids instanceof Uint32Array ? ids : Uint32Array.from(ids), opts));
    // A chat offered tools: its reply is read for calls (content as `text`, calls as `toolCalls`).
    const tools = ToolStream.open(e, req);
    const t1 = performance.now();
    let ttft = null;
    let last;
    for (;;) {
      this.check();
      if (isAborted()) e.cancel();
      const s = await this.guard(e.step());
      if (s.done) {
        last = s;
        break;
      }
      if (ttft === null) ttft = performance.now() - t0;
      if (this.loseAfter && --this.loseAfter === 0) e.debugLoseDevice();
      const chunk = { text: s.text, tokenIds: [s.id], done: false };
      if (s.logprob) chunk.logprobs = [logprobEntry(s.logprob, s.topLogprobs)];
      if (tools) tools.apply(chunk, s.id, s.text);
      onChunk(chunk);
      await yieldToEventLoop();
    }
    if (tools) {
      const rest = tools.finish(last.text);
      if (rest) onChunk(rest);
    } else if (last.text) onChunk({ text: last.text, tokenIds: [], done: false });
    const t2 = performance.now();
    const decodeMs = t2 - t1;
    const n = last.completionTokens;
    return {
      text: "",
      tokenIds: [],
      done: true,
      finishReason: tools ? tools.finishReason(last.finishReason) : last.finishReason,
      ...(tools ? { toolCalls: tools.all } : {}),
      droppedMessages: dropped,
      usage: { promptTokens, completionTokens: n, cachedTokens: e.reusedTokens },
      timing: {
        promptMs: t1 - t0,
        decodeMs,
        ttftMs: ttft === null ? t2 - t0 : ttft,
        tokensPerSecond: n > 0 && decodeMs > 0 ? (n * 1000) / decodeMs : 0,
      },
    };
  }

  /**
   * Perplexity of `text` as llama.cpp's llama-perplexity measures it (chunks of `contextSize`
   * tokens, the second half of each scored), one prefill batch per engine step. `onProgress` gets
   * {evaluated, total, chunksDone, chunks, perplexity} after each step; `isAborted()` is checked
   * between steps, with an event-loop hop so that an abort message can arrive.
   */
  async perplexity(text, { contextSize = 512, batch, kvType, onProgress = () => {}, isAborted = () => false } = {}) {
    this.check();
    if (this.deviceLost) await this.reloadOnCpu();
    const e = this.engine;
    if (!e) throw codeError("invalid_argument", "no model is loaded");
    const t0 = performance.now();
    const kv = kvType == null ? this.kvType : checkKvType(kvType);
    e.perplexityStart(String(text), batch == null ? { contextSize, kvType: kv } : { contextSize, batch, kvType: kv });
    try {
      for (;;) {
        await yieldToEventLoop();
        this.check();
        if (isAborted()) throw codeError("aborted", "the perplexity run was aborted");
        const s = await this.guard(e.perplexityStep());
        onProgress({ evaluated: s.evaluated, total: s.total, chunksDone: s.chunksDone, chunks: s.chunks, perplexity: s.perplexity });
        if (s.done) {
          const seconds = (performance.now() - t0) / 1000;
          return {
            perplexity: s.perplexity,
            uncertainty: s.uncertainty,
            tokens: s.tokens,
            chunks: s.chunks,
            scored: s.scored,
            contextSize: s.contextSize,
            batch: s.batch,
            chunkPerplexities: s.chunkPerplexities,
            seconds,
            tokensPerSecond: seconds > 0 ? (s.chunks * s.contextSize) / seconds : 0,
          };
        }
      }
    } finally {
      // Frees the run's KV cache (a finished or failed run is gone already).
      if (this.alive()) e.perplexityCancel();
    }
  }

  /**
   * Embeddings of `inputs` (an array of texts or token-id arrays) as llama.cpp's embeddings mode
   * computes them (src/embed.rs): every input is checked and tokenized first (none over the
   * context, none empty), then each runs from an empty KV cache of its own, with an event-loop
   * hop between inputs so that `isAborted()` can be seen. `pooling` overrides the model's
   * (`info.pooling`); `normalize` (default true) scales each vector to unit length. Resolves to
   * {data: [{embedding: Float32Array (nEmbd values; with pooling "none" nEmbd per token), tokens}],
   * pooling, nEmbd, promptTokens}.
   */
  async embed(inputs, { pooling, normalize, isAborted = () => false } = {}) {
    this.check();
    if (this.deviceLost) await this.reloadOnCpu();
    const e = this.engine;
    if (!e) throw codeError("invalid_argument", "no model is loaded");
    if (!Array.isArray(inputs) || inputs.length === 0) throw codeError("invalid_argument", "the input must be a text, token ids, or a non-empty array of them");
    const opts = { contextSize: this.contextSize, kvType: this.kvType };
    if (pooling != null) opts.pooling = pooling;
    if (normalize != null) opts.normalize = normalize;
    const ids = inputs.map((x) => e.embedPrepare(x, opts));
    const data = [];
    let last = null;
    for (const input of ids) {
      await yieldToEventLoop();
      this.check();
      if (isAborted()) throw codeError("aborted", "the embedding was aborted");
      last = await this.guard(e.embed(input, opts));
      data.push({ embedding: last.embedding, tokens: last.tokens });
    }
    return { data, pooling: last.pooling, nEmbd: last.nEmbd, promptTokens: data.reduce((n, d) => n + d.tokens, 0) };
  }

  /**
   * Llama Guard moderation of the last message of `messages` (src/guard.rs; the engine's
   * `moderate`): `categories` ([[code, description], ...], custom, in order), `excluded` codes;
   * `render` only renders the prompt. The taxonomy stays in the engine's KV cache (one per role),
   * so a second check prefills only what differs. Resolves to the engine's result plus `ms`.
   */
  async moderate(messages, { categories, excluded, render = false, logitBias, isAborted = () => false } = {}) {
    this.check();
    if (this.deviceLost) await this.reloadOnCpu();
    const e = this.engine;
    if (!e) throw codeError("invalid_argument", "no model is loaded");
    if (isAborted()) throw codeError("aborted", "the moderation was aborted");
    const opts = { contextSize: this.contextSize, excluded: excluded ?? [], render };
    if (categories != null) opts.categories = categories;
    if (logitBias != null) opts.logitBias = logitBias;
    const t0 = performance.now();
    const r = await this.guard(e.moderate(messages, opts));
    r.ms = performance.now() - t0;
    return r;
  }

  /**
   * Tests: lose the GPU device, now or after `afterSteps` tokens of the next generation (a
   * deterministic "mid-generation"); the step after it fails with "device_lost".
   */
  debugLoseDevice(afterSteps = 0) {
    this.check();
    if (afterSteps > 0) this.loseAfter = afterSteps;
    else this.engine?.debugLoseDevice();
  }

  /**
   * Tests: crash the engine as a bug would (wasm `debugTrap`: "panic", "stack", "oob", "oom",
   * "async-panic", "pool-panic"); the request fails with "engine_crashed". Needs no model.
   */
  async debugTrap(kind = "panic") {
    this.check();
    if (!wasm) throw codeError("invalid_argument", "the engine has not started");
    await this.guard(wasm.debugTrap(String(kind)));
  }

  /**
   * Await an engine call; a lost GPU device moves the next request to the CPU, and a crash of
   * the engine (also one that leaves the call's Promise unsettled) fails it with "engine_crashed".
   */
  async guard(promise) {
    try {
      return await raceCrash(promise);
    } catch (e) {
      if (e && e.code === "device_lost") this.deviceLost = true;
      throw crashOr(e);
    }
  }

  /** Load the same model again on the CPU (after the GPU device was lost). */
  async reloadOnCpu() {
    if (!this.source) {
      this.deviceLost = false;
      throw codeError("device_lost", "the GPU device was lost and this model was given as bytes the engine did not keep: load it again");
    }
    const { source, contextSize, kvType, cache, sha256 } = this.source;
    const prev = this.info;
    const kept = this.adapterKeep;
    const next = this.nextAdapterId;
    await this.load(source, { backend: "cpu", contextSize, kvType, cache, sha256 });
    // The adapters again, in their order, with their scales and the ids the page knows them by.
    const lost = [];
    for (const [id, a] of kept) {
      try {
        const internal = await this.addAdapter(a.source, a.scale);
        this.adapterKeep.set(id, { ...a, internal });
      } catch (e) {
        lost.push(`${a.name} (${e && e.message ? e.message : e})`);
      }
    }
    this.nextAdapterId = next;
    const dropped = lost.length ? `; LoRA adapter(s) that could not be loaded again were dropped: ${lost.join(", ")}` : "";
    this.info.backendFallback = `the GPU device was lost while running on ${prev?.gpu?.name || "WebGPU"}${dropped}`;
  }

  // ---- LoRA adapters -------------------------------------------------------------------------

  /**
   * Load a LoRA adapter of the loaded model (a URL, Blob or bytes; llama.cpp's GGUF adapter
   * format), streamed into the engine and checked against the model, and use it with `scale`.
   * Returns its entry of `adapters()`. The chat session's cache is recomputed at the next turn.
   */
  async loadAdapter(source, { scale = 1, isAborted = () => false, fetchSignal } = {}) {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    checkScale(scale);
    // Kept to load it again if a lost GPU moves the model to the CPU: a URL or Blob as given,
    // bytes as a copy of their own.
    const keep = typeof source === "string" || source instanceof URL || (typeof Blob !== "undefined" && source instanceof Blob) ? source : toBytes(source).slice();
    const internal = await this.addAdapter(keep, scale, isAborted, fetchSignal);
    const id = this.nextAdapterId++;
    const kept = { source: keep, scale, internal };
    this.adapterKeep.set(id, kept);
    const entry = this.adapters().find((a) => a.id === id);
    kept.name = entry.name;
    return entry;
  }

  /** Stream an adapter's bytes into the engine and add it; returns the engine's id for it. */
  async addAdapter(source, scale, isAborted = () => false, fetchSignal) {
    const check = () => {
      if (isAborted()) throw codeError("aborted", "loading the adapter was aborted");
    };
    const loader = this.engine.adapterLoader();
    try {
      if (typeof source === "string" || source instanceof URL) {
        const resp = await fetchModel(source, { signal: fetchSignal, check });
        const reader = resp.body.getReader();
        let loaded = 0;
        for (;;) {
          const r = await readChunk(reader, source, loaded, check);
          if (r.done) break;
          loaded += r.value.byteLength;
          loader.feed(r.value);
        }
      } else if (typeof Blob !== "undefined" && source instanceof Blob) {
        const reader = source.stream().getReader();
        for (;;) {
          const r = await reader.read();
          check();
          if (r.done) break;
          loader.feed(r.value);
        }
      } else {
        loader.feed(toBytes(source));
      }
      check();
      return this.engine.addAdapter(loader, scale);
    } finally {
      loader.free();
    }
  }

  /** The engine's id of the adapter the page knows as `id` (an unknown id is left as it is: the engine refuses it). */
  internalAdapterId(id) {
    return this.adapterKeep.get(adapterId(id))?.internal ?? adapterId(id);
  }

  setAdapterScale(id, scale) {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    checkScale(scale);
    this.engine.setAdapterScale(this.internalAdapterId(id), scale);
    const kept = this.adapterKeep.get(id);
    if (kept) kept.scale = scale;
    return this.adapters().find((a) => a.id === id);
  }

  removeAdapter(id) {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    this.engine.removeAdapter(this.internalAdapterId(id));
    this.adapterKeep.delete(id);
    return true;
  }

  /**
   * The loaded model file's SHA-256 (hex), which ties a saved session to it: given at load
   * (`sha256`), from the model store (which hashes what it keeps), or hashed now from the File,
   * Blob or bytes the model was loaded from (kept for a GPU loss's reload).
   */
  async modelSha256() {
    if (this.modelSha) return this.modelSha;
    const s = this.source;
    if (s?.sha256) return (this.modelSha = String(s.sha256).toLowerCase());
    const src = s && (Array.isArray(s.source) ? (s.source.length === 1 ? s.source[0] : null) : s.source);
    const h = new Sha256();
    if (src && typeof Blob !== "undefined" && src instanceof Blob) {
      for (let at = 0; at < src.size; at += 4 << 20) h.update(new Uint8Array(await src.slice(at, at + (4 << 20)).arrayBuffer()));
    } else if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) {
      h.update(src instanceof ArrayBuffer ? new Uint8Array(src) : new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    } else {
      throw codeError(
        "invalid_argument",
        "a saved session is tied to the model file's SHA-256, which is not known for this model: load it with cache: true (the model store hashes it) or pass its sha256 to Hearth.load",
      );
    }
    return (this.modelSha = h.hex());
  }

  /**
   * The chat's cached conversation as saved-session bytes (src/saved.rs) and what they were made
   * with: {bytes, meta: {model, modelSha256, contextSize, kvType, tokens, bytes}}. The page keeps
   * them (sessions.js).
   */
  async saveSession() {
    this.check();
    const e = this.engine;
    if (!e) throw codeError("invalid_argument", "no model is loaded");
    const sha = await this.modelSha256();
    const { bytes, tokens } = await this.guard(e.saveSession(sha));
    return { bytes, meta: { model: this.info?.displayName ?? null, modelSha256: sha, contextSize: this.contextSize, kvType: this.kvType, tokens, bytes: bytes.length } };
  }

  /** Put saved-session bytes back in place of the chat's cache; returns the tokens restored. */
  async restoreSession(bytes) {
    this.check();
    const e = this.engine;
    if (!e) throw codeError("invalid_argument", "no model is loaded");
    const sha = await this.modelSha256();
    return e.restoreSession(sha, bytes, { contextSize: this.contextSize, kvType: this.kvType });
  }

  /**
   * The chat's cached conversation as bytes that only this engine reads back (`unstashChat`): the
   * SharedWorker swaps each tab's conversation in and out with them. Null before the first
   * generation. Not tied to the file's SHA-256 (never stored; the model is the one loaded).
   */
  async stashChat() {
    this.check();
    if (!this.engine || this.engine.running) return null;
    try {
      return (await this.guard(this.engine.saveSession(STASH_SHA))).bytes;
    } catch (e) {
      if (e && e.code === "invalid_argument") return null; // no conversation yet
      throw e;
    }
  }

  /** Put back a conversation `stashChat` took. */
  unstashChat(bytes) {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    return this.engine.restoreSession(STASH_SHA, bytes, { contextSize: this.contextSize, kvType: this.kvType });
  }

  /** [{id, name, scale, alpha, rank, tensors}], in the order their deltas are added. */
  adapters() {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    const page = new Map([...this.adapterKeep].map(([id, a]) => [a.internal, id]));
    return Array.from(this.engine.adapters(), (a) => ({ ...a, id: page.get(a.id) ?? a.id }));
  }

  tokenize(text, addSpecial = true, parseSpecial = false) {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    return Array.from(this.engine.tokenize(String(text), !!addSpecial, !!parseSpecial));
  }

  decode(ids) {
    this.check();
    if (!this.engine) throw codeError("invalid_argument", "no model is loaded");
    return this.engine.decode(Uint32Array.from(ids));
  }

  unload() {
    this.abortLoad();
    loaded.delete(this);
    if (this.engine && !this.alive()) this.engine = null;
    if (this.engine) {
      this.engine.free();
      this.engine = null;
    }
  }
}

/** The file name a source carries: a URL's last path segment or a File's name; undefined for bytes. */
function fileNameOf(source) {
  if (typeof source === "string" || source instanceof URL) {
    try {
      const last = new URL(String(source), globalThis.location?.href).pathname.split("/").filter(Boolean).pop();
      return last ? decodeURIComponent(last) : undefined;
    } catch {
      return undefined;
    }
  }
  return typeof File !== "undefined" && source instanceof File ? source.name : undefined;
}

/** The quantization label a file name ends in ("SmolLM2-135M-Instruct.Q4_1.gguf": "Q4_1"), as src/model/name.rs reads it. */
function quantOf(fileName) {
  if (!fileName) return null;
  const stem = fileName.replace(/\.gguf$/i, "").replace(/-\d{5}-of-\d{5}$/, "");
  const label = stem.match(/[.-]([^.-]+)$/)?.[1].toLowerCase();
  return label && (/^(f32|f16|bf16|fp16|fp32)$/.test(label) || /^i?q\d/.test(label)) ? label.toUpperCase() : null;
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

/** {token, id, logprob, bytes, topLogprobs} from the engine's {id, logprob, bytes} entries. */
function logprobEntry(chosen, top = []) {
  const one = (x) => ({ token: utf8.decode(x.bytes), id: x.id, logprob: x.logprob, bytes: Array.from(x.bytes) });
  return { ...one(chosen), topLogprobs: top.map(one) };
}

function checkScale(scale) {
  if (typeof scale !== "number" || !Number.isFinite(scale)) throw codeError("invalid_argument", `a LoRA scale must be a finite number, got ${String(scale)}`);
}

function adapterId(id) {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw codeError("invalid_argument", `no LoRA adapter has id ${String(id)}`);
  return id;
}

export function toBytes(source) {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  throw codeError("invalid_argument", "source must be a URL, File, Blob, ArrayBuffer or Uint8Array");
}
