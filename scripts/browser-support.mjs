#!/usr/bin/env node
// The README's browser-support table, from the logs of a browser-test run in each engine:
//
//   HEARTH_BROWSER_LOGS=/tmp/hearth-browsers scripts/test-browsers
//   node scripts/browser-support.mjs /tmp/hearth-browsers [--write] [--speed=DIR]
//
// scripts/test-browsers runs the engines side by side, which is right for the outcomes but not for
// a speed: --speed=DIR takes the decode figures from another run's logs, one engine at a time on a
// quiet machine:
//
//   HEARTH_BROWSER_JOBS=1 HEARTH_BROWSER_LOGS=/tmp/speed scripts/test-browsers tests/browser/real-model.test.mjs
//
// Reads <dir>/<engine>.log (chromium, firefox, webkit: whichever exist), each the TAP output of
// `node --test tests/browser/` in that engine, and prints a Markdown table: what
// tests/browser/engine.test.mjs measured (version, threads, SIMD build, WebGPU adapter, storage
// APIs), whether the offline, widget, store and WebGPU tests passed there, the suite's counts and
// the real model's decode speed (tests/browser/real-model.test.mjs). --write puts it into
// README.md between the browser-support markers.
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const args = process.argv.slice(2);
const write = args.includes("--write");
const dir = args.find((a) => !a.startsWith("--"));
const speedDir = args.find((a) => a.startsWith("--speed="))?.slice("--speed=".length);
if (!dir) {
  console.error("usage: node scripts/browser-support.mjs LOG_DIR [--write]");
  process.exit(2);
}

const NAMES = { chromium: "Chromium", firefox: "Firefox ESR", webkit: "WebKitGTK" };

/** Each test's outcome by name: "ok", "fail", "skip" or "todo" (a known issue that did not pass). */
function outcomes(log) {
  const out = new Map();
  for (const line of log.split("\n")) {
    const m = /^(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$/.exec(line);
    if (!m) continue;
    const [, status, name, directive] = m;
    out.set(name, directive === "SKIP" ? "skip" : status === "ok" ? "ok" : directive === "TODO" ? "todo" : "fail");
  }
  return out;
}

/** "yes" when every test whose name matches passed, else what happened. */
function verdict(tests, pattern) {
  const all = [...tests].filter(([name]) => pattern.test(name)).map(([, s]) => s);
  if (!all.length) return "not run";
  if (all.every((s) => s === "skip")) return "skipped";
  // Skipped tests (what the engine cannot be asked through its driver) neither pass nor fail.
  const got = all.filter((s) => s !== "skip");
  if (got.every((s) => s === "ok")) return "yes";
  const bad = got.filter((s) => s !== "ok" && s !== "skip").length;
  return `${bad} of ${got.length} tests fail`;
}

function row(engine, log, speedLog = log) {
  const tests = outcomes(log);
  const support = JSON.parse(/engine support: (\{.*\})\s*$/m.exec(log)?.[1] ?? "null");
  const decode = /decode in \S+: ([\d.]+) tokens\/s \((\d+) tokens, (\w+), (\d+) threads?, (\w+)\)/.exec(speedLog);
  const counts = Object.fromEntries([...log.matchAll(/^# (tests|pass|fail|skipped|todo) (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
  const s = support ?? {};
  let gpu = "n/a";
  if (support) {
    if (typeof s.webgpu === "string") gpu = s.webgpu;
    else {
      const adapter = [s.webgpu.vendor, s.webgpu.architecture].filter(Boolean).join(" ") || "an adapter";
      gpu = `${adapter}${s.webgpu.fallback ? " (software)" : ""}, shader-f16 ${s.webgpu.shaderF16 ? "yes" : "no"}; tests: ${verdict(tests, /WebGPU|GPU device lost|kvType .*WebGPU|weight type gives the CPU backend/)}`;
    }
  }
  const store = !support
    ? "n/a"
    : `${s.storage.opfs && s.storage.createWritable ? "OPFS" : s.storage.cacheStorage ? "Cache Storage" : "none"}; tests: ${verdict(tests, /stored|store|Range request|sha256|quota/i)}`;
  return [
    `${NAMES[engine] ?? engine} ${s.version?.replace(/^(Firefox|WebKitGTK) /, "") ?? ""}`.trim(),
    support ? `${s.worker.threads}${s.sharedArrayBuffer ? "" : " (no SharedArrayBuffer)"}` : "n/a",
    support ? s.worker.simd : "n/a",
    gpu,
    store,
    verdict(tests, /offline|service worker/i),
    verdict(tests, /widget|launcher/i),
    `${counts.pass ?? "?"} pass, ${counts.fail ?? "?"} fail, ${counts.skipped ?? 0} skipped${counts.todo ? `, ${counts.todo} todo` : ""}`,
    decode ? `${decode[1]} (${decode[3]}, ${decode[4]} thread${decode[4] === "1" ? "" : "s"}, ${decode[5]})` : "not measured",
  ];
}

const header = ["Engine", "Threads", "SIMD build", "WebGPU", "Model store", "Offline", "Widget", "Browser suite", "Decode tok/s, SmolLM2-135M Q4_1"];
const rows = [];
for (const engine of ["chromium", "firefox", "webkit"]) {
  const f = path.join(dir, `${engine}.log`);
  const speed = speedDir && path.join(speedDir, `${engine}.log`);
  if (fs.existsSync(f)) rows.push(row(engine, fs.readFileSync(f, "utf8"), speed && fs.existsSync(speed) ? fs.readFileSync(speed, "utf8") : undefined));
}
if (!rows.length) {
  console.error(`no chromium.log, firefox.log or webkit.log in ${dir}`);
  process.exit(1);
}
const table = [header, header.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
console.log(table);

if (write) {
  const readme = path.join(root, "README.md");
  const text = fs.readFileSync(readme, "utf8");
  const begin = "<!-- browser-support:begin (scripts/browser-support.mjs writes this table) -->";
  const end = "<!-- browser-support:end -->";
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) {
    console.error(`README.md has no ${begin} ... ${end} section`);
    process.exit(1);
  }
  const when = new Date().toISOString().slice(0, 10);
  fs.writeFileSync(readme, `${text.slice(0, a + begin.length)}\n${table}\n\nMeasured ${when} by \`scripts/test-browsers\` on this repository's CI machine (2 cores, no GPU)${speedDir ? "; the decode figures with one engine at a time (\`HEARTH_BROWSER_JOBS=1\`)" : ""}.\n${text.slice(b)}`);
  console.error("README.md updated");
}
