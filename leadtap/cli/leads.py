"""``leadtap leads list|show|add|edit|log|set|assign|note|snooze``: the leads, and
people entering and changing them."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from leadtap.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, change, duration, moment, parse_field, positive,
                                record_id, refuse_unknown_owner)
from leadtap.cli import export
from leadtap.cli.output import write_rows
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    leads = subcommands.add_parser("leads", help="list, show and change leads").add_subparsers(dest="leads_command", required=True)
    listing = leads.add_parser("list", help="list leads")
    listing.add_argument("--status")
    listing.add_argument("--pipeline", help="only this pipeline's leads ([[pipelines]] name, or the default one's)")
    listing.add_argument("--owner", help="the owner's email")
    listing.add_argument("--format", choices=["table", "json", "csv"], default="table")
    listing.add_argument("--snoozed", action="store_true", help="only leads snoozed now")
    listing.add_argument("--stale", metavar="DURATION", type=duration, help='only open leads quiet that long ("7d")')
    add_order(listing, "the first N leads")
    listing.set_defaults(handler=cmd_leads_list)
    export.add_arguments(leads.add_parser("export", help="every lead, streamed to CSV or JSON Lines"))
    kanban = leads.add_parser("board", help="the Kanban: each status's count and its first leads")
    kanban.add_argument("--owner", help="the owner's email")
    kanban.add_argument("--pipeline", help="this pipeline's statuses and leads (default: the default pipeline)")
    kanban.add_argument("--format", choices=["table", "json"], default="table")
    add_order(kanban, "leads shown per status (default 5)", default=5)
    kanban.set_defaults(handler=cmd_leads_board)
    rename = leads.add_parser("rename-status", help="move the leads of a status no longer configured to its new name")
    rename.add_argument("old", help="the status as the leads have it (no longer in [leads] statuses)")
    rename.add_argument("new", help="a configured status")
    rename.add_argument("--dry-run", action="store_true", help="say how many leads; change nothing")
    rename.add_argument("--pipeline", help="the leads of this pipeline (default: the default pipeline)")
    rename.set_defaults(handler=cmd_leads_rename_status)
    moved = leads.add_parser("rename-pipeline",
                             help="move the leads of a pipeline no longer configured to a configured one")
    moved.add_argument("old", help="the pipeline as the leads have it (no longer in [[pipelines]])")
    moved.add_argument("new", help="a configured pipeline ([[pipelines]] name, or the default one's)")
    moved.add_argument("--dry-run", action="store_true", help="say how many leads; change nothing")
    moved.set_defaults(handler=cmd_leads_rename_pipeline)
    show = leads.add_parser("show", help="one lead with its thread and activities")
    show.add_argument("id", type=record_id)
    show.set_defaults(handler=cmd_leads_show)
    by = argparse.ArgumentParser(add_help=False)
    by.add_argument("--by", metavar="EMAIL", help="the owner who acts (default: cli, as an admin)")

    add = leads.add_parser("add", parents=[by], help="enter a lead by hand (a phone enquiry, a card)")
    add.add_argument("--name")
    add.add_argument("--email")
    add.add_argument("--phone")
    add.add_argument("--company")
    add.add_argument("--source", help="one of [leads] sources (default: default_source)")
    add.add_argument("--status", help="an open status (default: default_status; [pipeline] create_in limits it)")
    add.add_argument("--owner", help="an active owner's email, or next: the rotation's (default: --by, else next)")
    add.add_argument("--message", help="what the contact asked for")
    add.add_argument("--type", help="one of [leads] types (default: default_type)")
    add.add_argument("--pipeline", help="a [[pipelines]] name (default: the default pipeline)")
    add.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="a custom field")
    add.add_argument("--attach", action="store_true",
                     help="the contact has an open lead: add this to it as a note instead of refusing")
    add.set_defaults(handler=cmd_leads_add)

    edit = leads.add_parser("edit", parents=[by], help="change a lead's fields or source, not its status")
    edit.add_argument("id", type=record_id)
    for name in ("name", "email", "phone", "company"):
        edit.add_argument(f"--{name}", help="an empty value clears it" if name != "name" else None)
    edit.add_argument("--source", help="one of [leads] sources")
    edit.add_argument("--type", help="one of [leads] types")
    edit.add_argument("--field", action="append", default=[], metavar="NAME=VALUE",
                      help="a custom field (NAME= clears it)")
    edit.set_defaults(handler=cmd_leads_edit)

    log = leads.add_parser("log", parents=[by], help="log a call or a meeting (automation may move the lead)")
    log.add_argument("id", type=record_id)
    log.add_argument("kind", choices=["call", "meeting", "contact"],
                     help="contact: the contact was reached another way (Hanna's note with a contact date)")
    log.add_argument("--outcome", help="call: connected, no-answer, left-voicemail, busy, booked; "
                                       "meeting: booked, completed, no-show")
    log.add_argument("--at", help="when (2026-12-06 14:30, in [reminders] timezone; default now); "
                                  "a meeting booked: its day")
    log.add_argument("--note")
    log.set_defaults(handler=cmd_leads_log)

    status = leads.add_parser("set", parents=[by], help="move a lead to another status")
    status.add_argument("id", type=record_id)
    status.add_argument("--status", required=True)
    status.add_argument("--reason", help="why (needed to disqualify)")
    status.add_argument("--note", help="a note with the move (needed with the 'other' reason)")
    status.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="set a field too")
    status.set_defaults(handler=cmd_leads_set)

    assign = leads.add_parser("assign", parents=[by], help="give a lead another owner")
    assign.add_argument("id", type=record_id)
    assign.add_argument("owner", help="an active owner's email, or next: the rotation's next owner")
    assign.set_defaults(handler=cmd_leads_assign)

    note = leads.add_parser("note", parents=[by], help="add a note to a lead")
    note.add_argument("id", type=record_id)
    note.add_argument("text")
    note.add_argument("--contacted", nargs="?", const="now", metavar="WHEN",
                      help="the note records a contact (now, or 2026-12-06 14:30): logged as one, "
                           "and automation moves the lead as for a reply")
    note.set_defaults(handler=cmd_leads_note)

    snooze = leads.add_parser("snooze", parents=[by], help="no reminders for a lead until then")
    snooze.add_argument("id", type=record_id)
    snooze.add_argument("until", help='a duration ("3d") or a date (2026-12-01)')
    snooze.set_defaults(handler=cmd_leads_snooze)


def add_order(parser: argparse.ArgumentParser, limit_help: str, default: int | None = None) -> None:
    parser.add_argument("--sort", choices=["id", "received", "status", "owner", "stale"], default="id",
                        help="stale: the longest without activity first")
    parser.add_argument("--desc", action="store_true", help="the other way round")
    parser.add_argument("--limit", type=positive, default=default, metavar="N", help=limit_help)


def known_status(app: App, reader, given: str, statuses: tuple[str, ...]) -> str | None:
    """A configured status (in any case), or one leads still have though the
    config no longer names it; ``reader``: a Connection or a Session."""
    from sqlalchemy import select

    from leadtap.core.rules.reply_grammar import pick
    from leadtap.core.store.tables import leads
    name = pick(given, statuses)
    if name in statuses or reader.scalar(select(leads.c.id).where(leads.c.status == given).limit(1)) is not None:
        return name
    print(f"leadtap: unknown status {given!r}; expected one of {', '.join(statuses)}", file=sys.stderr)
    return None


def chosen_pipeline(app: App, name: str | None):
    """``--pipeline NAME``: the pipeline (any case); None without it; False, said, when unknown."""
    if name is None:
        return None
    found = app.config.pipeline_called(name)
    if found is None:
        names = ", ".join(p.name for p in app.config.every_pipeline)
        print(f"leadtap: unknown pipeline {name!r}; expected one of {names}", file=sys.stderr)
        return False
    return found


def cmd_leads_list(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.config.values import parse_seconds
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases.listing import LEAD_COLUMNS, list_leads
    if refuse_unknown_owner(app, args.owner):
        return EXIT_USAGE
    now = utcnow()
    quiet_since = now - timedelta(seconds=parse_seconds(args.stale)) if args.stale else None
    pipeline = chosen_pipeline(app, args.pipeline)
    if pipeline is False:
        return EXIT_USAGE
    statuses = pipeline.statuses if pipeline else app.config.statuses
    app.db.check_schema()
    with app.db.reading_connection() as connection:  # SQLAlchemy Core: the ORM is never loaded
        if args.status is not None:
            args.status = known_status(app, connection, args.status, statuses)
            if args.status is None:
                return EXIT_USAGE
        leads = list_leads(connection, args.status, args.owner, now if args.snoozed else None, quiet_since,
                           app.config.closed, args.sort, args.desc, args.limit, statuses,
                           (pipeline.key,) if pipeline else None)
        columns = LEAD_COLUMNS if len(app.config.every_pipeline) == 1 else (
            *LEAD_COLUMNS[:LEAD_COLUMNS.index("status")], "pipeline", *LEAD_COLUMNS[LEAD_COLUMNS.index("status"):])
        write_rows(leads, args.format, sys.stdout, columns, "lead")
    return EXIT_OK


def cmd_leads_board(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.use_cases.views import board
    if refuse_unknown_owner(app, args.owner):
        return EXIT_USAGE
    pipeline = chosen_pipeline(app, args.pipeline) if args.pipeline else app.config.pipeline
    if pipeline is False:
        return EXIT_USAGE
    app.db.check_schema()
    with app.db.transaction() as session:
        columns = board(session, pipeline.statuses, args.owner, args.limit, args.sort, args.desc, (pipeline.key,))
    if len(app.config.every_pipeline) > 1 and args.format != "json":
        print(f"pipeline {pipeline.name}")
    if args.format == "json":
        json.dump(columns, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_board(columns, pipeline.closed)
    return EXIT_OK


def print_board(columns: list[dict], closed: tuple[str, ...], width: int = 24) -> None:
    """A column per status: its name and count, then its first leads."""
    header = [f"{c['status']}{'' if c['configured'] else ' (not configured)'} ({c['count']})" for c in columns]
    cells = [[f"#{lead['id']} {lead['name'] or '-'}" for lead in c["leads"]] for c in columns]
    cells = [column + (["…"] if c["count"] > len(c["leads"]) else []) for c, column in zip(columns, cells)]
    print("  ".join(cut(h, width).ljust(width) for h in header).rstrip())
    print("  ".join("-" * width for _ in header))
    for row in range(max((len(column) for column in cells), default=0)):
        print("  ".join(cut(column[row] if row < len(column) else "", width).ljust(width)
                        for column in cells).rstrip())
    print(f"({sum(c['count'] for c in columns)} leads, "
          f"{sum(c['count'] for c in columns if c['status'] not in closed)} open)")


def cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_leads_rename_status(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases.changes import acting, rename_status
    pipeline = chosen_pipeline(app, args.pipeline) if args.pipeline else app.config.pipeline
    if pipeline is False:
        return EXIT_USAGE
    with app.ready_database().transaction() as session:
        renamed = rename_status(session, app.lead_rules(), args.old, args.new, acting(session, None,
                                app.config.pipeline), utcnow(), dry_run=args.dry_run, pipeline=pipeline)
    from leadtap.core.rules.reply_grammar import pick
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {renamed} lead{'s' if renamed != 1 else ''} from {args.old!r} (no longer configured) "
          f"to {pick(args.new, pipeline.statuses)!r}; their stays go on")
    return EXIT_OK


def cmd_leads_rename_pipeline(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases.changes import acting, rename_pipeline
    with app.ready_database().transaction() as session:
        moved, pipeline = rename_pipeline(session, app.lead_rules(), args.old, args.new,
                                          acting(session, None, app.config.pipeline), utcnow(), dry_run=args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {moved} lead{'s' if moved != 1 else ''} from the pipeline {args.old!r} (no longer configured) "
          f"to {pipeline.name!r}; their statuses as they were (leadtap check lists any it has not)")
    return EXIT_OK


def cmd_leads_show(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.use_cases.views import show_lead
    app.db.check_schema()
    with app.db.transaction() as session:
        lead = show_lead(session, args.id)
    if lead is None:
        print(f"leadtap: no lead with id {args.id}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(lead, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_leads_add(app, args) -> int:
    from leadtap.core.use_cases.new_leads import Entry, add_lead
    entry = Entry(given_fields(args), args.source, args.status, args.owner, args.message, args.type, args.pipeline)
    return change(app, args, lambda s, rules, actor, now: add_lead(s, rules, entry, actor, now, args.attach))


def cmd_leads_edit(app, args) -> int:
    from leadtap.core.use_cases import changes
    values = given_fields(args)
    return change(app, args, lambda s, rules, actor, now: changes.edit(s, rules, args.id, values, args.source,
                                                                       actor, now, args.type))


def cmd_leads_log(app, args) -> int:
    outcome = args.outcome.strip().lower() if args.outcome else None
    return log_contact(app, args, args.kind, outcome, args.at, args.note)


def log_contact(app, args, kind: str, outcome: str | None, at_text: str | None, note: str | None) -> int:
    """A call, meeting or contact logged at ``at_text`` (in [reminders] timezone; None: now)."""
    from leadtap.core.errors import LeadtapError
    from leadtap.core.rules.reply_grammar import when
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases import changes
    now = utcnow()
    try:
        at = when(at_text, app.config.reminders.zone) if at_text else now
    except ValueError as exc:
        raise LeadtapError(f"--at {exc}") from None
    return change(app, args, lambda s, rules, actor, moment: changes.log_contact(
        s, rules, args.id, kind, outcome, at, note, actor, moment), now)


def given_fields(args) -> dict[str, str]:
    """``--field k=v``… and ``--name``, ``--email``, ``--phone``, ``--company``."""
    fields = dict(parse_field(f) for f in args.field)
    fields.update({name: getattr(args, name) for name in ("name", "email", "phone", "company")
                   if getattr(args, name) is not None})
    return fields


def cmd_leads_set(app, args) -> int:
    from leadtap.core.use_cases import changes
    values = dict(parse_field(f) for f in args.field)
    return change(app, args, lambda s, rules, actor, now: changes.set_status(
        s, rules, args.id, args.status, actor, now, args.reason, args.note, values))


def cmd_leads_assign(app, args) -> int:
    from leadtap.core.use_cases import changes
    return change(app, args, lambda s, rules, actor, now: changes.reassign(s, rules, args.id, args.owner, actor, now))


def cmd_leads_note(app, args) -> int:
    from leadtap.core.use_cases import changes
    if args.contacted is not None:
        return log_contact(app, args, "contact", None, None if args.contacted == "now" else args.contacted, args.text)
    return change(app, args, lambda s, rules, actor, now: changes.note(s, rules, args.id, args.text, actor, now))


def cmd_leads_snooze(app, args) -> int:
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases import changes
    now = utcnow()
    until = moment(args.until, now, app.config.reminders.zone, "snooze until")
    return change(app, args, lambda s, rules, actor, at: changes.snooze(s, rules, args.id, until, actor, at), now)
