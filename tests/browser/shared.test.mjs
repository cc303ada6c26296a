// One engine shared by tabs (issue 20): `Hearth.load(url, {shared: true})` in two pages of one
// browser runs a single SharedWorker engine (the second load joins the first: no weights loaded
// twice). Each page keeps its own conversation: turns interleaved between the pages give exactly
// the tokens of a dedicated engine per conversation, with the earlier turns still read from the KV
// cache (each page's conversation is swapped in for its requests). A page's requests wait their
// turn (a page that generates back to back does not hold the other one back); a saved session
// holds that page's conversation only; adapters are refused ("unsupported"); a closed page's
// state is freed; a crash fails both pages' requests and both load again into a fresh engine.
// Where SharedWorker is missing, or for a File, a dedicated Worker runs the model (info.shared).
// On WebGPU (where the engine has an adapter) the shared engine gives a dedicated one's tokens.
//
// Needs pkg/ (scripts/build-wasm) and a browser (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { startServer, launchBrowser, logPage, fixtureDir, assertPkgBuilt, root } from "./harness.mjs";

const FIXTURE = "/fixtures/bpe-q4_k_m.gguf";
const TIMEOUT = 120_000;
let server, browser, context, pageA, pageB, dir, sha256;

before(async () => {
  assertPkgBuilt();
  dir = fixtureDir(["bpe-q4_k_m"]);
  // Given to every load: saved sessions are tied to it.
  sha256 = createHash("sha256").update(fs.readFileSync(path.join(dir, "bpe-q4_k_m.gguf"))).digest("hex");
  server = await startServer({ mounts: { "/fixtures": dir, "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
  context = await browser.newContext();
  pageA = await context.newPage();
  logPage(pageA, "tab A");
  pageB = await context.newPage();
  logPage(pageB, "tab B");
  for (const p of [pageA, pageB]) await openTab(p);
});

/** The API page, with what both pages run: a greedy chat turn (its token ids, usage, end time). */
async function openTab(p) {
  await p.goto(server.url + "test/api.html");
  await p.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
  await p.evaluate(() => {
    window.turn = async (m, messages, maxTokens = 8, onChunk = () => {}) => {
      const out = { text: "", ids: [], usage: null, at: 0 };
      for await (const c of m.chat(messages, { maxTokens, temperature: 0, stopAtEos: false })) {
        onChunk(c);
        out.text += c.text ?? "";
        if (c.tokenIds) out.ids.push(...c.tokenIds);
        if (c.done) out.usage = c.usage;
      }
      out.at = performance.timeOrigin + performance.now();
      return out;
    };
    window.err = (p) => p.then(() => null, (e) => ({ name: e.name, code: e.code, message: e.message }));
  });
}

after(async () => {
  await browser?.close();
  await server?.close();
});

const CONVERSATIONS = {
  A: ["Tell me a story about a fox.", "And then?"],
  B: ["What is the capital of France?", "Why?"],
};

/** Turn 1 and turn 2 of `conversation` in the page's `llm` (window[name]). */
const turns = (page, name, user, turnIndex) =>
  page.evaluate(
    async ({ name, user, turnIndex }) => {
      const m = window[name];
      window.history_ ??= {};
      const h = (window.history_[name] ??= []);
      if (turnIndex === 0) h.length = 0;
      h.push({ role: "user", content: user });
      const r = await turn(m, h);
      h.push({ role: "assistant", content: r.text });
      return r;
    },
    { name, user, turnIndex },
  );

let reference;

test("two pages share one engine, each continuing its own conversation with a dedicated engine's tokens", { timeout: TIMEOUT }, async () => {
  // The reference: each conversation in a dedicated engine of its own.
  reference = await pageA.evaluate(
    async ({ url, conversations, sha256 }) => {
      const out = { saved: {} };
      for (const [k, users] of Object.entries(conversations)) {
        const m = await Hearth.load(url, { contextSize: 256, backend: "cpu", sha256 });
        const h = [];
        out[k] = [];
        for (const u of users) {
          h.push({ role: "user", content: u });
          const r = await turn(m, h);
          h.push({ role: "assistant", content: r.text });
          out[k].push(r);
        }
        out.saved[k] = (await m.saveSession(`reference ${k}`)).tokens;
        out.shared = m.info.shared;
        await m.unload();
      }
      return out;
    },
    { url: FIXTURE, conversations: CONVERSATIONS, sha256 },
  );
  assert.equal(reference.shared, false);

  // Both pages load at once: one loads the weights, the other joins it.
  const load = (page) =>
    page.evaluate(
      async ({ url, sha256 }) => {
        const events = [];
        window.llm = await Hearth.load(url, { shared: true, contextSize: 256, backend: "cpu", sha256, onProgress: (p) => events.push(p.phase) });
        return { shared: window.llm.info.shared, loadEvents: events.length };
      },
      { url: FIXTURE, sha256 },
    );
  const [la, lb] = await Promise.all([load(pageA), load(pageB)]);
  assert.equal(la.shared, true, "page A's engine is shared");
  assert.equal(lb.shared, true, "page B's engine is shared");
  assert.equal((la.loadEvents > 0) + (lb.loadEvents > 0), 1, `the weights are loaded once (progress events: A ${la.loadEvents}, B ${lb.loadEvents})`);
  const stats = await pageA.evaluate(() => llm.stats());
  assert.equal(stats.shared.clients, 2, JSON.stringify(stats));

  // Turns interleaved: A1, B1, A2, B2.
  const got = { A: [], B: [] };
  for (let i = 0; i < 2; i++) {
    got.A.push(await turns(pageA, "llm", CONVERSATIONS.A[i], i));
    got.B.push(await turns(pageB, "llm", CONVERSATIONS.B[i], i));
  }
  for (const k of ["A", "B"]) {
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(got[k][i].ids, reference[k][i].ids, `${k} turn ${i + 1}: a dedicated engine's tokens`);
    }
    // A first turn may reuse the start its prompt shares with the other page's conversation.
    assert.equal(got[k][1].usage.cachedTokens, reference[k][1].usage.cachedTokens, `${k} turn 2: as much read from the cache as in a dedicated engine`);
    assert.ok(got[k][1].usage.cachedTokens > got[k][0].ids.length, `${k}'s second turn reused its first from the cache (${got[k][1].usage.cachedTokens} tokens)`);
  }
  assert.notDeepEqual(got.A[0].ids, got.B[0].ids, "the conversations differ");
  const after = await pageA.evaluate(() => llm.stats());
  assert.equal(after.shared.conversations, 2);
  assert.ok(after.shared.stashedBytes > 0, "the conversation not in the engine is stashed");
  console.log(`# shared engine: ${after.shared.clients} pages, ${after.shared.conversations} conversations, ${after.shared.stashedBytes} bytes stashed; threads ${after.threads}`);

  // A saved session holds this page's conversation (A's last turn is not the engine's last: B's is).
  const saved = await pageA.evaluate(async () => (await llm.saveSession("shared A")).tokens);
  assert.equal(saved, reference.saved.A, "page A's saved session is A's conversation");
  assert.notEqual(reference.saved.A, reference.saved.B);
});

test("a page that generates back to back does not hold the other page back", { timeout: TIMEOUT }, async () => {
  // B asks as soon as A's first generation streams (a BroadcastChannel between the pages). Its
  // page.evaluate returns at once: Firefox's and WebKit's drivers run one page's script at a time.
  // The channel is kept in a global: WebKit beside Firefox once never delivered the message (the
  // test hung for its whole timeout), as if the unreferenced channel had been collected.
  await pageB.evaluate(() => {
    window.bChannel = new BroadcastChannel("shared-test");
    const told = new Promise((r) => (window.bChannel.onmessage = r));
    const late = new Promise((_, no) => setTimeout(() => no(new Error("page B never heard that A started (BroadcastChannel)")), 60000));
    window.bDone = Promise.race([told, late]).then(async () => (await turn(llm, [{ role: "user", content: "Say hello." }], 8)).at);
  });
  const a = await pageA.evaluate(async () => {
    const ch = new BroadcastChannel("shared-test");
    const ends = [];
    for (let i = 0; i < 3; i++) {
      let told = i > 0;
      const r = await turn(llm, [{ role: "user", content: `Count to ${i + 3}.` }], 200, () => told || ((told = true), ch.postMessage("started")));
      ends.push(r.at);
    }
    return ends;
  });
  const b = pageB.evaluate(() => window.bDone);
  const bEnd = await b;
  // Each page stamps its own ends when their messages arrive: the engine may finish A's first,
  // serve B's short request and reach B's page a few ms before A's page reads its last chunk
  // (WebKit: B 4 ms "before" A's first, once), so "after A's first" allows 50 ms of delivery.
  assert.ok(bEnd > a[0] - 50 && bEnd < a[1], `B's request is served after A's first and before A's second (B ended ${(bEnd - a[0]).toFixed(0)} ms after A's first; A's second ${(a[1] - a[0]).toFixed(0)} ms after it)`);
});

test("adapters are refused, a File or no SharedWorker gets a dedicated engine, a closed page's state is freed", { timeout: TIMEOUT }, async () => {
  const r = await pageA.evaluate(async (url) => {
    const out = {};
    out.adapter = await err(llm.adapters.load(new Uint8Array(16)));
    const bytes = await (await fetch(url)).arrayBuffer();
    const f = await Hearth.load(new File([bytes], "m.gguf"), { shared: true, contextSize: 256 });
    out.file = f.info.shared;
    await f.unload();
    const saved = window.SharedWorker;
    window.SharedWorker = undefined;
    try {
      const d = await Hearth.load(url, { shared: true, contextSize: 256, backend: "cpu" });
      out.fallback = d.info.shared;
      out.fallbackTurn = (await turn(d, [{ role: "user", content: "Tell me a story about a fox." }])).ids;
      await d.unload();
    } finally {
      window.SharedWorker = saved;
    }
    // The widget's `shared` attribute.
    await import("/pkg/hearth-widget.js");
    const w = document.createElement("hearth-chat");
    w.setAttribute("model", url);
    w.setAttribute("shared", "");
    document.body.append(w);
    out.widget = (await w.ensureModel())?.info.shared;
    await w.llm.unload();
    w.remove();
    return out;
  }, FIXTURE);
  assert.equal(r.widget, true, "the widget with `shared` runs in the shared engine");
  assert.equal(r.adapter?.code, "unsupported", JSON.stringify(r.adapter));
  assert.match(r.adapter.message, /shared: false/);
  assert.equal(r.file, false, "a File runs in a dedicated Worker");
  assert.equal(r.fallback, false, "without SharedWorker: a dedicated Worker");
  assert.deepEqual(r.fallbackTurn, reference.A[0].ids);

  await pageB.close();
  const freed = await pageA.evaluate(async () => {
    const t0 = performance.now();
    for (;;) {
      const s = await llm.stats();
      if (s.shared.clients === 1 || performance.now() - t0 > 20000) return { ...s.shared, ms: performance.now() - t0 };
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  assert.equal(freed.clients, 1, `page B's client is gone after its page closed: ${JSON.stringify(freed)}`);
  assert.equal(freed.conversations, 1, "and its conversation with it");
  console.log(`# a closed page's state was freed within ${freed.ms.toFixed(0)} ms`);
});

test("a crash fails the pages' requests; they load again into a fresh shared engine", { timeout: TIMEOUT }, async () => {
  pageB = await context.newPage();
  logPage(pageB, "tab B2");
  await openTab(pageB);
  const lb = await pageB.evaluate(
    async ({ url, sha256 }) => {
      window.llm = await Hearth.load(url, { shared: true, contextSize: 256, backend: "cpu", sha256 });
      return (await llm.stats()).shared.clients;
    },
    { url: FIXTURE, sha256 },
  );
  assert.equal(lb, 2);
  const crash = await pageA.evaluate(() => err(llm._debugTrap("panic")));
  assert.equal(crash?.code, "engine_crashed", JSON.stringify(crash));
  const bAfter = await pageB.evaluate(async () => {
    const t0 = performance.now();
    // Page B hears of the crash from the worker; its next request fails the same way.
    for (;;) {
      const e = await err(llm.tokenize("hello"));
      if (e || performance.now() - t0 > 10000) return e;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  assert.equal(bAfter?.code, "engine_crashed", JSON.stringify(bAfter));
  const [a, b] = await Promise.all(
    [pageA, pageB].map((p) =>
      p.evaluate(
        async ({ url, sha256 }) => {
          await llm.load(url, { contextSize: 256, backend: "cpu", sha256 });
          const r = await turn(llm, [{ role: "user", content: "Tell me a story about a fox." }]);
          return { ids: r.ids, clients: (await llm.stats()).shared.clients, shared: llm.info.shared };
        },
        { url: FIXTURE, sha256 },
      ),
    ),
  );
  assert.deepEqual(a.ids, reference.A[0].ids);
  assert.deepEqual(b.ids, reference.A[0].ids);
  assert.equal(a.shared && b.shared, true);
  assert.equal(Math.max(a.clients, b.clients), 2, "both pages are in the fresh engine");
});

test("on WebGPU the shared engine gives a dedicated WebGPU engine's tokens", { timeout: TIMEOUT }, async (t) => {
  const r = await pageA.evaluate(async (url) => {
    if (!(await navigator.gpu?.requestAdapter())) return null;
    const messages = [{ role: "user", content: "Tell me a story about a fox." }];
    const d = await Hearth.load(url, { backend: "webgpu", contextSize: 256 });
    const dedicated = (await turn(d, messages)).ids;
    await d.unload();
    const s = await Hearth.load(url, { shared: true, backend: "webgpu", contextSize: 256 }).catch((e) => e);
    if (s instanceof Error) return { dedicated, error: { code: s.code, message: s.message } };
    const shared = (await turn(s, messages)).ids;
    const info = { shared: s.info.shared, backend: s.info.backend };
    await s.unload();
    return { dedicated, shared, info };
  }, FIXTURE);
  if (!r) return t.skip("no WebGPU adapter in this engine");
  console.log(`# WebGPU in the shared engine: ${JSON.stringify(r.error ?? r.info)}`);
  assert.ok(!r.error, JSON.stringify(r.error));
  assert.deepEqual(r.info, { shared: true, backend: "webgpu" });
  assert.deepEqual(r.shared, r.dedicated);
});
