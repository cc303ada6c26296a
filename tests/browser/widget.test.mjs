// The embeddable <hearth-chat> widget (pkg/hearth-widget.js) in the browser under test
// (HEARTH_BROWSER), on a host page
// with hostile global CSS (www/widget-demo.html): inline and launcher modes load the page's model
// (the real default model of models/default.json, set by widget-demo.js) in a worker, show its
// name and stream replies; the host's CSS does not reach into the widget; nothing but the page's
// files and the model is requested.
//
// Needs pkg/ (scripts/build-wasm), the default model in www/models/ (scripts/default-model) and
// the browser (scripts/test sets all up).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startServer, launchBrowser, logPage, assertPkgBuilt, realModel, root, ENGINE, NETWORK_EVENTS } from "./harness.mjs";

// WebKit until www/hearth/store.js's ensureRoom reads navigator.storage?.estimate: the widget keeps
// its model in the store (Cache Storage there), and WebKitGTK has no navigator.storage (TypeError).
const TIMEOUT = 120000;
let server, browser, page, defaultModel;
const errors = [];
const requests = [];

before(async () => {
  assertPkgBuilt();
  defaultModel = realModel();
  server = await startServer();
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  logPage(page, "widget");
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(server.url + "widget-demo.html");
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/**
 * Send `text` in the widget `#id` and wait for a reply; returns its text. The widget samples with a
 * fresh seed, so a reply can end at once on an end token: ask again then.
 */
async function ask(id, text) {
  let reply = "(no reply)";
  for (let i = 0; i < 3 && reply === "(no reply)"; i++) reply = await askOnce(id, text);
  return reply;
}

async function askOnce(id, text) {
  const replies = page.locator(`#${id} li.assistant`);
  const n = await replies.count();
  await page.locator(`#${id} textarea`).fill(text);
  await page.locator(`#${id} textarea`).press("Enter");
  await page.waitForFunction(
    ({ id, n }) => {
      const root = document.getElementById(id).shadowRoot;
      const li = root.querySelectorAll("li.assistant")[n];
      return li && li.textContent && root.querySelector("button.primary").textContent === "Send";
    },
    { id, n },
    { timeout: TIMEOUT },
  );
  return replies.nth(n).textContent();
}

test("the inline widget loads its model and streams a reply; the host's CSS does not reach in", async () => {
  await page.waitForFunction(() => !!document.getElementById("inline").llm, null, { timeout: TIMEOUT });
  assert.equal(await page.locator("#inline").getAttribute("model"), defaultModel.url);
  // The header names the model as people know it.
  assert.equal(await page.locator("#inline header .status").textContent(), defaultModel.name);
  const reply = await ask("inline", "Hello there");
  assert.ok(reply.length > 0 && reply !== "(no reply)", reply);
  const look = await page.evaluate(() => {
    const root = document.getElementById("inline").shadowRoot;
    const css = (sel) => getComputedStyle(root.querySelector(sel));
    return {
      textarea: { display: css("textarea").display, fontSize: css("textarea").fontSize },
      send: { display: css("button.primary").display, color: css("button.primary").color },
      li: { background: css("li.assistant").backgroundColor, margin: css("li.assistant").margin, fontFamily: css("li.assistant").fontFamily },
      host: getComputedStyle(document.querySelector("p")).fontSize,
    };
  });
  assert.equal(look.host, "31px", "the host page's CSS is in force outside");
  assert.notEqual(look.textarea.display, "none");
  assert.equal(look.textarea.fontSize, "15px");
  assert.notEqual(look.send.display, "none");
  assert.notEqual(look.send.color, "rgb(0, 255, 0)");
  assert.notEqual(look.li.background, "rgb(255, 0, 255)");
  assert.equal(look.li.margin, "0px");
  assert.doesNotMatch(look.li.fontFamily, /Comic/);
});

test("the launcher opens a floating chat that answers", async () => {
  const launcher = page.locator("#launcher button.launcher");
  assert.equal(await launcher.isVisible(), true);
  assert.equal(await page.locator("#launcher section.panel").isVisible(), false);
  await launcher.click();
  assert.equal(await page.locator("#launcher section.panel").isVisible(), true);
  assert.equal(await launcher.isVisible(), false);
  await page.waitForFunction(() => !!document.getElementById("launcher").llm, null, { timeout: TIMEOUT });
  assert.equal(await page.locator("#launcher header .status").textContent(), defaultModel.name);
  const reply = await ask("launcher", "Hi");
  assert.ok(reply.length > 0 && reply !== "(no reply)", reply);
  fs.mkdirSync(path.join(root, "target", "screenshots"), { recursive: true });
  await page.screenshot({ path: path.join(root, "target", "screenshots", ENGINE === "chromium" ? "widget.png" : `widget-${ENGINE}.png`) });
  await page.locator("#launcher button.close").click();
  assert.equal(await page.locator("#launcher section.panel").isVisible(), false);
  assert.equal(await launcher.isVisible(), true);
});

test("no console errors or CSP violations; no request but the page's own files and the model", (t) => {
  assert.deepEqual(errors, []);
  if (!NETWORK_EVENTS) return t.skip(`${ENGINE}: its WebDriver reports no network requests to audit (console errors checked)`);
  const origin = new URL(server.url).origin;
  const allowed = new Set(["/widget-demo.html", "/widget-demo.css", "/widget-demo.js", "/icons/hearth.svg", "/models/default.json", `/${defaultModel.url}`]);
  const bad = requests.filter((u) => {
    if (u.startsWith("data:") || u.startsWith("blob:")) return false;
    const url = new URL(u);
    return url.origin !== origin || !(allowed.has(url.pathname) || /^\/pkg\/[\w./-]+$/.test(url.pathname));
  });
  assert.deepEqual(bad, []);
  assert.ok(requests.some((u) => u.endsWith(`/${defaultModel.url}`)));
});
