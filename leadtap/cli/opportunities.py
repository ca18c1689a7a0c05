"""``leadtap opportunities list|set``: the deal pipeline. A refused move
names the rule, changes nothing and exits 1."""

from __future__ import annotations

import argparse
import sys

from leadtap.cli.common import EXIT_OK, EXIT_USAGE, FORMATS, change, parse_field, record_id, refuse_unknown_owner
from leadtap.cli.output import write_rows


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    opportunities = subcommands.add_parser("opportunities", help="the deal pipeline").add_subparsers(
        dest="opportunities_command", required=True)
    listing = opportunities.add_parser("list", help="deals, with when the staleness policy closes them")
    listing.add_argument("--stage")
    listing.add_argument("--owner", metavar="EMAIL")
    listing.add_argument("--stale", action="store_true", help="only deals past or near a staleness limit")
    listing.add_argument("--format", choices=FORMATS, default="table")
    listing.set_defaults(handler=cmd_opportunities_list)

    stage = opportunities.add_parser("set", help="move a deal to another stage")
    stage.add_argument("id", type=record_id, help="the opportunity's id (opportunities list, leads show)")
    stage.add_argument("--stage", required=True)
    stage.add_argument("--reason", help="why it was lost (needed for the lost stage)")
    stage.add_argument("--note", help="a note with the move (needed with the 'other' reason)")
    stage.add_argument("--field", action="append", default=[], metavar="NAME=VALUE",
                       help="set a deal field too (amount, close_date, ...)")
    stage.add_argument("--by", metavar="EMAIL", help="the owner who acts (default: cli, as an admin)")
    stage.set_defaults(handler=cmd_opportunities_set)


def cmd_opportunities_list(app, args) -> int:
    from leadtap.core.rules.reply_grammar import pick
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases.deal_views import DEAL_COLUMNS, list_deals
    if refuse_unknown_owner(app, args.owner):
        return EXIT_USAGE
    stages = app.config.opportunities.stages
    args.stage = pick(args.stage, stages) if args.stage is not None else None
    if args.stage is not None and args.stage not in stages:
        print(f"leadtap: unknown stage {args.stage!r}; expected one of {', '.join(stages)}", file=sys.stderr)
        return EXIT_USAGE
    app.db.check_schema()
    with app.db.transaction() as session:
        rows = list_deals(session, app.lead_rules(), utcnow(), args.stage, args.owner, args.stale)
    write_rows(rows, args.format, sys.stdout, DEAL_COLUMNS, "deal")
    return EXIT_OK


def cmd_opportunities_set(app, args) -> int:
    from leadtap.core.use_cases import deal_changes
    values = dict(parse_field(f) for f in args.field)
    return change(app, args, lambda s, rules, actor, now: deal_changes.set_stage(
        s, rules, args.id, args.stage, actor, now, args.reason, args.note, values))
