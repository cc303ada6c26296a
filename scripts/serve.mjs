#!/usr/bin/env node
// Static server for the Hearth page: www/ at /, pkg/ at /pkg/, plus `--mount /PREFIX=DIR` extras
// (tests). Sends cross-origin isolation headers and a CSP that allows wasm but not eval.
//
//   node scripts/serve.mjs [--port N | PORT=N] [--host H] [--mount /fixtures=DIR ...] [--plain]
//   --plain: behave like a static host that sends no COOP/COEP/CSP headers (the service worker
//   then provides isolation, and index.html carries the CSP as a meta tag).
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
  else if (/^\d+$/.test(a)) port = a;
  else if (a === "-h" || a === "--help") {
    console.log("usage: node scripts/serve.mjs [--port N] [--host H] [--mount /PREFIX=DIR ...] [--plain]");
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
    res.writeHead(200, { ...HEADERS, "Content-Type": type, "Content-Length": st.size });
    if (req.method === "HEAD") return res.end();
    const stream = fs.createReadStream(file);
    stream.on("error", () => res.destroy());
    stream.pipe(res);
  }
});

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
