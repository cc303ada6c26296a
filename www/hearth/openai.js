// `llm.chat.completions.create(request)`: OpenAI's chat-completions request, response and stream
// chunk shapes over Hearth's chat(), so code written for OpenAI (or WebLLM) runs unchanged:
//
//   const r = await llm.chat.completions.create({ messages, max_tokens: 64 });
//   r.choices[0].message.content; r.usage.completion_tokens
//   for await (const c of await llm.chat.completions.create({ messages, stream: true }))
//     out += c.choices[0]?.delta.content ?? "";
//
// Supported: messages, stream, stream_options.include_usage, max_tokens / max_completion_tokens,
// temperature, top_p, stop, seed, frequency_penalty, presence_penalty, logit_bias, logprobs,
// top_logprobs, response_format ({type: "text" | "json_object" | "json_schema"}), n (1 only), and
// Hearth's own top_k, min_p, typical_p, repetition_penalty, context_policy ("error" | "shift").
// Tools: tools ([{type: "function", function: {name, description, parameters}}]), tool_choice
// ("auto" (the default), "none", "required", {type: "function", function: {name}}: the last two
// force a call whose arguments match the function's JSON schema), parallel_tool_calls; messages
// may hold assistant messages with tool_calls and tool messages with tool_call_id. A reply that
// calls tools has message.tool_calls ([{id, type: "function", function: {name, arguments}}]),
// content null when it said nothing else, and finish_reason "tool_calls"; streamed, the calls
// come as delta.tool_calls (the first delta of a call has its index, id, type and name, later
// ones more of its arguments), as OpenAI streams them.
// An AbortSignal goes in the request (`signal`) or in the second argument ({signal}), as the
// OpenAI SDK takes it; an aborted request throws HearthError "aborted". The response and the
// stream's finishing chunk add a `hearth` field: {dropped_messages (left out by context_policy
// "shift"), timing: {prompt_ms, ttft_ms, decode_ms, tokens_per_second}}.

import { HearthError } from "./hearth.js";

/** Engine finish reasons to OpenAI's: an end token or a stop string is "stop"; a full context, like max tokens, is "length". */
const FINISH = { eos: "stop", stop: "stop", length: "length", context: "length", tool_calls: "tool_calls", content_filter: "content_filter" };

const KNOWN = new Set([
  "messages", "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
  "seed", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "response_format", "n",
  "signal", "user", "top_k", "min_p", "typical_p", "repetition_penalty", "context_policy",
  "tools", "tool_choice", "parallel_tool_calls",
]);

function bad(message) {
  return new HearthError("invalid_argument", message);
}

/** The request's fields as chat() options (checked here so mistakes fail before any work). */
function toOptions(req) {
  for (const k of Object.keys(req)) if (!KNOWN.has(k)) throw bad(`unsupported request field "${k}"`);
  if (req.n !== undefined && req.n !== 1) throw bad("n must be 1: one choice per request");
  const stop = req.stop == null ? undefined : typeof req.stop === "string" ? [req.stop] : req.stop;
  if (stop !== undefined && (!Array.isArray(stop) || !stop.every((s) => typeof s === "string") || stop.length > 4)) throw bad("stop must be a string or up to 4 strings");
  let logprobs;
  if (req.logprobs) {
    const top = req.top_logprobs ?? 0;
    if (!Number.isInteger(top) || top < 0 || top > 20) throw bad("top_logprobs must be an integer in [0, 20]");
    logprobs = top;
  } else if (req.top_logprobs != null) {
    throw bad("top_logprobs needs logprobs: true");
  }
  let logitBias;
  if (req.logit_bias != null) {
    if (typeof req.logit_bias !== "object") throw bad("logit_bias must map token ids to numbers");
    logitBias = Object.fromEntries(Object.entries(req.logit_bias).map(([k, v]) => [k, Number(v)]));
  }
  return {
    maxTokens: req.max_completion_tokens ?? req.max_tokens ?? undefined,
    temperature: req.temperature ?? undefined,
    topP: req.top_p ?? undefined,
    topK: req.top_k ?? undefined,
    minP: req.min_p ?? undefined,
    typicalP: req.typical_p ?? undefined,
    repeatPenalty: req.repetition_penalty ?? undefined,
    frequencyPenalty: req.frequency_penalty ?? undefined,
    presencePenalty: req.presence_penalty ?? undefined,
    seed: req.seed ?? undefined,
    stop,
    logprobs,
    logitBias,
    responseFormat: req.response_format ?? undefined,
    contextPolicy: req.context_policy ?? undefined,
    ...toolRequest(req),
  };
}

/** tools, tool_choice and parallel_tool_calls as chat() options (the engine checks them in full). */
function toolRequest(req) {
  if (req.tools == null) {
    if (req.tool_choice != null && req.tool_choice !== "none") throw bad("tool_choice needs tools");
    return {};
  }
  if (!Array.isArray(req.tools)) throw bad("tools must be an array of {type: \"function\", function: {name, description, parameters}}");
  if (req.tools.length === 0) return {};
  return { tools: req.tools, toolChoice: req.tool_choice ?? undefined, parallelToolCalls: req.parallel_tool_calls ?? undefined };
}

/** A whole call as OpenAI's message.tool_calls has it. */
function toolCallOf(c) {
  return { id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } };
}

/** A chat() chunk's call deltas as OpenAI's delta.tool_calls. */
function toolCallDeltas(deltas) {
  return deltas.map((d) =>
    d.name !== undefined ? { index: d.index, id: d.id, type: "function", function: { name: d.name, arguments: d.arguments } } : { index: d.index, function: { arguments: d.arguments } },
  );
}

/** OpenAI's logprobs entry: {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}. */
function logprobContent(entries) {
  return entries.map((e) => ({
    token: e.token,
    logprob: e.logprob,
    bytes: e.bytes,
    top_logprobs: e.topLogprobs.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })),
  }));
}

function usageOf(final) {
  const u = final.usage;
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens ?? 0 },
  };
}

function extrasOf(final) {
  const t = final.timing;
  return {
    ...(final.moderation ? { moderation: final.moderation } : {}),
    dropped_messages: final.droppedMessages ?? 0,
    timing: { prompt_ms: t.promptMs, ttft_ms: t.ttftMs, decode_ms: t.decodeMs, tokens_per_second: t.tokensPerSecond },
  };
}

function newId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return "chatcmpl-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export class Completions {
  constructor(llm) {
    this._llm = llm;
  }

  /**
   * A chat completion: resolves to a `chat.completion` object, or with `stream: true` to an async
   * iterable of `chat.completion.chunk` objects.
   */
  async create(req, { signal: optSignal } = {}) {
    if (!req || typeof req !== "object") throw bad("create() takes a request object");
    const options = toOptions(req);
    const signal = req.signal ?? optSignal;
    const meta = { id: newId(), created: Math.floor(Date.now() / 1000), model: req.model ?? this._llm.info?.name ?? "hearth" };
    const chunks = this._llm.chat(req.messages, { ...options, signal });
    if (req.stream) return this._stream(chunks, meta, options.logprobs !== undefined, !!req.stream_options?.include_usage);
    let content = "";
    const lp = [];
    let final = null;
    for await (const c of chunks) {
      if (c.done) final = c;
      else {
        content += c.text;
        if (c.logprobs) lp.push(...c.logprobs);
      }
    }
    if (final.finishReason === "abort") throw new HearthError("aborted", "the completion was aborted");
    const calls = final.toolCalls ?? [];
    // A reply the guard model flagged is withheld (OpenAI's content_filter: no content).
    if (final.finishReason === "content_filter") content = "";
    const message = { role: "assistant", content: calls.length > 0 && content === "" ? null : content, refusal: null };
    if (calls.length > 0) message.tool_calls = calls.map(toolCallOf);
    return {
      ...meta,
      object: "chat.completion",
      choices: [
        {
          index: 0,
          message,
          logprobs: options.logprobs === undefined ? null : { content: logprobContent(lp), refusal: null },
          finish_reason: FINISH[final.finishReason],
        },
      ],
      usage: usageOf(final),
      hearth: extrasOf(final),
    };
  }

  async *_stream(chunks, meta, withLogprobs, includeUsage) {
    const chunk = (choices, extra = {}) => ({ ...meta, object: "chat.completion.chunk", choices, ...extra });
    yield chunk([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
    for await (const c of chunks) {
      if (!c.done) {
        // Held-back bytes can make a token's text empty; a chunk still carries its logprobs.
        if (!c.text && !c.logprobs && !c.toolCalls) continue;
        const delta = c.toolCalls ? (c.text ? { content: c.text, tool_calls: toolCallDeltas(c.toolCalls) } : { tool_calls: toolCallDeltas(c.toolCalls) }) : { content: c.text };
        yield chunk([
          {
            index: 0,
            delta,
            logprobs: withLogprobs && c.logprobs ? { content: logprobContent(c.logprobs), refusal: null } : null,
            finish_reason: null,
          },
        ]);
        continue;
      }
      if (c.finishReason === "abort") throw new HearthError("aborted", "the completion was aborted");
      yield chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: FINISH[c.finishReason] }], { hearth: extrasOf(c) });
      if (includeUsage) yield chunk([], { usage: usageOf(c) });
    }
  }
}

// `llm.embeddings.create(request)`: OpenAI's embeddings request and response over Hearth's
// embed():
//
//   const r = await llm.embeddings.create({ input: ["first text", "second text"] });
//   r.data[1].embedding; // number[] of llm.info.nEmbd values, unit length
//
// Supported: input (a string, an array of strings, token ids, or an array of token-id arrays),
// model (echoed), encoding_format ("float", the default, or "base64": the little-endian float32
// bytes), dimensions (only the model's own width: Hearth does not shorten vectors), user (ignored),
// and Hearth's own pooling ("mean" | "cls" | "last": overrides the GGUF's) and normalize (default
// true). A model whose GGUF pools nothing (pooling "none", also when it says nothing, as llama.cpp
// reads it) gives a vector per token, which this shape cannot carry: as llama-server does, the
// request fails ("invalid_argument") unless it names a pooling; llm.embed() gives per-token vectors.

const EMBED_KNOWN = new Set(["input", "model", "encoding_format", "dimensions", "user", "pooling", "normalize", "signal"]);

/** A Float32Array's little-endian bytes in base64, as OpenAI's encoding_format "base64". */
function base64Of(v) {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  v.forEach((x, i) => view.setFloat32(i * 4, x, true));
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export class Embeddings {
  constructor(llm) {
    this._llm = llm;
  }

  /** Resolves to OpenAI's `{object: "list", data: [{object: "embedding", index, embedding}], model, usage}`. */
  async create(req, { signal: optSignal } = {}) {
    if (!req || typeof req !== "object") throw bad("create() takes a request object");
    for (const k of Object.keys(req)) if (!EMBED_KNOWN.has(k)) throw bad(`unsupported request field "${k}"`);
    if (req.input == null) throw bad("input is required: a string, an array of strings, token ids or an array of token-id arrays");
    const format = req.encoding_format ?? "float";
    if (format !== "float" && format !== "base64") throw bad(`encoding_format must be "float" or "base64", got ${JSON.stringify(format)}`);
    const info = this._llm.info ?? {};
    if (req.dimensions != null && req.dimensions !== info.nEmbd) throw bad(`dimensions must be ${info.nEmbd}, the model's width (Hearth does not shorten embeddings)`);
    const pooling = req.pooling ?? info.pooling;
    if (pooling === "none") {
      throw bad(
        req.pooling == null
          ? "this model's GGUF sets no pooling (llama.cpp's \"none\": a vector per token), which OpenAI's embeddings shape cannot carry: pass pooling \"mean\", \"cls\" or \"last\", or use llm.embed() for per-token vectors"
          : "pooling \"none\" gives a vector per token, which OpenAI's embeddings shape cannot carry: use llm.embed()",
      );
    }
    const r = await this._llm.embed(req.input, { pooling: req.pooling ?? undefined, normalize: req.normalize ?? undefined, signal: req.signal ?? optSignal });
    return {
      object: "list",
      data: r.embeddings.map((e, index) => ({ object: "embedding", index, embedding: format === "base64" ? base64Of(e) : Array.from(e) })),
      model: req.model ?? info.name ?? "hearth",
      usage: { prompt_tokens: r.promptTokens, total_tokens: r.promptTokens },
    };
  }
}

// `llm.moderations.create(request)`: OpenAI's moderations request and response over Hearth's
// moderate() (a Llama Guard model: src/guard.rs):
//
//   const r = await llm.moderations.create({ input: "How do I pick a lock?" });
//   r.results[0].flagged; // true when Llama Guard answered "unsafe"
//
// Each input string is checked as one user message. Llama Guard's hazard codes map onto OpenAI's
// category names where one fits (below); S5 Defamation, S6 Specialized Advice, S7 Privacy,
// S8 Intellectual Property and S13 Elections have no OpenAI counterpart and set none (the result's
// `llama_guard` field always lists the codes themselves). Scores are 1 for a flagged category and
// 0 otherwise: the verdict is greedy, not a probability.
export const OPENAI_CATEGORIES = {
  S1: ["violence", "illicit/violent"],
  S2: ["illicit"],
  S3: ["sexual", "illicit"],
  S4: ["sexual/minors"],
  S9: ["illicit/violent", "violence"],
  S10: ["hate"],
  S11: ["self-harm"],
  S12: ["sexual"],
  S14: ["illicit"],
};
const OPENAI_NAMES = [
  "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm",
  "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence", "violence/graphic",
];
const MODERATION_KNOWN = new Set(["input", "model", "signal", "categories", "excluded"]);

export class Moderations {
  constructor(llm) {
    this._llm = llm;
  }

  /** Resolves to OpenAI's `{id, model, results: [{flagged, categories, category_scores, llama_guard}]}`. */
  async create(req, { signal: optSignal } = {}) {
    if (!req || typeof req !== "object") throw bad("create() takes a request object");
    for (const k of Object.keys(req)) if (!MODERATION_KNOWN.has(k)) throw bad(`unsupported request field "${k}"`);
    const inputs = typeof req.input === "string" ? [req.input] : req.input;
    if (!Array.isArray(inputs) || inputs.length === 0 || inputs.some((x) => typeof x !== "string")) {
      throw bad("input must be a string or a non-empty array of strings (Hearth's Llama Guard checks text)");
    }
    const results = [];
    for (const text of inputs) {
      const v = await this._llm.moderate(text, { categories: req.categories, excluded: req.excluded, signal: req.signal ?? optSignal });
      const categories = Object.fromEntries(OPENAI_NAMES.map((n) => [n, false]));
      for (const c of v.categories) for (const n of OPENAI_CATEGORIES[c.code] ?? []) categories[n] = true;
      const category_scores = Object.fromEntries(OPENAI_NAMES.map((n) => [n, categories[n] ? 1 : 0]));
      results.push({ flagged: !v.safe, categories, category_scores, llama_guard: { safe: v.safe, categories: v.categories } });
    }
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return { id: "modr-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(""), model: req.model ?? this._llm.info?.name ?? "hearth", results };
  }
}
