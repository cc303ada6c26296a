// Hostile GGUF files in Chromium (issue 15): each one, loaded through the public API by URL and as
// a File, fails with a HearthError whose code is the native CLI's for the same file, on one line
// of at most ~1,000 characters, within seconds; afterwards the same object loads a good model and
// generates. Also: a chat template that loops 10^10 times ends in "chat_template" within
// seconds, and an engine that crashes (the debugTrap hook) fails with "engine_crashed" and comes
// back on the next load, in the Worker and in the page's own thread.
//
// The files are built here from the spm-q4_0 fixture (a GGUF reader/writer below) and by the
// project's own fuzzer (`hearth fuzz --replay SEED`, pinned seeds whose native class is
// typed_error); the native outcome of each comes from the debug CLI.
//
// Needs pkg/ (scripts/build-wasm), Chromium and playwright-core, the debug CLI (cargo test builds
// it), and the real model (HEARTH_REAL_MODEL, scripts/default-model; scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { T_ARRAY, T_STRING, parseGguf, writeGguf } from "./gguf.mjs";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, cliBinary, realModel, root } from "./harness.mjs";

const golden = JSON.parse(fs.readFileSync(path.join(root, "tests/golden/model-spm-q4_0.json"), "utf8"));
const CASE = golden.cases[0];
const WANT = CASE.greedy.slice(0, 8);

/** Fuzz cases (seeds of `hearth fuzz`) whose native class is typed_error, with a spread of codes. */
const FUZZ_SEEDS = [16, 22, 39, 40, 50, 56, 61, 87, 98, 104, 114];
/** Ten billion iterations: only the template step budget stops it. */
const LOOP_TEMPLATE = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
/** The messages the fuzzer's child renders (src/bin/hearth/fuzz.rs run_one). */
const FUZZ_MESSAGES = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi there" },
];
/** Failing is quick: the slowest hostile file is given this long (ms) to fail. */
const FAST_MS = 5000;

// ---- GGUF, as much as it takes to rewrite a file -------------------------------------------------

/** A metadata string value's raw bytes (u64 length, bytes). */
function stringValue(s) {
  const b = Buffer.from(s);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([len, b]);
}

/** A U8 array's raw bytes: element type, `count` as written, then `bytes`. */
function u8ArrayValue(count, bytes) {
  const head = Buffer.alloc(12);
  head.writeUInt32LE(0, 0);
  head.writeBigUInt64LE(BigInt(count), 4);
  return Buffer.concat([head, bytes]);
}

/** The fixture with `edit(parsed)` applied, written again. */
function rewrite(fixture, edit) {
  const g = parseGguf(fixture);
  g.kvs = g.kvs.map((kv) => ({ ...kv }));
  g.tensors = g.tensors.map((t) => ({ ...t }));
  edit(g);
  return writeGguf(g);
}

function patched(fixture, at, write) {
  const b = Buffer.from(fixture);
  write(b, at);
  return b;
}

// ---- native outcomes -----------------------------------------------------------------------------

function run(bin, args) {
  return new Promise((resolve) => {
    execFile(bin, args, { cwd: root, timeout: 120000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => resolve({ status: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

/** The native CLI's outcome for a file: {code: null} when it loads and generates, else the code of its error line. */
async function nativeOutcome(bin, file) {
  const r = await run(bin, ["generate", "--model", file, "--prompt", "Hello", "--max-tokens", "2", "--temperature", "0"]);
  if (r.status === 0) return { code: null, line: "" };
  const lines = r.stderr.trim().split("\n");
  const m = lines.length === 1 && lines[0].match(/^hearth: error \[([a-z_]+)\]: /);
  assert.ok(m, `${path.basename(file)}: native generate did not end in one error line: ${r.stderr.slice(0, 2000)}`);
  return { code: m[1], line: lines[0] };
}

/** A fuzz case: its native class and code (`hearth fuzz --replay`), and its bytes. */
async function fuzzCase(bin, seed, dir) {
  // --keep: the case's file goes to --out whatever its class.
  const keep = path.join(dir, `keep-${seed}`);
  const r = await run(bin, ["fuzz", "--replay", String(seed), "--keep", "--out", keep]);
  const outcome = JSON.parse(r.stdout.trim().split("\n").at(-1));
  const file = path.join(dir, `fuzz-${seed}.gguf`);
  const kept = path.join(keep, `${seed}.gguf`);
  assert.ok(fs.existsSync(kept), `hearth fuzz --replay ${seed} kept no file in ${keep}`);
  fs.renameSync(kept, file);
  fs.rmSync(keep, { recursive: true, force: true });
  return { ...outcome, file };
}

// ---- setup ---------------------------------------------------------------------------------------

let server, browser, page, fixtures, dir, model;
/** [{name, file, native: {code, line}, chat?}] */
const files = [];
const fuzzSkipped = [];

before(async () => {
  const t0 = performance.now();
  assertPkgBuilt();
  model = realModel();
  fixtures = fixtureDir(["spm-q4_0"]);
  const bin = cliBinary();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-hostile-"));
  const good = fs.readFileSync(path.join(fixtures, "spm-q4_0.gguf"));
  // Where the brief of issue 15 says its fields are.
  assert.equal(good.length, 1052224);
  const g = parseGguf(good);
  assert.equal(g.tensors[0].name.toString(), "token_embd.weight");
  assert.equal(good.readBigUInt64LE(21798), g.tensors[0].offset);
  assert.equal(good.readUInt32LE(227), 2, "llama.block_count");

  const made = {
    // (a) The first tensor's offset (u64 at byte 21798) near 2^64.
    "offset-near-2e64": patched(good, 21798, (b, at) => b.writeBigUInt64LE(2n ** 64n - 64n, at)),
    // (b) llama.block_count (u32 at byte 227): a million layers, and 2^31 - 1.
    "block-count-1e6": patched(good, 227, (b, at) => b.writeUInt32LE(1000000, at)),
    "block-count-2e31": patched(good, 227, (b, at) => b.writeUInt32LE(2 ** 31 - 1, at)),
    // (c) A 48 MiB U8 metadata array (a well-formed file), and one whose count claims 2^40
    // elements with 32 MiB of them there.
    "u8-array-48mib": rewrite(good, (x) => x.kvs.unshift({ key: "hostile.blob", type: T_ARRAY, raw: u8ArrayValue(48 << 20, Buffer.alloc(48 << 20, 7)) })),
    "u8-array-count-2e40": rewrite(good, (x) => x.kvs.unshift({ key: "hostile.blob", type: T_ARRAY, raw: u8ArrayValue(2 ** 40, Buffer.alloc(32 << 20, 7)) })),
    // (d) Newlines, NUL and ESC in general.architecture (short, and 3,000 characters) and in a
    // tensor name.
    "arch-control-chars": rewrite(good, (x) => (x.kvs.find((kv) => kv.key === "general.architecture").raw = stringValue("llama\n\u0000\u001b[31m\r"))),
    "arch-long": rewrite(good, (x) => (x.kvs.find((kv) => kv.key === "general.architecture").raw = stringValue("evil\r\n\u0000\u001b[2J".repeat(300)))),
    "tensor-name-control-chars": rewrite(good, (x) => (x.tensors[0].name = Buffer.from("token_embd\n\u0000\u001b[0m.weight"))),
    // (e) Cut inside the tensor index (in the first tensor's offset field) and inside tensor data.
    "truncated-index": good.subarray(0, 21798 + 3),
    "truncated-data": good.subarray(0, 600000),
  };
  const natives = [];
  for (const [name, bytes] of Object.entries(made)) {
    const file = path.join(dir, `${name}.gguf`);
    fs.writeFileSync(file, bytes);
    natives.push(nativeOutcome(bin, file).then((native) => files.push({ name, file, native })));
  }
  // A model whose chat template loops ten billion times (it loads; chats fail).
  fs.writeFileSync(
    path.join(dir, "loop-template.gguf"),
    rewrite(good, (x) => x.kvs.push({ key: "tokenizer.chat_template", type: T_STRING, raw: stringValue(LOOP_TEMPLATE) })),
  );
  // (f) Fuzz cases, two children at a time.
  const seeds = [...FUZZ_SEEDS];
  const worker = async () => {
    for (let s; (s = seeds.shift()) !== undefined; ) {
      const c = await fuzzCase(bin, s, dir);
      if (c.class !== "typed_error") fuzzSkipped.push(`${s}: ${c.class}`);
      else files.push({ name: `fuzz-${s} (${c.kinds})`, file: c.file, native: { code: c.code, line: c.detail }, chat: true });
    }
  };
  await Promise.all([...natives, worker(), worker()]);
  files.sort((a, b) => a.name.localeCompare(b.name));
  console.log(`hostile files: ${files.length} built and run natively in ${((performance.now() - t0) / 1000).toFixed(1)} s${fuzzSkipped.length ? `; fuzz seeds not typed_error now: ${fuzzSkipped.join(", ")}` : ""}`);

  server = await startServer({ mounts: { "/fixtures": fixtures, "/hostile": dir, "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser({ webgpu: false });
  page = await browser.newPage();
  logPage(page, "hostile");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
  // In the page: try a source on a model object, as the fuzzer's child does (load, then for a
  // fuzz case the chat template, then 2 greedy tokens); the first failure, with how long it took.
  await page.evaluate(
    ({ fuzzMessages }) => {
      const describe = (e) => ({ name: e?.name, isHearth: e instanceof HearthError, code: e?.code, message: String(e?.message) });
      window.attempt = async (llm, source, { chat = false } = {}) => {
        const t0 = performance.now();
        const ms = () => Math.round(performance.now() - t0);
        try {
          await llm.load(source);
        } catch (e) {
          return { stage: "load", ms: ms(), ...describe(e) };
        }
        try {
          if (chat) await llm.applyChatTemplate(fuzzMessages);
          for await (const c of llm.generate("Hello", { maxTokens: 2, temperature: 0, stopAtEos: false })) {
          }
        } catch (e) {
          return { stage: "run", ms: ms(), ...describe(e) };
        }
        return { stage: "ok", ms: ms() };
      };
      window.greedy = async (llm, prompt, n) => {
        const ids = [];
        for await (const c of llm.generate(prompt, { temperature: 0, stopAtEos: false, maxTokens: n })) ids.push(...c.tokenIds);
        return ids;
      };
    },
    { fuzzMessages: FUZZ_MESSAGES },
  );
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** What is wrong with a browser outcome, against the native one: [] when nothing. */
function problems(what, got, native) {
  const show = (x) => JSON.stringify(x).slice(0, 300);
  if (native.code === null) return got.stage === "ok" ? [] : [`${what}: native loads and generates; browser: ${show(got)}`];
  const out = [];
  if (got.stage === "ok") return [`${what}: native [${native.code}]; browser loads and generates`];
  if (!got.isHearth || got.name !== "HearthError") out.push(`${what}: not a HearthError: ${show(got)}`);
  if (got.code !== native.code) out.push(`${what}: browser [${got.code}] at ${got.stage}, native [${native.code}]: browser ${show(got.message)}; native ${show(native.line)}`);
  if (/[\n\r\u0000]/.test(got.message)) out.push(`${what}: message on several lines or with NUL: ${show(got.message)}`);
  if (got.message.length > 1024) out.push(`${what}: message of ${got.message.length} characters: ${show(got.message)}`);
  if (got.ms >= FAST_MS) out.push(`${what}: took ${got.ms} ms`);
  return out;
}

test("hostile files fail with the native error code, one line, quickly; the same object then loads a good model", async () => {
  assert.ok(files.length >= 18, `only ${files.length} hostile files`);
  const codes = new Set(files.filter((f) => f.name.startsWith("fuzz-")).map((f) => f.native.code));
  assert.ok(codes.size >= 6, `the fuzz sample has only the codes ${[...codes]}`);
  const t0 = performance.now();
  const r = await page.evaluate(
    async ({ files, good, prompt, n }) => {
      const llm = await Hearth.load(good);
      const out = [];
      for (const f of files) {
        const t0 = performance.now();
        const url = `/hostile/${f.base}`;
        const before = (await llm.stats()).wasmMemoryBytes;
        const byUrl = await attempt(llm, url, { chat: f.chat });
        const grew = (await llm.stats()).wasmMemoryBytes - before;
        const bytes = await (await fetch(url)).arrayBuffer();
        const byFile = await attempt(llm, new File([bytes], f.base), { chat: f.chat });
        const memory = (await llm.stats()).wasmMemoryBytes;
        out.push({ byUrl, byFile, memory, grew, ms: Math.round(performance.now() - t0) });
      }
      // The same object, after all of them: the good model loads and generates the golden tokens.
      const info = await llm.load(good);
      const ids = await greedy(llm, prompt, n);
      await llm.unload();
      return { out, info, ids };
    },
    { files: files.map((f) => ({ base: path.basename(f.file), chat: !!f.chat })), good: "/fixtures/spm-q4_0.gguf", prompt: CASE.prompt, n: WANT.length },
  );
  const seconds = (performance.now() - t0) / 1000;
  const wrong = [];
  for (const [i, f] of files.entries()) {
    const { byUrl, byFile, memory } = r.out[i];
    console.log(`${f.name}: native [${f.native.code ?? "ok"}]; browser [${byUrl.code ?? "ok"}] at ${byUrl.stage} in ${byUrl.ms} ms (URL), ${byFile.ms} ms (File); wasm memory ${(memory / 2 ** 20).toFixed(0)} MiB; ${r.out[i].ms} ms in all`);
    wrong.push(...problems(`${f.name} by URL`, byUrl, f.native), ...problems(`${f.name} as a File`, byFile, f.native));
  }
  // A one-byte array is kept as its bytes (not 32 bytes an element, twice, as it was): loading
  // the 48 MiB one grows the wasm memory by a few times its size at most.
  const u8 = files.findIndex((f) => f.name === "u8-array-48mib");
  const grew = r.out[u8].grew / 2 ** 20;
  console.log(`u8-array-48mib: the wasm memory grew by ${grew.toFixed(0)} MiB loading it by URL`);
  if (grew > 8 * 48) wrong.push(`u8-array-48mib: the wasm memory grew by ${grew.toFixed(0)} MiB for a 48 MiB array`);
  assert.deepEqual(wrong, []);
  assert.equal(r.info.nLayer, 2);
  assert.deepEqual(r.ids, WANT);
  console.log(`${files.length} hostile files, each by URL and as a File, then the good model: ${seconds.toFixed(1)} s`);
});

test("Hearth.load (a new Worker each) and worker: false fail the same way; a good model loads next", async () => {
  const pick = files.filter((f) => ["offset-near-2e64", "block-count-2e31", "arch-long", "truncated-index"].includes(f.name));
  assert.equal(pick.length, 4);
  const r = await page.evaluate(
    async ({ names, good, prompt, n }) => {
      const once = async (source, options) => {
        const t0 = performance.now();
        try {
          const m = await Hearth.load(source, options);
          await m.unload();
          return { stage: "ok", ms: Math.round(performance.now() - t0) };
        } catch (e) {
          return { stage: "load", ms: Math.round(performance.now() - t0), name: e.name, isHearth: e instanceof HearthError, code: e.code, message: e.message };
        }
      };
      const out = [];
      for (const name of names) {
        const url = `/hostile/${name}`;
        const blob = new Blob([await (await fetch(url)).arrayBuffer()]);
        out.push({ worker: await once(url), local: await once(url, { worker: false }), localBlob: await once(blob, { worker: false }) });
      }
      const a = await Hearth.load(good);
      const b = await Hearth.load(good, { worker: false });
      const ids = [await greedy(a, prompt, n), await greedy(b, prompt, n)];
      await a.unload();
      await b.unload();
      return { out, ids };
    },
    { names: pick.map((f) => path.basename(f.file)), good: "/fixtures/spm-q4_0.gguf", prompt: CASE.prompt, n: WANT.length },
  );
  const wrong = [];
  for (const [i, f] of pick.entries()) {
    wrong.push(
      ...problems(`${f.name}: Hearth.load`, r.out[i].worker, f.native),
      ...problems(`${f.name}: Hearth.load, worker: false`, r.out[i].local, f.native),
      ...problems(`${f.name}: Hearth.load(Blob), worker: false`, r.out[i].localBlob, f.native),
    );
  }
  assert.deepEqual(wrong, []);
  assert.deepEqual(r.ids, [WANT, WANT]);
});

test("a chat template that loops 10^10 times fails with chat_template in seconds; the model goes on", async () => {
  const r = await page.evaluate(async () => {
    const llm = await Hearth.load("/hostile/loop-template.gguf");
    const time = async (f) => {
      const t0 = performance.now();
      try {
        await f();
        return { ok: true, ms: Math.round(performance.now() - t0) };
      } catch (e) {
        return { ms: Math.round(performance.now() - t0), name: e.name, isHearth: e instanceof HearthError, code: e.code, message: e.message };
      }
    };
    const messages = [{ role: "user", content: "Hi" }];
    const chat = await time(async () => {
      for await (const c of llm.chat(messages, { maxTokens: 4 })) {
      }
    });
    const render = await time(() => llm.applyChatTemplate(messages));
    const openai = await time(() => llm.chat.completions.create({ messages, max_tokens: 4 }));
    const ids = await greedy(llm, "Once upon a time", 4);
    await llm.unload();
    return { chatTemplate: llm.info.chatTemplate, chat, render, openai, ids };
  });
  assert.equal(r.chatTemplate, "model");
  for (const [what, e] of Object.entries({ chat: r.chat, applyChatTemplate: r.render, "chat.completions.create": r.openai })) {
    assert.equal(e.isHearth, true, `${what}: ${JSON.stringify(e)}`);
    assert.equal(e.code, "chat_template", `${what}: ${JSON.stringify(e)}`);
    assert.doesNotMatch(e.message, /[\n\r\u0000]/);
    assert.ok(e.message.length <= 1024);
    assert.ok(e.ms < 2000, `${what} took ${e.ms} ms`);
    console.log(`loop template, ${what}: [${e.code}] in ${e.ms} ms: ${e.message.slice(0, 160)}`);
  }
  assert.equal(r.ids.length, 4);
});

test("an engine crash fails the request and those in flight with engine_crashed; the same object loads again (Worker and page)", async () => {
  const r = await page.evaluate(
    async ({ good, prompt, n }) => {
      const caught = async (f) => {
        const t0 = performance.now();
        try {
          await f();
          return { ok: true };
        } catch (e) {
          return { ms: Math.round(performance.now() - t0), name: e.name, isHearth: e instanceof HearthError, code: e.code, message: e.message };
        }
      };
      const drain = async (gen) => {
        for await (const c of gen) {
        }
      };
      const out = { worker: {}, page: {} };
      // In the Worker: a panic while a generation is in flight fails both; every trap kind after.
      const llm = await Hearth.load(good);
      const inFlight = caught(() => drain(llm.generate(prompt, { maxTokens: 100000, stopAtEos: false })));
      await new Promise((r) => setTimeout(r, 50));
      out.worker.panic = await caught(() => llm._debugTrap("panic"));
      out.worker.inFlight = await inFlight;
      // Until a load, the model is gone.
      out.worker.before = await caught(() => drain(llm.generate(prompt, { maxTokens: 2 })));
      const info = await llm.load(good);
      out.worker.loaded = info.nLayer;
      out.worker.threads = info.threads;
      out.worker.ids = await greedy(llm, prompt, n);
      // "pool-panic": on a pool Worker of the threaded build (the engine's Worker waits for it).
      for (const kind of ["stack", "oob", "async-panic", "pool-panic", "oom"]) {
        out.worker[kind] = await caught(() => llm._debugTrap(kind));
        out.worker[`${kind}Then`] = await caught(async () => {
          await llm.load(good);
          const ids = await greedy(llm, prompt, n);
          if (ids.join() !== out.worker.ids.join()) throw new Error(`after ${kind}: ${ids}`);
        });
      }
      await llm.unload();
      // In this thread: one wasm instance for every worker: false model; a crash takes them all
      // and the next load starts a fresh instance.
      const buf = await (await fetch(good)).arrayBuffer();
      const a = await Hearth.load(buf, { worker: false });
      const b = await Hearth.load(buf, { worker: false });
      out.page.panic = await caught(() => a._debugTrap("panic"));
      out.page.other = await caught(() => drain(b.generate(prompt, { maxTokens: 2 })));
      out.page.loaded = (await a.load(buf)).nLayer;
      out.page.ids = await greedy(a, prompt, n);
      out.page.asyncPanic = await caught(() => a._debugTrap("async-panic"));
      out.page.otherLoaded = (await b.load(new Blob([buf]))).nLayer;
      out.page.idsB = await greedy(b, prompt, n);
      await a.unload();
      await b.unload();
      return out;
    },
    { good: "/fixtures/spm-q4_0.gguf", prompt: CASE.prompt, n: WANT.length },
  );
  const crashed = (what, e, pattern, code = "engine_crashed") => {
    const s = `${what}: ${JSON.stringify(e)}`;
    assert.equal(e.isHearth, true, s);
    assert.equal(e.name, "HearthError", s);
    assert.equal(e.code, code, s);
    assert.doesNotMatch(e.message, /[\n\r\u0000]/, s);
    assert.ok(e.message.length <= 1024, s);
    assert.match(e.message, /restarted/, s);
    if (pattern) assert.match(e.message, pattern, s);
    console.log(`${what}: ${e.message}`);
  };
  const w = r.worker;
  crashed("worker panic", w.panic, /panicked at .*deliberate panic/);
  crashed("worker generation in flight", w.inFlight);
  crashed("worker request before a load", w.before);
  assert.equal(w.loaded, 2);
  assert.deepEqual(w.ids, WANT);
  crashed("worker stack", w.stack, /stack/);
  crashed("worker oob", w.oob, /out of bounds/i);
  crashed("worker async-panic", w["async-panic"], /panicked at .*inside a future/);
  crashed(`worker pool-panic (${w.threads} threads)`, w["pool-panic"], w.threads > 1 ? /on a thread of its pool: panicked at .*pool-panic/ : /pool-panic/);
  // A failed allocation is told apart from a bug (the allocator remembers it): "out_of_memory".
  crashed("worker oom", w.oom, /ran out of memory \(it could not allocate \d+ MiB with \d+ MiB in use\)/, "out_of_memory");
  for (const kind of ["stack", "oob", "async-panic", "pool-panic", "oom"]) assert.deepEqual(w[`${kind}Then`], { ok: true }, kind);
  const p = r.page;
  crashed("page panic", p.panic, /deliberate panic/);
  crashed("page: another worker: false model", p.other);
  assert.equal(p.loaded, 2);
  assert.deepEqual(p.ids, WANT);
  crashed("page async-panic", p.asyncPanic, /inside a future/);
  assert.equal(p.otherLoaded, 2);
  assert.deepEqual(p.idsB, WANT);
});

test("after the hostile files, the real model loads and chats on the same object", async () => {
  const r = await page.evaluate(
    async ({ url, bad }) => {
      const llm = await Hearth.load("/fixtures/spm-q4_0.gguf");
      const errors = [];
      for (const b of bad) {
        try {
          await llm.load(`/hostile/${b}`);
        } catch (e) {
          errors.push(e.code);
        }
      }
      try {
        await llm._debugTrap("panic");
      } catch (e) {
        errors.push(e.code);
      }
      const info = await llm.load(url);
      let text = "";
      let final;
      for await (const c of llm.chat([{ role: "user", content: "What is the capital of France?" }], { maxTokens: 8, temperature: 0 })) {
        if (c.done) final = c;
        else text += c.text;
      }
      await llm.unload();
      return { errors, name: info.displayName, text, final };
    },
    { url: `/${model.url}`, bad: ["offset-near-2e64.gguf", "block-count-1e6.gguf", "arch-control-chars.gguf"] },
  );
  assert.equal(r.errors.length, 4);
  assert.equal(r.errors.at(-1), "engine_crashed");
  assert.ok(r.final.usage.completionTokens > 0, JSON.stringify(r.final));
  assert.ok(r.text.length > 0);
  console.log(`${r.name} after hostile files and a crash: ${JSON.stringify(r.text)}`);
});
