// The model store in the browser under test (HEARTH_BROWSER): with OPFS (Chromium, Firefox) a
// download cut off midway resumes with an HTTP Range request and then loads the right model; in
// Cache Storage (engines without OPFS, e.g. WebKitGTK: no navigator.storage) it is kept only once
// whole; either way a stored model loads with no request at all; sha256 is checked; a download the
// quota cannot hold is refused up front; listing and deleting. The model host is a separate origin
// (as Hugging Face is), serving CORS and Range like one.
//
// Needs pkg/ (scripts/build-wasm) and the browser (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { startServer, launchBrowser, fixtureDir, logPage, assertPkgBuilt, root } from "./harness.mjs";

// Until www/hearth/store.js's ensureRoom reads navigator.storage?.estimate (not
// navigator.storage.estimate): WebKitGTK has no navigator.storage, so every download throws a
// TypeError there. With that one-character fix these pass in WebKit on Cache Storage.
const golden = JSON.parse(fs.readFileSync(path.join(root, "tests/golden/model-spm-q4_0.json"), "utf8"));
const CASE = golden.cases[0];
const WANT = CASE.greedy.slice(0, 8);

let server, browser, page, host, file, bytes;
/** What the engine offers: OPFS with writable files (else the store uses Cache Storage), a quota. */
let storage;
/** What the model host saw: [{path, range}] (not the header reads of a load's preflight, kept in
 * `headerReads`), and how many bytes the next download response may send. */
const seen = [];
const headerReads = [];
let cutAfter = null;

/** A cross-origin model host: CORS, ETag, single Range requests; `cutAfter` drops a response midway. */
function startModelHost() {
  const etag = `"${createHash("sha256").update(bytes).digest("hex").slice(0, 16)}"`;
  const cors = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Range, If-Range",
    "Access-Control-Expose-Headers": "Content-Range, ETag, Content-Length",
  };
  const srv = http.createServer((req, res) => {
    if (req.method === "OPTIONS") {
      res.writeHead(204, cors);
      return res.end();
    }
    if (!req.url.startsWith("/model.gguf")) {
      res.writeHead(404, cors);
      return res.end();
    }
    // A load's preflight reads the header first (bytes=0-N): served whole, as a host that ignores
    // such ranges would.
    if (/^bytes=0-\d+$/.test(req.headers.range || "")) {
      headerReads.push({ path: req.url, range: req.headers.range });
      res.writeHead(200, { ...cors, "Content-Type": "application/octet-stream", "Content-Length": bytes.length });
      return res.end(bytes);
    }
    seen.push({ path: req.url, range: req.headers.range ?? null });
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range || "");
    const ranged = m && (!req.headers["if-range"] || req.headers["if-range"] === etag);
    if (ranged) start = Number(m[1]);
    const body = bytes.subarray(start);
    const headers = { ...cors, "Content-Type": "application/octet-stream", "Content-Length": body.length, ETag: etag, "Accept-Ranges": "bytes" };
    if (ranged) headers["Content-Range"] = `bytes ${start}-${bytes.length - 1}/${bytes.length}`;
    res.writeHead(ranged ? 206 : 200, headers);
    if (cutAfter !== null) {
      // Send part of it, then drop the connection.
      const n = cutAfter;
      cutAfter = null;
      res.write(body.subarray(0, n), () => setTimeout(() => res.destroy(), 50));
      return;
    }
    res.end(body);
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${srv.address().port}/`, close: () => new Promise((r) => srv.close(r)) })));
}

before(async () => {
  assertPkgBuilt();
  file = path.join(fixtureDir(["spm-q4_0"]), "spm-q4_0.gguf");
  bytes = fs.readFileSync(file);
  host = await startModelHost();
  server = await startServer({ mounts: { "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
  page = await browser.newPage();
  logPage(page, "store");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
  storage = await page.evaluate(() => ({
    opfs: !!navigator.storage?.getDirectory && typeof FileSystemFileHandle !== "undefined" && "createWritable" in FileSystemFileHandle.prototype,
    estimate: typeof navigator.storage?.estimate === "function",
  }));
  console.log(`model store: ${storage.opfs ? "OPFS" : "Cache Storage (no OPFS with createWritable)"}; quota ${storage.estimate ? "known" : "unknown (no navigator.storage.estimate)"}`);
});

after(async () => {
  await browser?.close();
  await server?.close();
  await host?.close();
});

const greedy = async (url, opts) =>
  page.evaluate(
    async ({ url, opts, prompt, want }) => {
      const events = [];
      try {
        const m = await Hearth.load(url, { ...opts, onProgress: (p) => events.push(p) });
        const ids = [];
        for await (const c of m.generate(prompt, { temperature: 0, stopAtEos: false, maxTokens: want.length })) if (!c.done) ids.push(...c.tokenIds);
        await m.unload();
        return { ids, events };
      } catch (e) {
        return { error: e.code, message: e.message, events };
      }
    },
    { url, opts, prompt: CASE.prompt, want: WANT },
  );

test("an interrupted download resumes with a Range request (OPFS; Cache Storage keeps only whole files), then loads; the next load reads only the store", async () => {
  const url = host.url + "model.gguf";
  const cut = Math.floor(bytes.length * 0.6);
  cutAfter = cut;
  const first = await greedy(url, { cache: true });
  assert.equal(first.error, "network", `the cut download fails: ${first.message}`);
  const partial = await page.evaluate(() => Hearth.models.list());
  if (storage.opfs) {
    assert.equal(partial.length, 1);
    assert.equal(partial[0].complete, false);
    assert.ok(partial[0].size > 0 && partial[0].size <= cut, `kept ${partial[0].size} of the ${cut} bytes sent`);
  } else {
    assert.deepEqual(partial, [], "Cache Storage keeps nothing of a cut download");
  }

  seen.length = 0;
  headerReads.length = 0;
  const second = await greedy(url, { cache: true });
  assert.deepEqual(second.ids, WANT, second.message);
  if (storage.opfs) assert.deepEqual(seen, [{ path: "/model.gguf", range: `bytes=${partial[0].size}-` }], "only the rest was requested");
  else assert.deepEqual(seen, [{ path: "/model.gguf", range: null }], "the whole file again");
  assert.equal(headerReads.length, 1, "the preflight read the header of a model not yet stored");
  // OPFS: downloaded into the store, then loaded from it; Cache Storage: loaded as it downloads.
  const phases = [...new Set(second.events.map((e) => e.phase))];
  assert.ok(phases.includes("download") && (!storage.opfs || phases.includes("load")), JSON.stringify(phases));
  assert.equal(second.events.at(-1).loaded, bytes.length);
  const stored = await page.evaluate(() => Hearth.models.list());
  assert.equal(stored.length, 1);
  assert.equal(stored[0].complete, true);
  assert.equal(stored[0].size, bytes.length);
  assert.equal(stored[0].sha256, createHash("sha256").update(bytes).digest("hex"));
  assert.ok(Date.now() - Date.parse(stored[0].storedAt) < 600000);

  seen.length = 0;
  headerReads.length = 0;
  const third = await greedy(url, { cache: true, sha256: stored[0].sha256 });
  assert.deepEqual(third.ids, WANT);
  assert.deepEqual(seen, [], "a stored model loads with no request");
  assert.deepEqual(headerReads, [], "its preflight reads the stored copy");
  assert.equal(third.events[0].phase, "inspect", "the preflight's plan comes first");
  assert.ok(third.events.slice(1).every((e) => e.phase === "load"));
});

test("a wrong sha256 is refused and the download discarded; a stored copy is checked too", async () => {
  const url = host.url + "model.gguf?v=2";
  const r = await page.evaluate(async (url) => {
    const out = {};
    try {
      await Hearth.models.download(url, { sha256: "00".repeat(32) });
    } catch (e) {
      out.download = e.code;
    }
    out.after = (await Hearth.models.list()).map((m) => m.url);
    // The first test's model is stored: loading it against another checksum fails, typed.
    const stored = (await Hearth.models.list())[0].url;
    try {
      await Hearth.load(stored, { cache: true, sha256: "11".repeat(32) });
    } catch (e) {
      out.load = e.code;
    }
    return out;
  }, url);
  assert.equal(r.download, "checksum_mismatch");
  assert.ok(!r.after.includes(url), "the bad download is not kept");
  assert.equal(r.load, "checksum_mismatch");
});

test("a download the storage quota cannot hold is refused before any byte is written", async (t) => {
  if (!storage.estimate) return t.skip("this engine has no navigator.storage.estimate: there is no quota to check against");
  const url = host.url + "model.gguf?v=3";
  const r = await page.evaluate(async (url) => {
    const real = navigator.storage.estimate.bind(navigator.storage);
    navigator.storage.estimate = async () => ({ quota: 100000, usage: 40000 });
    try {
      await Hearth.models.download(url);
      return { code: null };
    } catch (e) {
      return { code: e.code, message: e.message, listed: (await Hearth.models.list()).some((m) => m.url === url && m.size > 0) };
    } finally {
      navigator.storage.estimate = real;
    }
  }, url);
  assert.equal(r.code, "quota_exceeded");
  assert.match(r.message, /needs [\d.]+ MB but this site may store only 0\.1 MB more/);
  assert.equal(r.listed, false);
});

test("stored models are listed and deleted", async () => {
  const r = await page.evaluate(async (url) => {
    const d = await Hearth.models.download(url);
    const listed = (await Hearth.models.list()).map((m) => m.url);
    const deleted = await Hearth.models.delete(url);
    const again = await Hearth.models.delete(url);
    return { d, listed, deleted, again, after: (await Hearth.models.list()).map((m) => m.url) };
  }, host.url + "model.gguf?v=4");
  assert.equal(r.d.size, bytes.length);
  assert.equal(r.d.from, "network");
  assert.ok(r.listed.includes(host.url + "model.gguf?v=4"));
  assert.equal(r.deleted, true);
  assert.equal(r.again, false);
  assert.ok(!r.after.includes(host.url + "model.gguf?v=4"));
});

test("without OPFS the store falls back to Cache Storage (kept once whole, loaded from there)", async () => {
  const url = host.url + "model.gguf?v=5";
  const r = await page.evaluate(
    async ({ url, prompt, n }) => {
      // This realm only: the engine runs here (worker: false), so the load uses the same store.
      // (An engine without StorageManager has no OPFS to hide.)
      const hasSM = typeof StorageManager !== "undefined";
      const real = hasSM && Object.getOwnPropertyDescriptor(StorageManager.prototype, "getDirectory");
      if (hasSM) Object.defineProperty(StorageManager.prototype, "getDirectory", { value: undefined, configurable: true });
      const d = await Hearth.models.download(url);
      const listed = await Hearth.models.list();
      const m = await Hearth.load(url, { cache: true, worker: false });
      const ids = [];
      for await (const c of m.generate(prompt, { temperature: 0, stopAtEos: false, maxTokens: n })) if (!c.done) ids.push(...c.tokenIds);
      await m.unload();
      const deleted = await Hearth.models.delete(url);
      const after = await Hearth.models.list();
      if (hasSM) Object.defineProperty(StorageManager.prototype, "getDirectory", real);
      return { d, listed, ids, deleted, after };
    },
    { url, prompt: CASE.prompt, n: WANT.length },
  );
  assert.equal(r.d.from, "network");
  assert.equal(r.d.sha256, createHash("sha256").update(bytes).digest("hex"));
  // (Where Cache Storage is the only store, the other tests' models are listed there too.)
  assert.deepEqual(r.listed.filter((m) => m.url === url).map((m) => [m.url, m.size, m.complete]), [[url, bytes.length, true]]);
  assert.deepEqual(r.ids, WANT);
  assert.equal(r.deleted, true);
  assert.deepEqual(r.after.filter((m) => m.url === url), []);
});
