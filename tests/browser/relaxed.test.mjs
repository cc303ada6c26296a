// The relaxed-SIMD builds (pkg/hearth_wasm_relaxed_bg.wasm, pkg/threads/hearth_wasm_relaxed_bg.wasm):
// an engine that validates relaxed SIMD (Chromium, Firefox) passes host.js's probe, so both the
// single-thread and the threaded engine run their relaxed variant (info.simd), and they give
// exactly the plain SIMD128 builds' tokens and log-probabilities (same integers in the kernels,
// same float steps) for every quantized weight family, and llama.cpp's greedy tokens where the
// goldens pin them. With the relaxed modules unreachable (a server whose /pkg/ lacks them) the
// plain builds run, with a warning. An engine without relaxed SIMD (WebKit) runs the plain builds.
// In the browser under test (HEARTH_BROWSER).
//
// Needs pkg/ with both variants of both builds (scripts/build-wasm) and the browser.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, root, pkgDir, WORKER_CONSOLE } from "./harness.mjs";

// Q4_0 / Q5_1 / Q8_0 (the 32-value kinds: offset, minimum, signed) and every K-quant.
const FIXTURES = ["bpe-q4_0", "bpe-q5_1", "bpe-q8_0", "bpe-q2_k", "bpe-q3_k", "bpe-q4_k_m", "bpe-q5_k", "spm-q4_0"];
// llama.cpp's greedy tokens are compared where they are exact for this many steps (api.test.mjs).
const GOLDEN = ["spm-q4_0", "bpe-q4_k_m"];
const N = 8;
const prompts = Object.fromEntries(
  FIXTURES.map((n) => [n, JSON.parse(fs.readFileSync(path.join(root, `tests/golden/model-${n}.json`), "utf8")).cases[0]]),
);

/**
 * The smallest module with i32x4.relaxed_dot_i8x16_i7x16_add_s: whether the engine validates
 * relaxed SIMD, asked independently of host.js's own probe.
 */
const RELAXED_MODULE = [
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x3d, 0x01, 0x3b, 0x00, // code: one body of 59 bytes, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array(16).fill(1)]), // three v128.const
  0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s
  0x0b,
];

// The same files twice: pkg/ as built, and a copy without the relaxed modules.
let server, plainServer, browser, plainPkg, relaxedSupported;

before(async () => {
  assertPkgBuilt();
  for (const f of ["hearth_wasm_relaxed_bg.wasm", "threads/hearth_wasm_relaxed_bg.wasm"]) {
    if (!fs.existsSync(path.join(pkgDir, f))) throw new Error(`pkg/${f} is not built: run scripts/build-wasm (without HEARTH_WASM_RELAXED=0)`);
  }
  const fixtures = fixtureDir(FIXTURES);
  plainPkg = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-plain-pkg-"));
  fs.cpSync(pkgDir, plainPkg, { recursive: true, filter: (src) => !src.endsWith("_relaxed_bg.wasm") });
  const mounts = { "/fixtures": fixtures, "/test": path.join(root, "tests/browser") };
  server = await startServer({ mounts });
  plainServer = await startServer({ mounts: { ...mounts, "/pkg": plainPkg } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
  await plainServer?.close();
  if (plainPkg) fs.rmSync(plainPkg, { recursive: true, force: true });
});

/** Every fixture at 1 and 2 threads: info, tokens and top-5 log-probabilities of N greedy steps. */
async function runAll({ blockRelaxed }) {
  const page = await browser.newPage();
  // The plain run's fallback warnings are expected (and asserted below), not logged.
  if (blockRelaxed) page.on("pageerror", (e) => console.log(`[plain pageerror] ${e.message}`));
  else logPage(page, "relaxed");
  const warnings = [];
  page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
  try {
    await page.goto((blockRelaxed ? plainServer : server).url + "test/api.html");
    await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
    relaxedSupported ??= await page.evaluate((bytes) => WebAssembly.validate(new Uint8Array(bytes)), RELAXED_MODULE);
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
            out[`${name} ${threads}t`] = { info: llm.info, stats: await llm.stats(), ids, logprobs, sab: typeof SharedArrayBuffer === "function" };
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

test("the relaxed-SIMD builds run where the engine validates relaxed SIMD, with exactly the SIMD128 builds' tokens and log-probabilities", async () => {
  const relaxed = await runAll({ blockRelaxed: false });
  const plain = await runAll({ blockRelaxed: true });
  console.log(`relaxed SIMD ${relaxedSupported ? "validates" : "does not validate"} in this engine`);
  assert.deepEqual(relaxed.warnings.filter((w) => /Hearth/.test(w)), []);
  // The fallback warns only where relaxed SIMD was tried, from the Worker (not seen in WebKit).
  if (relaxedSupported && WORKER_CONSOLE) assert.ok(plain.warnings.some((w) => /relaxed-SIMD engine did not start/.test(w)), JSON.stringify(plain.warnings));
  for (const key of Object.keys(relaxed.out)) {
    const [name, t] = key.split(" ");
    const threads = Number.parseInt(t, 10);
    const r = relaxed.out[key];
    const p = plain.out[key];
    // Two threads where the engine has SharedArrayBuffer (threads.test.mjs), else one.
    assert.equal(r.info.threads, r.sab ? threads : 1, `${key}: threads`);
    assert.equal(p.info.threads, r.sab ? threads : 1, `${key}: threads (plain)`);
    const want = relaxedSupported ? "relaxed" : "simd128";
    assert.equal(r.info.simd, want, `${key}: the ${want} build runs`);
    assert.equal(r.stats.simd, want, `${key}: stats().simd`);
    assert.equal(p.info.simd, "simd128", `${key}: the plain build runs when the relaxed one cannot load`);
    assert.equal(r.ids.length, N, key);
    assert.deepEqual(r.ids, p.ids, `${key}: tokens`);
    assert.deepEqual(r.logprobs, p.logprobs, `${key}: log-probabilities`);
    if (GOLDEN.includes(name)) assert.deepEqual(r.ids, prompts[name].greedy.slice(0, N), `${key}: llama.cpp's greedy tokens`);
  }
});
