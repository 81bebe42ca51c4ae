"""Value rules: the type, range and units of one setting, checked the same way whether the value comes from a
config file, `--set key=value` or a task flag (text)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from pipeline.errors import PipelineError

KINDS = ("int", "float", "bool", "str", "size", "pairs", "names", "strings", "map", "any")


@dataclass(frozen=True)
class Rule:
    """What one setting accepts.

    kind: int | float | bool | str | size (a list of `length` whole numbers >= `low`) | pairs (a list of [w, h]
    numbers > 0) | names (a non-empty list of strings) | strings (a list of
    strings, maybe empty) | map (string -> string) | any; low/high bound numbers (and
    every item of a size), `open_low` / `open_high` make a bound exclusive; choices lists the only values accepted;
    nullable allows None; unit is shown in messages."""

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    length: int | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}")

    def describe(self) -> str:
        """The expectation, for error messages: 'a whole number >= 1', 'one of: dan, kd233', ..."""
        if self.choices:
            text = "one of: " + ", ".join(str(c) for c in self.choices)
        elif self.kind == "size":
            text = f"a list of {self.length} whole numbers{self._bounds()}"
        elif self.kind == "pairs":
            text = "a list of [width, height] pairs of numbers > 0"
        elif self.kind == "strings":
            text = "a list of names (quoted when they look like numbers), maybe empty"
        elif self.kind in ("names", "map"):
            text = "a non-empty list of names" if self.kind == "names" else "a mapping of name: name"
        else:
            noun = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
                    "any": "a value"}[self.kind]
            text = noun + self._bounds()
        if self.unit:
            text += f" ({self.unit})"
        return text + (" or null" if self.nullable else "")

    def _bounds(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        return (" " + " and ".join(parts)) if parts else ""

    def check(self, value: Any, *, field: str, path: Any = None) -> Any:
        """`value` when it is acceptable, else PipelineError naming the file, the field and the expectation."""
        if value is None and self.nullable:
            return None
        ok = {"int": self._whole, "float": self._number, "bool": lambda v: isinstance(v, bool),
              "str": self._string, "size": self._size, "pairs": self._pairs, "names": self._names,
              "strings": lambda v: v == [] or self._names(v), "map": self._map,
              "any": lambda v: True}[self.kind](value)
        if not ok:
            raise PipelineError(f"got {value!r}{self._suggestion(value)}", path=path, field=field,
                                expected=self.describe())
        return value

    def _suggestion(self, value: Any) -> str:
        """'; did you mean X?' for a string close to one of the choices."""
        if not (self.choices and isinstance(value, str)):
            return ""
        names = {str(c).lower(): str(c) for c in self.choices}
        close = difflib.get_close_matches(value.lower(), list(names), n=1, cutoff=0.5)
        return f"; did you mean {names[close[0]]!r}?" if close else ""

    def parse(self, text: Any, *, field: str, path: Any = None) -> Any:
        """A value from command-line text (numbers accept 0x hex for whole numbers; lists are YAML), then checked."""
        if not isinstance(text, str):
            return self.check(text, field=field, path=path)
        raw = text.strip()
        value: Any = raw
        if self.kind == "int":
            value = _whole_number(raw)
        elif self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                value = raw
        elif self.kind not in ("str", "any") or (self.nullable and raw.lower() in ("null", "none", "~")):
            value = yaml_value(raw, field=field)
        return self.check(value, field=field, path=path)

    def _in_range(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def _chosen(self, value: Any) -> bool:
        return self.choices is None or value in self.choices

    def _whole(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self._in_range(value) and self._chosen(value)

    def _number(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self._in_range(value)

    def _string(self, value: Any) -> bool:
        return isinstance(value, str) and self._chosen(value)

    def _size(self, value: Any) -> bool:
        return (isinstance(value, list) and len(value) == self.length
                and all(self._whole(item) for item in value))

    def _pairs(self, value: Any) -> bool:
        positive = Rule("float", low=0, open_low=True)
        return isinstance(value, list) and len(value) > 0 and all(
            isinstance(pair, list) and len(pair) == 2 and all(positive._number(v) for v in pair) for pair in value)

    def _names(self, value: Any) -> bool:
        return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) and v for v in value)

    def _map(self, value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _whole_number(text: str) -> int | str:
    """`text` as a whole number (decimal, or 0x / 0o / 0b prefixed), else the text unchanged."""
    for base in (10, 0):
        try:
            return int(text, base)
        except ValueError:
            continue
    return text


def yaml_value(text: str, *, field: str) -> Any:
    """`text` read as a YAML scalar or list; PipelineError naming the field when it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise PipelineError(f"{text!r} is not a YAML value ({reason})", field=field,
                            expected="a number, true/false, a string or a [list]") from None


def count(low: int = 0, unit: str = "", nullable: bool = False) -> Rule:
    """A whole number >= low."""
    return Rule("int", low=low, unit=unit, nullable=nullable)


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False, open_high: bool = False,
           unit: str = "", nullable: bool = False) -> Rule:
    return Rule("float", low=low, high=high, open_low=open_low, open_high=open_high, unit=unit, nullable=nullable)


def positive(unit: str = "") -> Rule:
    """A number > 0."""
    return Rule("float", low=0, open_low=True, unit=unit)


def fraction(unit: str = "probability") -> Rule:
    """A number in [0, 1]."""
    return Rule("float", low=0, high=1, unit=unit)


def choice(names: Sequence[str], nullable: bool = False) -> Rule:
    return Rule("str", choices=tuple(names), nullable=nullable)
