// The dedicated module Worker that runs the engine (Hearth.load's default). It relays messages to
// a Host: every request carries an `rid`; replies are {rid, kind: "event" | "result" | "error"}.
//
// When the engine crashes (a wasm trap: host.js's isEngineCrash), every request in flight fails
// with "engine_crashed" (or "out_of_memory" when an allocation failed), so does every later one,
// and the Worker posts {kind: "crashed", error}:
// the page terminates it and starts a fresh one (hearth.js's WorkerTransport).

import { Host, initWasm, toPlainError, crashOr, engineCrashed, onEngineCrash, isCrashCode } from "./host.js";

const host = new Host();
/** rids whose work the page asked to stop. */
const aborted = new Set();
/** rids being handled (not yet answered with a result or an error). */
const inflight = new Set();
/** {code: "engine_crashed" | "out_of_memory", message} once the engine crashed. */
let crashed = null;

function reply(rid, kind, payload, transfer = []) {
  // A request failed by the crash has had its answer.
  if (kind !== "event" && !inflight.delete(rid)) return;
  if (kind === "event" && !inflight.has(rid)) return;
  self.postMessage({ rid, kind, ...payload }, transfer);
}

/** The engine trapped: fail what is in flight and ask to be replaced. */
function onCrash(e) {
  if (crashed) return;
  crashed = toPlainError(engineCrashed(e));
  for (const rid of [...inflight]) reply(rid, "error", { error: crashed });
  self.postMessage({ kind: "crashed", error: crashed });
}
onEngineCrash(onCrash);

async function handle(msg) {
  const { rid, op } = msg;
  switch (op) {
    case "init":
      await initWasm(msg.threads);
      return reply(rid, "result", { value: true });
    case "load": {
      await initWasm(msg.threads);
      loadRid = rid;
      loadCtl = new AbortController();
      try {
        const info = await host.load(msg.source, {
          backend: msg.backend,
          contextSize: msg.contextSize,
          kvType: msg.kvType,
          cache: msg.cache,
          sha256: msg.sha256,
          fetchSignal: loadCtl.signal,
          isAborted: () => aborted.has(rid),
          onProgress: (p) => reply(rid, "event", { value: p }),
        });
        return reply(rid, "result", { value: info });
      } finally {
        loadRid = null;
        loadCtl = null;
      }
    }
    case "load-begin":
      await initWasm(msg.threads);
      await host.beginLoad(msg.backend);
      return reply(rid, "result", { value: 0 });
    case "feed":
      return reply(rid, "result", { value: host.feed(msg.bytes) });
    case "load-end": {
      const info = host.finishLoad(msg.contextSize, undefined, msg.kvType);
      host.source = null; // bytes arrive in slices and are not kept
      host.modelSha = msg.sha256 ? String(msg.sha256).toLowerCase() : null;
      host.deviceLost = false;
      return reply(rid, "result", { value: info });
    }
    case "load-cancel":
      host.abortLoad();
      return reply(rid, "result", { value: true });
    case "generate": {
      const final = await host.generate(msg.req, {
        isAborted: () => aborted.has(rid),
        onChunk: (c) => reply(rid, "event", { value: c }),
      });
      return reply(rid, "result", { value: final });
    }
    case "perplexity": {
      const result = await host.perplexity(msg.text, {
        contextSize: msg.contextSize,
        batch: msg.batch,
        kvType: msg.kvType,
        isAborted: () => aborted.has(rid),
        onProgress: (p) => reply(rid, "event", { value: p }),
      });
      return reply(rid, "result", { value: result });
    }
    case "adapter-load":
      return reply(rid, "result", { value: await host.loadAdapter(msg.source, { scale: msg.scale, isAborted: () => aborted.has(rid) }) });
    case "adapter-scale":
      return reply(rid, "result", { value: host.setAdapterScale(msg.id, msg.scale) });
    case "adapter-remove":
      return reply(rid, "result", { value: host.removeAdapter(msg.id) });
    case "adapter-list":
      return reply(rid, "result", { value: host.adapters() });
    case "session-save": {
      const saved = await host.saveSession();
      return reply(rid, "result", { value: saved }, [saved.bytes.buffer]);
    }
    case "session-restore":
      return reply(rid, "result", { value: await host.restoreSession(msg.bytes) });
    case "embed": {
      const result = await host.embed(msg.inputs, { pooling: msg.pooling, normalize: msg.normalize, isAborted: () => aborted.has(rid) });
      return reply(rid, "result", { value: result });
    }
    case "moderate":
      return reply(rid, "result", { value: await host.moderate(msg.messages, { categories: msg.categories, excluded: msg.excluded, render: msg.render, logitBias: msg.logitBias, isAborted: () => aborted.has(rid) }) });
    case "tokenize":
      return reply(rid, "result", { value: host.tokenize(msg.text, msg.addSpecial, msg.parseSpecial) });
    case "decode":
      return reply(rid, "result", { value: host.decode(msg.ids) });
    case "render":
      return reply(rid, "result", { value: host.renderChat(msg.messages, msg.addGenerationPrompt, msg.tools) });
    case "debug-lose-device":
      return reply(rid, "result", { value: host.debugLoseDevice(msg.afterSteps) });
    case "debug-trap":
      await initWasm(msg.threads);
      await host.debugTrap(msg.trap);
      return reply(rid, "result", { value: true });
    case "inspect":
      await initWasm(msg.threads);
      return reply(rid, "result", { value: await host.inspect(msg.source, msg) });
    case "preflight":
      await initWasm(msg.threads);
      await host.preflight(msg.source, msg);
      return reply(rid, "result", { value: true });
    case "stats":
      return reply(rid, "result", { value: host.stats() });
    case "unload":
      host.unload();
      return reply(rid, "result", { value: true });
    default:
      throw Object.assign(new Error(`unknown request '${op}'`), { code: "worker" });
  }
}

let loadRid = null;
let loadCtl = null;

self.onmessage = (ev) => {
  const msg = ev.data;
  if (msg.op === "abort") {
    aborted.add(msg.target);
    if (msg.target === loadRid && loadCtl) loadCtl.abort();
    return;
  }
  inflight.add(msg.rid);
  // Nothing may call into a crashed engine: the page replaces this Worker.
  if (crashed) return reply(msg.rid, "error", { error: crashed });
  handle(msg)
    .catch((e) => {
      e = crashOr(e);
      if (e && isCrashCode(e.code)) onCrash(e);
      reply(msg.rid, "error", { error: toPlainError(e) });
    })
    .finally(() => aborted.delete(msg.rid));
};
