"""``leadtap onboarding list``: won deals handed to onboarding."""

from __future__ import annotations

import argparse
import sys

from leadtap.cli.common import EXIT_OK, EXIT_USAGE, FORMATS, refuse_unknown_owner
from leadtap.cli.output import write_rows


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    onboarding = subcommands.add_parser("onboarding", help="won deals handed to onboarding").add_subparsers(
        dest="onboarding_command", required=True)
    listing = onboarding.add_parser("list", help="onboardings, with their open tasks")
    listing.add_argument("--owner", metavar="EMAIL")
    listing.add_argument("--state", choices=["open", "done"])
    listing.add_argument("--format", choices=FORMATS, default="table")
    listing.set_defaults(handler=cmd_onboarding_list)


def cmd_onboarding_list(app, args) -> int:
    from leadtap.core.use_cases.deal_views import ONBOARDING_COLUMNS, list_onboardings
    if refuse_unknown_owner(app, args.owner):
        return EXIT_USAGE
    app.db.check_schema()
    with app.db.transaction() as session:
        rows = list_onboardings(session, args.owner, args.state)
    write_rows(rows, args.format, sys.stdout, ONBOARDING_COLUMNS, "onboarding")
    return EXIT_OK
