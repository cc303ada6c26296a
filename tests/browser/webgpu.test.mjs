// The WebGPU backend in each engine's adapter (headless Chromium: SwiftShader, no shader-f16, so the
// f32 paths run; Firefox on lavapipe has shader-f16, so the f16 paths run): the fixtures give the CPU backend's results within tolerance, greedy steps pick the token
// on the GPU, and a lost device ends that generation with "device_lost" while the next request
// runs on the CPU.
//
// Needs pkg/ (scripts/build-wasm), Chromium and playwright-core (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { openApiPage, fixtureDir, ENGINE_NAME } from "./harness.mjs";

// Every weight type (the bpe fixtures: grouped-query attention, tied embeddings, llama3 rope), and
// the spm model in f32 (multi-head attention), where greedy tokens must match exactly.
const QUANTS = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q4_k_m", "q5_k", "q6_k"];
const FIXTURES = ["spm-f32", ...QUANTS.map((q) => `bpe-${q}`)];

let server, browser, page, adapter;

before(async () => {
  ({ server, browser, page, adapter } = await openApiPage("webgpu", fixtureDir(FIXTURES)));
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Greedy tokens and the first step's top log-probabilities of `fixture` on `backend`. */
function run(fixture, backend) {
  return page.evaluate(
    async ({ fixture, backend }) => {
      // An f32 KV cache on both: with the default f16 one the CPU engine also rounds the query and
      // the softmax weights to f16, as llama.cpp does, where the GPU keeps them in f32
      // (tests/browser/kv-types.test.mjs compares the other cache types).
      const m = await Hearth.load(`/fixtures/${fixture}.gguf`, { backend, contextSize: 128, kvType: "f32" });
      const adapter = await navigator.gpu.requestAdapter();
      const out = { backend: m.info.backend, gpu: m.info.gpu, adapterF16: adapter.features.has("shader-f16"), tokens: [], top: null };
      // Greedy without logprobs: the GPU picks each token itself.
      for await (const c of m.generate("The quick brown fox", { maxTokens: 4, temperature: 0, stopAtEos: false })) out.tokens.push(...c.tokenIds);
      // With logprobs the logits come back whole.
      for await (const c of m.generate("The quick brown fox", { maxTokens: 1, temperature: 0, stopAtEos: false, logprobs: 5 })) {
        if (c.logprobs) out.top = c.logprobs[0].topLogprobs.map((t) => [t.id, t.logprob]);
      }
      await m.unload();
      return out;
    },
    { fixture, backend },
  );
}

test(`every fixture's weight type gives the CPU backend's results in ${ENGINE_NAME}'s adapter`, async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  for (const fixture of FIXTURES) {
    const [cpu, gpu] = [await run(fixture, "cpu"), await run(fixture, "webgpu")];
    assert.equal(cpu.backend, "cpu");
    assert.equal(gpu.backend, "webgpu", fixture);
    assert.equal(gpu.gpu.shaderF16, gpu.adapterF16, "the f16 paths run exactly where the adapter has shader-f16");
    // The GPU keeps activations in f32 where the CPU rounds them to 8 bits before quantized
    // matmuls (as llama.cpp does): exact agreement on float weights, tenths on these small,
    // high-gain random models otherwise (tests/gpu.rs holds the GPU to 1e-4 of exact f32).
    const tol = fixture.endsWith("f32") ? 1e-3 : fixture.endsWith("-f16") ? 0.05 : 1.5;
    const want = new Map(cpu.top);
    for (const [id, lp] of gpu.top) if (want.has(id)) assert.ok(Math.abs(want.get(id) - lp) <= tol, `${fixture}: token ${id} logprob ${lp} vs ${want.get(id)}`);
    assert.equal(gpu.top[0][0], gpu.tokens[0], `${fixture}: the GPU's argmax is the top logprob`);
    if (fixture.endsWith("f32")) assert.deepEqual(gpu.tokens, cpu.tokens, "f32: the same greedy tokens");
    assert.equal(gpu.tokens.length, 4);
  }
});

test("a GPU device lost mid-generation ends it with device_lost; the next request runs on the CPU", async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  const r = await page.evaluate(async () => {
    const m = await Hearth.load("/fixtures/spm-f32.gguf", { backend: "webgpu", contextSize: 128, kvType: "f32" });
    const opts = { maxTokens: 6, temperature: 0, stopAtEos: false };
    const before = [];
    for await (const c of m.generate("Once upon a time", opts)) before.push(...c.tokenIds);
    let code = null;
    const partial = [];
    // The worker destroys the device after the second token of the next generation.
    await m._debugLoseDevice(2);
    try {
      for await (const c of m.generate("Once upon a time", opts)) partial.push(...c.tokenIds);
    } catch (e) {
      code = e.code;
    }
    const after = [];
    let final;
    for await (const c of m.generate("Once upon a time", opts)) {
      after.push(...c.tokenIds);
      if (c.done) final = c;
    }
    await m.unload();
    return { before, partial, code, after, finish: final.finishReason };
  });
  assert.equal(r.code, "device_lost");
  assert.deepEqual(r.partial, r.before.slice(0, 2), "two tokens, then the step on the lost device failed");
  assert.deepEqual(r.after, r.before, "the CPU continues with the same tokens");
  assert.equal(r.finish, "length");
});
