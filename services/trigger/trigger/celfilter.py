"""The CEL filter of a trigger (spec.celFilter, KubeFabric's addition to HariKube's fields):
compiled once when the trigger is read, evaluated per event over

    event.type      "ADDED" | "MODIFIED" | "DELETED"
    event.key       the object's storage key, event.revision its mod_revision
    object          the object (its last state for DELETED)
    oldObject       the previous state (null for ADDED)

with the maintained CEL implementation cel-rust (PyPI common-expression-language). A syntax
error or a variable that does not exist fails the compile (reported in the trigger's status);
an expression must give a bool.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os


def _load_cel():
    """cel-rust's extension module itself: the `cel` package's __init__ also imports its CLI
    (typer, rich, prompt_toolkit: seconds of start-up for nothing the service uses)."""
    spec = importlib.util.find_spec("cel")
    if spec is None or not spec.origin:
        raise ImportError("common-expression-language is not installed")
    folder = os.path.dirname(spec.origin)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "cel" + suffix)
        if os.path.exists(path):
            loader = importlib.machinery.ExtensionFileLoader("cel.cel", path)
            module = importlib.util.module_from_spec(
                importlib.util.spec_from_file_location("cel.cel", path, loader=loader))
            loader.exec_module(module)
            return module
    import cel  # an unusual layout: the package as it is
    return cel


cel = _load_cel()

VARIABLES = frozenset({"event", "object", "oldObject"})


class CELError(ValueError):
    pass


class CELFilter:
    def __init__(self, expr: str):
        self.expr = expr
        try:
            self.program = cel.compile(expr)
        except (ValueError, RuntimeError) as err:
            raise CELError(f"celFilter: {_one_line(err)}") from None
        unknown = set(self.program.variables()) - VARIABLES
        if unknown:
            raise CELError(f"celFilter: undeclared reference to {', '.join(sorted(unknown))!s} "
                           f"(use event, object, oldObject)")

    def matches(self, event: dict, obj: dict, old: dict | None) -> bool:
        try:
            out = self.program.execute({"event": event, "object": obj, "oldObject": old})
        except Exception as err:  # cel-rust raises KeyError/RuntimeError/TypeError/ValueError
            raise CELError(f"celFilter: {_one_line(err)}") from None
        if not isinstance(out, bool):
            raise CELError(f"celFilter: the expression gave {type(out).__name__}, not a bool")
        return out


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, KeyError):
        text = f"no such key: {text}"
    return " ".join(text.split("\n")[0:1]).strip() or type(err).__name__
