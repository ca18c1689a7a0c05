"""Deal staleness benchmark: 100,000 open deals (and as many leads), of
which about 1 % are within a staleness limit's warning; then the reminder
sweep's select of the stale candidates (``core.use_cases.deal_changes.stale_candidates``:
one indexed query over the open deals) and, for the record, the `--stale`
listing that decides each one.

    .venv/bin/python bench/deals.py [-n 100000] [--database URL]

Target: the stale select < 1 s over 100,000 open deals.
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

from sqlalchemy import insert, select, text  # noqa: E402

from leadtap.bootstrap import build_app  # noqa: E402
from leadtap.core.store.db import Lead, Opportunity, Owner  # noqa: E402
from leadtap.core.store.engine import upgrade_schema  # noqa: E402
from leadtap.core.use_cases.deal_changes import stale_candidates  # noqa: E402
from leadtap.core.use_cases.deal_views import list_deals  # noqa: E402

CONFIG = """
[database]
url = "{url}"

[smtp]
host = "127.0.0.1"
security = "plain"
from = "leadtap <crm@example.com>"

[opportunities]
stages = ["Discovery", "Proposal", "Negotiation", "Won", "Lost"]
lost_reasons = ["Price", "Stale", "Other"]

[opportunities.staleness]
max_open = "120d"
max_in_stage = {{ Discovery = "14d", Proposal = "21d", Negotiation = "30d" }}
max_idle = "30d"
warn_before = "3d"

[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
roles = ["sales"]
"""
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
STAGES = ("Discovery", "Proposal", "Negotiation")


def fill(app, n: int) -> None:
    """Deals made over the last 100 days, each in its stage since a tenth of
    its age, active within the last 20 days; 1 in 100 in Discovery for 12 days
    (within the 3 days' warning of its 14-day limit)."""
    db = app.ready_database()
    with db.transaction() as session:
        owners = list(session.scalars(select(Owner.id)))
        for start in range(0, n, 10_000):
            count = min(10_000, n - start)
            ages = [timedelta(days=20 if i % 100 == 0 else (i * 7919) % 100, minutes=i % 1440)
                    for i in range(start, start + count)]
            session.execute(insert(Lead), [
                {"name": f"Person {i}", "email": f"p{i}@client.example", "source": "Email", "status": "New",
                 "status_changed_at": NOW - age, "owner_id": owners[i % len(owners)], "mailbox": "sales",
                 "contact": f"p{i}@client.example", "received_at": NOW - age, "created_at": NOW - age,
                 "last_activity_at": NOW - timedelta(days=i % 20), "fields": {}, "warnings": [],
                 "automation_stopped": False}
                for i, age in zip(range(start, start + count), ages)])
            first = session.scalar(select(Lead.id).order_by(Lead.id.desc()).limit(1)) - count + 1
            session.execute(insert(Opportunity), [deal_row(first + k, start + k, age, owners)
                                                  for k, age in enumerate(ages)])
            print(f"\rfilling: {start + count}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def deal_row(lead_id: int, i: int, age: timedelta, owners: list[int]) -> dict:
    stage, in_stage = STAGES[i % 3], age / 10
    if i % 100 == 0:
        stage, in_stage = "Discovery", timedelta(days=12)
    return {"lead_id": lead_id, "owner_id": owners[i % len(owners)], "title": f"Person {i}", "stage": stage,
            "created_at": NOW - age, "stage_changed_at": NOW - min(in_stage, age), "fields": {}}


def timed(call, runs: int = 5) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="open deals (default 100,000)")
    parser.add_argument("--database", help="a PostgreSQL URL (default: a fresh SQLite file); its tables are replaced")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadtap-bench-deals-") as tmp:
        url = args.database or f"sqlite:///{tmp}/bench.db"
        config = Path(tmp) / "leadtap.toml"
        config.write_text(CONFIG.format(url=url))
        app = build_app(str(config), {**os.environ})
        if args.database:
            with app.db.engine.begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade_schema(app.db.engine)
        fill(app, args.n)
        if app.db.engine.dialect.name == "postgresql":
            with app.db.engine.begin() as connection:
                connection.execute(text("ANALYZE"))
        rules = app.lead_rules()
        with app.db.transaction() as session:
            select_seconds, candidates = timed(lambda: stale_candidates(session, rules, NOW))
            list_seconds, stale = timed(lambda: list_deals(session, rules, NOW, stale=True), runs=3)
        app.close()
    print(f"database: {app.db.engine.dialect.name}; open deals: {args.n:,}")
    print(f"stale select: {select_seconds:.3f} s (median of 5), {len(candidates):,} candidates (target < 1 s)")
    print(f"opportunities list --stale: {list_seconds:.3f} s, {len(stale):,} deals within a warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
