"""Workflow benchmark: one SQLite database with ``--leads`` leads that each
entered New and owe its workflow — the contact's acknowledgement at once and
a task a day later; prints how many acknowledgements per second go out to a
local aiosmtpd server (claim, read the lead again, take the contact's period,
render, send, record) and how many task steps per second run, the runner
called as ``leadtap run`` calls it until nothing is due.

    .venv/bin/python bench/workflows.py [--leads 10000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reminders import start_smtp_sink  # noqa: E402
from leadtap.bootstrap import build_app  # noqa: E402
from leadtap.core.logs import configure_logging  # noqa: E402
from leadtap.core.store.engine import Database, upgrade_schema  # noqa: E402
from leadtap.dovecot import free_port  # noqa: E402

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
CONFIG = """
[database]
url = "sqlite:///{db}"

[[owners]]
email = "ana@example.com"
name = "Ana"
roles = ["sales"]

[smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "Sales <crm@example.com>"

[[statuses]]
name = "New"
steps = [
  {{ email = "contact", template = "acknowledgement", reply_to = "owner" }},
  {{ task = "Call {{{{ lead.name }}}}", due = "4h", after = "1d" }},
]
"""


def fill(db_file: Path, leads: int, steps) -> None:
    """Leads that entered New at NOW, each with its two steps owed (as ingest writes them)."""
    connection = sqlite3.connect(db_file)
    at = NOW.replace(tzinfo=None).isoformat(sep=" ")
    due = (NOW + timedelta(days=1)).replace(tzinfo=None).isoformat(sep=" ")
    connection.executemany(
        "insert into leads (id, name, email, source, status, status_changed_at, owner_id, mailbox, contact,"
        " subject, received_at, created_at, fields) values (?, ?, ?, 'Email', 'New', ?, 1, 'sales', ?, ?, ?, ?, '{}')",
        [(i, f"Lead {i}", f"lead{i}@client.example", at, f"lead{i}@client.example", f"Enquiry {i}", at, at)
         for i in range(1, leads + 1)])
    connection.executemany(
        "insert into lead_messages (lead_id, message_id) values (?, ?)",
        [(i, f"<enquiry-{i}@forms.example.com>") for i in range(1, leads + 1)])
    connection.executemany(
        "insert into workflow_steps (lead_id, deal, status, entered_at, step, kind, fingerprint, state, attempts,"
        " next_attempt_at, created_at) values (?, 0, 'New', ?, ?, ?, ?, 'pending', 0, ?, ?)",
        [row for i in range(1, leads + 1) for row in ((i, at, 0, "email", steps[0].fingerprint, at, at),
                                                      (i, at, 1, "task", steps[1].fingerprint, due, at))])
    connection.commit()
    connection.close()


def run_until_done(app, at: datetime) -> tuple[float, int, int]:
    runner = app.step_runner(clock=lambda: at)
    started, sent, done = time.perf_counter(), 0, 0
    while True:
        report = runner.run()
        if not report.anything:
            return time.perf_counter() - started, sent, done
        sent, done = sent + report.sent, done + report.done
        print(f"\rsteps: {sent + done}", end="", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=10_000)
    args = parser.parse_args()
    configure_logging("info", stream=open(os.devnull, "w"))  # JSON lines, as under systemd
    work = Path(tempfile.mkdtemp(prefix="leadtap-bench-"))
    port = free_port()
    config = work / "leadtap.toml"
    config.write_text(CONFIG.format(db=work / "bench.db", port=port))
    db = Database(f"sqlite:///{work / 'bench.db'}")
    upgrade_schema(db.engine)
    app = build_app(str(config), os.environ)
    app.ready_database()
    fill(work / "bench.db", args.leads, app.config.pipeline.option("New").steps)
    sink = start_smtp_sink(port)
    try:
        sending, sent, _ = run_until_done(app, NOW + timedelta(minutes=1))
        tasking, _, done = run_until_done(app, NOW + timedelta(days=1, minutes=1))
    finally:
        sink.terminate()
        sink.wait()
        app.close()
        db.dispose()
    assert (sent, done) == (args.leads, args.leads), (sent, done)
    print(f"\rleads:                 {args.leads}, each owing an acknowledgement and a task")
    print(f"acknowledgements:      {sending:.1f} s, {sent / sending:.0f}/s over one connection per batch of 200")
    print(f"task steps:            {tasking:.1f} s, {done / tasking:.0f}/s")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
