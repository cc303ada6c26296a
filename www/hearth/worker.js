// The dedicated module Worker that runs the engine (Hearth.load's default). It relays messages to
// a Host (ops.js): every request carries an `rid`; replies are {rid, kind: "event" | "result" |
// "error"}.
//
// When the engine crashes (a wasm trap: host.js's isEngineCrash), every request in flight fails
// with "engine_crashed" (or "out_of_memory" when an allocation failed), so does every later one,
// and the Worker posts {kind: "crashed", error}:
// the page terminates it and starts a fresh one (hearth.js's WorkerTransport).

import { Host, toPlainError, crashOr, engineCrashed, onEngineCrash, isCrashCode } from "./host.js";
import { runOp } from "./ops.js";

const host = new Host();
/** Requests being handled (not yet answered with a result or an error): rid → AbortController. */
const inflight = new Map();
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
  for (const rid of [...inflight.keys()]) reply(rid, "error", { error: crashed });
  self.postMessage({ kind: "crashed", error: crashed });
}
onEngineCrash(onCrash);

self.onmessage = (ev) => {
  const msg = ev.data;
  if (msg.op === "abort") return inflight.get(msg.target)?.abort();
  const ctl = new AbortController();
  inflight.set(msg.rid, ctl);
  // Nothing may call into a crashed engine: the page replaces this Worker.
  if (crashed) return reply(msg.rid, "error", { error: crashed });
  runOp(host, msg, { event: (value) => reply(msg.rid, "event", { value }), signal: ctl.signal }).then(
    ({ value, transfer }) => reply(msg.rid, "result", { value }, transfer),
    (e) => {
      e = crashOr(e);
      if (e && isCrashCode(e.code)) onCrash(e);
      reply(msg.rid, "error", { error: toPlainError(e) });
    },
  );
};
