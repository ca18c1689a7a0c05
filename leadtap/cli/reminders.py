"""``leadtap remind`` and ``reminders list``: one reminder sweep now, and
the reminders sent."""

from __future__ import annotations

import argparse

from leadtap.cli.common import EXIT_FAILED, EXIT_OK
from leadtap.cli.output import print_mail_sent
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    remind = subcommands.add_parser("remind", help="one reminder sweep now")
    remind.add_argument("--dry-run", action="store_true", help="print who would get what; send nothing")
    remind.set_defaults(handler=cmd_remind)
    reminders = subcommands.add_parser("reminders", help="reminders sent").add_subparsers(dest="reminders_command",
                                                                                      required=True)
    reminders.add_parser("list", help="the latest reminders").set_defaults(handler=cmd_reminders_list)


def cmd_remind(app: App, args: argparse.Namespace) -> int:
    report = app.reminder_sweep().run(dry_run=args.dry_run)
    if args.dry_run:
        print_rehearsal(app, report)
        return EXIT_OK
    print(report.summary())
    if report.owes_mail:
        print(app.send_notifications().summary())  # the new owners, the old ones, the deals' owners hear at once
    return EXIT_FAILED if report.released or report.refused else EXIT_OK


def print_rehearsal(app: App, report) -> None:
    """What the sweep would do now, step by step; outside business hours, what waits for them."""
    if report.waits_until is not None:
        zone = app.config.reminders.timezone
        print(f"outside business hours: nothing is sent until {report.waits_until:%a %Y-%m-%d %H:%M} ({zone}); "
              "then, unless something changes:")
    for line in report.plan:
        print(f"would {line}")
    print(f"{report.summary(dry_run=True)} (dry run, nothing sent)")


def cmd_reminders_list(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.store.reminders import sent_reminders
    return print_mail_sent(app, sent_reminders, "reminder", "(claimed)",
                           lambda row: f"rule {row['rule']} #{row['number']}"
                           + (f" (task {row['task_id']})" if row["task_id"] else ""))
