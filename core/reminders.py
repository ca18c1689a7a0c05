"""Reminders to owners whose leads sit too long in one status (Hanna CRM's
reminder settings: status, how long unchanged, email template, enabled).

A lead is stale for a rule when it is open, in the rule's status, and has been
there for at least ``after``. A status change starts a new *stay*. Within a
stay the first reminder is number 0; with ``repeat_every`` another one falls
due every ``repeat_every`` after that. Each (lead, rule, stay, number) is
claimed by a unique insert before anything is sent: only the claimer sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import ReminderRule
from core.db import Lead, Owner, Reminder

# A claim older than this whose send was never confirmed (the process died
# between claiming and recording the send) may be taken over: at-least-once.
CLAIM_LEASE = timedelta(minutes=10)


def due_number(stay_started_at: datetime, now: datetime, rule: ReminderRule) -> int | None:
    """Which reminder of the stay is due now (0, 1, …), or None when none is yet."""
    stale_for = now - stay_started_at - rule.after
    if stale_for < timedelta(0):
        return None
    if rule.repeat_every is None:
        return 0
    return int(stale_for / rule.repeat_every)


@dataclass(frozen=True)
class Due:
    """One reminder that falls due: a lead, its owner, the rule and the number."""

    lead: Lead
    owner: Owner | None
    rule: ReminderRule
    number: int
    stale_for: timedelta

    @property
    def key(self) -> tuple[int, str, datetime, int]:
        return (self.lead.id, self.rule.name, self.lead.status_changed_at, self.number)

    @property
    def escalates(self) -> bool:
        """From the ``escalate_after``-th reminder of a stay on (counting from 1),
        or at once for a lead that has no owner to remind."""
        if self.rule.escalate_to_role is None:
            return False
        return self.owner is None or self.number + 1 >= (self.rule.escalate_after or 1)


def find_due(session: Session, rules: tuple[ReminderRule, ...], closed: tuple[str, ...], now: datetime) -> list[Due]:
    """Every reminder due now and not yet sent (or claimed) — one query per rule
    on the (status, status_changed_at) index, one for what was already sent."""
    found: list[Due] = []
    for rule in rules:
        if not rule.enabled or rule.status in closed:
            continue
        rows = session.execute(
            select(Lead, Owner)
            .outerjoin(Owner, Owner.id == Lead.owner_id)
            .where(Lead.status == rule.status, Lead.status_changed_at <= now - rule.after)
            .order_by(Lead.id)
        ).all()
        for lead, owner in rows:
            number = due_number(lead.status_changed_at, now, rule)
            if number is not None:
                found.append(Due(lead, owner, rule, number, now - lead.status_changed_at))
    claimed = already_claimed(session, found, now)
    return [due for due in found if due.key not in claimed]


def already_claimed(session: Session, found: list[Due], now: datetime) -> set:
    """Keys of reminders sent, or claimed by someone whose lease still runs."""
    if not found:
        return set()
    keys = {due.key for due in found}
    lead_ids = sorted({key[0] for key in keys})
    claimed = set()
    for start in range(0, len(lead_ids), 500):
        chunk = lead_ids[start : start + 500]
        for row in session.execute(
            select(Reminder.lead_id, Reminder.rule, Reminder.stay_started_at, Reminder.repeat, Reminder.state,
                   Reminder.claimed_at).where(Reminder.lead_id.in_(chunk))
        ):
            key = (row.lead_id, row.rule, row.stay_started_at, row.repeat)
            if key in keys and (row.state == "sent" or row.claimed_at > now - CLAIM_LEASE):
                claimed.add(key)
    return claimed


def claim(session: Session, due: Due, recipients: list[str], now: datetime) -> bool:
    """Claim one reminder: a unique insert, or taking over a claim whose lease
    ran out. True when this process may send it."""
    lead_id, rule, stay, number = due.key
    try:
        with session.begin_nested():
            session.add(Reminder(lead_id=lead_id, rule=rule, stay_started_at=stay, repeat=number, state="claimed",
                                 recipients=recipients, claimed_at=now))
        return True
    except IntegrityError:
        taken = session.execute(
            update(Reminder)
            .where(
                Reminder.lead_id == lead_id, Reminder.rule == rule, Reminder.stay_started_at == stay,
                Reminder.repeat == number, Reminder.state == "claimed", Reminder.claimed_at <= now - CLAIM_LEASE,
            )
            .values(claimed_at=now, recipients=recipients)
        )
        return taken.rowcount == 1


def mark_sent(session: Session, sent: list[tuple[Due, str | None]], now: datetime) -> None:
    """Sent (or refused for good, with the error): never sent again. One
    executemany for the lot."""
    if not sent:
        return
    table = Reminder.__table__
    statement = (
        update(table)
        .where(table.c.lead_id == bindparam("k_lead"), table.c.rule == bindparam("k_rule"),
               table.c.stay_started_at == bindparam("k_stay"), table.c.repeat == bindparam("k_repeat"))
        .values(state="sent", sent_at=now, last_error=bindparam("k_error"))
    )
    rows = [{"k_lead": d.key[0], "k_rule": d.key[1], "k_stay": d.key[2], "k_repeat": d.key[3], "k_error": error}
            for d, error in sent]
    session.connection().execute(statement, rows)


def release(session: Session, due: Due) -> None:
    """An SMTP failure: drop the claim, so a later sweep tries again."""
    session.execute(delete(Reminder).where(*key_clause(due), Reminder.state == "claimed"))


def key_clause(due: Due) -> tuple:
    lead_id, rule, stay, number = due.key
    return (Reminder.lead_id == lead_id, Reminder.rule == rule, Reminder.stay_started_at == stay,
            Reminder.repeat == number)


def owners_with_role(session: Session, role: str) -> list[Owner]:
    return [o for o in session.scalars(select(Owner).where(Owner.active.is_(True)).order_by(Owner.position))
            if role in (o.roles or [])]


def sent_reminders(session: Session, limit: int = 200) -> list[dict]:
    rows = session.execute(
        select(Reminder, Lead.name).join(Lead, Lead.id == Reminder.lead_id).order_by(Reminder.id.desc()).limit(limit)
    )
    return [
        {
            "id": r.id, "lead_id": r.lead_id, "lead": name, "rule": r.rule, "number": r.repeat + 1,
            "state": r.state, "recipients": r.recipients, "sent_at": r.sent_at.isoformat() if r.sent_at else None,
        }
        for r, name in rows
    ]
