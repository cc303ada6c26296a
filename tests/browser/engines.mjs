// Firefox and WebKit for the browser tests, behind the small part of playwright-core's API the tests
// use (harness.mjs picks the engine; Chromium stays on playwright-core itself). Both are driven
// over classic WebDriver by the small clients below; nothing is downloaded, no driver package:
//
// - Firefox: Debian's firefox-esr, headless, through Marionette (Firefox's own protocol, the one
//   geckodriver translates W3C WebDriver into; `--marionette`, a port in the profile's prefs). Not
//   WebDriver BiDi: see launchFirefox for the hang it causes. The page's console comes from
//   Firefox's stdout (devtools.console.stdout.content, workers' messages included) and uncaught
//   errors from its stderr; neither says which page, so each goes to every page of the context.
// - WebKit: Debian's WebKitGTK MiniBrowser through WebKitWebDriver (webkit2gtk-driver), W3C
//   WebDriver over HTTP, on a private Xvfb display (WebKitGTK's MiniBrowser has no headless mode).
//   WebKitWebDriver has no BiDi and MiniBrowser's automation windows print no console, so a shim
//   installed after each navigation records the page's console and errors, read back after each
//   command: what is logged before the page finished loading, and by workers, is not seen.
//
// A context is one browser process with a fresh profile (contexts share no storage); a page is one
// of its windows. Exposed: browser.newPage() / newContext({viewport}) / close() / version();
// context.newPage() / close() / on("request" | "response") (Firefox) / setOffline (Firefox); page.goto
// / reload / evaluate(fn, arg) / waitForFunction(fn, arg, {timeout}) / waitForTimeout / on("console"
// | "pageerror" | "request" | "response") / screenshot({path}) / setViewportSize / emulateMedia
// (Firefox) / close / locator(css) with nth / first / last / locator / filter({hasText}) / getByRole
// / count / textContent / innerText / inputValue / isVisible / isEnabled / isDisabled /
// getAttribute / evaluate / waitFor / fill / selectOption / setInputFiles (through the DOM, as
// playwright's fill: one input event) and click / press / type (WebDriver's element commands:
// trusted input with the browser's default actions). CSS in locators pierces open shadow roots.
// Not available: request interception (page.route), device emulation narrower than a window can
// be (Firefox: 500 px, MiniBrowser: 447 px); harness.mjs exports what each engine can do.

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** `promise`'s value, or `late` after `ms`; the timer is cleared either way (a pending one keeps
 * a test file's node process alive after its tests, which cost each Firefox and WebKit suite
 * about 115 s). */
async function within(promise, ms, late = undefined) {
  let timer;
  try {
    return await Promise.race([promise, new Promise((r) => (timer = setTimeout(() => r(late), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Every process started here, and the profile directories, ended and removed when this process
 * exits however it exits (a failed before(), an uncaught error, a test runner's SIGTERM), so no
 * browser outlives its test file.
 */
const children = new Set();
const tempDirs = new Set();
/** Signal `child`'s whole process group (it was spawned detached, as the group's leader), so the
 * browser's own processes (content processes, MiniBrowser under its driver) go with it. */
function killGroup(child, sig) {
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {}
  }
}
function cleanupNow() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) killGroup(c, "SIGKILL");
  for (const d of tempDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true });
    } catch {}
  }
}
process.once("exit", cleanupNow);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(sig, () => {
    cleanupNow();
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }[sig] ?? 0));
  });
}
/** spawn(), remembered for cleanupNow. */
function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Playwright's console types ("warning"), from the names console methods and BiDi use ("warn"). */
const consoleType = (t) => (t === "warn" ? "warning" : t === "assert" ? "assert" : t);

/** The source text of a function for page.evaluate (built here, not a function of this realm). */
class FnSource {
  constructor(src) {
    this.src = src;
  }
}

/** A console message object shaped like playwright's ConsoleMessage. */
const consoleMessage = (type, text) => ({ type: () => consoleType(type), text: () => text });

// ---------------------------------------------------------------------------------------------
// Locators: elements found by a script in the page (CSS that pierces open shadow roots, as
// playwright's does), read and filled through the DOM, and clicked and typed into through
// WebDriver's own element commands (trusted input with the browser's default actions), retried
// while the element is missing or not yet interactable, as playwright's auto-waiting does.

/** The source of a function that runs in the page: `(steps) => elements`, shadow-piercing. */
const RESOLVE_SRC = `(steps) => {
  // Split a selector at its top-level descendant combinators; ">", "+", "~" keep their neighbours.
  const chunks = (sel) => {
    const parts = [];
    let cur = "", depth = 0, quote = null;
    for (const ch of sel.trim()) {
      if (quote) { cur += ch; if (ch === quote) quote = null; continue; }
      if (ch === '"' || ch === "'") { quote = ch; cur += ch; continue; }
      if (ch === "[" || ch === "(") depth++;
      if (ch === "]" || ch === ")") depth--;
      if (/\\s/.test(ch) && depth === 0) { if (cur) parts.push(cur); cur = ""; continue; }
      cur += ch;
    }
    if (cur) parts.push(cur);
    const out = [];
    for (let i = 0; i < parts.length; i++) {
      if (/^[>+~]$/.test(parts[i]) && out.length && i + 1 < parts.length) out[out.length - 1] += " " + parts[i] + " " + parts[++i];
      else out.push(parts[i]);
    }
    return out;
  };
  // Every tree under node: its own, and each open shadow root below it (and the node's).
  const trees = (node) => {
    const out = [node];
    const walk = (root) => {
      for (const el of root.querySelectorAll("*")) if (el.shadowRoot) { out.push(el.shadowRoot); walk(el.shadowRoot); }
    };
    if (node.shadowRoot) { out.push(node.shadowRoot); walk(node.shadowRoot); }
    walk(node);
    return out;
  };
  let els = [document];
  for (const s of steps) {
    if (s.css !== undefined) {
      for (const chunk of chunks(s.css)) {
        const next = [];
        for (const scope of els) for (const t of trees(scope)) for (const e of t.querySelectorAll(chunk)) if (!next.includes(e)) next.push(e);
        els = next;
      }
    } else if (s.nth !== undefined) {
      const i = s.nth < 0 ? els.length + s.nth : s.nth;
      els = els[i] ? [els[i]] : [];
    } else if (s.hasText !== undefined) {
      const m = s.hasText;
      els = els.filter((e) => (m.source !== undefined ? new RegExp(m.source, m.flags).test(e.textContent) : e.textContent.includes(m)));
    } else if (s.role !== undefined) {
      // A small ARIA role map: explicit role, else the elements whose implicit role it is.
      const implicit = { button: 'button, input[type="button"], input[type="submit"], input[type="reset"], summary', link: "a[href]", textbox: 'textarea, input:not([type]), input[type="text"], input[type="search"], input[type="url"], input[type="email"]', checkbox: 'input[type="checkbox"]', combobox: "select", heading: "h1, h2, h3, h4, h5, h6", listitem: "li", list: "ul, ol", dialog: "dialog", alert: "" };
      const sel = [\`[role="\${s.role}"]\`, implicit[s.role]].filter(Boolean).join(", ");
      const next = [];
      for (const scope of els) for (const t of trees(scope)) for (const e of t.querySelectorAll(sel)) if (!next.includes(e)) next.push(e);
      const accName = (e) => (e.getAttribute("aria-label") || (e.labels && e.labels[0] && e.labels[0].textContent) || e.textContent || e.value || e.title || "").trim().replace(/\\s+/g, " ");
      els = next.filter((e) => {
        if (s.name === undefined) return true;
        const n = accName(e);
        if (s.name.source !== undefined) return new RegExp(s.name.source, s.name.flags).test(n);
        return s.exact ? n === s.name : n.toLowerCase().includes(String(s.name).toLowerCase());
      });
    }
  }
  return els;
}`;

/** Runs in the page (with `resolve` = RESOLVE_SRC): one read-only operation on a locator's element(s). */
function locatorRead({ steps, op, args }, resolve) {
  const els = resolve(steps);
  const visible = (e) => {
    if (!e || !e.isConnected) return false;
    const s = getComputedStyle(e);
    if (s.visibility === "hidden" || s.display === "none") return false;
    const r = e.getBoundingClientRect();
    return r.width > 0 || r.height > 0;
  };
  if (op === "count") return { ok: true, value: els.length };
  if (op === "isVisible") return { ok: true, value: visible(els[0]) };
  const e = els[0];
  if (!e) return { ok: false, missing: true };
  if (els.length > 1) return { ok: false, error: `strict mode violation: ${els.length} elements match` };
  switch (op) {
    case "textContent":
      return { ok: true, value: e.textContent };
    case "innerText":
      return { ok: true, value: e.innerText };
    case "inputValue":
      return { ok: true, value: e.value };
    case "getAttribute":
      return { ok: true, value: e.getAttribute(args.name) };
    case "isEnabled":
      return { ok: true, value: !e.disabled };
    case "isChecked":
      return { ok: true, value: !!e.checked };
    case "ready": { // attached, visible, enabled: what an action waits for; then in the viewport
      if (!visible(e) || e.disabled) return { ok: false, missing: true };
      const r = e.getBoundingClientRect();
      if (args.center || r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth) e.scrollIntoView({ block: "center", inline: "center" });
      return { ok: true };
    }
    case "domClick": // the DOM's click(), where the driver's own click is refused (see _act)
      if (!visible(e) || e.disabled) return { ok: false, missing: true };
      e.click();
      return { ok: true };
    case "fill": { // as playwright's: focus, replace the whole value, one input event (change comes on blur)
      if (!visible(e) || e.disabled || e.readOnly) return { ok: false, missing: true };
      e.focus();
      const proto = e instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
      Object.getOwnPropertyDescriptor(proto, "value").set.call(e, args.value);
      e.dispatchEvent(new InputEvent("input", { bubbles: true, composed: true, inputType: "insertText", data: args.value }));
      return { ok: true };
    }
    case "waitFor": {
      const want = args.state ?? "visible";
      return want === "attached" || (want === "visible" && visible(e)) ? { ok: true } : { ok: false, missing: true };
    }
    case "selectOption": {
      if (!visible(e) || e.disabled) return { ok: false, missing: true };
      const wanted = [].concat(args.values).map((v) => (typeof v === "string" ? { value: v } : v));
      for (const o of e.options) o.selected = wanted.some((w) => (w.value !== undefined && o.value === w.value) || (w.label !== undefined && o.label === w.label) || (w.index !== undefined && o.index === w.index));
      e.dispatchEvent(new Event("input", { bubbles: true }));
      e.dispatchEvent(new Event("change", { bubbles: true }));
      return { ok: true, value: [...e.selectedOptions].map((o) => o.value) };
    }
    case "setInputFiles": {
      const dt = new DataTransfer();
      for (const f of args.files) {
        const bin = atob(f.base64);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        dt.items.add(new File([bytes], f.name, { type: f.mimeType || "" }));
      }
      e.files = dt.files;
      e.dispatchEvent(new Event("input", { bubbles: true }));
      e.dispatchEvent(new Event("change", { bubbles: true }));
      return { ok: true };
    }
    default:
      return { ok: false, error: `locator operation ${op} is not supported` };
  }
}

/** A function source for page.evaluate: `fn(args, resolve)` with RESOLVE_SRC bound. */
const withResolve = (fn) => new FnSource(`(a) => (${fn.toString()})(a, ${RESOLVE_SRC})`);

/** WebDriver's key codes for playwright's key names. */
const KEYS = { Enter: "\uE007", Tab: "\uE004", Escape: "\uE00C", Backspace: "\uE003", Delete: "\uE017", ArrowLeft: "\uE012", ArrowUp: "\uE013", ArrowRight: "\uE014", ArrowDown: "\uE015", Home: "\uE011", End: "\uE010", PageUp: "\uE00E", PageDown: "\uE00F", Space: " ", Shift: "\uE008", Control: "\uE009", Alt: "\uE00A", Meta: "\uE03D" };

/** "Shift+Enter" as WebDriver keys (modifiers stay down until the end of the sequence). */
function webdriverKeys(key) {
  return key
    .split("+")
    .map((k) => {
      const code = KEYS[k] ?? (k.length === 1 ? k : null);
      if (code === null) throw new Error(`press: unknown key ${k} in ${key}`);
      return code;
    })
    .join("");
}

export class Locator {
  constructor(page, steps) {
    this.page = page;
    this.steps = steps;
  }
  locator(css) {
    return new Locator(this.page, [...this.steps, { css }]);
  }
  nth(i) {
    return new Locator(this.page, [...this.steps, { nth: i }]);
  }
  first() {
    return this.nth(0);
  }
  last() {
    return this.nth(-1);
  }
  /** filter({hasText}): the elements whose text contains a string or matches a RegExp. */
  filter({ hasText } = {}) {
    if (hasText === undefined) return this;
    return new Locator(this.page, [...this.steps, { hasText: hasText instanceof RegExp ? { source: hasText.source, flags: hasText.flags } : String(hasText) }]);
  }
  /** getByRole(role, {name, exact}): by ARIA role (explicit, or a common implicit one) and accessible name. */
  getByRole(role, { name, exact = false } = {}) {
    return new Locator(this.page, [...this.steps, { role, name: name instanceof RegExp ? { source: name.source, flags: name.flags } : name, exact }]);
  }
  toString() {
    return this.steps.map((s) => (s.css !== undefined ? s.css : s.nth !== undefined ? `nth=${s.nth}` : JSON.stringify(s))).join(" >> ");
  }
  /** A read, retried (as playwright's auto-wait does) while the element is missing or not ready. */
  async _read(op, args = {}, { wait = true } = {}) {
    const deadline = Date.now() + (args.timeout ?? 30000);
    for (;;) {
      const r = await this.page._evaluateRaw(withResolve(locatorRead), { steps: this.steps, op, args });
      if (r.ok) return r.value;
      if (r.error) throw new Error(`locator(${this}).${op}: ${r.error}`);
      if (!wait || Date.now() > deadline) throw new Error(`locator(${this}).${op}: timed out waiting for the element`);
      await sleep(100);
    }
  }
  /** A WebDriver element command on the (ready) element, retried while it cannot take it yet. */
  async _act(name, op, params = {}, { timeout = 30000 } = {}) {
    const deadline = Date.now() + timeout;
    let center = false;
    let refusedSince = null;
    for (;;) {
      // After a click landed on something else (a fixed bar over the element), centre it.
      await this._read("ready", { timeout: Math.max(0, deadline - Date.now()), center });
      try {
        const id = await this.page._elementId(this.steps);
        if (id) return await this.page._op(op, { ...params, id });
      } catch (e) {
        if (!/not interactable|intercepted|stale|no such element|detached|scrolled into view/i.test(e.message) || Date.now() > deadline) throw new Error(`locator(${this}).${name}: ${e.message}`);
        center = true;
        // WebKitWebDriver now and then refused a click as "not interactable" for 30 s on a button
        // that was visible, enabled and centred in the viewport (the Evaluate panel's Run, once in
        // a few CI runs): after 5 s of that, the DOM's click() on the element, said in the log.
        if (op === "elementClick" && /not interactable/i.test(e.message)) {
          refusedSince ??= Date.now();
          if (Date.now() - refusedSince > 5000) {
            console.log(`locator(${this}).click: the driver refused it for 5 s (${e.message.trim()}); clicked through the DOM`);
            return await this._read("domClick", { timeout: Math.max(0, deadline - Date.now()) });
          }
        }
      }
      if (Date.now() > deadline) throw new Error(`locator(${this}).${name}: timed out waiting for the element`);
      await sleep(100);
    }
  }
  count() {
    return this._read("count", {}, { wait: false });
  }
  isVisible() {
    return this._read("isVisible", {}, { wait: false });
  }
  async isHidden() {
    return !(await this.isVisible());
  }
  isEnabled(o) {
    return this._read("isEnabled", o);
  }
  async isDisabled(o) {
    return !(await this.isEnabled(o));
  }
  isChecked(o) {
    return this._read("isChecked", o);
  }
  textContent(o) {
    return this._read("textContent", o);
  }
  innerText(o) {
    return this._read("innerText", o);
  }
  inputValue(o) {
    return this._read("inputValue", o);
  }
  getAttribute(name, o) {
    return this._read("getAttribute", { ...o, name });
  }
  selectOption(values, o) {
    return this._read("selectOption", { ...o, values });
  }
  async setInputFiles(files, o) {
    const list = (Array.isArray(files) ? files : [files]).map((f) =>
      typeof f === "string" ? { name: f.split("/").at(-1), mimeType: "", base64: fs.readFileSync(f).toString("base64") } : { name: f.name, mimeType: f.mimeType, base64: Buffer.from(f.buffer).toString("base64") },
    );
    return this._read("setInputFiles", { ...o, files: list });
  }
  /** `fn(element, arg)` in the page. */
  async evaluate(fn, arg) {
    const src = `(a, resolve) => { const els = resolve(a.steps); if (!els[0]) throw new Error("locator(${String(this).replace(/[\\"]/g, "")}): no element"); return (${fn.toString()})(els[0], a.arg); }`;
    return this.page._evaluateRaw(withResolve(src), { steps: this.steps, arg });
  }
  async waitFor({ state = "visible", timeout = 30000 } = {}) {
    if (state === "detached" || state === "hidden") {
      const deadline = Date.now() + timeout;
      while (state === "detached" ? (await this.count()) > 0 : await this.isVisible()) {
        if (Date.now() > deadline) throw new Error(`locator(${this}).waitFor(${state}): timed out`);
        await sleep(100);
      }
      return;
    }
    await this._read("waitFor", { state, timeout });
  }
  click(o) {
    return this._act("click", "elementClick", {}, o);
  }
  fill(value, o) {
    return this._read("fill", { ...o, value: String(value) });
  }
  type(text, o) {
    return this._act("type", "elementSendKeys", { text: String(text) }, o);
  }
  press(key, o) {
    return this._act("press", "elementSendKeys", { text: webdriverKeys(key) }, o);
  }
}

/** What both adapters' pages share: events, locators, waiting. */
class PageBase {
  constructor() {
    this.listeners = new Map();
  }
  on(event, cb) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(cb);
    return this;
  }
  off(event, cb) {
    const l = this.listeners.get(event);
    if (l) l.splice(l.indexOf(cb) >>> 0, 1);
    return this;
  }
  _emit(event, ...args) {
    for (const cb of this.listeners.get(event) ?? []) {
      try {
        cb(...args);
      } catch (e) {
        console.log(`[harness] ${event} listener threw: ${e.message}`);
      }
    }
  }
  locator(css) {
    return new Locator(this, [{ css }]);
  }
  waitForTimeout(ms) {
    return sleep(ms);
  }
  /** Playwright's signature: (fn, arg, {timeout, polling}); resolves with the truthy value. */
  async waitForFunction(fn, arg, { timeout = 30000, polling = 100 } = {}) {
    const deadline = Date.now() + timeout;
    const interval = typeof polling === "number" ? polling : 100;
    let last = null;
    for (;;) {
      // A navigation (the page reloading itself) interrupts a poll: poll again, as playwright does.
      const v = await this.evaluate(fn, arg).catch((e) => ((last = e), false));
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`waitForFunction timed out after ${timeout} ms: ${String(fn).slice(0, 200)}${last ? ` (last error: ${last.message})` : ""}`);
      await sleep(interval);
    }
  }
  route() {
    throw new Error(`page.route (request interception) is not available in ${this.engine} through this harness`);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes, ports, displays.

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** SIGTERM `child` (SIGKILL after `ms`) and wait for it to exit. */
async function stopProcess(child, ms = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) {
    if (child) killGroup(child, "SIGKILL"); // what the leader left behind
    return;
  }
  const exited = new Promise((r) => child.once("exit", r));
  killGroup(child, "SIGTERM");
  if (!(await within(exited.then(() => true), ms, false))) {
    killGroup(child, "SIGKILL");
    await exited;
  }
  killGroup(child, "SIGKILL");
}

/** Call `onLine` for each whole line `stream` writes. */
function eachLine(stream, onLine) {
  let rest = "";
  stream.setEncoding("utf8");
  stream.on("data", (d) => {
    rest += d;
    let i;
    while ((i = rest.indexOf("\n")) >= 0) {
      onLine(rest.slice(0, i));
      rest = rest.slice(i + 1);
    }
  });
}

/** Start Xvfb on a free display; resolves {display, close}. $HEARTH_WEBKIT_DISPLAY: use that display instead. */
async function startXvfb() {
  if (process.env.HEARTH_WEBKIT_DISPLAY) return { display: process.env.HEARTH_WEBKIT_DISPLAY, close: async () => {} };
  const x = track(spawn("Xvfb", ["-displayfd", "3", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"], { stdio: ["ignore", "ignore", "pipe", "pipe"], detached: true }));
  let err = "";
  x.stderr.on("data", (d) => (err += d));
  const display = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`Xvfb did not start: ${err}`)), 20000);
    x.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`Xvfb did not start (${e.message}): install xvfb (scripts/test does)`));
    });
    x.on("exit", (c) => {
      clearTimeout(timer);
      reject(new Error(`Xvfb exited (${c}): ${err}`));
    });
    x.stdio[3].on("data", (d) => {
      out += d;
      if (out.includes("\n")) {
        clearTimeout(timer);
        resolve(":" + out.trim());
      }
    });
  });
  return { display, close: () => stopProcess(x) };
}

// ---------------------------------------------------------------------------------------------
// Two classic-WebDriver transports with one set of operations: the W3C HTTP protocol
// (WebKitWebDriver) and Marionette, Firefox's own protocol that geckodriver translates W3C
// WebDriver into (spoken directly here, so no geckodriver is needed).

/** One HTTP request to a WebDriver server; no client-side timeout (commands may run for minutes). */
function httpJson(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({ host: "127.0.0.1", port, method, path, headers: { "content-type": "application/json; charset=utf-8", ...(data ? { "content-length": data.length } : {}) } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          return reject(new Error(`WebDriver ${method} ${path}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
        }
        const v = json.value;
        if (res.statusCode >= 400 || (v && typeof v === "object" && typeof v.error === "string")) return reject(new Error(`WebDriver ${method} ${path}: ${v?.error}: ${v?.message}`));
        resolve(v);
      });
    });
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

const W3C_OPS = {
  navigate: ["POST", "/url"],
  refresh: ["POST", "/refresh"],
  getUrl: ["GET", "/url"],
  executeAsync: ["POST", "/execute/async"],
  executeSync: ["POST", "/execute/sync"],
  screenshot: ["GET", "/screenshot"],
  newWindow: ["POST", "/window/new"],
  switchWindow: ["POST", "/window"],
  closeWindow: ["DELETE", "/window"],
  getWindow: ["GET", "/window"],
  setTimeouts: ["POST", "/timeouts"],
  setWindowRect: ["POST", "/window/rect"],
  elementClick: ["POST", "/element/:id/click"],
  elementClear: ["POST", "/element/:id/clear"],
  elementSendKeys: ["POST", "/element/:id/value"],
};

class W3CClient {
  constructor(port) {
    this.port = port;
  }
  async newSession(capabilities) {
    const s = await httpJson(this.port, "POST", "/session", { capabilities: { alwaysMatch: capabilities } });
    this.id = s.sessionId;
    return s.capabilities;
  }
  op(name, params = {}) {
    const [method, template] = W3C_OPS[name];
    let body = params;
    let path = template;
    if (template.includes(":id")) {
      const { id, ...rest } = params;
      path = template.replace(":id", encodeURIComponent(id));
      body = rest;
    }
    return httpJson(this.port, method, `/session/${this.id}${path}`, method === "GET" || method === "DELETE" ? undefined : body);
  }
  async quit() {
    if (this.id) await httpJson(this.port, "DELETE", `/session/${this.id}`).catch(() => {});
    this.id = null;
  }
}

const MARIONETTE_OPS = {
  navigate: "WebDriver:Navigate",
  refresh: "WebDriver:Refresh",
  getUrl: "WebDriver:GetCurrentURL",
  executeAsync: "WebDriver:ExecuteAsyncScript",
  executeSync: "WebDriver:ExecuteScript",
  screenshot: "WebDriver:TakeScreenshot",
  newWindow: "WebDriver:NewWindow",
  switchWindow: "WebDriver:SwitchToWindow",
  closeWindow: "WebDriver:CloseWindow",
  getWindow: "WebDriver:GetWindowHandle",
  setTimeouts: "WebDriver:SetTimeouts",
  setWindowRect: "WebDriver:SetWindowRect",
  setContext: "Marionette:SetContext",
  elementClick: "WebDriver:ElementClick",
  elementClear: "WebDriver:ElementClear",
  elementSendKeys: "WebDriver:ElementSendKeys",
};

/** Marionette: "length:json" frames over TCP; commands [0, id, name, params], replies [1, id, error, result]. */
class MarionetteClient {
  async connect(port, deadline) {
    for (;;) {
      try {
        this.sock = await new Promise((resolve, reject) => {
          const s = net.connect(port, "127.0.0.1", () => resolve(s));
          s.once("error", reject);
        });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`Firefox's Marionette did not open port ${port}: ${e.message}`);
        await sleep(200);
      }
    }
    this.pending = new Map();
    this.nextId = 0;
    let buf = Buffer.alloc(0);
    this.sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const colon = buf.indexOf(58);
        if (colon < 0) return;
        const n = Number(buf.subarray(0, colon).toString());
        if (buf.length < colon + 1 + n) return;
        const msg = JSON.parse(buf.subarray(colon + 1, colon + 1 + n).toString("utf8"));
        buf = buf.subarray(colon + 1 + n);
        if (!Array.isArray(msg)) continue; // the greeting
        const [, id, error, result] = msg;
        const p = this.pending.get(id);
        this.pending.delete(id);
        if (!p) continue;
        if (error) p.reject(new Error(`Marionette ${p.name}: ${error.error}: ${error.message}`));
        else p.resolve(result);
      }
    });
    const fail = (e) => {
      for (const p of this.pending.values()) p.reject(new Error(`Marionette ${p.name}: connection lost${e ? ` (${e.message})` : ""}`));
      this.pending.clear();
    };
    this.sock.on("error", fail);
    this.sock.on("close", () => fail());
  }
  send(name, params = {}) {
    return new Promise((resolve, reject) => {
      const id = ++this.nextId;
      this.pending.set(id, { resolve, reject, name });
      const s = JSON.stringify([0, id, name, params]);
      this.sock.write(`${Buffer.byteLength(s)}:${s}`);
    });
  }
  async newSession(capabilities) {
    const r = await this.send("WebDriver:NewSession", { capabilities: { alwaysMatch: capabilities } });
    return r.capabilities;
  }
  async op(name, params) {
    const r = await this.send(MARIONETTE_OPS[name], params ?? {});
    // Most replies wrap their result as {value}; NewWindow's is {handle, type}.
    return r && typeof r === "object" && Object.keys(r).length === 1 && "value" in r ? r.value : r;
  }
  async quit() {
    if (!this.sock) return;
    await within(this.send("Marionette:Quit", { flags: ["eForceQuit"] }).catch(() => {}), 3000);
    this.sock.destroy();
    this.sock = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Pages, contexts and browsers over either transport. A context is one browser process with its
// own profile (so contexts share no storage, as playwright's do not); a page is one of its windows.

/**
 * The page-side console shim (for WebKit, whose driver reports no console messages): console
 * methods and uncaught errors go to window.__hearthLog as well, which each command drains.
 */
const INSTALL_LOG = `if (!window.__hearthLog) {
  window.__hearthLog = [];
  for (const type of ["log", "info", "warn", "error", "debug"]) {
    const orig = console[type].bind(console);
    console[type] = (...a) => {
      try { window.__hearthLog.push({ type, text: a.map((x) => (typeof x === "string" ? x : x instanceof Error ? String(x) : (() => { try { return JSON.stringify(x); } catch { return String(x); } })())).join(" ") }); } catch {}
      orig(...a);
    };
  }
  addEventListener("error", (e) => window.__hearthLog.push({ type: "pageerror", text: e.message || String(e.error) }));
  addEventListener("unhandledrejection", (e) => window.__hearthLog.push({ type: "pageerror", text: "Uncaught (in promise) " + (e.reason && e.reason.message ? e.reason.message : String(e.reason)) }));
}`;

/**
 * The script for an evaluate: the function's source inlined (the driver runs it as its own script,
 * so the page's CSP does not apply), its result as JSON, a throw as {ok: false}.
 */
function evaluateScript(fn, { shim, pageScope }) {
  let body = fn instanceof FnSource ? `(${fn.src})(arg)` : typeof fn === "function" ? `(${fn.toString()})(arg)` : `(${fn})`;
  // Marionette runs scripts in a sandbox whose prototype is the window but whose built-ins
  // (Error, Uint8Array, Blob, AbortController...) are its own: a `with (window)` scope makes the
  // function's free names the page's, so `e instanceof Error` and `new Uint8Array()` mean what they
  // mean in the page (literals and closures stay the sandbox's; the page sees them unwrapped).
  if (pageScope) body = `(() => { with (window.wrappedJSObject || window) { return ${body}; } })()`;
  return `const arg = arguments[0]; const done = arguments[arguments.length - 1];
${shim ? INSTALL_LOG : ""}
const drain = () => (window.__hearthLog ? window.__hearthLog.splice(0) : []);
Promise.resolve().then(async () => ${body}).then(
  (v) => { let out; try { out = v === undefined ? { undef: true } : { value: JSON.parse(JSON.stringify(v, (k, x) => (x === undefined ? null : x))) }; } catch (e) { out = { value: String(v) }; } done({ ok: true, ...out, log: drain() }); },
  (e) => done({ ok: false, error: e && e.message !== undefined ? e.message + (e.stack ? "\\n" + e.stack : "") : String(e), name: e && e.name, log: drain() }),
);`;
}

/** Size the current window so that its viewport (innerWidth x innerHeight) is `width` x `height`
 * (as near as the engine allows: Firefox's windows are at least 500 px wide, MiniBrowser's 447). */
async function setViewport(client, { width, height }) {
  let frame = { w: 0, h: 80 };
  for (let i = 0; i < 2; i++) {
    await client.op("setWindowRect", { width: width + frame.w, height: height + frame.h }).catch(() => {});
    const [iw, ih, ow, oh] = await client.op("executeSync", { script: "return [innerWidth, innerHeight, outerWidth, outerHeight];", args: [] });
    if (iw === width && ih === height) return;
    frame = { w: ow - iw, h: oh - ih };
  }
}

class ClassicPage extends PageBase {
  constructor(context, handle) {
    super();
    this.engine = context.browser.engine;
    this.context = context;
    this.session = context.session;
    this.handle = handle;
  }
  async _op(name, params) {
    const r = await this.session.withWindow(this.handle, () => this.session.client.op(name, params));
    if (this.context.watching) await this.context._drainNetwork();
    return r;
  }
  /** "request" / "response" need network events: Firefox's come from its chrome, WebKit has none. */
  on(event, cb) {
    super.on(event, cb);
    if (event === "request" || event === "response") this.context._watchNetwork();
    return this;
  }
  _deliver(log) {
    for (const m of log ?? []) {
      if (m.type === "pageerror") this._emit("pageerror", new Error(m.text));
      else this._emit("console", consoleMessage(m.type, m.text));
    }
  }
  async _afterNavigation() {
    if (!this.session.shim) return;
    const r = await this._op("executeSync", { script: `${INSTALL_LOG}; return (window.__hearthLog || []).splice(0);`, args: [] }).catch(() => []);
    this._deliver(r);
  }
  async goto(url) {
    await this._op("navigate", { url });
    await this._afterNavigation();
  }
  async reload() {
    // Marionette's Refresh reloads past the service worker (as a forced reload does): load the
    // same URL again instead, which a service worker answers, as a reload does in Chromium.
    if (this.engine === "firefox") await this._op("navigate", { url: await this._op("getUrl") });
    else await this._op("refresh", {});
    await this._afterNavigation();
  }
  async _evaluateRaw(fn, arg) {
    const r = await this._op("executeAsync", { script: evaluateScript(fn, { shim: this.session.shim, pageScope: this.engine === "firefox" }), args: [arg === undefined ? null : arg] });
    this._deliver(r?.log);
    if (!r || !r.ok) {
      const e = new Error(`page.evaluate: ${r ? r.error : "no result"}`);
      if (r?.name) e.name = r.name;
      throw e;
    }
    return r.undef ? undefined : r.value;
  }
  evaluate(fn, arg) {
    return this._evaluateRaw(fn, arg);
  }
  /** The WebDriver reference of the one element `steps` name (null: none or several). */
  async _elementId(steps) {
    const el = await this._op("executeSync", { script: `const els = (${RESOLVE_SRC})(arguments[0]); return els.length === 1 ? els[0] : null;`, args: [steps] });
    if (!el) return null;
    return el["element-6066-11e4-a52e-4f735466cecf"] ?? el.ELEMENT ?? Object.values(el)[0];
  }
  async screenshot({ path: file, fullPage = false } = {}) {
    const b64 = await this._op("screenshot", this.engine === "firefox" ? { full: fullPage, hash: false } : undefined);
    const buf = Buffer.from(b64, "base64");
    // As playwright's: the folder is made when missing.
    if (file) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, buf);
    }
    return buf;
  }
  async setViewportSize(size) {
    await this.session.withWindow(this.handle, () => setViewport(this.session.client, size));
  }
  async emulateMedia({ colorScheme } = {}) {
    if (this.engine !== "firefox" || !colorScheme) throw new Error(`page.emulateMedia is not available in ${this.engine} through this harness`);
    // layout.css.prefers-color-scheme.content-override: 0 dark, 1 light, 2 the system's.
    await this.session.chrome(`Services.prefs.setIntPref("layout.css.prefers-color-scheme.content-override", ${colorScheme === "dark" ? 0 : colorScheme === "light" ? 1 : 2});`);
  }
  async close() {
    await this.context._closePage(this);
  }
}

/** One browser process and its driver session; commands run one at a time, in the right window. */
class Session {
  constructor({ client, shim, capabilities, close, chrome }) {
    Object.assign(this, { client, shim, capabilities });
    this._close = close;
    this.chrome = chrome ?? (async () => {
      throw new Error("no privileged scripts in this engine");
    });
    this.queue = Promise.resolve();
    this.current = null;
    this.consoleListeners = new Set();
  }
  withWindow(handle, fn) {
    const run = this.queue.then(async () => {
      if (handle && this.current !== handle) {
        await this.client.op("switchWindow", { handle });
        this.current = handle;
      }
      return fn();
    });
    this.queue = run.catch(() => {});
    return run;
  }
  async close() {
    await this._close();
  }
}

/** Chrome-context script (Firefox): record each HTTP request and response in window.__hearthNet. */
const INSTALL_NETWORK_OBSERVER = `if (!window.__hearthNet) {
  window.__hearthNet = [];
  const observer = { observe(subject, topic) {
    try {
      const ch = subject.QueryInterface(Ci.nsIHttpChannel);
      // Only what pages, their workers and service workers ask for (a content principal), and
      // documents loaded into a tab; not Firefox's own background requests.
      const li = ch.loadInfo;
      const content = li && li.loadingPrincipal && !li.loadingPrincipal.isSystemPrincipal;
      if (!content && !(li && li.browsingContextID)) return;
      if (topic === "http-on-modify-request") window.__hearthNet.push({ kind: "request", url: ch.URI.spec, method: ch.requestMethod });
      else window.__hearthNet.push({ kind: "response", url: ch.URI.spec, status: ch.responseStatus });
    } catch (e) {}
  } };
  for (const topic of ["http-on-modify-request", "http-on-examine-response", "http-on-examine-cached-response"]) Services.obs.addObserver(observer, topic);
}`;

class ClassicContext {
  constructor(browser, options = {}) {
    this.browser = browser;
    this.options = options;
    this.pages = [];
    this.listeners = new Map();
  }
  /** context.on("request" | "response"): as page.on, for every page of the context. */
  on(event, cb) {
    if (event !== "request" && event !== "response") throw new Error(`context.on("${event}") is not available through this harness`);
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(cb);
    this._watchNetwork();
  }
  /** Firefox: observe every HTTP request and response of this context's browser process (its chrome). */
  _watchNetwork() {
    if (this.browser.engine !== "firefox") return null;
    this.watching ??= (async () => {
      await this._ensureSession();
      await this.session.chrome(INSTALL_NETWORK_OBSERVER);
    })();
    return this.watching;
  }
  async _drainNetwork() {
    if (!this.watching || !this.session || this.draining) return;
    this.draining = true;
    try {
      await this.watching;
      const events = (await this.session.chrome("return (window.__hearthNet || []).splice(0);").catch(() => [])) ?? [];
      for (const ev of events) {
        const obj = { url: () => ev.url, method: () => ev.method, status: () => ev.status, headers: () => ({}) };
        for (const cb of this.listeners.get(ev.kind) ?? []) cb(obj);
        for (const p of this.pages) p._emit(ev.kind, obj);
      }
    } finally {
      this.draining = false;
    }
  }
  /** The context's browser process and session, started once (concurrent callers share it). */
  _ensureSession() {
    this.starting ??= (async () => {
      const session = await this.browser._startSession(this.options);
      session.onConsole = (kind, msg) => {
        for (const p of this.pages) kind === "pageerror" ? p._emit("pageerror", msg) : p._emit("console", msg);
      };
      if (this.options.viewport) await setViewport(session.client, this.options.viewport);
      session.current = await session.client.op("getWindow");
      this.firstWindow = session.current;
      this.session = session;
    })();
    return this.starting;
  }
  async newPage() {
    await this._ensureSession();
    let handle;
    if (this.firstWindow) {
      handle = this.firstWindow;
      this.firstWindow = null;
    } else {
      ({ handle } = await this.session.withWindow(null, () => this.session.client.op("newWindow", { type: "tab" })));
    }
    const page = new ClassicPage(this, handle);
    this.pages.push(page);
    if (this.offline) await this.setOffline(true);
    return page;
  }
  /** Firefox: the whole browser (this context's own process) goes offline. */
  async setOffline(offline) {
    if (this.browser.engine !== "firefox") throw new Error(`context.setOffline is not available in ${this.browser.engine} through this harness`);
    this.offline = offline;
    await this._ensureSession();
    // An observer fails every HTTP request that would reach the network while offline, loopback
    // included (the test servers' address). Not Services.io.offline: Firefox's offline mode also
    // refuses navigations that a service worker would answer (it shows its offline error page), so
    // navigator.onLine stays true here, unlike Chromium's.
    await this.session.chrome(`window.__hearthOffline = ${!!offline};
      if (!window.__hearthOfflineObserver) {
        window.__hearthOfflineObserver = { observe(subject) {
          if (!window.__hearthOffline) return;
          try { subject.QueryInterface(Ci.nsIHttpChannel).cancel(Cr.NS_ERROR_OFFLINE); } catch (e) {}
        } };
        // Before connecting: after a service worker had its chance to answer (intercepted requests
        // never get here unless the worker itself goes to the network).
        Services.obs.addObserver(window.__hearthOfflineObserver, "http-on-before-connect");
      }`);
  }
  async _closePage(page) {
    if (!this.pages.includes(page)) return;
    this.pages = this.pages.filter((p) => p !== page);
    if (!this.session) return;
    if (this.pages.length === 0) return this.close();
    await this.session.withWindow(page.handle, () => this.session.client.op("closeWindow")).catch(() => {});
    this.session.current = null;
  }
  async close() {
    await this.starting?.catch(() => {});
    const s = this.session;
    this.session = null;
    this.starting = null;
    this.watching = null;
    this.pages = [];
    this.browser.contexts.delete(this);
    if (s) await s.close();
  }
}

/** The browser object the tests get: newContext / newPage / close / version. */
function classicBrowser(engine, startSession, cleanup = async () => {}) {
  let version = null;
  const browser = {
    engine,
    contexts: new Set(),
    version: () => version,
    async _startSession(options) {
      const s = await startSession(options);
      version ??= s.version;
      return s;
    },
    async newContext(options = {}) {
      const ctx = new ClassicContext(browser, options);
      browser.contexts.add(ctx);
      return ctx;
    },
    /** A page in a context of its own (closing the page closes the context), as playwright's. */
    async newPage(options = {}) {
      const ctx = await browser.newContext(options);
      return ctx.newPage();
    },
    async close() {
      for (const c of [...browser.contexts]) await c.close().catch(() => {});
      await cleanup();
    },
  };
  return browser;
}

// ---------------------------------------------------------------------------------------------
// Firefox: firefox-esr --headless --marionette, a fresh profile per context.
//
// Why not WebDriver BiDi (puppeteer-core): with a BiDi session open, Firefox (153 ESR measured)
// stops starting nested workers after a few dozen once BiDi script evaluations run while they
// start: new Worker() from a worker never runs. Hearth's threaded engine starts its rayon workers
// from its own worker at every load, so loads hung at random. Marionette does not do this (80 of
// 80 nested-worker starts under the same polling), nor does Firefox without automation.

/** The prefs of a test profile (after puppeteer's and geckodriver's): quiet, no first run, local. */
function firefoxPrefs({ webgpu, port }) {
  const dummy = "http://dummy.test";
  return {
    "marionette.port": port,
    // Content's console to stdout, uncaught errors to stderr: the harness's console events.
    "devtools.console.stdout.content": true,
    "devtools.console.stdout.chrome": false,
    "javascript.options.showInConsole": true,
    "browser.dom.window.dump.enabled": true,
    // WebGPU where Firefox has it; `webgpu: false` hides navigator.gpu.
    "dom.webgpu.enabled": webgpu,
    "gfx.webgpu.ignore-blocklist": webgpu,
    "app.normandy.api_url": "",
    "app.update.checkInstallTime": false,
    "app.update.disabledForTesting": true,
    "app.update.enabled": false,
    "browser.aboutwelcome.enabled": false,
    "browser.newtabpage.enabled": false,
    "browser.region.network.url": "",
    "browser.safebrowsing.blockedURIs.enabled": false,
    "browser.safebrowsing.downloads.enabled": false,
    "browser.safebrowsing.malware.enabled": false,
    "browser.safebrowsing.phishing.enabled": false,
    "browser.search.update": false,
    "browser.sessionstore.resume_from_crash": false,
    "browser.shell.checkDefaultBrowser": false,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.tabs.warnOnClose": false,
    "browser.tabs.warnOnCloseOtherTabs": false,
    "browser.translations.automaticallyPopup": false,
    "browser.uitour.enabled": false,
    "browser.warnOnQuit": false,
    "datareporting.healthreport.uploadEnabled": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "datareporting.policy.dataSubmissionPolicyBypassNotification": true,
    "dom.disable_open_during_load": false,
    "dom.ipc.reportProcessHangs": false,
    "dom.max_chrome_script_run_time": 0,
    "dom.max_script_run_time": 0,
    "extensions.autoDisableScopes": 0,
    "extensions.enabledScopes": 5,
    "extensions.update.enabled": false,
    "focusmanager.testmode": true,
    "hangmonitor.timeout": 0,
    "media.gmp-manager.updateEnabled": false,
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
    "network.http.speculative-parallel-limit": 0,
    "network.manage-offline-status": false,
    "privacy.trackingprotection.enabled": false,
    "services.settings.server": `${dummy}/blocklist/`,
    "signon.rememberSignons": false,
    "startup.homepage_welcome_url": "about:blank",
    "toolkit.startup.max_resumed_crashes": -1,
    "toolkit.telemetry.reportingpolicy.firstRun": false,
    "messaging-system.rsexperimentloader.enabled": false,
    "app.shield.optoutstudies.enabled": false,
    "extensions.systemAddon.update.enabled": false,
    "browser.topsites.contile.enabled": false,
    ...(process.env.HEARTH_FIREFOX_PREFS ? JSON.parse(process.env.HEARTH_FIREFOX_PREFS) : {}),
  };
}

/** A console line Firefox printed ('console.warn: "text" ...'): {type, text}, or null. Messages of
 * Firefox's own code (named console instances: "RSLoader: ...") are not the page's. */
function parseFirefoxConsole(line) {
  const m = line.match(/^console\.(log|info|warn|error|debug|trace|assert): (.*)$/);
  if (!m || /^[A-Za-z][\w.-]*: /.test(m[2])) return null;
  let text = m[2];
  const q = text.match(/^"((?:[^"\\]|\\.)*)"(.*)$/);
  if (q) {
    try {
      text = JSON.parse(`"${q[1]}"`) + q[2];
    } catch {}
  }
  return { type: m[1], text };
}

export async function launchFirefox({ webgpu = true } = {}) {
  const executable = process.env.FIREFOX || "/usr/bin/firefox-esr";
  if (!fs.existsSync(executable)) throw new Error(`no Firefox at ${executable} (scripts/test installs firefox-esr; or set FIREFOX)`);
  const start = async () => {
    const port = await freePort();
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-firefox-"));
    tempDirs.add(profile);
    const prefs = firefoxPrefs({ webgpu, port });
    fs.writeFileSync(path.join(profile, "user.js"), Object.entries(prefs).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`).join(""));
    // -remote-allow-system-access: Marionette's chrome context (setOffline, emulateMedia, network events).
    const child = track(
      spawn(executable, ["--headless", "--no-remote", "--profile", profile, "--marionette", "-remote-allow-system-access"], {
        env: { ...process.env, MOZ_HEADLESS: "1", MOZ_CRASHREPORTER_DISABLE: "1" },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      }),
    );
    let session = null;
    let log = "";
    const keep = (l) => {
      log = (log + l + "\n").slice(-4000);
      if (process.env.HEARTH_TEST_VERBOSE) console.log(`[firefox] ${l}`);
    };
    eachLine(child.stdout, (l) => {
      keep(l);
      const m = parseFirefoxConsole(l);
      if (m && session?.onConsole) session.onConsole("console", consoleMessage(m.type, m.text));
    });
    eachLine(child.stderr, (l) => {
      keep(l);
      const e = l.match(/^JavaScript error: (https?:\/\/[^,]*), line (\d+): (.*)$/);
      if (e && session?.onConsole) session.onConsole("pageerror", new Error(`${e[3]} (${e[1]}:${e[2]})`));
    });
    const died = new Promise((_, reject) => {
      child.once("error", (e) => reject(new Error(`Firefox did not start: ${e.message}`)));
      child.once("exit", (c) => reject(new Error(`Firefox exited (${c}) before its Marionette port opened:\n${log}`)));
    });
    const client = new MarionetteClient();
    let capabilities;
    try {
      await Promise.race([client.connect(port, Date.now() + 60000), died]);
      capabilities = await Promise.race([client.newSession({ pageLoadStrategy: "normal" }), died]);
      // The tests bound their own waits; real-model evaluations run for minutes.
      await client.op("setTimeouts", { script: 3600000, pageLoad: 120000, implicit: 0 });
    } catch (e) {
      await stopProcess(child);
      fs.rmSync(profile, { recursive: true, force: true });
      throw e;
    }
    died.catch(() => {});
    /** A script with chrome privileges (Services.*), then back to content. */
    const chrome = (script) =>
      session.withWindow(null, async () => {
        await client.op("setContext", { value: "chrome" });
        try {
          return await client.op("executeSync", { script, args: [] });
        } finally {
          await client.op("setContext", { value: "content" });
        }
      });
    session = new Session({
      client,
      shim: false,
      capabilities,
      chrome,
      close: async () => {
        await client.quit();
        await stopProcess(child);
        fs.rmSync(profile, { recursive: true, force: true });
        tempDirs.delete(profile);
      },
    });
    session.version = `Firefox ${capabilities.browserVersion}`;
    return session;
  };
  return classicBrowser("firefox", start);
}

// ---------------------------------------------------------------------------------------------
// WebKit: WebKitGTK's MiniBrowser through WebKitWebDriver, on a private Xvfb display.

export async function launchWebKit() {
  const binary =
    process.env.WEBKIT_BROWSER ||
    ["/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser", "/usr/lib/aarch64-linux-gnu/webkit2gtk-4.1/MiniBrowser", "/usr/libexec/webkit2gtk-4.1/MiniBrowser"].find((f) => fs.existsSync(f));
  if (!binary) throw new Error("no WebKitGTK MiniBrowser (scripts/test installs webkit2gtk-driver; or set WEBKIT_BROWSER)");
  const xvfb = await startXvfb();
  const start = async () => {
    const port = await freePort();
    const driver = track(spawn(process.env.WEBKIT_WEBDRIVER || "WebKitWebDriver", [`--port=${port}`], { env: { ...process.env, DISPLAY: xvfb.display }, stdio: ["ignore", "pipe", "pipe"], detached: true }));
    let log = "";
    const keep = (l) => {
      log = (log + l + "\n").slice(-4000);
      if (process.env.HEARTH_TEST_VERBOSE) console.log(`[webkitwebdriver] ${l}`);
    };
    eachLine(driver.stdout, keep);
    eachLine(driver.stderr, keep);
    const died = new Promise((_, reject) => {
      driver.once("error", (e) => reject(new Error(`WebKitWebDriver did not start (${e.message}): install webkit2gtk-driver (scripts/test does)`)));
      driver.once("exit", (c) => reject(new Error(`WebKitWebDriver exited (${c}):\n${log}`)));
    });
    died.catch(() => {});
    const client = new W3CClient(port);
    let capabilities;
    try {
      const deadline = Date.now() + 30000;
      for (;;) {
        try {
          await Promise.race([httpJson(port, "GET", "/status"), died]);
          break;
        } catch (e) {
          if (!/ECONNREFUSED/.test(e.message) || Date.now() > deadline) throw e;
          await sleep(100);
        }
      }
      const args = ["--automation", ...(process.env.HEARTH_WEBKIT_ARGS ? process.env.HEARTH_WEBKIT_ARGS.split(" ").filter(Boolean) : [])];
      capabilities = await Promise.race([client.newSession({ "webkitgtk:browserOptions": { binary, args } }), died]);
      // The tests bound their own waits; real-model evaluations run for minutes.
      await client.op("setTimeouts", { script: 3600000, pageLoad: 120000, implicit: 0 });
    } catch (e) {
      await stopProcess(driver);
      throw e;
    }
    const session = new Session({
      client,
      shim: true,
      capabilities,
      close: async () => {
        await client.quit();
        await stopProcess(driver);
      },
    });
    session.version = `WebKitGTK ${capabilities.browserVersion} (MiniBrowser)`;
    return session;
  };
  return classicBrowser("webkit", start, () => xvfb.close());
}
