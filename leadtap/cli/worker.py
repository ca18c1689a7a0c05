"""``leadtap run``: the long-running worker."""

from __future__ import annotations

import argparse
import os
import sys

from leadtap.cli.common import EXIT_USAGE
from leadtap.core.errors import ConfigError
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    subcommands.add_parser("run", help="the long-running worker: polling and reminders on a schedule").set_defaults(
        handler=cmd_run
    )


def cmd_run(app: App, args: argparse.Namespace) -> int:
    from leadtap.bootstrap import build_app
    from leadtap.scheduler.daemon import Daemon
    try:
        app.config.read_secrets()  # the worker starts with every secret, or not at all
        return Daemon(app, lambda: build_app(args.config), os.environ).run()
    except ConfigError as exc:  # a secret, or the metrics address
        print(f"leadtap: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
