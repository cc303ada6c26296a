#!/usr/bin/env python3
"""Native llama.cpp (llama-cpp-python, CPU only) on the same model and tokens as scripts/bench.

Usage: python3 bench-llamacpp.py MODEL.gguf THREADS PROMPT_IDS_JSON NEW_TOKENS
Prints one JSON line: loadMs, prefillMs (the prompt in one llama_decode call, n_batch 512),
decodeMs (NEW_TOKENS greedy steps: argmax of the last logits, then one llama_decode each),
peakRssBytes (this process: run it once per configuration). Default llama.cpp settings otherwise
(F16 KV cache), n_ctx 512, no warm-up (Hearth and wllama get none either).
"""
import json
import resource
import sys
import time

import numpy as np
import llama_cpp


def main():
    path, threads, ids, new_tokens = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, n_gpu_layers=0, logits_all=False, verbose=False)
    t1 = time.perf_counter()
    n_vocab = llm.n_vocab()
    llm.reset()
    llm.eval(ids)
    t2 = time.perf_counter()
    out = []
    for _ in range(new_tokens):
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        tok = int(np.argmax(logits))
        out.append(tok)
        llm.eval([tok])
    t3 = time.perf_counter()
    print(json.dumps({
        "loadMs": (t1 - t0) * 1e3,
        "prefillMs": (t2 - t1) * 1e3,
        "decodeMs": (t3 - t2) * 1e3,
        "promptTokens": len(ids),
        "completionTokens": len(out),
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "version": llama_cpp.__version__,
    }))


if __name__ == "__main__":
    main()
