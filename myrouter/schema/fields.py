"""The building blocks of the configuration schema, and how its errors read.

Every configuration row and variable is a pydantic dataclass (frozen, slots) in
:mod:`myrouter.schema.tables` / :mod:`myrouter.schema.variables`; its fields are
written with the types below, which say type, range and choices once:

* :data:`Flag`: ``true``/``false`` or ProxySQL's ``0``/``1`` (no other integer, no string);
* :func:`Int` ``(lo, hi)``: an integer (never a boolean, float or string) in ``lo..hi``;
* :data:`Str`, :data:`NonEmpty`: a string (a non-blank one);
* :func:`Choice` ``(choices, fold)``: one of ``choices`` after case folding.

Nothing is coerced: a value of the wrong type is refused, not converted.
:func:`validate` builds a row from a dict of column -> value and turns the first
problem into a :class:`SchemaError` naming the column; checks that involve
several columns of one row raise :class:`SchemaError` themselves (pydantic lets
exceptions other than ValueError through unchanged).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable
from functools import partial
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import AfterValidator, BeforeValidator, Strict, ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["Flag", "Int", "Str", "NonEmpty", "Choice", "SchemaError", "validate", "bounds", "type_name",
           "unknown_key_message", "column_names", "field_type", "from_text"]


class SchemaError(Exception):
    """A value the schema refuses: ``message``, and where (``table``, row ``index``, ``key``; each may be None)."""

    def __init__(self, message: str, key: str | None = None, *, table: str | None = None,
                 index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.table = table
        self.index = index


def type_name(value: Any) -> str:
    """How a message names a value's TOML type: ``a boolean``, ``an integer``, ``a string``..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _refuse(message: str) -> PydanticCustomError:
    # the message is final text: braces in it must not be read as pydantic's placeholders
    return PydanticCustomError("config", message.replace("{", "{{").replace("}", "}}"))


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, int):
        raise _refuse(f"expected true/false or 0/1, got {value!r}")
    raise _refuse(f"expected true/false or 0/1, got {type_name(value)}")


def _choice(choices: tuple[str, ...], fold: str | None, value: Any) -> str:
    if not isinstance(value, str):
        raise _refuse(f"expected a string, got {type_name(value)}")
    folded = value.lower() if fold == "lower" else value.upper() if fold == "upper" else value
    if folded not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise _refuse(f"invalid value {value!r}: expected one of {allowed}")
    return folded


def _nonempty(value: str) -> str:
    if not value.strip():
        raise _refuse("must not be empty")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]
Str = Annotated[str, Strict()]
NonEmpty = Annotated[str, Strict(), AfterValidator(_nonempty)]


def Int(lo: int | None = 0, hi: int | None = None) -> Any:  # noqa: N802 - reads as a type
    """An integer in ``lo..hi`` (inclusive; None: unbounded); never a boolean."""
    bounds_: list[Any] = [Strict()]
    if lo is not None:
        bounds_.append(Ge(lo))
    if hi is not None:
        bounds_.append(Le(hi))
    return Annotated[int, *bounds_]


def Choice(choices: tuple[str, ...], fold: str | None = None) -> Any:  # noqa: N802 - reads as a type
    """One of ``choices``, compared (and stored) after ``fold`` ("lower"/"upper"/None)."""
    return Annotated[str, BeforeValidator(partial(_choice, choices, fold))]


def bounds(cls: type, name: str) -> tuple[int | None, int | None]:
    """The (lo, hi) range of an integer field (None where unbounded); also of an optional one."""
    field = cls.__pydantic_fields__[name]  # type: ignore[attr-defined]
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):  # Int(...) | None
        metadata += getattr(arg, "__metadata__", ())
    lo = hi = None
    for meta in metadata:
        if isinstance(meta, Ge):
            lo = meta.ge
        elif isinstance(meta, Le):
            hi = meta.le
    return lo, hi


def column_names(cls: type) -> list[str]:
    """The keys a row of ``cls`` accepts, in declaration order (``compatibility`` is not a key)."""
    return [f.name for f in dataclasses.fields(cls) if f.name != "compatibility"]


def unknown_key_message(table: str, key: str, known: Iterable[str]) -> str:
    """``unknown key in [table]``, with the close match or the ProxySQL prefix to drop."""
    known = list(known)
    where = f"[{table}]" if table else "the top level"
    message = f"unknown key in {where}"
    for prefix in ("mysql-", "admin-"):
        if key.startswith(prefix) and key[len(prefix):] in known:
            return f"{message}: write ProxySQL variables without the {prefix!r} prefix ({key[len(prefix):]!r})"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


def _range_text(lo: int | None, hi: int | None) -> str:
    if hi is None:
        return f">= {lo}"
    if lo is None:
        return f"<= {hi}"
    return f"{lo}..{hi}"


def _message(cls: type, name: str, error: dict[str, Any]) -> str:
    kind, value = error["type"], error.get("input")
    if kind in ("missing", "missing_argument"):
        return f"required key {name!r} is missing"
    if kind == "int_type":
        return f"expected an integer, got {type_name(value)}"
    if kind == "string_type":
        return f"expected a string, got {type_name(value)}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"value {value} out of range: must be {_range_text(*bounds(cls, name))}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]


def validate(cls: type, values: dict[str, Any], *, table: str = "", aliases: Iterable[str] = (),
             fixed: dict[str, Any] | None = None) -> Any:
    """``cls(**values, **fixed)``; SchemaError naming the first refused key of ``values`` (in declaration
    order): wrong type, out of range, not a choice, missing, a row check; then unknown keys (with a
    close match from the columns and ``aliases``). ``fixed``: values that are not keys of the input."""
    columns = column_names(cls)
    known = {k: v for k, v in values.items() if k in columns}
    try:
        row = cls(**known, **(fixed or {}))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        order = {name: i for i, name in enumerate(columns)}
        first = min(errors, key=lambda e: order.get(str(e["loc"][0]) if e["loc"] else "", len(order)))
        name = str(first["loc"][0]) if first["loc"] else ""
        missing = first["type"] in ("missing", "missing_argument")
        raise SchemaError(_message(cls, name, first), None if missing else name) from None
    for key in values:
        if key not in columns:
            raise SchemaError(unknown_key_message(table, key, [*columns, *aliases]), key)
    return row


def field_type(cls: type, name: str) -> type:
    """The Python type of a field (bool for a Flag, int for an Int, str...)."""
    return cls.__pydantic_fields__[name].annotation  # type: ignore[attr-defined,no-any-return]


def from_text(kind: type, text: str) -> Any:
    """An admin ``global_variables`` value (always text) as a value of ``kind``: ``true``/``1``/``on``/
    ``yes`` (and the opposites) for bool, digits for int, the text itself for str. ValueError (with
    the message to show) when the text is not of that kind."""
    if kind is bool:
        t = text.strip().lower()
        if t in ("true", "1", "on", "yes"):
            return True
        if t in ("false", "0", "off", "no"):
            return False
        raise ValueError(f"expected true or false, not {text!r}")
    if kind is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, not {text!r}") from None
    return text
