// <hearth-chat>: an embeddable chat with a Llama model running in the visitor's browser.
//
//   <script type="module" src="https://your.site/pkg/hearth-widget.js"></script>
//   <hearth-chat model="https://your.site/models/model.gguf" title="Ask me" system-prompt="Be brief."></hearth-chat>
//
// Attributes: model (GGUF URL, required), title, system-prompt, theme ("auto" | "light" | "dark"),
// mode ("launcher": a floating button that opens the chat, the default; "inline": in the flow),
// max-tokens, temperature, placeholder. The model loads on first open (launcher) or at once
// (inline), in a Web Worker, and is kept in the model store for the next visit; the header then
// shows its name (`info.displayName`). Everything lives in
// a shadow root whose styles reset inherited ones, so the host page's CSS cannot reach in; styles
// are a constructed stylesheet, which a strict CSP (no 'unsafe-inline') allows.

import { Hearth } from "./hearth.js";

const CSS = `
:host { all: initial; display: block; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--text);
  --bg: #faf7f2; --surface: #ffffff; --text: #1f1b16; --muted: #6b6258; --border: #e2d9cc; --accent: #c2410c;
  --accent-text: #ffffff; --user-bg: #fde7d6; --error: #8a1c1c; }
:host([theme="dark"]) { --bg: #171411; --surface: #211d19; --text: #f1ebe3; --muted: #a89d90; --border: #3a332c;
  --accent: #f97316; --accent-text: #1b0d03; --user-bg: #4a2a14; --error: #fca5a5; }
@media (prefers-color-scheme: dark) {
  :host(:not([theme="light"])) { --bg: #171411; --surface: #211d19; --text: #f1ebe3; --muted: #a89d90; --border: #3a332c;
    --accent: #f97316; --accent-text: #1b0d03; --user-bg: #4a2a14; --error: #fca5a5; }
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
/* The host element can be hit by the page's !important rules, and its children would inherit them:
   the widget's own roots set every inherited property they rely on. */
.launcher, .panel { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--text); letter-spacing: normal;
  text-transform: none; text-align: left; text-indent: 0; word-spacing: normal; white-space: normal; visibility: visible;
  direction: ltr; cursor: auto; }
.launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 56px; height: 56px; border-radius: 50%;
  border: 0; background: var(--accent); color: var(--accent-text); font: 600 22px/1 system-ui, sans-serif; cursor: pointer;
  box-shadow: 0 4px 16px rgb(0 0 0 / 25%); }
.panel { display: flex; flex-direction: column; background: var(--bg); border: 1px solid var(--border); border-radius: 14px;
  overflow: hidden; width: 100%; height: 480px; }
:host([mode="launcher"]) .panel, :host(:not([mode])) .panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000;
  width: min(380px, calc(100vw - 24px)); height: min(560px, calc(100vh - 120px)); box-shadow: 0 8px 32px rgb(0 0 0 / 25%); }
.panel[hidden], .launcher[hidden] { display: none; }
header { display: flex; align-items: center; gap: 8px; padding: 10px 12px; background: var(--surface); border-bottom: 1px solid var(--border); }
header h2 { flex: 1; margin: 0; font-size: 15px; font-weight: 650; }
header .status { color: var(--muted); font-size: 12px; }
button { font: inherit; cursor: pointer; border-radius: 8px; border: 1px solid var(--border); background: var(--surface); color: var(--text); padding: 6px 12px; }
button.primary { background: var(--accent); color: var(--accent-text); border-color: var(--accent); font-weight: 600; }
button:focus-visible, textarea:focus-visible { outline: 2px solid #2563eb; outline-offset: 2px; }
.close { padding: 2px 8px; }
ol { list-style: none; margin: 0; padding: 12px; flex: 1; overflow-y: auto; display: flex; flex-direction: column; gap: 8px; }
li { max-width: 85%; padding: 8px 11px; border-radius: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
li.user { align-self: flex-end; background: var(--user-bg); }
li.assistant { align-self: flex-start; background: var(--surface); border: 1px solid var(--border); }
li.note { align-self: center; max-width: 100%; color: var(--muted); font-size: 12px; padding: 2px; }
li.error { align-self: stretch; max-width: 100%; color: var(--error); border: 1px solid currentColor; }
li.notice { align-self: stretch; max-width: 100%; font-style: italic; border: 1px dashed currentColor; }
progress { width: 100%; height: 4px; display: block; accent-color: var(--accent); }
progress[hidden] { display: none; }
form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid var(--border); background: var(--surface); margin: 0; }
textarea { flex: 1; resize: none; font: inherit; color: var(--text); background: var(--bg); border: 1px solid var(--border);
  border-radius: 8px; padding: 7px 9px; min-height: 38px; max-height: 120px; }
`;

let sheet = null;
function styles() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && k !== "part") e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

export class HearthChat extends HTMLElement {
  static observedAttributes = ["title", "placeholder", "model", "guard-model"];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [styles()];
    this.llm = null;
    this.loading = null;
    this.history = [];
    this.busy = null;
    this.els = {
      launcher: h("button", { className: "launcher", type: "button", part: "launcher", "aria-label": "Open chat", onclick: () => this.open() }, "✦"),
      title: h("h2"),
      status: h("span", { className: "status", role: "status" }),
      close: h("button", { className: "close", type: "button", "aria-label": "Close chat", onclick: () => this.close() }, "×"),
      progress: h("progress", { max: 1, value: 0, hidden: true }),
      list: h("ol", { "aria-live": "polite" }),
      input: h("textarea", { rows: 1, "aria-label": "Message" }),
      send: h("button", { className: "primary", type: "submit" }, "Send"),
    };
    const e = this.els;
    e.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        this.submit();
      }
    });
    e.form = h("form", { onsubmit: (ev) => (ev.preventDefault(), this.submit()) }, e.input, e.send);
    e.panel = h("section", { className: "panel", part: "panel", role: "dialog", "aria-label": "Chat" }, h("header", {}, e.title, e.status, e.close), e.progress, e.list, e.form);
    root.append(e.launcher, e.panel);
    this.render();
  }

  get inline() {
    return this.getAttribute("mode") === "inline";
  }

  connectedCallback() {
    if (!this.inline) this.els.panel.hidden = true;
    this.render();
    if (this.inline) this.ensureModel();
  }

  disconnectedCallback() {
    this.busy?.abort();
    this.llm?.unload();
    this.llm = null;
    this.loading = null;
  }

  attributeChangedCallback(name) {
    if ((name === "model" || name === "guard-model") && this.llm) {
      // A new model: drop the old one; it loads on next use.
      this.llm.unload();
      this.llm = null;
      this.loading = null;
    }
    this.render();
  }

  render() {
    const e = this.els;
    e.title.textContent = this.getAttribute("title") || "Chat";
    e.input.placeholder = this.getAttribute("placeholder") || "Type a message…";
    e.launcher.hidden = this.inline || !e.panel.hidden;
    e.close.hidden = this.inline;
  }

  open() {
    this.els.panel.hidden = false;
    this.render();
    this.els.input.focus();
    this.ensureModel();
  }

  close() {
    this.els.panel.hidden = true;
    this.render();
    this.els.launcher.focus();
  }

  note(text, cls = "note") {
    const li = h("li", { className: cls }, text);
    this.els.list.append(li);
    li.scrollIntoView({ block: "end" });
    return li;
  }

  ensureModel() {
    if (this.loading) return this.loading;
    const url = this.getAttribute("model");
    const e = this.els;
    if (!url) {
      this.note("No model: set the model attribute to a GGUF URL.", "error");
      return Promise.resolve(null);
    }
    e.status.textContent = "loading…";
    e.progress.hidden = false;
    const cache = Hearth.models.available;
    // guard-model: a Llama Guard GGUF that checks each message and each reply (a second engine).
    const guard = this.getAttribute("guard-model");
    this.loading = Hearth.load(new URL(url, document.baseURI).href, {
      cache,
      // shared: the site's tabs that show this widget share one engine (each its own conversation).
      shared: this.hasAttribute("shared"),
      guard: guard ? { model: new URL(guard, document.baseURI).href } : undefined,
      onProgress: (p) => {
        if (p.total) e.progress.value = p.loaded / p.total;
      },
    }).then(
      (llm) => {
        this.llm = llm;
        e.status.textContent = llm.info.displayName;
        e.progress.hidden = true;
        this.dispatchEvent(new CustomEvent("hearth-ready", { detail: llm.info }));
        return llm;
      },
      (err) => {
        this.loading = null;
        e.status.textContent = "";
        e.progress.hidden = true;
        this.note(`The model could not be loaded: ${err.message}`, "error");
        return null;
      },
    );
    return this.loading;
  }

  async submit() {
    const e = this.els;
    if (this.busy) {
      this.busy.abort();
      return;
    }
    const text = e.input.value.trim();
    if (!text) return;
    const llm = await this.ensureModel();
    if (!llm) return;
    e.input.value = "";
    this.history.push({ role: "user", content: text });
    this.note(text, "user");
    const li = this.note("", "assistant");
    const ctl = new AbortController();
    this.busy = ctl;
    e.send.textContent = "Stop";
    let reply = "";
    let flagged = null;
    try {
      const messages = [];
      const system = this.getAttribute("system-prompt");
      if (system) messages.push({ role: "system", content: system });
      messages.push(...this.history);
      const num = (name, dflt) => {
        const v = Number(this.getAttribute(name));
        return this.hasAttribute(name) && Number.isFinite(v) ? v : dflt;
      };
      const stream = await llm.chat.completions.create({
        messages,
        stream: true,
        max_tokens: num("max-tokens", 256),
        temperature: num("temperature", 0.7),
        context_policy: "shift",
        signal: ctl.signal,
      });
      for await (const chunk of stream) {
        if (chunk.choices[0]?.finish_reason === "content_filter") flagged = { stage: "output", moderation: chunk.hearth?.moderation?.output };
        const piece = chunk.choices[0]?.delta?.content;
        if (piece) {
          reply += piece;
          li.textContent = reply.trimStart();
          li.scrollIntoView({ block: "end" });
        }
      }
    } catch (err) {
      if (err.code === "content_flagged") flagged = { stage: "input", moderation: err.moderation };
      else if (err.code !== "aborted") this.note(err.message, "error");
    } finally {
      this.busy = null;
      e.send.textContent = "Send";
    }
    if (flagged) {
      // A clear notice in place of the reply; the flagged turn leaves the history.
      const what = (flagged.moderation?.categories ?? []).map((c) => c.name).join(", ");
      li.className = "notice";
      li.textContent =
        (flagged.stage === "input" ? "This message was not answered: the safety check flagged it" : "The reply was withheld: the safety check flagged it") +
        (what ? ` (${what}).` : ".");
      this.history.pop();
      this.dispatchEvent(new CustomEvent("hearth-flagged", { detail: flagged }));
      return;
    }
    reply = reply.trim();
    li.textContent = reply || "(no reply)";
    if (reply) this.history.push({ role: "assistant", content: reply });
    else this.history.pop();
    this.dispatchEvent(new CustomEvent("hearth-reply", { detail: { text: reply } }));
  }
}

if (!customElements.get("hearth-chat")) customElements.define("hearth-chat", HearthChat);
