"""Lifecycle benchmark: one SQLite database with 100,000 leads, 300,000
activities and 100,000 tasks (10,000 of them overdue); then 500 status moves
through the same use case as `leadtap leads set` (one transaction each: load
and lock the lead, the rules, the activity, the status's task), and the
stale-task sweep's select (a `kind = "task"` rule).

    .venv/bin/python bench/lifecycle.py [-n 100000] [--moves 500]

Targets: a move p50 < 20 ms; the overdue-task select < 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from leadtap.core.use_cases import changes  # noqa: E402
from leadtap.core.config.load import ReminderRule  # noqa: E402
from leadtap.core.store.db import Activity, Lead, Owner, Task  # noqa: E402
from leadtap.core.store.engine import upgrade_schema  # noqa: E402
from leadtap.core.store.reminders import find_due  # noqa: E402
from leadtap.core.rules.lifecycle import actor_for  # noqa: E402
from leadtap.bootstrap import build_app  # noqa: E402

CONFIG = """
[database]
url = "sqlite:///{db}"

[leads]
statuses = ["New", "Attempting", "Contacted", "Qualified", "Disqualified"]
closed_statuses = ["Qualified", "Disqualified"]

[pipeline]
no_skipping = true
no_going_back = true

[[statuses]]
name = "Attempting"
tasks = [ {{ title = "Call {{{{ lead.name }}}}", due = "1d" }} ]

[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
roles = ["sales"]
"""
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def fill(app, n: int) -> None:
    db = app.ready_database()
    with db.transaction() as session:
        owners = list(session.scalars(select(Owner.id)))
        for start in range(0, n, 10_000):
            rows = [{"name": f"Person {i}", "email": f"p{i}@client.example", "source": "Email", "status": "New",
                     "status_changed_at": NOW - timedelta(days=i % 30), "owner_id": owners[i % len(owners)],
                     "mailbox": "sales", "contact": f"p{i}@client.example", "received_at": NOW, "created_at": NOW,
                     "fields": {}, "warnings": [], "automation_stopped": False}
                    for i in range(start, min(start + 10_000, n))]
            session.execute(insert(Lead), rows)
            ids = range(start + 1, start + len(rows) + 1)
            session.execute(insert(Activity), [{"lead_id": lead, "kind": kind, "at": NOW, "summary": kind,
                                                "details": {}} for lead in ids for kind in ("created", "email", "note")])
            session.execute(insert(Task), [{"lead_id": lead, "owner_id": owners[lead % len(owners)], "title": "Call",
                                            "due_at": NOW - timedelta(days=2 if lead % 10 == 0 else -2),
                                            "state": "open", "created_at": NOW} for lead in ids])
            print(f"\rfilling: {start + len(rows)}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def moves(app, count: int) -> list[float]:
    db, rules = app.ready_database(), app.lead_rules()
    actor = actor_for(None, rules.pipeline)
    took = []
    for lead_id in range(1, count * 197, 197):  # spread over the table
        started = time.perf_counter()
        with db.transaction() as session:
            changes.set_status(session, rules, lead_id, "Attempting", actor, NOW)
        took.append(time.perf_counter() - started)
    return took


def overdue_select(app) -> tuple[float, int]:
    """The stale-task sweep's select, as `leadtap remind` makes it: the overdue
    open tasks of open, unsnoozed leads with their owners, and what was sent."""
    db = app.ready_database()
    rule = ReminderRule(name="task-overdue", kind="task", after=timedelta(days=1), template="task_overdue")
    started = time.perf_counter()
    with db.transaction() as session:
        found = find_due(session, (rule,), app.config.leads.closed_statuses, NOW)
    return time.perf_counter() - started, len(found.due)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000, help="leads (default 100,000)")
    parser.add_argument("--moves", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="leadtap-bench-"))
    config = work / "leadtap.toml"
    config.write_text(CONFIG.format(db=work / "bench.db"))
    app = build_app(str(config), {})
    try:
        upgrade_schema(app.db.engine)
        fill(app, args.n)
        took = moves(app, args.moves)
        select_seconds, overdue = overdue_select(app)
    finally:
        app.close()
    took_ms = sorted(t * 1000 for t in took)
    print(f"leads:                 {args.n} (activities: {3 * args.n}, tasks: {args.n})")
    print(f"status moves:          {len(took)}, p50 {statistics.median(took_ms):.1f} ms, "
          f"p95 {took_ms[int(len(took_ms) * 0.95) - 1]:.1f} ms  (target p50 < 20 ms)")
    print(f"stale-task sweep select: {select_seconds:.3f} s for {overdue} tasks  (target < 1 s)")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}, SQLite")


if __name__ == "__main__":
    main()
