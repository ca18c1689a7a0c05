"""The ``leadtap`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Callable, Sequence

import structlog

from leadtap.core.config_values import parse_seconds
from leadtap.core.engine import upgrade_schema, utcnow
from leadtap.core.errors import ConfigError, LeadtapError, MessageError
from leadtap.core import notifications
from leadtap.core.reminders import sent_reminders
from leadtap.core.views import LEAD_COLUMNS, failed_messages, list_leads, reset_failed, show_lead
from leadtap.ingest.parse import parse_message
from leadtap import EXAMPLE_CONFIG
from leadtap.bootstrap import App, build_app
from leadtap.cli_check import cmd_check
from leadtap.output import write_rows
from leadtap.cli_deals import add_deal_commands
from leadtap.cli_replies import add_reply_commands
from leadtap.cli_leads import add_lead_commands, add_task_commands, record_id
from leadtap.logs import configure_logging
from leadtap.scheduler.daemon import Daemon

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if not getattr(args, "needs_config", True):
        return args.handler(args)
    try:
        app = build_app(args.config)
    except ConfigError as exc:
        print(f"leadtap: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in app.config.warnings:
        structlog.get_logger("leadtap").warning("config_warning", detail=warning)
    try:
        return args.handler(app, args)
    except LeadtapError as exc:
        print(f"leadtap: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        app.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadtap", description="Turns the mail of IMAP mailboxes into CRM leads.")
    parser.add_argument("--config", help="the TOML config (default: $LEADTAP_CONFIG, then ./leadtap.toml)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="create or upgrade the schema").set_defaults(handler=cmd_db_upgrade)

    poll = commands.add_parser("poll", help="one ingest pass over the active mailboxes, then exit")
    poll.add_argument("--mailbox", action="append", help="only this mailbox (may be repeated)")
    poll.set_defaults(handler=cmd_poll)

    extract = commands.add_parser("extract", help="try an extraction template on a saved message")
    extract.add_argument("--template", required=True, help="the template's name")
    extract.add_argument("file", type=Path, help="a saved message (.eml)")
    extract.set_defaults(handler=cmd_extract)

    leads = commands.add_parser("leads", help="list, show and change leads").add_subparsers(dest="leads_command", required=True)
    listing = leads.add_parser("list", help="list leads")
    listing.add_argument("--status")
    listing.add_argument("--owner", help="the owner's email")
    listing.add_argument("--format", choices=["table", "json", "csv"], default="table")
    listing.add_argument("--snoozed", action="store_true", help="only leads snoozed now")
    listing.add_argument("--stale", metavar="DURATION", type=duration, help='only open leads quiet that long ("7d")')
    listing.set_defaults(handler=cmd_leads_list)
    show = leads.add_parser("show", help="one lead with its thread and activities")
    show.add_argument("id", type=record_id)
    show.set_defaults(handler=cmd_leads_show)
    add_lead_commands(leads)
    add_task_commands(commands)
    add_deal_commands(commands)

    failed = commands.add_parser("failed", help="messages that could not be processed")
    failed_commands = failed.add_subparsers(dest="failed_command", required=True)
    failed_commands.add_parser("list", help="list them").set_defaults(handler=cmd_failed_list)
    retry = failed_commands.add_parser("retry", help="try them again now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the failed message's id (from `failed list`)")
    which.add_argument("--all", action="store_true", help="every failed message")
    retry.set_defaults(handler=cmd_failed_retry)

    commands.add_parser("run", help="the long-running worker: polling and reminders on a schedule").set_defaults(
        handler=cmd_run
    )

    remind = commands.add_parser("remind", help="one reminder sweep now")
    remind.add_argument("--dry-run", action="store_true", help="print who would get what; send nothing")
    remind.set_defaults(handler=cmd_remind)
    reminders = commands.add_parser("reminders", help="reminders sent").add_subparsers(dest="reminders_command",
                                                                                      required=True)
    reminders.add_parser("list", help="the latest reminders").set_defaults(handler=cmd_reminders_list)
    commands.add_parser("notify", help="send the new-lead emails owners are owed, now").set_defaults(
        handler=cmd_notify)
    owed = commands.add_parser("notifications", help="emails owed to owners (new lead, deals, confirmations)").add_subparsers(
        dest="notifications_command", required=True)
    owed.add_parser("list", help="the latest, sent or not").set_defaults(handler=cmd_notifications_list)
    add_reply_commands(commands)

    commands.add_parser("example-config", help="print the annotated example configuration").set_defaults(
        handler=cmd_example_config, needs_config=False)
    demo = commands.add_parser("demo", help="a throwaway Dovecot with sample enquiries, one poll, the leads")
    demo.add_argument("--dir", type=Path, default=Path("demo-run"), help="where its config and SQLite file go")
    demo.add_argument("--keep", action="store_true", help="keep the Dovecot up until Ctrl-C, to go on with")
    demo.set_defaults(handler=cmd_demo, needs_config=False)
    commands.add_parser("check", help="test the config, the database and every mailbox").set_defaults(
        handler=cmd_check
    )
    return parser


# --- commands ----------------------------------------------------------------


def cmd_db_upgrade(app: App, args: argparse.Namespace) -> int:
    before, after = upgrade_schema(app.db.engine)
    print(f"schema {'created' if before is None else 'at ' + before} → {after}" if before != after else
          f"schema already at {after}")
    return EXIT_OK


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
    if app.config.notifications.enabled or app.config.commands.enabled:
        print(app.send_notifications().summary())
    return EXIT_FAILED if any(r.failed for r in reports) else EXIT_OK


def show_progress(report) -> None:
    """One line on the terminal, rewritten after each batch; cleared at the pass's end."""
    done = report.done >= report.total
    print("\r\033[K" + ("" if done else report.progress()), end="", file=sys.stderr, flush=True)


def cmd_extract(app: App, args: argparse.Namespace) -> int:
    template = app.templates.get(args.template)
    if template is None:
        print(f"leadtap: no extraction template named {args.template!r}; defined: {list(app.templates)}",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        message = parse_message(args.file.read_bytes())
    except OSError as exc:
        print(f"leadtap: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except MessageError as exc:
        print(f"leadtap: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    found = template.try_on(message)
    result = {
        "template": args.template,
        "filters_pass": found is not None,
        "matched": bool(found and found.matched),
        "fields": found.fields if found else {},
        "missing": list(found.missing) if found else [],
        "warnings": list(message.warnings),
        "body": message.text,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return EXIT_OK if result["matched"] else EXIT_FAILED


def cmd_leads_list(app: App, args: argparse.Namespace) -> int:
    statuses = app.config.leads.statuses
    if args.status is not None and args.status not in statuses:
        print(f"leadtap: unknown status {args.status!r}; expected one of {', '.join(statuses)}", file=sys.stderr)
        return EXIT_USAGE
    now = utcnow()
    quiet_since = now - timedelta(seconds=parse_seconds(args.stale)) if args.stale else None
    app.db.check_schema()
    with app.db.transaction() as session:
        leads = list_leads(session, args.status, args.owner, now if args.snoozed else None, quiet_since,
                           app.config.leads.closed_statuses)
        write_rows(leads, args.format, sys.stdout, LEAD_COLUMNS, "lead")
    return EXIT_OK


def duration(text: str) -> str:
    try:
        parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def cmd_leads_show(app: App, args: argparse.Namespace) -> int:
    app.db.check_schema()
    with app.db.transaction() as session:
        lead = show_lead(session, args.id)
    if lead is None:
        print(f"leadtap: no lead with id {args.id}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(lead, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_failed_list(app: App, args: argparse.Namespace) -> int:
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
    db = app.ready_database()
    with db.transaction() as session:
        reset = reset_failed(session, None if args.all else [args.id])
    if not reset:
        print("leadtap: no such failed message" if not args.all else "no failed messages")
        return EXIT_FAILED if not args.all else EXIT_OK
    names = sorted({mailbox for mailbox, _ in reset if mailbox in [b.name for b in app.config.mailboxes]})
    print(f"retrying {len(reset)} message(s) in {', '.join(names) or 'no configured mailbox'}")
    return report_passes(app, app.ingest_mailboxes(names))


def cmd_run(app: App, args: argparse.Namespace) -> int:
    try:
        app.config.read_secrets()  # the worker starts with every secret, or not at all
        return Daemon(app, lambda: build_app(args.config), os.environ).run()
    except ConfigError as exc:  # a secret, or the metrics address
        print(f"leadtap: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def cmd_remind(app: App, args: argparse.Namespace) -> int:
    report = app.reminder_sweep().run(dry_run=args.dry_run)
    for line in report.plan:
        print(f"would send to {line}")
    print(report.summary() if not args.dry_run else f"reminders: {report.due} due (dry run, nothing sent)")
    if report.owes_mail:
        print(app.send_notifications().summary())  # the new owners, the old ones, the deals' owners hear at once
    return EXIT_FAILED if report.released or report.refused else EXIT_OK


def cmd_reminders_list(app: App, args: argparse.Namespace) -> int:
    return print_mail_sent(app, sent_reminders, "reminder", "(claimed)",
                           lambda row: f"rule {row['rule']} #{row['number']}"
                           + (f" (task {row['task_id']})" if row["task_id"] else ""))


def cmd_example_config(args: argparse.Namespace) -> int:
    """The annotated example config, shipped with leadtap: a start for your own."""
    sys.stdout.write(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from leadtap import demo  # the Dovecot it starts is only needed here

    return demo.run(args.dir, keep=args.keep, main=main)


def cmd_notify(app: App, args: argparse.Namespace) -> int:
    if app.config.smtp is None:
        print("notifications: off (no [smtp] table in the config)")
        return EXIT_OK
    report = app.send_notifications()
    print(report.summary())
    return EXIT_FAILED if report.retry or report.failed else EXIT_OK


def cmd_notifications_list(app: App, args: argparse.Namespace) -> int:
    return print_mail_sent(app, notifications.listed, "notification", "(not sent)", lambda row: row["kind"])


def print_mail_sent(app: App, load: Callable, noun: str, unsent: str, what: Callable[[dict], str]) -> int:
    """One line per email leadtap sent (or owes): when, the lead, what, state, to whom, the error."""
    app.db.check_schema()
    with app.db.transaction() as session:
        rows = load(session)
    for row in rows:
        lead = f"lead #{row['lead_id']}" if row["lead_id"] else "no lead"
        print(f"{row['sent_at'] or unsent:32}  {lead} {row['lead'] or ''!s:.30}  "
              f"{what(row)}  {row['state']}  → {row['recipient']}" + (f"  ({row['error']})" if row["error"] else ""))
    print(f"({len(rows)} {noun}{'s' if len(rows) != 1 else ''})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
