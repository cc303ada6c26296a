#!/usr/bin/env node
// Static server for the Hearth page: www/ at /, pkg/ at /pkg/, plus `--mount /PREFIX=DIR` extras
// (tests). Sends cross-origin isolation headers and a CSP that allows wasm but not eval.
//
//   node scripts/serve.mjs [--port N | PORT=N] [--host H] [--mount /fixtures=DIR ...] [--plain]
//                          [--log FILE]
//   --plain: behave like a static host that sends no COOP/COEP/CSP headers (the service worker
//   then provides isolation, and index.html carries the CSP as a meta tag).
//   --log: one JSON line per request (path, range asked, status, bytes sent), for tests.
// Single byte ranges (`Range: bytes=A-B`, `bytes=A-`, `bytes=-N`) get 206 answers, as static
// hosts and CDNs give them: the model store resumes downloads and a load reads a model's header
// first with them.
//   port 0 picks a free port. Prints "Hearth is running at http://127.0.0.1:PORT/".

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const args = process.argv.slice(2);
let port = process.env.PORT ?? "8080";
let host = process.env.HOST ?? "127.0.0.1";
const mounts = [];
let plain = false;
let logFile = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => {
    if (a.includes("=") && a.startsWith("--") && !a.startsWith("--mount")) return a.slice(a.indexOf("=") + 1);
    if (a.startsWith("--mount=")) return a.slice("--mount=".length);
    return args[++i];
  };
  if (a === "--port" || a.startsWith("--port=")) port = val();
  else if (a === "--host" || a.startsWith("--host=")) host = val();
  else if (a === "--mount" || a.startsWith("--mount=")) {
    const spec = val() ?? "";
    const eq = spec.indexOf("=");
    if (eq < 1) {
      console.error(`serve.mjs: --mount wants /PREFIX=DIR, got '${spec}'`);
      process.exit(2);
    }
    mounts.push([spec.slice(0, eq).replace(/\/+$/, ""), path.resolve(spec.slice(eq + 1))]);
  } else if (a === "--plain") plain = true;
  else if (a === "--log" || a.startsWith("--log=")) logFile = val();
  else if (/^\d+$/.test(a)) port = a;
  else if (a === "-h" || a === "--help") {
    console.log("usage: node scripts/serve.mjs [--port N] [--host H] [--mount /PREFIX=DIR ...] [--plain] [--log FILE]");
    process.exit(0);
  } else {
    console.error(`serve.mjs: unknown argument '${a}'`);
    process.exit(2);
  }
}
// Longest prefix first; pkg/ and www/ last.
mounts.push(["/pkg", path.join(root, "pkg")]);
mounts.sort((a, b) => b[0].length - a[0].length);
mounts.push(["", path.join(root, "www")]);

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".map": "application/json; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".gguf": "application/octet-stream",
  ".webmanifest": "application/manifest+json",
  ".bin": "application/octet-stream",
};

const SECURITY = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Content-Security-Policy":
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self' blob: data: *; img-src 'self' data: blob:; style-src 'self'",
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-cache",
};

const HEADERS = plain ? { "Cache-Control": "no-cache" } : SECURITY;

function send(res, status, body, headers = {}) {
  res.writeHead(status, { ...HEADERS, "Content-Type": "text/plain; charset=utf-8", ...headers });
  res.end(body);
}

function resolve(urlPath) {
  for (const [prefix, dir] of mounts) {
    if (prefix === "" || urlPath === prefix || urlPath.startsWith(prefix + "/")) {
      const rel = urlPath.slice(prefix.length) || "/";
      const file = path.join(dir, path.normalize(rel));
      if (file !== dir && !file.startsWith(dir + path.sep)) return null; // escaped the mount
      return file;
    }
  }
  return null;
}

const server = http.createServer((req, res) => {
  if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "method not allowed\n", { Allow: "GET, HEAD" });
  let urlPath;
  try {
    urlPath = decodeURIComponent(new URL(req.url, "http://x").pathname);
  } catch {
    return send(res, 400, "bad request\n");
  }
  if (urlPath.includes("\0")) return send(res, 400, "bad request\n");
  let file = resolve(urlPath);
  if (!file) return send(res, 404, "not found\n");
  fs.stat(file, (err, st) => {
    if (!err && st.isDirectory()) {
      if (!urlPath.endsWith("/")) {
        res.writeHead(301, { ...HEADERS, Location: urlPath + "/" });
        return res.end();
      }
      file = path.join(file, "index.html");
      return fs.stat(file, (err2, st2) => serveFile(err2, st2));
    }
    serveFile(err, st);
  });
  function serveFile(err, st) {
    if (err || !st.isFile()) return send(res, 404, "not found\n");
    const type = MIME[path.extname(file).toLowerCase()] || "application/octet-stream";
    const range = byteRange(req.headers.range, st.size);
    if (range === "unsatisfiable") {
      log(416, 0);
      return send(res, 416, "range not satisfiable\n", { "Content-Range": `bytes */${st.size}` });
    }
    const [start, end] = range ?? [0, st.size - 1];
    const length = Math.max(0, end - start + 1);
    const headers = { ...HEADERS, "Content-Type": type, "Content-Length": length, "Accept-Ranges": "bytes" };
    if (range) headers["Content-Range"] = `bytes ${start}-${end}/${st.size}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === "HEAD" || length === 0) {
      log(range ? 206 : 200, 0);
      return res.end();
    }
    const stream = fs.createReadStream(file, { start, end });
    let sent = 0;
    stream.on("data", (d) => (sent += d.length));
    stream.on("error", () => res.destroy());
    // Logged when the body is done or the client hung up (a load that stopped reading).
    res.on("close", () => log(range ? 206 : 200, sent));
    stream.pipe(res);
  }
  function log(status, bytes) {
    if (logFile) fs.appendFileSync(logFile, JSON.stringify({ path: urlPath, range: req.headers.range ?? null, status, bytes }) + "\n");
  }
});

/** [start, end] (inclusive) of a single `bytes=` range, null for none (or one we do not serve, such
 * as several ranges: the whole file is the answer then), "unsatisfiable" past the end. */
function byteRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec((header ?? "").trim());
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start, end;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return "unsatisfiable";
  return [start, end];
}

// Node closes an idle keep-alive connection after 5 s; a browser that sends its next request on
// it just then gets a reset (Firefox: a NetworkError), which a busy machine made likely between
// a load's header read and its download. Keep idle connections as long as common servers do.
server.keepAliveTimeout = 75_000;
server.headersTimeout = 76_000;

server.on("error", (e) => {
  console.error(`serve.mjs: ${e.message}`);
  process.exit(1);
});
server.listen(Number(port), host, () => {
  const { port: p } = server.address();
  const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  console.log(`Hearth is running at http://${shown}:${p}/`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 500).unref());
