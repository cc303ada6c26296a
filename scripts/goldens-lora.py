#!/usr/bin/env python3
"""Regenerate tests/golden/lora-*.json: llama.cpp's logits and greedy tokens with LoRA adapters.

Usage: scripts/goldens-lora  (builds the base fixture and the adapters with `hearth`, runs this)
  or:  python3 scripts/goldens-lora.py BASE.gguf ADAPTER_DIR STRENGTH OUT.json

ADAPTER_DIR holds lora-a.gguf, lora-b.gguf, lora-c.gguf, written by `hearth lora-fixture --spec
a|b|c --strength STRENGTH` for BASE (F32 rank 16 alpha 32 on every matrix; F16 rank 8 alpha 0 on
attn_q/attn_v/ffn_up; Q8_0 rank 32 alpha 16 on every matrix). Every case loads the adapters it
names with llama.cpp's own loader (llama_adapter_lora_init) and sets them with their scales at
once (llama_set_adapters_lora, as llama-cpp-python's lora_path does for one), then runs each
prompt from an empty cache (llama.cpp's default F16 KV cache, flash attention off): top-K logits
at every prompt position and a greedy continuation with its top-1/top-2 margins.
"""
import ctypes
import json
import os
import sys

import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from goldens import prompt_case, sha256  # noqa: E402

PROMPTS = ["Once upon a time", "The capital of France is"]
GREEDY_TOKENS = 16
# (adapter, scale) lists: one adapter at scales 0, 0.5 and 1, each type alone, two at once.
CASES = [
    [("a", 0.0)],
    [("a", 0.5)],
    [("a", 1.0)],
    [("b", 1.0)],
    [("c", 1.0)],
    [("a", 1.0), ("b", 0.5)],
    [("c", 0.5), ("b", 1.0)],
]


def main():
    base, adapter_dir, strength, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    llm = llama_cpp.Llama(model_path=base, n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True,
                          n_threads=2, n_threads_batch=2, verbose=False)
    paths = {n: os.path.join(adapter_dir, f"lora-{n}.gguf") for n in "abc"}
    loaded = {}
    for n, p in paths.items():
        loaded[n] = llama_cpp.llama_adapter_lora_init(llm.model, p.encode())
        if not loaded[n]:
            raise SystemExit(f"llama.cpp could not load {p}")
    cases = []
    for case in CASES:
        arr = (llama_cpp.llama_adapter_lora_p_ctypes * len(case))(*[loaded[n] for n, _ in case])
        scales = (ctypes.c_float * len(case))(*[s for _, s in case])
        if llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, arr, len(case), scales) != 0:
            raise SystemExit(f"llama_set_adapters_lora failed for {case}")
        runs = [prompt_case(llm, p, GREEDY_TOKENS) for p in PROMPTS]
        cases.append({"adapters": [[n, s] for n, s in case], "prompts": runs})
        print(case, [r["greedy"][:4] for r in runs], flush=True)
    llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, None, 0, None)
    doc = {"base": os.path.basename(base), "sha256": sha256(base), "strength": strength,
           "adapters": {n: sha256(p) for n, p in paths.items()},
           "llama_cpp_python": llama_cpp.__version__, "kv_type": "f16",
           "settings": "n_ctx 512, n_batch 512, F16 KV cache, flash_attn off, 2 threads", "cases": cases}
    with open(out, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(out)


if __name__ == "__main__":
    main()
