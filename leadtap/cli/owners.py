"""``leadtap owners list|away|back``: who takes leads, and who is away."""

from __future__ import annotations

import argparse
import sys

from leadtap.cli.common import EXIT_OK
from leadtap.cli.output import write_rows

COLUMNS = ("email", "name", "roles", "active", "away", "away_until")


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    owners = subcommands.add_parser("owners", help="the owners, and who is away").add_subparsers(
        dest="owners_command", required=True)
    listing = owners.add_parser("list", help="the configured owners: roles, active, away")
    listing.add_argument("--format", choices=["table", "json", "csv"], default="table")
    listing.set_defaults(handler=cmd_owners_list)
    away = owners.add_parser("away", help="out of the rotation (a holiday) until a day, or until back")
    away.add_argument("email")
    away.add_argument("--until", help="the day they are back (2026-12-20, its start in [reminders] timezone) or 2w")
    away.add_argument("--by", metavar="EMAIL", help="the owner who acts: themselves, or an admin (default: cli)")
    away.set_defaults(handler=cmd_owners_away)
    back = owners.add_parser("back", help="in the rotation again")
    back.add_argument("email")
    back.add_argument("--by", metavar="EMAIL", help="the owner who acts: themselves, or an admin (default: cli)")
    back.set_defaults(handler=cmd_owners_back)


def cmd_owners_list(app, args) -> int:
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases.owners import list_owners
    with app.ready_database().transaction() as session:
        rows = list_owners(session, utcnow())
    write_rows(rows, args.format, sys.stdout, COLUMNS, "owner")
    return EXIT_OK


def cmd_owners_away(app, args) -> int:
    from leadtap.cli.common import moment
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases import owners
    now = utcnow()
    until = moment(args.until, now, app.config.reminders.zone, "away until") if args.until else None
    return act(app, args, lambda session, actor: owners.away(session, args.email, until, actor, now))


def cmd_owners_back(app, args) -> int:
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases import owners
    return act(app, args, lambda session, actor: owners.back(session, args.email, actor, utcnow()))


def act(app, args, apply) -> int:
    """One change in one transaction, said in words; a refusal changes nothing (exit 1)."""
    from sqlalchemy.exc import DBAPIError

    from leadtap.core.errors import LeadtapError
    from leadtap.core.store.engine import describe_db_error
    from leadtap.core.use_cases import changes
    try:
        with app.ready_database().transaction() as session:
            words = apply(session, changes.acting(session, args.by, app.config.pipeline))
    except DBAPIError as exc:  # a lock conflict: said, not a traceback
        raise LeadtapError(f"the database refused the change: {describe_db_error(exc)}") from None
    print(words)
    return EXIT_OK
