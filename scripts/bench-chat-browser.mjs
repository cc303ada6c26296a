#!/usr/bin/env node
// Second-turn time to first token in headless Chromium, through the OpenAI-shaped
// chat.completions.create, against history length: turn 1 sends a conversation of about N tokens
// (100, 1000, 3000) and gets a reply; turn 2 adds a short user message. With the KV cache kept,
// turn 2 re-reads only the new tokens; "fresh" sends turn 2 to a newly loaded model. Model: the
// Llama-3-style Q4_K_M test fixture (tiny, so prefill cost is visible but the run is short).
// Usage: node scripts/bench-chat-browser.mjs [100,1000,3000]. Needs pkg/ (scripts/build-wasm).

import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, assertPkgBuilt, fixtureDir, root } from "../tests/browser/harness.mjs";

const histories = (process.argv[2] || "100,1000,3000").split(",").map(Number);
assertPkgBuilt();
const fixtures = fixtureDir(["bpe-q4_k_m"]);
const server = await startServer({ mounts: { "/fixtures": fixtures, "/test": path.join(root, "tests/browser") } });
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true);
  const rows = await page.evaluate(async (histories) => {
    const opts = { contextSize: 4096, threads: 1 };
    const llm = await Hearth.load("/fixtures/bpe-q4_k_m.gguf", opts);
    const fresh = await Hearth.load("/fixtures/bpe-q4_k_m.gguf", opts);
    const sentence = "The hearth keeps the kitchen warm through the long winter nights. ";
    const out = [];
    for (const target of histories) {
      // Grow a conversation until its prompt is about `target` tokens.
      const messages = [{ role: "system", content: "You are a helpful assistant." }];
      let i = 0;
      for (;;) {
        const n = (await llm.tokenize(await llm.applyChatTemplate(messages), { parseSpecial: true })).length;
        if (n >= target) break;
        messages.push(i % 2 ? { role: "assistant", content: sentence } : { role: "user", content: sentence });
        i++;
      }
      if (messages.at(-1).role !== "user") messages.push({ role: "user", content: "Go on." });
      const req = { max_tokens: 8, temperature: 0 };
      const first = await llm.chat.completions.create({ ...req, messages });
      const turn2 = [...messages, first.choices[0].message, { role: "user", content: "And then?" }];
      const best = async (m, prime) => {
        // Median of 3: each run first restores the state before turn 2.
        const t = [];
        let r;
        for (let k = 0; k < 3; k++) {
          if (prime) await m.chat.completions.create({ ...req, messages });
          else for await (const c of m.generate("x", { maxTokens: 1 })); // evict: the cache holds something else
          r = await m.chat.completions.create({ ...req, messages: turn2 });
          t.push(r.hearth.timing.ttft_ms);
        }
        t.sort((a, b) => a - b);
        return { ms: t[1], prompt: r.usage.prompt_tokens, cached: r.usage.prompt_tokens_details.cached_tokens };
      };
      const reused = await best(llm, true);
      const cold = await best(fresh, false);
      out.push({ history: first.usage.prompt_tokens, prompt: reused.prompt, cached: reused.cached, reuseMs: reused.ms, freshMs: cold.ms, freshCached: cold.cached });
    }
    await llm.unload();
    await fresh.unload();
    return out;
  }, histories);
  const version = execFileSync("/usr/bin/chromium", ["--version"], { encoding: "utf8" }).trim();
  console.log(`${new Date().toISOString().slice(0, 10)} · ${os.cpus().length} cores · ${version} · single thread · bpe-q4_k_m fixture`);
  console.log("| history tokens | turn-2 prompt | cached | TTFT with KV reuse | TTFT fresh prefill | ratio |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.history} | ${r.prompt} | ${r.cached} | ${r.reuseMs.toFixed(1)} ms | ${r.freshMs.toFixed(1)} ms | ${(r.freshMs / r.reuseMs).toFixed(1)}x |`);
  }
} finally {
  await browser.close();
  await server.close();
}
