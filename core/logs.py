"""Logging: structlog, JSON lines when not on a terminal, readable when on one.

structlog is loaded by the first logger asked for, not by ``configure_logging``:
a command that logs nothing (``leads list``) starts without it (see
bench/startup.py). Every module that logs gets its logger from ``get_logger``."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import IO, Any


@dataclass(frozen=True)
class _Settings:
    level: str
    stream: IO[str]


_settings = _Settings("info", sys.stderr)
_configured: _Settings | None = None


def configure_logging(level: str = "info", stream=None) -> None:
    """Log at ``level`` to ``stream`` (stderr by default): structlog's events
    and the standard library's (APScheduler, Alembic, SQLAlchemy) alike."""
    global _settings
    _settings = _Settings(level, stream or sys.stderr)
    route_stdlib_logging(_settings)
    if "structlog" in sys.modules:  # loggers already handed out follow the new settings at once
        _configure_structlog(_settings)


def get_logger(name: str) -> Any:
    """structlog's logger ``name``, structlog configured first if it is not yet."""
    import structlog

    if _configured != _settings:
        _configure_structlog(_settings)
    return structlog.get_logger(name)


def _renderer(stream: IO[str]):
    import structlog

    if not stream.closed and stream.isatty():  # (closed: an earlier test's captured stderr)
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer(sort_keys=False)


def _configure_structlog(settings: _Settings) -> None:
    import structlog

    global _configured
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _renderer(settings.stream),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.level.upper())),
        logger_factory=structlog.PrintLoggerFactory(settings.stream),
        cache_logger_on_first_use=False,
    )
    _configured = settings


class _StructlogFormatter(logging.Formatter):
    """structlog's ProcessorFormatter, built at the first record: a command
    whose libraries stay quiet never loads structlog."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self.formatter: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self.formatter is None:
            import structlog

            self.formatter = structlog.stdlib.ProcessorFormatter(
                processor=_renderer(self.stream),
                foreign_pre_chain=[
                    structlog.stdlib.add_logger_name,
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info,
                ],
            )
        return self.formatter.format(record)


def route_stdlib_logging(settings: _Settings) -> None:
    """Libraries that log through the standard library (APScheduler, Alembic)
    come out in the same format, one line per event."""
    handler = logging.StreamHandler(settings.stream)
    handler.setFormatter(_StructlogFormatter(settings.stream))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Library chatter below a warning is not ours to show.
    root.setLevel(max(logging.WARNING, logging.getLevelName(settings.level.upper())))
