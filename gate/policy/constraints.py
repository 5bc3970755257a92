"""The constraint language of a policy's ``features:`` section: linear relations between features, parsed
without ``eval``.

A constraint is ``expression OP expression`` with ``OP`` one of ``<=``, ``>=``, ``==``, ``<``, ``>``, or an
implication ``if COMPARISON then COMPARISON``. Expressions are linear: sums and differences of numbers and
feature names, multiplied or divided by numbers (``total == loan + interest``, ``debt <= 0.4 * income``,
``if employed == 0 then income <= 1000``). A name that is not an identifier is written in backticks
(`` `monthly income` ``). Every comparison becomes ``sum(coefficient * feature) + constant OP 0`` with
``OP`` in ``<=``, ``<``, ``==``: the form the feasibility check and the attacks' repair and penalty read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

Relation = Literal["<=", "<", "=="]

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<quoted>`[^`]+`)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|(?P<op><=|>=|==|[-+*/()<>]))"
)
_KEYWORDS = {"if", "then"}
MAX_DEPTH = 32
"""Nested parentheses allowed: a hostile policy must not exhaust the parser's stack."""


class ConstraintSyntaxError(ValueError):
    """A constraint that does not parse; ``column`` is the 1-based position in its text."""

    def __init__(self, message: str, text: str, column: int) -> None:
        self.column = column
        super().__init__(f"{message} at column {column} of {text!r}")


@dataclass(frozen=True)
class Linear:
    """``sum(coefficients[name] * name) + constant``."""

    coefficients: dict[str, float] = field(default_factory=dict)
    constant: float = 0.0

    def plus(self, other: Linear, sign: float = 1.0) -> Linear:
        merged = dict(self.coefficients)
        for name, value in other.coefficients.items():
            merged[name] = merged.get(name, 0.0) + sign * value
        return Linear({k: v for k, v in merged.items() if v != 0.0}, self.constant + sign * other.constant)

    def times(self, factor: float) -> Linear:
        if factor == 0.0:
            return Linear()
        return Linear({k: v * factor for k, v in self.coefficients.items()}, self.constant * factor)

    @property
    def is_constant(self) -> bool:
        return not self.coefficients


@dataclass(frozen=True)
class Comparison:
    """``expression OP 0``: the left side minus the right side, related to zero."""

    expression: Linear
    relation: Relation

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.expression.coefficients)


@dataclass(frozen=True)
class Constraint:
    """A comparison that must hold, or must hold whenever ``premise`` holds (an implication)."""

    text: str
    conclusion: Comparison
    premise: Comparison | None = None
    dependent: str | None = None
    """For ``name == expression`` with ``name`` alone on the left: the feature the others determine,
    which an attack recomputes instead of searching for (Simonetto et al. 2022's repair)."""

    @property
    def names(self) -> tuple[str, ...]:
        found = dict.fromkeys(self.conclusion.names)
        if self.premise is not None:
            found.update(dict.fromkeys(self.premise.names))
        return tuple(found)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                column = position + 1 + (len(text[position:]) - len(text[position:].lstrip()))
                raise ConstraintSyntaxError(f"unexpected character {text[column - 1]!r}", text, column)
            kind = match.lastgroup or ""
            value = match.group(kind)
            start = match.start(kind) + 1
            if kind == "name" and value in _KEYWORDS:
                kind = "keyword"
            self.tokens.append((kind, value, start))
            position = match.end()
        self.at = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def column(self) -> int:
        token = self.peek()
        return token[2] if token else len(self.text) + 1

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if (
            token is None
            or (value is not None and token[1] != value)
            or (kind is not None and token[0] != kind)
        ):
            wanted = repr(value) if value else (kind or "more")
            found = "the end" if token is None else repr(token[1])
            raise ConstraintSyntaxError(f"expected {wanted}, found {found}", self.text, self.column())
        self.at += 1
        return token

    def constraint(self) -> Constraint:
        token = self.peek()
        if token is not None and token == ("keyword", "if", token[2]):
            self.take("if")
            premise, _ = self.comparison()
            self.take("then")
            conclusion, _ = self.comparison()
            self.end()
            return Constraint(self.text, conclusion, premise)
        conclusion, left = self.comparison()
        self.end()
        dependent = None
        if conclusion.relation == "==" and len(left.coefficients) == 1 and left.constant == 0.0:
            ((name, coefficient),) = left.coefficients.items()
            if coefficient == 1.0 and conclusion.expression.coefficients.get(name) == 1.0:
                dependent = name
        return Constraint(self.text, conclusion, None, dependent)

    def end(self) -> None:
        if self.peek() is not None:
            raise ConstraintSyntaxError(f"unexpected {self.peek()[1]!r}", self.text, self.column())  # type: ignore[index]

    def comparison(self) -> tuple[Comparison, Linear]:
        left = self.expression()
        token = self.peek()
        if token is None or token[1] not in ("<=", ">=", "==", "<", ">"):
            raise ConstraintSyntaxError("expected a comparison (<=, >=, ==, <, >)", self.text, self.column())
        self.take()
        right = self.expression()
        relation = token[1]
        if relation in (">=", ">"):
            difference, relation = right.plus(left, -1.0), relation.replace(">", "<")
        else:
            difference = left.plus(right, -1.0)
        if difference.is_constant:
            raise ConstraintSyntaxError("the comparison names no feature", self.text, token[2])
        return Comparison(difference, relation), left  # type: ignore[arg-type]

    def expression(self) -> Linear:
        value = self.term()
        while (token := self.peek()) is not None and token[1] in ("+", "-"):
            self.take()
            value = value.plus(self.term(), 1.0 if token[1] == "+" else -1.0)
        return value

    def term(self) -> Linear:
        value = self.factor()
        while (token := self.peek()) is not None and token[1] in ("*", "/"):
            self.take()
            column = self.column()
            other = self.factor()
            if token[1] == "/":
                if not other.is_constant or other.constant == 0.0:
                    raise ConstraintSyntaxError("divide only by a non-zero number", self.text, column)
                value = value.times(1.0 / other.constant)
            elif value.is_constant:
                value = other.times(value.constant)
            elif other.is_constant:
                value = value.times(other.constant)
            else:
                raise ConstraintSyntaxError(
                    "a product of two features is not linear; multiply features by numbers only",
                    self.text,
                    column,
                )
        return value

    def factor(self) -> Linear:
        token = self.peek()
        if token is None:
            raise ConstraintSyntaxError("expected a number, a feature or '('", self.text, self.column())
        kind, value, _ = token
        if value == "-":
            self.take()
            self.depth += 1  # a chain of signs nests too
            if self.depth > MAX_DEPTH:
                raise ConstraintSyntaxError(f"signs nest deeper than {MAX_DEPTH} levels", self.text, token[2])
            negated = self.factor().times(-1.0)
            self.depth -= 1
            return negated
        if value == "(":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConstraintSyntaxError(
                    f"parentheses nest deeper than {MAX_DEPTH} levels", self.text, token[2]
                )
            inner = self.expression()
            self.take(")")
            self.depth -= 1
            return inner
        if kind == "number":
            self.take()
            number = float(value)
            if not math.isfinite(number):
                raise ConstraintSyntaxError(f"the number {value} is too large", self.text, token[2])
            return Linear(constant=number)
        if kind in ("name", "quoted"):
            self.take()
            return Linear({value.strip("`") if kind == "quoted" else value: 1.0})
        raise ConstraintSyntaxError(f"unexpected {value!r}", self.text, token[2])


def parse_constraint(text: str) -> Constraint:
    """Parse one constraint; raises ``ConstraintSyntaxError`` with the column of the problem."""
    if not text.strip():
        raise ConstraintSyntaxError("the constraint is empty", text, 1)
    constraint = _Parser(text).constraint()
    for comparison in (constraint.conclusion, constraint.premise):
        if comparison is None:
            continue
        values = [*comparison.expression.coefficients.values(), comparison.expression.constant]
        if not all(math.isfinite(value) for value in values):
            raise ConstraintSyntaxError("its numbers multiply beyond what a float holds", text, 1)
    return constraint


__all__ = ["Comparison", "Constraint", "ConstraintSyntaxError", "Linear", "parse_constraint"]
