// The threaded engine (pkg/threads/): on the cross-origin isolated test server `threads: 2` starts
// rayon's pool on two Web Workers (info.threads counts the threads that ran a task) and greedy
// tokens still equal llama.cpp's goldens; a page that is not isolated (the same files from a
// server that sends no COOP/COEP), an engine without SharedArrayBuffer (WebKitGTK), or a threaded
// build that fails to start (a server that answers 404 under /pkg/threads/) falls back to one
// thread and still works. In the browser under test (HEARTH_BROWSER).
//
// Needs pkg/ with pkg/threads/ (scripts/build-wasm) and the browser.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, root, pkgDir, WORKER_CONSOLE } from "./harness.mjs";

const FIXTURES = ["spm-q4_0", "bpe-q4_k_m"];
const N = 8; // greedy tokens compared per prompt, as api.test.mjs does
const goldens = Object.fromEntries(
  FIXTURES.map((n) => [n, JSON.parse(fs.readFileSync(path.join(root, `tests/golden/model-${n}.json`), "utf8")).cases]),
);

// Three servers of the same files: isolated; not isolated (no COOP/COEP, as a static host);
// isolated but with nothing under /pkg/threads/ (the threaded build cannot start).
let server, plainServer, noThreadsServer, browser, empty;

before(async () => {
  assertPkgBuilt();
  if (!fs.existsSync(path.join(pkgDir, "threads/hearth_wasm_bg.wasm"))) throw new Error("pkg/threads/ is not built: run scripts/build-wasm (without HEARTH_WASM_THREADS=0)");
  const fixtures = fixtureDir(FIXTURES);
  const mounts = { "/fixtures": fixtures, "/test": path.join(root, "tests/browser") };
  empty = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-empty-"));
  server = await startServer({ mounts });
  plainServer = await startServer({ mounts, plain: true });
  noThreadsServer = await startServer({ mounts: { ...mounts, "/pkg/threads": empty } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of [server, plainServer, noThreadsServer]) await s?.close();
  if (empty) fs.rmSync(empty, { recursive: true, force: true });
});

/** A fresh page; `isolated: false`: served without COOP/COEP, so it is not isolated. */
async function openPage(tag, { isolated = true, blockThreads = false } = {}) {
  const page = await browser.newPage();
  logPage(page, tag);
  const warnings = [];
  page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
  const srv = !isolated ? plainServer : blockThreads ? noThreadsServer : server;
  await page.goto(srv.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
  return { page, warnings };
}

/** Load each fixture with `threads` and run every golden prompt greedily. */
async function runGoldens(page, threads) {
  const cases = Object.fromEntries(FIXTURES.map((n) => [n, goldens[n].map((c) => c.prompt)]));
  return page.evaluate(
    async ({ cases, threads, n }) => {
      const out = {};
      for (const [name, prompts] of Object.entries(cases)) {
        const llm = await Hearth.load(`/fixtures/${name}.gguf`, { threads });
        const ids = [];
        for (const prompt of prompts) {
          const got = [];
          for await (const c of llm.generate(prompt, { temperature: 0, stopAtEos: false, maxTokens: n })) if (!c.done) got.push(...c.tokenIds);
          ids.push(got);
        }
        out[name] = { info: llm.info, stats: await llm.stats(), ids };
        await llm.unload();
      }
      return { isolated: self.crossOriginIsolated, sab: typeof SharedArrayBuffer === "function", out };
    },
    { cases, threads, n: N },
  );
}

function assertGoldens(r, threads) {
  for (const name of FIXTURES) {
    const { info, stats, ids } = r.out[name];
    assert.equal(info.threads, threads, `${name}: info.threads`);
    assert.equal(stats.threads, threads, `${name}: stats().threads`);
    assert.ok(stats.wasmMemoryBytes > 1 << 20, `${name}: wasmMemoryBytes ${stats.wasmMemoryBytes}`);
    goldens[name].forEach((c, i) => assert.deepEqual(ids[i], c.greedy.slice(0, N), `${name}: ${JSON.stringify(c.prompt)}`));
  }
}

test("cross-origin isolated: threads: 2 runs a pool of 2 (one thread where the engine has no SharedArrayBuffer) and matches llama.cpp's greedy tokens", async () => {
  const { page, warnings } = await openPage("threads");
  try {
    const r = await runGoldens(page, 2);
    assert.equal(r.isolated, true);
    // WebKitGTK 2.50 is cross-origin isolated but exposes no SharedArrayBuffer (JSC's
    // useSharedArrayBuffer is off): no shared wasm memory, so one thread.
    if (!r.sab) console.log("no SharedArrayBuffer although cross-origin isolated: the engine runs on one thread");
    assertGoldens(r, r.sab ? 2 : 1);
    assert.deepEqual(warnings.filter((w) => /Hearth/.test(w)), []);
    // threads: 1 asks for the single-thread build.
    const one = await page.evaluate(async () => {
      const llm = await Hearth.load("/fixtures/spm-q4_0.gguf", { threads: 1 });
      const t = llm.info.threads;
      await llm.unload();
      return t;
    });
    assert.equal(one, 1);
    // A bad thread count is a typed error.
    const bad = await page.evaluate(() => Hearth.load("/fixtures/spm-q4_0.gguf", { threads: 0 }).then(() => null, (e) => e.code));
    assert.equal(bad, "invalid_argument");
  } finally {
    await page.close();
  }
});

test("not cross-origin isolated: threads: 2 falls back to one thread and still matches", async () => {
  const { page } = await openPage("no-isolation", { isolated: false });
  try {
    const r = await runGoldens(page, 2);
    assert.equal(r.isolated, false);
    assertGoldens(r, 1);
  } finally {
    await page.close();
  }
});

test("a threaded build that cannot start falls back to one thread with a warning", async () => {
  const { page, warnings } = await openPage("blocked", { blockThreads: true });
  try {
    const r = await page.evaluate(async () => {
      const llm = await Hearth.load("/fixtures/spm-q4_0.gguf", { threads: 2 });
      let n = 0;
      for await (const c of llm.generate("Once upon a time", { temperature: 0, stopAtEos: false, maxTokens: 4 })) if (!c.done) n++;
      const t = llm.info.threads;
      await llm.unload();
      return { t, n };
    });
    assert.deepEqual(r, { t: 1, n: 4 });
    // The warning comes from the engine's Worker, whose console the WebKit adapter cannot see.
    if (WORKER_CONSOLE) assert.ok(warnings.some((w) => /threaded engine did not start/.test(w)), JSON.stringify(warnings));
  } finally {
    await page.close();
  }
});
