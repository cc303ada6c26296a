// Preflight in headless Chromium: `Hearth.inspect` sizes a load from the GGUF header alone (the
// same figures as the native `hearth inspect`, read with a Range request), the real model's wasm
// memory after loading and generating stays within the estimate, and a model that cannot fit (a
// Llama-3-8B-shaped Q4_0 file, 4.6 GB, sparse on disk, with a 128k context: 32 GiB of KV cache,
// past even the memory64 engine's limit) is refused with "model_too_big" before any weight is
// downloaded (the server's request log says what was sent); the same object then loads a good
// model.
//
// Needs pkg/ (scripts/build-wasm), Chromium, playwright-core and the real model (scripts/test).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseGguf, writeGguf } from "./gguf.mjs";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, cliBinary, realModel, root } from "./harness.mjs";

const golden = JSON.parse(fs.readFileSync(path.join(root, "tests/golden/model-spm-q4_0.json"), "utf8"));
const CASE = golden.cases[0];

let server, browser, page, dir, logFile, model;

/** The server's request log, a line each. */
function logLines() {
  return fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").trim().split("\n").filter(Boolean) : [];
}

/** Requests the server answered for `file` since `from` (an index into the log). */
function served(file, from = 0) {
  return logLines()
    .slice(from)
    .map((l) => JSON.parse(l))
    .filter((r) => r.path.endsWith(file));
}

function logLength() {
  return logLines().length;
}

/**
 * A Llama-3-8B-shaped header (4096 wide, 32 layers, 14336 feed-forward, 32/8 heads, Q4_0
 * matrices) on the fixture's vocabulary, then a hole to the end of its tensors: a 4.6 GB file
 * that takes no disk.
 */
function oversizedModel(fixture, file) {
  const g = parseGguf(fixture);
  const u32 = (v) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const set = { "llama.embedding_length": 4096, "llama.block_count": 32, "llama.feed_forward_length": 14336, "llama.attention.head_count": 32, "llama.attention.head_count_kv": 8, "llama.rope.dimension_count": 128, "llama.context_length": 8192 };
  g.kvs = g.kvs.filter((kv) => !(kv.key in set)).concat(Object.entries(set).map(([key, v]) => ({ key, type: 4, raw: u32(v) })));
  const Q4_0 = 2;
  const F32 = 0;
  const vocab = 128256n; // Llama 3's (the metadata keeps the fixture's tokens: only sizes matter here)
  const shapes = [["token_embd.weight", [4096n, vocab], Q4_0], ["output_norm.weight", [4096n], F32], ["output.weight", [4096n, vocab], Q4_0]];
  for (let i = 0; i < 32; i++) {
    shapes.push(
      [`blk.${i}.attn_norm.weight`, [4096n], F32],
      [`blk.${i}.attn_q.weight`, [4096n, 4096n], Q4_0],
      [`blk.${i}.attn_k.weight`, [4096n, 1024n], Q4_0],
      [`blk.${i}.attn_v.weight`, [4096n, 1024n], Q4_0],
      [`blk.${i}.attn_output.weight`, [4096n, 4096n], Q4_0],
      [`blk.${i}.ffn_norm.weight`, [4096n], F32],
      [`blk.${i}.ffn_gate.weight`, [4096n, 14336n], Q4_0],
      [`blk.${i}.ffn_up.weight`, [4096n, 14336n], Q4_0],
      [`blk.${i}.ffn_down.weight`, [14336n, 4096n], Q4_0],
    );
  }
  let offset = 0n;
  g.tensors = shapes.map(([name, dims, type]) => {
    const n = dims.reduce((a, b) => a * b, 1n);
    const size = type === Q4_0 ? (n / 32n) * 18n : n * 4n;
    const t = { name: Buffer.from(name), dims, type, offset };
    offset += ((size + 31n) / 32n) * 32n;
    return t;
  });
  g.data = Buffer.alloc(0);
  const head = writeGguf(g);
  fs.writeFileSync(file, head);
  fs.truncateSync(file, head.length + Number(offset));
  return head.length + Number(offset);
}

before(async () => {
  assertPkgBuilt();
  model = realModel();
  const fixtures = fixtureDir(["spm-q4_0"]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-preflight-"));
  logFile = path.join(dir, "requests.jsonl");
  const big = oversizedModel(fs.readFileSync(path.join(fixtures, "spm-q4_0.gguf")), path.join(dir, "llama-8b-shaped-Q4_0.gguf"));
  assert.ok(big > 4.5e9, `the oversized file is ${big} bytes`);
  server = await startServer({ mounts: { "/fixtures": fixtures, "/big": dir, "/test": path.join(root, "tests/browser") }, log: logFile });
  browser = await launchBrowser();
  page = await browser.newPage();
  logPage(page, "preflight");
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function openApiPage() {
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true);
}

test("Hearth.inspect sizes a load from the header alone, as the native CLI does", async () => {
  await openApiPage();
  const from = logLength();
  const url = new URL(model.url, server.url).href;
  const got = await page.evaluate(async (u) => window.Hearth.inspect(u, { contextSize: 1024 }), url);
  const native = JSON.parse(execFileSync(cliBinary(), ["inspect", "--model", process.env.HEARTH_REAL_MODEL, "--ctx", "1024", "--json"], { encoding: "utf8" }));
  console.log(`# ${got.displayName}: CPU ${got.cpu.total} bytes (weights ${got.cpu.weights}, KV ${got.cpu.kvCache}), WebGPU ${got.webgpu.total} + heap ${got.webgpuHeap}; fits ${JSON.stringify(got.fits)}`);
  assert.equal(got.displayName, "SmolLM2 135M Instruct");
  assert.equal(got.contextSize, 1024);
  assert.equal(got.kvType, native.kv_type);
  assert.equal(got.fileBytes, fs.statSync(process.env.HEARTH_REAL_MODEL).size);
  for (const [js, rs] of [["weights", "weights"], ["kvCache", "kv_cache"], ["scratch", "scratch"], ["other", "other"], ["total", "total"]]) {
    assert.equal(got.cpu[js], native.cpu[rs], `cpu.${js}`);
    assert.equal(got.webgpu[js], native.gpu[rs], `webgpu.${js}`);
  }
  assert.equal(got.webgpuHeap, native.gpu_heap);
  assert.equal(got.limits.wasmBytes, 4 * 2 ** 30);
  assert.deepEqual(got.fits.cpu, true);
  // Only the header was read: Range requests, a few MB at most of a 98 MB file.
  const reqs = served(path.basename(model.url), from);
  assert.ok(reqs.length >= 1 && reqs.every((r) => r.range && r.status === 206), JSON.stringify(reqs));
  const sent = reqs.reduce((n, r) => n + r.bytes, 0);
  assert.ok(sent < 8 << 20, `${sent} bytes sent`);
});

test("the real model's memory after loading and generating stays within the estimate", async () => {
  await openApiPage();
  const url = new URL(model.url, server.url).href;
  const r = await page.evaluate(async (u) => {
    const plan = await window.Hearth.inspect(u, { contextSize: 1024 });
    const phases = [];
    const llm = await window.Hearth.load(u, { backend: "cpu", contextSize: 1024, onProgress: (p) => phases.push(p.phase) });
    let text = "";
    for await (const c of llm.generate("The capital of France is", { maxTokens: 16, temperature: 0, stopAtEos: false })) text += c.text;
    const stats = await llm.stats();
    await llm.unload();
    return { plan, phases, text, memory: stats.wasmMemoryBytes };
  }, url);
  console.log(`# wasm memory ${r.memory} bytes after load + 16 tokens; estimate ${r.plan.cpu.total} (${(r.memory / r.plan.cpu.total).toFixed(2)} of it)`);
  assert.equal(r.phases[0], "inspect", "the plan comes before the download");
  assert.ok(r.text.length > 0);
  assert.ok(r.memory <= r.plan.cpu.total, `memory ${r.memory} over the estimate ${r.plan.cpu.total}`);
  assert.ok(r.memory >= 0.5 * r.plan.cpu.total, `the estimate ${r.plan.cpu.total} is over twice the memory ${r.memory}`);
});

test("a model that cannot fit is refused before any weight is downloaded; the same object then loads", async () => {
  await openApiPage();
  const file = "llama-8b-shaped-Q4_0.gguf";
  const url = new URL(`big/${file}`, server.url).href;
  const from = logLength();
  const r = await page.evaluate(
    async ({ u, good, prompt }) => {
      const out = {};
      // 4.6 GB of weights fit Chromium's memory64 engine; 32 GiB of KV cache do not.
      const contextSize = 131072;
      const plan = await window.Hearth.inspect(u, { contextSize });
      out.plan = { cpu: plan.cpu.total, fits: plan.fits, fileBytes: plan.fileBytes };
      for (const backend of ["cpu", "auto"]) {
        const t0 = performance.now();
        try {
          await window.Hearth.load(u, { backend, contextSize });
          out[backend] = "loaded";
        } catch (e) {
          out[backend] = { code: e.code, message: e.message, name: e.name, ms: performance.now() - t0 };
        }
      }
      // A good model loads on an object whose load was refused.
      const llm = await window.Hearth.load(good, { backend: "cpu" });
      try {
        await llm.load(u, { backend: "cpu", contextSize });
        out.reload = "loaded";
      } catch (e) {
        out.reload = e.code;
      }
      out.tokens = [];
      for await (const c of llm.generate(prompt, { maxTokens: 4, temperature: 0, stopAtEos: false })) out.tokens.push(...c.tokenIds);
      await llm.unload();
      return out;
    },
    { u: url, good: new URL("fixtures/spm-q4_0.gguf", server.url).href, prompt: CASE.prompt },
  );
  console.log(`# ${file}: ${r.plan.fileBytes} bytes, needs ${r.plan.cpu} on the CPU: ${r.cpu.message} (${r.cpu.ms.toFixed(0)} ms)`);
  assert.equal(r.plan.fits.cpu, false);
  for (const backend of ["cpu", "auto"]) {
    assert.equal(r[backend].code, "model_too_big", `${backend}: ${JSON.stringify(r[backend])}`);
    assert.equal(r[backend].name, "HearthError");
    // Where the engine runs no memory64 module, a parenthesis after the limit says so.
    assert.match(r[backend].message, /needs \d+(\.\d)? GB of memory on the CPU .* at most \d+(\.\d)? GB( \([^)]*\))?; what would fit: /);
  }
  assert.equal(r.reload, "model_too_big");
  assert.deepEqual(r.tokens, CASE.greedy.slice(0, 4), "the object still runs its model");
  // What the server sent of the 4.6 GB file: Range requests for its header, nothing more.
  const reqs = served(file, from);
  assert.ok(reqs.length >= 3, JSON.stringify(reqs));
  assert.ok(reqs.every((r) => r.range && r.status === 206), JSON.stringify(reqs));
  const sent = reqs.reduce((n, r) => n + r.bytes, 0);
  assert.ok(sent < 16 << 20, `${sent} bytes of the oversized model were sent`);
});
