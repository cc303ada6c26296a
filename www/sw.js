// Hearth's service worker: makes the page an offline-capable app and gives it cross-origin
// isolation on hosts that cannot send headers.
//
// - Offline: on install it stores the app shell, the engine (every file scripts/build-wasm listed in
//   pkg/files.json), the bundled demo model and models/default.json (which names the default
//   model, when the server has one) in a versioned cache. Same-origin GETs go to the network first
//   (an online visit always gets fresh files and refreshes the cache) and fall back to the cache.
//   Other models, the default one included, are not cached here: the page loads them with
//   `cache: true`, into the model store (OPFS).
// - Isolation: every same-origin response it serves carries COOP: same-origin and COEP:
//   require-corp, so SharedArrayBuffer (and with it wasm threads) works on a static host that sends
//   no headers; such a page asks the worker to take control and reloads once (app.js).
//
// Cross-origin requests (model downloads from another host) are not touched.

const VERSION = "hearth-v1";
const SHELL = ["./", "index.html", "app.js", "style.css", "manifest.webmanifest", "icons/hearth.svg", "icons/hearth-192.png", "icons/hearth-512.png", "models/demo.gguf", "eval/sample.txt"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(VERSION);
      const files = await fetch("pkg/files.json", { cache: "no-store" }).then((r) => r.json());
      await cache.addAll([...SHELL, ...files.map((f) => `pkg/${f}`)]);
      // Only a server that could fetch the real model has it (scripts/default-model).
      await cache.add("models/default.json").catch(() => {});
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name.startsWith("hearth-") && name !== VERSION) await caches.delete(name);
    })(),
  );
});

// Pages already open are taken over only when they ask (app.js: a page that is not cross-origin
// isolated, on a host without the headers). A page the host isolates itself stays with the network
// until its next visit: in Firefox, a first visit taken over while it was loading the engine now and
// then stalled for 60 s (a fetch through the worker never answered until Firefox stopped the
// worker), and such a page gains nothing from the worker before it goes offline.
self.addEventListener("message", (event) => {
  if (event.data === "claim") event.waitUntil(self.clients.claim());
});

/** The response with the isolation headers added (a copy: responses are immutable); one that has
 * them already is handed on as it is, its body not streamed through this worker. */
function isolated(resp) {
  if (!resp || resp.type === "opaque" || resp.status === 0) return resp;
  if (resp.headers.get("Cross-Origin-Embedder-Policy") === "require-corp" && resp.headers.get("Cross-Origin-Opener-Policy") === "same-origin") return resp;
  const headers = new Headers(resp.headers);
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Embedder-Policy", "require-corp");
  headers.set("Cross-Origin-Resource-Policy", "same-origin");
  return new Response(resp.body, { status: resp.status, statusText: resp.statusText, headers });
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  // Ranged and model requests pass through unchanged but isolated (the model store resumes with Range).
  const cacheable = !req.headers.has("range") && (!url.pathname.endsWith(".gguf") || url.pathname.endsWith("/models/demo.gguf"));
  event.respondWith(
    (async () => {
      try {
        const resp = await fetch(req);
        if (cacheable && resp.ok && resp.status === 200) {
          const copy = resp.clone();
          event.waitUntil(caches.open(VERSION).then((c) => c.put(req, copy)));
        }
        return isolated(resp);
      } catch (e) {
        const hit = cacheable && (await caches.match(req, { ignoreSearch: url.pathname.endsWith("/") || url.pathname.endsWith(".html") }));
        if (hit) return isolated(hit);
        throw e;
      }
    })(),
  );
});
