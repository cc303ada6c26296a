// What the browser under test (HEARTH_BROWSER) offers Hearth, measured and printed as one line
// ("engine support: {...}": the raw data of a browser-support table), with the few facts every
// engine must meet asserted: the test server's page is cross-origin isolated, the engine loads a
// model in a worker and in the page, the build host.js picked is the one the engine's features
// call for (threads only with SharedArrayBuffer, relaxed SIMD only where it validates), and
// "auto" says in words why it runs on the CPU when it does.
//
// Needs pkg/ (scripts/build-wasm) and the browser (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, root, ENGINE } from "./harness.mjs";

let server, browser, page;

before(async () => {
  assertPkgBuilt();
  server = await startServer({ mounts: { "/fixtures": fixtureDir(["spm-q4_0"]), "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
  page = await browser.newPage();
  logPage(page, "engine");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test("the engine's features, and the build and backend Hearth picks in it", async () => {
  const r = await page.evaluate(async () => {
    const out = {
      userAgent: navigator.userAgent,
      crossOriginIsolated: self.crossOriginIsolated,
      sharedArrayBuffer: typeof SharedArrayBuffer === "function",
      cores: navigator.hardwareConcurrency,
    };
    // i32x4.relaxed_dot_i8x16_i7x16_add_s in the smallest module: does the engine validate it?
    const relaxed = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59, 0];
    for (let i = 0; i < 3; i++) relaxed.push(0xfd, 0x0c, ...new Array(16).fill(1));
    relaxed.push(0xfd, 0x93, 0x02, 0x0b);
    out.relaxedSimdValidates = WebAssembly.validate(new Uint8Array(relaxed));
    out.webgpu = "no navigator.gpu";
    if (navigator.gpu) {
      const a = await navigator.gpu.requestAdapter().catch((e) => e);
      out.webgpu = !a ? "no adapter" : a instanceof Error ? `requestAdapter failed: ${a.message}` : { ...Object.fromEntries(["vendor", "architecture", "device", "description"].map((k) => [k, a.info?.[k] ?? ""])), fallback: !!(a.info?.isFallbackAdapter ?? a.isFallbackAdapter), shaderF16: a.features.has("shader-f16") };
    }
    out.storage = {
      storageManager: !!navigator.storage,
      opfs: !!navigator.storage?.getDirectory,
      createWritable: typeof FileSystemFileHandle !== "undefined" && "createWritable" in FileSystemFileHandle.prototype,
      cacheStorage: typeof caches !== "undefined",
      estimate: typeof navigator.storage?.estimate === "function",
      serviceWorker: !!navigator.serviceWorker,
    };
    const m = await Hearth.load("/fixtures/spm-q4_0.gguf");
    out.worker = { threads: m.info.threads, simd: m.info.simd, backend: m.info.backend, backendFallback: m.info.backendFallback ?? null };
    await m.unload();
    const local = await Hearth.load("/fixtures/spm-q4_0.gguf", { worker: false });
    out.page = { threads: local.info.threads, simd: local.info.simd };
    await local.unload();
    return out;
  });
  console.log(`engine support: ${JSON.stringify({ engine: ENGINE, version: browser.version?.() ?? null, ...r })}`);
  assert.equal(r.crossOriginIsolated, true, "the test server's headers isolate the page");
  assert.equal(r.page.threads, 1, "the page's own thread is one thread");
  assert.equal(r.worker.simd, r.relaxedSimdValidates ? "relaxed" : "simd128", "relaxed SIMD exactly where the engine validates it");
  assert.equal(r.page.simd, r.worker.simd);
  if (!r.sharedArrayBuffer) assert.equal(r.worker.threads, 1, "no SharedArrayBuffer, no threads");
  else assert.equal(r.worker.threads, Math.min(r.cores, 8), "a thread per core (at most 8) where the engine has SharedArrayBuffer");
  if (r.worker.backend === "cpu") assert.match(r.worker.backendFallback ?? "", /\w+ \w+/, "auto on the CPU says why, in words");
});
