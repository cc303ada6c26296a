#!/usr/bin/env python3
"""Golden tool-calling prompts, for tests/chat_tools.rs.

Renders conversations with OpenAI-shaped tools, assistant tool calls and tool results through
chat templates with jinja2, configured exactly as Hugging Face transformers renders chat templates
(as scripts/goldens-chat.py does), and writes tests/golden/chat-tools.json.

- "native" cases: the official templates that render tools themselves (Llama 3.1/3.2/3.3, Qwen2.5
  (ChatML/Hermes), Mistral Nemo). As transformers' apply_chat_template does, `tools` is the
  request's list of {type: "function", function: {...}} objects (None when no tools are offered)
  and an assistant message's tool_calls carry their arguments as parsed JSON (a dict), which is
  what the templates print with `tojson`.
- "injected" cases: templates that do not render tools (SmolLM2's, taken from
  SmolLM2-135M-Instruct's GGUF; Hearth's built-in fallbacks; Llama 2 chat; Phi-3.5). Hearth writes
  the tools into the conversation the Hermes way (src/chat/tools.rs `inject`, mirrored by `inject`
  below: a "# Tools" section appended to the system message, calls as <tool_call> blocks, results
  as <tool_response> user turns) and renders that with the model's own template.

Run: python3 scripts/goldens-tools.py   (needs jinja2)
"""
import json
import os

from jinja2.exceptions import TemplateError
from hf_jinja import TODAY, environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NATIVE = [
    ("tests/golden/templates/llama-3.1.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("tests/golden/templates/llama-3.2.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("tests/golden/templates/llama-3.3.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("tests/golden/templates/qwen2.5-chatml.jinja", "", "<|im_end|>"),
    ("tests/golden/templates/mistral-nemo.jinja", "<s>", "</s>"),
]
INJECTED = [
    ("tests/golden/templates/smollm2.jinja", "<|im_start|>", "<|im_end|>"),
    ("src/chat/templates/chatml.jinja", "<s>", "</s>"),
    ("src/chat/templates/llama3.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("src/chat/templates/llama2.jinja", "<s>", "</s>"),
    ("tests/golden/templates/llama-2-chat.jinja", "<s>", "</s>"),
    ("tests/golden/templates/phi-3.5.jinja", "<s>", "<|endoftext|>"),
]

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search_flights",
        "description": "Find flights between two airports on a day “of your choice” ✈",
        "parameters": {"type": "object", "properties": {
            "from": {"type": "string"}, "to": {"type": "string"},
            "passengers": {"type": "integer"},
            "options": {"type": "object", "properties": {"nonstop": {"type": "boolean"},
                                                         "cabins": {"type": "array", "items": {"type": "string"}}}}},
            "required": ["from", "to"]}}},
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant with tools."}
USER = {"role": "user", "content": "What's the weather in Paris?"}
# Ids of 9 letters and digits: Mistral's template refuses any other.
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call0w8Tz", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]}
RESULT = {"role": "tool", "tool_call_id": "call0w8Tz", "content": "{\"temperature\": 18, \"sky\": \"clear\"}"}
ANSWER = {"role": "assistant", "content": "It is 18 °C and clear in Paris."}
TWO_CALLS = {"role": "assistant", "content": "Let me check both.", "tool_calls": [
    {"id": "callA1b2C", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
    {"id": "callD3e4F", "type": "function", "function": {"name": "search_flights", "arguments": "{\"from\": \"CDG\", \"to\": \"OSL\", \"options\": {\"nonstop\": true, \"cabins\": [\"economy\"]}}"}}]}
TWO_RESULTS = [
    {"role": "tool", "tool_call_id": "callA1b2C", "content": "{\"temperature\": 3}"},
    {"role": "tool", "tool_call_id": "callD3e4F", "content": "[]"},
]

# (name, messages, tools offered, add_generation_prompt)
CONVERSATIONS = [
    ("tools offered", [SYSTEM, USER], True, True),
    ("tools offered, no system message", [USER], True, True),
    ("call and result, answer next", [SYSTEM, USER, CALL, RESULT], True, True),
    ("call, result and answer", [SYSTEM, USER, CALL, RESULT, ANSWER], True, False),
    ("call and result, tools not offered", [SYSTEM, USER, CALL, RESULT], False, True),
    ("two calls and their results", [SYSTEM, {"role": "user", "content": "Weather in Oslo, and flights there?"}, TWO_CALLS] + TWO_RESULTS, True, True),
]


def hf_messages(messages):
    """OpenAI's messages as transformers' templates get them: arguments parsed."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                               for c in m["tool_calls"]]
        out.append(m)
    return out


PREAMBLE_HEAD = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                 "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
PREAMBLE_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
                 "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                 "<args-json-object>}\n</tool_call>")


def inject(messages, tools):
    """src/chat/tools.rs `inject`: the conversation with its tools written the Hermes way."""
    out, rest = [], messages
    if tools:
        pre = PREAMBLE_HEAD + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools) + PREAMBLE_TAIL
        if messages and messages[0]["role"] == "system":
            out.append({"role": "system", "content": messages[0]["content"] + "\n\n" + pre})
            rest = messages[1:]
        else:
            out.append({"role": "system", "content": pre})
    last_tool = False
    for m in rest:
        if m["role"] == "tool":
            block = "<tool_response>\n" + m["content"] + "\n</tool_response>"
            if last_tool:
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block})
            last_tool = True
            continue
        last_tool = False
        if m.get("tool_calls"):
            parts = [m["content"]] if m.get("content") else []
            for c in m["tool_calls"]:
                args = json.dumps(json.loads(c["function"]["arguments"]), ensure_ascii=False)
                parts.append("<tool_call>\n{\"name\": \"%s\", \"arguments\": %s}\n</tool_call>" % (c["function"]["name"], args))
            out.append({"role": m["role"], "content": "\n".join(parts)})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def main():
    env = environment()
    cases = []
    for mode, templates in (("native", NATIVE), ("injected", INJECTED)):
        for path, bos, eos in templates:
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                template = env.from_string(f.read())
            for name, messages, offered, add_generation_prompt in CONVERSATIONS:
                case = {"template": path, "mode": mode, "bos_token": bos, "eos_token": eos, "conversation": name,
                        "messages": messages, "tools": TOOLS if offered else None,
                        "add_generation_prompt": add_generation_prompt}
                tools = TOOLS if offered else None
                if mode == "native":
                    rendered = dict(messages=hf_messages(messages), tools=tools)
                else:
                    rendered = dict(messages=inject(messages, tools))
                try:
                    case["expected"] = template.render(**rendered, add_generation_prompt=add_generation_prompt,
                                                       bos_token=bos, eos_token=eos)
                except TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    out = os.path.join(ROOT, "tests/golden/chat-tools.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"today": TODAY.strftime("%Y-%m-%d"), "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(cases)} cases, {sum('error' in c for c in cases)} expected errors")


if __name__ == "__main__":
    main()
