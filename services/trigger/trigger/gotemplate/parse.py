"""Go text/template syntax: a lexer and parser producing the tree execute.py walks.

Follows Go's text/template/parse (delimiters {{ }}, trim markers `{{- ` and ` -}}`, comments,
pipelines with declarations, if/else if/with/else with/range/break/continue/define/template/
block). Parse errors raise TemplateError with Go's wording where it matters: "template: NAME:
LINE: message".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


class TemplateError(ValueError):
    """A template that does not parse, or whose execution failed; one line."""


# ---- tree ----

@dataclass
class Text:
    text: str


@dataclass
class Command:
    args: list


@dataclass
class Pipe:
    line: int
    decls: list            # variable names ("$x")
    is_assign: bool        # `=` rather than `:=`
    cmds: list             # Command


@dataclass
class Action:
    line: int
    pipe: Pipe


@dataclass
class Branch:              # if / with / range
    kind: str
    line: int
    pipe: Pipe
    body: list
    else_body: list | None


@dataclass
class TemplateCall:
    line: int
    name: str
    pipe: Pipe | None


@dataclass
class Loop:
    kind: str              # "break" or "continue"
    line: int


@dataclass
class Field:
    names: list


@dataclass
class Variable:
    name: str
    names: list = field(default_factory=list)   # fields after it ($x.a.b)


@dataclass
class Dot:
    pass


@dataclass
class Chain:               # (pipeline).a.b
    node: object
    names: list


@dataclass
class Identifier:
    name: str


@dataclass
class Literal:
    value: object          # str, bool, None (nil), GoInt, float
    text: str


class GoInt(int):
    """An integer constant of the template (Go's `int`, as opposed to the int64 of JSON data)."""


# ---- lexer ----

_SPACE = " \t\r\n"
_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]+(?![.eE0-9])|"
                     r"(\d[\d_]*)?\.?\d*([eE][+-]?\d+)?)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue", "nil", "true", "false"}


@dataclass
class Tok:
    kind: str      # text, open, close, space, field, var, ident, keyword, string, char, number,
                   # bool, nil, pipe, lparen, rparen, declare, assign, comma, dot, eof
    val: str
    line: int


def lex(src: str, name: str) -> list[Tok]:
    toks: list[Tok] = []
    i, line, n = 0, 1, len(src)
    while i < n:
        j = src.find("{{", i)
        if j < 0:
            toks.append(Tok("text", src[i:], line))
            break
        text = src[i:j]
        trim_left = src.startswith("{{- ", j) or src.startswith("{{-\t", j) or \
            src.startswith("{{-\n", j) or src.startswith("{{-\r", j)
        if trim_left:
            text = text.rstrip(_SPACE)
        if text:
            toks.append(Tok("text", text, line))
        line += src.count("\n", i, j)
        i = j + (3 if trim_left else 2)
        # a comment: {{/* ... */}}
        k = i
        while trim_left and k < n and src[k] in _SPACE:
            k += 1
        if src.startswith("/*", k):
            end = src.find("*/", k + 2)
            if end < 0:
                raise TemplateError(f"template: {name}:{line}: unclosed comment")
            after = end + 2
            trim_right = False
            if src.startswith(" -}}", after) or (after < n and src[after] in _SPACE
                                                 and src.startswith("-}}", after + 1)):
                trim_right, after = True, after + 1 + 3
            elif src.startswith("}}", after):
                after += 2
            else:
                raise TemplateError(f"template: {name}:{line}: comment ends before closing delimiter")
            line += src.count("\n", i, after)
            i = after
            if trim_right:
                while i < n and src[i] in _SPACE:
                    line += src[i] == "\n"
                    i += 1
            continue
        toks.append(Tok("open", "{{", line))
        i, line = _lex_action(src, i, line, name, toks)
        if toks[-1].val == "-}}":
            while i < n and src[i] in _SPACE:
                line += src[i] == "\n"
                i += 1
    toks.append(Tok("eof", "", line))
    return toks


def _lex_action(src, i, line, name, toks):
    n = len(src)
    depth = 0
    while True:
        if i >= n:
            raise TemplateError(f"template: {name}:{line}: unclosed action")
        c = src[i]
        if c in _SPACE:
            j = i
            while j < n and src[j] in _SPACE:
                j += 1
            if src.startswith("-}}", j) and j > i:
                toks.append(Tok("close", "-}}", line))
                line += src.count("\n", i, j)
                return j + 3, line
            line += src.count("\n", i, j)
            toks.append(Tok("space", " ", line))
            i = j
            continue
        if src.startswith("}}", i):
            if depth:
                raise TemplateError(f"template: {name}:{line}: unclosed left paren")
            toks.append(Tok("close", "}}", line))
            return i + 2, line
        if c == "|":
            toks.append(Tok("pipe", c, line))
            i += 1
        elif c == "(":
            depth += 1
            toks.append(Tok("lparen", c, line))
            i += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"template: {name}:{line}: unexpected right paren")
            toks.append(Tok("rparen", c, line))
            i += 1
        elif c == ",":
            toks.append(Tok("comma", c, line))
            i += 1
        elif src.startswith(":=", i):
            toks.append(Tok("declare", ":=", line))
            i += 2
        elif c == "=":
            toks.append(Tok("assign", "=", line))
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                if src[j] == "\\":
                    j += 1
                if j < n and src[j] == "\n":
                    raise TemplateError(f"template: {name}:{line}: unterminated quoted string")
                j += 1
            if j >= n:
                raise TemplateError(f"template: {name}:{line}: unterminated quoted string")
            toks.append(Tok("string", src[i:j + 1], line))
            i = j + 1
        elif c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise TemplateError(f"template: {name}:{line}: unterminated raw quoted string")
            toks.append(Tok("rawstring", src[i:j + 1], line))
            line += src.count("\n", i, j)
            i = j + 1
        elif c == "'":
            j = i + 1
            while j < n and src[j] != "'":
                if src[j] == "\\":
                    j += 1
                j += 1
            toks.append(Tok("char", src[i:j + 1], line))
            i = j + 1
        elif c == "$":
            m = _IDENT.match(src, i + 1)
            v = "$" + (m[0] if m else "")
            toks.append(Tok("var", v, line))
            i += len(v)
        elif c == ".":
            m = _IDENT.match(src, i + 1)
            if m:
                toks.append(Tok("field", m[0], line))
                i = m.end()
            elif i + 1 < n and src[i + 1].isdigit():
                m = _NUMBER.match(src, i)
                toks.append(Tok("number", m[0], line))
                i = m.end()
            else:
                toks.append(Tok("dot", ".", line))
                i += 1
        elif c.isdigit() or (c in "+-" and i + 1 < n and (src[i + 1].isdigit() or src[i + 1] == ".")):
            m = _NUMBER.match(src, i)
            if not m or not m[0]:
                raise TemplateError(f"template: {name}:{line}: bad number syntax: {src[i:i + 10]!r}")
            end = m.end()
            if end < n and (src[end].isalnum() or src[end] == "_"):
                raise TemplateError(f"template: {name}:{line}: bad number syntax: "
                                    f"{src[i:end + 1]!r}")
            toks.append(Tok("number", m[0], line))
            i = end
        elif c.isalpha() or c == "_":
            m = _IDENT.match(src, i)
            w = m[0]
            kind = "keyword" if w in _KEYWORDS else "ident"
            if w in ("true", "false"):
                kind = "bool"
            elif w == "nil":
                kind = "nil"
            toks.append(Tok(kind, w, line))
            i = m.end()
        else:
            raise TemplateError(f"template: {name}:{line}: unexpected {c!r} in command")


# ---- parser ----

class Parser:
    def __init__(self, src: str, name: str):
        self.name = name
        self.toks = lex(src, name)
        self.pos = 0
        self.defines: dict[str, list] = {}
        self.vars: list[list[str]] = [["$"]]

    def err(self, line: int, msg: str):
        raise TemplateError(f"template: {self.name}:{line}: {msg}")

    def peek(self, skip_space=True) -> Tok:
        p = self.pos
        while skip_space and self.toks[p].kind == "space":
            p += 1
        return self.toks[p]

    def next(self, skip_space=True) -> Tok:
        while skip_space and self.toks[self.pos].kind == "space":
            self.pos += 1
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def parse(self) -> list:
        body, end = self.list_until(())
        if end is not None:
            self.err(end.line, f"unexpected {{{{{end.val}}}}}")
        return body

    def list_until(self, stops: tuple) -> tuple[list, Tok | None]:
        """Nodes until {{end}}/{{else}} (returned as the stop token) or EOF (None)."""
        out: list = []
        while True:
            t = self.next(skip_space=False)
            if t.kind == "eof":
                if stops:
                    self.err(t.line, "unexpected EOF")
                return out, None
            if t.kind == "text":
                out.append(Text(t.val))
                continue
            # open
            k = self.peek()
            if k.kind == "keyword" and k.val in ("end", "else"):
                if k.val not in stops:
                    self.err(k.line, f"unexpected {{{{{k.val}}}}}")
                self.next()
                return out, k
            node = self.action()
            if node is not None:
                out.append(node)

    def close(self):
        t = self.next()
        if t.kind != "close":
            self.err(t.line, f"unexpected {t.val!r} in command" if t.kind != "eof" else "unclosed action")

    def action(self):
        k = self.peek()
        if k.kind == "keyword":
            if k.val in ("if", "with", "range"):
                self.next()
                return self.branch(k.val, k.line)
            if k.val in ("break", "continue"):
                self.next()
                if not any(s == "range" for s in self._stack()):
                    self.err(k.line, f"{{{{{k.val}}}}} outside {{{{range}}}}")
                self.close()
                return Loop(k.val, k.line)
            if k.val == "template":
                self.next()
                return self.template_call(k.line)
            if k.val in ("define", "block"):
                self.next()
                return self.define(k.val, k.line)
        pipe = self.pipeline("command", k.line)
        return Action(k.line, pipe)

    _branch_stack: list

    def _stack(self):
        return getattr(self, "_branch_stack", [])

    def branch(self, kind: str, line: int) -> Branch:
        self.vars.append(list(self.vars[-1]))
        pipe = self.pipeline(kind, line)
        self._branch_stack = self._stack() + [kind]
        body, stop = self.list_until(("end", "else"))
        else_body = None
        if stop.val == "else":
            nxt = self.peek()
            if kind in ("if", "with") and nxt.kind == "keyword" and nxt.val == kind:
                # {{else if ...}} / {{else with ...}}: a nested branch that shares our {{end}}
                self.next()
                self._branch_stack = self._branch_stack[:-1]
                else_body = [self.branch(kind, nxt.line)]
                self.vars.pop()
                return Branch(kind, line, pipe, body, else_body)
            self.close()
            self._branch_stack = self._branch_stack[:-1] + [kind + "-else"]
            else_body, stop = self.list_until(("end",))
        self.close()
        self._branch_stack = self._branch_stack[:-1]
        self.vars.pop()
        return Branch(kind, line, pipe, body, else_body)

    def template_call(self, line: int) -> TemplateCall:
        t = self.next()
        if t.kind not in ("string", "rawstring"):
            self.err(line, "unexpected token in template clause")
        name = _unquote(t.val, self, line)
        if self.peek().kind == "close":
            self.close()
            return TemplateCall(line, name, None)
        return TemplateCall(line, name, self.pipeline("template clause", line))

    def define(self, kind: str, line: int):
        t = self.next()
        if t.kind not in ("string", "rawstring"):
            self.err(line, f"unexpected token in {kind} clause")
        name = _unquote(t.val, self, line)
        pipe = None
        if kind == "block":
            pipe = self.pipeline("block clause", line)
        else:
            self.close()
        saved = self.vars
        self.vars = [["$"]]
        body, _ = self.list_until(("end",))
        self.vars = saved
        self.close()
        self.defines[name] = body
        return TemplateCall(line, name, pipe) if kind == "block" else None

    def pipeline(self, context: str, line: int) -> Pipe:
        decls, is_assign = [], False
        # declarations: $x := / $x, $y := / $x =
        save = self.pos
        t = self.peek()
        if t.kind == "var":
            self.next()
            t2 = self.peek()
            if t2.kind in ("declare", "assign"):
                self.next()
                decls, is_assign = [t.val], t2.kind == "assign"
            elif t2.kind == "comma" and context == "range":
                self.next()
                t3 = self.next()
                t4 = self.next()
                if t3.kind != "var" or t4.kind not in ("declare", "assign"):
                    self.err(line, "range can only initialize variables")
                decls, is_assign = [t.val, t3.val], t4.kind == "assign"
            else:
                self.pos = save
        for d in decls:
            if is_assign:
                if d not in self.vars[-1]:
                    self.err(line, f"undefined variable \"{d}\"")
            else:
                self.vars[-1].append(d)
        cmds = []
        while True:
            t = self.peek()
            if t.kind in ("close", "rparen"):
                if t.kind == "close":
                    self.close()
                break
            cmds.append(self.command(line))
            t = self.peek()
            if t.kind == "pipe":
                self.next()
                if self.peek().kind in ("close", "rparen"):
                    self.err(line, "missing command")
        if not cmds:
            self.err(line, f"missing value for {context}")
        for c in cmds[1:]:
            a0 = c.args[0]
            if isinstance(a0, Literal) or (isinstance(a0, Chain) is False and isinstance(a0, Dot)):
                self.err(line, f"non executable command in pipeline stage {cmds.index(c) + 1}")
        return Pipe(line, decls, is_assign, cmds)

    def command(self, line: int) -> Command:
        args = []
        while True:
            t = self.peek(skip_space=False)
            if t.kind == "space":
                self.next(skip_space=False)
                continue
            if t.kind in ("close", "rparen", "pipe"):
                break
            args.append(self.operand(line))
            t = self.peek(skip_space=False)
            if t.kind not in ("space", "close", "rparen", "pipe"):
                self.err(line, f"unexpected {t.val!r} in operand")
        if not args:
            self.err(line, "empty command")
        return Command(args)

    def operand(self, line: int):
        node = self.term(line)
        names = []
        while self.peek(skip_space=False).kind == "field":
            names.append(self.next(skip_space=False).val)
        if names:
            if isinstance(node, Field):
                node = Field(node.names + names)
            elif isinstance(node, Variable):
                node = Variable(node.name, node.names + names)
            elif isinstance(node, Dot):
                self.err(line, "unexpected . after term \".\"")
            elif isinstance(node, (Literal, Identifier)) and not isinstance(node, Chain):
                self.err(line, f"unexpected . after term {getattr(node, 'text', getattr(node, 'name', ''))!r}")
            else:
                node = Chain(node, names)
        return node

    def term(self, line: int):
        t = self.next(skip_space=False)
        k = t.kind
        if k == "field":
            return Field([t.val])
        if k == "dot":
            return Dot()
        if k == "var":
            if not any(t.val in scope for scope in self.vars[-1:]):
                self.err(line, f"undefined variable \"{t.val}\"")
            return Variable(t.val)
        if k == "ident":
            return Identifier(t.val)
        if k == "bool":
            return Literal(t.val == "true", t.val)
        if k == "nil":
            return Literal(None, "nil")
        if k in ("string", "rawstring"):
            return Literal(_unquote(t.val, self, line), t.val)
        if k == "char":
            s = _unquote('"' + t.val[1:-1].replace('"', '\\"') + '"', self, line)
            if len(s) != 1:
                self.err(line, f"malformed character constant: {t.val}")
            return Literal(GoInt(ord(s)), t.val)
        if k == "number":
            return Literal(_number(t.val, self, line), t.val)
        if k == "lparen":
            pipe = self.pipeline("parenthesized pipeline", line)
            r = self.next()
            if r.kind != "rparen":
                self.err(line, "unclosed left paren")
            return Chain(pipe, [])
        if k == "keyword":
            self.err(line, f"unexpected <{t.val}> in command")
        self.err(line, f"unexpected {t.val!r} in operand")


def _number(text: str, p: Parser, line: int):
    t = text.replace("_", "")
    try:
        low = t.lower().lstrip("+-")
        if low.startswith(("0x", "0b", "0o")) or (len(low) > 1 and low[0] == "0" and low.isdigit()):
            base = {"x": 16, "b": 2, "o": 8}.get(low[1], 8) if not low.isdigit() else 8
            digits = low[2:] if low[1] in "xbo" else low[1:]
            v = int(digits, base)
            return GoInt(-v if t.startswith("-") else v)
        if any(c in t for c in ".eE"):
            return float(t)
        return GoInt(int(t))
    except (ValueError, IndexError):
        p.err(line, f"bad number syntax: {text!r}")


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'"}


def _unquote(tok: str, p: Parser, line: int) -> str:
    if tok[0] == "`":
        return tok[1:-1].replace("\r", "")
    s, out, i = tok[1:-1], [], 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        e = s[i] if i < len(s) else ""
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 1
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            hexd = s[i + 1:i + 1 + width]
            if len(hexd) != width:
                p.err(line, f"invalid syntax in string {tok}")
            if e == "x":
                out.append(bytes([int(hexd, 16)]).decode("latin-1"))
            else:
                out.append(chr(int(hexd, 16)))
            i += 1 + width
        elif e in "01234567":
            out.append(chr(int(s[i:i + 3], 8)))
            i += 3
        else:
            p.err(line, f"invalid syntax in string {tok}")
    return "".join(out)
