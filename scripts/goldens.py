#!/usr/bin/env python3
"""Regenerate tests/golden/model-*.json from llama.cpp (via llama-cpp-python).

Usage: scripts/goldens  (installs llama-cpp-python into .venv-goldens, builds the fixtures, runs this)
  or:  python3 scripts/goldens.py FIXTURE_DIR OUT_DIR

For every fixture GGUF (written by `hearth fixture`) and every prompt: llama.cpp's prompt tokens
(BOS as the model says, special text as plain text), the top-K logits at every prompt position,
and a greedy continuation (argmax, never stopping at EOS) with llama.cpp's top-1/top-2 margin at
each step, so a test can tell a real divergence from a near tie. llama.cpp runs with an F32 KV
cache and flash attention off, so the reference is its plain f32 attention path.
"""
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n",
    "Once upon a time",
    "Ünïcödé ✓ and numbers 12345",
]
TOP_K = 10
GREEDY_TOKENS = 24
GGML_TYPE_F32 = 0


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def top(row, k):
    ids = np.argsort(-row, kind="stable")[:k]
    return {"ids": [int(i) for i in ids], "logits": [float(row[i]) for i in ids]}


def greedy(llm, last, n):
    """n greedy steps after logits `last` (argmax, never stopping at EOS), with llama.cpp's
    top-1/top-2 margin at each."""
    out, margins = [], []
    for _ in range(n):
        order = np.argsort(-last, kind="stable")[:2]
        out.append(int(order[0]))
        margins.append(float(last[order[0]] - last[order[1]]))
        llm.eval([int(order[0])])
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    return out, margins


def prompt_case(llm, prompt, n_greedy=GREEDY_TOKENS):
    """Prompt tokens, top-K logits at every position and a greedy continuation."""
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    llm.reset()
    llm.eval(tokens)
    scores = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
    positions = [top(scores[i], TOP_K) for i in range(len(tokens))]
    g, margins = greedy(llm, scores[-1], n_greedy)
    return {"prompt": prompt, "prompt_tokens": [int(t) for t in tokens], "positions": positions,
            "greedy": g, "greedy_margins": margins}


def golden(path):
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True, flash_attn=False,
        type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, n_threads=2, n_threads_batch=2, verbose=False,
    )
    cases = [prompt_case(llm, prompt) for prompt in PROMPTS]
    del llm
    return cases


def main():
    fixture_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(fixture_dir)):
        if not name.endswith(".gguf"):
            continue
        path = os.path.join(fixture_dir, name)
        doc = {"fixture": name, "sha256": sha256(path), "llama_cpp_python": llama_cpp.__version__,
               "settings": "n_ctx 512, n_batch 512, F32 KV cache, flash_attn off, 2 threads",
               "cases": golden(path)}
        out = os.path.join(out_dir, "model-" + name.replace(".gguf", ".json"))
        with open(out, "w") as f:
            json.dump(doc, f, indent=None, separators=(",", ":"))
            f.write("\n")
        print(out, flush=True)


if __name__ == "__main__":
    main()
