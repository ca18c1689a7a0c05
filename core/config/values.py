"""Reading TOML values for the configuration: durations (their parser is
``core.rules.durations``), sizes, lists, and ``Section``, a table being read
that names its path in every error."""

from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Any, Callable

from leadtap.core.errors import ConfigError
from leadtap.core.rules.durations import parse_seconds  # noqa: F401  (the config's tables read durations here)

SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?", re.IGNORECASE)
SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def list_of_str(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of strings is expected")
    return tuple(value)


def parse_size(value: Any) -> int:
    """Parse "25MB", "512KiB" (or a number of bytes) into bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    size = int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "b").lower()]) if match else 0
    if size <= 0:
        raise ValueError(f'{value!r} is not a positive size; expected e.g. "25MB" or a number of bytes')
    return size


class Section:
    """One TOML table being read: knows its path for error messages."""

    def __init__(self, data: Any, file: Path, where: str):
        if not isinstance(data, dict):
            raise ConfigError(file, where, "a table is expected")
        self.data = dict(data)
        self.path = file
        self.prefix = where
        self.known: set[str] = set()  # the keys this table takes: for "did you mean"

    def where(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, message: str):
        raise ConfigError(self.path, self.where(key), message)

    def table(self, key: str) -> "Section":
        self.known.add(key)
        return Section(self.data.pop(key, {}), self.path, self.where(key))

    def array(self, key: str) -> list["Section"]:
        self.known.add(key)
        items = self.data.pop(key, [])
        if not isinstance(items, list):
            self.fail(key, f"an array of tables is expected ([[{key}]])")
        return [Section(item, self.path, f"{self.where(key)}[{i}]") for i, item in enumerate(items)]

    def take(self, schema: dict[str, Callable[[Any], Any]], required: tuple[str, ...] = (),
             finish: bool = True) -> dict[str, Any]:
        """Convert the keys in ``schema``; refuse missing required and (unless
        another ``take`` reads the rest: ``finish = False``) unknown keys."""
        values: dict[str, Any] = {}
        self.known |= set(schema)
        for key, convert in schema.items():
            if key not in self.data:
                if key in required:
                    self.fail(key, "this key is required")
                continue
            values[key] = self.convert(key, self.data.pop(key), convert)
        if finish:
            self.finish()
        return values

    def convert(self, key: str, value: Any, convert: Callable[[Any], Any]) -> Any:
        if convert in (str, int, bool):
            if type(value) is not convert:
                shown = "a value of another type" if key in SECRET_KEYS else repr(value)
                self.fail(key, f"a {TYPE_NAMES[convert]} is expected, got {shown}")
            if convert is str and not value.strip() and key != "folder":
                self.fail(key, "an empty string is not allowed")
            return value
        try:
            return convert(value)
        except ValueError as exc:
            self.fail(key, str(exc))

    def finish(self) -> None:
        if self.data:
            unknown = sorted(self.data)
            nearest = difflib.get_close_matches(unknown[0], sorted(self.known), n=1, cutoff=0.6)
            self.fail(unknown[0], "unknown key" + (f"s {unknown}" if len(unknown) > 1 else "")
                      + (f"; did you mean {nearest[0]!r}?" if nearest else ""))


SECRET_KEYS = {"password"}
TYPE_NAMES = {str: "string", int: "whole number", bool: "boolean (true or false)"}


def check_unique(path: Path, array: str, key: str, values: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(path, f"{array}[{i}].{key}", f"duplicate {key} {value!r}; each must be unique")
        seen.add(value)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
