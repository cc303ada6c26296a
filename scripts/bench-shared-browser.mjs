#!/usr/bin/env node
// What sharing one engine between tabs costs (issue 20), in headless Chromium: two pages load the
// real model (SmolLM2-135M-Instruct Q4_1, $HEARTH_REAL_MODEL) with `shared: true`, each reads a
// conversation of N tokens (default 1,000: two slices of www/eval/sample.txt), then they take turns.
// A turn after the other page's has the engine swap conversations (stash one KV cache, put the
// other back); a turn after the page's own does not. Prints the first read (prefill), both kinds
// of turn, and what the engine keeps stashed.
// Usage: HEARTH_REAL_MODEL=... node scripts/bench-shared-browser.mjs [tokens]. Needs pkg/
// (scripts/build-wasm). Not part of scripts/test.

import fs from "node:fs";
import path from "node:path";
import { realModelBench, root } from "../tests/browser/harness.mjs";

const n = Number(process.argv[2] || 1000);
const { url, server, browser } = await realModelBench();
try {
  const context = await browser.newContext();
  const text = fs.readFileSync(path.join(root, "www/eval/sample.txt"), "utf8");
  const pages = [];
  for (const [i, slice] of [text, text.slice(Math.floor(text.length / 2))].entries()) {
    const page = await context.newPage();
    await page.goto(server.url + "test/api.html");
    await page.waitForFunction(() => window.hearthReady === true);
    await page.evaluate(
      async ({ url, slice, n, tag }) => {
        window.llm = await Hearth.load(url, { shared: true, contextSize: 2048 });
        window.ids = (await llm.tokenize(slice)).slice(0, n);
        window.more = await llm.tokenize(` And then (${tag})?`, { addSpecial: false });
        // One request: {ms (wall, in this page), promptMs, cachedTokens}; the reply joins the conversation.
        window.turn = async (maxTokens) => {
          const t0 = performance.now();
          let final;
          const reply = [];
          for await (const c of llm.generate(ids, { maxTokens, temperature: 0, stopAtEos: false })) {
            if (c.tokenIds) reply.push(...c.tokenIds);
            if (c.done) final = c;
          }
          const ms = performance.now() - t0;
          ids = [...ids, ...reply, ...more];
          return { ms, promptMs: final.timing.promptMs, cachedTokens: final.usage.cachedTokens, promptTokens: final.usage.promptTokens };
        };
      },
      { url, slice, n, tag: i },
    );
    pages.push(page);
  }
  const [a, b] = pages;
  const turn = (p, k) => p.evaluate((k) => turn(k), k);
  const firstA = await turn(a, 1);
  const firstB = await turn(b, 1);
  const swapA = await turn(a, 4); // after B's turn: B's conversation stashed, A's put back
  const ownA = await turn(a, 4); // after A's own turn
  const swapB = await turn(b, 4);
  const ownB = await turn(b, 4);
  const stats = await a.evaluate(() => llm.stats());
  const ms = (x) => `${Math.round(x.ms)} ms (read ${x.promptTokens - x.cachedTokens} of ${x.promptTokens} prompt tokens)`;
  console.log(`Two pages sharing one engine, SmolLM2-135M-Instruct Q4_1, context 2048, F16 KV, Chromium CPU engine (${stats.threads} thread):`);
  console.log(`  first read of a ${firstA.promptTokens}-token conversation: A ${ms(firstA)}, B ${ms(firstB)}`);
  console.log(`  a turn after the other page's (conversations swapped): A ${ms(swapA)}, B ${ms(swapB)}`);
  console.log(`  a turn after the page's own: A ${ms(ownA)}, B ${ms(ownB)}`);
  console.log(`  swap cost ≈ ${Math.round(swapA.ms - ownA.ms)} ms / ${Math.round(swapB.ms - ownB.ms)} ms; stashed now: ${(stats.shared.stashedBytes / 1e6).toFixed(1)} MB for ${stats.shared.clients} pages`);
} finally {
  await browser.close();
  await server.close();
}
