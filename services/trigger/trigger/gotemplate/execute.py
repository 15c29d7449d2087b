"""Executing a parsed Go text/template over Kubernetes object data, with Go's semantics:
missing map keys are <no value> (not errors), field access on a nil value is an error, `and`
and `or` short-circuit and return an operand, typed function parameters are checked the way
reflect would check them. Template execution is bounded (output size, nesting depth) so a
trigger's template cannot exhaust the service."""
from __future__ import annotations

from dataclasses import dataclass

from .parse import (Action, Branch, Chain, Command, Dot, Field, GoInt, Identifier, Literal,
                    Loop, Parser, Pipe, TemplateCall, TemplateError, Text, Variable)
from .values import MISSING, fmt_v, go_type, truth

MAX_OUTPUT = 4 << 20        # bytes a template may produce
MAX_DEPTH = 100             # nested {{template}} calls


@dataclass(frozen=True)
class GoFunc:
    """A template function: `params` are Go parameter types ("value": the raw reflect.Value,
    MISSING included; "any": interface{}; "string", "int", "int64", "float64", "bool", "map"),
    `variadic` the type of a trailing ...parameter. `lazy`: and/or (arguments evaluated one at
    a time)."""
    fn: object
    params: tuple = ()
    variadic: str | None = None
    lazy: bool = False


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class ExecError(TemplateError):
    pass


class Template:
    """A parsed template; render(data) -> str. Raises TemplateError (parse) or ExecError."""

    def __init__(self, name: str, src: str, funcs: dict[str, GoFunc]):
        self.name = name
        self.funcs = funcs
        p = Parser(src, name)
        self.tree = p.parse()
        self.defines = p.defines
        for body in [self.tree, *self.defines.values()]:
            self._check(body)

    def _check(self, nodes) -> None:
        """Go resolves function names at parse time: an unknown one is a parse error."""
        for n in nodes:
            if isinstance(n, Action):
                self._check_pipe(n.pipe, n.line)
            elif isinstance(n, Branch):
                self._check_pipe(n.pipe, n.line)
                self._check(n.body)
                self._check(n.else_body or [])
            elif isinstance(n, TemplateCall) and n.pipe:
                self._check_pipe(n.pipe, n.line)

    def _check_pipe(self, pipe: Pipe, line: int) -> None:
        for cmd in pipe.cmds:
            for a in cmd.args:
                if isinstance(a, Identifier) and a.name not in self.funcs:
                    raise TemplateError(f'template: {self.name}:{line}: function "{a.name}" not defined')
                if isinstance(a, Chain) and isinstance(a.node, Pipe):
                    self._check_pipe(a.node, line)

    def render(self, data) -> str:
        st = _State(self, data)
        try:
            st.walk(data, self.tree)
        except (_Break, _Continue):  # pragma: no cover - the parser refuses these
            pass
        except RecursionError:
            raise ExecError(f"template: {self.name}: exceeded maximum template depth") from None
        return "".join(st.out)


class _State:
    def __init__(self, tmpl: Template, data):
        self.t = tmpl
        self.out: list[str] = []
        self.size = 0
        self.vars: list[list] = [["$", data]]
        self.depth = 0
        self.line = 0

    def fail(self, msg: str):
        raise ExecError(f"template: {self.t.name}:{self.line}: executing {self.t.name!r}: {msg}")

    def emit(self, s: str) -> None:
        self.size += len(s)
        if self.size > MAX_OUTPUT:
            self.fail(f"output exceeds {MAX_OUTPUT} bytes")
        self.out.append(s)

    # ---- statements ----

    def walk(self, dot, nodes) -> None:
        for n in nodes:
            if isinstance(n, Text):
                self.emit(n.text)
            elif isinstance(n, Action):
                self.line = n.line
                v = self.pipeline(dot, n.pipe)
                if not n.pipe.decls:
                    self.emit(fmt_v(v))
            elif isinstance(n, Branch):
                self.branch(dot, n)
            elif isinstance(n, TemplateCall):
                self.call_template(dot, n)
            elif isinstance(n, Loop):
                raise _Break() if n.kind == "break" else _Continue()

    def branch(self, dot, n: Branch) -> None:
        self.line = n.line
        mark = len(self.vars)
        v = self.pipeline(dot, n.pipe)
        try:
            if n.kind == "if":
                self.walk(dot, n.body if truth(v) else (n.else_body or []))
            elif n.kind == "with":
                if truth(v):
                    self.walk(v, n.body)
                else:
                    self.walk(dot, n.else_body or [])
            else:
                self.range(dot, n, v, mark)
        finally:
            del self.vars[mark:]

    def range(self, dot, n: Branch, v, mark: int) -> None:
        if v is MISSING or v is None:
            items = []
        elif isinstance(v, dict):
            items = [(k, v[k]) for k in sorted(v)]
        elif isinstance(v, (list, tuple)):
            items = list(enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            if len(n.pipe.decls) > 1:
                self.fail(f"can't use {v} to iterate over more than one variable")
            items = [(GoInt(i) if isinstance(v, GoInt) else i, GoInt(i) if isinstance(v, GoInt) else i)
                     for i in range(max(v, 0))]
        else:
            self.fail(f"range can't iterate over {fmt_v(v)}")
        if not items:
            self.walk(dot, n.else_body or [])
            return
        for k, elem in items:
            if isinstance(k, int) and not isinstance(v, dict):
                k = GoInt(k)
            decls = n.pipe.decls
            if len(decls) == 1:
                self.setvar(mark, decls[0], elem, n.pipe.is_assign)
            elif len(decls) == 2:
                self.setvar(mark, decls[0], k, n.pipe.is_assign)
                self.setvar(mark, decls[1], elem, n.pipe.is_assign)
            inner = len(self.vars)
            try:
                self.walk(elem, n.body)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.vars[inner:]

    def setvar(self, mark, name, value, assign) -> None:
        if assign:
            for slot in reversed(self.vars):
                if slot[0] == name:
                    slot[1] = value
                    return
        for slot in self.vars[mark:]:
            if slot[0] == name:
                slot[1] = value
                return
        self.vars.append([name, value])

    def call_template(self, dot, n: TemplateCall) -> None:
        self.line = n.line
        body = self.t.defines.get(n.name)
        if body is None:
            self.fail(f'template: no template "{n.name}" associated with template "{self.t.name}"')
        new_dot = self.pipeline(dot, n.pipe) if n.pipe else MISSING
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail("exceeded maximum template depth (100)")
        saved, self.vars = self.vars, [["$", new_dot]]
        try:
            self.walk(new_dot, body)
        finally:
            self.vars = saved
            self.depth -= 1

    # ---- expressions ----

    def pipeline(self, dot, pipe: Pipe):
        value = MISSING
        final = _NOFINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, final)
            final = value
        if value is None:
            value = MISSING  # a nil interface leaves a pipeline as "no value"
        for name in pipe.decls:
            if pipe.is_assign:
                self.setvar(0, name, value, True)
            else:
                self.vars.append([name, value])
        return value

    def command(self, dot, cmd: Command, final):
        first = cmd.args[0]
        if isinstance(first, Field):
            return self.field_chain(dot, dot, first.names, cmd.args, final)
        if isinstance(first, Chain):
            if len(cmd.args) > 1 or final is not _NOFINAL:
                if not first.names:
                    self.fail(f"can't give argument to non-function {first}")
            v = self.chain(dot, first, cmd.args, final)
            return v
        if isinstance(first, Identifier):
            return self.call(dot, first.name, cmd.args, final)
        if isinstance(first, Variable):
            return self.variable(dot, first, cmd.args, final)
        if len(cmd.args) > 1 or final is not _NOFINAL:
            self.fail(f"can't give argument to non-function {self.describe(first)}")
        if isinstance(first, Dot):
            return dot
        if isinstance(first, Literal):
            if first.value is None:
                self.fail("nil is not a command")
            return first.value
        self.fail(f"can't evaluate command {first!r}")

    @staticmethod
    def describe(node) -> str:
        if isinstance(node, Literal):
            return node.text
        if isinstance(node, Dot):
            return "."
        return repr(node)

    def lookup(self, name: str):
        for slot in reversed(self.vars):
            if slot[0] == name:
                return slot[1]
        self.fail(f"undefined variable: {name}")

    def variable(self, dot, node: Variable, args, final):
        v = self.lookup(node.name)
        if not node.names:
            if len(args) > 1 or final is not _NOFINAL:
                self.fail(f"can't give argument to non-function {node.name}")
            return v
        return self.field_chain(dot, v, node.names, args, final)

    def chain(self, dot, node: Chain, args, final):
        if isinstance(node.node, Pipe):
            v = self.pipeline(dot, node.node)
        else:
            v = self.arg(dot, node.node)
        if not node.names:
            return v
        return self.field_chain(dot, v, node.names, args, final)

    def field_chain(self, dot, receiver, names, args, final):
        for name in names[:-1]:
            receiver = self.field(receiver, name, False)
        has_args = len(args) > 1 or final is not _NOFINAL
        return self.field(receiver, names[-1], has_args)

    def field(self, receiver, name: str, has_args: bool):
        if receiver is MISSING:
            return MISSING
        if receiver is None:
            self.fail(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, dict):
            if has_args:
                self.fail(f"{name} is not a method but has arguments")
            return receiver.get(name, MISSING)
        self.fail(f"can't evaluate field {name} in type {go_type(receiver)}")

    def arg(self, dot, node):
        """An argument's value before type conversion."""
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Field):
            return self.field_chain(dot, dot, node.names, [node], _NOFINAL)
        if isinstance(node, Variable):
            v = self.lookup(node.name)
            return self.field_chain(dot, v, node.names, [node], _NOFINAL) if node.names else v
        if isinstance(node, Chain):
            return self.chain(dot, node, [node], _NOFINAL)
        if isinstance(node, Pipe):
            return self.pipeline(dot, node)
        if isinstance(node, Identifier):
            return self.call(dot, node.name, [node], _NOFINAL)
        self.fail(f"can't handle {node!r} as an argument")

    def call(self, dot, name: str, args, final):
        f = self.t.funcs[name]
        argnodes = args[1:]
        n_in = len(argnodes) + (0 if final is _NOFINAL else 1)
        if f.variadic is not None:
            if n_in < len(f.params):
                self.fail(f"wrong number of args for {name}: want at least {len(f.params)} got {n_in}")
        elif n_in != len(f.params):
            self.fail(f"wrong number of args for {name}: want {len(f.params)} got {n_in}")
        if f.lazy:
            v = MISSING
            nodes = list(argnodes)
            values = [lambda node=node: self.arg(dot, node) for node in nodes]
            if final is not _NOFINAL:
                values.append(lambda: final)
            for get in values:
                v = get()
                if truth(v) == (name == "or"):
                    return v
            return v
        vals = []
        for i, node in enumerate(argnodes):
            typ = f.params[i] if i < len(f.params) else f.variadic
            vals.append(self.convert(name, self.arg(dot, node), typ, node))
        if final is not _NOFINAL:
            typ = f.params[len(argnodes)] if len(argnodes) < len(f.params) else f.variadic
            vals.append(self.convert(name, final, typ, None))
        try:
            return f.fn(*vals)
        except ExecError:
            raise
        except FuncError as err:
            self.fail(f"error calling {name}: {err}")
        except (ValueError, TypeError, ZeroDivisionError, IndexError, KeyError, OverflowError) as err:
            self.fail(f"error calling {name}: {err}")

    def convert(self, fname: str, v, typ: str, node):
        if typ == "value":
            return v
        if typ == "any":
            return None if v is MISSING else v
        if typ == "map" and v is MISSING:
            return None   # a nil map
        if v is MISSING or (v is None and typ != "map"):
            self.fail(f"invalid value; expected {_GO[typ]}")
        if isinstance(node, Literal) and isinstance(v, int) and not isinstance(v, bool):
            if typ in ("int", "int64"):
                return GoInt(v) if typ == "int" else int(v)
            if typ == "float64":
                return float(v)
        ok = {"string": lambda x: isinstance(x, str),
              "int": lambda x: isinstance(x, GoInt),
              "int64": lambda x: isinstance(x, int) and not isinstance(x, (bool, GoInt)),
              "float64": lambda x: isinstance(x, float),
              "bool": lambda x: isinstance(x, bool),
              "map": lambda x: x is None or isinstance(x, dict)}[typ](v)
        if not ok:
            self.fail(f"wrong type for value; expected {_GO[typ]}; got {go_type(v)}")
        return v


class FuncError(Exception):
    """A template function returned an error (Go's second return value)."""


_GO = {"string": "string", "int": "int", "int64": "int64", "float64": "float64", "bool": "bool",
       "map": "map[string]interface {}"}
_NOFINAL = object()
