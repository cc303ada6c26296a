// The widget demo page's models: the real default model (models/default.json, written by
// scripts/default-model) when the server has it, else the bundled random-weight demo model. The
// attributes are set before the widget's module defines <hearth-chat>, so the inline chat starts
// loading the right model at once. (A module of its own: the page's CSP allows no inline script.)

let model = { url: "models/demo.gguf", name: "the demo model" };
try {
  const r = await fetch("models/default.json");
  if (r.ok) {
    const d = await r.json();
    if (d && typeof d.url === "string" && d.url) model = d;
  }
} catch {
  /* no default model: the demo */
}
for (const id of ["inline", "launcher"]) document.getElementById(id).setAttribute("model", model.url);
document.getElementById("model-name").textContent = model.name;
await import("./pkg/hearth-widget.js");
