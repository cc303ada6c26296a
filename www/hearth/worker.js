// The dedicated module Worker that runs the engine (Hearth.load's default). It relays messages to
// a Host: every request carries an `rid`; replies are {rid, kind: "event" | "result" | "error"}.

import { Host, initWasm, toPlainError } from "./host.js";

const host = new Host();
/** rids whose work the page asked to stop. */
const aborted = new Set();

function reply(rid, kind, payload) {
  self.postMessage({ rid, kind, ...payload });
}

async function handle(msg) {
  const { rid, op } = msg;
  switch (op) {
    case "abort":
      aborted.add(msg.target);
      if (msg.target === loadRid && loadCtl) loadCtl.abort();
      return;
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
      host.source = null; // bytes arrive in slices and are not kept
      await host.beginLoad(msg.backend);
      return reply(rid, "result", { value: 0 });
    case "feed":
      return reply(rid, "result", { value: host.feed(msg.bytes) });
    case "load-end":
      return reply(rid, "result", { value: host.finishLoad(msg.contextSize) });
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
        isAborted: () => aborted.has(rid),
        onProgress: (p) => reply(rid, "event", { value: p }),
      });
      return reply(rid, "result", { value: result });
    }
    case "tokenize":
      return reply(rid, "result", { value: host.tokenize(msg.text, msg.addSpecial, msg.parseSpecial) });
    case "decode":
      return reply(rid, "result", { value: host.decode(msg.ids) });
    case "render":
      return reply(rid, "result", { value: host.renderChat(msg.messages, msg.addGenerationPrompt) });
    case "debug-lose-device":
      return reply(rid, "result", { value: host.debugLoseDevice(msg.afterSteps) });
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
  handle(msg)
    .catch((e) => reply(msg.rid, "error", { error: toPlainError(e) }))
    .finally(() => aborted.delete(msg.rid));
};
