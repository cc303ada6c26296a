#!/usr/bin/env python3
"""Regenerate tests/golden/model-*.json from llama.cpp (via llama-cpp-python).

Usage: scripts/goldens  (installs llama-cpp-python into .venv-goldens, builds the fixtures, runs this)
  or:  python3 scripts/goldens.py FIXTURE_DIR OUT_DIR
  or:  python3 scripts/goldens.py --long FIXTURE_DIR OUT_DIR  (long-FIXTURE.json, see long_golden)

For every fixture GGUF (written by `hearth fixture`) and every prompt: llama.cpp's prompt tokens
(BOS as the model says, special text as plain text), the top-K logits at every prompt position,
and a greedy continuation (argmax, never stopping at EOS) with llama.cpp's top-1/top-2 margin at
each step, so a test can tell a real divergence from a near tie.

KV cache: model-FIXTURE.json uses llama.cpp's default, an F16 cache with flash attention off (as
llama-cpp-python runs it), which is also Hearth's default. For the fixtures in KV_EXTRA there are
also model-FIXTURE.kv-TYPE.json: a Q8_0 cache (flash attention on, which llama.cpp needs for a
quantized V cache) and an F32 cache (flash attention off: its plain f32 attention path). Each file
names its cache in "kv_type".
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
# ggml type ids of the KV cache types, and whether llama.cpp runs them with flash attention.
KV_TYPES = {"f32": (0, False), "f16": (1, False), "q8_0": (8, True)}
DEFAULT_KV = "f16"
# Fixtures that also get goldens with the other cache types: F32 weights (no activation rounding,
# so attention's own rounding shows) with multi-head attention, and Q4_0 with grouped-query
# attention and heads of 32 values (one Q8_0 block).
KV_EXTRA = {"q8_0": ["spm-f32.gguf", "bpe-q4_0.gguf"], "f32": ["spm-f32.gguf", "bpe-q4_0.gguf"]}


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


def kv_settings(kv):
    """llama_cpp.Llama arguments for a KV cache type, and the words the goldens' settings use."""
    ty, flash = KV_TYPES[kv]
    return dict(type_k=ty, type_v=ty, flash_attn=flash), f"{kv.upper()} KV cache, flash_attn {'on' if flash else 'off'}"


def kv_file(out_dir, stem, kv):
    """The golden file of `stem` (model-spm-q4_0, real-smollm2-q4_1) with cache type `kv`."""
    return os.path.join(out_dir, stem + ("" if kv == DEFAULT_KV else f".kv-{kv}") + ".json")


def golden(path, kv=DEFAULT_KV):
    args, _ = kv_settings(kv)
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True,
        n_threads=2, n_threads_batch=2, verbose=False, **args,
    )
    cases = [prompt_case(llm, prompt) for prompt in PROMPTS]
    del llm
    return cases


# Llama 4's chunked attention (its RoPE layers see only their 8192-token chunk) and attention
# temperature (its NoPE layers' queries scaled from position 8191) change nothing before position
# 8191: one prompt of LONG_TOKENS random ids (BOS first) over a context of LONG_CTX, the top-K
# logits at the positions in LONG_POSITIONS and a greedy continuation, for the fixtures in LONG.
LONG = ["llama4-f32.gguf"]
LONG_TOKENS = 8300
LONG_CTX = 8448
LONG_POSITIONS = list(range(0, 4)) + [4095, 8000] + list(range(8184, LONG_TOKENS))
LONG_GREEDY = 8


def long_golden(path):
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=LONG_CTX, n_batch=512, n_ubatch=512, logits_all=True,
        n_threads=2, n_threads_batch=2, verbose=False, **kv_settings(DEFAULT_KV)[0],
    )
    rng = np.random.RandomState(8192)
    tokens = [llm.token_bos()] + [int(t) for t in rng.randint(0, llm.n_vocab(), LONG_TOKENS - 1)]
    llm.reset()
    llm.eval(tokens)
    scores = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
    positions = [dict(pos=p, **top(scores[p], TOP_K)) for p in LONG_POSITIONS]
    g, margins = greedy(llm, scores[-1], LONG_GREEDY)
    del llm
    return {"n_ctx": LONG_CTX, "prompt_tokens": tokens, "positions": positions, "greedy": g, "greedy_margins": margins}


def write_golden(out, doc):
    with open(out, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(out, flush=True)


def main_long(fixture_dir, out_dir):
    for name in LONG:
        path = os.path.join(fixture_dir, name)
        doc = {"fixture": name, "sha256": sha256(path), "llama_cpp_python": llama_cpp.__version__,
               "kv_type": DEFAULT_KV, "settings": f"n_ctx {LONG_CTX}, n_batch 512, {kv_settings(DEFAULT_KV)[1]}, 2 threads",
               **long_golden(path)}
        write_golden(os.path.join(out_dir, "long-" + name.replace(".gguf", "") + ".json"), doc)


def main():
    if sys.argv[1] == "--long":
        return main_long(sys.argv[2], sys.argv[3])
    fixture_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(fixture_dir)):
        if not name.endswith(".gguf"):
            continue
        path = os.path.join(fixture_dir, name)
        for kv in [DEFAULT_KV] + [k for k, names in KV_EXTRA.items() if name in names]:
            doc = {"fixture": name, "sha256": sha256(path), "llama_cpp_python": llama_cpp.__version__,
                   "kv_type": kv, "settings": f"n_ctx 512, n_batch 512, {kv_settings(kv)[1]}, 2 threads",
                   "cases": golden(path, kv)}
            write_golden(kv_file(out_dir, "model-" + name.replace(".gguf", ""), kv), doc)


if __name__ == "__main__":
    main()
