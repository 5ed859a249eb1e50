"""The list filter expressions of the Compute API, as far as clients use them.

Terms are `FIELD OP VALUE` with OP one of `=`, `!=`, `:` (has: `"prefix*"` matches a prefix, `*` a
present field), and the older `eq` / `ne` (a regular expression over the whole value). Terms
combine with AND and OR (AND binds tighter), or with parentheses side by side, which GCE reads
as AND: `(labels.a = "x") (name != "y")`. FIELD is a dotted path into the resource as JSON
(`labels.orbiter-orb`, `status`, `name`). A filter GCE would refuse raises FilterError.
"""

from __future__ import annotations

import re
from typing import Any

TOKEN = re.compile(r'\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:)|(?P<word>[^\s()=!:"]+))')


class FilterError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Invalid value for field 'filter': '{text}'. Invalid list filter expression.")
        kind = m.lastgroup or ""
        value = m.group(kind)
        out.append((kind, value))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _field(resource: Any, path: str) -> Any:
    node = resource
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _term(field: str, op: str, value: str):
    def test(resource: dict) -> bool:
        have = _field(resource, field)
        if op in ("eq", "ne"):
            hit = have is not None and re.fullmatch(value, _text(have)) is not None
            return hit if op == "eq" else not hit
        if op == ":":
            if value == "*":
                return have is not None
            if have is None:
                return False
            if isinstance(have, list):
                return any(_text(v) == value for v in have)
            return _text(have).startswith(value[:-1]) if value.endswith("*") else _text(have) == value
        hit = have is not None and _text(have) == value
        return hit if op == "=" else not hit

    return test


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens, self.pos, self.text = tokens, 0, text

    def fail(self) -> FilterError:
        return FilterError(f"Invalid value for field 'filter': '{self.text}'. Invalid list filter expression.")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.fail()
        self.pos += 1
        return tok

    def expr(self):
        parts = [self.conj()]
        while (tok := self.peek()) and tok == ("word", "OR"):
            self.take()
            parts.append(self.conj())
        return lambda r: any(p(r) for p in parts)

    def conj(self):
        parts = [self.unit()]
        while (tok := self.peek()) and tok[0] != "rp" and tok != ("word", "OR"):
            if tok == ("word", "AND"):
                self.take()
            parts.append(self.unit())
        return lambda r: all(p(r) for p in parts)

    def unit(self):
        kind, value = self.take()
        if kind == "lp":
            inner = self.expr()
            if self.take()[0] != "rp":
                raise self.fail()
            return inner
        if kind != "word":
            raise self.fail()
        op_kind, op = self.take()
        if not (op_kind == "op" or (op_kind == "word" and op in ("eq", "ne"))):
            raise self.fail()
        v_kind, v = self.take()
        if v_kind == "str":
            v = bytes(v[1:-1], "utf-8").decode("unicode_escape")
        elif v_kind != "word":
            raise self.fail()
        return _term(value, op, v)


def compile_filter(text: str | None):
    """A predicate over resources (JSON dicts) for a filter; everything matches an empty filter."""
    if not text or not text.strip():
        return lambda r: True
    parser = _Parser(_tokens(text), text)
    predicate = parser.expr()
    if parser.peek() is not None:
        raise parser.fail()
    return predicate
