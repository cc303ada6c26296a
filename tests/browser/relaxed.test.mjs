// The relaxed-SIMD builds (pkg/hearth_wasm_relaxed_bg.wasm, pkg/threads/hearth_wasm_relaxed_bg.wasm):
// Chromium passes host.js's probe, so both the single-thread and the threaded engine run their
// relaxed variant (info.simd), and they give exactly the plain SIMD128 builds' tokens and
// log-probabilities (same integers in the kernels, same float steps) for every quantized weight
// family, and llama.cpp's greedy tokens where the goldens pin them. With the relaxed modules
// unreachable the plain builds run, with a warning.
//
// Needs pkg/ with both variants of both builds (scripts/build-wasm), Chromium and playwright-core.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, root } from "./harness.mjs";

// Q4_0 / Q5_1 / Q8_0 (the 32-value kinds: offset, minimum, signed) and every K-quant.
const FIXTURES = ["bpe-q4_0", "bpe-q5_1", "bpe-q8_0", "bpe-q2_k", "bpe-q3_k", "bpe-q4_k_m", "bpe-q5_k", "spm-q4_0"];
// llama.cpp's greedy tokens are compared where they are exact for this many steps (api.test.mjs).
const GOLDEN = ["spm-q4_0", "bpe-q4_k_m"];
const N = 8;
const prompts = Object.fromEntries(
  FIXTURES.map((n) => [n, JSON.parse(fs.readFileSync(path.join(root, `tests/golden/model-${n}.json`), "utf8")).cases[0]]),
);

let server, browser;

before(async () => {
  assertPkgBuilt();
  for (const f of ["pkg/hearth_wasm_relaxed_bg.wasm", "pkg/threads/hearth_wasm_relaxed_bg.wasm"]) {
    if (!fs.existsSync(path.join(root, f))) throw new Error(`${f} is not built: run scripts/build-wasm (without HEARTH_WASM_RELAXED=0)`);
  }
  const fixtures = fixtureDir(FIXTURES);
  server = await startServer({ mounts: { "/fixtures": fixtures, "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Every fixture at 1 and 2 threads: info, tokens and top-5 log-probabilities of N greedy steps. */
async function runAll({ blockRelaxed }) {
  const page = await browser.newPage();
  // The plain run's fallback warnings are expected (and asserted below), not logged.
  if (blockRelaxed) page.on("pageerror", (e) => console.log(`[plain pageerror] ${e.message}`));
  else logPage(page, "relaxed");
  const warnings = [];
  page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
  if (blockRelaxed) await page.route("**/hearth_wasm_relaxed_bg.wasm", (route) => route.abort());
  try {
    await page.goto(server.url + "test/api.html");
    await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
    const cases = Object.fromEntries(FIXTURES.map((n) => [n, prompts[n].prompt]));
    const out = await page.evaluate(
      async ({ cases, n }) => {
        const out = {};
        for (const threads of [1, 2]) {
          for (const [name, prompt] of Object.entries(cases)) {
            const llm = await Hearth.load(`/fixtures/${name}.gguf`, { threads });
            const ids = [];
            const logprobs = [];
            for await (const c of llm.generate(prompt, { temperature: 0, stopAtEos: false, maxTokens: n, logprobs: 5 })) {
              if (c.done) continue;
              ids.push(...c.tokenIds);
              for (const l of c.logprobs ?? []) logprobs.push([l.logprob, ...l.topLogprobs.map((t) => [t.id, t.logprob])]);
            }
            out[`${name} ${threads}t`] = { info: llm.info, stats: await llm.stats(), ids, logprobs };
            await llm.unload();
          }
        }
        return out;
      },
      { cases, n: N },
    );
    return { out, warnings };
  } finally {
    await page.close();
  }
}

test("Chromium runs the relaxed-SIMD builds, with exactly the SIMD128 builds' tokens and log-probabilities", async () => {
  const relaxed = await runAll({ blockRelaxed: false });
  const plain = await runAll({ blockRelaxed: true });
  assert.deepEqual(relaxed.warnings.filter((w) => /Hearth/.test(w)), []);
  assert.ok(plain.warnings.some((w) => /relaxed-SIMD engine did not start/.test(w)), JSON.stringify(plain.warnings));
  for (const key of Object.keys(relaxed.out)) {
    const [name, t] = key.split(" ");
    const threads = Number.parseInt(t, 10);
    const r = relaxed.out[key];
    const p = plain.out[key];
    assert.equal(r.info.threads, threads, `${key}: threads`);
    assert.equal(p.info.threads, threads, `${key}: threads (plain)`);
    assert.equal(r.info.simd, "relaxed", `${key}: the relaxed build runs`);
    assert.equal(r.stats.simd, "relaxed", `${key}: stats().simd`);
    assert.equal(p.info.simd, "simd128", `${key}: the plain build runs when the relaxed one cannot load`);
    assert.equal(r.ids.length, N, key);
    assert.deepEqual(r.ids, p.ids, `${key}: tokens`);
    assert.deepEqual(r.logprobs, p.logprobs, `${key}: log-probabilities`);
    if (GOLDEN.includes(name)) assert.deepEqual(r.ids, prompts[name].greedy.slice(0, N), `${key}: llama.cpp's greedy tokens`);
  }
});
