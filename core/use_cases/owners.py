"""Owners away and back (``leadtap owners``, ``/away`` and ``/back`` by
reply): the rules are ``core.rules.away``; an owner away is left out of the
rotation by ``core.rules.model.rotation_pool``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from leadtap.core.rules.away import check_away, check_back
from leadtap.core.rules.lifecycle import Actor, Refused
from leadtap.core.rules.model import is_away
from leadtap.core.store.db import Owner


def away(session: Session, email: str, until: datetime | None, actor: Actor, now: datetime) -> str:
    owner = owner_row(session, email)
    check_away(owner.email, until, actor, now)
    owner.away_since, owner.away_until = now, until
    return f"{owner.email} is away " + (f"until {until:%Y-%m-%d %H:%M} UTC" if until else "until back") + \
        ": no new leads; their leads' reminders go to the escalation role (or wait)"


def back(session: Session, email: str, actor: Actor, now: datetime) -> str:
    owner = owner_row(session, email)
    check_back(owner.email, is_away(owner, now), actor)
    owner.away_since = owner.away_until = None
    return f"{owner.email} is back: in the rotation again"


def owner_row(session: Session, email: str) -> Owner:
    owner = session.scalars(select(Owner).where(Owner.email == email.strip().lower()).with_for_update()
                            ).one_or_none()
    if owner is None or not owner.active:
        raise Refused(f"{email!r} is not an active owner")
    return owner


def list_owners(session: Session, now: datetime) -> list[dict]:
    return [
        {"email": o.email, "name": o.name, "roles": ", ".join(o.roles or []), "active": bool(o.active),
         "away": is_away(o, now), "away_until": o.away_until.isoformat() if o.away_until and is_away(o, now) else None}
        for o in session.scalars(select(Owner).where(Owner.in_config.is_(True)).order_by(Owner.position))
    ]
