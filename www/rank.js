// The ranking page: the default model (models/default.json, else the bundled demo model) loaded in
// a Worker; the query and each pasted paragraph become embeddings in one batched
// llm.embeddings.create call, and the paragraphs are listed by their cosine similarity to the
// query (the vectors are unit length, so it is their dot product). Nothing leaves the page.
// A model whose GGUF pools nothing (SmolLM2's says nothing: llama.cpp's "none", a vector per
// token) is asked for mean pooling.

import { Hearth } from "./pkg/hearth.js";

const $ = (id) => document.getElementById(id);
const status = (text) => ($("status").textContent = text);

/** The paragraphs of the text area: blocks separated by blank lines. */
function paragraphs() {
  return $("paragraphs")
    .value.split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter(Boolean);
}

function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

let llm = null;
let pooling;

/** Rank the paragraphs against the query: [{index, text, score}], best first. */
async function rank() {
  const query = $("query").value.trim();
  const texts = paragraphs();
  if (!query || texts.length === 0) throw new Error("Type a query and at least one paragraph.");
  const t0 = performance.now();
  const r = await llm.embeddings.create({ input: [query, ...texts], pooling });
  const [q, ...rest] = r.data.map((d) => d.embedding);
  const ranked = rest.map((e, index) => ({ index, text: texts[index], score: dot(q, e) })).sort((a, b) => b.score - a.score);
  return { ranked, tokens: r.usage.prompt_tokens, ms: performance.now() - t0 };
}

function show(ranked) {
  const list = $("results");
  list.replaceChildren(
    ...ranked.map(({ text, score }) => {
      const li = document.createElement("li");
      const s = document.createElement("span");
      s.className = "score";
      s.textContent = score.toFixed(3);
      li.append(s, document.createTextNode(text));
      return li;
    }),
  );
}

$("rank").addEventListener("click", async () => {
  $("rank").disabled = true;
  document.body.dataset.state = "ranking";
  try {
    const { ranked, tokens, ms } = await rank();
    show(ranked);
    window.hearthRank.last = ranked;
    status(`Ranked ${ranked.length} paragraphs (${tokens} tokens) in ${(ms / 1000).toFixed(2)} s with ${llm.info.displayName}, ${pooling ?? llm.info.pooling} pooling, on ${llm.info.backend === "webgpu" ? "WebGPU" : "the CPU"}.`);
  } catch (e) {
    status(e.code ? `${e.message} (${e.code})` : e.message);
  } finally {
    $("rank").disabled = false;
    document.body.dataset.state = "ready";
  }
});

async function defaultModel() {
  try {
    const r = await fetch("models/default.json");
    if (r.ok) {
      const d = await r.json();
      if (d && typeof d.url === "string" && d.url) return d;
    }
  } catch {
    /* no default model: the demo one */
  }
  return { url: "models/demo.gguf", name: "the demo model (random weights: its ranking means nothing)" };
}

window.hearthRank = { llm: null, last: null };
try {
  const model = await defaultModel();
  status(`Loading ${model.name}…`);
  llm = await Hearth.load(model.url, {
    cache: !!model.sha256,
    sha256: model.sha256,
    onProgress: ({ loaded, total }) => total && status(`Loading ${model.name}… ${Math.round((100 * loaded) / total)}%`),
  });
  window.hearthRank.llm = llm;
  pooling = llm.info.pooling === "none" || llm.info.pooling === "rank" ? "mean" : undefined;
  status(`${llm.info.displayName} is ready (${pooling ? `the file sets no pooling: mean pooling` : `${llm.info.pooling} pooling, as the file says`}).`);
  $("rank").disabled = false;
  document.body.dataset.state = "ready";
} catch (e) {
  status(`The model did not load: ${e.message}`);
  document.body.dataset.state = "error";
}
