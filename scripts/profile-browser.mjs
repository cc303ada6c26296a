// Where Hearth's CPU time goes in Chromium: a V8 sampling profile (Chrome DevTools Protocol) of
// the engine running on the page's own thread (`worker: false`, one thread) over a benchmark model
// (`hearth fixture --bench`, as scripts/bench writes them), once for the prefill of the prompt and
// once for decoding, each printed as self time per wasm function (the kernels are inlined into
// their drivers, so a driver's row is its kernels' time), with the share of the phase and ms per
// token. Not part of scripts/test.
//
//   node scripts/profile-browser.mjs [--quants q4_0,q4_k_m,q8_0] [--prompt-tokens 83] [--new-tokens 32]
//                                    [--cache DIR] [--top 14]

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser } from "../tests/browser/harness.mjs";

const opt = {
  quants: ["q4_0", "q4_k_m", "q8_0"],
  promptTokens: 83,
  newTokens: 32,
  cache: process.env.HEARTH_BENCH_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "hearth", "bench-models"),
  top: 14,
};
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => args[++i];
  if (a === "--quants") opt.quants = val().split(",");
  else if (a === "--prompt-tokens") opt.promptTokens = Number(val());
  else if (a === "--new-tokens") opt.newTokens = Number(val());
  else if (a === "--cache") opt.cache = path.resolve(val());
  else if (a === "--top") opt.top = Number(val());
  else {
    console.error("usage: node scripts/profile-browser.mjs [--quants q4_0,q4_k_m,q8_0] [--prompt-tokens N] [--new-tokens N] [--cache DIR] [--top N]");
    process.exit(2);
  }
}
for (const q of opt.quants) {
  const f = path.join(opt.cache, `llama1b-${q}.gguf`);
  if (!fs.existsSync(f)) throw new Error(`${f} is missing: run scripts/bench once (it writes the models), or hearth fixture --bench --out ${opt.cache}`);
}

const PROMPT_TEXT = "The hearth keeps the kitchen warm while the quick brown fox jumps over the lazy dog. ".repeat(12);

/** Self time per function (ms) from a CDP profile. */
function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const ms = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1e3;
    const n = byId.get(profile.samples[i]);
    const name = n.callFrame.functionName || `(${n.callFrame.url ? path.basename(n.callFrame.url) : "anonymous"})`;
    if (name === "(idle)" || name === "(program)") continue;
    ms.set(name, (ms.get(name) || 0) + dt);
    total += dt;
  }
  return { ms, total };
}

/** Rust's wasm names, shortened: no hash, no crate path before the last two segments. */
function short(name) {
  const s = name.replace(/::h[0-9a-f]{16}$/, "").replace(/\$/g, "");
  const generic = s.match(/<([^<>]*)>/g)?.map((g) => g.split("::").at(-1).replace(/>$/, "")).join(",");
  const base = s.replace(/<.*>/g, "").split("::").slice(-2).join("::");
  return generic ? `${base}<${generic}>` : base;
}

function report(label, { ms, total }, tokens) {
  const rows = [...ms].sort((a, b) => b[1] - a[1]);
  console.log(`\n${label}: ${total.toFixed(0)} ms sampled, ${tokens} tokens, ${(total / tokens).toFixed(1)} ms/token`);
  console.log("| function | ms | share | ms/token |\n|---|---|---|---|");
  for (const [name, t] of rows.slice(0, opt.top)) console.log(`| \`${short(name)}\` | ${t.toFixed(0)} | ${((100 * t) / total).toFixed(1)}% | ${(t / tokens).toFixed(2)} |`);
  const rest = rows.slice(opt.top).reduce((s, [, t]) => s + t, 0);
  console.log(`| (${rows.length - opt.top} others) | ${rest.toFixed(0)} | ${((100 * rest) / total).toFixed(1)}% | ${(rest / tokens).toFixed(2)} |`);
}

const server = await startServer({ mounts: { "/models": opt.cache, "/test": path.resolve("tests/browser") } });
const browser = await launchBrowser();
try {
  for (const q of opt.quants) {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.error(`[pageerror] ${e.message}`));
    await page.goto(server.url + "test/api.html");
    await page.waitForFunction(() => window.hearthReady === true);
    const info = await page.evaluate(
      async ({ url, text, n }) => {
        window.__llm = await window.Hearth.load(url, { contextSize: 512, worker: false, threads: 1, backend: "cpu" });
        window.__ids = (await window.__llm.tokenize(text, { addSpecial: true })).slice(0, n);
        return { simd: window.__llm.info.simd, threads: window.__llm.info.threads };
      },
      { url: `/models/llama1b-${q}.gguf`, text: PROMPT_TEXT, n: opt.promptTokens },
    );
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
    const phase = async (maxTokens, ids) => {
      await cdp.send("Profiler.start");
      const r = await page.evaluate(
        async ({ maxTokens, ids }) => {
          let last;
          for await (const c of window.__llm.generate(ids ?? window.__ids, { maxTokens, temperature: 0, stopAtEos: false })) last = c;
          return { promptMs: last.timing.promptMs, decodeMs: last.timing.decodeMs, prompt: last.usage.promptTokens, completion: last.usage.completionTokens };
        },
        { maxTokens, ids },
      );
      const { profile } = await cdp.send("Profiler.stop");
      return { r, t: selfTimes(profile) };
    };
    console.log(`\n## ${q} (simd: ${info.simd}, threads: ${info.threads}, ${os.cpus()[0]?.model?.trim()})`);
    const pre = await phase(1);
    report(`prefill of ${pre.r.prompt} tokens (${(pre.r.prompt / (pre.r.promptMs / 1e3)).toFixed(2)} tok/s; the profile includes one decoded token)`, pre.t, pre.r.prompt);
    // Decode from a one-token prompt, so nearly all of the phase is single-row steps.
    const dec = await phase(opt.newTokens, (await page.evaluate(() => window.__ids.slice(0, 1))));
    report(`decode of ${dec.r.completion} tokens (${(dec.r.completion / (dec.r.decodeMs / 1e3)).toFixed(2)} tok/s)`, dec.t, dec.r.completion);
    await page.evaluate(() => window.__llm.unload());
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
}
