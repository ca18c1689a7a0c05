"""``leadtap replies list``: owners' replies to leadtap's emails."""

from __future__ import annotations

import argparse
import json
import sys

from leadtap.cli.common import EXIT_OK


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    replies = subcommands.add_parser("replies", help="owners' replies to leadtap's emails").add_subparsers(
        dest="replies_command", required=True)
    listing = replies.add_parser("list", help="the latest replies: what each command did, or why it was refused")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(handler=cmd_replies_list)


def cmd_replies_list(app, args) -> int:
    from leadtap.core.use_cases.views import list_replies
    app.db.check_schema()
    with app.db.transaction() as session:
        rows = list_replies(session, max(args.limit, 1))
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    for row in rows:
        lead = f"lead #{row['lead_id']}" if row["lead_id"] else "no lead"
        print(f"{row['at'][:19]}  {row['sender'] or '?'}  {lead}  {row['outcome']}")
        for result in row["results"]:
            print(f"    {result['line'][:60]}  → {'done' if result['applied'] else 'refused'}: {result['words']}")
    print(f"({len(rows)} repl{'ies' if len(rows) != 1 else 'y'})")
    return EXIT_OK
