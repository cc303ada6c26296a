#!/usr/bin/env node
// Issue 20's figure in headless Chromium: a conversation of N tokens (default 2,000: the start of
// www/eval/sample.txt) on the real model, SmolLM2-135M-Instruct Q4_1 ($HEARTH_REAL_MODEL),
// continued after a reload (a fresh engine in a new Worker) by re-reading it (prefill) or by
// `restoreSession` (its KV cache back from OPFS). Prints both times and what the next turn read.
// Usage: HEARTH_REAL_MODEL=... node scripts/bench-session-browser.mjs [tokens]. Needs pkg/
// (scripts/build-wasm). Not part of scripts/test.

import fs from "node:fs";
import path from "node:path";
import { realModelBench, root } from "../tests/browser/harness.mjs";

const n = Number(process.argv[2] || 2000);
const { url, server, browser } = await realModelBench();
try {
  const page = await browser.newPage();
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true);
  const text = fs.readFileSync(path.join(root, "www/eval/sample.txt"), "utf8");
  const r = await page.evaluate(
    async ({ url, text, n }) => {
      const bytes = await (await fetch(url)).arrayBuffer();
      const load = () => Hearth.load(new File([bytes], "model.gguf"), { contextSize: 2048 });
      const run = async (m, ids, maxTokens) => {
        const out = { ids: [], timing: null, usage: null };
        for await (const c of m.generate(ids, { maxTokens, temperature: 0, stopAtEos: false })) {
          if (c.tokenIds) out.ids.push(...c.tokenIds);
          if (c.done) [out.timing, out.usage] = [c.timing, c.usage];
        }
        return out;
      };
      const a = await load();
      const conversation = (await a.tokenize(text)).slice(0, n);
      const first = await run(a, conversation, 1);
      const saved = await a.saveSession("bench");
      const next = [...conversation, ...first.ids, ...(await a.tokenize(" The end.", { addSpecial: false }))];
      const unbroken = await run(a, next, 8);
      await a.unload();
      // After a reload: a fresh engine either re-reads the conversation or restores it.
      const b = await load();
      const t0 = performance.now();
      const reread = await run(b, conversation, 1);
      const rereadMs = performance.now() - t0;
      await b.unload();
      const c = await load();
      const restored = await c.restoreSession("bench");
      const cont = await run(c, next, 8);
      await c.deleteSession("bench");
      await c.unload();
      return { n: conversation.length, first, saved, reread, rereadMs, restored, unbroken, cont, threads: c.info?.threads };
    },
    { url, text, n },
  );
  const same = JSON.stringify(r.cont.ids) === JSON.stringify(r.unbroken.ids);
  console.log(`${r.n}-token conversation, SmolLM2-135M-Instruct Q4_1, context 2048, F16 KV, Chromium CPU engine:`);
  console.log(`  re-read after a reload (prefill): ${Math.round(r.rereadMs)} ms (prompt ${Math.round(r.reread.timing.promptMs)} ms)`);
  console.log(`  saveSession: ${r.saved.ms.toFixed(1)} ms, ${(r.saved.bytes / 1e6).toFixed(1)} MB, ${r.saved.tokens} tokens`);
  console.log(`  restoreSession after a reload: ${r.restored.ms.toFixed(1)} ms (${(r.rereadMs / r.restored.ms).toFixed(0)}x faster than re-reading)`);
  console.log(`  next turn after the restore: ${r.cont.usage.cachedTokens} of ${r.cont.usage.promptTokens} prompt tokens from the cache; tokens ${same ? "identical to" : "DIFFERENT FROM"} the unbroken session's`);
  if (!same) process.exitCode = 1;
} finally {
  await browser.close();
  await server.close();
}
