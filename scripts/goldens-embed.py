#!/usr/bin/env python3
"""Embedding goldens: tests/golden/embeddings.json from llama.cpp (llama-cpp-python).

Usage: scripts/goldens-embed  (writes the fixtures, fetches the real model, runs this)
  or:  python3 scripts/goldens-embed.py FIXTURE_DIR MODEL_DIR OUT_FILE

FIXTURE_DIR holds POOLING/FIXTURE.gguf: fixtures written by `hearth fixture --pooling-type
POOLING` (the GGUF's llama.pooling_type set to mean, cls or last) and, in none/, with no
pooling_type key at all (llama.cpp then pools nothing: one vector per token). MODEL_DIR holds
smollm2-q4_1.gguf, SmolLM2-135M-Instruct Q4_1 as shipped (no pooling_type key), run as the file
says and with llama.cpp's pooling_type context parameter set to each of mean, cls and last (an
override), and as the file says once more with n_ubatch 1 (each token its own forward pass, as
when generating: `ubatch1`, llama.cpp's own per-token spread between two batchings of the same
computation), and smollm2-f16.gguf, the F16 variant `hearth quantize` derives from it (as
scripts/goldens-real), pooling none and mean: without 8-bit activations on either side, its
vectors show how closely the path itself agrees.

llama.cpp runs in embeddings mode (Llama(embedding=True)), with its default F16 KV cache and flash
attention off, one text per call of Llama.embed (tokenized with BOS as the model says, special
text as plain text). Each case keeps llama.cpp's tokens and its raw vector (llama_get_embeddings_seq;
per token, llama_get_embeddings, with pooling none), not normalized: the tests compare directions
(cosine) and check their own unnormalized vector's length against this one's. Values keep 7
significant digits.
"""
import hashlib
import json
import os
import sys

import llama_cpp

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hearth runs language models inside a web page, with nothing sent to a server.",
    "Ünïcödé ✓ and numbers 12345",
    "a",
]
POOLING = {"none": llama_cpp.LLAMA_POOLING_TYPE_NONE, "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
           "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}
# (fixture, pooling_type in its GGUF: None for no key).
FIXTURES = [("spm-q8_0.gguf", None), ("spm-q8_0.gguf", "mean"), ("spm-q8_0.gguf", "cls"), ("spm-q8_0.gguf", "last"),
            ("bpe-q4_k.gguf", None), ("bpe-q4_k.gguf", "mean")]
# Real-model variants and pooling overrides (None: as the file says, which is none).
REAL = [("q4_1", None), ("q4_1", "mean"), ("q4_1", "cls"), ("q4_1", "last"), ("f16", None), ("f16", "mean")]
# Per-token vectors are long: pooling none keeps the shortest and the first text.
NONE_TEXTS = [TEXTS[0], TEXTS[3]]
SETTINGS = "embedding=True, n_ctx 512, n_batch 512, n_ubatch 512, F16 KV cache, flash_attn off, 2 threads, one text per embed()"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def short(v):
    return float(f"{v:.7g}")


def embed(path, override, texts, n_ubatch=512):
    kw = {} if override is None else {"pooling_type": POOLING[override]}
    llm = llama_cpp.Llama(model_path=path, embedding=True, n_ctx=512, n_batch=512, n_ubatch=n_ubatch, type_k=1, type_v=1,
                          flash_attn=False, n_threads=2, n_threads_batch=2, verbose=False, **kw)
    pooling = {v: k for k, v in POOLING.items()}[llm.pooling_type()]
    cases = []
    for text in texts:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        e = llm.embed(text)
        vec = [[short(x) for x in row] for row in e] if pooling == "none" else [short(x) for x in e]
        cases.append({"text": text, "tokens": [int(t) for t in tokens], "embedding": vec})
    del llm
    return pooling, cases


def main():
    fixture_dir, model_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
    models = []
    for name, key in FIXTURES:
        path = os.path.join(fixture_dir, key or "none", name)
        pooling, cases = embed(path, None, NONE_TEXTS if key is None else TEXTS)
        assert pooling == (key or "none"), (name, key, pooling)
        models.append({"fixture": name, "pooling_type": key, "override": None, "sha256": sha256(path), "pooling": pooling, "cases": cases})
        print(f"{name} pooling_type {key}: {pooling}", flush=True)
    for variant, override in REAL:
        path = os.path.join(model_dir, f"smollm2-{variant}.gguf")
        pooling, cases = embed(path, override, NONE_TEXTS if override is None else TEXTS)
        entry = {"real": "SmolLM2-135M-Instruct.Q4_1.gguf", "variant": variant, "pooling_type": None, "override": override,
                 "sha256": sha256(path), "pooling": pooling, "cases": cases}
        if variant == "q4_1" and override is None:
            _, again = embed(path, None, NONE_TEXTS, n_ubatch=1)
            assert [c["tokens"] for c in again] == [c["tokens"] for c in cases]
            entry["ubatch1"] = [c["embedding"] for c in again]
        models.append(entry)
        print(f"real model {variant}, override {override}: {pooling}", flush=True)
    doc = {"llama_cpp_python": llama_cpp.__version__, "settings": SETTINGS, "models": models}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print(out)


if __name__ == "__main__":
    main()
