"""IoT Hub's query language, the part deployments and fleet tools use: ``SELECT * | fields | COUNT() AS n FROM
devices | devices.modules [WHERE condition]`` and target conditions (``tags.ring='canary' AND
properties.reported.x.y > 3``, ``IN [...]``, ``NOT``, ``IS_DEFINED(path)``, parentheses). Pure functions over twin
documents (the JSON the service API returns for a twin)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|<=|>=|=|<|>)
                        |(?P<punct>[(),\[\]*])|(?P<name>[A-Za-z_$][\w$.\-]*))""", re.X)
_UNDEFINED = object()


class QueryError(ValueError):
    """A query or target condition this hub cannot read."""


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, at = [], 0
    text = text.strip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise QueryError(f"cannot read {text[at:at + 20]!r} in {text!r}")
        at = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "str":
            out.append(("value", value[1:-1].replace("''", "'")))
        elif kind == "num":
            out.append(("value", float(value) if "." in value else int(value)))
        elif kind == "name" and value.lower() in ("true", "false", "null"):
            out.append(("value", {"true": True, "false": False, "null": None}[value.lower()]))
        elif kind == "name" and value.upper() in ("AND", "OR", "NOT", "IN", "SELECT", "FROM", "WHERE", "AS"):
            out.append(("kw", value.upper()))
        else:
            out.append((kind or "", value))
    return out


def lookup(doc: dict[str, Any], path: str) -> Any:
    """A dotted path in a twin document; ``_UNDEFINED`` when absent."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _UNDEFINED
        value = value[part]
    return value


Predicate = Callable[[dict[str, Any]], bool]


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens, self.at = tokens, 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str | None = None, value: Any = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value is not None and token[1] != value):
            rest = " ".join(str(t[1]) for t in self.tokens[self.at:]) or "the end"
            raise QueryError(f"expected {value or kind} at {rest}")
        self.at += 1
        return token

    def accept(self, kind: str, value: Any) -> bool:
        if self.peek() == (kind, value):
            self.at += 1
            return True
        return False

    def condition(self) -> Predicate:
        left = self.conjunction()
        while self.accept("kw", "OR"):
            right, prev = self.conjunction(), left
            left = lambda doc, a=prev, b=right: a(doc) or b(doc)  # noqa: E731
        return left

    def conjunction(self) -> Predicate:
        left = self.negation()
        while self.accept("kw", "AND"):
            right, prev = self.negation(), left
            left = lambda doc, a=prev, b=right: a(doc) and b(doc)  # noqa: E731
        return left

    def negation(self) -> Predicate:
        if self.accept("kw", "NOT"):
            inner = self.negation()
            return lambda doc: not inner(doc)
        if self.accept("punct", "("):
            inner = self.condition()
            self.take("punct", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        kind, name = self.take("name")
        if name.upper() == "IS_DEFINED" and self.accept("punct", "("):
            path = self.take("name")[1]
            self.take("punct", ")")
            return lambda doc: lookup(doc, path) is not _UNDEFINED
        negate = self.accept("kw", "NOT")
        if self.accept("kw", "IN"):
            self.take("punct", "[")
            values = [self.take("value")[1]]
            while self.accept("punct", ","):
                values.append(self.take("value")[1])
            self.take("punct", "]")
            def member(doc: dict[str, Any]) -> bool:
                value = lookup(doc, name)
                return value is not _UNDEFINED and (value in values) != negate  # undefined is neither
            return member
        if negate:
            raise QueryError("NOT goes before a condition, or before IN")
        op = self.take("op")[1]
        value = self.take("value")[1]
        return lambda doc: _compare(lookup(doc, name), op, value)


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is _UNDEFINED:
        return False
    if op == "=":
        return bool(left == right)
    if op in ("!=", "<>"):
        return bool(left != right)
    if isinstance(left, bool) or isinstance(right, bool) or type(left) is not type(right) and not (
            isinstance(left, (int, float)) and isinstance(right, (int, float))):
        return False
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]


def condition(text: str) -> Predicate:
    """A target condition (``*`` matches every device)."""
    if text.strip() in ("", "*"):
        return lambda doc: True
    parser = _Parser(_tokens(text))
    predicate = parser.condition()
    if parser.peek() is not None:
        raise QueryError(f"unexpected {parser.peek()[1]!r} in {text!r}")  # type: ignore[index]
    return predicate


@dataclass(frozen=True)
class Query:
    source: str  # "devices" or "devices.modules"
    fields: tuple[str, ...]  # () for *
    count_as: str | None
    where: Predicate

    def run(self, twins: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = [t for t in twins if self.where(t)]
        if self.count_as:
            return [{self.count_as: len(rows)}]
        if not self.fields:
            return rows
        out = []
        for row in rows:
            picked = {}
            for path in self.fields:
                value = lookup(row, path)
                if value is not _UNDEFINED:
                    picked[path.split(".")[-1]] = value
            out.append(picked)
        return out


def parse_query(text: str) -> Query:
    tokens = _tokens(text)
    parser = _Parser(tokens)
    parser.take("kw", "SELECT")
    fields: list[str] = []
    count_as = None
    if parser.accept("punct", "*"):
        pass
    elif parser.peek() and str(parser.peek()[1]).upper() == "COUNT":  # type: ignore[index]
        parser.take("name")
        parser.take("punct", "(")
        parser.take("punct", ")")
        count_as = parser.take("name")[1] if parser.accept("kw", "AS") else "count"
    else:
        fields.append(parser.take("name")[1])
        while parser.accept("punct", ","):
            fields.append(parser.take("name")[1])
    parser.take("kw", "FROM")
    source = parser.take("name")[1]
    if source not in ("devices", "devices.modules"):
        raise QueryError(f"FROM {source}: this hub answers queries over devices and devices.modules")
    where: Predicate = lambda doc: True  # noqa: E731
    if parser.accept("kw", "WHERE"):
        where = parser.condition()
    if parser.peek() is not None:
        raise QueryError(f"unexpected {parser.peek()[1]!r} in {text!r}")  # type: ignore[index]
    return Query(source, tuple(fields), count_as, where)
