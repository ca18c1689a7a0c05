"""The command line's lifecycle commands: people change leads and tasks.

``leads set|assign|note|snooze`` and ``tasks list|done``. Every refused
change names the rule, changes nothing and exits 1."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from leadtap.core import changes, commands, deals, lifecycle
from leadtap.core.db import Owner, Task
from leadtap.core.engine import describe_db_error, utcnow
from leadtap.core.errors import LeadtapError
from leadtap.core.words import described

EXIT_OK = 0


MAX_ID = 2**63 - 1


def record_id(text: str) -> int:
    """A lead or task id: a whole number the database can hold."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id") from None
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (1 to {MAX_ID})")
    return value


def add_lead_commands(leads: argparse._SubParsersAction) -> None:
    by = argparse.ArgumentParser(add_help=False)
    by.add_argument("--by", metavar="EMAIL", help="the owner who acts (default: cli, as an admin)")

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
    note.set_defaults(handler=cmd_leads_note)

    snooze = leads.add_parser("snooze", parents=[by], help="no reminders for a lead until then")
    snooze.add_argument("id", type=record_id)
    snooze.add_argument("until", help='a duration ("3d") or a date (2026-12-01)')
    snooze.set_defaults(handler=cmd_leads_snooze)


def add_task_commands(commands: argparse._SubParsersAction) -> None:
    tasks = commands.add_parser("tasks", help="the leads' tasks").add_subparsers(dest="tasks_command", required=True)
    listing = tasks.add_parser("list", help="open tasks")
    listing.add_argument("--owner", help="the owner's email")
    listing.add_argument("--lead", type=record_id)
    listing.add_argument("--overdue", action="store_true")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(handler=cmd_tasks_list)
    add = tasks.add_parser("add", help="add a task to a lead, for its owner")
    add.add_argument("lead", type=record_id)
    add.add_argument("title")
    add.add_argument("--due", required=True, help='a duration ("2d") or a date (2026-12-01)')
    add.add_argument("--by", metavar="EMAIL")
    add.set_defaults(handler=cmd_tasks_add)
    done = tasks.add_parser("done", help="mark a task done")
    done.add_argument("id", type=record_id)
    done.add_argument("--by", metavar="EMAIL")
    done.set_defaults(handler=cmd_tasks_done)


def cmd_leads_set(app, args) -> int:
    values = dict(parse_field(f) for f in args.field)
    return change(app, args, lambda s, rules, actor, now: changes.set_status(
        s, rules, args.id, args.status, actor, now, args.reason, args.note, values))


def cmd_leads_assign(app, args) -> int:
    return change(app, args, lambda s, rules, actor, now: changes.reassign(s, rules, args.id, args.owner, actor, now))


def cmd_leads_note(app, args) -> int:
    return change(app, args, lambda s, rules, actor, now: changes.note(s, rules, args.id, args.text, actor, now))


def cmd_tasks_add(app, args) -> int:
    now = utcnow()
    due = moment(args.due, now, app.config.reminders.zone, "due")
    return change(app, args, lambda s, rules, actor, at: changes.add_task(s, rules, args.lead, args.title, due, actor,
                                                                          at), now)


def cmd_leads_snooze(app, args) -> int:
    now = utcnow()
    until = moment(args.until, now, app.config.reminders.zone, "snooze until")
    return change(app, args, lambda s, rules, actor, at: changes.snooze(s, rules, args.id, until, actor, at), now)


def change(app, args, apply, now: datetime | None = None) -> int:
    """One change in one transaction; a refusal rolls it back and exits 1."""
    db = app.ready_database()
    rules = app.lead_rules()
    now = now or utcnow()
    try:
        with db.transaction() as session:
            actor = changes.acting(session, args.by, rules.pipeline)
            done = apply(session, rules, actor, now)
    except DBAPIError as exc:  # a lock conflict, a value the database refuses: said, not a traceback
        raise LeadtapError(f"the database refused the change: {describe_db_error(exc)}") from None
    done = done if isinstance(done, list) else [done]  # a change, and the move automation made after it
    print(f"lead {done[0].lead_id}: " + described(done))
    if owes_mail(app, done):
        print(app.send_notifications().summary())  # after the commit: the new owner hears at once
    return EXIT_OK


def owes_mail(app, done: list) -> bool:
    """A new owner (of a lead, or of an onboarding) is told at once."""
    if any(change.of(lifecycle.OwnerChanged) for change in done):
        return app.config.notifications.enabled
    return any(change.of(deals.OnboardingNeeded) for change in done) and app.config.smtp is not None


def parse_field(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise LeadtapError(f"--field {text!r}: NAME=VALUE is expected")
    return name.strip(), value.strip()


def moment(text: str, now: datetime, zone, what: str) -> datetime:
    """``3d`` from now, or the start of a date in the reminders' timezone."""
    try:
        return commands.moment(text, now, zone)
    except ValueError as exc:
        raise LeadtapError(f"{what} {exc}") from None


def cmd_tasks_list(app, args) -> int:
    db = app.ready_database()
    now = utcnow()
    with db.transaction() as session:
        query = (select(Task, Owner.email).outerjoin(Owner, Owner.id == Task.owner_id)
                 .where(Task.state == "open").order_by(Task.due_at, Task.id))
        if args.owner:
            query = query.where(Owner.email == args.owner.lower())
        if args.lead:
            query = query.where(Task.lead_id == args.lead)
        if args.overdue:
            query = query.where(Task.due_at < now)
        rows = [{"id": t.id, "lead": t.lead_id, "title": t.title, "due_at": t.due_at.isoformat(), "owner": email,
                 "overdue": t.due_at < now} for t, email in session.execute(query)]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for row in rows:
            flag = "  OVERDUE" if row["overdue"] else ""
            print(f"{row['id']:>5}  lead {row['lead']:<6} {row['due_at'][:16]}  {row['owner'] or '-':<24} {row['title']}{flag}")
        print(f"({len(rows)} open task{'s' if len(rows) != 1 else ''})")
    return EXIT_OK


def cmd_tasks_done(app, args) -> int:
    db = app.ready_database()
    rules = app.lead_rules()
    with db.transaction() as session:
        actor = changes.acting(session, args.by, rules.pipeline)
        task = changes.finish_task(session, args.id, actor, utcnow())
        print(f"task {task.id} done (lead {task.lead_id}: {task.title})")
    return EXIT_OK
