"""``leadtap notify`` and ``notifications list``: the emails owners are owed."""

from __future__ import annotations

import argparse

from leadtap.cli.common import EXIT_FAILED, EXIT_OK
from leadtap.cli.output import print_mail_sent
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    subcommands.add_parser("notify", help="send the new-lead emails owners are owed, now").set_defaults(
        handler=cmd_notify)
    owed = subcommands.add_parser("notifications", help="emails owed to owners (new lead, deals, confirmations)").add_subparsers(
        dest="notifications_command", required=True)
    owed.add_parser("list", help="the latest, sent or not").set_defaults(handler=cmd_notifications_list)


def cmd_notify(app: App, args: argparse.Namespace) -> int:
    if app.config.smtp is None:
        print("notifications: off (no [smtp] table in the config)")
        return EXIT_OK
    report = app.send_notifications()
    print(report.summary())
    return EXIT_FAILED if report.retry or report.failed else EXIT_OK


def cmd_notifications_list(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.store import notifications
    return print_mail_sent(app, notifications.listed, "notification", "(not sent)", lambda row: row["kind"])
