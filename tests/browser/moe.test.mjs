// Mixture of experts in the browser: architecture llama, Mixtral-style (`hearth fixture --moe`),
// and Llama 4 (`hearth fixture --llama4`: sigmoid routing with a shared expert, NoPE layers, q/k
// norm, its pre-tokenizer). The CPU engine gives llama.cpp's greedy tokens and top logits
// (tests/golden/model-moe*.json, scripts/goldens-moe; model-llama4*.json, scripts/goldens-llama4)
// for quantized fixtures and F32 ones, and the WebGPU backend (SwiftShader) agrees with the CPU
// engine on the F32 fixtures.
//
// Needs pkg/ (scripts/build-wasm), Chromium and playwright-core (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { openApiPage, fixtureDir, root } from "./harness.mjs";

const FIXTURES = ["moe-q4_k_m", "moe1-f32", "llama4-q8_0", "llama4s-f32"];
const STEPS = 12;

// Tolerances per logit, as tests/moe.rs holds the native engine (its `tolerance`), doubled here
// since a logprob difference carries both logits' errors: moe-q4_k_m routes a few positions
// differently from llama.cpp's 8-bit activations (max 0.074 natively), as llama4-q8_0 does
// (0.06); F32 agrees to 5e-3.
const TOL = { "moe-q4_k_m": 0.5, "moe1-f32": 1e-2, "llama4-q8_0": 0.5, "llama4s-f32": 1e-2 };

function golden(fixture) {
  return JSON.parse(fs.readFileSync(path.join(root, "tests/golden", `model-${fixture}.json`), "utf8"));
}

let server, browser, page, adapter;

before(async () => {
  ({ server, browser, page, adapter } = await openApiPage("moe", fixtureDir(FIXTURES)));
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** For each prompt: greedy tokens and the first step's top log-probabilities with `options`. */
function run(fixture, prompts, steps, options) {
  return page.evaluate(
    async ({ fixture, prompts, steps, options }) => {
      const m = await Hearth.load(`/fixtures/${fixture}.gguf`, { contextSize: 128, ...options });
      const out = [];
      for (const prompt of prompts) {
        const r = { backend: m.info.backend, tokens: [], top: null };
        for await (const c of m.generate(prompt, { maxTokens: steps, temperature: 0, stopAtEos: false })) if (!c.done) r.tokens.push(...c.tokenIds);
        for await (const c of m.generate(prompt, { maxTokens: 1, temperature: 0, stopAtEos: false, logprobs: 5 })) {
          if (c.logprobs) r.top = c.logprobs[0].topLogprobs.map((t) => [t.id, t.logprob]);
        }
        out.push(r);
      }
      await m.unload();
      return out;
    },
    { fixture, prompts, steps, options },
  );
}

test("the CPU engine gives llama.cpp's greedy tokens and top logits for MoE and Llama 4 fixtures", async () => {
  for (const fixture of FIXTURES) {
    const g = golden(fixture);
    const results = await run(fixture, g.cases.map((c) => c.prompt), STEPS, { backend: "cpu" });
    g.cases.forEach((want, i) => {
      const r = results[i];
      assert.equal(r.backend, "cpu");
      assert.equal(r.tokens.length, STEPS, `${fixture}: ${STEPS} tokens`);
      // Equal up to a near tie in llama.cpp's own logits (the margin between its top two).
      const same = want.greedy.slice(0, STEPS).findIndex((t, k) => r.tokens[k] !== t);
      if (same >= 0) assert.ok(want.greedy_margins[same] < TOL[fixture], `${fixture} ${JSON.stringify(want.prompt)}: step ${same} differs (llama.cpp margin ${want.greedy_margins[same]}): ${r.tokens} vs ${want.greedy.slice(0, STEPS)}`);
      // The last prompt position's top logits, as differences from the top one (logprobs are
      // logits less one log-sum-exp).
      const last = want.positions[want.positions.length - 1];
      const logit = new Map(last.ids.map((id, k) => [id, last.logits[k]]));
      const [top, topLp] = r.top[0];
      assert.ok(logit.has(top), `${fixture}: the browser's top token ${top} is in llama.cpp's top 10`);
      let compared = 0;
      for (const [id, lp] of r.top) {
        if (!logit.has(id)) continue;
        const diff = Math.abs(lp - topLp - (logit.get(id) - logit.get(top)));
        assert.ok(diff <= TOL[fixture], `${fixture} ${JSON.stringify(want.prompt)}: token ${id} differs from the top by ${lp - topLp}, llama.cpp ${logit.get(id) - logit.get(top)}`);
        compared++;
      }
      assert.ok(compared >= 3, `${fixture}: at least 3 of the top 5 in llama.cpp's top 10 (${compared})`);
    });
  }
});

test("WebGPU runs the F32 MoE and Llama 4 fixtures within tolerance of the CPU engine", async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  for (const fixture of ["moe1-f32", "llama4s-f32"]) {
    const prompts = golden(fixture).cases.map((c) => c.prompt).slice(0, 2);
    const [cpu, gpu] = [await run(fixture, prompts, 4, { backend: "cpu" }), await run(fixture, prompts, 4, { backend: "webgpu" })];
    prompts.forEach((prompt, i) => {
      assert.equal(gpu[i].backend, "webgpu");
      assert.deepEqual(gpu[i].tokens, cpu[i].tokens, `${fixture} ${JSON.stringify(prompt)}: greedy tokens`);
      // The GPU keeps the query and softmax weights in f32 where the CPU engine rounds them to f16
      // as llama.cpp does (kv-types.test.mjs: up to 0.02 per logit with the F16 cache).
      const want = new Map(cpu[i].top);
      for (const [id, lp] of gpu[i].top) if (want.has(id)) assert.ok(Math.abs(want.get(id) - lp) <= 0.05, `${JSON.stringify(prompt)}: token ${id} logprob ${lp} vs ${want.get(id)}`);
      assert.equal(gpu[i].top[0][0], cpu[i].top[0][0], `${fixture}: the same top token`);
    });
  }
});
