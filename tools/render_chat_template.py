#!/usr/bin/env python3
"""Renders chat templates with jinja2 the way transformers' apply_chat_template
does (the reference the C++ renderer, src/text/chat_template.cpp, is tested
against; tests/unit/test_chat_template.cpp).

  render_chat_template.py TEMPLATE VARS.json   prints the rendered text
  render_chat_template.py --batch CASES.json   CASES: [{"template": str, "vars": {...}}, ...];
                                               prints [{"text": str} | {"error": str}, ...]

VARS is the template's variables as given (messages, add_generation_prompt,
bos_token, ...); nothing is added. Needs Debian's python3-jinja2.
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces jinja2's tojson (which escapes HTML characters).
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


class Generation(jinja2.ext.Extension):
    """transformers' {% generation %}...{% endgeneration %} (its AssistantTracker
    extension): the body rendered as a call block; the tracking of assistant
    token positions it also does does not change the text."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    env = environment()
    if len(sys.argv) == 3 and sys.argv[1] == "--batch":
        with open(sys.argv[2], encoding="utf-8") as f:
            cases = json.load(f)
        compiled = {}
        results = []
        for case in cases:
            try:
                src = case["template"]
                if src not in compiled:
                    compiled[src] = env.from_string(src)
                results.append({"text": compiled[src].render(**case["vars"])})
            except Exception as e:  # the C++ side must fail on the same cases
                results.append({"error": f"{type(e).__name__}: {e}"})
        sys.stdout.write(json.dumps(results, ensure_ascii=False))
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        src = f.read()
    with open(sys.argv[2], encoding="utf-8") as f:
        variables = json.load(f)
    sys.stdout.write(env.from_string(src).render(**variables))


if __name__ == "__main__":
    main()
