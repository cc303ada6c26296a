// The SharedWorker that runs one engine for every tab of an origin that loads the same model with
// `Hearth.load(url, {shared: true})`. hearth.js names it after the model's URL and the load's
// options, so a tab asking for another model (or another context size) gets another one.
//
// Each tab's port is a client with its own conversation. The engine holds one chat session: before
// a client's request runs, the previous client's conversation is stashed (Host.stashChat, its
// tokens and KV rows) and this client's put back, so every tab continues its own chat exactly as a
// dedicated engine would, without reading it again. Requests that use the model wait in a queue
// per client, served round robin: a tab cannot hold the others back by queueing many. A client
// that goes (its tab closed, which releases the tab's Web Lock that this worker waits on; or it
// unloaded) has its requests aborted and its conversation dropped; the last one unloads the model.
//
// Messages are the dedicated Worker's (worker.js, ops.js), plus {op: "hello", lock} (the tab's
// lock name) and {op: "bye"}. When the engine crashes every client's requests fail, each port is
// told {kind: "crashed"} and this worker closes: the tabs start a fresh one under the next name
// (hearth.js's SharedTransport).

import { Host, toPlainError, crashOr, engineCrashed, onEngineCrash, isCrashCode, codeError } from "./host.js";
import { runOp } from "./ops.js";

const host = new Host();
/** Connected tabs in the order they came: id → {id, port, queue, inflight, stash, chatted}. */
const clients = new Map();
let nextClient = 1;
/** The loaded model's info; the load in progress (a promise). */
let model = null;
let loading = null;
/** The client whose conversation the engine's chat session holds; the last client served. */
let owner = null;
let lastServed = null;
/** Whether a queued request is running. */
let busy = false;
let crashed = null;

/** Answered at once: these read the model, never the chat session, and change nothing. */
const IMMEDIATE = new Set(["init", "inspect", "preflight", "tokenize", "decode", "render", "adapter-list"]);
/** Not on a shared engine: adapters would change the model under every tab's conversation. */
const NO_ADAPTERS = "LoRA adapters change the model for every tab of a shared engine: load it with shared: false to use adapters";
const REFUSED = {
  "adapter-load": NO_ADAPTERS,
  "adapter-scale": NO_ADAPTERS,
  "adapter-remove": NO_ADAPTERS,
  "load-begin": "a shared engine loads a model from its URL: a File or bytes load in a dedicated Worker",
  "debug-lose-device": "not on a shared engine",
};

function reply(c, rid, kind, payload, transfer = []) {
  if (kind !== "event" && !c.inflight.delete(rid)) return;
  if (kind === "event" && !c.inflight.has(rid)) return;
  c.port.postMessage({ rid, kind, ...payload }, transfer);
}

function fail(c, rid, e) {
  e = crashOr(e);
  if (e && isCrashCode(e.code)) onCrash(e);
  reply(c, rid, "error", { error: toPlainError(e) });
}

/** The engine trapped: every client's requests fail, the tabs are told, and this worker ends. */
function onCrash(e) {
  if (crashed) return;
  crashed = toPlainError(engineCrashed(e));
  for (const c of clients.values()) {
    for (const rid of [...c.inflight.keys()]) reply(c, rid, "error", { error: crashed });
    c.port.postMessage({ kind: "crashed", error: crashed });
  }
  self.close();
}
onEngineCrash(onCrash);

/** A client went: its requests stop, its conversation is dropped; the last one unloads the model. */
function drop(c) {
  if (!clients.delete(c.id)) return;
  for (const ctl of c.inflight.values()) ctl.abort();
  c.queue.length = 0;
  c.stash = null;
  if (owner === c) owner = null;
  if (clients.size === 0 && !crashed) {
    host.unload();
    model = null;
  }
}

/** The first client's load loads the model; the others wait for it and share it. */
async function load(msg, signal, event) {
  for (;;) {
    if (model) return model;
    if (loading) {
      try {
        await loading;
      } catch (e) {
        // Another tab aborted its load (or closed): this one loads it.
        if (e?.code !== "aborted" || signal.aborted) throw e;
      }
      continue;
    }
    loading = runOp(host, msg, { event, signal }).then(
      ({ value }) => {
        loading = null;
        return (model = value);
      },
      (e) => {
        loading = null;
        throw e;
      },
    );
  }
}

/** Put client `c`'s conversation in the engine's chat session (stashing the one there). */
async function swapTo(c) {
  if (owner === c) return;
  if (owner) owner.stash = await host.stashChat();
  owner = c;
  if (c.stash) {
    const bytes = c.stash;
    c.stash = null;
    host.unstashChat(bytes);
  }
  // A client without a conversation of its own reads the cache left there as any prompt does:
  // only the tokens its prompt shares with it are reused.
}

/** Serve the next queued request, taking the clients in turn. */
function pump() {
  if (busy || crashed) return;
  const ids = [...clients.keys()];
  const from = ids.indexOf(lastServed) + 1;
  for (let i = 0; i < ids.length; i++) {
    const c = clients.get(ids[(from + i) % ids.length]);
    if (!c.queue.length) continue;
    lastServed = c.id;
    busy = true;
    serve(c, c.queue.shift()).finally(() => {
      busy = false;
      pump();
    });
    return;
  }
}

async function serve(c, { msg, ctl, event }) {
  const { rid } = msg;
  try {
    if (ctl.signal.aborted) {
      // Aborted while it waited its turn: nothing ran.
      if (msg.op === "generate") return reply(c, rid, "result", { value: abortedFinal() });
      throw codeError("aborted", "the request was aborted");
    }
    if (msg.op === "session-save" && !c.chatted) throw codeError("invalid_argument", "there is no conversation to save yet: generate first");
    await swapTo(c);
    const { value, transfer } = await runOp(host, msg, { event, signal: ctl.signal });
    if (msg.op === "generate" || msg.op === "session-restore") c.chatted = true;
    reply(c, rid, "result", { value }, transfer);
  } catch (e) {
    fail(c, rid, e);
  }
}

function abortedFinal() {
  return { text: "", tokenIds: [], done: true, finishReason: "abort", usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 }, timing: { promptMs: 0, decodeMs: 0, ttftMs: 0, tokensPerSecond: 0 } };
}

function stats() {
  const all = [...clients.values()];
  return { ...host.stats(), shared: { clients: all.length, conversations: all.filter((c) => c.chatted).length, stashedBytes: all.reduce((n, c) => n + (c.stash?.length ?? 0), 0) } };
}

function onMessage(c, msg) {
  if (!clients.has(c.id)) return;
  switch (msg.op) {
    case "abort":
      return c.inflight.get(msg.target)?.abort();
    case "hello":
      // The tab holds this lock while it lives: granted to us once it is gone.
      if (msg.lock && navigator.locks) navigator.locks.request(msg.lock, () => drop(c));
      return;
    case "bye":
      return drop(c);
  }
  const { rid } = msg;
  const ctl = new AbortController();
  c.inflight.set(rid, ctl);
  if (crashed) return reply(c, rid, "error", { error: crashed });
  if (REFUSED[msg.op]) return reply(c, rid, "error", { error: { code: "unsupported", message: REFUSED[msg.op] } });
  const event = (value) => reply(c, rid, "event", { value });
  if (msg.op === "load") {
    return load(msg, ctl.signal, event).then(
      (info) => reply(c, rid, "result", { value: info }),
      (e) => fail(c, rid, e),
    );
  }
  if (msg.op === "stats") return reply(c, rid, "result", { value: stats() });
  if (msg.op === "unload") {
    reply(c, rid, "result", { value: true });
    return drop(c);
  }
  if (IMMEDIATE.has(msg.op)) {
    return runOp(host, msg, { event, signal: ctl.signal }).then(
      ({ value, transfer }) => reply(c, rid, "result", { value }, transfer),
      (e) => fail(c, rid, e),
    );
  }
  c.queue.push({ msg, ctl, event });
  pump();
}

self.onconnect = (ev) => {
  const port = ev.ports[0];
  const c = { id: nextClient++, port, queue: [], inflight: new Map(), stash: null, chatted: false };
  clients.set(c.id, c);
  port.onmessage = (e) => onMessage(c, e.data);
  port.start();
};
