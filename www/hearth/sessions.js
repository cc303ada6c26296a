// Saved conversations (llm.saveSession / restoreSession): the engine's saved-session bytes
// (src/saved.rs: the cached tokens and their KV cache, tied to the model file's SHA-256, the
// context size and the cache type) kept under a name. In the Origin Private File System
// (directory "hearth-sessions", `<key>.hkv` and `<key>.json`, key = a hash of the name) where files
// are writable, else in Cache Storage ("hearth-sessions", a made-up https URL per name: nothing is
// fetched). The page keeps them, not the engine's worker: WebKit's Cache Storage written in one
// worker was not seen by the next one (measured in WebKitGTK), and the page outlives its workers.

import { hasOpfs } from "./store.js";

const DIR = "hearth-sessions";
const CACHE_URL = "https://hearth.invalid/sessions/";

function codeError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

function checkName(name) {
  if (typeof name !== "string" || name.length === 0 || name.length > 200) {
    throw codeError("invalid_argument", `a session's name must be a string of 1 to 200 characters, got ${JSON.stringify(name)}`);
  }
  return name;
}

async function key(name) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name));
  return Array.from(new Uint8Array(digest).subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}

function storageError(e, what) {
  if (e && e.name === "QuotaExceededError") return codeError("quota_exceeded", `the session could not be ${what}: the origin's storage is full`);
  return codeError("storage_unavailable", `the session could not be ${what} (${e && e.message ? e.message : e}); private windows often have no storage`);
}

/** Meta kept beside the bytes: {name, savedAt, bytes, tokens}. */
export class SessionStore {
  static async open() {
    try {
      if (hasOpfs()) {
        const root = await navigator.storage.getDirectory();
        return new OpfsSessions(await root.getDirectoryHandle(DIR, { create: true }));
      }
      if (typeof caches !== "undefined") return new CacheSessions(await caches.open(DIR));
    } catch (e) {
      throw storageError(e, "opened");
    }
    throw codeError("storage_unavailable", "this browser has neither the Origin Private File System nor Cache Storage: sessions cannot be kept");
  }
}

class OpfsSessions {
  constructor(dir) {
    this.dir = dir;
  }
  async write(file, data) {
    const w = await (await this.dir.getFileHandle(file, { create: true })).createWritable();
    await w.write(data);
    await w.close();
  }
  async put(name, bytes, meta) {
    const k = await key(checkName(name));
    try {
      await this.write(`${k}.hkv`, bytes);
      await this.write(`${k}.json`, JSON.stringify({ ...meta, name }));
    } catch (e) {
      throw storageError(e, "saved");
    }
  }
  async get(name) {
    const k = await key(checkName(name));
    try {
      return new Uint8Array(await (await (await this.dir.getFileHandle(`${k}.hkv`)).getFile()).arrayBuffer());
    } catch (e) {
      if (e && e.name === "NotFoundError") return null;
      throw storageError(e, "read");
    }
  }
  async list() {
    const out = [];
    for await (const [file, h] of this.dir.entries()) {
      if (!file.endsWith(".json")) continue;
      try {
        out.push(JSON.parse(await (await h.getFile()).text()));
      } catch {
        // A meta file cut short by a crash: its session is listed by nothing.
      }
    }
    return out.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  }
  async delete(name) {
    const k = await key(checkName(name));
    let found = false;
    for (const f of [`${k}.hkv`, `${k}.json`]) {
      found = (await this.dir.removeEntry(f).then(() => true, () => false)) || found;
    }
    return found;
  }
}

class CacheSessions {
  constructor(cache) {
    this.cache = cache;
  }
  async put(name, bytes, meta) {
    const k = await key(checkName(name));
    try {
      await this.cache.put(CACHE_URL + k, new Response(bytes, { headers: { "x-hearth-session": encodeURIComponent(JSON.stringify({ ...meta, name })) } }));
    } catch (e) {
      throw storageError(e, "saved");
    }
  }
  async get(name) {
    const r = await this.cache.match(CACHE_URL + (await key(checkName(name))));
    return r ? new Uint8Array(await r.arrayBuffer()) : null;
  }
  async list() {
    const out = [];
    for (const req of await this.cache.keys()) {
      const r = await this.cache.match(req);
      const m = r?.headers.get("x-hearth-session");
      if (m) out.push(JSON.parse(decodeURIComponent(m)));
    }
    return out.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  }
  async delete(name) {
    return this.cache.delete(CACHE_URL + (await key(checkName(name))));
  }
}
