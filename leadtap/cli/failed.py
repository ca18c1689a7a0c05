"""``leadtap failed list|retry``: messages that could not be processed."""

from __future__ import annotations

import argparse

from leadtap.cli.common import EXIT_FAILED, EXIT_OK
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    failed = subcommands.add_parser("failed", help="messages that could not be processed")
    failed_commands = failed.add_subparsers(dest="failed_command", required=True)
    failed_commands.add_parser("list", help="list them").set_defaults(handler=cmd_failed_list)
    retry = failed_commands.add_parser("retry", help="try them again now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the failed message's id (from `failed list`)")
    which.add_argument("--all", action="store_true", help="every failed message")
    retry.set_defaults(handler=cmd_failed_retry)


def cmd_failed_list(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.use_cases.views import failed_messages
    app.db.check_schema()
    with app.db.transaction() as session:
        rows = failed_messages(session)
    for row in rows:
        state = "set aside" if row["attempts"] >= app.config.ingest.max_attempts else "will retry"
        print(f"{row['id']:>6}  {row['mailbox']} uid {row['uid']}  attempts {row['attempts']} ({state})  "
              f"{row['subject'] or ''!s:.40}  — {row['error']}")
    print(f"({len(rows)} failed message{'s' if len(rows) != 1 else ''})")
    return EXIT_OK


def cmd_failed_retry(app: App, args: argparse.Namespace) -> int:
    from leadtap.cli.poll import report_passes
    from leadtap.core.use_cases.views import reset_failed
    db = app.ready_database()
    with db.transaction() as session:
        reset = reset_failed(session, None if args.all else [args.id])
    if not reset:
        print("leadtap: no such failed message" if not args.all else "no failed messages")
        return EXIT_FAILED if not args.all else EXIT_OK
    boxes = {b.name: b for b in app.config.mailboxes}
    named = sorted({mailbox for mailbox, _ in reset})
    for name in named:  # a pass over an inactive mailbox would read its new mail too: they wait
        if name not in boxes or not boxes[name].active:
            print(f"mailbox {name!r} is {'not active' if name in boxes else 'no longer configured'}: "
                  "its failed messages are retried when it is polled again")
    names = [name for name in named if name in boxes and boxes[name].active]
    print(f"retrying {len(reset)} message(s) in {', '.join(names) or 'no active mailbox'}")
    return report_passes(app, app.ingest_mailboxes(names))
