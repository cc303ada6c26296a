// Hearth's chat page: pick a GGUF model (the default model of models/default.json, the bundled
// demo, a URL, a local file or drag-and-drop), load it into the engine (a Web Worker inside the
// client library), chat with streamed replies, and measure a text's perplexity.
// Plain DOM, no framework; everything runs locally.

import { Hearth, HearthError } from "./pkg/hearth.js";

const DEMO_URL = "models/demo.gguf";
const DEMO_LABEL = "demo.gguf";
const DEMO_NAME = "Demo model (random weights)";
// Written by scripts/default-model: {url, name, sha256, bytes, license, source}. Absent when the
// real model could not be fetched; the demo model is the default then.
const DEFAULT_JSON = "models/default.json";
const SAMPLE_URL = "eval/sample.txt";
const SETTINGS_KEY = "hearth.settings.v1";
const URL_KEY = "hearth.lastUrl";
const KEEP_KEY = "hearth.keepOffline";
const SEEN_KEY = "hearth.seenIntro"; // the model panel (with the note on the demo model) starts open once
// The last conversation survives a reload: its messages here, the engine's cache of it as the
// saved session LAST_CHAT (OPFS), tied to the model file.
const CHAT_KEY = "hearth.lastChat.v1";
const LAST_CHAT = "hearth-page-last-chat";
const DEFAULTS = Object.freeze({
  systemPrompt: "You are a helpful assistant.",
  temperature: 0.7,
  topP: 0.9,
  maxTokens: 256,
  contextSize: 2048,
  backend: "auto",
});

const $ = (id) => document.getElementById(id);
const el = {
  input: $("input"),
  send: $("send"),
  stop: $("stop"),
  status: $("status"),
  composer: $("composer"),
  messages: $("messages"),
  chat: $("chat"),
  empty: $("empty"),
  error: $("error"),
  errorText: $("error-text"),
  dismissError: $("dismiss-error"),
  newChat: $("new-chat"),
  loadDefault: $("load-default"),
  defaultCaption: $("default-caption"),
  loadDemo: $("load-demo"),
  noteDefault: $("note-default"),
  defaultAbout: $("default-about"),
  noteDemo: $("note-demo"),
  noteNoDefault: $("note-no-default"),
  urlForm: $("url-form"),
  urlInput: $("url-input"),
  keepOffline: $("keep-offline"),
  storedRow: $("stored-row"),
  storedList: $("stored-list"),
  urlLoad: $("url-load"),
  fileInput: $("file-input"),
  modelPanel: $("model-panel"),
  modelSummary: $("model-summary"),
  loadStatus: $("load-status"),
  loadLabel: $("load-label"),
  loadBytes: $("load-bytes"),
  progress: $("progress"),
  cancelLoad: $("cancel-load"),
  settings: $("settings"),
  resetSettings: $("reset-settings"),
  applyContext: $("apply-context"),
  dropOverlay: $("drop-overlay"),
  evalForm: $("eval-form"),
  evalText: $("eval-text"),
  evalSample: $("eval-sample"),
  evalContext: $("eval-context"),
  evalRun: $("eval-run"),
  evalCancel: $("eval-cancel"),
  evalStatus: $("eval-status"),
  evalProgress: $("eval-progress"),
  evalProgressLabel: $("eval-progress-label"),
  evalResult: $("eval-result"),
};

/** @type {Hearth | null} */
let llm = null;
let model = null; // {label, name, bytes, info, source, contextSize}
/** The real default model (models/default.json), or null: the demo model is the default. */
let defaultModel = null;
let loadCtl = null; // AbortController of the load in progress
let genCtl = null; // AbortController of the reply in progress
let evalCtl = null; // AbortController of the perplexity run in progress
/** @type {{role: string, content: string}[]} */
let history = [];
/** Counts New chat presses: a save of the last conversation that ends after one keeps nothing. */
let chatEpoch = 0;
let shownDropped = 0; // how many old messages the last notice said the model no longer sees
let settings = readSettings();
const coarse = window.matchMedia("(pointer: coarse)").matches;

// ---- formatting -----------------------------------------------------------------------------

function mb(bytes) {
  if (!Number.isFinite(bytes) || bytes <= 0) return "0 MB";
  const v = bytes / 1e6;
  return `${v < 10 ? v.toFixed(1) : v < 1000 ? v.toFixed(0) : v.toLocaleString("en-US", { maximumFractionDigits: 0 })} MB`;
}

function sizeLabel(bytes) {
  if (!bytes) return "";
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : mb(bytes);
}

function fileNameOf(url) {
  try {
    const u = new URL(url, location.href);
    const last = decodeURIComponent(u.pathname.split("/").filter(Boolean).pop() || u.hostname);
    return last || url;
  } catch {
    return url;
  }
}

/** An error in words, with the engine's code in brackets. */
function describeError(e, context = "load") {
  const code = e instanceof HearthError || (e && typeof e.code === "string") ? e.code : "error";
  const detail = e && e.message ? String(e.message) : String(e);
  const words = {
    bad_magic: "This file is not a GGUF model",
    truncated: "The model file is incomplete — the download may have been cut short",
    unsupported_tensor_type: "This model uses a tensor type Hearth cannot run yet (try a Q4_K_M, Q4_0, Q8_0 or F16 GGUF)",
    unsupported_architecture: "This model's architecture is not supported (Hearth runs Llama-family GGUF models)",
    unsupported_version: "This GGUF version is not supported",
    corrupt: "The model file is damaged or not a valid GGUF model",
    network: "The model could not be downloaded — check the URL, your connection, and that the server allows cross-origin requests (CORS)",
    context_overflow: "The conversation no longer fits in the model's context. Start a new chat, or raise the context size in Settings and reload the model",
    out_of_memory: "The browser ran out of memory for this model. Try a smaller model or a smaller context size",
    worker: context === "load" ? "The engine could not load this model" : "The engine stopped unexpectedly",
    invalid_argument: "Hearth could not use that input",
    quota_exceeded: "There is not enough storage for this model in this browser",
    checksum_mismatch: "The downloaded file is not the expected one",
    storage_unavailable: "This browser cannot keep models (private windows often cannot) — untick “Keep models” to load without storing",
  }[code];
  const head = words || { load: "The model could not be loaded", eval: "The measurement failed" }[context] || "The reply failed";
  const tail = detail && detail !== code && !head.includes(detail) ? `: ${detail}` : "";
  return `${head} (${code})${tail}.`.replace(/\.\.$/, ".");
}

// ---- settings -------------------------------------------------------------------------------

function readSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}") || {};
  } catch {
    saved = {};
  }
  return sanitize({ ...DEFAULTS, ...saved });
}

function sanitize(s) {
  const num = (v, lo, hi, dflt, int = false) => {
    let n = Number(v);
    if (v === "" || v === null || !Number.isFinite(n)) return dflt;
    if (int) n = Math.round(n);
    return Math.min(hi, Math.max(lo, n));
  };
  return {
    systemPrompt: typeof s.systemPrompt === "string" ? s.systemPrompt : DEFAULTS.systemPrompt,
    temperature: num(s.temperature, 0, 2, DEFAULTS.temperature),
    topP: num(s.topP, 0, 1, DEFAULTS.topP),
    maxTokens: num(s.maxTokens, 1, 8192, DEFAULTS.maxTokens, true),
    contextSize: num(s.contextSize, 128, 32768, DEFAULTS.contextSize, true),
    backend: ["auto", "cpu", "webgpu"].includes(s.backend) ? s.backend : DEFAULTS.backend,
  };
}

function fillSettingsForm() {
  const f = el.settings.elements;
  f.systemPrompt.value = settings.systemPrompt;
  f.temperature.value = settings.temperature;
  f.topP.value = settings.topP;
  f.maxTokens.value = settings.maxTokens;
  f.contextSize.value = settings.contextSize;
  f.backend.value = settings.backend;
}

/** Offer a reload when the context size differs from the one the current model was loaded with. */
function updateApplyContext() {
  el.applyContext.hidden = !model || model.contextSize === settings.contextSize;
}

function saveSettingsFromForm() {
  const f = el.settings.elements;
  settings = sanitize({
    systemPrompt: f.systemPrompt.value,
    temperature: f.temperature.value,
    topP: f.topP.value,
    maxTokens: f.maxTokens.value,
    contextSize: f.contextSize.value,
    backend: f.backend.value,
  });
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  } catch {
    /* private mode: settings last for this visit */
  }
  updateApplyContext();
}

// ---- state ----------------------------------------------------------------------------------

function setState(state, statusText) {
  document.body.dataset.state = state;
  if (statusText !== undefined && el.status.textContent !== statusText) el.status.textContent = statusText;
  const loading = state === "loading";
  const generating = state === "generating";
  const evaluating = state === "evaluating";
  const canChat = !!llm && !loading && !evaluating;
  el.input.disabled = !canChat;
  el.send.disabled = !canChat || generating;
  el.send.hidden = generating;
  el.stop.hidden = !generating;
  el.input.placeholder = loading ? "Loading the model…" : evaluating ? "Measuring perplexity (Cancel in Evaluate)…" : llm ? "Type a message…" : "Load a model to start chatting";
  for (const b of [el.loadDefault, el.loadDemo, el.urlLoad]) b.disabled = loading;
  el.fileInput.disabled = loading;
  el.evalRun.hidden = evaluating;
  el.evalRun.disabled = !llm || loading || generating;
  el.evalCancel.hidden = !evaluating;
  if (document.activeElement === el.stop && !generating && canChat) el.input.focus();
}

function readyText() {
  if (!model) return "No model loaded.";
  return `Ready · ${model.name}${model.bytes ? ` · ${sizeLabel(model.bytes)}` : ""}`;
}

function showError(text) {
  el.errorText.textContent = text;
  el.error.hidden = false;
}

function clearError() {
  el.error.hidden = true;
  el.errorText.textContent = "";
}

// ---- loading --------------------------------------------------------------------------------

function showProgress(p, label) {
  el.loadStatus.hidden = false;
  if (p.phase === "inspect") {
    // The header is in and the model fits: say what it will take before the download.
    const need = settings.backend === "webgpu" ? p.plan.webgpu : p.plan.cpu;
    el.loadLabel.textContent = `Loading ${label}`;
    el.loadBytes.textContent = `needs ${mb(need.total)} of memory (weights ${mb(need.weights)}, KV cache ${mb(need.kvCache)} for ${p.plan.contextSize} positions)`;
    return;
  }
  const verb = p.phase === "download" ? "Downloading" : "Loading";
  el.loadLabel.textContent = `${verb} ${label}`;
  if (p.total > 0) {
    const pct = Math.min(100, Math.floor((p.loaded / p.total) * 100));
    el.progress.max = 100;
    el.progress.value = pct;
    el.progress.setAttribute("aria-valuetext", `${pct}%`);
    el.loadBytes.textContent = `${mb(p.loaded)} / ${mb(p.total)} · ${pct}%`;
    // The status line is a live region: announce in 10% steps, not on every chunk.
    setState("loading", `${verb} ${label}: ${Math.floor(pct / 10) * 10}%`);
  } else {
    el.progress.removeAttribute("value"); // indeterminate
    el.loadBytes.textContent = mb(p.loaded);
    setState("loading", `${verb} ${label}: ${Math.floor(p.loaded / 1e7) * 10} MB`);
  }
}

/** A reason ("this browser's WebGPU adapter ...") as a sentence: its first letter capitalised. */
function sentence(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * Load a model; the current one stays usable until the new one is in, so a failed load leaves
 * the page as it was.
 */
async function loadModel(source, label, knownBytes = 0) {
  const isDemo = source === DEMO_URL;
  // Also when loaded from the list of stored models, by its absolute URL.
  const isDefault = !!defaultModel && typeof source === "string" && new URL(source, location.href).href === new URL(defaultModel.url, location.href).href;
  loadCtl?.abort();
  genCtl?.abort();
  evalCtl?.abort();
  const ctl = new AbortController();
  loadCtl = ctl;
  clearError();
  let bytes = knownBytes;
  el.progress.value = 0;
  el.loadBytes.textContent = knownBytes ? `0 MB / ${mb(knownBytes)} · 0%` : "";
  el.loadLabel.textContent = `Loading ${label}`;
  el.loadStatus.hidden = false;
  setState("loading", `Loading ${label}…`);
  const started = performance.now();
  try {
    const next = await Hearth.load(source, {
      contextSize: settings.contextSize,
      backend: settings.backend,
      // URL models go to the model store (the demo is kept by the service worker); the default
      // model always does, checked against its sha256, so the page works offline after one visit.
      cache: !isDemo && typeof source === "string" && (isDefault || el.keepOffline.checked) && Hearth.models.available,
      sha256: isDefault ? defaultModel.sha256 : undefined,
      signal: ctl.signal,
      onProgress: (p) => {
        if (loadCtl !== ctl) return;
        if (p.total > 0) bytes = p.total;
        showProgress(p, label);
      },
    });
    if (loadCtl !== ctl) {
      next.unload();
      return;
    }
    const old = llm;
    llm = next;
    const info = next.info;
    const name = isDemo ? DEMO_NAME : info.displayName || label;
    model = { label, name, bytes, info, source, contextSize: settings.contextSize };
    updateApplyContext();
    old?.unload().catch(() => {});
    el.modelSummary.textContent = `${name}${info.quant ? ` ${info.quant}` : ""}${bytes ? ` · ${sizeLabel(bytes)}` : ""}`;
    el.modelSummary.title = `${label} (general.name: ${info.name}) — ${info.nLayer} layers, ${info.nEmbd} wide, vocabulary ${info.nVocab}, context ${info.contextSize ?? settings.contextSize} of ${info.contextLength}`;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const threads = `${info.threads} thread${info.threads === 1 ? "" : "s"}`;
    const where =
      info.backend === "webgpu"
        ? `, on WebGPU (${info.gpu?.name || "GPU"}).`
        : info.backendFallback
          ? `. ${sentence(info.backendFallback)} — running on the CPU, ${threads}.`
          : `, on the CPU (${threads}).`;
    const demoNote = defaultModel ? " — load the default model above for real answers." : ". This server has no real default model: scripts/serve fetches SmolLM2 135M Instruct when it has network access; or load a real GGUF above.";
    addNotice(
      `Loaded ${isDemo ? "the bundled demo model" : name}${bytes ? ` (${sizeLabel(bytes)})` : ""} in ${secs} s${where}` +
        (isDemo ? ` Its weights are random, so it writes gibberish${demoNote}` : ""),
    );
    setState("ready", readyText());
    if (history.length === 0) await restoreLastChat(next);
    refreshStored();
    if (!coarse) el.input.focus(); // no surprise on-screen keyboard on phones
    try {
      localStorage.setItem(SEEN_KEY, "1");
    } catch {
      /* ignore */
    }
  } catch (e) {
    if (loadCtl !== ctl) return;
    const aborted = (e && e.code === "aborted") || ctl.signal.aborted;
    if (!aborted) showError(describeError(e, "load"));
    if (!llm) el.modelSummary.textContent = "none loaded";
    setState(llm ? "ready" : "error", aborted ? (llm ? `Loading cancelled. ${readyText()}` : "Loading cancelled.") : llm ? `Could not load ${label}. Still using ${model.name}.` : `Could not load ${label}.`);
  } finally {
    if (loadCtl === ctl) {
      loadCtl = null;
      el.loadStatus.hidden = true;
    }
  }
}

/** Keep the conversation for the next visit (best effort: a model without a known SHA-256, or no storage, keeps nothing). */
async function saveLastChat() {
  const keep = history.slice();
  const epoch = chatEpoch;
  try {
    await llm.saveSession(LAST_CHAT);
    // New chat was pressed meanwhile: it deletes the session once this save is done.
    if (epoch !== chatEpoch) return;
    localStorage.setItem(CHAT_KEY, JSON.stringify({ systemPrompt: settings.systemPrompt, history: keep }));
  } catch {
    /* not kept */
  }
}

/** The last visit's conversation with this model, shown again with its cache back in the engine. */
async function restoreLastChat(m) {
  let last;
  try {
    last = JSON.parse(localStorage.getItem(CHAT_KEY));
  } catch {
    return;
  }
  if (!last?.history?.length || last.systemPrompt !== settings.systemPrompt) return;
  try {
    const r = await m.restoreSession(LAST_CHAT);
    if (llm !== m || history.length > 0) return;
    history = last.history;
    for (const msg of history) addMessage(msg.role, msg.content).li.removeAttribute("aria-busy");
    addNotice(`Your last conversation is back (${r.tokens} tokens of it cached, restored in ${Math.round(r.ms)} ms): it goes on from here. New chat starts afresh.`);
  } catch {
    /* another model, context size or cache type: its conversation waits for it */
  }
}

function loadFile(file) {
  if (!file) return;
  loadModel(file, file.name, file.size);
}

// ---- messages -------------------------------------------------------------------------------

function nearBottom() {
  const s = document.scrollingElement;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

function scrollToEnd(force = false) {
  if (force || nearBottom()) {
    const s = document.scrollingElement;
    s.scrollTop = s.scrollHeight;
  }
}

function updateEmpty() {
  el.empty.hidden = el.messages.children.length > 0;
}

function addNotice(text, before = null) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  el.messages.insertBefore(li, before);
  updateEmpty();
  scrollToEnd();
}

function addMessage(role, text) {
  const li = document.createElement("li");
  li.className = `msg ${role}`;
  const who = document.createElement("p");
  who.className = "who";
  who.textContent = role === "user" ? "You" : model?.name || "Assistant";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  if (role === "assistant") {
    body.dataset.testid = "reply";
    li.setAttribute("aria-busy", "true");
  } else {
    body.dataset.testid = "user-message";
  }
  el.messages.append(li);
  updateEmpty();
  return { li, body };
}

/** "12.3 tokens/s · first token 85 ms · 64 tokens · prompt 210" from a finished completion. */
function statsLine(done) {
  if (done.failed) return "No reply: see the error message below.";
  const parts = [];
  const t = done.timing || {};
  const u = done.usage || {};
  if (Number.isFinite(t.tokens_per_second)) parts.push(`${t.tokens_per_second.toFixed(1)} tokens/s`);
  if (Number.isFinite(t.ttft_ms)) parts.push(`first token ${Math.round(t.ttft_ms)} ms`);
  if (Number.isFinite(u.completion_tokens)) parts.push(`${u.completion_tokens} tokens`);
  // A stopped reply has no usage report: count what streamed.
  else if (done.pieces > 0) parts.push(`${done.pieces} tokens`);
  if (Number.isFinite(u.prompt_tokens)) parts.push(`prompt ${u.prompt_tokens}`);
  const cached = u.prompt_tokens_details?.cached_tokens;
  if (cached > 0) parts.push(`${cached} cached`);
  const why = { length: "stopped at max tokens", abort: "stopped" }[done.finishReason];
  if (why) parts.push(why);
  return parts.join(" · ");
}

async function send() {
  const text = el.input.value.trim();
  if (!text || !llm || genCtl || loadCtl || evalCtl) return;
  clearError();
  el.input.value = "";
  autoGrow();
  history.push({ role: "user", content: text });
  const asked = addMessage("user", text);
  const { li, body } = addMessage("assistant", "");
  body.classList.add("streaming");
  scrollToEnd(true);

  const ctl = new AbortController();
  genCtl = ctl;
  setState("generating", `${model.name} is writing…`);
  let reply = "";
  const done = { finishReason: null, usage: null, timing: null, failed: false, pieces: 0 };
  try {
    const messages = [];
    if (settings.systemPrompt.trim()) messages.push({ role: "system", content: settings.systemPrompt.trim() });
    messages.push(...history);
    // OpenAI's request shape; when the conversation outgrows the context the engine leaves out
    // the oldest turns after the system prompt ("shift") and says how many.
    const stream = await llm.chat.completions.create({
      messages,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: settings.maxTokens,
      temperature: settings.temperature,
      top_p: settings.topP,
      context_policy: "shift",
      signal: ctl.signal,
    });
    for await (const chunk of stream) {
      if (chunk.usage) done.usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      if (choice.finish_reason) {
        done.finishReason = choice.finish_reason;
        done.timing = chunk.hearth?.timing;
        const dropped = chunk.hearth?.dropped_messages || 0;
        if (dropped > shownDropped) {
          shownDropped = dropped;
          addNotice(`Older messages no longer fit in the context, so the model no longer sees the first ${dropped}.`, asked.li);
        }
      }
      const piece = choice.delta?.content;
      if (piece) {
        done.pieces++;
        const stick = nearBottom();
        reply += piece;
        body.textContent = reply.trimStart();
        if (stick) scrollToEnd(true);
      }
    }
  } catch (e) {
    done.finishReason = "abort";
    if (!(e && e.code === "aborted")) {
      showError(describeError(e, "chat"));
      li.classList.add("failed");
      done.failed = true;
    }
  } finally {
    body.classList.remove("streaming");
    li.removeAttribute("aria-busy");
    if (genCtl === ctl) genCtl = null;
  }

  reply = reply.trim();
  body.textContent = reply;
  if (!reply) {
    body.textContent = done.finishReason === "abort" ? "(stopped before any text)" : "(no text)";
    body.classList.add("muted");
  }
  if (reply) {
    history.push({ role: "assistant", content: reply });
    saveLastChat();
  }
  else {
    // Keep user/assistant turns paired: the unanswered question leaves the conversation.
    history.pop();
    asked.li.classList.add("unanswered");
    asked.li.title = "No reply: this message is not part of the conversation the model sees";
  }
  const stats = document.createElement("p");
  stats.className = "stats";
  stats.dataset.testid = "stats";
  stats.textContent = statsLine(done);
  li.append(stats);
  scrollToEnd();
  if (!loadCtl) setState(llm ? "ready" : "error", readyText());
}

function stop() {
  genCtl?.abort();
}

function newChat() {
  genCtl?.abort();
  history = [];
  chatEpoch++;
  try {
    localStorage.removeItem(CHAT_KEY);
  } catch {
    /* ignore */
  }
  llm?.deleteSession(LAST_CHAT).catch(() => {});
  shownDropped = 0;
  el.messages.replaceChildren();
  updateEmpty();
  clearError();
  if (!loadCtl && !evalCtl && llm) setState("ready", readyText());
  el.input.focus();
}

function autoGrow() {
  el.input.style.height = "auto";
  el.input.style.height = `${Math.min(el.input.scrollHeight, Math.round(window.innerHeight * 0.4))}px`;
}

// ---- wiring ---------------------------------------------------------------------------------

el.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
el.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    send();
  }
});
el.input.addEventListener("input", autoGrow);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && genCtl) {
    e.preventDefault();
    stop();
  }
});
el.stop.addEventListener("click", stop);
el.newChat.addEventListener("click", newChat);
el.dismissError.addEventListener("click", () => {
  clearError();
  el.input.focus();
});
el.cancelLoad.addEventListener("click", () => loadCtl?.abort());

el.loadDefault.addEventListener("click", loadDefault);
el.loadDemo.addEventListener("click", () => loadModel(DEMO_URL, DEMO_LABEL));
el.urlForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const url = el.urlInput.value.trim();
  if (!url) {
    showError("Enter the URL of a .gguf file first.");
    el.urlInput.focus();
    return;
  }
  try {
    new URL(url, location.href);
  } catch {
    showError(`That does not look like a URL: ${url}`);
    return;
  }
  try {
    localStorage.setItem(URL_KEY, url);
  } catch {
    /* ignore */
  }
  loadModel(url, fileNameOf(url));
});
el.fileInput.addEventListener("change", () => {
  const file = el.fileInput.files && el.fileInput.files[0];
  loadFile(file);
  el.fileInput.value = ""; // choosing the same file again still loads it
});

el.settings.addEventListener("input", saveSettingsFromForm);
el.settings.addEventListener("change", () => {
  saveSettingsFromForm();
  fillSettingsForm(); // show the clamped values
});
el.settings.addEventListener("submit", (e) => e.preventDefault());
el.resetSettings.addEventListener("click", () => {
  settings = { ...DEFAULTS };
  try {
    localStorage.removeItem(SETTINGS_KEY);
  } catch {
    /* ignore */
  }
  fillSettingsForm();
  updateApplyContext();
});
el.applyContext.addEventListener("click", () => {
  if (model) loadModel(model.source, model.label, model.source instanceof Blob ? model.source.size : 0);
});

// Drag and drop a .gguf anywhere on the page.
let dragDepth = 0;
const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
document.addEventListener("dragenter", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth++;
  el.dropOverlay.hidden = false;
});
document.addEventListener("dragover", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "copy";
});
document.addEventListener("dragleave", (e) => {
  if (!hasFiles(e)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) el.dropOverlay.hidden = true;
});
document.addEventListener("drop", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  el.dropOverlay.hidden = true;
  const file = e.dataTransfer.files && e.dataTransfer.files[0];
  if (file) loadFile(file);
});

// ---- default model ----------------------------------------------------------------------------

/** models/default.json, or null when the server has none (or sends something else). */
async function readDefaultModel() {
  try {
    const r = await fetch(DEFAULT_JSON);
    if (!r.ok) return null;
    const d = await r.json();
    return d && typeof d.url === "string" && d.url ? d : null;
  } catch {
    return null;
  }
}

/** The model picker's default button and notes for the real default model, or for the demo. */
function showDefaultModel() {
  const d = defaultModel;
  el.noteDefault.hidden = !d;
  el.noteDemo.hidden = !!d;
  el.noteNoDefault.hidden = !!d;
  el.loadDemo.hidden = !d;
  if (d) {
    el.defaultCaption.textContent = [d.name, sizeLabel(d.bytes), d.license].filter(Boolean).join(" · ");
    el.defaultAbout.textContent = `${d.name} (${[d.license, d.source].filter(Boolean).join(", ")})`;
  }
}

function loadDefault() {
  if (defaultModel) loadModel(defaultModel.url, defaultModel.name || fileNameOf(defaultModel.url), defaultModel.bytes || 0);
  else loadModel(DEMO_URL, DEMO_LABEL);
}

// ---- evaluate: perplexity ---------------------------------------------------------------------

const count = (n) => n.toLocaleString("en-US");

function showEvalResult(text, failed = false) {
  el.evalResult.textContent = text;
  el.evalResult.classList.toggle("failed", failed);
}

async function useSample() {
  el.evalSample.disabled = true;
  try {
    const r = await fetch(SAMPLE_URL);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    el.evalText.value = await r.text();
    showEvalResult("");
  } catch (e) {
    showEvalResult(`The sample text could not be fetched (${e.message}).`, true);
  } finally {
    el.evalSample.disabled = false;
  }
}

/** Measure the perplexity of the text in the Evaluate panel with the loaded model. */
async function evaluate() {
  if (!llm || loadCtl || genCtl || evalCtl) return;
  const text = el.evalText.value;
  if (!text.trim()) {
    showEvalResult("Paste a text first, or use the sample text.", true);
    el.evalText.focus();
    return;
  }
  const ctl = new AbortController();
  evalCtl = ctl;
  const name = model.name;
  showEvalResult("");
  el.evalProgress.value = 0;
  el.evalProgress.setAttribute("aria-valuetext", "0%");
  el.evalProgressLabel.textContent = "Starting…";
  el.evalStatus.hidden = false;
  setState("evaluating", `Measuring perplexity with ${name}…`);
  el.evalCancel.focus();
  try {
    const r = await llm.perplexity(text, {
      contextSize: Number(el.evalContext.value),
      signal: ctl.signal,
      onProgress: (p) => {
        const pct = Math.floor((p.evaluated / p.total) * 100);
        el.evalProgress.value = pct;
        el.evalProgress.setAttribute("aria-valuetext", `${pct}%`);
        el.evalProgressLabel.textContent = `Chunk ${p.chunksDone} of ${p.chunks} · ${count(p.evaluated)} of ${count(p.total)} tokens` + (p.perplexity == null ? "" : ` · so far ${p.perplexity.toFixed(2)}`);
      },
    });
    showEvalResult(
      `Perplexity ${r.perplexity.toFixed(3)} ± ${r.uncertainty.toFixed(3)} · ${count(r.tokens)} tokens, ${r.chunks} chunks of ${r.contextSize} (${count(r.scored)} scored) · ${r.tokensPerSecond.toFixed(1)} tokens/s, ${r.seconds.toFixed(1)} s · ${name}`,
    );
  } catch (e) {
    if (e && e.code === "aborted") showEvalResult("Cancelled.");
    else showEvalResult(describeError(e, "eval"), true);
  } finally {
    if (evalCtl === ctl) evalCtl = null;
    el.evalStatus.hidden = true;
    if (!loadCtl) setState(llm ? "ready" : "error", readyText());
    if (document.activeElement === el.evalCancel || document.activeElement === document.body) el.evalRun.focus();
  }
}

el.evalSample.addEventListener("click", useSample);
el.evalForm.addEventListener("submit", (e) => {
  e.preventDefault();
  evaluate();
});
el.evalCancel.addEventListener("click", () => evalCtl?.abort());

// ---- stored models ----------------------------------------------------------------------------

/** List the models kept in the model store, each with Load and Delete. */
async function refreshStored() {
  if (!Hearth.models.available) return;
  let models = [];
  try {
    models = await Hearth.models.list();
  } catch {
    return;
  }
  const items = models.map((m) => {
    const name = decodeURIComponent(new URL(m.url).pathname.split("/").pop() || m.url);
    const li = document.createElement("li");
    const text = document.createElement("span");
    text.className = "stored-name";
    text.textContent = name;
    text.title = m.url;
    const meta = document.createElement("span");
    meta.className = "muted small";
    meta.textContent = m.complete ? `${sizeLabel(m.size)} · ${new Date(m.storedAt).toLocaleDateString()}` : `partial: ${sizeLabel(m.size)}, resumes on the next load`;
    const load = document.createElement("button");
    load.type = "button";
    load.className = "btn secondary small-btn";
    load.textContent = m.complete ? "Load" : "Resume";
    load.addEventListener("click", () => loadModel(m.url, name));
    const del = document.createElement("button");
    del.type = "button";
    del.className = "btn secondary small-btn";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ${name}`);
    del.addEventListener("click", async () => {
      await Hearth.models.delete(m.url).catch(() => {});
      refreshStored();
    });
    li.append(text, meta, load, del);
    return li;
  });
  el.storedList.replaceChildren(...items);
  el.storedRow.hidden = items.length === 0;
}

// ---- start ----------------------------------------------------------------------------------

try {
  el.keepOffline.checked = localStorage.getItem(KEEP_KEY) !== "0";
} catch {
  /* ignore */
}
el.keepOffline.disabled = !Hearth.models.available;
el.keepOffline.addEventListener("change", () => {
  try {
    localStorage.setItem(KEEP_KEY, el.keepOffline.checked ? "1" : "0");
  } catch {
    /* ignore */
  }
});
refreshStored();

try {
  el.urlInput.value = localStorage.getItem(URL_KEY) || "";
} catch {
  /* ignore */
}
fillSettingsForm();
updateEmpty();
try {
  if (localStorage.getItem(SEEN_KEY)) el.modelPanel.open = false;
} catch {
  /* ignore */
}
window.hearthPage = { get llm() { return llm; }, get history() { return history; }, loadModel };
registerServiceWorker();
defaultModel = await readDefaultModel();
showDefaultModel();
loadDefault();

/**
 * The service worker (sw.js) keeps the app and the engine for offline use and adds cross-origin
 * isolation headers on hosts that send none; a page that is not isolated asks it to take control,
 * and one reload then makes the page isolated (wasm threads need it).
 */
function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("sw.js").catch((e) => console.warn(`offline support is off: ${e.message}`));
  if (self.crossOriginIsolated) return;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    try {
      if (sessionStorage.getItem("hearth.isolationReload")) return;
      sessionStorage.setItem("hearth.isolationReload", "1");
    } catch {
      return;
    }
    location.reload();
  });
  // The worker takes over only the pages that ask (sw.js): this one needs its headers.
  navigator.serviceWorker.ready.then((reg) => reg.active?.postMessage("claim")).catch(() => {});
}
