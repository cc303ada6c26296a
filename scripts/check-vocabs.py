#!/usr/bin/env python3
"""Our tokenizer against llama.cpp's own tokenizer test data on real vocabularies.

    python3 scripts/check-vocabs.py LLAMA_CPP/models [name ...]

llama.cpp's source tree (for instance the one inside the llama-cpp-python sdist that
scripts/llama-cpp-venv builds) carries models/ggml-vocab-<name>.gguf (vocabulary-only GGUFs of
real models) with .gguf.inp (test strings, separated by "\\n__ggml_vocab_test__\\n") and .gguf.out
(the token ids llama.cpp's test-tokenizer-0 expects, no BOS). This runs `hearth tokenize` on each
string and compares. Default names: the Llama family's (llama-bpe: Llama 3, llama-spm: LLaMA 1/2)
and the other pre-tokenizers Hearth implements (phi-3, gpt-2, starcoder, refact). The files are
not in this repository (their vocabularies carry their models' licenses); not part of
scripts/test. Exits 1 on any difference.
"""
import json
import os
import subprocess
import sys

NAMES = ["llama-bpe", "llama-spm", "phi-3", "gpt-2", "starcoder", "refact"]


def hearth_binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target"))
    for profile in ("release", "debug"):
        b = os.path.join(target, profile, "hearth")
        if os.path.exists(b):
            return b
    sys.exit("no hearth binary: cargo build --bin hearth")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    models, names = sys.argv[1], sys.argv[2:] or NAMES
    hearth = hearth_binary()
    failed = False
    for name in names:
        gguf = os.path.join(models, f"ggml-vocab-{name}.gguf")
        texts = open(gguf + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
        wants = open(gguf + ".out", encoding="utf-8").read().split("\n")
        ok = bad = 0
        for text, want in zip(texts, wants):
            want = [int(x) for x in want.split()]
            r = subprocess.run([hearth, "tokenize", "--model", gguf, "--text", text, "--json"], capture_output=True, text=True)
            got = json.loads(r.stdout)["tokens"] if r.returncode == 0 else r.stderr.strip()
            if got == want:
                ok += 1
            else:
                bad += 1
                print(f"{name}: {text!r}\n  llama.cpp: {want}\n  hearth:    {got}")
        print(f"{name}: {ok} of {ok + bad} strings give llama.cpp's ids")
        failed |= bad > 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
