"""Logging: structlog, JSON lines when not on a terminal, readable when on one."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", stream=None) -> None:
    stream = stream or sys.stderr
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if stream.isatty()
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    route_stdlib_logging(stream, renderer, level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def route_stdlib_logging(stream, renderer, level: str) -> None:
    """Libraries that log through the standard library (APScheduler, Alembic)
    come out in the same format, one line per event."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer,
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Library chatter below a warning is not ours to show.
    root.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
