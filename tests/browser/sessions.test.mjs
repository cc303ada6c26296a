// Saved conversations (issue 20): `llm.saveSession(name)` keeps the engine's cached conversation
// (tokens and KV cache, src/saved.rs) in OPFS (Cache Storage where files are not writable);
// `restoreSession(name)` in a fresh engine (a new Worker, as after a reload) puts it back, and
// the next turn gives exactly the unbroken session's tokens while re-reading only the new ones.
// Saved sessions are tied to the model file's SHA-256 (given, from the store, or hashed from the
// File loaded), the context size and the cache type: anything else is a typed error that leaves
// the engine as it was.
//
// Needs pkg/ (scripts/build-wasm) and a browser (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { openApiPage, fixtureDir } from "./harness.mjs";

const FIXTURES = ["bpe-q4_k_m", "spm-q4_0"];
let server, browser, page, dir, adapter;

before(async () => {
  dir = fixtureDir(FIXTURES);
  ({ server, browser, page, adapter } = await openApiPage("sessions", dir));
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const sha256 = (fixture) => createHash("sha256").update(fs.readFileSync(path.join(dir, `${fixture}.gguf`))).digest("hex");

test("a saved conversation restored in a new engine continues with the unbroken session's tokens", async () => {
  const r = await page.evaluate(async (sha) => {
    const opts = { maxTokens: 10, temperature: 0, stopAtEos: false };
    const reply = async (m, messages, o = opts) => {
      const out = { text: "", ids: [], usage: null };
      for await (const c of m.chat(messages, o)) {
        out.text += c.text ?? "";
        if (c.tokenIds) out.ids.push(...c.tokenIds);
        if (c.done) out.usage = c.usage;
      }
      return out;
    };
    const a = await Hearth.load("/fixtures/bpe-q4_k_m.gguf", { contextSize: 256, sha256: sha });
    const turn1 = [{ role: "user", content: "Tell me a story about a fox." }];
    const first = await reply(a, turn1);
    const saved = await a.saveSession("fox story");
    const turn2 = [...turn1, { role: "assistant", content: first.text }, { role: "user", content: "And then?" }];
    const sampled = { ...opts, temperature: 0.8, seed: 7 };
    const unbroken = await reply(a, turn2);
    await a.restoreSession("fox story");
    const unbrokenSampled = await reply(a, turn2, sampled);
    await a.unload();

    // A new Worker, loaded from a File: its SHA-256 is hashed from the File when asked.
    const bytes = await (await fetch("/fixtures/bpe-q4_k_m.gguf")).arrayBuffer();
    const b = await Hearth.load(new File([bytes], "bpe-q4_k_m.gguf"), { contextSize: 256 });
    const listed = await b.listSessions();
    const restored = await b.restoreSession("fox story");
    const cont = await reply(b, turn2);
    await b.restoreSession("fox story");
    const contSampled = await reply(b, turn2, sampled);
    // Without the saved session the same turn re-reads everything.
    const c = await Hearth.load(new File([bytes], "bpe-q4_k_m.gguf"), { contextSize: 256 });
    const fresh = await reply(c, turn2);
    await c.unload();
    await b.unload();
    return { first, saved, unbroken, unbrokenSampled, listed, restored, cont, contSampled, fresh };
  }, sha256("bpe-q4_k_m"));
  console.log(`# saved ${r.saved.tokens} tokens in ${r.saved.bytes} bytes (${r.saved.ms.toFixed(1)} ms); restored in ${r.restored.ms.toFixed(1)} ms; the next turn read ${r.cont.usage.promptTokens - r.cont.usage.cachedTokens} of ${r.cont.usage.promptTokens} prompt tokens (${r.fresh.usage.promptTokens - r.fresh.usage.cachedTokens} without the saved session)`);
  assert.equal(r.first.ids.length, 10);
  assert.equal(r.saved.name, "fox story");
  assert.equal(r.saved.modelSha256, sha256("bpe-q4_k_m"));
  assert.equal(r.saved.contextSize, 256);
  assert.equal(r.saved.kvType, "f16");
  assert.ok(r.saved.tokens >= r.first.ids.length, `${r.saved.tokens} tokens saved`);
  assert.ok(r.listed.some((s) => s.name === "fox story" && s.tokens === r.saved.tokens && s.bytes === r.saved.bytes), JSON.stringify(r.listed));
  assert.equal(r.restored.tokens, r.saved.tokens);
  assert.equal(r.restored.bytes, r.saved.bytes);
  assert.deepEqual(r.cont.ids, r.unbroken.ids, "greedy: the restored session's tokens are the unbroken one's");
  assert.deepEqual(r.contSampled.ids, r.unbrokenSampled.ids, "sampled with a seed: the same");
  assert.equal(r.cont.usage.cachedTokens, r.unbroken.usage.cachedTokens, "as much of the prompt came from the cache");
  assert.ok(r.cont.usage.cachedTokens > r.first.ids.length, `${r.cont.usage.cachedTokens} cached`);
  assert.equal(r.fresh.usage.cachedTokens, 0);
  assert.deepEqual(r.fresh.ids, r.cont.ids);
});

test("another model, context size or cache type is session_mismatch, a missing name session_not_found; the engine goes on", async () => {
  const r = await page.evaluate(async () => {
    const err = (p) => p.then(() => null, (e) => ({ name: e.name, code: e.code, message: e.message }));
    const greedy = async (m) => {
      const ids = [];
      for await (const c of m.generate("Once upon a time", { maxTokens: 6, temperature: 0, stopAtEos: false })) if (c.tokenIds) ids.push(...c.tokenIds);
      return ids;
    };
    const bytes = await (await fetch("/fixtures/bpe-q4_k_m.gguf")).arrayBuffer();
    const file = () => new File([bytes], "bpe-q4_k_m.gguf");
    const out = {};
    const a = await Hearth.load(file(), { contextSize: 128 });
    out.before = await greedy(a);
    out.saved = await a.saveSession("ctx 128");
    out.missing = await err(a.restoreSession("no such session"));
    out.badName = await err(a.saveSession(""));
    out.after = await greedy(a);
    await a.unload();
    const other = await Hearth.load("/fixtures/spm-q4_0.gguf", { contextSize: 128, cache: true });
    out.otherModel = await err(other.restoreSession("ctx 128"));
    out.otherGoesOn = (await greedy(other)).length;
    await other.unload();
    const wider = await Hearth.load(file(), { contextSize: 256 });
    out.otherContext = await err(wider.restoreSession("ctx 128"));
    await wider.unload();
    const q8 = await Hearth.load(file(), { contextSize: 128, kvType: "q8_0" });
    out.otherCache = await err(q8.restoreSession("ctx 128"));
    await q8.unload();
    // Bytes given without their SHA-256 cannot tie a session to the model.
    const unknown = await Hearth.load(new Uint8Array(bytes), { contextSize: 128 });
    await greedy(unknown);
    out.noSha = await err(unknown.saveSession("x"));
    await unknown.unload();
    const keeper = await Hearth.load(file(), { contextSize: 128 });
    out.deleted = await keeper.deleteSession("ctx 128");
    out.deletedAgain = await keeper.deleteSession("ctx 128");
    out.gone = await err(keeper.restoreSession("ctx 128"));
    await keeper.unload();
    return out;
  });
  assert.deepEqual(r.after, r.before, "refusals leave the engine's conversation as it was");
  assert.equal(r.missing.name, "HearthError");
  assert.equal(r.missing.code, "session_not_found");
  assert.match(r.missing.message, /no saved session is named "no such session"/);
  assert.equal(r.badName.code, "invalid_argument");
  assert.equal(r.otherModel.code, "session_mismatch");
  assert.match(r.otherModel.message, /another model file/);
  assert.equal(r.otherGoesOn, 6);
  assert.equal(r.otherContext.code, "session_mismatch");
  assert.match(r.otherContext.message, /context of 128 tokens; this session's is 256/);
  assert.equal(r.otherCache.code, "session_mismatch");
  assert.match(r.otherCache.message, /f16 KV cache; this session's is q8_0/);
  assert.equal(r.noSha.code, "invalid_argument");
  assert.match(r.noSha.message, /SHA-256.*cache: true.*sha256/);
  assert.equal(r.deleted, true);
  assert.equal(r.deletedAgain, false);
  assert.equal(r.gone.code, "session_not_found");
});

test("on WebGPU a saved conversation restores from the GPU's cache and continues alike", async (t) => {
  if (!adapter) return t.skip("no WebGPU adapter in this engine");
  const r = await page.evaluate(async (sha) => {
    const opts = { maxTokens: 6, temperature: 0, stopAtEos: false };
    const ids = async (m, messages) => {
      const out = [];
      for await (const c of m.chat(messages, opts)) if (c.tokenIds) out.push(...c.tokenIds);
      return out;
    };
    const load = () => Hearth.load("/fixtures/bpe-q4_k_m.gguf", { backend: "webgpu", contextSize: 128, sha256: sha });
    const a = await load();
    const turn1 = [{ role: "user", content: "Hello there" }];
    const first = await ids(a, turn1);
    const saved = await a.saveSession("on the gpu");
    const turn2 = [...turn1, { role: "assistant", content: await a.decode(first) }, { role: "user", content: "Go on." }];
    const unbroken = await ids(a, turn2);
    await a.unload();
    const b = await load();
    const restored = await b.restoreSession("on the gpu");
    const cont = await ids(b, turn2);
    const backend = b.info.backend;
    await b.unload();
    return { saved, restored, unbroken, cont, backend };
  }, sha256("bpe-q4_k_m"));
  assert.equal(r.backend, "webgpu");
  assert.equal(r.restored.tokens, r.saved.tokens);
  assert.deepEqual(r.cont, r.unbroken);
});
