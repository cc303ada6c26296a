// LoRA adapters in headless Chromium (issue 18): `llm.adapters.load(src, {scale})` from a URL and
// from bytes, several at once, gives llama.cpp's greedy tokens (tests/golden/lora-spm-f32.json,
// scripts/goldens-lora) and the native CLI's logits with the same `--lora` adapters; `setScale`
// and `remove` switch them at run time (the outputs go back to the base model's exactly); an
// adapter for another model is HearthError "adapter_mismatch" naming the tensor, a model file
// "not_an_adapter"; and the WebGPU backend (SwiftShader) gives the same tokens.
//
// Needs pkg/ (scripts/build-wasm), Chromium and playwright-core (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { openApiPage, fixtureDir, cliBinary, root } from "./harness.mjs";

const golden = JSON.parse(fs.readFileSync(path.join(root, "tests/golden/lora-spm-f32.json"), "utf8"));
const STRENGTH = String(golden.strength);

/** The golden case with exactly these [adapter, scale] pairs. */
function goldenCase(pairs) {
  const c = golden.cases.find((c) => JSON.stringify(c.adapters) === JSON.stringify(pairs));
  assert.ok(c, JSON.stringify(pairs));
  return c.prompts[0];
}

let server, browser, page, dir, adapter;

before(async () => {
  dir = fixtureDir(["spm-f32", "bpe-q4_0"]);
  const bin = cliBinary();
  // The goldens' adapters, written by the CLI (checked against the goldens' sha256), and one
  // made for the other fixture.
  for (const name of ["a", "b"]) {
    const out = path.join(dir, `lora-spm-${name}.gguf`);
    execFileSync(bin, ["lora-fixture", "--model", path.join(dir, "spm-f32.gguf"), "--spec", name, "--strength", STRENGTH, "--out", out], { stdio: "ignore" });
    assert.equal(createHash("sha256").update(fs.readFileSync(out)).digest("hex"), golden.adapters[name], `adapter ${name}: run scripts/goldens-lora`);
  }
  execFileSync(bin, ["lora-fixture", "--model", path.join(dir, "bpe-q4_0.gguf"), "--spec", "a", "--out", path.join(dir, "lora-bpe-a.gguf")], { stdio: "ignore" });
  ({ server, browser, page, adapter } = await openApiPage("lora", dir));
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** The native CLI's top logits at the last prompt position with `--lora` adapters. */
function cliLastLogits(prompt, loras) {
  const args = ["logits", "--model", path.join(dir, "spm-f32.gguf"), "--prompt", prompt, "--top", "5", "--json"];
  for (const l of loras) args.push("--lora", l);
  const out = JSON.parse(execFileSync(cliBinary(), args, { encoding: "utf8" }));
  return out.positions.at(-1);
}


function runCase(backend) {
  const want = goldenCase([["a", 1.0], ["b", 0.5]]);
  return page.evaluate(
    async ({ backend, prompt, n }) => {
      // Greedy tokens, with the first step's top log-probabilities (defined here: the test page's
      // CSP forbids eval, which Firefox and WebKit enforce on WebDriver scripts too).
      const greedy = async (m, prompt, n) => {
        const out = { tokens: [], top: null };
        for await (const c of m.generate(prompt, { maxTokens: n, temperature: 0, stopAtEos: false, logprobs: 5 })) {
          if (c.done) continue;
          out.tokens.push(...c.tokenIds);
          if (!out.top && c.logprobs) out.top = c.logprobs[0].topLogprobs.map((t) => [t.id, t.logprob]);
        }
        return out;
      };
      const m = await Hearth.load("/fixtures/spm-f32.gguf", { contextSize: 128, backend });
      const base = await greedy(m, prompt, n);
      // One adapter by URL, one from bytes.
      const a = await m.adapters.load("/fixtures/lora-spm-a.gguf", { scale: 1 });
      const bytes = new Uint8Array(await (await fetch("/fixtures/lora-spm-b.gguf")).arrayBuffer());
      const b = await m.adapters.load(bytes, { scale: 0.5 });
      const list = await m.adapters.list();
      const both = await greedy(m, prompt, n);
      // Switched at run time: a off, then b removed: the base model's outputs exactly.
      await m.adapters.setScale(a.id, 0);
      const onlyB = await greedy(m, prompt, n);
      await m.adapters.remove(b.id);
      const none = await greedy(m, prompt, n);
      await m.adapters.setScale(a.id, 1);
      const onlyA = await greedy(m, prompt, n);
      const errors = {};
      for (const [key, f] of [
        ["mismatch", () => m.adapters.load("/fixtures/lora-bpe-a.gguf")],
        ["model", () => m.adapters.load("/fixtures/spm-f32.gguf")],
        ["scale", () => m.adapters.setScale(a.id, NaN)],
        ["id", () => m.adapters.remove(12345)],
      ]) {
        try {
          await f();
          errors[key] = null;
        } catch (e) {
          errors[key] = { code: e.code, message: e.message, isHearth: e instanceof HearthError };
        }
      }
      const after = await m.adapters.list();
      const backendUsed = m.info.backend;
      await m.unload();
      return { base, both, onlyB, none, onlyA, list, after, errors, backendUsed, bytesKept: bytes.byteLength };
    },
    { backend, prompt: want.prompt, n: want.greedy.length },
  );
}

/** Equal to llama.cpp's greedy tokens up to a near tie (a top-2 margin under `tie`). */
function assertGreedy(got, want, tie, what) {
  const i = want.greedy.findIndex((t, j) => got[j] !== t);
  if (i >= 0) assert.ok(want.greedy_margins[i] < tie, `${what}: step ${i} differs (llama.cpp margin ${want.greedy_margins[i]}): ${got} vs ${want.greedy}`);
}

test("adapters by URL and bytes give llama.cpp's tokens and the CLI's logits; setScale/remove switch them; typed errors (CPU engine)", async () => {
  const r = await runCase("cpu");
  assert.equal(r.backendUsed, "cpu");
  assert.equal(r.bytesKept, fs.statSync(path.join(dir, "lora-spm-b.gguf")).size, "the caller's bytes stay usable");
  assert.deepEqual(
    r.list.map((a) => [a.name, a.scale, a.alpha, a.rank, a.tensors]),
    [
      ["hearth-lora-a", 1, 32, 16, 16],
      ["hearth-lora-b", 0.5, 0, 8, 6],
    ],
  );
  assertGreedy(r.both.tokens, goldenCase([["a", 1.0], ["b", 0.5]]), 0.05, "a:1+b:0.5");
  assertGreedy(r.none.tokens, goldenCase([["a", 0.0]]), 0.05, "no adapters");
  assertGreedy(r.onlyA.tokens, goldenCase([["a", 1.0]]), 0.05, "a:1");
  assert.deepEqual(r.none, r.base, "removing the adapters gives the base model's outputs exactly");
  assert.notDeepEqual(r.both.tokens, r.base.tokens);
  assert.notDeepEqual(r.onlyB.tokens, r.both.tokens);
  // The native CLI with the same adapters: the same top tokens, logit gaps equal to the log-prob gaps.
  const prompt = goldenCase([["a", 1.0], ["b", 0.5]]).prompt;
  for (const [got, loras] of [
    [r.both, [path.join(dir, "lora-spm-a.gguf") + ":1", path.join(dir, "lora-spm-b.gguf") + ":0.5"]],
    [r.onlyA, [path.join(dir, "lora-spm-a.gguf")]],
  ]) {
    const cli = cliLastLogits(prompt, loras);
    assert.deepEqual(got.top.map((t) => t[0]), cli.ids, "top-5 ids");
    for (let i = 1; i < 5; i++) {
      const d = Math.abs(got.top[0][1] - got.top[i][1] - (cli.logits[0] - cli.logits[i]));
      assert.ok(d < 1e-3, `logit gap ${i}: ${d}`);
    }
  }
  assert.equal(r.errors.mismatch?.code, "adapter_mismatch");
  assert.ok(r.errors.mismatch.isHearth && r.errors.mismatch.message.includes("blk.0.attn_k.weight.lora_b"), r.errors.mismatch.message);
  assert.equal(r.errors.model?.code, "not_an_adapter");
  assert.equal(r.errors.scale?.code, "invalid_argument");
  assert.equal(r.errors.id?.code, "invalid_argument");
  assert.deepEqual(r.after.map((a) => a.name), ["hearth-lora-a"], "failed loads add nothing");
});

test("on WebGPU (the engine's adapter: SwiftShader in Chromium) adapters give llama.cpp's tokens too", async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  const r = await runCase("webgpu");
  assert.equal(r.backendUsed, "webgpu");
  // tests/lora.rs: the GPU is within 0.005 of llama.cpp's logits for these adapters.
  assertGreedy(r.both.tokens, goldenCase([["a", 1.0], ["b", 0.5]]), 0.05, "a:1+b:0.5 on WebGPU");
  assertGreedy(r.onlyA.tokens, goldenCase([["a", 1.0]]), 0.05, "a:1 on WebGPU");
  assertGreedy(r.none.tokens, goldenCase([["a", 0.0]]), 0.05, "no adapters on WebGPU");
  assert.deepEqual(r.none.tokens, r.base.tokens);
  assert.equal(r.errors.mismatch?.code, "adapter_mismatch");
});

test("a GPU lost with adapters loaded: the model goes on on the CPU with them, under the same ids", async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  const want = goldenCase([["a", 1.0], ["b", 0.5]]);
  const r = await page.evaluate(
    async ({ prompt, n }) => {
      const greedy = async (m) => {
        const ids = [];
        for await (const c of m.generate(prompt, { maxTokens: n, temperature: 0, stopAtEos: false })) ids.push(...c.tokenIds);
        return ids;
      };
      const m = await Hearth.load("/fixtures/spm-f32.gguf", { contextSize: 128, backend: "webgpu" });
      // Ids that no longer follow the engine's count after the reload: a, b, a removed, a again.
      const first = await m.adapters.load("/fixtures/lora-spm-a.gguf", { scale: 1 });
      const bytes = new Uint8Array(await (await fetch("/fixtures/lora-spm-b.gguf")).arrayBuffer());
      const b = await m.adapters.load(bytes, { scale: 0.2 });
      await m.adapters.remove(first.id);
      const a = await m.adapters.load("/fixtures/lora-spm-a.gguf", { scale: 1 });
      await m.adapters.setScale(b.id, 0.5);
      const before = await m.adapters.list();
      await m._debugLoseDevice(0);
      let lost = null;
      try {
        await greedy(m);
      } catch (e) {
        lost = e.code;
      }
      const both = await greedy(m);
      const after = await m.adapters.list();
      await m.adapters.remove(b.id);
      const onlyA = await greedy(m);
      await m.unload();
      return { lost, before, after, both, onlyA, ids: [first.id, b.id, a.id] };
    },
    { prompt: want.prompt, n: want.greedy.length },
  );
  assert.equal(r.lost, "device_lost");
  assert.deepEqual(r.after, r.before, "the same adapters, ids and scales after the reload on the CPU");
  assert.deepEqual(r.ids, [1, 2, 3]);
  assertGreedy(r.both, want, 0.05, "a:1+b:0.5 on the CPU after the GPU was lost");
  assertGreedy(r.onlyA, goldenCase([["a", 1.0]]), 0.05, "a:1 after removing b by its id");
});
