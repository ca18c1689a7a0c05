"""``leadtap db upgrade``: the schema, created or upgraded."""

from __future__ import annotations

import argparse

from leadtap.cli.common import EXIT_OK
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    db = subcommands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="create or upgrade the schema").set_defaults(handler=cmd_db_upgrade)


def cmd_db_upgrade(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.store.engine import upgrade_schema
    before, after = upgrade_schema(app.db.engine)
    print(f"schema {'created' if before is None else 'at ' + before} → {after}" if before != after else
          f"schema already at {after}")
    return EXIT_OK
