// Tool calling, shared by the page-side client (hearth.js, openai.js) and the engine's host
// (host.js): the tool options as the engine takes them, and the stream of a reply read into
// content and calls (the engine's ToolCallParser, src/chat/tools.rs).
//
// chat(messages, {tools, toolChoice, parallelToolCalls}) chunks then carry the reply's content as
// `text` and the calls as `toolCalls` deltas: a call's first delta is {index, id, name, arguments:
// ""} and later ones {index, arguments} (more of its JSON), as OpenAI streams delta.tool_calls; the
// final chunk has `toolCalls` (every call whole: [{id, name, arguments}]) and finishReason
// "tool_calls" when the reply called a tool.

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function randomAlnum(n) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => ALNUM[x % ALNUM.length]).join("");
}

/**
 * A new call id: OpenAI's "call_" and 24 letters and digits, or for Mistral's form 9 of them
 * (its template refuses any other id).
 */
export function newCallId(format) {
  return format === "mistral" ? randomAlnum(9) : "call_" + randomAlnum(24);
}

/**
 * The tool options of a request as the engine takes them: {tools (the array as JSON text, so
 * its keys keep their order when the template prints it), toolChoice, parallelToolCalls}.
 */
export function toolOptions(o) {
  const out = {};
  if (!o) return out;
  if (o.tools != null) out.tools = typeof o.tools === "string" ? o.tools : JSON.stringify(o.tools);
  if (o.toolChoice != null) out.toolChoice = o.toolChoice;
  if (o.parallelToolCalls != null) out.parallelToolCalls = !!o.parallelToolCalls;
  return out;
}

/** A generation's reply read for tool calls (in the host, next to the engine). */
export class ToolStream {
  /** The reader for a chat request that offers tools, else null. */
  static open(engine, req) {
    if (!req.messages) return null;
    const opts = toolOptions(req.options);
    if (opts.tools === undefined) return null;
    const parser = engine.toolParser(opts);
    return parser ? new ToolStream(parser) : null;
  }

  constructor(parser) {
    this.parser = parser;
    this.format = parser.format;
    /** Every call so far: {id, name, arguments}. */
    this.calls = [];
  }

  /** A token's chunk: its text becomes the content it adds; call deltas go to `toolCalls`. */
  apply(chunk, id, text) {
    chunk.text = "";
    this._merge(chunk, this.parser.push(id, text));
    return chunk;
  }

  /** The end of the reply (with the held-back text `rest`): a last chunk, or null if it adds nothing. */
  finish(rest) {
    const chunk = { text: "", tokenIds: [], done: false };
    if (rest) this._merge(chunk, this.parser.push(undefined, rest));
    this._merge(chunk, this.parser.finish());
    this.parser.free?.();
    return chunk.text || chunk.toolCalls ? chunk : null;
  }

  /** The engine's finish reason, "tool_calls" when the reply ended after calling a tool. */
  finishReason(reason) {
    return this.calls.length > 0 && (reason === "eos" || reason === "stop") ? "tool_calls" : reason;
  }

  get all() {
    return this.calls.map((c) => ({ ...c }));
  }

  _merge(chunk, delta) {
    chunk.text = (chunk.text ?? "") + delta.content;
    for (const d of delta.calls) {
      let out;
      if (d.name !== undefined) {
        const call = { id: newCallId(this.format), name: d.name, arguments: "" };
        this.calls[d.index] = call;
        out = { index: d.index, id: call.id, name: d.name, arguments: d.arguments };
      } else {
        out = { index: d.index, arguments: d.arguments };
      }
      this.calls[d.index].arguments += d.arguments;
      const list = (chunk.toolCalls ??= []);
      const prev = list.at(-1);
      if (prev && prev.index === d.index) prev.arguments += d.arguments;
      else list.push(out);
    }
  }
}
