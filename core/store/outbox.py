"""What every email leadtap owes shares, whatever table holds the claim
(``reminders`` for the sweep's letters, ``notifications`` for the rest,
``workflow_steps`` for the statuses' workflows).

``Outbox``: a table of rows owed — ``pending`` from ``next_attempt_at`` —
claimed one by one (a conditional update only one worker wins), then sent
(or, for a workflow's task, done), failed for good, dropped, or pending
again after a backoff.

A claim older than ``CLAIM_LEASE`` whose send was never confirmed (the
process died between claiming and recording the send) may be taken over:
at-least-once. A sender stops sending at half of it (``send_until``), so a
live sender is never overtaken.

A digest — and the confirmation of a reply to one — acts on the leads it
names only: they are recorded under its token before it is sent
(``remember_digest``)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from leadtap.core.rules import tokens
from leadtap.core.store.db import DigestToken

CLAIM_LEASE = timedelta(minutes=30)
FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=1)


def send_until() -> float:
    """The monotonic time past which a sender that claimed now sends no more."""
    return time.monotonic() + CLAIM_LEASE.total_seconds() / 2


def remember_digest(session: Session, message_id: str, recipient: str, lead_ids: list[int], now: datetime,
                    keep_for: timedelta) -> None:
    """The leads an email answered as a digest may act on, under its token;
    those too old to answer (``digest_token_max_age``) go."""
    session.execute(delete(DigestToken).where(DigestToken.issued_at < now - keep_for))
    session.add(DigestToken(mac=tokens.mac_of(message_id), recipient=recipient, lead_ids=sorted(set(lead_ids)),
                            issued_at=now))


def backoff(attempts: int) -> timedelta:
    return min(FIRST_RETRY * 2 ** (attempts - 1), LAST_RETRY)


OWN_COLUMNS = {"state", "token", "claimed_at", "attempts", "last_error", "next_attempt_at"}  # what retry_later sets


@dataclass(frozen=True)
class Outbox:
    """The claim protocol over ``model`` (its columns: id, state, token,
    claimed_at, attempts, next_attempt_at, sent_at, last_error)."""

    model: type

    def claimable(self, now: datetime):
        m = self.model
        return or_(and_(m.state == "pending", m.next_attempt_at <= now),
                   and_(m.state == "claimed", m.claimed_at <= now - CLAIM_LEASE))

    def due_ids(self, session: Session, now: datetime, limit: int) -> list[int]:
        m = self.model
        return list(session.scalars(select(m.id).where(self.claimable(now)).order_by(m.id).limit(limit)))

    def claim(self, session: Session, row_id: int, token: str, now: datetime) -> bool:
        """True when this sender (``token``) won the row and may send it."""
        m = self.model
        won = session.execute(update(m).where(m.id == row_id, self.claimable(now))
                              .values(state="claimed", token=token, claimed_at=now))
        return won.rowcount == 1

    def finish(self, session: Session, row_id: int, token: str, now: datetime, state: str,
               error: str | None = None) -> bool:
        """sent, failed (refused for good) or dropped (no longer owed) — if this sender still holds it."""
        m = self.model
        done = session.execute(update(m).where(m.id == row_id, m.token == token, m.state == "claimed")
                               .values(state=state, sent_at=now if state in ("sent", "done") else None, last_error=error))
        return done.rowcount == 1

    def retry_later(self, session: Session, row_id: int, token: str, now: datetime, error: str,
                    max_attempts: int | None = None, until: datetime | None = None, spread: float = 1.0,
                    **also) -> str:
        """A failure that may pass: pending again after a backoff (1 min,
        doubling, at most an hour; times ``spread``: a jitter the caller
        draws), or failed — once ``max_attempts`` is reached, or when the
        next attempt would come after ``until``. ``also``: other columns
        set with it. Returns the state."""
        m = self.model
        unknown = (set(also) - set(m.__table__.columns.keys())) | (set(also) & OWN_COLUMNS)
        if unknown:
            raise TypeError(f"retry_later: {', '.join(sorted(unknown))} is no column it may set on {m.__table__.name}")
        row = session.scalar(select(m).where(m.id == row_id, m.token == token, m.state == "claimed"))
        if row is None:
            return "taken over"
        row.attempts += 1
        row.last_error = error
        for column, value in also.items():
            setattr(row, column, value)
        wait = backoff(row.attempts) * spread
        if (max_attempts is not None and row.attempts >= max_attempts) or (until is not None and now + wait > until):
            row.state, row.last_error = "failed", f"gave up after {row.attempts} attempts: {error}"
        else:
            row.state, row.token, row.claimed_at = "pending", None, None
            row.next_attempt_at = now + wait
        return row.state

    def release(self, session: Session, row_ids: list[int], token: str, **also) -> None:
        """Not tried (the sender stopped, or the server is down for all): pending
        again, no attempt counted — in one statement; ``also``: other columns reset with it."""
        m = self.model
        if row_ids:
            session.execute(update(m).where(m.id.in_(row_ids), m.token == token, m.state == "claimed")
                            .values(state="pending", token=None, claimed_at=None, **also))
