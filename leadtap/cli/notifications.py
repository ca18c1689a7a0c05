"""``leadtap notify`` and ``notifications list``: the emails owners are owed."""

from __future__ import annotations

import argparse

from leadtap.cli.common import EXIT_FAILED, EXIT_OK
from leadtap.cli.output import print_mail_sent
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    subcommands.add_parser("notify", help="send the emails owed and run the workflows' steps due, now").set_defaults(
        handler=cmd_notify)
    owed = subcommands.add_parser("notifications", help="emails owed to owners (new lead, deals, confirmations)").add_subparsers(
        dest="notifications_command", required=True)
    owed.add_parser("list", help="the latest, sent or not").set_defaults(handler=cmd_notifications_list)
    steps = subcommands.add_parser("steps", help="the statuses' workflow steps: owed, run, dropped").add_subparsers(
        dest="steps_command", required=True)
    listing = steps.add_parser("list", help="the latest, with their state and why one was dropped")
    listing.add_argument("--lead", type=int, help="this lead's steps only")
    listing.set_defaults(handler=cmd_steps_list)


def cmd_notify(app: App, args: argparse.Namespace) -> int:
    if app.config.smtp is None and not app.config.workflows and not app.config.webhooks:
        print("notifications: off (no [smtp] table in the config)")
        return EXIT_OK
    report = app.send_notifications()
    print(report.summary())
    steps, hooks = report.steps, report.webhooks
    troubles = [report.retry, report.failed, steps and (steps.retry or steps.failed),
                hooks and (hooks.retry or hooks.failed or hooks.gone)]
    return EXIT_FAILED if any(troubles) else EXIT_OK


def cmd_notifications_list(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.store import notifications
    return print_mail_sent(app, notifications.listed, "notification", "(not sent)", lambda row: row["kind"])


def cmd_steps_list(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.use_cases import workflows

    app.db.check_schema()
    with app.db.transaction() as session:
        rows = workflows.listed(session, lead_id=args.lead)
    if not rows:
        print("no workflow steps" + (f" for lead {args.lead}" if args.lead else ""))
        return EXIT_OK
    for row in rows:
        when = row["sent_at"] or f"due {row['due_at']}"
        line = f"{row['id']:>6}  lead {row['lead_id']} {row['status']} step {row['step']} ({row['kind']})  " \
               f"{row['state']}  {when}"
        line += f"  to {row['recipient']}" if row["recipient"] else ""
        line += f"  — {row['error']}" if row["error"] else ""
        print(line)
    return EXIT_OK
