// CPU past wasm32's 4 GiB where the engine has memory64 (Chromium 133+, Firefox 134+; WebKit has
// none and refuses the model with model_too_big before downloading it): a model over 4 GiB
// (`hearth fixture --big`: big-f16.gguf, 4.5 GB, its F16 embedding table alone 4.06 GiB) is sized
// by Hearth.inspect for the memory64 build (cpuEngine "wasm64"), loads on the CPU through it
// (pkg/wasm64/, info.engine "wasm64", a wasm memory past 4 GiB) and its greedy tokens equal the
// native CLI's; the same object then loads a small model, which runs on the wasm32 build again
// (a fresh Worker: the memory64 one held the big model) and gives llama.cpp's tokens.
//
// Needs pkg/ with pkg/wasm64/ (scripts/build-wasm without HEARTH_WASM64=0), Chromium and
// playwright-core; about 4.5 GB of disk for the model (written once to ~/.cache/hearth/big/ by the native
// CLI, or $HEARTH_BIG_MODEL) and about 6 GB of memory while it runs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, bigModel, bigModelNative, withBigModelLock, root, ENGINE, ENGINE_NAME, onlyIn } from "./harness.mjs";

const golden = JSON.parse(fs.readFileSync(path.join(root, "tests/golden/model-spm-q4_0.json"), "utf8"));
const CASE = golden.cases[0];
const PROMPT = "The capital of France is";
const TOKENS = 4;
const CTX = 256;

let server, browser, big;

before(async () => {
  assertPkgBuilt();
  if (!fs.existsSync(path.join(root, "pkg/wasm64/hearth_wasm_bg.wasm"))) throw new Error("pkg/wasm64/ is not built: run scripts/build-wasm (without HEARTH_WASM64=0)");
  big = bigModel();
  assert.ok(fs.statSync(big).size > 4 * 2 ** 30, `${big} is not over 4 GiB`);
  const fixtures = fixtureDir(["spm-q4_0"]);
  server = await startServer({ mounts: { "/fixtures": fixtures, "/big": path.dirname(big), "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

// Firefox ran this in 45 s before weights streamed in pieces (4.29 GiB of wasm memory now, 8.5 GiB
// then); since, its content process spins at full CPU for over ten minutes in it: skipped there
// until that is understood, with a time limit everywhere so a stuck load fails instead of hanging CI.
const FIREFOX_STUCK = ENGINE === "firefox" ? { skip: "firefox: the memory64 load has run for over 10 minutes since weights stream in pieces (under investigation)" } : {};

test("a model over 4 GiB loads on the CPU through the memory64 build and generates the native CLI's tokens", { ...FIREFOX_STUCK, timeout: 600000 }, () => withBigModelLock(async () => {
  const page = await browser.newPage();
  logPage(page, "memory64");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true);
  const url = new URL(`big/${path.basename(big)}`, server.url).href;
  const r = await page.evaluate(
    async ({ url, small, prompt, smallPrompt, n, ctx }) => {
      const out = {};
      const { memory64Works } = await import("/pkg/preflight.js");
      out.memory64 = memory64Works();
      if (!out.memory64) {
        // An engine without memory64 (WebKit) refuses the model before downloading it, in words.
        try {
          await window.Hearth.load(url, { backend: "cpu", contextSize: ctx });
          out.big = "loaded";
        } catch (e) {
          out.big = { code: e.code, message: e.message };
        }
        return out;
      }
      const plan = await window.Hearth.inspect(url, { contextSize: ctx });
      out.plan = { total: plan.cpu.total, fits: plan.fits, cpuEngine: plan.cpuEngine, limits: plan.limits };
      out.smallEngine = (await window.Hearth.inspect(small)).cpuEngine;
      let t = performance.now();
      const phases = new Set();
      const llm = await window.Hearth.load(url, { backend: "cpu", contextSize: ctx, onProgress: (p) => phases.add(p.phase) });
      out.loadMs = performance.now() - t;
      out.phases = [...phases];
      out.info = { engine: llm.info.engine, backend: llm.info.backend, simd: llm.info.simd, threads: llm.info.threads, nVocab: llm.info.nVocab };
      t = performance.now();
      out.tokens = [];
      let final;
      for await (const c of llm.generate(prompt, { maxTokens: n, temperature: 0, stopAtEos: false })) {
        out.tokens.push(...c.tokenIds);
        if (c.done) final = c;
      }
      out.genMs = performance.now() - t;
      out.timing = final.timing;
      out.stats = await llm.stats();
      // The same object, a small model: back on the wasm32 build (a fresh Worker).
      await llm.load(small, { backend: "cpu" });
      out.smallInfo = { engine: llm.info.engine, simd: llm.info.simd };
      out.smallTokens = [];
      for await (const c of llm.generate(smallPrompt, { maxTokens: 4, temperature: 0, stopAtEos: false })) out.smallTokens.push(...c.tokenIds);
      out.smallStats = await llm.stats();
      await llm.unload();
      return out;
    },
    { url, small: new URL("fixtures/spm-q4_0.gguf", server.url).href, prompt: PROMPT, smallPrompt: CASE.prompt, n: TOKENS, ctx: CTX },
  );
  await page.close();
  if (!r.memory64) {
    console.log(`# no memory64 in ${ENGINE_NAME}: ${JSON.stringify(r.big)}`);
    assert.notEqual(ENGINE, "chromium", "Chromium validates a memory64 module");
    assert.equal(r.big.code, "model_too_big", JSON.stringify(r.big));
    assert.match(r.big.message, /no memory64/);
    return;
  }
  const t0 = Date.now();
  const native = bigModelNative(big, PROMPT, TOKENS, CTX);
  console.log(`# native: ${native.tokens.join(" ")} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  const gib = (b) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  console.log(
    `# ${path.basename(big)}: needs ${gib(r.plan.total)} on the CPU (wasm64 limit ${gib(r.plan.limits.wasm64Bytes)}, deviceMemory ${r.plan.limits.deviceMemoryBytes === null ? "not reported" : gib(r.plan.limits.deviceMemoryBytes)}); loaded on ${r.info.engine} in ${(r.loadMs / 1000).toFixed(0)} s, ` +
      `wasm memory ${gib(r.stats.wasmMemoryBytes)}; ${TOKENS} tokens in ${(r.genMs / 1000).toFixed(0)} s (prompt ${(r.timing.promptMs / 1000).toFixed(1)} s, ${r.timing.tokensPerSecond.toFixed(2)} tok/s): ${r.tokens.join(" ")}`,
  );
  assert.ok(r.plan.total > 4 * 2 ** 30, `the plan is ${r.plan.total} bytes`);
  assert.equal(r.plan.limits.wasmBytes, 4 * 2 ** 30);
  assert.ok(r.plan.limits.wasm64Bytes > r.plan.total, JSON.stringify(r.plan.limits));
  assert.deepEqual(r.plan.fits.cpu, true);
  assert.equal(r.plan.cpuEngine, "wasm64");
  assert.equal(r.smallEngine, "wasm32");
  assert.equal(r.phases[0], "inspect");
  assert.deepEqual(r.info, { engine: "wasm64", backend: "cpu", simd: "simd128", threads: 1, nVocab: 532480 });
  assert.ok(r.stats.wasmMemoryBytes > 4 * 2 ** 30, `wasm memory ${r.stats.wasmMemoryBytes}`);
  assert.ok(r.stats.wasmMemoryBytes <= r.plan.total, `wasm memory ${r.stats.wasmMemoryBytes} over the estimate ${r.plan.total}`);
  assert.deepEqual(r.tokens, native.tokens, "memory64 engine vs native CLI, greedy");
  assert.equal(r.smallInfo.engine, "wasm32");
  assert.ok(r.smallStats.wasmMemoryBytes < 1 << 30, `the small model's engine holds ${r.smallStats.wasmMemoryBytes} bytes: not a fresh one`);
  assert.deepEqual(r.smallTokens, CASE.greedy.slice(0, 4), "the small model on wasm32 after the memory64 one");
}));

test("without the memory64 build (HEARTH_WASM64=0) a model over 4 GiB is refused before its weights download", onlyIn(["chromium"], "needs request interception (page.route), which only playwright gives"), async () => {
  const page = await browser.newPage();
  logPage(page, "no-wasm64");
  // As a package built without pkg/wasm64/ would answer.
  await page.route("**/pkg/wasm64/**", (route) => route.fulfill({ status: 404, body: "" }));
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true);
  const r = await page.evaluate(
    async ({ url, small, prompt }) => {
      const out = {};
      try {
        await window.Hearth.load(url, { backend: "cpu", contextSize: 256 });
        out.big = "loaded";
      } catch (e) {
        out.big = { code: e.code, message: e.message };
      }
      const llm = await window.Hearth.load(small, { backend: "cpu" });
      out.engine = llm.info.engine;
      out.tokens = [];
      for await (const c of llm.generate(prompt, { maxTokens: 4, temperature: 0, stopAtEos: false })) out.tokens.push(...c.tokenIds);
      await llm.unload();
      return out;
    },
    { url: new URL(`big/${path.basename(big)}`, server.url).href, small: new URL("fixtures/spm-q4_0.gguf", server.url).href, prompt: CASE.prompt },
  );
  await page.close();
  console.log(`# without pkg/wasm64/: ${JSON.stringify(r.big)}`);
  assert.equal(r.big.code, "model_too_big", JSON.stringify(r.big));
  assert.match(r.big.message, /past wasm32's 4 GiB, and the memory64 engine did not start/);
  assert.equal(r.engine, "wasm32");
  assert.deepEqual(r.tokens, CASE.greedy.slice(0, 4));
});
