// Issue 4's benchmark (run it through scripts/bench): Hearth in headless Chromium at 1 and 2
// threads beside wllama (llama.cpp compiled to wasm, CPU only) in the same browser and server, and
// native llama.cpp through llama-cpp-python, on Llama-3.2-1B-shaped models with random weights
// (`hearth fixture --bench`, cached outside the repo). Same prompt token ids for all three:
// prefill tok/s (83 tokens), decode tok/s (64 greedy tokens, EOS ignored), load time (URL to
// ready; native: llama_cpp.Llama(), which mmaps), peak memory. Before each measurement it waits
// for a quiet machine (CPU busy under --max-busy over 3 s, from /proc/stat).
//
//   scripts/bench [--quick] [--quants q4_0,q4_k_m,q8_0] [--threads 1,2] [--engines hearth,wllama,native,webgpu]
//                 [--prompt-tokens 83] [--new-tokens 64] [--cache DIR] [--python PY] [--write | --no-write]
//                 [--no-build] [--max-busy 0.1] [--quiet-timeout 600] [--row-timeout 600]
//
// --quick: q4_0 only, 32 prompt tokens, 16 new tokens, no BENCHMARKS.md update (validation run).
// A full run rewrites the issue-4 section of BENCHMARKS.md unless --no-write.

import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, root } from "../tests/browser/harness.mjs";

// ---- options ---------------------------------------------------------------------------------

const opt = {
  quick: false,
  quants: ["q4_0", "q4_k_m", "q8_0"],
  threads: [1, 2],
  engines: ["hearth", "wllama", "native"],
  promptTokens: 83,
  newTokens: 64,
  cache: process.env.HEARTH_BENCH_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "hearth", "bench-models"),
  python: process.env.HEARTH_BENCH_PYTHON || path.join(root, ".venv-goldens/bin/python"),
  write: null,
  build: true,
  maxBusy: 0.1,
  quietTimeout: 600,
  rowTimeout: 600,
};
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => {
    if (i + 1 >= args.length) usage(`${a} needs a value`);
    return args[++i];
  };
  const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
  if (a === "--quick") opt.quick = true;
  else if (a === "--quants") opt.quants = list(val()).map((q) => q.toLowerCase());
  else if (a === "--threads") opt.threads = list(val()).map(Number);
  else if (a === "--engines") opt.engines = list(val());
  else if (a === "--prompt-tokens") opt.promptTokens = Number(val());
  else if (a === "--new-tokens") opt.newTokens = Number(val());
  else if (a === "--cache") opt.cache = path.resolve(val());
  else if (a === "--python") opt.python = val();
  else if (a === "--write") opt.write = true;
  else if (a === "--no-write") opt.write = false;
  else if (a === "--no-build") opt.build = false;
  else if (a === "--max-busy") opt.maxBusy = Number(val());
  else if (a === "--quiet-timeout") opt.quietTimeout = Number(val());
  else if (a === "--row-timeout") opt.rowTimeout = Number(val());
  else if (a === "-h" || a === "--help") usage();
  else usage(`unknown argument '${a}'`);
}
if (opt.quick) {
  const given = (f) => args.includes(f);
  if (!given("--quants")) opt.quants = ["q4_0"];
  if (!given("--prompt-tokens")) opt.promptTokens = 32;
  if (!given("--new-tokens")) opt.newTokens = 16;
}
if (opt.write === null) opt.write = !opt.quick;
if (!opt.engines.includes("hearth")) usage("--engines must include hearth (its tokenizer supplies the prompt ids)");
if (opt.cache.startsWith(root + path.sep)) usage(`--cache must be outside the repository (${opt.cache})`);

function usage(err) {
  const text = fs.readFileSync(new URL(import.meta.url), "utf8").split("\n").filter((l) => l.startsWith("//")).map((l) => l.slice(3)).join("\n");
  if (err) {
    console.error(`scripts/bench: ${err}\n`);
    console.error(text);
    process.exit(2);
  }
  console.log(text);
  process.exit(0);
}

const QUANT = { q4_0: "Q4_0", q4_k_m: "Q4_K_M", q8_0: "Q8_0" };
const log = (...a) => console.error(...a);

// ---- a quiet machine -------------------------------------------------------------------------

function cpuTimes() {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] || 0);
  return { idle, total: f.reduce((a, b) => a + b, 0) };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const loadavg = () => fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

/** Wait until the whole machine's CPU is busy under maxBusy for 3 consecutive seconds. */
async function waitQuiet(label) {
  const t0 = Date.now();
  let calm = 0;
  let prev = cpuTimes();
  let warned = false;
  for (;;) {
    await sleep(1000);
    const now = cpuTimes();
    const busy = 1 - (now.idle - prev.idle) / Math.max(1, now.total - prev.total);
    prev = now;
    calm = busy < opt.maxBusy ? calm + 1 : 0;
    const waited = (Date.now() - t0) / 1000;
    if (calm >= 3) return { quiet: true, waitedS: Math.round(waited), load: loadavg() };
    if (!warned && waited > 10) {
      log(`   waiting for a quiet machine before ${label} (CPU ${(busy * 100).toFixed(0)}% busy, load ${loadavg()}) ...`);
      warned = true;
    }
    if (waited > opt.quietTimeout) {
      log(`!! WARNING: the machine did not get quiet in ${opt.quietTimeout} s (CPU ${(busy * 100).toFixed(0)}% busy, load ${loadavg()}); measuring ${label} anyway`);
      return { quiet: false, waitedS: Math.round(waited), load: loadavg() };
    }
  }
}

// ---- models ----------------------------------------------------------------------------------

const target = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(root, "target");
if (opt.build) {
  log("== scripts/build-wasm");
  execFileSync(path.join(root, "scripts/build-wasm"), { cwd: root, stdio: ["ignore", 2, 2] });
}
for (const f of ["pkg/hearth.js", "pkg/hearth_wasm_bg.wasm", "pkg/threads/hearth_wasm_bg.wasm"]) {
  if (!fs.existsSync(path.join(root, f))) throw new Error(`${f} is missing: run scripts/build-wasm`);
}
fs.mkdirSync(opt.cache, { recursive: true });
const modelPath = (q) => path.join(opt.cache, `llama1b-${q}.gguf`);
const missing = opt.quants.filter((q) => !fs.existsSync(modelPath(q)));
if (missing.length) {
  log("== cargo build --release --bin hearth (writes the benchmark models)");
  execFileSync("cargo", ["build", "--quiet", "--release", "--bin", "hearth"], { cwd: root, stdio: ["ignore", 2, 2] });
  for (const q of missing) {
    log(`== writing ${modelPath(q)}`);
    execFileSync(path.join(target, "release", "hearth"), ["fixture", "--bench", "--out", opt.cache, "--only", q], { stdio: ["ignore", 2, 2] });
  }
}

// Peak memory's target for Hearth (issue 17): the file, the KV cache of the run's context and
// 64 MiB. The browser's engines are measured by their wasm memory (on WebGPU that is the engine's
// heap: the weights live in GPU buffers), native llama.cpp by its peak RSS.
const targets = {};
function memTarget(q) {
  if (!(q in targets)) {
    const plan = JSON.parse(execFileSync(path.join(target, "release", "hearth"), ["inspect", "--model", modelPath(q), "--ctx", "512", "--json"], { encoding: "utf8" }));
    targets[q] = fs.statSync(modelPath(q)).size + plan.cpu.kv_cache + 64 * 2 ** 20;
  }
  return targets[q];
}

// ---- engines ---------------------------------------------------------------------------------

const PROMPT_TEXT = "The hearth keeps the kitchen warm while the quick brown fox jumps over the lazy dog. ".repeat(12);

async function runHearth(page, q, threads, backend = "cpu") {
  return page.evaluate(
    async ({ url, text, promptTokens, newTokens, threads, backend }) => {
      const t0 = performance.now();
      const llm = await window.Hearth.load(url, { contextSize: 512, threads, backend });
      const loadMs = performance.now() - t0;
      const ids = (await llm.tokenize(text, { addSpecial: true })).slice(0, promptTokens);
      // wllama takes text: the prompt's text, checked to tokenize back to the same ids.
      const bos = llm.info.bos;
      const promptText = await llm.decode(ids[0] === bos ? ids.slice(1) : ids);
      const back = await llm.tokenize(promptText, { addSpecial: true });
      const sameIds = back.length === ids.length && back.every((x, i) => x === ids[i]);
      let last;
      for await (const c of llm.generate(ids, { maxTokens: newTokens, temperature: 0, stopAtEos: false })) last = c;
      const stats = await llm.stats();
      await llm.unload();
      return {
        ids,
        promptText,
        sameIds,
        threads: llm.info.threads,
        loadMs,
        prefillMs: last.timing.promptMs,
        decodeMs: last.timing.decodeMs,
        promptTokens: last.usage.promptTokens,
        completionTokens: last.usage.completionTokens,
        memBytes: stats.wasmMemoryBytes,
      };
    },
    { url: `/models/llama1b-${q}.gguf`, text: PROMPT_TEXT, promptTokens: opt.promptTokens, newTokens: opt.newTokens, threads, backend },
  );
}

// wllama creates its workers from blob: URLs (the served CSP allows only 'self', so its pages
// bypass CSP). To read its wasm memory size, the worker code gets a prefix that records every
// WebAssembly.Memory it creates (and exported memories), read back through Playwright.
const MEMORY_HOOK = `(() => {
  const mems = (self.__benchMems = []);
  const M = WebAssembly.Memory;
  function Memory(d) { const m = new M(d); mems.push(m); return m; }
  Memory.prototype = M.prototype;
  WebAssembly.Memory = Memory;
  for (const k of ["instantiate", "instantiateStreaming"]) {
    const f = WebAssembly[k];
    if (f) WebAssembly[k] = async (...a) => { const r = await f(...a); const ex = (r.instance || r).exports; if (ex && ex.memory) mems.push(ex.memory); return r; };
  }
})();\n`;

async function runWllama(page, q, threads, text) {
  await page.evaluate((hook) => {
    const B = window.Blob;
    window.Blob = class extends B {
      constructor(parts, opts) {
        if (opts && opts.type === "text/javascript" && parts && parts.length === 1 && typeof parts[0] === "string") parts = [hook + parts[0]];
        super(parts, opts);
      }
    };
  }, MEMORY_HOOK);
  const r = await page.evaluate(
    async ({ url, text, newTokens, threads }) => {
      const { Wllama } = await import("/wllama/esm/index.js");
      const w = new Wllama({ default: "/wllama/esm/wasm/wllama.wasm" }, { suppressNativeLog: true });
      window.__wllama = w;
      const t0 = performance.now();
      const blob = await (await fetch(url)).blob();
      await w.loadModel([new File([blob], "model.gguf")], { n_ctx: 512, n_batch: 512, n_threads: threads, n_gpu_layers: 0 });
      const loadMs = performance.now() - t0;
      const res = await w.createCompletion({ prompt: text, max_tokens: newTokens, temperature: 0, temp: 0, ignore_eos: true, cache_prompt: false });
      const t = res.timings;
      return {
        threads: w.isMultithread() ? w.getNumThreads() : 1,
        loadMs,
        prefillMs: t.prompt_ms,
        decodeMs: t.predicted_ms,
        promptTokens: t.prompt_n,
        completionTokens: t.predicted_n,
        version: Wllama.getLibllamaVersion?.(),
      };
    },
    { url: `/models/llama1b-${q}.gguf`, text, newTokens: opt.newTokens, threads },
  );
  let mem = 0;
  for (const wk of page.workers()) {
    const sizes = await wk.evaluate(() => (self.__benchMems || []).map((m) => Number(m.buffer.byteLength))).catch(() => []);
    for (const s of sizes) mem = Math.max(mem, s);
  }
  await page.evaluate(() => window.__wllama.exit()).catch(() => {});
  return { ...r, memBytes: mem || null };
}

function runNative(q, threads, ids) {
  const p = spawnSync(opt.python, [path.join(root, "scripts/bench-llamacpp.py"), modelPath(q), String(threads), JSON.stringify(ids), String(opt.newTokens)], {
    encoding: "utf8",
    maxBuffer: 1 << 24,
  });
  if (p.status !== 0) throw new Error(`bench-llamacpp.py failed (${p.status}): ${p.stderr}`);
  const r = JSON.parse(p.stdout.trim().split("\n").at(-1));
  return { threads, ...r, memBytes: r.peakRssBytes };
}

// ---- run -------------------------------------------------------------------------------------

const wllamaDir = path.join(root, "node_modules/@wllama/wllama");
const wllamaVersion = JSON.parse(fs.readFileSync(path.join(wllamaDir, "package.json"), "utf8")).version;
const server = await startServer({ mounts: { "/models": opt.cache, "/test": path.join(root, "tests/browser"), "/wllama": wllamaDir } });
const browser = await launchBrowser();
const rows = [];
let nativeVersion = null;
try {
  for (const q of opt.quants) {
    let ids = null;
    let promptText = null;
    for (const threads of opt.threads) {
      for (const engine of opt.engines) {
        if (engine !== "hearth" && !ids) continue;
        // The GPU does not use the CPU threads: one row per model.
        if (engine === "webgpu" && threads !== opt.threads[0]) continue;
        const label = `${engine} ${QUANT[q] || q} ${threads}t`;
        const quiet = await waitQuiet(label);
        log(`== ${label} (load ${quiet.load})`);
        let r;
        try {
          if (engine === "hearth") {
            const page = await browser.newPage();
            page.on("pageerror", (e) => log(`[hearth pageerror] ${e.message}`));
            page.on("console", (m) => m.type() === "warning" && log(`[hearth warning] ${m.text()}`));
            await page.goto(server.url + "test/api.html");
            await page.waitForFunction(() => window.hearthReady === true);
            r = await runHearth(page, q, threads);
            ids = r.ids;
            promptText = r.promptText;
            if (!r.sameIds) log(`!! the prompt's text does not tokenize back to the same ${ids.length} ids: wllama's prompt may differ slightly`);
            delete r.ids;
            delete r.promptText;
            await page.close();
          } else if (engine === "webgpu") {
            // Hearth's WebGPU backend in the same browser (here: SwiftShader, a software adapter;
            // on a machine with a GPU, its hardware adapter).
            const page = await browser.newPage();
            page.on("pageerror", (e) => log(`[webgpu pageerror] ${e.message}`));
            await page.goto(server.url + "test/api.html");
            await page.waitForFunction(() => window.hearthReady === true);
            r = await runHearth(page, q, 1, "webgpu");
            r.threads = 1;
            delete r.ids;
            delete r.promptText;
            await page.close();
          } else if (engine === "wllama") {
            // A browser of its own: wllama 3.13 at two threads hangs on this prompt, and a run
            // that shared its browser with wllama once found it closed after a wllama row. A row
            // that gets no answer fails, and its browser is closed, instead of holding up the run.
            const wb = await launchBrowser();
            let timer;
            try {
              const ctx = await wb.newContext({ bypassCSP: true });
              const page = await ctx.newPage();
              page.on("pageerror", (e) => log(`[wllama pageerror] ${e.message}`));
              await page.goto(server.url + "test/api.html");
              const hung = new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`no answer in ${opt.rowTimeout} s (hung)`)), opt.rowTimeout * 1e3);
              });
              r = await Promise.race([runWllama(page, q, threads, promptText), hung]);
              if (r.promptTokens !== ids.length) log(`!! wllama read ${r.promptTokens} prompt tokens, not ${ids.length}`);
            } finally {
              clearTimeout(timer);
              await wb.close().catch(() => {});
            }
          } else if (engine === "native") {
            r = runNative(q, threads, ids);
            nativeVersion = r.version;
          } else throw new Error(`unknown engine ${engine}`);
        } catch (e) {
          // One engine failing (wllama cannot load every file) costs its row, not the run.
          if (engine === "hearth") throw e;
          log(`!! ${label} failed: ${String(e.message || e).split("\n")[0]}`);
          rows.push({ quant: QUANT[q] || q, engine, threads, asked: threads, failed: String(e.message || e).split("\n")[0], quiet: quiet.quiet, load: quiet.load });
          continue;
        }
        const row = {
          targetMB: memTarget(q) / 2 ** 20,
          quant: QUANT[q] || q,
          engine,
          threads: r.threads,
          loadS: r.loadMs / 1e3,
          prefill: r.promptTokens / (r.prefillMs / 1e3),
          decode: r.completionTokens / (r.decodeMs / 1e3),
          memMB: r.memBytes ? r.memBytes / 2 ** 20 : null,
          promptTokens: r.promptTokens,
          completionTokens: r.completionTokens,
          asked: threads,
          quiet: quiet.quiet,
          load: quiet.load,
        };
        if (row.threads !== threads) log(`!! ${label}: ran on ${row.threads} thread(s)`);
        if ((engine === "hearth" || engine === "webgpu") && row.memMB > row.targetMB) {
          log(`!! ${label}: peak memory ${row.memMB.toFixed(0)} MiB is over the target ${row.targetMB.toFixed(0)} MiB (file + KV cache + 64 MiB)`);
          process.exitCode = 1;
        }
        log(`   load ${row.loadS.toFixed(2)} s, prefill ${row.prefill.toFixed(2)} tok/s (${row.promptTokens}), decode ${row.decode.toFixed(2)} tok/s (${row.completionTokens}), mem ${row.memMB ? row.memMB.toFixed(0) + " MiB" : "?"}`);
        rows.push(row);
      }
    }
  }
} finally {
  var chromiumVersion = browser.version();
  await browser.close();
  await server.close();
}

// ---- report ----------------------------------------------------------------------------------

const f = (x, d = 2) => (x == null || !Number.isFinite(x) ? "–" : x.toFixed(d));
const date = new Date().toISOString().slice(0, 10);
const cpu = os.cpus()[0]?.model?.replace(/\s+/g, " ").trim() || "unknown CPU";
const machine = `${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}`;
const sizes = Object.fromEntries(opt.quants.map((q) => [QUANT[q] || q, fs.statSync(modelPath(q)).size]));

let md = `| quant | engine | threads | load s | prefill tok/s | decode tok/s | peak memory MiB | target MiB | machine before (load avg) |\n|---|---|---|---|---|---|---|---|---|\n`;
for (const r of rows) {
  const hearth = r.engine === "hearth" || r.engine === "webgpu";
  const mem = r.memMB == null ? "–" : f(r.memMB, 0) + (hearth && r.memMB > r.targetMB ? " (OVER)" : "");
  if (r.failed) md += `| ${r.quant} | ${r.engine} | ${r.threads} | failed: ${r.failed.replace(/\|/g, "/")} | | | | | ${r.quiet ? "quiet" : "BUSY"} (${r.load}) |\n`;
  else md += `| ${r.quant} | ${r.engine} | ${r.threads} | ${f(r.loadS)} | ${f(r.prefill)} | ${f(r.decode)} | ${mem} | ${hearth ? f(r.targetMB, 0) : "–"} | ${r.quiet ? "quiet" : "BUSY"} (${r.load}) |\n`;
}
md += `\n| quant | threads | prefill Hearth / wllama | decode Hearth / wllama | prefill Hearth / native | decode Hearth / native |\n|---|---|---|---|---|---|\n`;
for (const q of opt.quants) {
  for (const t of opt.threads) {
    const get = (e) => rows.find((r) => r.quant === (QUANT[q] || q) && r.engine === e && r.asked === t && !r.failed);
    const h = get("hearth");
    if (!h) continue;
    const ratio = (o, k) => (o ? f(h[k] / o[k]) : "–");
    md += `| ${QUANT[q] || q} | ${t} | ${ratio(get("wllama"), "prefill")} | ${ratio(get("wllama"), "decode")} | ${ratio(get("native"), "prefill")} | ${ratio(get("native"), "decode")} |\n`;
  }
}
const busyNote = rows.some((r) => !r.quiet) ? " Rows marked BUSY were measured anyway after waiting " + opt.quietTimeout + " s: other work was running, so they understate every engine." : "";
const cmd = `scripts/bench ${args.join(" ")}`.trim();
const section = `## ${date} — issue 4: Hearth vs wllama vs native llama.cpp, 1 and 2 threads (\`${cmd}\`)

Machine: ${machine}; headless Chromium ${chromiumVersion}; Node ${process.version}; wllama
${wllamaVersion} (CPU: \`n_gpu_layers: 0\`); llama-cpp-python ${nativeVersion ?? "–"} (native, CPU). Models:
random weights in Llama-3.2-1B's shape (\`hearth fixture --bench\`; ${Object.entries(sizes).map(([q, s]) => `${q} ${(s / 1e6).toFixed(0)} MB`).join(", ")}).
Same ${opt.promptTokens}-token prompt (ids from Hearth's tokenizer) for all three, then ${opt.newTokens} greedy tokens
ignoring EOS; context 512; one run each, no warm-up; the machine was waited on until its CPU was
under ${(opt.maxBusy * 100).toFixed(0)}% busy for 3 s before every row.${busyNote} Load: URL to ready in the browser (over
the local server), \`Llama()\` (mmap) natively. Peak memory: the engine's wasm memory in the
browser (Hearth: \`stats().wasmMemoryBytes\`, on WebGPU the engine's heap beside the GPU buffers;
wllama: its \`WebAssembly.Memory\`), peak RSS natively. Hearth's target: the file + the KV cache
(f16, context 512) + 64 MiB; a row over it says OVER and the run exits 1.
wllama and native decode timings are llama.cpp's own (\`timings\`) and a Python loop of
\`llama_decode\` calls respectively.

${md}`;
console.log("\n" + section);

if (opt.write) {
  const file = path.join(root, "BENCHMARKS.md");
  const begin = "<!-- scripts/bench: issue 4 (begin) -->";
  const end = "<!-- scripts/bench: issue 4 (end) -->";
  let doc = fs.readFileSync(file, "utf8");
  const block = `${begin}\n${section}${end}\n`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) doc = doc.slice(0, i) + block + doc.slice(j + end.length + 1);
  else {
    const k = doc.indexOf("\n## ");
    doc = k >= 0 ? doc.slice(0, k + 1) + block + "\n" + doc.slice(k + 1) : doc + "\n" + block;
  }
  fs.writeFileSync(file, doc);
  log(`wrote the table into ${file}`);
}
