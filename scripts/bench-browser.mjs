#!/usr/bin/env node
// Hearth in headless Chromium on a model with Llama-3.2-1B's exact shape (random weights, written
// by `hearth fixture --bench`, not committed): wasm size, load time, prefill and decode tokens/s
// (83-token prompt, 64 greedy tokens), single thread. Usage: node scripts/bench-browser.mjs [QUANT ...]
// (default q4_k_m). Needs pkg/ (scripts/build-wasm) and Chromium (scripts/test installs it).

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { startServer, launchBrowser, assertPkgBuilt, root } from "../tests/browser/harness.mjs";

const quants = process.argv.slice(2).length ? process.argv.slice(2) : ["q4_k_m"];
const PROMPT_TOKENS = 83;
const NEW_TOKENS = 64;

assertPkgBuilt();
const target = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(root, "target");
const benchDir = path.join(target, "bench-models");
execFileSync("cargo", ["build", "--quiet", "--release", "--bin", "hearth"], { cwd: root, stdio: "inherit" });
for (const q of quants) {
  if (!fs.existsSync(path.join(benchDir, `llama1b-${q}.gguf`))) {
    console.error(`writing llama1b-${q}.gguf ...`);
    execFileSync(path.join(target, "release", "hearth"), ["fixture", "--bench", "--out", benchDir, "--only", q], { stdio: "inherit" });
  }
}

const wasm = fs.readFileSync(path.join(root, "pkg", "hearth_wasm_bg.wasm"));
const server = await startServer({ mounts: { "/bench": benchDir, "/test": path.join(root, "tests/browser") } });
const browser = await launchBrowser();
const rows = [];
try {
  for (const q of quants) {
    const page = await browser.newPage();
    await page.goto(server.url + "test/api.html");
    await page.waitForFunction(() => window.hearthReady === true);
    const r = await page.evaluate(async ({ url, promptTokens, newTokens }) => {
      const t0 = performance.now();
      const llm = await window.Hearth.load(url, { contextSize: 512 });
      const loadMs = performance.now() - t0;
      const text = "The hearth keeps the kitchen warm while the quick brown fox jumps over the lazy dog. ".repeat(12);
      const ids = (await llm.tokenize(text, { addSpecial: true })).slice(0, promptTokens);
      let last;
      for await (const chunk of llm.generate(ids, { maxTokens: newTokens, temperature: 0, stopAtEos: false })) last = chunk;
      await llm.unload();
      return { loadMs, promptTokens: ids.length, ...last.timing, completionTokens: last.usage.completionTokens };
    }, { url: `/bench/llama1b-${q}.gguf`, promptTokens: PROMPT_TOKENS, newTokens: NEW_TOKENS });
    const size = fs.statSync(path.join(benchDir, `llama1b-${q}.gguf`)).size;
    rows.push({
      quant: q,
      modelMB: +(size / 1e6).toFixed(0),
      loadS: +(r.loadMs / 1e3).toFixed(2),
      prefillTokS: +(r.promptTokens / (r.promptMs / 1e3)).toFixed(2),
      decodeTokS: +r.tokensPerSecond.toFixed(2),
      promptTokens: r.promptTokens,
      completionTokens: r.completionTokens,
    });
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
}
console.log(`Hearth in headless Chromium, 1 thread, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}`);
console.log(`wasm: ${(wasm.length / 1e6).toFixed(2)} MB raw, ${(zlib.gzipSync(wasm, { level: 9 }).length / 1e6).toFixed(2)} MB gzipped`);
console.table(rows);
