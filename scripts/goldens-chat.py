#!/usr/bin/env python3
"""Golden chat-template renderings, for tests/chat_template.rs.

Renders each template (Hearth's built-in fallbacks in src/chat/templates and the official templates in
tests/golden/templates, copied from llama.cpp's models/templates; llama-2-chat.jinja is the
template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json) with jinja2 configured exactly as
Hugging Face transformers renders chat templates (sandboxed, trim_blocks, lstrip_blocks, loopcontrols,
raise_exception, strftime_now, tojson with ensure_ascii=False), on a set of conversations, and writes
tests/golden/chat-templates.json. strftime_now is pinned to 2026-11-26 so the output is reproducible.
Where llama-cpp-python is installed (scripts/goldens runs this in its venv), the built-in fallbacks
that stand for one of llama.cpp's own formats also get llama.cpp's rendering of each conversation
(llama_chat_apply_template, which leaves BOS to the tokenizer) as "llama_cpp": Hearth's built-in
Llama 4 template is held to llama.cpp's `llama4` format, since Meta's own template is gated.

Run: python3 scripts/goldens-chat.py   (needs jinja2; scripts/goldens runs it)
"""
import json
import os

from jinja2.exceptions import TemplateError
from hf_jinja import TODAY, environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (file, bos_token, eos_token)
TEMPLATES = [
    ("src/chat/templates/llama2.jinja", "<s>", "</s>"),
    ("src/chat/templates/llama3.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("src/chat/templates/llama4.jinja", "<|begin_of_text|>", "<|eot|>"),
    ("src/chat/templates/chatml.jinja", "<s>", "</s>"),
    ("tests/golden/templates/llama-2-chat.jinja", "<s>", "</s>"),
    ("tests/golden/templates/qwen2.5-chatml.jinja", "", "<|im_end|>"),
    ("tests/golden/templates/llama-3.1.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("tests/golden/templates/llama-3.2.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("tests/golden/templates/llama-3.3.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("tests/golden/templates/mistral-nemo.jinja", "<s>", "</s>"),
    ("tests/golden/templates/phi-3.5.jinja", "<s>", "<|endoftext|>"),
    ("tests/golden/templates/smollm3.jinja", "", "<|im_end|>"),
    ("tests/golden/templates/deepseek-r1-distill-llama.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
]

# Built-in templates and the llama.cpp format each stands for.
LLAMA_CPP_FORMATS = {"src/chat/templates/llama4.jinja": "llama4", "src/chat/templates/llama3.jinja": "llama3"}

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
CONVERSATIONS = [
    ("one user turn", [{"role": "user", "content": "Hello"}], True),
    ("system and turns", [SYSTEM, {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
                          {"role": "user", "content": "Who are you"}], True),
    ("ends with the assistant", [SYSTEM, {"role": "user", "content": "Hello"},
                                 {"role": "assistant", "content": "   I am an assistant   "}], False),
    ("unicode and code", [{"role": "user", "content": "Write “code” ✓:\n```py\nprint('é')\n```\n"}], True),
    ("roles out of order", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], True),
]


def llama_cpp_render(fmt, messages, add_generation_prompt):
    """llama.cpp's built-in chat format `fmt` applied to `messages` (needs llama-cpp-python: run
    this with .venv-goldens/bin/python, scripts/llama-cpp-venv makes it)."""
    import ctypes
    import llama_cpp
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_chat_apply_template(fmt.encode(), chat, len(messages), add_generation_prompt, buf, len(buf))
    assert 0 <= n < len(buf), f"llama_chat_apply_template {fmt}: {n}"
    return buf.raw[:n].decode("utf-8")


def main():
    env = environment()
    cases = []
    for path, bos, eos in TEMPLATES:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            source = f.read()
        template = env.from_string(source)
        for name, messages, add_generation_prompt in CONVERSATIONS:
            case = {"template": path, "bos_token": bos, "eos_token": eos, "conversation": name,
                    "messages": messages, "add_generation_prompt": add_generation_prompt}
            try:
                case["expected"] = template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                   bos_token=bos, eos_token=eos)
            except TemplateError as e:
                case["error"] = str(e)
            if path in LLAMA_CPP_FORMATS:
                case["llama_cpp"] = llama_cpp_render(LLAMA_CPP_FORMATS[path], messages, add_generation_prompt)
            cases.append(case)
    out = os.path.join(ROOT, "tests/golden/chat-templates.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"today": TODAY.strftime("%Y-%m-%d"), "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(cases)} cases, {sum('error' in c for c in cases)} expected errors")


if __name__ == "__main__":
    main()
