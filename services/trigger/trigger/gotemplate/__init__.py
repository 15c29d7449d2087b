"""Go text/template with sprig functions, evaluated in Python with Go's semantics: trigger
templates (url, headers, body) and eventFilter (HariKube's `{{if FILTER}}true{{end}}`).

    t = compile_template("url", "https://fn/{{ .metadata.name }}")   # TemplateError if bad
    t.render(obj)                                                     # ExecError if it fails
    f = compile_filter("ne .status.availableReplicas 0")
    f.matches(obj)

Supported functions: FUNCTION_NAMES (Go's builtins and the sprig subset in sprig.py).
"""
from __future__ import annotations

from .builtins import BUILTINS
from .execute import ExecError, Template
from .parse import TemplateError
from .sprig import SPRIG

FUNCS = {**BUILTINS, **SPRIG}
FUNCTION_NAMES = tuple(sorted(FUNCS))


def compile_template(name: str, src: str) -> Template:
    return Template(name, src, FUNCS)


class Filter:
    def __init__(self, expr: str):
        self.expr = expr
        self.template = Template("filter_template", "{{if " + expr + "}}true{{end}}", FUNCS)

    def matches(self, data) -> bool:
        return self.template.render(data) == "true"


def compile_filter(expr: str) -> Filter:
    return Filter(expr)


__all__ = ["compile_template", "compile_filter", "Template", "Filter", "TemplateError",
           "ExecError", "FUNCTION_NAMES"]
