"""Reminder benchmark: one SQLite database with 1,000,000 leads of which
10,000 are stale; prints how long selecting the stale ones takes and how many
reminders per second go out to a local aiosmtpd server over one connection.

    .venv/bin/python bench/reminders.py [--leads 1000000] [--stale 10000]

Targets: selection under 1 s, at least 300 reminders/s.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadtap.core.store.engine import Database, upgrade_schema  # noqa: E402
from leadtap.core.store.reminders import find_due  # noqa: E402
from leadtap.bootstrap import build_app  # noqa: E402
from leadtap.dovecot import free_port  # noqa: E402
from leadtap.core.logs import configure_logging  # noqa: E402

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
CONFIG = """
[database]
url = "sqlite:///{db}"

[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
roles = ["sales"]

[smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "leadtap <crm@example.com>"

[[reminders.rules]]
name = "new-untouched"
status = "New"
after = "2d"
"""


def fill(db_file: Path, leads: int, stale: int) -> None:
    """Leads in bulk with plain sqlite3: `stale` New leads older than 2 days,
    the rest New but recent, or in other statuses at any age."""
    rng = random.Random(3)
    connection = sqlite3.connect(db_file)
    statuses = ["Attempting", "Contacted", "Offer submitted", "Qualified", "Disqualified"]
    stale_ids = set(rng.sample(range(leads), stale))
    rows = []
    started = time.perf_counter()
    for i in range(leads):
        if i in stale_ids:
            status, age = "New", timedelta(days=rng.uniform(2.1, 30))
        elif i % 10 == 0:
            status, age = "New", timedelta(hours=rng.uniform(0, 47))
        else:
            status, age = rng.choice(statuses), timedelta(days=rng.uniform(0, 400))
        changed = (NOW - age).replace(tzinfo=None).isoformat(sep=" ")
        rows.append((f"Lead {i}", f"lead{i}@client.example", status, changed, 1 + i % 2, "sales", changed, changed))
        if len(rows) == 50_000 or i == leads - 1:
            connection.executemany(
                "insert into leads (name, email, source, status, status_changed_at, owner_id, mailbox, contact,"
                " received_at, created_at, fields) values (?, ?, 'Email', ?, ?, ?, ?, null, ?, ?, '{}')", rows)
            connection.commit()
            rows = []
            print(f"\rleads: {i + 1}/{leads}", end="", file=sys.stderr, flush=True)
    connection.execute("analyze")
    connection.commit()
    connection.close()
    print(f"\rmade {leads} leads in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def start_smtp_sink(port: int) -> subprocess.Popen:
    """aiosmtpd in its own process, accepting and discarding everything."""
    process = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                                "-c", "aiosmtpd.handlers.Sink"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise SystemExit("aiosmtpd did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--stale", type=int, default=10_000)
    args = parser.parse_args()
    configure_logging("info", stream=open(os.devnull, "w"))  # JSON lines, as under systemd
    work = Path(tempfile.mkdtemp(prefix="leadtap-bench-"))
    port = free_port()
    config = work / "leadtap.toml"
    config.write_text(CONFIG.format(db=work / "bench.db", port=port))
    db = Database(f"sqlite:///{work / 'bench.db'}")
    upgrade_schema(db.engine)
    app = build_app(str(config), os.environ)
    app.ready_database()  # the owners, with ids 1 and 2
    fill(work / "bench.db", args.leads, args.stale)

    rules = app.config.reminders.rules
    with db.transaction() as session:
        started = time.perf_counter()
        found = find_due(session, rules, app.config.leads.closed_statuses, NOW)  # with what was already sent
        due, taken = found.due, found.taken
        selection = time.perf_counter() - started
    assert len(due) == args.stale and not taken, (len(due), len(taken))

    sink = start_smtp_sink(port)
    try:
        sweep = app.reminder_sweep(clock=lambda: NOW)
        started = time.perf_counter()
        report = sweep.run()
        sending = time.perf_counter() - started
    finally:
        sink.terminate()
        sink.wait()
        app.close()
        db.dispose()
    print(f"leads:                 {args.leads} ({args.stale} stale)")
    print(f"selecting the stale:   {selection:.2f} s  (target < 1 s)")
    print(f"sweep:                 {report.summary()}")
    print(f"sending:               {sending:.1f} s, {report.sent / sending:.0f} reminders/s over one connection "
          "(select, claim, render, send, confirm; target >= 300/s)")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
