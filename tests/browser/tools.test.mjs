// Tool calling through chat.completions.create in headless Chromium (issue 20): a full round trip
// (the model calls a tool → the page answers with a tool message → the model answers) with
//   - the bpe fixture carrying the official Llama 3.1 chat template (JSON calls, tools rendered by
//     the template itself), and with Qwen2.5's (<tool_call>) and Mistral Nemo's ([TOOL_CALLS],
//     whose template refuses call ids other than 9 letters and digits);
//   - the real default model, SmolLM2-135M-Instruct, whose template knows nothing of tools (Hearth
//     writes them into the conversation in the Hermes form);
// tool_choice "required" and a named function forcing a call whose arguments validate against the
// function's schema over several seeds; the stream's delta.tool_calls adding up to the same call;
// chat()'s own toolCalls chunks; requests that are wrong failing with invalid_argument.
//
// Needs pkg/ (scripts/build-wasm), Chromium and playwright-core, and the real model
// (HEARTH_REAL_MODEL, scripts/default-model; scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { T_STRING, parseGguf, writeGguf } from "./gguf.mjs";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, realModel, root } from "./harness.mjs";

const TIMEOUT = 240000;

const TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the current weather in a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string", maxLength: 40 }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
        required: ["city", "unit"],
      },
    },
  },
  {
    type: "function",
    function: {
      name: "search_flights",
      description: "Find flights between two airports",
      parameters: {
        type: "object",
        properties: { from: { type: "string", maxLength: 12 }, to: { type: "string", maxLength: 12 }, passengers: { type: "integer" }, nonstop: { type: "boolean" } },
        required: ["from", "to", "passengers"],
      },
    },
  },
];

const MESSAGES = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "What is the weather in Paris?" },
];

/** The parts of JSON Schema the tools above use. */
function validate(schema, v, at = "arguments") {
  if (schema.enum && !schema.enum.includes(v)) return `${at}: ${JSON.stringify(v)} is not one of ${schema.enum}`;
  const t = schema.type;
  const ok = { object: () => v && typeof v === "object" && !Array.isArray(v), string: () => typeof v === "string", integer: () => Number.isInteger(v), boolean: () => typeof v === "boolean" }[t];
  if (t && !ok()) return `${at}: ${JSON.stringify(v)} is not ${t}`;
  if (t === "string" && schema.maxLength !== undefined && [...v].length > schema.maxLength) return `${at}: longer than ${schema.maxLength}`;
  if (t === "object") {
    for (const r of schema.required ?? []) if (!(r in v)) return `${at}: no ${r}`;
    for (const [k, x] of Object.entries(v)) {
      if (!schema.properties?.[k]) return `${at}: unexpected ${k}`;
      const e = validate(schema.properties[k], x, `${at}.${k}`);
      if (e) return e;
    }
  }
  return null;
}

/** A call from message.tool_calls checked: its id's shape, a function offered, arguments that parse and validate. */
function assertValidCall(call, { idPattern = /^call_[A-Za-z0-9]{24}$/, names = TOOLS.map((t) => t.function.name) } = {}) {
  assert.match(call.id, idPattern);
  assert.equal(call.type, "function");
  assert.ok(names.includes(call.function.name), call.function.name);
  const args = JSON.parse(call.function.arguments);
  const schema = TOOLS.find((t) => t.function.name === call.function.name).function.parameters;
  assert.equal(validate(schema, args), null, call.function.arguments);
  return args;
}

/** OpenAI's stream of a reply: content, and the calls its delta.tool_calls add up to. */
function assemble(chunks) {
  let content = "";
  const calls = [];
  let finish = null;
  for (const c of chunks) {
    for (const ch of c.choices) {
      content += ch.delta.content ?? "";
      for (const d of ch.delta.tool_calls ?? []) {
        if (d.id !== undefined) {
          assert.equal(d.index, calls.length, "calls start in order");
          assert.equal(d.type, "function");
          calls.push({ id: d.id, type: "function", function: { name: d.function.name, arguments: d.function.arguments } });
        } else {
          assert.equal(Object.keys(d).sort().join(), "function,index");
          calls[d.index].function.arguments += d.function.arguments;
        }
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  return { content, calls, finish };
}

let server, browser, page, dir;

function withTemplate(fixture, template) {
  const g = parseGguf(fixture);
  const len = Buffer.alloc(8);
  const text = Buffer.from(template);
  len.writeBigUInt64LE(BigInt(text.length));
  g.kvs = g.kvs.filter((kv) => kv.key !== "tokenizer.chat_template");
  g.kvs.push({ key: "tokenizer.chat_template", type: T_STRING, raw: Buffer.concat([len, text]) });
  return writeGguf(g);
}

before(async () => {
  assertPkgBuilt();
  realModel();
  const fixtures = fixtureDir(["bpe-q4_k_m"]);
  const bpe = fs.readFileSync(path.join(fixtures, "bpe-q4_k_m.gguf"));
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-tools-"));
  for (const [name, file] of [["llama31", "llama-3.1.jinja"], ["qwen", "qwen2.5-chatml.jinja"], ["mistral", "mistral-nemo.jinja"]]) {
    const template = fs.readFileSync(path.join(root, "tests/golden/templates", file), "utf8");
    fs.writeFileSync(path.join(dir, `bpe-${name}.gguf`), withTemplate(bpe, template));
  }
  server = await startServer({ mounts: { "/tools": dir, "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
  page = await browser.newPage();
  logPage(page, "tools");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** In the page: load `url`, then a forced call (plain and streamed), the tool's result, the answer. */
async function roundTrip(url, { seed = 1, temperature = 0.8, choice = "required", answerChoice = "auto", contextSize } = {}) {
  return page.evaluate(
    async ({ url, tools, messages, seed, temperature, choice, answerChoice, contextSize }) => {
      const llm = await Hearth.load(url, contextSize ? { contextSize } : {});
      try {
        const req = { messages, tools, tool_choice: choice, max_tokens: 80, temperature, seed };
        const first = await llm.chat.completions.create(req);
        const chunks = [];
        for await (const c of await llm.chat.completions.create({ ...req, stream: true })) chunks.push(c);
        const call = first.choices[0].message;
        const result = { temperature: 18, unit: "celsius", sky: "clear" };
        const followUp = [...messages, call, { role: "tool", tool_call_id: call.tool_calls[0].id, content: JSON.stringify(result) }];
        const prompt = await llm.applyChatTemplate(followUp, { tools });
        const answer = await llm.chat.completions.create({ messages: followUp, tools, tool_choice: answerChoice, max_tokens: 24, temperature: 0 });
        return { first, chunks, prompt, answer };
      } finally {
        await llm.unload();
      }
    },
    { url, tools: TOOLS, messages: MESSAGES, seed, temperature, choice, answerChoice, contextSize },
  );
}

test("Llama 3.1's template on a fixture: a forced JSON call, the tool's result, an answer", { timeout: TIMEOUT }, async () => {
  const r = await roundTrip("/tools/bpe-llama31.gguf");
  const choice = r.first.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.role, "assistant");
  assert.equal(choice.message.content, null);
  assert.equal(choice.message.tool_calls.length, 1);
  assertValidCall(choice.message.tool_calls[0]);
  // The same seed streamed: the deltas add up to the same call (ids are drawn anew).
  const s = assemble(r.chunks);
  assert.equal(s.finish, "tool_calls");
  assert.equal(s.content, "");
  assert.deepEqual(
    s.calls.map((c) => c.function),
    choice.message.tool_calls.map((c) => c.function),
  );
  assert.ok(r.chunks.filter((c) => c.choices[0]?.delta.tool_calls).length >= 2, "the arguments stream in pieces");
  // The template itself rendered the call and the result (Llama 3.1's ipython turn).
  const call = choice.message.tool_calls[0].function;
  assert.ok(r.prompt.includes(`<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "${call.name}", "parameters": `), r.prompt);
  // (The official template prints a string result with tojson: quoted, as jinja2 does.)
  assert.ok(r.prompt.includes('<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"temperature\\":18,\\"unit\\":\\"celsius\\",\\"sky\\":\\"clear\\"}"<|eot_id|>'), r.prompt);
  assert.ok(r.prompt.includes("Given the following functions, please respond with a JSON for a function call"));
  const a = r.answer.choices[0];
  assert.ok(["stop", "length"].includes(a.finish_reason), a.finish_reason);
  assert.equal(typeof a.message.content, "string");
  assert.equal(a.message.tool_calls, undefined);
  assert.ok(r.answer.usage.prompt_tokens > r.first.usage.prompt_tokens);
});

test("forced calls over many seeds always parse and validate; a named function is the one called", { timeout: TIMEOUT }, async () => {
  const out = await page.evaluate(
    async ({ tools, messages }) => {
      const res = [];
      for (const url of ["/tools/bpe-llama31.gguf", "/tools/bpe-qwen.gguf", "/tools/bpe-mistral.gguf"]) {
        const llm = await Hearth.load(url);
        for (let seed = 0; seed < 8; seed++) {
          for (const choice of ["required", { type: "function", function: { name: "search_flights" } }]) {
            const r = await llm.chat.completions.create({ messages, tools, tool_choice: choice, parallel_tool_calls: false, max_tokens: 80, temperature: 1, seed });
            res.push({ url, seed, choice, message: r.choices[0].message, finish: r.choices[0].finish_reason });
          }
        }
        await llm.unload();
      }
      return res;
    },
    { tools: TOOLS, messages: MESSAGES },
  );
  assert.equal(out.length, 48);
  for (const r of out) {
    const what = `${r.url} seed ${r.seed} ${JSON.stringify(r.choice)}: ${JSON.stringify(r.message)}`;
    assert.equal(r.finish, "tool_calls", what);
    assert.equal(r.message.tool_calls.length, 1, what);
    const mistral = r.url.includes("mistral");
    assertValidCall(r.message.tool_calls[0], { idPattern: mistral ? /^[A-Za-z0-9]{9}$/ : undefined, names: r.choice === "required" ? undefined : ["search_flights"] });
  }
});

test("Qwen2.5's <tool_call> and Mistral Nemo's [TOOL_CALLS] templates round-trip too", { timeout: TIMEOUT }, async () => {
  const qwen = await roundTrip("/tools/bpe-qwen.gguf", { seed: 5 });
  const q = qwen.first.choices[0].message.tool_calls[0];
  assertValidCall(q);
  assert.ok(qwen.prompt.includes(`<tool_call>\n{"name": "${q.function.name}", "arguments": `), qwen.prompt);
  assert.ok(qwen.prompt.includes('<|im_start|>user\n<tool_response>\n{"temperature":18,"unit":"celsius","sky":"clear"}\n</tool_response><|im_end|>'), qwen.prompt);
  assert.deepEqual(assemble(qwen.chunks).calls.map((c) => c.function), [q.function]);
  assert.equal(typeof qwen.answer.choices[0].message.content, "string");

  const mistral = await roundTrip("/tools/bpe-mistral.gguf", { seed: 6 });
  const m = mistral.first.choices[0].message.tool_calls[0];
  assertValidCall(m, { idPattern: /^[A-Za-z0-9]{9}$/ });
  // The template checks the id's length: the round trip only renders because the id fits.
  assert.ok(mistral.prompt.includes(`[TOOL_CALLS][{"name": "${m.function.name}", "arguments": `), mistral.prompt);
  assert.ok(mistral.prompt.includes(`"call_id": "${m.id}"}[/TOOL_RESULTS]`), mistral.prompt);
  assert.equal(typeof mistral.answer.choices[0].message.content, "string");
});

test("the real model (SmolLM2, a template without tools): call → tool result → answer", { timeout: TIMEOUT }, async () => {
  const def = realModel();
  const r = await roundTrip("/" + def.url, { temperature: 0, choice: { type: "function", function: { name: "get_weather" } }, answerChoice: "none" });
  const msg = r.first.choices[0].message;
  assert.equal(r.first.choices[0].finish_reason, "tool_calls");
  const args = assertValidCall(msg.tool_calls[0], { names: ["get_weather"] });
  console.log(`SmolLM2 called get_weather(${JSON.stringify(args)}); answered ${JSON.stringify(r.answer.choices[0].message.content)}`);
  assert.match(args.city, /Paris/, "greedy, the model asks for the city the user named");
  assert.deepEqual(assemble(r.chunks).calls.map((c) => c.function), msg.tool_calls.map((c) => c.function));
  // Hearth wrote the tools into its ChatML conversation the Hermes way.
  assert.ok(r.prompt.startsWith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions"), r.prompt);
  assert.ok(r.prompt.includes(`<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": `), r.prompt);
  assert.ok(r.prompt.endsWith('<|im_start|>user\n<tool_response>\n{"temperature":18,"unit":"celsius","sky":"clear"}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'), r.prompt);
  const answer = r.answer.choices[0];
  assert.equal(answer.finish_reason === "stop" || answer.finish_reason === "length", true);
  assert.ok(answer.message.content.length > 0);
  assert.equal(answer.message.tool_calls, undefined);
  // The follow-up turn re-read only what was new: the call's prompt is in the KV cache.
  assert.ok(r.answer.usage.prompt_tokens_details.cached_tokens > r.first.usage.prompt_tokens / 2, JSON.stringify(r.answer.usage));
});

test("chat() streams toolCalls deltas and ends with the calls; bad requests are invalid_argument", { timeout: TIMEOUT }, async () => {
  const r = await page.evaluate(
    async ({ tools, messages }) => {
      const llm = await Hearth.load("/tools/bpe-llama31.gguf");
      const chunks = [];
      for await (const c of llm.chat(messages, { tools, toolChoice: "required", maxTokens: 100, temperature: 0.7, seed: 9 })) chunks.push(c);
      const errors = {};
      const attempt = async (name, req) => {
        try {
          await llm.chat.completions.create({ messages, max_tokens: 8, ...req });
          errors[name] = null;
        } catch (e) {
          errors[name] = { code: e.code, message: e.message };
        }
      };
      await attempt("unknown function", { tools, tool_choice: { type: "function", function: { name: "nope" } } });
      await attempt("tool_choice without tools", { tool_choice: "required" });
      await attempt("tools not an array", { tools: { type: "function" } });
      await attempt("a tool without a name", { tools: [{ type: "function", function: { description: "x" } }] });
      await attempt("an unsupported schema keyword", { tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { s: { type: "string", pattern: "^a" } } } } }], tool_choice: "required" });
      await attempt("a call with response_format", { tools, tool_choice: "required", response_format: { type: "json_object" } });
      // The shortest call to get_weather is over 60 bytes: 20 tokens cannot hold it.
      await attempt("max_tokens too small for the call", { tools, tool_choice: "required", max_tokens: 20 });
      // "none": the tools are shown (the prompt is auto's) and nothing is read as a call.
      const none = await llm.chat.completions.create({ messages, tools, tool_choice: "none", max_tokens: 8, temperature: 0 });
      const prompts = [await llm.applyChatTemplate(messages, { tools, toolChoice: "none" }), await llm.applyChatTemplate(messages, { tools })];
      await llm.unload();
      return { chunks, errors, none: none.choices[0], prompts };
    },
    { tools: TOOLS, messages: MESSAGES },
  );
  const last = r.chunks.at(-1);
  assert.equal(last.done, true);
  assert.equal(last.finishReason, "tool_calls");
  assert.equal(last.toolCalls.length, 1);
  const deltas = r.chunks.filter((c) => !c.done && c.toolCalls).flatMap((c) => c.toolCalls);
  assert.equal(deltas[0].id, last.toolCalls[0].id);
  assert.equal(deltas[0].name, last.toolCalls[0].name);
  assert.equal(deltas.map((d) => d.arguments).join(""), last.toolCalls[0].arguments);
  assert.equal(r.chunks.map((c) => c.text).join(""), "");
  for (const [name, e] of Object.entries(r.errors)) assert.equal(e?.code, "invalid_argument", `${name}: ${JSON.stringify(e)}`);
  assert.match(r.errors["an unsupported schema keyword"].message, /pattern/);
  assert.match(r.errors["max_tokens too small for the call"].message, /raise maxTokens/);
  assert.equal(r.none.message.tool_calls, undefined);
  assert.equal(typeof r.none.message.content, "string");
  assert.ok(["stop", "length"].includes(r.none.finish_reason));
  assert.equal(r.prompts[0], r.prompts[1]);
  assert.ok(r.prompts[0].includes('"name": "get_weather"'));
});
