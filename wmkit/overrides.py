"""Reading configuration from the command line: each field's docstring (its flag's help) and ``key=value``
overrides turned into the field's type, with an error that names the field."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
from typing import Any

from .errors import WmkitError


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of a dataclass (read from its source)."""
    tree = ast.parse(inspect.getsource(cls))
    docs, body = {}, tree.body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def _coerce(cls, name: str, raw: Any) -> Any:
    """Turn a command-line string into the type of the field's default, naming the field on error."""
    default = {f.name: f for f in dataclasses.fields(cls)}[name]
    current = default.default if default.default is not dataclasses.MISSING else default.default_factory()
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if isinstance(current, (int, float, str)):
            return type(current)(raw)
        if isinstance(current, tuple):
            return tuple(v for v in raw.split(",") if v)
        if isinstance(current, dict):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except (ValueError, json.JSONDecodeError) as exc:
        raise WmkitError(f"config field '{name}': cannot read {raw!r} as {type(current).__name__} ({exc})") from exc
    return raw


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, with a clear error for malformed pairs."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WmkitError(f"override {pair!r} is not of the form key=value")
        out[key.strip()] = value
    return out
