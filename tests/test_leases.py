"""Several workers split the mailboxes: the lease rules on a real database
(SQLite and PostgreSQL, the clock injected), and three `leadtap run`
processes on PostgreSQL over five mailboxes with one killed half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from leadtap.core.store import leases
from leadtap.core.store.db import Lead, LedgerEntry, Owner, Reminder
from leadtap.core.store.engine import Database, upgrade_schema
from tests.helpers import ROOT, Mailbox, enquiry, write_config
from tests.smtp import SmtpServer
from tests.test_daemon import REMINDERS

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
TTL = timedelta(seconds=120)
ALIVE = timedelta(seconds=180)


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    upgrade_schema(database.engine)
    yield database
    database.dispose()


def hold(db, mailbox: str, worker: str, at: datetime = NOW, mailboxes: int = 5) -> str | None:
    with db.transaction() as session:
        leases.seen(session, worker, at)
        share = leases.fair_share(session, mailboxes, at, ALIVE)
        return leases.hold(session, mailbox, worker, at, TTL, share)


def test_a_mailbox_is_served_by_one_worker_until_its_lease_runs_out(db):
    assert hold(db, "sales", "a") == "taken"
    assert hold(db, "sales", "b") is None
    assert hold(db, "sales", "a", NOW + TTL / 2) == "renewed"
    assert hold(db, "sales", "b", NOW + TTL) is None  # renewed: not out yet
    assert hold(db, "sales", "b", NOW + TTL / 2 + TTL + timedelta(seconds=1)) == "taken"  # a died


def test_a_worker_holds_at_most_its_fair_share_of_the_mailboxes(db):
    for worker in ("a", "b", "c"):
        with db.transaction() as session:
            leases.seen(session, worker, NOW)
    boxes = [f"box{i}" for i in range(5)]

    taken = {box: next((w for w in ("a", "b", "c") if hold(db, box, w) == "taken"), None) for box in boxes}

    assert Counter(taken.values()) == Counter({"a": 2, "b": 2, "c": 1})  # ceil(5 / 3) = 2 each at most


def test_a_worker_leaving_frees_its_mailboxes_at_once(db):
    assert hold(db, "sales", "a") == "taken"
    with db.transaction() as session:
        leases.leave(session, "a")
        assert leases.holders(session, NOW) == {}
    assert hold(db, "sales", "b") == "taken"


def test_the_survivors_share_a_dead_workers_mailboxes(db):
    for box, worker in [("box0", "a"), ("box1", "a"), ("box2", "b"), ("box3", "b"), ("box4", "c")]:
        hold(db, box, worker)
    later = NOW + TTL + timedelta(seconds=1)
    for box, worker in [("box0", "a"), ("box1", "a"), ("box2", "b"), ("box3", "b")]:  # c is dead
        hold(db, box, worker, later - timedelta(seconds=2))

    assert hold(db, "box4", "a", later + ALIVE) == "taken"  # c no longer counts: a's share is 3


# --- three real workers ------------------------------------------------------------------

# The daemon tests' SMTP server and reminder rule (after = "1s"), and small batches.
RUN = REMINDERS.replace('after = "2s"', 'after = "1s"') + "\n[ingest]\nbatch_size = 25\n"


def start_worker(config, log) -> subprocess.Popen:
    """A `leadtap run`; its log goes to a file (a pipe nobody reads fills up and stops the worker)."""
    return subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def count(url: str, statement) -> int:
    db = Database(url)
    try:
        with db.transaction() as session:
            return session.scalar(statement)
    finally:
        db.dispose()


def settled(url: str, smtp, quiet: float = 2.0) -> bool:
    """No reminder sent for ``quiet`` seconds."""
    before = len(smtp.messages)
    time.sleep(quiet)
    return len(smtp.messages) == before


def owner_counts(url: str) -> Counter:
    db = Database(url)
    try:
        with db.transaction() as session:
            return Counter(dict(session.execute(select(Owner.email, func.count(Lead.id))
                                                .join(Lead, Lead.owner_id == Owner.id).group_by(Owner.email)).all()))
    finally:
        db.dispose()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_three_workers_split_five_mailboxes_and_survive_one_killed(tmp_path, postgres_url, dovecot):
    boxes = [Mailbox(dovecot, f"w{i}{os.getpid()}{int(time.time() * 1000) % 100000}", dovecot.password)
             for i in range(5)]
    for box_number, box in enumerate(boxes):
        with box.client() as client:
            for i in range(400):
                client.append("INBOX", enquiry(name=f"Person {box_number}-{i}", email=f"p{box_number}-{i}@client.test"))
    sections = "\n".join(box.section(f"box{i}", poll_interval="1s") for i, box in enumerate(boxes))
    with SmtpServer() as smtp:
        config = write_config(tmp_path / "leadtap.toml", postgres_url, sections, extra=RUN.format(port=smtp.port))
        assert subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), "db", "upgrade"],
                              cwd=ROOT, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0
        logs = [tmp_path / f"worker{i}.log" for i in range(3)]
        workers = [start_worker(config, log) for log in logs]
        try:
            leads = select(func.count()).select_from(Lead)
            wait_until(lambda: count(postgres_url, leads) >= 600, 120, "600 leads")
            workers[0].send_signal(signal.SIGKILL)  # half-way: its leases must run out and be taken over
            wait_until(lambda: count(postgres_url, leads) == 2000, 240, "2,000 leads")
            wait_until(lambda: count(postgres_url, select(func.count()).select_from(Reminder)) == 2000, 120,
                       "a reminder per lead")
            sent_rows = select(func.count()).select_from(Reminder).where(Reminder.state == "sent")
            claimed_rows = select(func.count()).select_from(Reminder).where(Reminder.state == "claimed")
            # Settled: every reminder sent and confirmed, but those the killed worker held when it died —
            # some of which it may have sent before it could confirm them (confirmed in groups).
            wait_until(lambda: settled(postgres_url, smtp) and count(postgres_url, sent_rows) + count(
                postgres_url, claimed_rows) == 2000 and count(postgres_url, sent_rows) <= len(smtp.messages),
                60, "the sweeps to settle")
            time.sleep(3)  # a few more sweeps and polls: nothing may be sent or made twice
        finally:
            for worker in workers[1:]:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
        errors = [log.read_text() for log in logs[1:]]
        assert [worker.returncode for worker in workers[1:]] == [0, 0], [e[-3000:] for e in errors]

        assert count(postgres_url, leads) == 2000
        assert count(postgres_url, select(func.count()).select_from(LedgerEntry)
                     .where(LedgerEntry.outcome == "lead")) == 2000
        assert count(postgres_url, select(func.count(func.distinct(Lead.contact)))) == 2000
        per_owner = owner_counts(postgres_url)
        assert max(per_owner.values()) - min(per_owner.values()) <= 1, per_owner
        # One reminder per lead, none twice: every claim is sent, except those the killed worker held
        # when it died (they are sent again once their lease runs out: at-least-once, CLAIM_LEASE);
        # of those, it may have sent some before it could confirm them.
        subjects = [m["Subject"] for m in smtp.messages]
        sent, claimed = count(postgres_url, sent_rows), count(postgres_url, claimed_rows)
        assert len(subjects) == len(set(subjects)), "a reminder was sent twice"
        assert sent + claimed == 2000 and sent <= len(subjects) <= sent + claimed, (len(subjects), sent, claimed)
        taken_by = {line.split('"worker": "')[1].split('"')[0] for text in errors for line in text.splitlines()
                    if '"lease_taken"' in line}
        assert len(taken_by) == 2  # both survivors served mailboxes
        for box in boxes:
            assert box.unseen() == []


def test_a_lease_another_worker_took_is_not_renewed(db):
    hold(db, "sales", "a")
    hold(db, "sales", "b", NOW + TTL + timedelta(seconds=1))
    with db.transaction() as session:
        assert leases.renew(session, "sales", "a", NOW + TTL + timedelta(seconds=2), TTL) is False
        assert leases.holders(session, NOW + TTL + timedelta(seconds=2)) == {"sales": "b"}


def test_a_dead_worker_stops_counting_before_any_of_its_leases_runs_out(tmp_path):
    from leadtap.core.config.load import load_config
    from leadtap.scheduler.leases import MailboxLeases

    path = tmp_path / "leadtap.toml"
    path.write_text(write_config(tmp_path / "x.toml", "sqlite://", "\n".join(
        f'[[mailboxes]]\nname = "{name}"\nhost = "127.0.0.1"\nsecurity = "plain"\nusername = "u"\npassword = "p"\n'
        f'poll_interval = "{interval}"\n' for name, interval in (("inbox", "1m"), ("sent", "1h")))).read_text())
    box_leases = MailboxLeases(None, load_config(path, {}), lambda: NOW, worker="w")

    assert box_leases.alive_within() < min(box_leases.ttl("inbox"), box_leases.ttl("sent"))
    assert box_leases.ttl("removed-by-a-reload") == timedelta(seconds=90)
    assert box_leases.ttl("inbox") == timedelta(seconds=90) and box_leases.presence_every() == timedelta(seconds=30)


def test_a_dead_workers_mailbox_is_taken_over_within_two_poll_intervals(tmp_path, postgres_url, mailbox):
    config = write_config(tmp_path / "leadtap.toml", postgres_url, mailbox.section(poll_interval="2s"))
    assert subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), "db", "upgrade"],
                          cwd=ROOT, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = start_worker(config, logs[0])
    wait_until(lambda: '"lease_taken"' in logs[0].read_text(), 30, "the first worker serving the mailbox")
    second = start_worker(config, logs[1])
    try:
        wait_until(lambda: '"started"' in logs[1].read_text(), 30, "the second worker")
        time.sleep(1)
        first.send_signal(signal.SIGKILL)
        died = time.monotonic()
        mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
        wait_until(lambda: count(postgres_url, select(func.count()).select_from(Lead)) == 1, 30, "the lead")
        taken_after = time.monotonic() - died
    finally:
        first.kill()
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert taken_after < 2 * 2 + 1, taken_after  # two poll intervals, and a second for the pass
    assert '"lease_taken"' in logs[1].read_text()
