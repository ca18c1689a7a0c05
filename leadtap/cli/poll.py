"""``leadtap poll``: one ingest pass over the mailboxes, then what it made
owed (new owners' and replies' emails)."""

from __future__ import annotations

import argparse
import sys

from leadtap.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    poll = subcommands.add_parser("poll", help="one ingest pass over the active mailboxes, then exit")
    poll.add_argument("--mailbox", action="append", help="only this mailbox (may be repeated)")
    poll.set_defaults(handler=cmd_poll)


def cmd_poll(app: App, args: argparse.Namespace) -> int:
    names = args.mailbox
    boxes = {b.name: b for b in app.config.mailboxes}
    for name in names or ():
        if name not in boxes:
            print(f"leadtap: no mailbox named {name!r} in {app.config.path}", file=sys.stderr)
            return EXIT_USAGE
        if not boxes[name].active:
            print(f"leadtap: mailbox {name!r} is not active (active = false in {app.config.path}); "
                  "set active = true to poll it", file=sys.stderr)
            return EXIT_USAGE
    reports = app.ingest_mailboxes(names, on_progress=show_progress if sys.stderr.isatty() else None)
    return report_passes(app, reports)


def report_passes(app: App, reports) -> int:
    """Each mailbox's line, then what the passes made owed: new owners' and replies' emails."""
    for report in reports:
        print(report.summary())
    if app.config.notifications.enabled or app.config.commands.enabled or app.config.workflows or app.config.webhooks:
        print(app.send_notifications().summary())
    return EXIT_FAILED if any(r.failed for r in reports) else EXIT_OK


def show_progress(report) -> None:
    """One line on the terminal, rewritten after each batch; cleared at the pass's end."""
    done = report.done >= report.total
    print("\r\033[K" + ("" if done else report.progress()), end="", file=sys.stderr, flush=True)
