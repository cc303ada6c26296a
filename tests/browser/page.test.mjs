// The chat page (www/index.html) in the browser under test (HEARTH_BROWSER), served without a real default model (a
// models/ folder with only demo.gguf, as scripts/serve leaves it when it cannot fetch one; the real
// default is real-model.test.mjs's): the bundled demo model loads on start and the page says it
// writes gibberish and how to get the real model, a message streams a reply with tokens/s shown, Stop and New chat work, settings persist, a garbage
// "model" file shows an error in words and leaves the page usable, nothing breaks the CSP, and the
// layout is screenshotted (target/screenshots/chat.png, chat-375.png, chat-error-dark.png) at desktop
// and phone widths.
//
// Needs pkg/ (scripts/build-wasm) and the browser (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, logPage, assertPkgBuilt, fixtureDir, root, ENGINE, onlyIn, NETWORK_EVENTS, MEDIA_EMULATION, waitPageReady } from "./harness.mjs";

// WebKit until www/hearth/store.js's ensureRoom reads navigator.storage?.estimate: a load by URL
// keeps the model in the store, and WebKitGTK has no navigator.storage (TypeError).
const SHOTS = path.join(root, "target", "screenshots");
/** A screenshot's path: chat.png from Chromium, chat-firefox.png from Firefox, ... */
const shot = (name) => path.join(SHOTS, ENGINE === "chromium" ? name : name.replace(/\.png$/, `-${ENGINE}.png`));
const LOAD_TIMEOUT = 60000;
const REPLY_TIMEOUT = 60000;

let server, browser, context, page, models;
const problems = []; // console errors, page errors, CSP violations
const notFound = []; // paths answered 404 (Chromium logs each as a console error)

before(async () => {
  models = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-models-"));
  fs.copyFileSync(path.join(root, "www/models/demo.gguf"), path.join(models, "demo.gguf"));
  // HEARTH_TEST_PKG_DIR: serve another build of the client at /pkg (development only).
  const mounts = { "/fixtures": fixtureDir(["spm-q4_0"]), "/models": models };
  if (process.env.HEARTH_TEST_PKG_DIR) mounts["/pkg"] = path.resolve(process.env.HEARTH_TEST_PKG_DIR);
  else assertPkgBuilt();
  server = await startServer({ mounts });
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1100, height: 860 } });
  page = await context.newPage();
  logPage(page, "page");
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 404/.test(m.text())) problems.push(m.text());
  });
  page.on("response", (r) => r.status() === 404 && notFound.push(new URL(r.url()).pathname));
  page.on("pageerror", (e) => problems.push(e.message));
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.goto(server.url);
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (models) fs.rmSync(models, { recursive: true, force: true });
});

const state = () => page.evaluate(() => document.body.dataset.state);
// Waiting for "ready", a timeout says what the page shows (its status, error and notices).
const waitState = (s, timeout = LOAD_TIMEOUT) =>
  s === "ready" ? waitPageReady(page, timeout) : page.waitForFunction((want) => document.body.dataset.state === want, s, { timeout });
const replies = () => page.locator('[data-testid="reply"]');

/** Type a message, send it with Enter, wait for the streamed reply to finish; returns its text and stats. */
async function chat(text) {
  const before = await replies().count();
  await page.locator('[data-testid="input"]').fill(text);
  await page.locator('[data-testid="input"]').press("Enter");
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="reply"]').length > n, before, { timeout: 5000 });
  await page.waitForFunction(
    (n) => {
      const li = document.querySelectorAll("li.msg.assistant")[n];
      return li && li.querySelector('[data-testid="stats"]') && document.body.dataset.state === "ready";
    },
    before,
    { timeout: REPLY_TIMEOUT },
  );
  const reply = replies().nth(before);
  const stats = page.locator("li.msg.assistant").nth(before).locator('[data-testid="stats"]');
  // An empty reply shows a muted placeholder ("(no text)"); a real one does not.
  const placeholder = await reply.evaluate((e) => e.classList.contains("muted"));
  return { text: placeholder ? "" : await reply.textContent(), stats: await stats.textContent() };
}

/** The demo model has random weights and the page draws with a fresh seed each time, so a reply
 * can end at once on an end-of-turn token: ask again then (three times is plenty). */
async function chatWithText(first, again = first) {
  let reply = { text: "", stats: "" };
  for (let i = 0; i < 3 && !reply.text.trim(); i++) reply = await chat(i ? again : first);
  return reply;
}

test("without a default model the bundled demo model loads on start, and the page says it writes gibberish", async () => {
  await waitState("ready");
  const name = await page.locator('[data-testid="model-name"]').textContent();
  assert.match(name, /^Demo model \(random weights\) · [\d.]+ MB$/, `model summary shows the name and size: ${name}`);
  assert.match(await page.locator('[data-testid="status"]').textContent(), /^Ready/);
  assert.equal(await page.locator('[data-testid="input"]').isEnabled(), true);
  assert.equal(await page.locator('[data-testid="progress"]').isVisible(), false, "progress bar hides after loading");
  // The honest note about the demo model sits by the picker, with how to get the real one.
  assert.equal(await page.locator("#note-demo").isVisible(), true);
  assert.equal(await page.locator("#note-default").isVisible(), false);
  assert.match(await page.locator("#note-demo").textContent(), /random-weight.*gibberish.*no real default model.*scripts\/serve/s);
  const notice = await page.locator("li.notice").first().textContent();
  assert.match(notice, /^Loaded the bundled demo model \([\d.]+ MB\) in [\d.]+ s[,.] .*Its weights are random, so it writes gibberish\. This server has no real default model: scripts\/serve fetches SmolLM2 135M Instruct/, notice);
  // The default button loads the demo here; there is no second demo button.
  assert.equal(await page.locator('[data-testid="load-demo"]').isVisible(), false);
  assert.match(await page.locator("#default-caption").textContent(), /demo\.gguf/);
});

test("a message streams a reply with tokens/s and time to first token", async () => {
  const seen = [];
  // Record the reply's length as it streams (several distinct lengths = streamed, not all at once).
  await page.evaluate(() => {
    window.__lengths = [];
    new MutationObserver(() => {
      const r = document.querySelectorAll('[data-testid="reply"]');
      if (r.length) window.__lengths.push(r[r.length - 1].textContent.length);
    }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
  });
  const { text, stats } = await chatWithText("Hello! Who are you?", "Hello again!");
  seen.push(...(await page.evaluate(() => window.__lengths)));
  assert.ok(text.trim().length > 0, "the reply is not empty");
  assert.match(stats, /\d+(\.\d+)? tokens\/s/);
  assert.match(stats, /first token \d+ ms/);
  assert.ok(new Set(seen.filter((n) => n > 0)).size > 1, `reply grew in steps: ${seen.slice(0, 20)}`);
  assert.equal(await page.locator('[data-testid="user-message"]').first().textContent(), "Hello! Who are you?");
  assert.equal(await page.locator('[data-testid="input"]').inputValue(), "", "the box is cleared after sending");

  await page.screenshot({ path: shot("chat.png"), fullPage: true });
});

test("Shift+Enter adds a newline instead of sending", async () => {
  const n = await replies().count();
  const input = page.locator('[data-testid="input"]');
  await input.fill("line one");
  await input.press("Shift+Enter");
  await input.type("line two");
  assert.equal(await input.inputValue(), "line one\nline two");
  assert.equal(await replies().count(), n);
  await input.fill("");
});

test("Stop ends a reply and the page goes on", async () => {
  // Ask for a long reply so there is something to stop.
  await page.locator("#settings-panel > summary").click();
  await page.locator("#max-tokens").fill("1500");
  await page.locator("#max-tokens").press("Tab");
  const n = await replies().count();
  // The random demo model can end a reply on its own at any token, even the first, racing the
  // click: for this one request the page's chat() goes on past end tokens, so only Stop (or
  // 1500 tokens) ends it.
  await page.evaluate(() => {
    const llm = window.hearthPage.llm;
    const chat = llm.chat;
    llm.chat = (messages, options) => chat(messages, { ...options, stopAtEos: false });
    llm.chat.completions = chat.completions;
    window.restoreChat = () => { llm.chat = chat; };
  });
  await page.locator('[data-testid="input"]').fill("Tell me a long story.");
  await page.locator('[data-testid="send"]').click();
  await waitState("generating", 5000);
  assert.equal(await page.locator('[data-testid="stop"]').isVisible(), true);
  assert.equal(await page.locator('[data-testid="send"]').isVisible(), false);
  // Stop while it writes (the page stays responsive while the worker decodes).
  await page.locator('[data-testid="stop"]').click({ timeout: 5000 });
  await waitState("ready", REPLY_TIMEOUT);
  await page.waitForFunction((k) => document.querySelectorAll("li.msg.assistant")[k]?.querySelector('[data-testid="stats"]'), n);
  const stats = await page.locator("li.msg.assistant").nth(n).locator('[data-testid="stats"]').textContent();
  await page.evaluate(() => window.restoreChat());
  assert.match(stats, /· stopped$/, stats);
  assert.equal(await page.locator('[data-testid="send"]').isVisible(), true);
  assert.equal(await page.locator('[data-testid="stop"]').isVisible(), false);
  // Settings persist in localStorage.
  const saved = await page.evaluate(() => JSON.parse(localStorage.getItem("hearth.settings.v1")));
  assert.equal(saved.maxTokens, 1500);
  await page.locator("#max-tokens").fill("64");
  await page.locator("#max-tokens").press("Tab");
  await page.locator("#settings-panel > summary").click();
});

test("a new context size applies by reloading the model", async () => {
  await page.locator("#settings-panel > summary").click();
  const apply = page.locator("#apply-context");
  assert.equal(await apply.isVisible(), false);
  await page.locator("#context-size").fill("1024");
  await page.locator("#context-size").press("Tab");
  assert.equal(await apply.isVisible(), true);
  await apply.click();
  await page.waitForFunction(() => document.getElementById("apply-context").hidden, null, { timeout: LOAD_TIMEOUT });
  await waitState("ready");
  assert.equal(await page.evaluate(() => window.hearthPage.llm.info.contextSize), 1024);
  await page.locator("#settings-panel > summary").click();
});

test("a file that is not a GGUF model shows an error in words; the page stays usable", async () => {
  await page.locator('[data-testid="file-input"]').setInputFiles({
    name: "garbage.gguf",
    mimeType: "application/octet-stream",
    buffer: Buffer.from("this is definitely not a model file ".repeat(64)),
  });
  const error = page.locator('[data-testid="error"]');
  await error.waitFor({ state: "visible", timeout: LOAD_TIMEOUT });
  const msg = await error.textContent();
  assert.match(msg, /GGUF/, msg);
  assert.equal(await error.getAttribute("role"), "alert");
  await waitState("ready");
  if (MEDIA_EMULATION) {
    await page.emulateMedia({ colorScheme: "dark" });
    await page.waitForTimeout(300); // let the buttons' colour transitions finish
    await page.screenshot({ path: shot("chat-error-dark.png") });
    await page.emulateMedia({ colorScheme: "light" });
  }
  // The demo model is still loaded and answers.
  const { text } = await chatWithText("Still there?");
  assert.ok(text.trim().length > 0);
  assert.equal(await error.isVisible(), false, "sending clears the error");
});

test("a model loads by URL with download progress; a bad URL is an error in words", async () => {
  const size = fs.statSync(path.join(fixtureDir(["spm-q4_0"]), "spm-q4_0.gguf")).size;
  // Record what the progress bar shows while it streams in.
  await page.evaluate(() => {
    window.__progress = [];
    const bar = document.querySelector('[data-testid="progress"]');
    new MutationObserver(() => window.__progress.push(document.getElementById("load-bytes").textContent)).observe(
      document.getElementById("load-status"),
      { subtree: true, childList: true, characterData: true, attributes: true },
    );
    window.__bar = bar;
  });
  await page.locator('[data-testid="url-input"]').fill(server.url + "fixtures/spm-q4_0.gguf");
  await page.locator('[data-testid="url-load"]').click();
  await page.waitForFunction(() => /spm/.test(document.querySelector('[data-testid="model-name"]').textContent), null, { timeout: LOAD_TIMEOUT });
  await waitState("ready");
  const progress = await page.evaluate(() => window.__progress);
  assert.ok(progress.some((t) => /MB \/ [\d.]+ MB · \d+%/.test(t)), `progress showed MB and percent: ${progress.slice(-5)}`);
  const name = await page.locator('[data-testid="model-name"]').textContent();
  assert.ok(name.includes((size / 1e6).toFixed(1)), `size shown: ${name} (${size} bytes)`);
  assert.equal(await page.evaluate(() => localStorage.getItem("hearth.lastUrl")), server.url + "fixtures/spm-q4_0.gguf");
  // The long gibberish so far does not fit this model's 1024-token context (it tokenizes
  // differently): the oldest turns are left out and the reply still comes.
  const other = await chatWithText("Hi, other model");
  assert.ok(other.text.trim().length > 0, `${other.stats} / ${await page.locator('[data-testid="error"]').textContent()}`);

  await page.locator('[data-testid="url-input"]').fill(server.url + "fixtures/missing.gguf");
  await page.locator('[data-testid="url-load"]').click();
  const error = page.locator('[data-testid="error"]');
  await error.waitFor({ state: "visible", timeout: LOAD_TIMEOUT });
  assert.match(await error.textContent(), /could not be downloaded.*404/s);
  await waitState("ready");
});

test("a model loaded by URL is kept in this browser, listed with its size, and can be deleted", async () => {
  await page.evaluate(() => (document.getElementById("model-panel").open = true));
  const list = page.locator('[data-testid="stored-list"] li');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="stored-list"] li').length > 0, null, { timeout: 10000 });
  const item = list.filter({ hasText: "spm-q4_0.gguf" });
  assert.equal(await item.count(), 1);
  assert.match(await item.textContent(), /MB · /);
  await item.getByRole("button", { name: "Delete spm-q4_0.gguf" }).click();
  await page.waitForFunction(() => document.getElementById("stored-row").hidden, null, { timeout: 10000 });
  assert.deepEqual(await page.evaluate(async () => (await window.hearthPage.llm.constructor.models.list()).length), 0);
});

test("a .gguf dropped on the page loads", async () => {
  await page.evaluate(async () => {
    const bytes = await (await fetch("models/demo.gguf")).arrayBuffer();
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], "dropped.gguf", { type: "application/octet-stream" }));
    for (const type of ["dragenter", "dragover", "drop"]) document.body.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await page.waitForFunction(() => [...document.querySelectorAll("li.notice")].some((li) => li.textContent.includes("hearth-demo")), null, { timeout: LOAD_TIMEOUT });
  await waitState("ready");
  assert.equal(await page.locator("#drop-overlay").isVisible(), false);
  assert.equal(await page.locator('[data-testid="error"]').isVisible(), false);
});

test("Evaluate: too short a text is an error in words; the sample text's perplexity is measured", async () => {
  await page.locator("#eval-panel > summary").click();
  const result = page.locator('[data-testid="eval-result"]');
  await page.locator('[data-testid="eval-text"]').fill("Far too short to measure.");
  await page.locator('[data-testid="eval-run"]').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="eval-result"]').textContent, null, { timeout: LOAD_TIMEOUT });
  assert.match(await result.textContent(), /^Hearth could not use that input \(invalid_argument\): .*the text is \d+ tokens; .*two chunks/);
  assert.equal(await result.evaluate((e) => e.classList.contains("failed")), true);
  assert.equal(await state(), "ready");
  await page.locator('[data-testid="eval-sample"]').click();
  await page.waitForFunction(() => document.getElementById("eval-text").value.length > 5000);
  await page.locator('[data-testid="eval-context"]').selectOption("256");
  await page.locator('[data-testid="eval-run"]').click();
  await waitState("ready", REPLY_TIMEOUT);
  assert.match(await result.textContent(), /^Perplexity \d+\.\d{3} ± \d+\.\d{3} · [\d,]+ tokens, \d+ chunks of 256 \([\d,]+ scored\) · [\d.]+ tokens\/s, [\d.]+ s · hearth-demo \(random weights\)$/, "the dropped demo model's figures");
  assert.equal(await result.getAttribute("role"), "status");
  await page.locator("#eval-panel > summary").click();
});

test("New chat clears the conversation", async () => {
  assert.ok((await replies().count()) > 0);
  await page.locator('[data-testid="new-chat"]').click();
  assert.equal(await page.locator("#messages > li").count(), 0);
  assert.equal(await page.locator("#empty").isVisible(), true);
  assert.equal(await state(), "ready");
});

test("a conversation longer than the context goes on: the oldest turns are left out, with a notice", async () => {
  await page.locator("#settings-panel > summary").click();
  await page.locator("#max-tokens").fill("12");
  await page.locator("#max-tokens").press("Tab");
  await page.locator("#context-size").fill("256");
  await page.locator("#context-size").press("Tab");
  await page.locator("#apply-context").click();
  await page.waitForFunction(() => document.getElementById("apply-context").hidden, null, { timeout: LOAD_TIMEOUT });
  await waitState("ready");
  await page.locator("#settings-panel > summary").click();
  const long = "Tell me about the hearth that keeps the kitchen warm in winter. ";
  for (let i = 0; i < 8; i++) {
    const { stats } = await chat(`${i}: ${long.repeat(2)}`);
    assert.match(stats, /tokens\/s/, `turn ${i} got a reply: ${stats}`);
  }
  const notice = page.locator("li.notice", { hasText: "no longer fit" });
  assert.ok((await notice.count()) >= 1, "a notice says older messages fell out of the context");
  assert.equal(await page.locator('[data-testid="error"]').isVisible(), false);
  // Later turns reuse the cached system prompt and history instead of re-reading them.
  const last = await page.locator('[data-testid="stats"]').last().textContent();
  assert.match(last, /\d+ cached/, last);
  await page.locator('[data-testid="new-chat"]').click();
});

test(
  "narrow (375px) layout fits without sideways scrolling",
  onlyIn(["chromium"], "needs a 375 px viewport: classic WebDriver cannot emulate a device, and Firefox's windows are at least 500 px wide, WebKitGTK MiniBrowser's 447 px"),
  async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p = await phone.newPage();
    logPage(p, "phone");
    p.on("pageerror", (e) => problems.push(e.message));
    await p.goto(server.url);
    await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: LOAD_TIMEOUT });
    const { inner, scroll } = await p.evaluate(() => ({ inner: window.innerWidth, scroll: document.documentElement.scrollWidth }));
    assert.equal(inner, 375, "nothing widens the layout viewport");
    assert.ok(scroll <= 375, `page is ${scroll}px wide on a 375px screen`);
    await p.locator('[data-testid="input"]').fill("Hi from a phone");
    await p.locator('[data-testid="send"]').click();
    await p.waitForFunction(() => document.querySelector('[data-testid="stats"]') && document.body.dataset.state === "ready", null, { timeout: REPLY_TIMEOUT });
    // Mobile Chromium widens the layout viewport to fit content that overflows, so check both.
    const after = await p.evaluate(() => ({ inner: window.innerWidth, scroll: document.documentElement.scrollWidth }));
    assert.equal(after.inner, 375, "nothing widens the layout viewport");
    assert.ok(after.scroll <= 375, `page is ${after.scroll}px wide on a 375px screen`);
    // What the phone shows (a full-page shot misplaces the sticky composer under mobile emulation).
    await p.screenshot({ path: shot("chat-375.png") });
    await phone.close();
  },
);

test("without WebGPU the load notice says so in words: running on the CPU", async () => {
  const other = await launchBrowser({ webgpu: false });
  try {
    const p = await other.newPage();
    logPage(p, "no-webgpu");
    await p.goto(server.url);
    await waitPageReady(p, LOAD_TIMEOUT);
    const notice = await p.locator("li.notice").first().textContent();
    assert.match(notice, /^Loaded the bundled demo model \([\d.]+ MB\) in [\d.]+ s\. WebGPU is not available in this browser — running on the CPU, \d threads?\. /, notice);
    // A browser with no navigator.gpu at all (the engine then never asks for an adapter) says the same.
    const fallback = await p.evaluate(async () => {
      delete Navigator.prototype.gpu;
      // The page's own Hearth class (a dynamic import from Firefox's WebDriver script failed once
      // on a busy machine).
      const Hearth = window.hearthPage.llm.constructor;
      const m = await Hearth.load("models/demo.gguf", { worker: false });
      await m.unload();
      return m.info.backendFallback;
    });
    assert.equal(fallback, "WebGPU is not available in this browser");
  } finally {
    await other.close();
  }
});

test("no console errors or CSP violations; nothing missing but the absent default model and the bad URL", () => {
  assert.deepEqual(problems, []);
  // (WebKitWebDriver reports no responses: no 404s to check there.)
  if (!NETWORK_EVENTS) return;
  assert.deepEqual(notFound.filter((p) => p !== "/models/default.json" && p !== "/fixtures/missing.gguf"), []);
  assert.ok(notFound.includes("/models/default.json"), "the page asked for models/default.json");
});
