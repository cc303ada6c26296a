"""jinja2 configured exactly as Hugging Face transformers renders chat templates (sandboxed,
trim_blocks, lstrip_blocks, loopcontrols, raise_exception, strftime_now, tojson with
ensure_ascii=False), for the golden scripts (goldens-chat.py, goldens-tools.py). strftime_now is
pinned to 2026-11-26 so the goldens are reproducible."""
import datetime
import json

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

TODAY = datetime.datetime(2026, 11, 26, 12, 0, 0)


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: TODAY.strftime(fmt)
    return env
