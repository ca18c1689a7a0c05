"""The command line: ``leadtap COMMAND``. One module a noun (``leads``,
``tasks``, ``opportunities``, ...), each adding its commands to the parser and
holding their handlers; ``common`` and ``output`` are what they share."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from leadtap.cli import (auth, check, db, examples, extract, failed, leads, notifications, onboarding, opportunities,
                         owners, poll, reminders, replies, tasks, webhooks, worker)
from leadtap.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from leadtap.core.errors import ConfigError, LeadtapError


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from leadtap.bootstrap import build_app  # after the arguments: --help and a usage error load none of it
    from leadtap.core.logs import configure_logging, get_logger

    configure_logging(args.log_level)
    if not getattr(args, "needs_config", True):
        return args.handler(args)
    try:
        app = build_app(args.config)
    except ConfigError as exc:
        print(f"leadtap: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in app.config.warnings:
        get_logger("leadtap").warning("config_warning", detail=warning)
    try:
        return args.handler(app, args)
    except LeadtapError as exc:
        print(f"leadtap: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `leadtap leads list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_OK
    finally:
        app.close()


# Each command and the module that adds it, in --help's order: a command's parser is built alone (argparse
# takes ~0.2 ms a parser, and there are sixty); tests/test_layout.py checks the table against what the modules add.
COMMANDS = {"db": db, "poll": poll, "extract": extract, "leads": leads, "tasks": tasks, "opportunities": opportunities,
            "onboarding": onboarding, "owners": owners, "failed": failed, "run": worker, "remind": reminders,
            "reminders": reminders, "notify": notifications, "notifications": notifications, "steps": notifications,
            "webhooks": webhooks, "replies": replies, "auth": auth, "demo": examples, "example-config": examples,
            "check": check}
MODULES = tuple(dict.fromkeys(COMMANDS.values()))  # each once, in the order of their first command


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of the command ``argv`` names — of every command when it names none it knows (``--help``)."""
    parser = argparse.ArgumentParser(prog="leadtap", description="Turns the mail of IMAP mailboxes into CRM leads.")
    parser.add_argument("--config", help="the TOML config (default: $LEADTAP_CONFIG, then ./leadtap.toml)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = COMMANDS.get(command_in(argv))
    for module in (named,) if named else MODULES:
        module.add_commands(subcommands)
    return parser


def command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word after ``--config`` and
    ``--log-level`` (and their values). None after any other option before
    it — ``--help``, an abbreviation argparse reads (``--conf``), ``--`` —
    so that every command's parser is built, as argparse may need."""
    words = iter(argv)
    for word in words:
        if word in ("--config", "--log-level"):
            next(words, None)
        elif word.startswith(("--config=", "--log-level=")):
            continue
        elif word.startswith("-"):
            return None
        else:
            return word
    return None
