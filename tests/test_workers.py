"""Several workers on one PostgreSQL database, as real processes at once:
no duplicate lead, no turn given twice, a fair split."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from sqlalchemy import func, select

from leadtap.core.store.db import Lead, LedgerEntry, Owner
from leadtap.core.store.engine import Database
from tests.helpers import ROOT, Mailbox, enquiry, run_leadtap, write_config


def start_poll(config, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "leadtap", "--config", str(config), "poll", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )


def run_at_once(*processes: subprocess.Popen) -> list[tuple[int, str, str]]:
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append((process.returncode, out, err))
    return results


def owner_counts(url: str) -> Counter:
    db = Database(url)
    try:
        with db.transaction() as session:
            rows = session.execute(select(Owner.email, func.count(Lead.id)).join(Lead, Lead.owner_id == Owner.id)
                                   .group_by(Owner.email))
            return Counter(dict(rows.all()))
    finally:
        db.dispose()


def ledger_outcomes(url: str) -> Counter:
    db = Database(url)
    try:
        with db.transaction() as session:
            return Counter(session.scalars(select(LedgerEntry.outcome)))
    finally:
        db.dispose()


def test_two_workers_on_one_mailbox_make_each_lead_once_and_split_fairly(tmp_path, postgres_url, mailbox):
    for i in range(30):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    config = write_config(tmp_path / "leadtap.toml", postgres_url, mailbox.section(),
                          extra="[ingest]\nbatch_size = 4\n")
    assert run_leadtap("db", "upgrade", config=config).returncode == 0

    results = run_at_once(start_poll(config), start_poll(config))

    assert [code for code, _, _ in results] == [0, 0], results
    counts = owner_counts(postgres_url)
    assert sum(counts.values()) == 30
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert ledger_outcomes(postgres_url) == Counter({"lead": 30})
    assert mailbox.unseen() == []


def test_two_workers_on_two_mailboxes_share_one_rotation(tmp_path, postgres_url, mailbox, dovecot):
    other = Mailbox(dovecot, mailbox.user + "b", dovecot.password)
    for i in range(20):
        mailbox.append(enquiry(email=f"a{i}@client.test"))
        other.append(enquiry(email=f"b{i}@client.test"))
    config = write_config(tmp_path / "leadtap.toml", postgres_url,
                          mailbox.section(name="sales") + other.section(name="info"),
                          extra="[ingest]\nbatch_size = 3\n")
    assert run_leadtap("db", "upgrade", config=config).returncode == 0

    results = run_at_once(start_poll(config, "--mailbox", "sales"), start_poll(config, "--mailbox", "info"))

    assert [code for code, _, _ in results] == [0, 0], results
    counts = owner_counts(postgres_url)
    assert sum(counts.values()) == 40
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_the_same_message_ingested_by_two_workers_at_once_is_one_lead(tmp_path, postgres_url, mailbox, dovecot):
    other = Mailbox(dovecot, mailbox.user + "b", dovecot.password)
    raws = [enquiry(email=f"same{i}@client.test") for i in range(10)]
    for raw in raws:
        mailbox.append(raw)
        other.append(raw)
    config = write_config(tmp_path / "leadtap.toml", postgres_url,
                          mailbox.section(name="sales") + other.section(name="info"))
    assert run_leadtap("db", "upgrade", config=config).returncode == 0

    run_at_once(start_poll(config, "--mailbox", "sales"), start_poll(config, "--mailbox", "info"))

    assert sum(owner_counts(postgres_url).values()) == 10
    assert ledger_outcomes(postgres_url) == Counter({"lead": 10, "duplicate": 10})
