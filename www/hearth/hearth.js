// Hearth: Llama-family GGUF models in the browser. The public client API.
//
//   import { Hearth, HearthError } from "./pkg/hearth.js";
//   const llm = await Hearth.load(url, { onProgress, signal });
//   for await (const chunk of llm.generate("Once upon a time", { maxTokens: 64 })) out += chunk.text;
//   await llm.unload();
//
// By default the engine runs in a dedicated module Worker (worker.js), so the page's thread never
// runs a long task; `worker: false` runs it in the current thread (e.g. inside your own worker).

import { Completions, Embeddings, Moderations } from "./openai.js";
import { toolOptions } from "./tools.js";
import { ModelStore, requestPersistence, storeAvailable } from "./store.js";
import { SessionStore } from "./sessions.js";

const FEED_SLICE = 4 << 20;
const BACKENDS = ["auto", "cpu", "webgpu"];

export class HearthError extends Error {
  /**
   * @param {string} code stable machine-readable code: the engine's (e.g. "truncated",
   *   "bad_magic", "context_overflow") or "aborted", "network", "worker", "engine_crashed" (the
   *   engine trapped; it was restarted without its model: load it again)
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "HearthError";
    this.code = code;
  }
}

function asHearthError(e, fallback = "worker") {
  if (e instanceof HearthError) return e;
  if (e && typeof e === "object") {
    if (e.name === "AbortError") return new HearthError("aborted", "aborted");
    return new HearthError(typeof e.code === "string" ? e.code : fallback, String(e.message || e));
  }
  return new HearthError(fallback, String(e));
}

function abortError(what) {
  return new HearthError("aborted", `${what} was aborted`);
}

/** An async queue: push() from callbacks, consumed by an async generator. */
class Channel {
  constructor() {
    this.items = [];
    this.waiting = null;
    this.closed = false;
    this.error = null;
  }
  push(x) {
    this.items.push(x);
    this.wake();
  }
  close(error = null) {
    this.closed = true;
    this.error = error;
    this.wake();
  }
  wake() {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w();
    }
  }
  async *drain() {
    for (;;) {
      if (this.items.length) {
        yield this.items.shift();
        continue;
      }
      if (this.closed) {
        if (this.error) throw this.error;
        return;
      }
      await new Promise((r) => (this.waiting = r));
    }
  }
}

/** An uncaught error's text that says the engine trapped (a Worker's error event carries only text). */
const CRASH_TEXT = /RuntimeError|maximum call stack|too much recursion|out of memory/i;

/** Text on one line, at most `max` characters (control characters as spaces). */
function oneLine(text, max) {
  const s = String(text).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ");
  return s.length > max ? s.slice(0, max - 1) + "\u2026" : s;
}

/**
 * Engine Workers by name. A trap on a pool thread of the threaded build leaves its engine Worker
 * blocked waiting for the pool; the pool Worker (named as its engine Worker: scripts/build-wasm
 * patches wasm-bindgen-rayon's workerHelpers.js) says so on this channel instead.
 */
const transports = new Map();
let crashChannel = null;
function watchPoolCrashes(name, transport) {
  transports.set(name, transport);
  if (crashChannel || typeof BroadcastChannel === "undefined") return;
  crashChannel = new BroadcastChannel("hearth-engine-crash");
  crashChannel.onmessage = ({ data }) => {
    const t = data && transports.get(data.name);
    if (!t) return;
    const what = data.panic ? `a bug in the engine, on a thread of its pool: ${oneLine(data.panic, 600)}` : `on a thread of its pool: ${oneLine(data.message, 300)}`;
    t.replace(new HearthError("engine_crashed", `the engine crashed (${what}) and was restarted: load the model again`));
  };
}

/**
 * Runs the Host in a Worker; requests/replies keyed by rid. When the engine crashes (the Worker
 * says so, or dies of an uncaught trap), every pending request fails with "engine_crashed" and a
 * fresh Worker replaces it; `onCrash(error)` is told.
 */
class WorkerTransport {
  constructor(onCrash, sharedName = null) {
    this.next = 1;
    this.pending = new Map();
    this.dead = null;
    this.onCrash = onCrash;
    this.sharedName = sharedName;
    this.spawn();
  }
  spawn() {
    // Named uniquely: its pool Workers take the name (watchPoolCrashes).
    if (this.name) transports.delete(this.name);
    this.name = `hearth-${Math.random().toString(36).slice(2, 10)}`;
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: this.name });
    this.worker = worker;
    watchPoolCrashes(this.name, this);
    worker.onmessage = (ev) => {
      if (worker === this.worker) this.receive(ev.data); // else a replaced Worker's last words
    };
    worker.onerror = (ev) => {
      if (worker !== this.worker) return;
      ev.preventDefault?.();
      if (ev.message && CRASH_TEXT.test(ev.message)) {
        return this.replace(new HearthError("engine_crashed", `the engine crashed (${oneLine(ev.message, 300)}) and was restarted: load the model again`));
      }
      this.fail(`the Hearth worker failed: ${ev.message || "could not load worker.js (check the server's MIME types and CSP)"}`);
    };
    worker.onmessageerror = () => {
      if (worker === this.worker) this.fail("a message from the Hearth worker could not be read");
    };
  }
  receive(m) {
    // The engine crashed: replaced at its first word of it, so that the next request (made as
    // soon as this one fails) already goes to the fresh Worker.
    if (m.kind === "crashed" || (m.kind === "error" && (m.error.code === "engine_crashed" || m.error.code === "out_of_memory"))) {
      return this.replace(new HearthError(m.error.code, m.error.message));
    }
    const p = this.pending.get(m.rid);
    if (!p) return;
    if (m.kind === "event") p.onEvent?.(m.value);
    else {
      this.pending.delete(m.rid);
      if (m.kind === "result") p.resolve(m.value);
      else p.reject(new HearthError(m.error.code, m.error.message));
    }
  }
  fail(msg) {
    this.dead = new HearthError("worker", msg);
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
  }
  post(msg, transfer = []) {
    this.worker.postMessage(msg, transfer);
  }
  /** End the current Worker. */
  stop() {
    this.worker.terminate();
  }
  /** The engine crashed: its requests fail with `error`, and a fresh Worker takes its place. */
  replace(error) {
    if (this.dead) return;
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.stop();
    this.spawn();
    for (const p of pending) p.reject(error);
    this.onCrash?.(error);
  }
  /** Send a request; returns [rid, promise]. */
  request(op, args = {}, onEvent, transfer = []) {
    const rid = this.next++;
    const promise = new Promise((resolve, reject) => {
      if (this.dead) return reject(this.dead);
      this.pending.set(rid, { resolve, reject, onEvent });
      this.post({ rid, op, ...args }, transfer);
    });
    return [rid, promise];
  }
  call(op, args, onEvent) {
    return this.request(op, args, onEvent)[1];
  }
  abort(target) {
    if (!this.dead) this.post({ rid: 0, op: "abort", target });
  }
  terminate() {
    transports.delete(this.name);
    this.stop();
    this.dead = new HearthError("worker", "the model was unloaded");
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
  }
}

/**
 * The engine of every tab of this origin that loads the same model with the same options
 * (`shared: true`): a SharedWorker (shared-worker.js) named after them, so one copy of the
 * weights serves them all. This tab is one client with its own conversation; a Web Lock held while
 * the tab lives tells the worker when it is gone. After a crash the worker closes and the tabs
 * go on under the name's next epoch (kept in localStorage, so tabs opened later find it too): the
 * old name could still match the closing worker, which never answers (Firefox).
 */
class SharedTransport extends WorkerTransport {
  spawn() {
    if (this.name) transports.delete(this.name);
    this.epoch = Math.max(sharedEpoch(this.sharedName) ?? 0, this.epoch ?? 0);
    this.name = `${this.sharedName} #${this.epoch}`;
    const worker = new SharedWorker(new URL("./shared-worker.js", import.meta.url), { type: "module", name: this.name });
    this.worker = worker;
    watchPoolCrashes(this.name, this);
    worker.port.onmessage = (ev) => {
      if (worker === this.worker) this.receive(ev.data);
    };
    worker.port.onmessageerror = () => {
      if (worker === this.worker) this.fail("a message from the Hearth shared worker could not be read");
    };
    worker.onerror = (ev) => {
      if (worker !== this.worker) return;
      ev.preventDefault?.();
      this.fail(`the Hearth shared worker failed: ${ev.message || "could not load shared-worker.js (check the server's MIME types and CSP)"}`);
    };
    worker.port.start();
    const client = { gone: false, release: null };
    this.client = client;
    holdTabLock().then((lock) => {
      if (!lock) return;
      client.release = lock.release;
      if (client.gone) lock.release();
      else worker.port.postMessage({ rid: 0, op: "hello", lock: lock.name });
    });
  }
  post(msg, transfer = []) {
    this.worker.port.postMessage(msg, transfer);
  }
  /** This tab leaves the shared engine (which goes on for the other tabs). */
  stop() {
    this.client.gone = true;
    this.client.release?.();
    this.worker.port.postMessage({ rid: 0, op: "bye" });
    this.worker.port.close();
  }
  replace(error) {
    if (this.dead) return;
    this.epoch += 1;
    setSharedEpoch(this.sharedName, this.epoch);
    super.replace(error);
  }
}

/** The epoch of a shared engine's name: how many times it crashed (null without localStorage). */
function sharedEpoch(name) {
  try {
    const v = Number(globalThis.localStorage?.getItem(`hearth-shared-epoch ${name}`));
    return Number.isInteger(v) && v >= 0 ? v : null;
  } catch {
    return null;
  }
}

function setSharedEpoch(name, epoch) {
  try {
    if ((sharedEpoch(name) ?? 0) < epoch) globalThis.localStorage?.setItem(`hearth-shared-epoch ${name}`, String(epoch));
  } catch {}
}

/**
 * A Web Lock this tab holds until it is closed (or `release()`): the shared engine waits for it
 * to know the tab is gone. Null where Web Locks are missing (a tab then leaves at pagehide).
 */
async function holdTabLock() {
  const name = `hearth-tab-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`;
  if (typeof navigator === "undefined" || !navigator.locks) {
    if (typeof addEventListener === "function") addEventListener("pagehide", (e) => !e.persisted && transportsLeave());
    return null;
  }
  let release;
  const held = new Promise((r) => (release = r));
  await new Promise((acquired) => {
    navigator.locks.request(name, () => {
      acquired();
      return held;
    });
  });
  return { name, release };
}

/** Without Web Locks: every shared transport of this tab says goodbye. */
function transportsLeave() {
  for (const t of transports.values()) if (t instanceof SharedTransport && !t.dead) t.terminate();
}

/**
 * The SharedWorker name of a shared load: its source's URL(s) and the options that shape the
 * engine. Null for a source only this tab holds (a File or bytes).
 */
function sharedName(source, { backend, contextSize, kvType, cache, sha256 }, threads) {
  const list = Array.isArray(source) ? source : [source];
  if (!list.every(isUrl)) return null;
  return `hearth-shared ${JSON.stringify([list.map(resolveUrl), backend, contextSize ?? null, kvType ?? null, !!cache, sha256 ?? null, threads ?? null])}`;
}

function resolveUrl(source) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  return new URL(String(source), base).href;
}

function isUrl(source) {
  return typeof source === "string" || source instanceof URL;
}

function bytesOf(source) {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  return null;
}

/** OpenAI's tool_calls [{id, type: "function", function: {name, arguments}}], arguments as JSON text. */
function normalizeToolCalls(calls, i) {
  if (!Array.isArray(calls)) throw new HearthError("invalid_argument", `message ${i}: tool_calls must be an array`);
  return calls.map((c, j) => {
    const f = c?.function;
    if (!f || typeof f.name !== "string") throw new HearthError("invalid_argument", `message ${i}: tool_calls[${j}] needs function.name`);
    const args = f.arguments == null ? "{}" : typeof f.arguments === "string" ? f.arguments : JSON.stringify(f.arguments);
    return { id: String(c.id ?? ""), type: "function", function: { name: f.name, arguments: args } };
  });
}

/**
 * [{role, content}] with content as text: OpenAI's content parts [{type: "text", text}] are joined;
 * an assistant's `tool_calls` and a tool message's `tool_call_id` (and `name`) are kept.
 */
function normalizeMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw new HearthError("invalid_argument", "messages must be a non-empty array of {role, content}");
  return messages.map((m, i) => {
    if (!m || typeof m.role !== "string") throw new HearthError("invalid_argument", `message ${i} has no role`);
    let content = m.content ?? "";
    if (Array.isArray(content)) {
      content = content
        .map((p) => {
          if (p?.type !== "text") throw new HearthError("invalid_argument", `message ${i}: only text content parts are supported, got ${p?.type}`);
          return String(p.text ?? "");
        })
        .join("");
    }
    const out = { role: m.role, content: String(content) };
    if (m.tool_calls != null && (!Array.isArray(m.tool_calls) || m.tool_calls.length > 0)) out.tool_calls = normalizeToolCalls(m.tool_calls, i);
    if (m.tool_call_id != null) out.tool_call_id = String(m.tool_call_id);
    if (m.name != null) out.name = String(m.name);
    return out;
  });
}

/**
 * What a moderation checks: a text is one user message; messages are normalized and, for the
 * Llama Guard templates (which want user/assistant turns alternating from a user's), reduced to
 * user and assistant text with consecutive messages of a role joined.
 */
function moderationMessages(conversation) {
  if (typeof conversation === "string") return [{ role: "user", content: conversation }];
  const out = [];
  for (const m of normalizeMessages(conversation)) {
    if (m.role !== "user" && m.role !== "assistant") continue;
    const last = out[out.length - 1];
    if (last?.role === m.role) last.content += "\n\n" + m.content;
    else if (out.length > 0 || m.role === "user") out.push({ role: m.role, content: m.content });
  }
  if (out.length === 0) throw new HearthError("invalid_argument", "moderation needs a text or a conversation with a user message");
  return out;
}

/** Custom categories as the engine takes them: [[code, description], ...] from an object or pairs. */
function categoryPairs(categories) {
  if (categories == null) return undefined;
  const pairs = Array.isArray(categories) ? categories.map((c) => (Array.isArray(c) ? c : [c?.code, c?.description ?? c?.name])) : Object.entries(categories);
  for (const [code, desc] of pairs) {
    if (typeof code !== "string" || typeof desc !== "string") throw new HearthError("invalid_argument", "categories must map codes to descriptions: {S1: \"...\"} or [[code, description], ...]");
  }
  return pairs;
}

/** The typed error a guarded chat fails with when the guard model flags the user's message. */
function flaggedError(moderation) {
  const names = moderation.categories.map((c) => `${c.code} ${c.name}`).join(", ");
  const e = new HearthError("content_flagged", `the guard model flagged the message as unsafe (${names})`);
  e.stage = "input";
  e.moderation = moderation;
  return e;
}

function generationOptions(o = {}) {
  const out = {};
  for (const k of ["maxTokens", "temperature", "topK", "topP", "minP", "typicalP", "repeatPenalty", "frequencyPenalty", "presencePenalty", "repeatLastN", "seed", "stop", "stopAtEos", "responseFormat", "logprobs", "logitBias", "contextPolicy", "tools", "toolChoice", "parallelToolCalls"]) {
    if (o[k] !== undefined && o[k] !== null) out[k] = o[k];
  }
  return out;
}

/**
 * `embed`'s input as an array of inputs, each a text or token ids: a text, token ids (numbers or a
 * Uint32Array), or a non-empty array of either. Checked here so a mistake fails before any work.
 */
function embedInputs(input) {
  const ids = (x) => x instanceof Uint32Array || (Array.isArray(x) && x.length > 0 && x.every((n) => typeof n === "number"));
  const one = (x) => typeof x === "string" || ids(x);
  const plain = (x) => (x instanceof Uint32Array ? Array.from(x) : x);
  if (one(input)) return [plain(input)];
  if (Array.isArray(input) && input.length > 0 && input.every(one)) return input.map(plain);
  throw new HearthError("invalid_argument", "the input to embed must be a text, token ids, or a non-empty array of texts or of token-id arrays");
}

/** `job.done` (a worker request), aborted when `signal` fires while it runs. */
async function awaitJob(job, signal) {
  const onAbort = () => job.abort();
  signal?.addEventListener("abort", onAbort);
  try {
    return await job.done;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

export class Hearth {
  /** @private use Hearth.load */
  constructor(impl, info) {
    this._impl = impl;
    this.info = info;
    this._queue = Promise.resolve();
    this._closed = false;
    /**
     * `chat(messages, options)` streams like generate; `chat.completions.create(request)` takes
     * and returns OpenAI's shapes (see openai.js).
     */
    const chat = (messages, options = {}) => this._chat(messages, options);
    chat.completions = new Completions(this);
    this.chat = chat;
    /** `embeddings.create(request)`: OpenAI's embeddings shapes over `embed()` (see openai.js). */
    this.embeddings = new Embeddings(this);
    /** LoRA adapters: `load(source, {scale})`, `setScale(id, scale)`, `remove(id)`, `list()`. */
    this.adapters = new Adapters(this);
    /** `moderations.create(request)`: OpenAI's moderations shapes over `moderate()` (see openai.js). */
    this.moderations = new Moderations(this);
    /** The guard model (`Hearth.load(model, {guard})`) that checks chat turns, or null. */
    this.guard = null;
    this._guardOptions = {};
  }

  /** Run `f` after every request queued before it (adapters never change during a generation). */
  async _serial(f) {
    let release;
    const prev = this._queue;
    this._queue = new Promise((r) => (release = r));
    try {
      await prev;
      return await f();
    } catch (e) {
      throw asHearthError(e);
    } finally {
      release();
    }
  }

  /**
   * Load a GGUF model.
   * @param {string|URL|File|Blob|ArrayBuffer|Uint8Array|Array<string|URL|File|Blob>} source
   *   a split model: the URL of its first shard, or all its shards in order
   * @param {{backend?: "auto"|"cpu"|"webgpu", contextSize?: number, kvType?: "f16"|"q8_0"|"f32", onProgress?: (p: {phase: "download"|"load", loaded: number, total: number, shard?: number, shards?: number}) => void, signal?: AbortSignal, worker?: boolean, threads?: number, cache?: boolean, sha256?: string}} [options]
   */
  static async load(source, options = {}) {
    const { contextSize, kvType, onProgress, signal, worker = true, backend = "auto", cache = false, sha256, threads, guard, shared = false } = options;
    if (signal?.aborted) throw abortError("loading");
    if (!BACKENDS.includes(backend)) throw new HearthError("invalid_argument", `backend must be one of ${BACKENDS.join(", ")}; got ${backend}`);
    const useWorker = worker && typeof Worker !== "undefined";
    const impl = useWorker ? new WorkerImpl(threads, shared) : new LocalImpl(threads);
    try {
      if (cache) requestPersistence();
      const info = await impl.load(source, { backend, contextSize, kvType, onProgress, signal, cache, sha256 });
      const llm = new Hearth(impl, info);
      if (guard != null) {
        // A second engine (its own Worker) that checks each user message and each reply.
        const plain = typeof guard === "object" && !(guard instanceof Hearth) && !isUrl(guard) && !(typeof Blob !== "undefined" && guard instanceof Blob) && !bytesOf(guard) && !Array.isArray(guard);
        const g = plain ? guard : { model: guard };
        try {
          llm.guard = g.model instanceof Hearth ? g.model : await Hearth.load(g.model, { worker, shared, threads, signal, cache, backend: g.backend ?? "cpu", contextSize: g.contextSize });
        } catch (e) {
          await llm.unload();
          throw e;
        }
        llm._guardOptions = { categories: g.categories, excluded: g.excluded, logitBias: g.logitBias };
      }
      return llm;
    } catch (e) {
      impl.close();
      throw asHearthError(e);
    }
  }

  /**
   * What loading `source` will need and whether this browser can hold it, from the model's GGUF
   * header alone (a URL is read with a Range request: no weight is downloaded). Resolves to
   * `{name, displayName, architecture, contextLength, contextSize, kvType, fileBytes, cpu:
   * {weights, kvCache, scratch, other, total}, webgpu: {...}, webgpuHeap, webgpuLargestBuffer,
   * limits: {wasmBytes, wasm64Bytes, engine, wasmInUse, webgpu, deviceMemoryBytes, storageQuotaBytes,
   * storageFreeBytes}, fits: {cpu, webgpu}, cpuEngine, warnings}` (bytes; cpuEngine: the build a CPU
   * load takes, "wasm32" or "wasm64", memory64, past 4 GiB), or null when the header cannot be
   * read whole. `Hearth.load` runs the same check and fails with "model_too_big" before
   * downloading a model that cannot fit.
   * @param {ModelSource} source
   * @param {{contextSize?: number, kvType?: "f16"|"q8_0"|"f32", cache?: boolean, signal?: AbortSignal, worker?: boolean}} [options]
   */
  static async inspect(source, { contextSize, kvType, cache = false, signal, worker = true } = {}) {
    if (signal?.aborted) throw abortError("inspecting");
    const first = Array.isArray(source) ? source[0] : source;
    const src = isUrl(first) ? resolveUrl(first) : first;
    try {
      if (worker && typeof Worker !== "undefined") {
        const t = new WorkerTransport(() => {});
        try {
          // Bytes we hold: only their head goes to the worker.
          const held = isUrl(src) || (typeof Blob !== "undefined" && src instanceof Blob) ? src : bytesOf(src)?.slice(0, 64 << 20);
          if (!held) throw new HearthError("invalid_argument", "source must be a URL, File, Blob, ArrayBuffer or Uint8Array");
          return await raceAbort(t.call("inspect", { source: held, contextSize, kvType, cache }), signal, "inspecting");
        } finally {
          t.terminate();
        }
      }
      const mod = await import("./host.js");
      await mod.initWasm(1);
      return await new mod.Host().inspect(src, { contextSize, kvType, cache, signal });
    } catch (e) {
      throw asHearthError(e);
    }
  }

  /**
   * Load a model into this object's engine (its Worker, or this thread's engine with `worker:
   * false`) in place of the current one, with the options of `Hearth.load` (`worker` and
   * `threads` stay as they were). Waits for a generation in progress. Resolves to the new model's
   * info (also `this.info`). A load that fails leaves the current model as it was, except when the
   * engine crashed ("engine_crashed": it was restarted without a model): this is how a page gets a
   * model back after that.
   * @param {ModelSource} source
   */
  async load(source, { contextSize, kvType, onProgress, signal, backend = "auto", cache = false, sha256 } = {}) {
    if (this._closed) throw new HearthError("invalid_argument", "the model has been unloaded");
    if (!BACKENDS.includes(backend)) throw new HearthError("invalid_argument", `backend must be one of ${BACKENDS.join(", ")}; got ${backend}`);
    let release;
    const prev = this._queue;
    this._queue = new Promise((r) => (release = r));
    try {
      await prev;
      if (signal?.aborted) throw abortError("loading");
      if (cache) requestPersistence();
      const info = await this._impl.load(source, { backend, contextSize, kvType, onProgress, signal, cache, sha256 });
      this.info = info;
      return info;
    } catch (e) {
      throw asHearthError(e);
    } finally {
      release();
    }
  }

  /**
   * The model store (Origin Private File System): models kept for offline use by
   * `Hearth.load(url, {cache: true})` or `Hearth.models.download(url)`.
   */
  static models = {
    /** Whether this browser can store models. */
    get available() {
      return storeAvailable();
    },
    /** [{url, size, sha256, storedAt, complete}]; partial downloads have complete: false. */
    async list() {
      return wrapAsync(async () => (await ModelStore.open()).list());
    },
    /** Remove a stored model (or a partial download). Resolves to whether there was one. */
    async delete(url) {
      return wrapAsync(async () => (await ModelStore.open()).delete(resolveUrl(url)));
    },
    /** Download into the store without loading (resumes a partial download; verifies `sha256`). */
    async download(url, { sha256, onProgress, signal } = {}) {
      requestPersistence();
      return wrapAsync(async () => {
        const store = await ModelStore.open();
        const check = () => {
          if (signal?.aborted) throw abortError("the download");
        };
        return store.fetch(resolveUrl(url), { sha256, onProgress, signal, check });
      });
    },
  };

  /**
   * Stream a completion of `prompt` (text, or token ids). Yields {text, tokenIds, done: false}
   * chunks, then one {done: true, finishReason, usage, timing}.
   */
  generate(prompt, options = {}) {
    return this._run({ prompt: Array.isArray(prompt) || prompt instanceof Uint32Array ? Array.from(prompt) : String(prompt) }, options);
  }

  /**
   * Like generate, for [{role, content}] rendered with the model's chat template (its GGUF
   * `tokenizer.chat_template`, else the built-in one its vocabulary calls for). The final chunk
   * also says how many old messages `contextPolicy: "shift"` left out (`droppedMessages`).
   */
  _chat(messages, options) {
    if (this.guard) return this._guardedChat(normalizeMessages(messages), options);
    return this._run({ messages: normalizeMessages(messages) }, options);
  }

  /**
   * chat() with a guard model: the conversation is checked before generating (flagged: the
   * HearthError "content_flagged", with `moderation`, and nothing is generated), the reply once
   * complete (flagged: the final chunk's finishReason is "content_filter"; chunks already streamed
   * stay streamed, so a UI replaces them with a notice, as the widget does). The final chunk
   * carries `moderation: {input, output}`.
   */
  async *_guardedChat(messages, options) {
    const check = (m) => this.guard.moderate(m, { ...this._guardOptions, signal: options.signal });
    const input = await check(moderationMessages(messages));
    if (!input.safe) throw flaggedError(input);
    let text = "";
    let final = null;
    for await (const c of this._run({ messages }, options)) {
      if (c.done) final = c;
      else {
        text += c.text;
        yield c;
      }
    }
    let output = null;
    if (final.finishReason !== "abort" && text.trim()) {
      output = await check(moderationMessages([...messages, { role: "assistant", content: text }]));
      if (!output.safe) final = { ...final, finishReason: "content_filter" };
    }
    yield { ...final, moderation: { input, output } };
  }

  /**
   * Llama Guard moderation: is the last message of `conversation` (a text: one user message; or
   * [{role, content}]: the last user message, or the assistant's reply when the conversation ends
   * with one) safe? Rendered with the model's Llama Guard template (else the built-in Llama Guard
   * 3 1B one), the answer constrained to "safe" or "unsafe" and category codes, so it always
   * parses. `categories` ({S1: "description", ...}, templates that read them) replaces the
   * taxonomy; `excluded` codes are not checked. The taxonomy stays in the KV cache (one per role),
   * so a second check prefills only what differs. Waits for a generation in progress.
   * Resolves to {safe, categories: [{code, name}], role: "User" | "Agent", raw, promptTokens,
   * cachedTokens, generatedTokens, ms, modelTemplate, prompt}.
   * @param {string|Array<{role: string, content: string}>} conversation
   * `logitBias` ({token id: bias}, as OpenAI's logit_bias) shifts the verdict's greedy pick (a
   * stricter or laxer guard; tests force a verdict with it). `render: true` only renders the
   * prompt: {prompt, role, categories, modelTemplate}.
   * @param {{categories?: Record<string, string>|Array<[string, string]>, excluded?: string[], logitBias?: Record<string, number>, signal?: AbortSignal, render?: boolean}} [options]
   */
  async moderate(conversation, { categories, excluded, signal, logitBias, render = false } = {}) {
    if (this._closed) throw new HearthError("invalid_argument", "the model has been unloaded");
    const messages = moderationMessages(conversation);
    const cats = categoryPairs(categories);
    if (excluded != null && (!Array.isArray(excluded) || excluded.some((x) => typeof x !== "string"))) throw new HearthError("invalid_argument", "excluded must be an array of category codes");
    return this._serial(async () => {
      if (signal?.aborted) throw abortError("the moderation");
      return awaitJob(this._impl.moderate(messages, { categories: cats, excluded, render, logitBias }), signal);
    });
  }

  /**
   * Perplexity of `text` as llama.cpp's llama-perplexity measures it: the text cut into chunks of
   * `contextSize` tokens (at least two), each run from an empty context with the second half of
   * it scored. Waits for a generation in progress; `signal` stops it between batches (HearthError
   * "aborted"; the model stays usable).
   * @param {string} text
   * @param {{contextSize?: number, batch?: number, kvType?: "f16"|"q8_0"|"f32", signal?: AbortSignal, onProgress?: (p: {evaluated: number, total: number, chunksDone: number, chunks: number, perplexity: number|null}) => void}} [options]
   */
  async perplexity(text, { contextSize = 512, batch, kvType, signal, onProgress } = {}) {
    if (this._closed) throw new HearthError("invalid_argument", "the model has been unloaded");
    return this._serial(async () => {
      if (signal?.aborted) throw abortError("the perplexity run");
      return awaitJob(this._impl.perplexity(String(text), { contextSize, batch, kvType }, (p) => onProgress?.(p)), signal);
    });
  }

  /**
   * Embeddings of `input` (a text, token ids, or an array of either) as llama.cpp's embeddings
   * mode computes them: each input tokenized as a prompt and run from an empty context, the
   * hidden states after the output norm pooled as the GGUF's pooling_type says (`info.pooling`;
   * "none", also when the file says nothing: a vector per token) or as `pooling` asks ("none",
   * "mean", "cls", "last"), scaled to unit length unless `normalize: false`. Every input is
   * checked before any runs (one over the context fails with "context_overflow"). Waits for a
   * generation in progress; `signal` stops it between inputs ("aborted").
   * Resolves to {embeddings: one Float32Array per input (with pooling "none", an array of one per
   * token), tokens: each input's token count, pooling, nEmbd, promptTokens}.
   * @param {string|number[]|Uint32Array|Array<string|number[]|Uint32Array>} input
   * @param {{pooling?: "none"|"mean"|"cls"|"last", normalize?: boolean, signal?: AbortSignal}} [options]
   */
  async embed(input, { pooling, normalize, signal } = {}) {
    if (this._closed) throw new HearthError("invalid_argument", "the model has been unloaded");
    const inputs = embedInputs(input);
    return this._serial(async () => {
      if (signal?.aborted) throw abortError("the embedding");
      const r = await awaitJob(this._impl.embed(inputs, { pooling, normalize }), signal);
      const rows = (v) => Array.from({ length: v.length / r.nEmbd }, (_, i) => v.subarray(i * r.nEmbd, (i + 1) * r.nEmbd));
      return {
        embeddings: r.data.map((d) => (r.pooling === "none" ? rows(d.embedding) : d.embedding)),
        tokens: r.data.map((d) => d.tokens),
        pooling: r.pooling,
        nEmbd: r.nEmbd,
        promptTokens: r.promptTokens,
      };
    });
  }

  /**
   * The prompt text the chat template makes of `messages` (the assistant's turn opened), with
   * `tools` (OpenAI's tools array) and `toolChoice` as chat() would render them.
   */
  async applyChatTemplate(messages, { addGenerationPrompt = true, tools, toolChoice } = {}) {
    return this._impl.renderChat(normalizeMessages(messages), addGenerationPrompt, toolOptions({ tools, toolChoice }));
  }

  async tokenize(text, { addSpecial = true, parseSpecial = false } = {}) {
    return this._impl.tokenize(text, addSpecial, parseSpecial);
  }

  async decode(ids) {
    return this._impl.decode(Array.from(ids));
  }

  /**
   * Save the conversation the engine has cached (the last generation's prompt and reply: its
   * tokens and KV cache) under `name`, in the Origin Private File System (Cache Storage where
   * files are not writable). Tied to the model file's SHA-256 (given to `load` as `sha256`, known
   * from the model store with `cache: true`, or hashed from the File or bytes loaded), the
   * context size and the KV cache type. Resolves to {name, model, modelSha256, contextSize,
   * kvType, tokens, bytes, savedAt, ms}.
   * @param {string} name
   */
  async saveSession(name) {
    return this._serial(async () => {
      const store = await SessionStore.open();
      const t0 = performance.now();
      const { bytes, meta } = await this._impl.saveSession();
      const saved = { name, ...meta, savedAt: new Date().toISOString() };
      await store.put(name, bytes, saved);
      return { ...saved, ms: performance.now() - t0 };
    });
  }

  /**
   * Put the conversation saved as `name` back in the engine's cache: the next `chat` (or
   * `generate`) whose prompt begins with its tokens reads only what follows, and continues with
   * exactly the tokens an unbroken session gives. Rejects with "session_not_found",
   * "session_mismatch" (another model file, context size or cache type: the message says which)
   * or "bad_session" (damaged bytes); the engine's cache is then as it was. Resolves to {name,
   * tokens, bytes, ms}.
   * @param {string} name
   */
  async restoreSession(name) {
    return this._serial(async () => {
      const store = await SessionStore.open();
      const t0 = performance.now();
      const bytes = await store.get(name);
      if (!bytes) throw new HearthError("session_not_found", `no saved session is named ${JSON.stringify(name)}`);
      const size = bytes.length;
      const tokens = await this._impl.restoreSession(bytes);
      return { name, tokens, bytes: size, ms: performance.now() - t0 };
    });
  }

  /** The saved sessions of this origin: [{name, model, modelSha256, contextSize, kvType, tokens, bytes, savedAt}]. */
  async listSessions() {
    return this._serial(async () => (await SessionStore.open()).list());
  }

  /** Delete the session saved as `name`; resolves to whether there was one. */
  async deleteSession(name) {
    return this._serial(async () => (await SessionStore.open()).delete(name));
  }

  /** {threads, wasmMemoryBytes}: the engine's thread count and its wasm memory (= peak) size. */
  async stats() {
    return this._impl.stats();
  }

  /** Tests only: lose the GPU device as a driver reset would (now, or after n tokens of the next generation). */
  async _debugLoseDevice(afterSteps = 0) {
    return this._impl.debugLoseDevice(afterSteps);
  }

  /**
   * Tests only: crash the engine as a bug would ("panic", "stack", "oob", "oom", "async-panic", "pool-panic":
   * the wasm export debugTrap); rejects with HearthError "engine_crashed", as do the requests in
   * flight, and the engine is restarted without its model.
   */
  async _debugTrap(kind = "panic") {
    try {
      return await this._impl.debugTrap(kind);
    } catch (e) {
      throw asHearthError(e);
    }
  }

  /** Free the model (terminates its worker). */
  async unload() {
    if (this._closed) return;
    this._closed = true;
    await this._impl.unload();
    await this.guard?.unload();
  }

  async *_run(req, options) {
    if (this._closed) throw new HearthError("invalid_argument", "the model has been unloaded");
    const { signal } = options;
    req.options = generationOptions(options);
    // One generation at a time: wait for the previous one.
    let release;
    const prev = this._queue;
    this._queue = new Promise((r) => (release = r));
    try {
      await prev;
      if (signal?.aborted) {
        yield { text: "", tokenIds: [], done: true, finishReason: "abort", usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 }, timing: { promptMs: 0, decodeMs: 0, ttftMs: 0, tokensPerSecond: 0 } };
        return;
      }
      const ch = new Channel();
      const job = this._impl.generate(req, (c) => ch.push(c));
      const onAbort = () => job.abort();
      signal?.addEventListener("abort", onAbort);
      job.done.then(
        (final) => {
          ch.push(final);
          ch.close();
        },
        (e) => ch.close(asHearthError(e)),
      );
      let finished = false;
      try {
        for await (const c of ch.drain()) {
          if (c.done) finished = true;
          yield c;
        }
      } finally {
        signal?.removeEventListener("abort", onAbort);
        if (!finished) {
          // The consumer stopped early (break / return): stop the engine too.
          job.abort();
          await job.done.catch(() => {});
        }
      }
    } finally {
      release();
    }
  }
}

/**
 * LoRA adapters of the loaded model (llama.cpp's GGUF adapter format: `general.type = adapter`,
 * `adapter.type = lora`, tensors `<base tensor>.lora_a/.lora_b`), several at once, each with a
 * scale (the deltas are multiplied by scale · alpha / rank, as llama.cpp). The base weights are
 * never modified; a change takes effect at the next request, whose prompt is then read again.
 * Each call waits for the requests queued before it.
 */
class Adapters {
  constructor(llm) {
    this._llm = llm;
  }
  /**
   * @param {string|URL|File|Blob|ArrayBuffer|Uint8Array} source
   * @param {{scale?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<{id: number, name: string, scale: number, alpha: number, rank: number, tensors: number}>}
   */
  load(source, { scale = 1, signal } = {}) {
    return this._llm._serial(async () => {
      if (signal?.aborted) throw abortError("loading the adapter");
      const src = isUrl(source) ? resolveUrl(source) : source;
      if (!isUrl(src) && !(typeof Blob !== "undefined" && src instanceof Blob) && !bytesOf(src)) {
        throw new HearthError("invalid_argument", "an adapter source must be a URL, File, Blob, ArrayBuffer or Uint8Array");
      }
      return raceAbort(this._llm._impl.loadAdapter(src, scale, signal), signal, "loading the adapter");
    });
  }
  /** @returns {Promise<{id: number, name: string, scale: number, alpha: number, rank: number, tensors: number}>} */
  setScale(id, scale) {
    return this._llm._serial(() => this._llm._impl.adapterCall("adapter-scale", { id, scale }));
  }
  remove(id) {
    return this._llm._serial(() => this._llm._impl.adapterCall("adapter-remove", { id }));
  }
  /** @returns {Promise<Array<{id: number, name: string, scale: number, alpha: number, rank: number, tensors: number}>>} */
  list() {
    return this._llm._serial(() => this._llm._impl.adapterCall("adapter-list", {}));
  }
}

class WorkerImpl {
  constructor(threads, shared = false) {
    this.threads = threads;
    /** Whether loads from URLs go to the shared engine of their model (`shared: true`). */
    this.shared = shared;
    /** The "engine_crashed" error while the replaced Worker has no model (until a load). */
    this.lost = null;
    this.t = null;
  }
  /** Requests that need the model fail while a crash has taken it. */
  call(op, args) {
    return this.lost ? Promise.reject(this.lost) : this.t.call(op, args);
  }
  /**
   * The transport for a load of `source`: the SharedWorker of that model when shared (and the
   * browser has SharedWorker), else a dedicated Worker; the one in use when it is the same kind.
   */
  transportFor(source, options) {
    const name = this.shared && typeof SharedWorker !== "undefined" ? sharedName(source, options, this.threads) : null;
    const onCrash = (e) => (this.lost = e);
    if (name) {
      if (this.t?.sharedName === name && !this.t.dead) return this.t;
      try {
        return new SharedTransport(onCrash, name);
      } catch (e) {
        // A SharedWorker that cannot start (a CSP without it, a sandboxed frame): a dedicated Worker.
        console.warn(`Hearth: no shared engine (${e && e.message ? e.message : e}); running in a dedicated Worker`);
      }
    }
    if (this.t && !this.t.sharedName && !this.t.dead) return this.t;
    return new WorkerTransport(onCrash);
  }
  /** Load into the transport `source` calls for; a failed load leaves the one in use as it was. */
  async load(source, options) {
    const prev = this.t;
    this.t = this.transportFor(source, options);
    let info;
    try {
      info = await this.loadIn(source, options);
    } catch (e) {
      if (e && e.code === "engine_switch" && !this.t.sharedName) {
        // The model needs the other engine build (memory64 past wasm32's 4 GiB, or wasm32 again)
        // and this Worker holds a model: a fresh Worker loads it (the old model goes with the old one).
        this.t.terminate();
        this.t = new WorkerTransport((err) => (this.lost = err));
        info = await this.loadIn(source, options);
      } else {
        if (this.t !== prev) {
          this.t.terminate();
          this.t = prev;
        }
        throw e;
      }
    }
    if (prev && prev !== this.t) prev.terminate();
    this.lost = null;
    return { ...info, shared: !!this.t.sharedName };
  }
  async loadIn(source, { backend, contextSize, kvType, onProgress, signal, cache, sha256 }) {
    const t = this.t;
    const threads = this.threads;
    const progress = (p) => onProgress?.(p);
    const bytes = isUrl(source) ? null : bytesOf(source);
    const isBlob = (x) => typeof Blob !== "undefined" && x instanceof Blob;
    if (Array.isArray(source) && !source.every((x) => isUrl(x) || isBlob(x))) {
      throw new HearthError("invalid_argument", "the shards of a split model must be given as URLs or Files");
    }
    if (isUrl(source) || isBlob(source) || Array.isArray(source)) {
      const src = Array.isArray(source) ? source.map((x) => (isUrl(x) ? resolveUrl(x) : x)) : isUrl(source) ? resolveUrl(source) : source;
      const [rid, done] = t.request("load", { source: src, backend, contextSize, kvType, cache, sha256, threads }, progress);
      const onAbort = () => t.abort(rid);
      signal?.addEventListener("abort", onAbort);
      try {
        return await raceAbort(done, signal, "loading");
      } finally {
        signal?.removeEventListener("abort", onAbort);
      }
    }
    if (!bytes) throw new HearthError("invalid_argument", "source must be a URL, File, Blob, ArrayBuffer or Uint8Array");
    // Bytes we hold: the header first (refused there if the model cannot fit), then slice by slice
    // (each slice is copied once into the worker and fed at once), so there is never a second full
    // copy of the file in flight.
    await t.call("preflight", { source: bytes.slice(0, Math.min(bytes.byteLength, 64 << 20)), threads, backend, contextSize, kvType });
    await t.call("load-begin", { threads, backend });
    const total = bytes.byteLength;
    progress({ phase: "load", loaded: 0, total });
    for (let off = 0; off < total; off += FEED_SLICE) {
      if (signal?.aborted) {
        await t.call("load-cancel");
        throw abortError("loading");
      }
      const slice = bytes.slice(off, Math.min(total, off + FEED_SLICE));
      const loaded = await t.request("feed", { bytes: slice }, undefined, [slice.buffer])[1];
      progress({ phase: "load", loaded, total });
    }
    if (signal?.aborted) throw abortError("loading");
    return t.call("load-end", { contextSize, kvType, sha256 });
  }
  generate(req, onChunk) {
    if (this.lost) return { done: Promise.reject(this.lost), abort: () => {} };
    const [rid, done] = this.t.request("generate", { req }, onChunk);
    return { done, abort: () => this.t.abort(rid) };
  }
  perplexity(text, { contextSize, batch, kvType }, onProgress) {
    if (this.lost) return { done: Promise.reject(this.lost), abort: () => {} };
    const [rid, done] = this.t.request("perplexity", { text, contextSize, batch, kvType }, onProgress);
    return { done, abort: () => this.t.abort(rid) };
  }
  embed(inputs, { pooling, normalize }) {
    if (this.lost) return { done: Promise.reject(this.lost), abort: () => {} };
    const [rid, done] = this.t.request("embed", { inputs, pooling, normalize });
    return { done, abort: () => this.t.abort(rid) };
  }
  moderate(messages, { categories, excluded, render, logitBias }) {
    if (this.lost) return { done: Promise.reject(this.lost), abort: () => {} };
    const [rid, done] = this.t.request("moderate", { messages, categories, excluded, render, logitBias });
    return { done, abort: () => this.t.abort(rid) };
  }
  tokenize(text, addSpecial, parseSpecial) {
    return this.call("tokenize", { text: String(text), addSpecial, parseSpecial });
  }
  async loadAdapter(source, scale, signal) {
    if (this.lost) throw this.lost;
    // Bytes are copied into the Worker (an adapter is small); the caller's buffer stays usable.
    const src = isUrl(source) || (typeof Blob !== "undefined" && source instanceof Blob) ? source : bytesOf(source).slice();
    const [rid, done] = this.t.request("adapter-load", { source: src, scale });
    const onAbort = () => this.t.abort(rid);
    signal?.addEventListener("abort", onAbort);
    try {
      return await done;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
  adapterCall(op, args) {
    return this.call(op, args);
  }
  saveSession() {
    return this.call("session-save", {});
  }
  restoreSession(bytes) {
    return this.lost ? Promise.reject(this.lost) : this.t.request("session-restore", { bytes }, undefined, [bytes.buffer])[1];
  }
  decode(ids) {
    return this.call("decode", { ids });
  }
  renderChat(messages, addGenerationPrompt, tools) {
    return this.call("render", { messages, addGenerationPrompt, tools });
  }
  debugLoseDevice(afterSteps) {
    return this.call("debug-lose-device", { afterSteps });
  }
  debugTrap(trap) {
    return this.t.call("debug-trap", { trap, threads: this.threads });
  }
  stats() {
    return this.t.call("stats");
  }
  async unload() {
    this.t?.terminate();
  }
  close() {
    this.t?.terminate();
  }
}

/**
 * Runs the Host in this thread. The wasm instance is this realm's (host.js), shared by every
 * `worker: false` model; when it crashes, each of them fails with "engine_crashed" and the next
 * load starts a fresh instance.
 */
class LocalImpl {
  constructor(threads) {
    this.threads = threads;
    this.host = null;
    this.mod = null;
  }
  /** An error as a HearthError; a trap is recorded as the engine's crash ("engine_crashed"). */
  fail(e) {
    return asHearthError(this.mod ? this.mod.crashOr(e) : e);
  }
  async load(source, { backend, contextSize, kvType, onProgress, signal, cache, sha256 }) {
    try {
      this.mod ??= await import("./host.js");
      // Starts the engine, or a fresh one after a crash.
      await this.mod.initWasm(this.threads);
      this.host ??= new this.mod.Host();
      const src = Array.isArray(source) ? source.map((x) => (isUrl(x) ? resolveUrl(x) : x)) : isUrl(source) ? resolveUrl(source) : source;
      const info = await this.host.load(src, {
        backend,
        contextSize,
        kvType,
        cache,
        sha256,
        onProgress,
        fetchSignal: signal,
        isAborted: () => !!signal?.aborted,
      });
      return { ...info, shared: false };
    } catch (e) {
      throw this.fail(e);
    }
  }
  generate(req, onChunk) {
    let aborted = false;
    const done = this.host.generate(req, { onChunk, isAborted: () => aborted }).catch((e) => {
      throw this.fail(e);
    });
    return { done, abort: () => (aborted = true) };
  }
  perplexity(text, { contextSize, batch, kvType }, onProgress) {
    let aborted = false;
    const done = this.host.perplexity(text, { contextSize, batch, kvType, onProgress, isAborted: () => aborted }).catch((e) => {
      throw this.fail(e);
    });
    return { done, abort: () => (aborted = true) };
  }
  embed(inputs, { pooling, normalize }) {
    let aborted = false;
    const done = this.host.embed(inputs, { pooling, normalize, isAborted: () => aborted }).catch((e) => {
      throw this.fail(e);
    });
    return { done, abort: () => (aborted = true) };
  }
  moderate(messages, { categories, excluded, render, logitBias }) {
    let aborted = false;
    const done = this.host.moderate(messages, { categories, excluded, render, logitBias, isAborted: () => aborted }).catch((e) => {
      throw this.fail(e);
    });
    return { done, abort: () => (aborted = true) };
  }
  async tokenize(text, addSpecial, parseSpecial) {
    return this.wrap(() => this.host.tokenize(text, addSpecial, parseSpecial));
  }
  async loadAdapter(source, scale, signal) {
    try {
      return await this.host.loadAdapter(source, { scale, fetchSignal: signal, isAborted: () => !!signal?.aborted });
    } catch (e) {
      throw this.fail(e);
    }
  }
  async adapterCall(op, { id, scale }) {
    return this.wrap(() => {
      if (op === "adapter-scale") return this.host.setAdapterScale(id, scale);
      if (op === "adapter-remove") return this.host.removeAdapter(id);
      return this.host.adapters();
    });
  }
  async saveSession() {
    try {
      return await this.host.saveSession();
    } catch (e) {
      throw this.fail(e);
    }
  }
  async restoreSession(bytes) {
    try {
      return await this.host.restoreSession(bytes);
    } catch (e) {
      throw this.fail(e);
    }
  }
  async decode(ids) {
    return this.wrap(() => this.host.decode(ids));
  }
  async renderChat(messages, addGenerationPrompt, tools) {
    return this.wrap(() => this.host.renderChat(messages, addGenerationPrompt, tools));
  }
  async debugLoseDevice(afterSteps) {
    return this.host.debugLoseDevice(afterSteps);
  }
  async debugTrap(kind) {
    try {
      this.mod ??= await import("./host.js");
      await this.mod.initWasm(this.threads);
      this.host ??= new this.mod.Host();
      return await this.host.debugTrap(kind);
    } catch (e) {
      throw this.fail(e);
    }
  }
  async stats() {
    return this.wrap(() => this.host.stats());
  }
  wrap(f) {
    try {
      return f();
    } catch (e) {
      throw this.fail(e);
    }
  }
  async unload() {
    this.host?.unload();
  }
  close() {
    this.host?.unload();
  }
}

async function wrapAsync(f) {
  try {
    return await f();
  } catch (e) {
    throw asHearthError(e, "storage_unavailable");
  }
}

function raceAbort(promise, signal, what) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(what));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export default Hearth;
