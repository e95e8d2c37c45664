"""Experiment configurations: frozen dataclasses, overridden by ``--set key=value`` with type checking."""

from __future__ import annotations

import collections
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from twinnet import TwinnetError

INT_LIMIT = 2**63  # integer settings fit in 64 bits, as NumPy and torch take sizes and seeds


@dataclass(frozen=True)
class BaseConfig:
    """Fields every experiment has."""

    seed: int = 0  # seeds data, initial weights and batch order alike

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")


def repeated(items) -> list:
    """The items that occur more than once, each named once, in the order of their first occurrence."""
    counts = collections.Counter(items)
    return [item for item, n in counts.items() if n > 1]


def comma_items(text) -> list[str]:
    """The items of a comma-separated list setting (``"mlp, cnn,"``: mlp and cnn), blanks left out."""
    return [item.strip() for item in str(text).split(",") if item.strip()]


def check_unique(setting: str, items) -> None:
    """Refuse a list setting that names an item twice: a sweep would train its run twice into one folder
    and count it twice in its means."""
    if twice := repeated(items):
        raise ValueError(f"{setting} lists {', '.join(map(str, twice))} more than once; list each once")


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of a config class."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "none" for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"a comma-separated list of {_type_name(typing.get_args(tp)[0])}"
    if tp is bool:
        return "true or false"
    return getattr(tp, "__name__", str(tp))


def parse_value(raw: str, tp: Any) -> Any:
    """Parse the text of one ``--set`` value as type ``tp``; ValueError names what was expected."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)) and raw.lower() in ("none", "null", ""):
            return None
        for arg in args:  # the first reading that fits, e.g. bool | Literal["auto"]
            try:
                return parse_value(raw, arg)
            except ValueError:
                pass
        raise ValueError(f"expected {_type_name(tp)}, got {raw!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if raw == str(c):
                return c
        raise ValueError(f"expected {_type_name(tp)}, got {raw!r}")
    if origin in (list, tuple):
        inner = typing.get_args(tp)[0]
        text = raw.strip()
        if text[:1] + text[-1:] in ("[]", "()"):  # one pair of brackets around the list, as Python writes it
            text = text[1:-1].strip()
        parts = text.split(",") if text else []
        if len(parts) > 1 and not parts[-1].strip():  # a trailing comma, as Python's (20,)
            parts.pop()
        return tuple(parse_value(part.strip(), inner) for part in parts)
    if tp is bool:
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if tp is int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if not -INT_LIMIT <= value < INT_LIMIT:
            raise ValueError(f"expected an integer from -2**63 to 2**63 - 1 (a 64-bit integer), got {raw!r}")
        return value
    if tp is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return value
    if tp is str:
        return raw
    raise ValueError(f"fields of type {tp} cannot be set from the command line")


def _coerce(value: Any, tp: Any) -> Any:
    """A JSON value as the field's type (lists become tuples)."""
    if typing.get_origin(tp) in (list, tuple) and isinstance(value, list):
        return tuple(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _conforms(value: Any, tp: Any) -> bool:
    """Whether a value (from a preset or a saved config.json) is of the field's type."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, a) for a in typing.get_args(tp))
    if origin is Literal:
        return any(value == c and type(value) is type(c) for c in typing.get_args(tp))
    if origin in (list, tuple):
        return isinstance(value, tuple) and all(_conforms(v, typing.get_args(tp)[0]) for v in value)
    if tp is type(None):
        return value is None
    if tp is float:  # finite: NaN would pass every "> 0" check and inf overflow the first step
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is int:  # within a 64-bit integer, as NumPy and torch take sizes and seeds
        return isinstance(value, int) and not isinstance(value, bool) and -INT_LIMIT <= value < INT_LIMIT
    return isinstance(value, tp) if isinstance(tp, type) else True


def make_config(cls: type, values: dict[str, Any] | None = None, context: str = "") -> Any:
    """Build a config from field values; an invalid value becomes a one-line TwinnetError."""
    types_ = field_types(cls)
    values = {k: _coerce(v, types_[k]) for k, v in (values or {}).items() if k in types_}
    wrong = [f"{k}={v!r} (expected {_type_name(types_[k])})" for k, v in values.items() if not _conforms(v, types_[k])]
    if wrong:
        raise TwinnetError(f"{context}invalid configuration: {', '.join(wrong)}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise TwinnetError(f"{context}invalid configuration: {exc}") from None


def apply_overrides(cfg: Any, assignments: list[str], context: str = "") -> Any:
    """Return ``cfg`` with each "key=value" applied, type-checked and validated."""
    changes = parse_assignments(type(cfg), assignments, context)
    return make_config(type(cfg), {**to_dict(cfg), **changes}, context=f"{context.strip()}: " if context else "")


def parse_assignments(cls: type, assignments: list[str], context: str = "") -> dict[str, Any]:
    """Each "key=value" as a field value of ``cls`` (type-checked, not yet validated together)."""
    types_ = field_types(cls)
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TwinnetError(f"--set {item!r}: expected key=value")
        if key not in types_:
            import difflib

            close = [k for k in types_ if k.lower() == key.lower()] or difflib.get_close_matches(key, types_, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TwinnetError(f"--set {key}: unknown key{context}{hint}; valid keys: {', '.join(types_)}")
        try:
            changes[key] = parse_value(raw.strip(), types_[key])
        except ValueError as exc:
            raise TwinnetError(f"--set {key}={raw}: {exc}") from None
    return changes


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of the config's fields (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def describe_fields(cls: type) -> list[tuple[str, str, Any]]:
    """(name, type description, default) of each field, for help texts."""
    return [(f.name, _type_name(field_types(cls)[f.name]), f.default) for f in dataclasses.fields(cls)]
