"""``leadtap tasks list|add|done``: the leads' tasks."""

from __future__ import annotations

import argparse
import json
import sys


from leadtap.cli.common import EXIT_OK, EXIT_USAGE, change, moment, record_id, refuse_unknown_owner


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    tasks = subcommands.add_parser("tasks", help="the leads' tasks").add_subparsers(dest="tasks_command", required=True)
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


def cmd_tasks_list(app, args) -> int:
    from sqlalchemy import select
    from leadtap.core.store.db import Owner, Task
    from leadtap.core.store.engine import utcnow
    if refuse_unknown_owner(app, args.owner):
        return EXIT_USAGE
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


def cmd_tasks_add(app, args) -> int:
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases import changes
    now = utcnow()
    due = moment(args.due, now, app.config.reminders.zone, "due")
    if due < now:
        print(f"leadtap: note: the task is due {due.astimezone(app.config.reminders.zone):%Y-%m-%d %H:%M}, "
              "in the past: it is overdue from the start", file=sys.stderr)
    return change(app, args, lambda s, rules, actor, at: changes.add_task(s, rules, args.lead, args.title, due, actor,
                                                                          at), now)


def cmd_tasks_done(app, args) -> int:
    from leadtap.core.store.engine import utcnow
    from leadtap.core.use_cases import changes
    db = app.ready_database()
    rules = app.lead_rules()
    with db.transaction() as session:
        actor = changes.acting(session, args.by, rules.pipeline)
        task = changes.finish_task(session, args.id, actor, utcnow())
        print(f"task {task.id} done (lead {task.lead_id}: {task.title})")
    return EXIT_OK
