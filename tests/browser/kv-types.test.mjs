// The KV cache types in headless Chromium (issue 17): `kvType` "f16" (the default), "q8_0" and
// "f32" give llama.cpp's greedy tokens for that cache type (tests/golden/model-*.json and
// *.kv-TYPE.json, scripts/goldens) on the CPU engine, loaded by URL and from bytes; a bad kvType is
// a typed error; perplexity takes one; and the WebGPU backend (SwiftShader: f16 packed in u32
// words) runs all three within tolerance of the CPU engine with the same cache type.
//
// Needs pkg/ (scripts/build-wasm), Chromium and playwright-core (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { openApiPage, fixtureDir, root } from "./harness.mjs";

const FIXTURES = ["spm-f32", "bpe-q4_0"];
const KV_TYPES = ["f16", "q8_0", "f32"];
const STEPS = 12;

/** The golden of `fixture` made with llama.cpp's `kv` cache (F16: the file without a suffix). */
function golden(fixture, kv) {
  const name = kv === "f16" ? `model-${fixture}.json` : `model-${fixture}.kv-${kv}.json`;
  const g = JSON.parse(fs.readFileSync(path.join(root, "tests/golden", name), "utf8"));
  assert.equal(g.kv_type, kv, name);
  return g.cases[0];
}

let server, browser, page, adapter;

before(async () => {
  ({ server, browser, page, adapter } = await openApiPage("kv-types", fixtureDir(FIXTURES)));
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Greedy tokens of `prompt` and the first step's top log-probabilities with `options`. */
function run(fixture, prompt, steps, options) {
  return page.evaluate(
    async ({ fixture, prompt, steps, options }) => {
      const url = `/fixtures/${fixture}.gguf`;
      const source = options.bytes ? new Uint8Array(await (await fetch(url)).arrayBuffer()) : url;
      const m = await Hearth.load(source, { contextSize: 128, ...options, bytes: undefined });
      const out = { kvType: m.info.kvType, backend: m.info.backend, tokens: [], top: null };
      for await (const c of m.generate(prompt, { maxTokens: steps, temperature: 0, stopAtEos: false })) if (!c.done) out.tokens.push(...c.tokenIds);
      for await (const c of m.generate(prompt, { maxTokens: 1, temperature: 0, stopAtEos: false, logprobs: 5 })) {
        if (c.logprobs) out.top = c.logprobs[0].topLogprobs.map((t) => [t.id, t.logprob]);
      }
      await m.unload();
      return out;
    },
    { fixture, prompt, steps, options },
  );
}

test("each kvType gives llama.cpp's greedy tokens with that cache (CPU engine, by URL and from bytes)", async () => {
  for (const fixture of FIXTURES) {
    for (const kv of KV_TYPES) {
      const want = golden(fixture, kv);
      for (const bytes of [false, true]) {
        const r = await run(fixture, want.prompt, STEPS, kv === "f16" && !bytes ? {} : { kvType: kv, bytes });
        assert.equal(r.kvType, kv, `${fixture}: info.kvType`);
        assert.equal(r.backend, "cpu");
        // Equal up to a near tie in llama.cpp's own logits (tests/golden_model.rs: the wasm build's
        // libm and float order may cross a rounding boundary there).
        const same = want.greedy.slice(0, STEPS).findIndex((t, i) => r.tokens[i] !== t);
        if (same >= 0) assert.ok(want.greedy_margins[same] < 0.05, `${fixture} ${kv}: step ${same} differs (llama.cpp margin ${want.greedy_margins[same]}): ${r.tokens} vs ${want.greedy.slice(0, STEPS)}`);
      }
    }
  }
});

test("a kvType other than f16, q8_0 and f32 is HearthError invalid_argument; perplexity takes one", async () => {
  const r = await page.evaluate(async () => {
    let code = null;
    try {
      await Hearth.load("/fixtures/spm-f32.gguf", { kvType: "q4_0" });
    } catch (e) {
      code = e.code;
    }
    const m = await Hearth.load("/fixtures/spm-f32.gguf", { contextSize: 64, kvType: "q8_0", worker: false });
    const text = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    const ppl = {};
    for (const kvType of [undefined, "f16", "f32"]) ppl[kvType ?? "default"] = (await m.perplexity(text, { contextSize: 16, kvType })).perplexity;
    let pplCode = null;
    try {
      await m.perplexity(text, { contextSize: 16, kvType: "bf16" });
    } catch (e) {
      pplCode = e.code;
    }
    const kvType = m.info.kvType;
    await m.unload();
    return { code, ppl, pplCode, kvType };
  });
  assert.equal(r.code, "invalid_argument");
  assert.equal(r.pplCode, "invalid_argument");
  assert.equal(r.kvType, "q8_0");
  for (const v of Object.values(r.ppl)) assert.ok(Number.isFinite(v) && v > 1, JSON.stringify(r.ppl));
  // The default is the model's cache type (q8_0 here), not f16's.
  assert.notEqual(r.ppl.default, r.ppl.f16);
});

test("WebGPU (f16 packed in u32 words without shader-f16) runs every kvType within tolerance of the CPU engine", async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  const prompt = "The quick brown fox";
  for (const kv of KV_TYPES) {
    const [cpu, gpu] = [await run("spm-f32", prompt, 4, { kvType: kv, backend: "cpu" }), await run("spm-f32", prompt, 4, { kvType: kv, backend: "webgpu" })];
    assert.equal(gpu.backend, "webgpu");
    assert.equal(gpu.kvType, kv);
    // tests/gpu.rs: the GPU keeps the query and the softmax weights in f32 where the CPU engine
    // rounds them as llama.cpp does (f16), or quantizes the query (q8_0): measured on lavapipe up
    // to 0.02 (f16) and 0.13 (q8_0) per logit on this model; f32 agrees to 1e-4.
    const tol = kv === "f32" ? 1e-3 : 0.3;
    const want = new Map(cpu.top);
    for (const [id, lp] of gpu.top) if (want.has(id)) assert.ok(Math.abs(want.get(id) - lp) <= tol, `${kv}: token ${id} logprob ${lp} vs ${want.get(id)}`);
    assert.equal(gpu.top[0][0], gpu.tokens[0], `${kv}: the GPU's argmax is the top logprob`);
    assert.equal(gpu.tokens.length, 4);
  }
});
