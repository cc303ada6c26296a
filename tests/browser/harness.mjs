// Helpers for the browser tests (api.test.mjs, page.test.mjs): a server for www/ + pkg/ on a
// random port, the browser engine under test (HEARTH_BROWSER: chromium, the default, through
// playwright-core; firefox (firefox-esr) over Marionette; webkit (WebKitGTK's MiniBrowser) through
// WebKitWebDriver: see engines.mjs; never a browser download), and the test fixtures written by the
// native `hearth` CLI. scripts/test-browsers runs the suite once per engine (HEARTH_BROWSERS).

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The browser package the server serves at /pkg/: pkg/, or $HEARTH_PKG (e.g. a copy of a build). */
export const pkgDir = process.env.HEARTH_PKG ? path.resolve(process.env.HEARTH_PKG) : path.join(root, "pkg");

/**
 * Start scripts/serve.mjs on a free port. `mounts`: {"/fixtures": "/abs/dir", ...}; `plain`: no
 * isolation or CSP headers, like a static host that cannot set them; `log`: a file that gets a
 * JSON line per request ({path, range, status, bytes}).
 * Returns {url (with trailing slash), close()}.
 */
export async function startServer({ mounts = {}, plain = false, log = null } = {}) {
  const args = [path.join(root, "scripts/serve.mjs"), "--port", "0"];
  if (plain) args.push("--plain");
  if (pkgDir !== path.join(root, "pkg") && !mounts["/pkg"]) args.push("--mount", `/pkg=${pkgDir}`);
  if (log) args.push("--log", log);
  for (const [prefix, dir] of Object.entries(mounts)) args.push("--mount", `${prefix}=${dir}`);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`serve.mjs did not start: ${out}${err}`)), 15000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/running at (http:\/\/\S+\/)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve.mjs exited (${code}): ${out}${err}`));
    });
  });
  return {
    url,
    close: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--enable-unsafe-webgpu",
];

export const ENGINES = ["chromium", "firefox", "webkit"];

/** The engine under test: $HEARTH_BROWSER (chromium, firefox or webkit); chromium by default. */
export const ENGINE = (() => {
  const e = (process.env.HEARTH_BROWSER || "chromium").trim().toLowerCase();
  if (!ENGINES.includes(e)) throw new Error(`HEARTH_BROWSER=${e}: not one of ${ENGINES.join(", ")}`);
  return e;
})();

/** The engine's name as people know it, for test titles and messages. */
export const ENGINE_NAME = { chromium: "Chromium", firefox: "Firefox", webkit: "WebKit" }[ENGINE];

/**
 * node:test options that run a test only in `engines`, and otherwise skip it saying why (the
 * reason shows in the test output as "# SKIP <engine>: <reason>"), e.g.
 * `test("...", onlyIn(["chromium"], "needs CDP request interception"), async () => {...})`.
 */
export function onlyIn(engines, reason) {
  return engines.includes(ENGINE) ? {} : { skip: `${ENGINE}: ${reason}` };
}

/**
 * node:test options for a test that is known to fail in some engines until a fix lands, e.g.
 * `knownIssue({ webkit: "store.js calls navigator.storage.estimate() unguarded" })`: in those engines
 * the test still runs and reports, as "# TODO <engine>: <reason>", without failing the suite.
 */
export function knownIssue(reasons) {
  return reasons[ENGINE] ? { todo: `${ENGINE}: ${reasons[ENGINE]}` } : {};
}

/**
 * Whether page.on("console") also sees the console of the page's workers (Hearth's engine warns
 * from its Worker): playwright's Chromium and the Firefox adapter do; WebKitWebDriver gives no
 * console at all and the WebKit adapter's shim sees only the page's own.
 */
export const WORKER_CONSOLE = ENGINE !== "webkit";

/**
 * Whether page.on / context.on("request" | "response") fire: playwright's Chromium and the Firefox
 * adapter (its chrome's HTTP observers) report every request, workers' included; WebKitWebDriver
 * gives no network events, so in WebKit the listeners never fire.
 */
export const NETWORK_EVENTS = ENGINE !== "webkit";

/** Whether context.setOffline works (Firefox: every HTTP request fails before it connects; not in
 * WebKit, where a test can stop its server instead). */
export const OFFLINE_EMULATION = ENGINE !== "webkit";

/** Whether page.emulateMedia({colorScheme}) works (Firefox: a chrome pref; not in WebKit). */
export const MEDIA_EMULATION = ENGINE !== "webkit";

/**
 * The browser under test (HEARTH_BROWSER), headless. Chromium: the system one (/usr/bin/chromium,
 * or $CHROMIUM) through playwright-core, as before. Firefox: /usr/bin/firefox-esr (or $FIREFOX)
 * over Marionette (its own WebDriver protocol; not BiDi, which hangs nested workers: engines.mjs).
 * WebKit: WebKitGTK's MiniBrowser through WebKitWebDriver on a private Xvfb display. Firefox and WebKit come as adapters with the part of
 * playwright's Browser/Page API the tests use (engines.mjs). `webgpu: false`: Chromium without
 * --enable-unsafe-webgpu (navigator.gpu but no adapter, as most Linux browsers); Firefox with
 * dom.webgpu.enabled off; WebKit as it is (no WebGPU by default).
 */
export async function launchBrowser({ webgpu = true } = {}) {
  if (ENGINE === "firefox") return (await import("./engines.mjs")).launchFirefox({ webgpu });
  if (ENGINE === "webkit") return (await import("./engines.mjs")).launchWebKit({ webgpu });
  const { chromium } = await import("playwright-core");
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!fs.existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath} (scripts/test installs it; or set CHROMIUM)`);
  return chromium.launch({ executablePath, args: webgpu ? CHROMIUM_ARGS : CHROMIUM_ARGS.filter((a) => a !== "--enable-unsafe-webgpu") });
}

/** Pipe the page's console and errors to the test output (prefixed), for debugging failures. */
export function logPage(page, tag = "page") {
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning" || process.env.HEARTH_TEST_VERBOSE) console.log(`[${tag} ${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => console.log(`[${tag} pageerror] ${e.message}`));
}

/** The native CLI: the newer of the debug build `cargo test` made and a release build, else build debug. */
export function cliBinary() {
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(root, "target");
  // The newer of the two builds: a stale debug binary beside a fresh release one gave old outputs.
  const built = ["debug", "release"].map((p) => path.join(target, p, "hearth")).filter((b) => fs.existsSync(b));
  if (built.length) return built.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  execFileSync("cargo", ["build", "--quiet", "--bin", "hearth"], { cwd: root, stdio: "inherit" });
  return path.join(target, "debug", "hearth");
}

/**
 * A directory with the test fixtures (spm-q4_0, bpe-q4_k_m, ... as GGUF files), written once by the
 * native CLI and cached in fixtures/browser/. Uses the debug `hearth` binary that `cargo test`
 * already built (builds it if missing) so CI compiles nothing twice.
 */
export function fixtureDir(names = ["spm-q4_0", "bpe-q4_k_m"]) {
  const dir = path.join(root, "fixtures", "browser");
  // Missing, or stale (the golden records the fixture's sha256): write it again.
  const missing = names.filter((n) => {
    const file = path.join(dir, `${n}.gguf`);
    if (!fs.existsSync(file)) return true;
    const golden = path.join(root, "tests", "golden", `model-${n}.json`);
    if (!fs.existsSync(golden)) return false;
    const want = JSON.parse(fs.readFileSync(golden, "utf8")).sha256;
    return want && createHash("sha256").update(fs.readFileSync(file)).digest("hex") !== want;
  });
  if (missing.length) {
    fs.mkdirSync(dir, { recursive: true });
    const bin = cliBinary();
    // The mixture-of-experts fixtures (moe-*, moe1-*) and the Llama 4 ones (llama4-*, llama4s-*)
    // are their own sets: `hearth fixture --moe`, `--llama4`.
    for (const n of missing) {
      writeAside(dir, `${n}.gguf`, (scratch) =>
        execFileSync(bin, ["fixture", "--out", scratch, "--only", n, ...(/^moe\d*-/.test(n) ? ["--moe"] : /^llama4s?-/.test(n) ? ["--llama4"] : [])], { cwd: root, stdio: ["ignore", "ignore", "inherit"] }),
      );
    }
  }
  return dir;
}

/**
 * `write(scratch)` writes `name` into a fresh folder inside `dir`, from where it is renamed into
 * `dir`: the engines' suites run at once (scripts/test-browsers) and may want the same file, and
 * none may read a half-written one.
 */
function writeAside(dir, name, write) {
  const scratch = fs.mkdtempSync(path.join(dir, ".writing-"));
  try {
    write(scratch);
    fs.renameSync(path.join(scratch, name), path.join(dir, name));
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * The model over 4 GiB (`hearth fixture --big`, 4.5 GB): $HEARTH_BIG_MODEL, or big-f16.gguf in
 * ~/.cache/hearth/big/, written by the CLI if missing. Outside the clone, so CI writes it once per
 * machine (tests/gpu_big.rs uses the same place); both sides of each test read the same file, so
 * one an older fixture writer made still checks the engine.
 */
export function bigModel() {
  if (process.env.HEARTH_BIG_MODEL) return process.env.HEARTH_BIG_MODEL;
  const dir = bigDir();
  const file = path.join(dir, "big-f16.gguf");
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dir, { recursive: true });
    writeAside(dir, "big-f16.gguf", (scratch) =>
      execFileSync(cliBinary(), ["fixture", "--big", "--out", scratch], { cwd: root, stdio: ["ignore", "ignore", "inherit"] }),
    );
  }
  return file;
}

/**
 * The native CLI's greedy run of `prompt` on the model over 4 GiB (`hearth generate ... --json`,
 * parsed): each run reads the 4.5 GB file and multiplies by its 4 GiB table per token, so the
 * result is kept in ~/.cache/hearth/big/ under a name from the CLI binary, the model and the
 * arguments, and the WebGPU and memory64 tests of every engine's suite compare with one run.
 */
export function bigModelNative(big, prompt, tokens, ctx) {
  const bin = cliBinary();
  const [b, m] = [fs.statSync(bin), fs.statSync(big)];
  const key = createHash("sha256").update(JSON.stringify([bin, b.size, b.mtimeMs, big, m.size, m.mtimeMs, prompt, tokens, ctx])).digest("hex").slice(0, 16);
  const dir = bigDir();
  const name = `native-${key}.json`;
  const run = () => execFileSync(bin, ["generate", "--model", big, "--prompt", prompt, "--max-tokens", String(tokens), "--temperature", "0", "--ctx-size", String(ctx), "--json"], { encoding: "utf8" });
  try {
    if (!fs.existsSync(path.join(dir, name))) {
      fs.mkdirSync(dir, { recursive: true });
      // Another build's runs are stale: at most one is kept.
      for (const f of fs.readdirSync(dir)) if (/^native-[0-9a-f]{16}\.json$/.test(f) && f !== name) fs.rmSync(path.join(dir, f), { force: true });
      writeAside(dir, name, (scratch) => fs.writeFileSync(path.join(scratch, name), run()));
    }
    return JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));
  } catch (e) {
    if (e.code !== "EACCES" && e.code !== "EROFS") throw e;
    return JSON.parse(run());
  }
}

function bigDir() {
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "hearth", "big");
}

/**
 * Run `fn` while no other engine's suite runs a test that loads the model over 4 GiB: each such
 * load holds about 5 GB (wasm memory, or SwiftShader's buffers) and the engines' suites run at
 * once (scripts/test-browsers). A lock file beside the model, with the holder's pid: one whose
 * process is gone is taken over.
 */
export async function withBigModelLock(fn) {
  const dir = bigDir();
  fs.mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, ".load-lock");
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
      break;
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
      let holder = "";
      try {
        holder = fs.readFileSync(lock, "utf8").trim();
      } catch {}
      // Empty: just made, its pid not written yet.
      let alive = holder === "";
      try {
        alive ||= process.kill(Number(holder), 0);
      } catch {}
      if (!alive) fs.rmSync(lock, { force: true });
      else await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/**
 * The API test page (test/api.html, `window.Hearth`) in a fresh browser, with `fixtures` served at
 * /fixtures/, and whether the engine has a WebGPU adapter (engines without one, WebKitGTK's,
 * skip the WebGPU tests; chat-api.test.mjs checks that backend "webgpu" is backend_unavailable
 * there). Returns {server, browser, page, adapter}; close them in after().
 */
export async function openApiPage(tag, fixtures) {
  assertPkgBuilt();
  const server = await startServer({ mounts: { "/fixtures": fixtures, "/test": path.join(root, "tests/browser") } });
  const browser = await launchBrowser();
  const page = await browser.newPage();
  logPage(page, tag);
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
  const adapter = await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter()));
  return { server, browser, page, adapter };
}

/**
 * For the benchmark scripts: $HEARTH_REAL_MODEL served at /m/ (its URL: `url`) beside the API test
 * page (/test/api.html), and a fresh browser. Returns {url, server, browser}; close both.
 */
export async function realModelBench() {
  const model = process.env.HEARTH_REAL_MODEL;
  if (!model || !fs.existsSync(model)) throw new Error("set HEARTH_REAL_MODEL to SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model)");
  assertPkgBuilt();
  const server = await startServer({ mounts: { "/m": path.dirname(model), "/test": path.join(root, "tests/browser") } });
  return { url: "/m/" + path.basename(model), server, browser: await launchBrowser() };
}

/** The pkg/ build must exist (scripts/build-wasm). */
export function assertPkgBuilt() {
  const f = path.join(pkgDir, "hearth_wasm_bg.wasm");
  if (!fs.existsSync(f) || !fs.existsSync(path.join(pkgDir, "hearth.js"))) throw new Error(`${pkgDir} is not built: run scripts/build-wasm`);
}

/**
 * The real default model (SmolLM2-135M-Instruct Q4_1) as the page gets it: www/models/default.json
 * and the file it names, copied from $HEARTH_REAL_MODEL by scripts/default-model (scripts/test runs
 * both). Returns default.json; throws, saying what to run, when any of it is missing: the tests
 * that need the model fail rather than skip.
 */
export function realModel() {
  const env = process.env.HEARTH_REAL_MODEL;
  if (!env) throw new Error("HEARTH_REAL_MODEL is not set: run scripts/test, or export HEARTH_REAL_MODEL=$(scripts/fetch-model) and run scripts/default-model");
  if (!fs.existsSync(env)) throw new Error(`HEARTH_REAL_MODEL=${env}: no such file (scripts/fetch-model fetches it)`);
  const json = path.join(root, "www/models/default.json");
  if (!fs.existsSync(json)) throw new Error("www/models/default.json is missing: run scripts/default-model (scripts/test does)");
  const def = JSON.parse(fs.readFileSync(json, "utf8"));
  const served = path.join(root, "www", def.url);
  if (!fs.existsSync(served) || fs.statSync(served).size !== fs.statSync(env).size) throw new Error(`www/${def.url} is missing or is not $HEARTH_REAL_MODEL: run scripts/default-model`);
  return def;
}

/**
 * Wait until the chat page (www/index.html) is ready; on a timeout, fail with what the page shows
 * (its state, status line, error and progress), which a bare timeout does not say.
 */
export async function waitPageReady(page, timeout) {
  try {
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout });
  } catch (e) {
    let shown = "(the page did not answer)";
    try {
      shown = JSON.stringify(
        await page.evaluate(() => ({
          state: document.body.dataset.state,
          status: document.querySelector('[data-testid="status"]')?.textContent,
          error: document.querySelector('[data-testid="error"]')?.textContent,
          progress: document.querySelector('[data-testid="progress"]')?.value ?? null,
          notices: [...document.querySelectorAll("li.notice")].map((n) => n.textContent),
          serviceWorker: navigator.serviceWorker?.controller ? "controls the page" : "does not control the page",
        })),
      );
    } catch {}
    throw new Error(`${e.message}; the page shows ${shown}`);
  }
}
