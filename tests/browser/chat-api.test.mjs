// The chat layer in the browser under test (HEARTH_BROWSER; Chromium by default): OpenAI-shaped chat.completions.create (plain and streamed,
// usage, finish_reason, logprobs, response_format, seed), the GGUF's own chat template, context
// shift, split models loaded from their first shard, the backend option, and a main thread that
// never runs a long task while the worker loads and generates.
//
// Needs pkg/ (scripts/build-wasm) and the browser (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, cliBinary, root, ENGINE_NAME, onlyIn } from "./harness.mjs";

const golden = JSON.parse(fs.readFileSync(path.join(root, "tests/golden/model-spm-q4_0.json"), "utf8"));
const CASE = golden.cases[0];
const WANT = CASE.greedy.slice(0, 8);

let server, browser, page, fixtures, shards;

before(async () => {
  assertPkgBuilt();
  fixtures = fixtureDir(["spm-q4_0", "bpe-q4_k_m"]);
  // spm-q4_0 split in three, as llama.cpp's gguf-split names them; and a set missing its last.
  shards = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-shards-"));
  execFileSync(cliBinary(), ["split", "--model", path.join(fixtures, "spm-q4_0.gguf"), "--shards", "3", "--out", path.join(shards, "spm")]);
  fs.mkdirSync(path.join(shards, "partial"));
  for (const i of [1, 2]) fs.copyFileSync(path.join(shards, `spm-0000${i}-of-00003.gguf`), path.join(shards, "partial", `spm-0000${i}-of-00003.gguf`));
  server = await startServer({ mounts: { "/fixtures": fixtures, "/shards": shards, "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
  page = await browser.newPage();
  logPage(page, "chat-api");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
  await page.evaluate(async () => {
    window.bpe = await Hearth.load("/fixtures/bpe-q4_k_m.gguf");
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (shards) fs.rmSync(shards, { recursive: true, force: true });
});

const MESSAGES = [
  { role: "system", content: "You are brief." },
  { role: "user", content: "Name a colour." },
];

test("chat.completions.create returns OpenAI's shapes; the stream carries the same text", async () => {
  const r = await page.evaluate(async (messages) => {
    const req = { messages, max_tokens: 12, temperature: 0.9, seed: 11 };
    const plain = await bpe.chat.completions.create(req);
    const chunks = [];
    for await (const c of await bpe.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    const parts = await bpe.chat.completions.create({ ...req, messages: [messages[0], { role: "user", content: [{ type: "text", text: "Name a " }, { type: "text", text: "colour." }] }] });
    const errors = [];
    for (const bad of [{ messages, n: 2 }, { messages, top_logprobs: 2 }, { messages, bogus: 1 }, { messages, response_format: { type: "xml" } }]) {
      try {
        await bpe.chat.completions.create(bad);
        errors.push(null);
      } catch (e) {
        errors.push(e.code);
      }
    }
    return { plain, chunks, parts, errors };
  }, MESSAGES);
  const p = r.plain;
  assert.match(p.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(p.object, "chat.completion");
  assert.ok(Number.isInteger(p.created) && p.created > 1.7e9);
  assert.equal(p.choices.length, 1);
  const choice = p.choices[0];
  assert.equal(choice.index, 0);
  assert.equal(choice.message.role, "assistant");
  assert.equal(typeof choice.message.content, "string");
  assert.ok(["stop", "length"].includes(choice.finish_reason));
  assert.equal(choice.logprobs, null);
  assert.ok(p.usage.prompt_tokens > 10 && p.usage.completion_tokens > 0 && p.usage.completion_tokens <= 12);
  assert.equal(p.usage.total_tokens, p.usage.prompt_tokens + p.usage.completion_tokens);

  const c = r.chunks;
  assert.ok(c.every((x) => x.object === "chat.completion.chunk" && x.id === c[0].id));
  assert.deepEqual(c[0].choices[0].delta, { role: "assistant", content: "" });
  const text = c.flatMap((x) => x.choices.map((ch) => ch.delta.content ?? "")).join("");
  assert.equal(text, choice.message.content, "same seed, same reply, streamed or not");
  const last = c.at(-1);
  assert.deepEqual(last.choices, [], "include_usage: a last chunk with no choices");
  assert.deepEqual(last.usage.completion_tokens, p.usage.completion_tokens);
  assert.equal(last.usage.prompt_tokens_details.cached_tokens, p.usage.prompt_tokens - 1, "the same prompt again is read from the KV cache");
  assert.equal(c.at(-2).choices[0].finish_reason, choice.finish_reason);
  assert.equal(r.parts.choices[0].message.content, choice.message.content, "text content parts are joined");
  assert.deepEqual(r.errors, ["invalid_argument", "invalid_argument", "invalid_argument", "invalid_argument"]);
});

test("logprobs: the greedy token is the most likely, with top alternatives; logit_bias forces a token", async () => {
  const { r, biased, target } = await page.evaluate(async (messages) => {
    const r = await bpe.chat.completions.create({ messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
    const [target] = await bpe.tokenize(" hearth", { addSpecial: false });
    const biased = [];
    for await (const c of bpe.generate("Once upon a time", { maxTokens: 4, temperature: 0, stopAtEos: false, logitBias: { [target]: 100 } })) if (!c.done) biased.push(...c.tokenIds);
    return { r, biased, target };
  }, MESSAGES);
  assert.deepEqual(biased, [target, target, target, target]);
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const e of lp) {
    assert.equal(e.top_logprobs.length, 3);
    assert.equal(e.top_logprobs[0].token, e.token);
    assert.equal(e.top_logprobs[0].logprob, e.logprob);
    assert.ok(e.logprob <= 0 && e.top_logprobs[1].logprob <= e.logprob);
    assert.equal(Buffer.from(e.bytes).toString("utf8").length > 0 || e.bytes.length === 0, true);
  }
});

test("response_format: JSON mode and a JSON schema give JSON that parses and validates", async () => {
  const schema = {
    type: "object",
    properties: { colour: { type: "string", enum: ["red", "green", "blue"] }, count: { type: "integer" }, tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 } },
    required: ["colour", "count", "tags"],
  };
  const r = await page.evaluate(
    async ({ messages, schema }) => {
      const out = [];
      for (let seed = 1; seed <= 4; seed++) {
        const obj = await bpe.chat.completions.create({ messages, max_tokens: 48, temperature: 1, seed, response_format: { type: "json_object" } });
        const sch = await bpe.chat.completions.create({ messages, max_tokens: 64, temperature: 1, seed, response_format: { type: "json_schema", json_schema: { name: "answer", schema } } });
        out.push([obj.choices[0], sch.choices[0]]);
      }
      let bad = null;
      try {
        await bpe.chat.completions.create({ messages, response_format: { type: "json_schema", json_schema: { schema: { type: "string", pattern: "^a" } } } });
      } catch (e) {
        bad = { code: e.code, message: e.message };
      }
      return { out, bad };
    },
    { messages: MESSAGES, schema },
  );
  for (const [obj, sch] of r.out) {
    const o = JSON.parse(obj.message.content);
    assert.equal(typeof o, "object");
    assert.ok(!Array.isArray(o) && o !== null);
    assert.equal(obj.finish_reason, "stop", obj.message.content);
    const v = JSON.parse(sch.message.content);
    assert.deepEqual(Object.keys(v).sort(), ["colour", "count", "tags"], sch.message.content);
    assert.ok(["red", "green", "blue"].includes(v.colour) && Number.isInteger(v.count) && v.tags.length <= 3 && v.tags.every((t) => typeof t === "string" && t.length <= 6), sch.message.content);
  }
  assert.equal(r.bad.code, "invalid_argument");
  assert.match(r.bad.message, /pattern/);
});

test(`the same seed gives the same tokens in ${ENGINE_NAME} as natively`, async () => {
  const native = JSON.parse(
    execFileSync(cliBinary(), ["generate", "--model", path.join(fixtures, "bpe-q4_k_m.gguf"), "--prompt", "Once upon a time", "--max-tokens", "16", "--seed", "1234", "--temperature", "0.9", "--json"], { encoding: "utf8" }),
  );
  const wasm = await page.evaluate(async () => {
    const ids = [];
    for await (const c of bpe.generate("Once upon a time", { maxTokens: 16, seed: 1234, temperature: 0.9, stopAtEos: false })) if (!c.done) ids.push(...c.tokenIds);
    return ids;
  });
  assert.equal(native.tokens.length, 16);
  assert.deepEqual(wasm, native.tokens);
});

test("the GGUF's own chat template renders the conversation (the bundled demo model carries Llama 3.2's)", async () => {
  const r = await page.evaluate(async (messages) => {
    const m = await Hearth.load("/models/demo.gguf");
    const text = await m.applyChatTemplate(messages);
    const info = m.info;
    const d = new Date();
    const today = `${String(d.getDate()).padStart(2, "0")} ${d.toLocaleString("en-US", { month: "short" })} ${d.getFullYear()}`;
    await m.unload();
    return { text, info, today, bpe: bpe.info.chatTemplate };
  }, MESSAGES);
  assert.equal(r.info.chatTemplate, "model");
  assert.equal(r.bpe, "llama3", "a model without a template gets the built-in one its vocabulary calls for");
  assert.equal(
    r.text,
    `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ${r.today}\n\nYou are brief.<|eot_id|>` +
      "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  );
});

test("a conversation over the context: contextPolicy 'error' fails typed, 'shift' drops the oldest turns and reuses the cache", async () => {
  const r = await page.evaluate(async () => {
    const m = await Hearth.load("/fixtures/bpe-q4_k_m.gguf", { contextSize: 160 });
    const long = "the hearth keeps the kitchen warm ".repeat(3);
    const messages = [{ role: "system", content: "You are brief." }];
    for (let i = 0; i < 5; i++) messages.push({ role: "user", content: `question ${i}: ${long}` }, { role: "assistant", content: `answer ${i}: ${long}` });
    messages.push({ role: "user", content: "last question" });
    const run = async (opts) => {
      let final;
      for await (const c of m.chat(messages, { maxTokens: 8, temperature: 0, ...opts })) if (c.done) final = c;
      return final;
    };
    let error = null;
    try {
      await run({});
    } catch (e) {
      error = e.code;
    }
    const first = await run({ contextPolicy: "shift" });
    const again = await run({ contextPolicy: "shift" });
    await m.unload();
    return { error, first, again };
  });
  assert.equal(r.error, "context_overflow");
  assert.ok(r.first.droppedMessages >= 2 && r.first.droppedMessages % 2 === 0, `whole turns dropped: ${r.first.droppedMessages}`);
  assert.ok(r.first.usage.promptTokens + 8 <= 160);
  assert.equal(r.again.usage.cachedTokens, r.again.usage.promptTokens - 1, "the shifted prompt stays in the cache for the next request");
});

test("a split model loads from the URL of its first shard, or from all its shards as Files", async () => {
  const r = await page.evaluate(
    async ({ prompt, want }) => {
      const greedy = async (m) => {
        const ids = [];
        for await (const c of m.generate(prompt, { temperature: 0, stopAtEos: false, maxTokens: want.length })) if (!c.done) ids.push(...c.tokenIds);
        return ids;
      };
      const events = [];
      const byUrl = await Hearth.load("/shards/spm-00001-of-00003.gguf", { onProgress: (p) => events.push(p) });
      const a = await greedy(byUrl);
      await byUrl.unload();
      const files = [];
      for (let i = 1; i <= 3; i++) files.push(new File([await (await fetch(`/shards/spm-0000${i}-of-00003.gguf`)).blob()], `spm-0000${i}-of-00003.gguf`));
      const byFiles = await Hearth.load(files);
      const b = await greedy(byFiles);
      await byFiles.unload();
      const errors = [];
      for (const src of ["/shards/partial/spm-00001-of-00003.gguf", files[0], [files[0], files[1]], [files[0], files[2], files[1]]]) {
        try {
          await Hearth.load(src);
          errors.push(null);
        } catch (e) {
          errors.push(e.code);
        }
      }
      return { a, b, events, errors };
    },
    { prompt: CASE.prompt, want: WANT },
  );
  assert.deepEqual(r.a, WANT, "llama.cpp's greedy tokens from the split model");
  assert.deepEqual(r.b, WANT);
  const last = r.events.at(-1);
  assert.equal(last.shard, 3);
  assert.equal(last.shards, 3);
  const sizes = [1, 2, 3].map((i) => fs.statSync(path.join(shards, `spm-0000${i}-of-00003.gguf`)).size);
  assert.equal(last.loaded, sizes.reduce((x, y) => x + y));
  assert.ok(r.events.some((e) => e.shard === 2) && r.events.every((e, i) => i === 0 || e.loaded >= r.events[i - 1].loaded));
  // Missing third shard (HTTP 404), one File of three, two Files of three, shards out of order.
  assert.deepEqual(r.errors, ["network", "truncated", "invalid_argument", "bad_metadata"]);
});

test(
  "backend option: cpu loads on the CPU; auto and webgpu as the engine's WebGPU allows; unknown is invalid",
  async () => {
    const r = await page.evaluate(async () => {
      // What this engine offers: no navigator.gpu (WebKitGTK), or an adapter, which in headless CI is
      // a software one (Chromium's SwiftShader; Firefox's says isFallbackAdapter: on this machine
      // Mesa's lavapipe is its only Vulkan driver).
      let adapter = "none";
      if (navigator.gpu) {
        const a = await navigator.gpu.requestAdapter().catch(() => null);
        adapter = !a ? "null" : a.info?.isFallbackAdapter || a.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(`${a.info?.architecture} ${a.info?.description}`) ? "software" : "hardware";
      }
      const out = { adapter };
      for (const backend of ["cpu", "auto", "webgpu", "tpu"]) {
        try {
          const m = await Hearth.load("/fixtures/spm-q4_0.gguf", { backend });
          out[backend] = m.info.backend;
          if (backend === "auto") out.fallback = m.info.backendFallback;
          await m.unload();
        } catch (e) {
          out[backend] = e.code;
        }
      }
      return out;
    });
    console.log(`WebGPU adapter: ${r.adapter}; auto: ${r.auto} (${r.fallback ?? "no fallback"}); webgpu: ${r.webgpu}`);
    const { adapter, fallback } = r;
    delete r.adapter;
    delete r.fallback;
    if (adapter === "none") {
      // No WebGPU at all: auto says so in words, and asking for it is a typed error.
      assert.match(fallback, /WebGPU is not available/);
      assert.deepEqual(r, { cpu: "cpu", auto: "cpu", webgpu: "backend_unavailable", tpu: "invalid_argument" });
    } else if (adapter === "software") {
      // A software renderer: auto stays on the CPU (faster), webgpu still runs on it.
      assert.match(fallback, /software renderer/);
      assert.deepEqual(r, { cpu: "cpu", auto: "cpu", webgpu: "webgpu", tpu: "invalid_argument" });
    } else if (adapter === "hardware") {
      assert.deepEqual(r, { cpu: "cpu", auto: "webgpu", webgpu: "webgpu", tpu: "invalid_argument" });
    } else {
      // navigator.gpu without an adapter.
      assert.ok(typeof fallback === "string" && fallback.length > 0);
      assert.deepEqual({ cpu: r.cpu, auto: r.auto, tpu: r.tpu }, { cpu: "cpu", auto: "cpu", tpu: "invalid_argument" });
      assert.equal(r.webgpu, "backend_unavailable");
    }
  },
);

test(
  "the page's thread runs no long task while the worker loads a model and generates",
  onlyIn(["chromium"], "the Long Tasks API (PerformanceObserver type 'longtask') exists only in Chromium"),
  async () => {
    const r = await page.evaluate(async () => {
      const long = [];
      const obs = new PerformanceObserver((list) => long.push(...list.getEntries().map((e) => e.duration)));
      obs.observe({ type: "longtask" });
      const settle = () => new Promise((res) => setTimeout(res, 100));
      // The observer sees a long task when there is one (a 120 ms busy loop here)...
      await settle();
      await new Promise((res) =>
        setTimeout(() => {
          const t = performance.now();
          while (performance.now() - t < 120);
          res();
        }, 0),
      );
      await settle();
      const control = long.splice(0).length;
      // ...and none while the engine works in its worker.
      const progress = [];
      const m = await Hearth.load("/fixtures/spm-q4_0.gguf", { onProgress: (p) => progress.push(p.loaded) });
      let n = 0;
      for await (const c of m.generate("Once upon a time", { maxTokens: 48, temperature: 0, stopAtEos: false })) if (!c.done) n++;
      let streamed = 0;
      for await (const c of await m.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 16, stream: true })) streamed++;
      await m.unload();
      await settle();
      obs.disconnect();
      return { control, during: long, n, streamed, progress: progress.length };
    });
    assert.ok(r.control >= 1, "the long-task observer works");
    assert.equal(r.n, 48);
    assert.ok(r.streamed >= 2 && r.progress >= 1);
    assert.deepEqual(r.during, [], `long tasks on the page's thread: ${r.during}`);
  },
);
