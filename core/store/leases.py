"""Several workers split the mailboxes: each mailbox is served by one worker
at a time, through a lease row that its passes renew and that expires when
its worker dies (another takes it over at its next poll, within two poll
intervals).

Each live worker (seen at its ingest jobs) holds at most its fair share —
the mailboxes divided by the live workers, rounded up: a worker that started
first and took them all gives the extras back as the others come, and the
survivors share a dead worker's mailboxes. Times are the database's, so the
workers' machines need not agree on the time. ``leadtap poll`` takes no lease:
ingest is exactly-once whoever polls.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadtap.core.store.db import MailboxLease, Worker

GONE = datetime(1970, 1, 1, tzinfo=timezone.utc)  # an expiry in the past: free at once


def database_now(session: Session, clock) -> datetime:
    """The database's clock on PostgreSQL — one clock for every worker, whatever their machines'
    clocks say; the worker's own elsewhere (SQLite has one worker)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.clock_timestamp()))
    return clock()


def seen(session: Session, worker: str, now: datetime) -> None:
    """The worker is alive (an upsert: update, else insert)."""
    if session.execute(update(Worker).where(Worker.id == worker).values(seen_at=now)).rowcount == 0:
        try:
            with session.begin_nested():
                session.add(Worker(id=worker, seen_at=now))
        except IntegrityError:  # it was there after all (a race with itself cannot happen; with a reader can)
            pass


def fair_share(session: Session, mailboxes: int, now: datetime, alive_within: timedelta) -> int:
    live = session.scalar(select(func.count()).select_from(Worker).where(Worker.seen_at > now - alive_within))
    return math.ceil(mailboxes / max(live or 0, 1))


def held_by(session: Session, worker: str, now: datetime) -> set[str]:
    return set(session.scalars(select(MailboxLease.mailbox)
                               .where(MailboxLease.holder == worker, MailboxLease.expires_at > now)))


def hold(session: Session, mailbox: str, worker: str, now: datetime, ttl: timedelta, share: int) -> str | None:
    """Renew this worker's lease on ``mailbox``, or take it when it is free
    and the worker is under its share. Returns "renewed", "taken" or None."""
    mine = held_by(session, worker, now)
    if mailbox in mine:
        renew(session, mailbox, worker, now, ttl)
        return "renewed"
    if len(mine) >= share:
        return None
    taken = session.execute(update(MailboxLease)
                            .where(MailboxLease.mailbox == mailbox, MailboxLease.expires_at <= now)
                            .values(holder=worker, expires_at=now + ttl, acquired_at=now))
    if taken.rowcount == 1:
        return "taken"
    try:
        with session.begin_nested():
            session.add(MailboxLease(mailbox=mailbox, holder=worker, expires_at=now + ttl, acquired_at=now))
        return "taken"
    except IntegrityError:  # held by another worker (or just taken by one)
        return None


def renew(session: Session, mailbox: str, worker: str, now: datetime, ttl: timedelta) -> bool:
    """Push the lease's expiry on (during a long pass); False when it is no longer this worker's."""
    renewed = session.execute(update(MailboxLease)
                              .where(MailboxLease.mailbox == mailbox, MailboxLease.holder == worker)
                              .values(expires_at=now + ttl))
    return renewed.rowcount == 1


def give_back(session: Session, worker: str, mailbox: str | None = None) -> None:
    """Free this worker's lease on ``mailbox`` (or all of them): another worker takes it at its next poll."""
    statement = update(MailboxLease).where(MailboxLease.holder == worker)
    if mailbox is not None:
        statement = statement.where(MailboxLease.mailbox == mailbox)
    session.execute(statement.values(expires_at=GONE))


def leave(session: Session, worker: str) -> None:
    """The worker stops: its leases are free at once, and it no longer counts as live."""
    give_back(session, worker)
    session.execute(delete(Worker).where(Worker.id == worker))


def holders(session: Session, now: datetime) -> dict[str, str]:
    """mailbox -> the worker holding it now."""
    return dict(session.execute(select(MailboxLease.mailbox, MailboxLease.holder)
                                .where(MailboxLease.expires_at > now)).all())
