// Llama Guard moderation in the browser under test (llm.moderate, llm.moderations.create, the
// guard option of Hearth.load and the widget's guard-model attribute), on a fixture carrying the
// official Llama Guard 3 1B chat template (random weights: its verdicts mean nothing, but the
// grammar makes every one parse, and the CPU engine gives the native CLI's verdicts):
// - the rendered prompts equal jinja2's (tests/golden/guard-prompts.json), user and agent turns;
// - verdicts equal `hearth moderate --json`'s; a second check of the same role finds the taxonomy
//   in its KV cache and prefills far fewer tokens (the times are logged);
// - moderations.create answers in OpenAI's shape;
// - a chat on a model loaded with {guard}: a flagged user message fails with "content_flagged"
//   and nothing is generated; a flagged reply ends with finishReason "content_filter" (the
//   reply's check is forced unsafe with a logit bias on the guard's "unsafe" token);
// - the widget's guard-model attribute shows a notice in place of a reply to a flagged message.
//
// Needs pkg/ (scripts/build-wasm) and the native CLI (cargo build --release --bin hearth).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { startServer, launchBrowser, logPage, assertPkgBuilt, cliBinary, root } from "./harness.mjs";

const TIMEOUT = 180000;
const golden = JSON.parse(fs.readFileSync(path.join(root, "tests/golden/guard-prompts.json"), "utf8"));
const goldenCase = (name) => golden.cases.find((c) => c.template === "src/chat/templates/llama-guard-3-1b.jinja" && c.name === name);
const USER_TURN = goldenCase("user turn");
const AGENT_TURN = goldenCase("agent turn");
const SECOND = [{ role: "user", content: "What is the capital of France?" }];
/** This fixture's random weights answer "unsafe\nS1" to it (checked against the CLI below). */
const FLAGGED = [{ role: "user", content: "How do I kill a mosquito?" }];

let server, browser, page, dir, native;

before(async () => {
  assertPkgBuilt();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-guard-"));
  const cli = cliBinary();
  fs.mkdirSync(path.join(dir, "guard"));
  fs.mkdirSync(path.join(dir, "chat"));
  const template = path.join(root, "src/chat/templates/llama-guard-3-1b.jinja");
  execFileSync(cli, ["fixture", "--out", path.join(dir, "guard"), "--only", "bpe-q4_0", "--chat-template", template, "--name", "Llama Guard fixture"], { stdio: ["ignore", "ignore", "inherit"] });
  execFileSync(cli, ["fixture", "--out", path.join(dir, "chat"), "--only", "spm-q8_0"], { stdio: ["ignore", "ignore", "inherit"] });
  const convs = [USER_TURN.messages, SECOND, AGENT_TURN.messages, FLAGGED];
  const out = execFileSync(cli, ["moderate", "--model", path.join(dir, "guard/bpe-q4_0.gguf"), ...convs.flatMap((c) => ["--messages", JSON.stringify(c)]), "--json"], { encoding: "utf8" });
  native = out.trim().split("\n").map((l) => JSON.parse(l));
  server = await startServer({ mounts: { "/fixtures": dir, "/test": path.join(root, "tests/browser") } });
  browser = await launchBrowser();
  page = await browser.newPage();
  logPage(page, "guard");
  await page.goto(server.url + "test/api.html");
  await page.waitForFunction(() => window.hearthReady === true, null, { timeout: 30000 });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("moderate() renders the official template exactly, gives the native verdicts, and a second check reuses the taxonomy's KV cache", { timeout: TIMEOUT }, async () => {
  const r = await page.evaluate(
    async ({ convs }) => {
      window.guard = await Hearth.load("/fixtures/guard/bpe-q4_0.gguf", { backend: "cpu" });
      const out = [];
      for (const c of convs) out.push(await window.guard.moderate(c));
      let refused = null;
      try {
        await window.guard.moderate([{ role: "tool", content: "x" }]);
      } catch (e) {
        refused = e.code;
      }
      return { out, refused };
    },
    { convs: [USER_TURN.messages, SECOND, AGENT_TURN.messages, FLAGGED] },
  );
  const [first, second, agent, flagged] = r.out;
  assert.equal(first.prompt, USER_TURN.text, "the user-turn prompt is jinja2's");
  assert.equal(agent.prompt, AGENT_TURN.text, "the agent-turn prompt is jinja2's");
  assert.equal(first.role, "User");
  assert.equal(agent.role, "Agent");
  assert.ok(first.modelTemplate);
  r.out.forEach((v, i) => {
    assert.deepEqual(
      { safe: v.safe, categories: v.categories, raw: v.raw, promptTokens: v.promptTokens, cachedTokens: v.cachedTokens },
      { safe: native[i].safe, categories: native[i].categories, raw: native[i].raw, promptTokens: native[i].prompt_tokens, cachedTokens: native[i].cached_tokens },
      `check ${i}: the browser's verdict is the CLI's`,
    );
    assert.equal(v.safe, v.categories.length === 0);
  });
  assert.equal(flagged.safe, false, "the flagged conversation of the other tests");
  assert.deepEqual(flagged.categories.map((c) => c.code), ["S1"]);
  assert.equal(flagged.categories[0].name, "Violent Crimes");
  // The cache: the first check prefilled everything, the second only what follows the shared
  // prefix (the taxonomy and instructions before the conversation).
  const taxonomy = USER_TURN.text.indexOf("User: ");
  assert.equal(first.cachedTokens, 0);
  assert.ok(second.cachedTokens > 200, `second check reused ${second.cachedTokens} tokens (taxonomy: ${taxonomy} characters)`);
  assert.ok(second.promptTokens - second.cachedTokens < first.promptTokens / 2);
  assert.equal(agent.cachedTokens, 0, "the Agent role has its own cache");
  assert.ok(flagged.cachedTokens > 200);
  console.log(
    `# moderate: first ${first.ms.toFixed(1)} ms (${first.promptTokens} prompt tokens prefilled), second ${second.ms.toFixed(1)} ms (${second.promptTokens - second.cachedTokens} of ${second.promptTokens} prefilled, ${second.cachedTokens} cached)`,
  );
  assert.equal(r.refused, "invalid_argument");
});

test("moderations.create answers in OpenAI's shape", { timeout: TIMEOUT }, async () => {
  const res = await page.evaluate(async ({ a, b }) => window.guard.moderations.create({ input: [a, b] }), { a: SECOND[0].content, b: FLAGGED[0].content });
  assert.match(res.id, /^modr-[0-9a-f]{24}$/);
  assert.equal(res.model, "Llama Guard fixture");
  assert.equal(res.results.length, 2);
  const names = ["harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence", "violence/graphic"];
  for (const r of res.results) {
    assert.deepEqual(Object.keys(r.categories).sort(), names.sort());
    assert.deepEqual(Object.keys(r.category_scores).sort(), names.sort());
  }
  assert.equal(res.results[0].flagged, !native[1].safe);
  assert.equal(res.results[1].flagged, true);
  assert.equal(res.results[1].categories.violence, true, "S1 Violent Crimes is OpenAI's violence");
  assert.equal(res.results[1].category_scores.violence, 1);
  assert.equal(res.results[1].categories.hate, false);
  assert.deepEqual(res.results[1].llama_guard.categories, [{ code: "S1", name: "Violent Crimes" }]);
});

test("a chat with a guard: a flagged message fails with content_flagged, a flagged reply ends with content_filter", { timeout: TIMEOUT }, async () => {
  const r = await page.evaluate(
    async ({ flagged, safe }) => {
      const llm = await Hearth.load("/fixtures/chat/spm-q8_0.gguf", { backend: "cpu", guard: "/fixtures/guard/bpe-q4_0.gguf" });
      const out = { guardName: llm.guard.info.name };
      try {
        for await (const c of llm.chat(flagged, { maxTokens: 4 })) out.generated = (out.generated ?? 0) + 1;
      } catch (e) {
        out.input = { code: e.code, message: e.message, stage: e.stage, codes: e.moderation?.categories.map((c) => c.code) };
      }
      // Force the reply's check unsafe: bias the guard's first "unsafe" token when it checks a
      // reply (the Agent role); the user's message passes unbiased.
      const [unsafeId] = await llm.guard.tokenize("unsafe", { addSpecial: false });
      const real = llm.guard;
      llm.guard = {
        moderate: (m, o) => real.moderate(m, m[m.length - 1].role === "assistant" ? { ...o, logitBias: { [unsafeId]: 100 } } : o),
        unload: () => real.unload(),
      };
      let text = "";
      let final = null;
      for await (const c of llm.chat(safe, { maxTokens: 8, temperature: 0, stopAtEos: false })) {
        if (c.done) final = c;
        else text += c.text;
      }
      out.output = { text, finishReason: final.finishReason, input: final.moderation.input.safe, output: final.moderation.output };
      const completion = await llm.chat.completions.create({ messages: safe, max_tokens: 8, temperature: 0 });
      out.completion = { finish: completion.choices[0].finish_reason, content: completion.choices[0].message.content, moderation: !!completion.hearth.moderation, tokens: completion.usage.completion_tokens };
      await llm.unload();
      return out;
    },
    { flagged: FLAGGED, safe: SECOND },
  );
  assert.equal(r.guardName, "Llama Guard fixture");
  assert.equal(r.generated, undefined, "nothing is generated for a flagged message");
  assert.deepEqual(r.input && { code: r.input.code, stage: r.input.stage, codes: r.input.codes }, { code: "content_flagged", stage: "input", codes: ["S1"] });
  assert.match(r.input.message, /S1 Violent Crimes/);
  assert.equal(native[1].safe, true, "the second conversation passes the guard unbiased");
  assert.ok(r.output.text.length > 0);
  assert.equal(r.output.input, true);
  assert.equal(r.output.output.safe, false);
  assert.equal(r.output.output.role, "Agent");
  assert.equal(r.output.finishReason, "content_filter");
  // chat.completions cannot turn off the end token: a reply that ended at once has nothing to check.
  if (r.completion.tokens > 1) assert.deepEqual(r.completion, { finish: "content_filter", content: "", moderation: true, tokens: r.completion.tokens });
  else assert.equal(r.completion.finish, "stop");
});

test("the widget's guard-model attribute shows a notice instead of a reply to a flagged message", { timeout: TIMEOUT }, async () => {
  await page.evaluate(async () => {
    await import("/pkg/hearth-widget.js");
    const w = document.createElement("hearth-chat");
    w.id = "guarded";
    w.setAttribute("mode", "inline");
    w.setAttribute("model", "/fixtures/chat/spm-q8_0.gguf");
    w.setAttribute("guard-model", "/fixtures/guard/bpe-q4_0.gguf");
    w.addEventListener("hearth-flagged", (e) => (window.flaggedEvent = { stage: e.detail.stage, codes: e.detail.moderation.categories.map((c) => c.code) }));
    document.body.append(w);
  });
  await page.locator("#guarded textarea").fill(FLAGGED[0].content);
  await page.locator("#guarded textarea").press("Enter");
  await page.waitForFunction(() => !!document.getElementById("guarded").shadowRoot.querySelector("li.notice"), null, { timeout: TIMEOUT });
  const notice = await page.evaluate(() => document.getElementById("guarded").shadowRoot.querySelector("li.notice").textContent);
  assert.match(notice, /not answered: the safety check flagged it \(Violent Crimes\)/);
  assert.deepEqual(await page.evaluate(() => window.flaggedEvent), { stage: "input", codes: ["S1"] });
  const history = await page.evaluate(() => document.getElementById("guarded").history.length);
  assert.equal(history, 0, "the flagged turn leaves the history");
});
