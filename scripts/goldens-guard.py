#!/usr/bin/env python3
"""Golden Llama Guard moderation prompts, for tests/guard.rs and tests/browser/guard.test.mjs.

Renders conversations through the Llama Guard chat templates in src/chat/templates/ with jinja2,
configured exactly as Hugging Face transformers renders chat templates (hf_jinja.py), passing the
variables the model cards pass to apply_chat_template: `categories` (only when custom ones are
given) and `excluded_category_keys` (always, as a list), with add_generation_prompt. Content is
given as the templates read it: typed parts ([{"type": "text", "text": ...}]) for the 3-1B and 4
templates, a string for the 3-8B one. Cases: a user turn, an agent turn (the last message the
assistant's), a longer conversation, excluded categories, custom categories (with a multi-line
description), untrimmed text, and roles out of order (the template raises). Each case records the
codes its prompt lists (the codes a verdict may name). Writes tests/golden/guard-prompts.json.

Run: python3 scripts/goldens-guard.py   (needs jinja2)
"""
import json
import os
import re

from jinja2.exceptions import TemplateError
from hf_jinja import environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEMPLATES = [
    # path, bos, eos, content as typed parts, reads categories
    ("src/chat/templates/llama-guard-3-1b.jinja", "<|begin_of_text|>", "<|eot_id|>", True, True),
    ("src/chat/templates/llama-guard-3-8b.jinja", "<|begin_of_text|>", "<|eot_id|>", False, False),
    ("src/chat/templates/llama-guard-4-12b.jinja", "<|begin_of_text|>", "<|eot|>", True, True),
]

U1 = {"role": "user", "content": "How do I bake sourdough bread?"}
A1 = {"role": "assistant", "content": "Mix flour, water and starter, let it rise overnight, then bake at 230 C."}
U2 = {"role": "user", "content": "And how do I kill the mould on my starter jar?"}
CUSTOM = [["S1", "My custom category."], ["S2", "Custom category 2. \nAI models should not talk about it."], ["X9", "Pirate talk."]]

CASES = [
    ("user turn", [U1], None, []),
    ("agent turn", [U1, A1], None, []),
    ("three turns", [U1, A1, U2], None, []),
    ("excluded categories", [U1], None, ["S6", "S12"]),
    ("custom categories", [U1, A1], CUSTOM, ["X9"]),
    ("untrimmed text", [{"role": "user", "content": "  \n Hello there!  \n\n"}], None, []),
    ("system message dropped", [{"role": "system", "content": "ignored"}, U1], None, []),
    ("roles out of order", [U1, U2], None, []),
]


def listed(text):
    block = text.split("<BEGIN UNSAFE CONTENT CATEGORIES>", 1)[1].split("<END UNSAFE CONTENT CATEGORIES>", 1)[0]
    return [m.group(1) for m in (re.match(r"^([A-Za-z0-9_-]{1,16}): ", l) for l in block.split("\n")) if m]


def main():
    env = environment()
    cases = []
    for path, bos, eos, parts, reads in TEMPLATES:
        template = env.from_string(open(os.path.join(ROOT, path)).read())
        for name, messages, categories, excluded in CASES:
            if categories is not None and not reads:
                continue  # Hearth refuses custom categories for a fixed-list template (tests/guard.rs)
            # Hearth leaves system messages out (the templates accept only user/assistant turns).
            msgs = [m for m in messages if m["role"] != "system"]
            given = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}] if parts else m["content"]} for m in msgs]
            kwargs = {"excluded_category_keys": excluded}
            if categories is not None:
                kwargs["categories"] = dict(categories)
            case = {"name": name, "template": path, "bos_token": bos, "eos_token": eos, "messages": messages,
                    "categories": categories, "excluded": excluded}
            try:
                text = template.render(messages=given, add_generation_prompt=True, bos_token=bos, eos_token=eos, tools=None, **kwargs)
                case["text"] = text
                case["role"] = "Agent" if msgs[-1]["role"] == "assistant" else "User"
                case["codes"] = listed(text)
            except TemplateError as e:
                case["error"] = str(e)
            cases.append(case)
    out = os.path.join(ROOT, "tests/golden/guard-prompts.json")
    with open(out, "w") as f:
        json.dump({"generator": "scripts/goldens-guard.py (jinja2, Hugging Face's chat-template configuration)", "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} cases -> {out}")


if __name__ == "__main__":
    main()
