// WebGPU loads keep the weights out of the wasm heap: the stream hands each tensor on in pieces
// of whole rows (4 MiB) that go straight into GPU buffers (queue.writeBuffer at an offset), so the
// engine's memory (`llm.stats().wasmMemoryBytes`, which only grows: it is the peak) holds the
// vocabulary, the norms, logits and one piece, whatever the size of the weights. In headless
// Chromium's adapter (SwiftShader):
// - the real model (SmolLM2-135M Q4_1, 98 MB): the CPU engine's memory holds the weights, the
//   WebGPU engine's holds none of them (the difference is at least 90% of the weights) and stays
//   within the preflight's estimate (`webgpuHeap`);
// - the model over 4 GiB (`hearth fixture --big`, 4.5 GB; its F16 embedding table alone 4.06
//   GiB, more than a wasm32 memory can hold) loads through the wasm32 engine onto the GPU with a
//   heap under 1/16 of its weights, and generates the native CLI's greedy tokens.
//
// Needs pkg/ (scripts/build-wasm), Chromium, playwright-core, the real model (scripts/test) and
// the big model (harness.mjs bigModel: $HEARTH_BIG_MODEL, or ~/.cache/hearth/big/, written if missing;
// about 5 GB of memory while it runs).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startServer, launchBrowser, logPage, assertPkgBuilt, bigModel, bigModelNative, withBigModelLock, realModel, root, ENGINE_NAME } from "./harness.mjs";

const PROMPT = "The capital of France is";
const TOKENS = 2;
// Each of the big model's steps multiplies by its 4 GiB embedding table (tied output): about 50 s
// in SwiftShader. The prompt's step alone reads every buffer the table is split into (the lookup
// and the output), which is what this model is for; the decode steps are the small models'.
const BIG_TOKENS = 1;
const CTX = 256;

let server, browser, big, real, adapter;

before(async () => {
  assertPkgBuilt();
  real = realModel();
  big = bigModel();
  server = await startServer({ mounts: { "/big": path.dirname(big), "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
  const page = await browser.newPage();
  await page.goto(server.url + "test/api.html");
  adapter = await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter()));
  await page.close();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Load `url` on each backend in turn (a fresh Worker, so a fresh wasm memory, each), generate. */
async function loadOn(url, backends, n = TOKENS) {
  const page = await browser.newPage();
  logPage(page, "gpu-memory");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
  const r = await page.evaluate(
    async ({ url, backends, prompt, n, ctx }) => {
      const out = { plan: await window.Hearth.inspect(url, { contextSize: ctx }) };
      for (const backend of backends) {
        try {
          const t = performance.now();
          const llm = await window.Hearth.load(url, { backend, contextSize: ctx });
          const loadMs = performance.now() - t;
          const loaded = (await llm.stats()).wasmMemoryBytes;
          const tokens = [];
          const g = performance.now();
          for await (const c of llm.generate(prompt, { maxTokens: n, temperature: 0, stopAtEos: false })) tokens.push(...c.tokenIds);
          const genMs = performance.now() - g;
          const stats = await llm.stats();
          out[backend] = { backend: llm.info.backend, engine: stats.engine, loadMs, genMs, loaded, memory: stats.wasmMemoryBytes, tokens };
          await llm.unload();
        } catch (e) {
          out[backend] = { error: { code: e.code, message: e.message } };
        }
      }
      return out;
    },
    { url, backends, prompt: PROMPT, n, ctx: CTX },
  );
  await page.close();
  return r;
}

const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

test(`a WebGPU load keeps the real model's weights out of the wasm heap in ${ENGINE_NAME}`, async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  const r = await loadOn(new URL(real.url, server.url).href, ["cpu", "webgpu"]);
  const { cpu, webgpu, plan } = r;
  assert.ok(!cpu.error && !webgpu.error, JSON.stringify(r));
  console.log(`# real model, weights ${mib(plan.webgpu.weights)}: wasm memory CPU ${mib(cpu.memory)}, WebGPU ${mib(webgpu.memory)} (estimate ${mib(plan.webgpuHeap)}); load CPU ${cpu.loadMs.toFixed(0)} ms, WebGPU ${webgpu.loadMs.toFixed(0)} ms`);
  assert.equal(webgpu.backend, "webgpu");
  assert.equal(webgpu.tokens.length, TOKENS);
  assert.ok(webgpu.memory <= plan.webgpuHeap, `WebGPU engine memory ${webgpu.memory} over the estimate ${plan.webgpuHeap}`);
  assert.ok(cpu.memory - webgpu.memory >= 0.9 * plan.cpu.weights, `the WebGPU engine's memory (${webgpu.memory}) holds weights: the CPU one's is ${cpu.memory}, weights ${plan.cpu.weights}`);
});

test(`a model over 4 GiB loads onto WebGPU through the wasm32 engine in ${ENGINE_NAME}, its heap a fraction of it`, (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  return withBigModelLock(async () => {
    const size = fs.statSync(big).size;
    assert.ok(size > 4 * 2 ** 30, `${big} is not over 4 GiB`);
    const r = await loadOn(new URL(`big/${path.basename(big)}`, server.url).href, ["webgpu"], BIG_TOKENS);
    console.log(`# big model (${(size / 2 ** 30).toFixed(2)} GiB): ${JSON.stringify(r.webgpu)}; estimate heap ${mib(r.plan.webgpuHeap)}, fits ${JSON.stringify(r.plan.fits)}`);
    assert.ok(!r.webgpu.error, `the model over 4 GiB did not load on WebGPU: ${JSON.stringify(r.webgpu.error)}`);
    // The memory64 test's run (4 tokens), of which this checks the first.
    const native = bigModelNative(big, PROMPT, 4, CTX);
    assert.equal(r.webgpu.backend, "webgpu");
    assert.equal(r.webgpu.engine, "wasm32");
    assert.ok(r.webgpu.memory <= r.plan.webgpuHeap, `engine memory ${r.webgpu.memory} over the estimate ${r.plan.webgpuHeap}`);
    assert.ok(r.webgpu.memory < r.plan.webgpu.weights / 16, `engine memory ${r.webgpu.memory} for ${r.plan.webgpu.weights} bytes of weights`);
    assert.deepEqual(r.webgpu.tokens, native.tokens.slice(0, BIG_TOKENS), "the native CLI's greedy tokens");
  });
});
