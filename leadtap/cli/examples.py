"""``leadtap demo`` and ``leadtap example-config``: a start without a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leadtap import EXAMPLE_CONFIG
from leadtap.cli.common import EXIT_OK


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    subcommands.add_parser("example-config", help="print the annotated example configuration").set_defaults(
        handler=cmd_example_config, needs_config=False)
    demo = subcommands.add_parser("demo", help="a throwaway Dovecot with sample enquiries, one poll, the leads")
    demo.add_argument("--dir", type=Path, default=Path("demo-run"), help="where its config and SQLite file go")
    demo.add_argument("--keep", action="store_true", help="keep the Dovecot up until Ctrl-C, to go on with")
    demo.set_defaults(handler=cmd_demo, needs_config=False)


def cmd_example_config(args: argparse.Namespace) -> int:
    """The annotated example config, shipped with leadtap: a start for your own."""
    sys.stdout.write(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from leadtap import demo  # the Dovecot it starts is only needed here
    from leadtap.cli import main  # the demo runs the command line's own commands

    return demo.run(args.dir, keep=args.keep, main=main)
