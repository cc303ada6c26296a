// The requests an engine Worker answers, over a Host: shared by the dedicated Worker (worker.js)
// and the SharedWorker (shared-worker.js), which differ only in who asks and in what order.
//
// `runOp(host, msg, io)` does one request and resolves to {value, transfer}; `io` is
// {event(value): a progress or chunk event for the asker, signal: an AbortSignal fired when the
// asker aborts this request}.

import { initWasm } from "./host.js";

export async function runOp(host, msg, { event, signal }) {
  const isAborted = () => signal.aborted;
  const done = (value, transfer = []) => ({ value, transfer });
  switch (msg.op) {
    case "init":
      await initWasm(msg.threads);
      return done(true);
    case "load":
      await initWasm(msg.threads);
      return done(
        await host.load(msg.source, {
          backend: msg.backend,
          contextSize: msg.contextSize,
          kvType: msg.kvType,
          cache: msg.cache,
          sha256: msg.sha256,
          fetchSignal: signal,
          isAborted,
          onProgress: event,
        }),
      );
    case "load-begin":
      await initWasm(msg.threads);
      await host.beginLoad(msg.backend);
      return done(0);
    case "feed":
      return done(host.feed(msg.bytes));
    case "load-end": {
      const info = host.finishLoad(msg.contextSize, undefined, msg.kvType);
      host.source = null; // bytes arrive in slices and are not kept
      host.modelSha = msg.sha256 ? String(msg.sha256).toLowerCase() : null;
      host.deviceLost = false;
      return done(info);
    }
    case "load-cancel":
      host.abortLoad();
      return done(true);
    case "generate":
      return done(await host.generate(msg.req, { isAborted, onChunk: event }));
    case "perplexity":
      return done(await host.perplexity(msg.text, { contextSize: msg.contextSize, batch: msg.batch, kvType: msg.kvType, isAborted, onProgress: event }));
    case "adapter-load":
      return done(await host.loadAdapter(msg.source, { scale: msg.scale, isAborted }));
    case "adapter-scale":
      return done(host.setAdapterScale(msg.id, msg.scale));
    case "adapter-remove":
      return done(host.removeAdapter(msg.id));
    case "adapter-list":
      return done(host.adapters());
    case "session-save": {
      const saved = await host.saveSession();
      return done(saved, [saved.bytes.buffer]);
    }
    case "session-restore":
      return done(await host.restoreSession(msg.bytes));
    case "embed":
      return done(await host.embed(msg.inputs, { pooling: msg.pooling, normalize: msg.normalize, isAborted }));
    case "moderate":
      return done(await host.moderate(msg.messages, { categories: msg.categories, excluded: msg.excluded, render: msg.render, logitBias: msg.logitBias, isAborted }));
    case "tokenize":
      return done(host.tokenize(msg.text, msg.addSpecial, msg.parseSpecial));
    case "decode":
      return done(host.decode(msg.ids));
    case "render":
      return done(host.renderChat(msg.messages, msg.addGenerationPrompt, msg.tools));
    case "debug-lose-device":
      return done(host.debugLoseDevice(msg.afterSteps));
    case "debug-trap":
      await initWasm(msg.threads);
      await host.debugTrap(msg.trap);
      return done(true);
    case "inspect":
      await initWasm(msg.threads);
      return done(await host.inspect(msg.source, msg));
    case "preflight":
      await initWasm(msg.threads);
      await host.preflight(msg.source, msg);
      return done(true);
    case "stats":
      return done(host.stats());
    case "unload":
      host.unload();
      return done(true);
    default:
      throw Object.assign(new Error(`unknown request '${msg.op}'`), { code: "worker" });
  }
}
