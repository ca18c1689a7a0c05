"""How long one message may take to read: checked between the steps of parse
and extraction, so no single message holds its mailbox for longer (each step
between checks is itself bounded: header fields are cut, extraction and HTML
reading are linear)."""

from __future__ import annotations

import time
from typing import Callable

from leadtap.core.errors import MessageError


class MessageTooSlow(MessageError):
    """A message took longer than its time to read."""


class Deadline:
    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.at = clock() + seconds if seconds else None

    def check(self, step: str) -> None:
        if self.at is not None and self.clock() > self.at:
            raise MessageTooSlow(f"took longer than {self.seconds:g} s to read (while {step})")


UNLIMITED = Deadline(None)
