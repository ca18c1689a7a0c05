"""What every email leadtap owes shares, whatever table holds the claim
(``reminders`` for the sweep's letters, ``notifications`` for the rest).

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

from sqlalchemy import delete
from sqlalchemy.orm import Session

from leadtap.core.rules import tokens
from leadtap.core.store.db import DigestToken

CLAIM_LEASE = timedelta(minutes=30)


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
