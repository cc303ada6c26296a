// The CPU kernels' own throughput in Chromium's V8 (which is what the page runs; node 20's V8 is
// older and compiles wasm SIMD differently): builds the kernel test binary for wasm32-wasip1 (plain
// SIMD128 and the `relaxed` feature), runs its `bench_matmul` test in a headless Chromium page
// under a minimal WASI shim, and prints GMAC/s per weight type and activation rows (the best of
// several trials, so other load on the machine mostly costs trials, not results).
//
//   node scripts/bench-kernels-browser.mjs [--builds plain,relaxed] [--filter bench_matmul] [--no-build]

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, root } from "../tests/browser/harness.mjs";

const opt = { builds: ["plain", "relaxed"], filter: "bench_matmul", build: true };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--builds") opt.builds = args[++i].split(",");
  else if (args[i] === "--filter") opt.filter = args[++i];
  else if (args[i] === "--no-build") opt.build = false;
  else {
    console.error("usage: node scripts/bench-kernels-browser.mjs [--builds plain,relaxed] [--filter TEST] [--no-build]");
    process.exit(2);
  }
}

/** The wasip1 test binary for a build (cargo prints its path), copied into `dir`. */
function testBinary(build, dir) {
  const features = build === "relaxed" ? ["--features", "relaxed"] : [];
  const cargo = ["test", "--release", "--lib", "--target", "wasm32-wasip1", "--no-run", "--message-format=json", ...features];
  const env = { ...process.env, CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS: "-C target-feature=+simd128" };
  const out = execFileSync("cargo", cargo, { cwd: root, env, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 26 });
  const exe = out.split("\n").map((l) => { try { return JSON.parse(l); } catch { return null; } }).find((m) => m?.reason === "compiler-artifact" && m.executable)?.executable;
  if (!exe) throw new Error(`no test binary for the ${build} build`);
  fs.copyFileSync(exe, path.join(dir, `${build}.wasm`));
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-kernels-"));
if (opt.build) execFileSync("rustup", ["target", "add", "wasm32-wasip1"], { stdio: "ignore" });
for (const b of opt.builds) testBinary(b, dir);
fs.writeFileSync(path.join(dir, "run.html"), "<!doctype html><meta charset=utf-8><title>kernels</title>");

const server = await startServer({ mounts: { "/k": dir } });
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  await page.goto(server.url + "k/run.html");
  for (const b of opt.builds) {
    const text = await page.evaluate(
      async ({ url, argv }) => {
        // Just enough of wasi_snapshot_preview1 for a Rust test binary: args, clocks, stdout/stderr.
        let mem;
        let out = "";
        const view = () => new DataView(mem.buffer);
        const enc = new TextEncoder();
        const args = argv.map((a) => enc.encode(a + "\0"));
        class Exit extends Error {}
        const wasi = {
          args_sizes_get: (c, s) => (view().setUint32(c, args.length, true), view().setUint32(s, args.reduce((n, a) => n + a.length, 0), true), 0),
          args_get: (ptrs, buf) => {
            for (const a of args) {
              view().setUint32(ptrs, buf, true);
              new Uint8Array(mem.buffer, buf, a.length).set(a);
              ptrs += 4;
              buf += a.length;
            }
            return 0;
          },
          environ_sizes_get: (c, s) => (view().setUint32(c, 0, true), view().setUint32(s, 0, true), 0),
          environ_get: () => 0,
          clock_time_get: (_id, _prec, at) => (view().setBigUint64(at, BigInt(Math.round(performance.now() * 1e6)), true), 0),
          random_get: (at, n) => (crypto.getRandomValues(new Uint8Array(mem.buffer, at, n)), 0),
          fd_write: (fd, iovs, n, written) => {
            let total = 0;
            for (let i = 0; i < n; i++) {
              const p = view().getUint32(iovs + 8 * i, true);
              const len = view().getUint32(iovs + 8 * i + 4, true);
              out += new TextDecoder().decode(new Uint8Array(mem.buffer, p, len));
              total += len;
            }
            view().setUint32(written, total, true);
            return 0;
          },
          fd_fdstat_get: (_fd, at) => (new Uint8Array(mem.buffer, at, 24).fill(0), view().setUint8(at, 2), 0),
          proc_exit: (code) => {
            throw new Exit(String(code));
          },
          sched_yield: () => 0,
        };
        const imports = new Proxy(wasi, { get: (t, k) => t[k] ?? (() => 52) }); // ENOSYS for the rest
        const { instance } = await WebAssembly.instantiateStreaming(fetch(url), { wasi_snapshot_preview1: imports });
        mem = instance.exports.memory;
        try {
          instance.exports._start();
        } catch (e) {
          if (!(e instanceof Exit)) out += `\n${e}`;
        }
        return out;
      },
      { url: `/k/${b}.wasm`, argv: ["test", opt.filter, "--ignored", "--nocapture", "--test-threads=1"] },
    );
    console.log(`== ${b} (Chromium ${browser.version()})`);
    for (const l of text.split("\n")) if (/GMAC|panicked|error/i.test(l)) console.log(l.replace(/^test \S+ \.\.\. /, ""));
  }
} finally {
  await browser.close();
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
