"""Durations as people write them: "90s", "15m", "1h30m", "2d" — in the
config, on the command line and in a reply's ``/snooze``. Plain code."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
MAX_DURATION = 10 * 365 * 86400
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_seconds(value: Any) -> float:
    """Parse "90s", "15m", "1h30m", "2d" (or a number of seconds) into seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return checked_seconds(float(value))
    if not isinstance(value, str):
        raise ValueError('a duration such as "60s", "15m", "2d" is expected')
    text = value.replace(" ", "")
    parts = DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f'{value!r} is not a duration; expected e.g. "60s", "15m", "1h30m", "2d"')
    return checked_seconds(sum(float(n) * DURATION_UNITS[u] for n, u in parts))


def checked_seconds(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a positive duration is expected")
    if seconds > MAX_DURATION:
        raise ValueError("a duration of at most 10 years is expected")
    return seconds


def span(duration: timedelta) -> str:
    """``14d``, ``36h``, ``90m``: a duration as the config would write it."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
