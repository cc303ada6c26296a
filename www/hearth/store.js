// The model store: models downloaded once and kept in the Origin Private File System, so a later
// visit (or an offline one) loads them from disk. A download is written as it streams (never held
// whole in memory), survives an interruption (the next attempt asks the server for the rest with an
// HTTP Range request), is checked against a sha256 when one is given, and is refused up front when
// the origin's storage quota cannot hold it. Works in a page and in a worker.
//
// Layout: OPFS directory "hearth-models"; per model `<key>.gguf` (the bytes) and `<key>.json`
// ({url, size, etag, sha256, storedAt, complete}), key = sha256 of the URL. Where a browser has no
// OPFS, Cache Storage holds the models instead (`CacheStore`: same interface, no resuming).

import { Sha256 } from "./sha256.js";

const DIR = "hearth-models";
/** Read stored bytes in slices this big (each is fed and hashed before the next is read). */
const READ_SLICE = 4 << 20;

function codeError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

function mb(n) {
  return `${(n / 1e6).toFixed(1)} MB`;
}

/** OPFS with writable files: engines that have the directory API without `createWritable` (older WebKit) use Cache Storage. */
export function hasOpfs() {
  return (
    typeof navigator !== "undefined" &&
    !!navigator.storage?.getDirectory &&
    typeof FileSystemFileHandle !== "undefined" &&
    typeof FileSystemFileHandle.prototype.createWritable === "function"
  );
}

/**
 * fetch() with failures as typed errors: "aborted", or "network" (also for an HTTP status that
 * `accept` refuses). `check()` runs first on failure, so a caller's abort wins.
 */
export async function fetchModel(url, { signal, headers, check = () => {}, accept = (r) => r.ok } = {}) {
  let resp;
  for (let attempt = 0; ; attempt++) {
    try {
      resp = await fetch(url, { signal, headers });
      break;
    } catch (e) {
      check();
      if (e && e.name === "AbortError") throw codeError("aborted", "loading was aborted");
      // Once more after a moment: a request sent on a connection the server was closing fails
      // at once, and a GET can be sent again.
      if (attempt === 0) {
        await new Promise((r) => setTimeout(r, 500));
        check();
        continue;
      }
      throw codeError("network", `could not fetch ${url}: ${e && e.message ? e.message : e}`);
    }
  }
  if (!accept(resp)) throw codeError("network", `could not fetch ${url}: HTTP ${resp.status} ${resp.statusText}`.trim());
  return resp;
}

/** The next chunk of a download ({done, value}), with failures as typed errors. */
export async function readChunk(reader, url, loaded, check = () => {}) {
  let r;
  try {
    r = await reader.read();
  } catch (e) {
    check();
    if (e && e.name === "AbortError") throw codeError("aborted", "loading was aborted");
    throw codeError("network", `download of ${url} failed after ${mb(loaded)}: ${e && e.message ? e.message : e}`);
  }
  check();
  return r;
}

/** The body's length when the response says it (0 when unknown, or compressed in transit). */
export function contentLength(resp) {
  const len = Number(resp.headers.get("content-length"));
  return Number.isFinite(len) && len > 0 && !resp.headers.get("content-encoding") ? len : 0;
}

/** Whether this browser can keep models (the Origin Private File System, or Cache Storage). */
export function storeAvailable() {
  return hasOpfs() || typeof caches !== "undefined";
}

export class ModelStore {
  /** @private use ModelStore.open */
  constructor(dir) {
    this.dir = dir;
  }

  static async open() {
    if (!hasOpfs()) return CacheStore.open();
    try {
      const root = await navigator.storage.getDirectory();
      return new ModelStore(await root.getDirectoryHandle(DIR, { create: true }));
    } catch (e) {
      throw codeError("storage_unavailable", `the model store could not be opened (${e && e.message ? e.message : e}); private windows often have no storage`);
    }
  }

  static async key(url) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(String(url)));
    return Array.from(new Uint8Array(digest).subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async meta(url) {
    try {
      const f = await (await this.dir.getFileHandle(`${await ModelStore.key(url)}.json`)).getFile();
      return JSON.parse(await f.text());
    } catch {
      return null;
    }
  }

  async writeMeta(key, meta) {
    const w = await (await this.dir.getFileHandle(`${key}.json`, { create: true })).createWritable();
    await w.write(JSON.stringify(meta));
    await w.close();
  }

  /** The complete stored copy of `url` (a File), or null: a load's preflight reads its header. */
  async stored(url) {
    const meta = await this.meta(url);
    if (!meta?.complete) return null;
    try {
      return await (await this.dir.getFileHandle(`${await ModelStore.key(url)}.gguf`)).getFile();
    } catch {
      return null;
    }
  }

  /** Stored models: [{url, size, sha256, storedAt, complete}] (partial downloads have complete: false). */
  async list() {
    const out = [];
    for await (const [name, handle] of this.dir.entries()) {
      if (!name.endsWith(".json") || handle.kind !== "file") continue;
      try {
        const meta = JSON.parse(await (await handle.getFile()).text());
        if (!meta.complete) {
          const data = await this.dir.getFileHandle(name.replace(/\.json$/, ".gguf")).catch(() => null);
          meta.size = data ? (await data.getFile()).size : 0;
        }
        out.push(meta);
      } catch {}
    }
    return out.sort((a, b) => String(a.url).localeCompare(String(b.url)));
  }

  /** Remove a stored (or partly downloaded) model. Returns whether there was one. */
  async delete(url) {
    const key = await ModelStore.key(url);
    let found = false;
    for (const name of [`${key}.gguf`, `${key}.json`]) {
      try {
        await this.dir.removeEntry(name);
        found = true;
      } catch {}
    }
    return found;
  }

  /**
   * The model at `url`, from the store when it is there, else downloaded into it (resuming a
   * partial download). Every byte of the file goes to `onChunk(bytes)` in order, so a loader can
   * build the model while it downloads. `onProgress({phase: "load" | "download", loaded, total})`;
   * `check()` throws to stop between chunks; `signal` aborts the request. Returns
   * {size, sha256, from: "store" | "network", resumedAt}.
   */
  async fetch(url, { sha256, onChunk = () => {}, onProgress = () => {}, check = () => {}, signal } = {}) {
    const want = sha256 ? String(sha256).toLowerCase() : null;
    const key = await ModelStore.key(url);
    const meta = await this.meta(url);
    const handle = await this.dir.getFileHandle(`${key}.gguf`, { create: true });
    if (meta?.complete) {
      if (want && meta.sha256 !== want) {
        throw codeError("checksum_mismatch", `the stored copy of ${url} has sha256 ${meta.sha256}, not ${want}: delete it to download again`);
      }
      const file = await handle.getFile();
      await this.replay(file, file.size, null, onChunk, (n) => onProgress({ phase: "load", loaded: n, total: file.size }), check);
      return { size: file.size, sha256: meta.sha256, from: "store", resumedAt: 0 };
    }

    // Ask for what is missing first: only a 206 lets the stored prefix count.
    let have = meta && meta.url === url ? (await handle.getFile()).size : 0;
    const headers = {};
    if (have > 0) {
      headers.Range = `bytes=${have}-`;
      if (meta.etag) headers["If-Range"] = meta.etag;
    }
    const resp = await fetchModel(url, { signal, headers, check, accept: (r) => r.ok || (r.status === 416 && have > 0) });
    if (resp.status === 416) {
      // The server says the range is past the end: the stored part is stale; start over.
      await this.delete(url);
      return this.fetch(url, { sha256, onChunk, onProgress, check, signal });
    }
    let total = 0;
    if (resp.status === 206) {
      const m = /\/(\d+)\s*$/.exec(resp.headers.get("content-range") || "");
      total = m ? Number(m[1]) : 0;
    } else {
      have = 0; // the whole file came back: the stored part is replaced
      total = contentLength(resp);
    }
    if (total) await ensureRoom(total - have, url);
    requestPersistence();
    const etag = resp.headers.get("etag") || (have > 0 ? meta.etag : null);
    await this.writeMeta(key, { url, size: total || null, etag, sha256: null, storedAt: null, complete: false });

    const hash = new Sha256();
    const progress = (loaded, phase) => onProgress({ phase, loaded, total: Math.max(total, loaded) });
    if (have > 0) await this.replay(await handle.getFile(), have, hash, onChunk, (n) => progress(n, "load"), check);

    const w = await handle.createWritable({ keepExistingData: have > 0 });
    let loaded = have;
    let failure = null;
    try {
      if (have > 0) await w.seek(have);
      else await w.truncate(0);
      progress(loaded, "download");
      const reader = resp.body.getReader();
      for (;;) {
        const r = await readChunk(reader, url, loaded, check);
        if (r.done) break;
        await w.write(r.value);
        hash.update(r.value);
        onChunk(r.value);
        loaded += r.value.length;
        progress(loaded, "download");
      }
      if (total && loaded !== total) throw codeError("network", `download of ${url} ended after ${mb(loaded)} of ${mb(total)}`);
    } catch (e) {
      failure = e;
    }
    // Commit what arrived either way: an interrupted download resumes from here.
    await w.close().catch(() => {});
    if (failure) throw failure;
    const digest = hash.hex();
    if (want && digest !== want) {
      await this.delete(url);
      throw codeError("checksum_mismatch", `${url} has sha256 ${digest}, not the expected ${want}; the download was discarded`);
    }
    await this.writeMeta(key, { url, size: loaded, etag, sha256: digest, storedAt: new Date().toISOString(), complete: true });
    return { size: loaded, sha256: digest, from: "network", resumedAt: have };
  }

  /** Feed the first `n` bytes of a stored file, slice by slice. */
  async replay(file, n, hash, onChunk, onProgress, check) {
    for (let off = 0; off < n; ) {
      const end = Math.min(n, off + READ_SLICE);
      const bytes = new Uint8Array(await file.slice(off, end).arrayBuffer());
      check();
      hash?.update(bytes);
      onChunk(bytes);
      off = end;
      onProgress(off);
    }
  }
}

/** Refuse a download that the origin's quota cannot hold, before any byte is written. */
async function ensureRoom(bytes, url) {
  const est = await navigator.storage?.estimate?.().catch(() => null);
  if (!est || !est.quota) return;
  const free = est.quota - (est.usage || 0);
  if (bytes > free) {
    throw codeError("quota_exceeded", `${url} needs ${mb(bytes)} but this site may store only ${mb(free)} more: delete stored models or free disk space`);
  }
}

/** Ask the browser to keep stored models when space runs low (a page-only API; no-op in workers). */
export function requestPersistence() {
  try {
    navigator.storage?.persist?.().catch(() => {});
  } catch {}
}

/** The model store in Cache Storage, for browsers without OPFS: a download is kept once it is whole. */
export class CacheStore {
  constructor(cache) {
    this.cache = cache;
  }

  static async open() {
    if (typeof caches === "undefined") throw codeError("storage_unavailable", "this browser can keep no models (no Origin Private File System, no Cache Storage)");
    try {
      return new CacheStore(await caches.open("hearth-models-v1"));
    } catch (e) {
      throw codeError("storage_unavailable", `the model store could not be opened (${e && e.message ? e.message : e})`);
    }
  }

  /** Where a model's {url, size, sha256, storedAt} is kept (cache keys must be http URLs). */
  static metaKey(url) {
    return `https://hearth.invalid/meta?url=${encodeURIComponent(url)}`;
  }

  async meta(url) {
    const r = await this.cache.match(CacheStore.metaKey(url));
    return r ? r.json() : null;
  }

  /** The stored copy of `url` as {readPrefix(n)}, or null: a load's preflight reads its header. */
  async stored(url) {
    const meta = await this.meta(url);
    const resp = meta && (await this.cache.match(url));
    if (!resp) return null;
    return { readPrefix: (n) => readPrefix(resp.clone(), n).then((bytes) => ({ bytes, size: meta.size ?? null })) };
  }

  async list() {
    const out = [];
    for (const req of await this.cache.keys()) {
      if (!req.url.startsWith("https://hearth.invalid/meta?")) continue;
      const r = await this.cache.match(req);
      if (r) out.push(await r.json());
    }
    return out.sort((a, b) => String(a.url).localeCompare(String(b.url)));
  }

  async delete(url) {
    const a = await this.cache.delete(url);
    const b = await this.cache.delete(CacheStore.metaKey(url));
    return a || b;
  }

  async fetch(url, { sha256, onChunk = () => {}, onProgress = () => {}, check = () => {}, signal } = {}) {
    const want = sha256 ? String(sha256).toLowerCase() : null;
    const meta = await this.meta(url);
    const stored = meta && (await this.cache.match(url));
    let resp = stored;
    if (stored && want && meta.sha256 !== want) {
      throw codeError("checksum_mismatch", `the stored copy of ${url} has sha256 ${meta.sha256}, not ${want}: delete it to download again`);
    }
    if (!stored) resp = await fetchModel(url, { signal, check });
    const total = contentLength(resp);
    if (!stored && total) await ensureRoom(total, url);
    if (!stored) requestPersistence();
    const phase = stored ? "load" : "download";
    let body = resp.body;
    let put = null;
    if (!stored) {
      const [keep, read] = body.tee();
      put = this.cache.put(url, new Response(keep, { headers: { "Content-Type": "application/octet-stream", ...(total ? { "Content-Length": String(total) } : {}) } }));
      put.catch(() => {}); // awaited below; an interrupted download is simply not kept
      body = read;
    }
    const hash = new Sha256();
    const reader = body.getReader();
    let loaded = 0;
    onProgress({ phase, loaded, total });
    for (;;) {
      const r = await readChunk(reader, url, loaded, check);
      if (r.done) break;
      hash.update(r.value);
      onChunk(r.value);
      loaded += r.value.length;
      onProgress({ phase, loaded, total: Math.max(total, loaded) });
    }
    if (stored) return { size: loaded, sha256: meta.sha256, from: "store", resumedAt: 0 };
    await put;
    const digest = hash.hex();
    if (want && digest !== want) {
      await this.delete(url);
      throw codeError("checksum_mismatch", `${url} has sha256 ${digest}, not the expected ${want}; the download was discarded`);
    }
    const entry = { url, size: loaded, etag: resp.headers.get("etag"), sha256: digest, storedAt: new Date().toISOString(), complete: true };
    await this.cache.put(CacheStore.metaKey(url), new Response(JSON.stringify(entry), { headers: { "Content-Type": "application/json" } }));
    return { size: loaded, sha256: digest, from: "network", resumedAt: 0 };
  }
}

/** The first `n` bytes of a response's body (the rest is not read). */
export async function readPrefix(resp, n) {
  const out = new Uint8Array(n);
  let got = 0;
  const reader = resp.body.getReader();
  try {
    while (got < n) {
      const { done, value } = await reader.read();
      if (done) break;
      const k = Math.min(value.byteLength, n - got);
      out.set(value.subarray(0, k), got);
      got += k;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return out.subarray(0, got);
}
