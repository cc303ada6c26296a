#!/usr/bin/env python3
"""Golden tokenizer data from llama.cpp, for tests/tokenizer.rs.

Regenerate (after changing src/fixture/vocab.rs, src/fixture/corpus.txt or the strings below):

    HEARTH_VOCAB_DIR=/tmp/hearth-vocab cargo test --test all tokenizer::write_vocab_files -- --ignored
    $(scripts/llama-cpp-venv) scripts/goldens-tokenizer.py \
        /tmp/hearth-vocab/vocab-spm.gguf /tmp/hearth-vocab/vocab-bpe.gguf /tmp/hearth-vocab/vocab-bpe-llama4.gguf

The first command writes vocabulary-only GGUF files built by the Rust fixture builders; this script
loads each with llama-cpp-python (vocab_only=True) and writes tests/golden/tokenizer-spm.json,
tests/golden/tokenizer-bpe.json and tests/golden/tokenizer-bpe-llama4.json (the bpe vocabulary
under Llama 4's pre-tokenizer, with EXTRA_LLAMA4 strings for its case rules as well): for every test string the ids llama.cpp's llama_tokenize gives
(add_special/parse_special in three combinations), llama_detokenize of those ids, every token's
piece, the BOS/EOS/EOG ids, and the sha256 of the GGUF file so a stale golden is detected.
"""
import ctypes
import hashlib
import json
import os
import sys

import llama_cpp

CASES = [
    "",
    " ",
    "  ",
    "   ",
    "hello",
    " hello",
    "  hello",
    "hello ",
    "hello  ",
    "hello world",
    "Hello World",
    "HeLLo wOrLD",
    "HELLO",
    "The quick brown fox jumps over the lazy dog.",
    "the hearth was the center of the old house",
    "\t",
    "\t\tindented",
    "\n",
    "\n\n",
    "\n\n\n",
    "line one\nline two\n\nline four",
    " \n \n ",
    "\r\n",
    "a\r\nb",
    "trailing spaces   ",
    "multiple   spaces   between",
    "don't I'll we've they're she'd I'm it's",
    "DON'T I'LL WE'VE",
    "'s 't 'll",
    "' quoted ' text",
    "Hello , world . How are you ? Fine !",
    "1234567",
    "3.14159",
    "12 345 6789 00000",
    "2024-05-12 09:30",
    "$19.99 (22.6%)",
    "fn main() {\n    println!(\"{}\", 1 + 2);\n}",
    "def greet(name: str) -> str:\n    return f\"Hello, {name}!\"",
    "if (a < b && c >= d) { x = y->z; }",
    "<s>",
    "</s>",
    "<unk>",
    "<s>hello</s>",
    "hello <s> world",
    "<|eot_id|>",
    "<|begin_of_text|>hello",
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|user_defined|>",
    "a<|user_defined|>b",
    " <|user_defined|> ",
    "<|user_defined|><|user_defined|>",
    "<|eom_id|><|python_tag|>",
    "Café naïve résumé façade",
    "crème brûlée déjà vu",
    "e\u0301 a\u0300 n\u0303",
    "Zürich Kraków Ærø",
    "Καλημέρα κόσμε",
    "Привет, мир!",
    "你好，世界",
    "日本語のテキスト",
    "한국어 문장",
    "😀",
    "🔥🔥",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🇫🇷🇯🇵",
    "a😀b",
    "non\u00a0breaking",
    "ideographic\u3000space",
    "\u00a0",
    "\u3000\u3000",
    "\u2028",
    "Supercalifragilisticexpialidocious" * 3,
    "antidisestablishmentarianism",
    "▁already▁escaped",
    "ĠĊ",
    "#tags @mentions & 100%",
    "**bold** _it_ `code` ~~x~~",
    "https://example.com/hearth?ref=readme&lang=en",
    "→ ← ≤ ≥ € £ ©",
    "Hello, world!\n\nHow are you today? I'm fine, thanks.",
]


def piece(vocab, tid, special):
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tid, buf, 256, 0, special)
    assert n >= 0, (tid, n)
    return buf.raw[:n]


def tokenize(vocab, data, add_special, parse_special):
    n_max = len(data) + 16
    arr = (llama_cpp.llama_token * n_max)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), arr, n_max, add_special, parse_special)
    assert n >= 0, n
    return list(arr[:n])


def detokenize(vocab, ids, remove_special, unparse_special):
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 64 + 32 * len(ids)
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, remove_special, unparse_special)
    assert n >= 0, n
    return buf.raw[:n]


# Case runs, contractions in both cases, non-ASCII letters, marks and symbols, newlines and
# slashes: what the GPT-4o regex (llama.cpp's LLAMA4 / GPT4O pre-tokenizer) splits differently.
EXTRA_LLAMA4 = [
    "helloWorld HELLO World",
    "HTTPServer parseJSON getHTTPResponseCode",
    "DON'T Don't don'T I'M we'RE they'Ve",
    "ÉCOLE école Ünïcode naïve café",
    "ǅemal ǈubljana ǋata",
    "e\u0301te\u0301 cafe\u0301",
    "€100 →→ ©2024 ™x",
    "日本語のテキスト 한국어",
    "path/to//file\n\n/next",
    "a\r\n\r\nb  \n  c\u00a0d\u2003\n",
    "x  \t\n\n  y   z",
    "(foo);\n}\n\n// comment",
    "1234567 12,345.678",
    "Ωmega ΣΙΓΜΑ σίγμα",
]


def golden(path, extra=()):
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    null = -1

    def opt(x):
        return None if x == null else x

    cases = []
    for text in CASES + list(extra):
        data = text.encode("utf-8")
        ids = tokenize(vocab, data, False, False)
        ids_special = tokenize(vocab, data, False, True)
        ids_add = tokenize(vocab, data, True, False)
        cases.append({
            "text": text,
            "ids": ids,
            "ids_parse_special": ids_special,
            "ids_add_special": ids_add,
            # detokenize(ids, remove_special=false, unparse_special=false)
            "decoded_hex": detokenize(vocab, ids, False, False).hex(),
            # detokenize(ids_parse_special, remove_special=false, unparse_special=true)
            "decoded_parse_special_hex": detokenize(vocab, ids_special, False, True).hex(),
            # detokenize(ids_add_special, remove_special=true, unparse_special=false)
            "decoded_add_special_hex": detokenize(vocab, ids_add, True, False).hex(),
        })
    return {
        "generated_by": "scripts/goldens-tokenizer.py with llama-cpp-python " + llama_cpp.__version__,
        "vocab_file": os.path.basename(path),
        "vocab_sha256": sha,
        "vocab_size": n_vocab,
        "bos": opt(llama_cpp.llama_vocab_bos(vocab)),
        "eos": opt(llama_cpp.llama_vocab_eos(vocab)),
        "eot": opt(llama_cpp.llama_vocab_eot(vocab)),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "eog_ids": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        "control_ids": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_control(vocab, i)],
        "pieces_special_hex": [piece(vocab, i, True).hex() for i in range(n_vocab)],
        "pieces_plain_hex": [piece(vocab, i, False).hex() for i in range(n_vocab)],
        "cases": cases,
    }


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
    os.makedirs(root, exist_ok=True)
    for kind, path, extra in (("spm", sys.argv[1], ()), ("bpe", sys.argv[2], ()), ("bpe-llama4", sys.argv[3], EXTRA_LLAMA4)):
        out = os.path.join(root, f"tokenizer-{kind}.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(golden(path, extra), f, ensure_ascii=False, indent=1)
            f.write("\n")
        print("wrote", os.path.normpath(out))


if __name__ == "__main__":
    main()
